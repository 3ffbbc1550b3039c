//! The router over loopback: a replica without peers, two peered replicas with their real
//! peer listeners (and a peer that is down), and what the peer port refuses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::peer_list::{PeerList, PeerResolver};
use super::peer_message::{NONCE_LEN, PeerRequest, Verdict};
use super::peer_secret::PeerSecret;
use super::*;
use crate::protocol::startup::encode_cancel_request;
use crate::upstream::tls::SslMode;

const SERVER_KEY: CancelKey = CancelKey {
    process_id: 4242,
    secret_key: 77,
};

fn secret() -> Arc<PeerSecret> {
    Arc::new(PeerSecret::from_bytes(b"the deployment's shared secret").expect("long"))
}

fn endpoint(port: u16) -> Arc<UpstreamEndpoint> {
    Arc::new(UpstreamEndpoint {
        host: "127.0.0.1".into(),
        port,
        sslmode: SslMode::Disable,
        tls: None,
        connect_timeout: Duration::from_secs(2),
    })
}

/// A server that records the first 16 bytes sent to it.
async fn upstream() -> (u16, tokio::task::JoinHandle<[u8; 16]>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 16];
        socket.read_exact(&mut request).await.expect("request");
        request
    });
    (port, task)
}

/// A router whose peer listener runs on a free loopback port, forwarding to `peers`.
async fn replica(peers: Option<&str>, stop: &CancellationToken) -> (Arc<CancelRouter>, SocketAddr) {
    let metrics = Metrics::new();
    let addresses = match peers {
        Some(list) => {
            let list = PeerList::parse(list).expect("peer list");
            let (mut resolver, addresses) = PeerResolver::new(list, metrics.clone());
            resolver.refresh().await;
            Some(addresses)
        }
        None => None,
    };
    let router = CancelRouter::new(
        metrics,
        Some(Peering {
            secret: secret(),
            addresses,
            forward_timeout: Duration::from_millis(500),
        }),
    );
    let listener = peer_listener::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("peer port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(peer_listener::serve(listener, router.clone(), stop.clone()));
    (router, address)
}

async fn settles(router: &CancelRouter, check: impl Fn(CancelCounts) -> bool) -> CancelCounts {
    for _ in 0..100 {
        if check(router.counts()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.counts()
}

#[tokio::test]
async fn without_peers_a_key_this_replica_did_not_issue_is_unknown_at_once() {
    let metrics = Metrics::new();
    let router = CancelRouter::new(metrics.clone(), None);
    let registration = router.register(SERVER_KEY, endpoint(1)).expect("issued");
    assert_eq!(
        router.client_cancel(SERVER_KEY).await,
        ClientCancel::Done(CancelOutcome::Unknown)
    );
    // A live key whose server is down.
    assert_eq!(
        router.client_cancel(registration.client_key()).await,
        ClientCancel::Done(CancelOutcome::UpstreamError)
    );
    let counts = router.counts();
    assert_eq!(
        (counts.unknown, counts.upstream_error, counts.local),
        (1, 1, 0)
    );
    let text = metrics.encode();
    for line in [
        "redshift_proxy_cancel_requests_total{outcome=\"unknown\"} 1",
        "redshift_proxy_cancel_requests_total{outcome=\"upstream_error\"} 1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn a_key_of_another_replica_reaches_its_owner_which_cancels_with_the_servers_key() {
    let stop = CancellationToken::new();
    let (owner, owner_address) = replica(None, &stop).await;
    let (server_port, server) = upstream().await;
    let registration = owner
        .register(SERVER_KEY, endpoint(server_port))
        .expect("issued");
    // The other replica lists the owner and a replica that is down.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let own_port = listener.local_addr().expect("address").port();
    drop(listener);
    let list = format!("{owner_address},127.0.0.1:{own_port}");
    let (other, _) = replica(Some(&list), &stop).await;

    assert_eq!(
        other.client_cancel(registration.client_key()).await,
        ClientCancel::Forwarding
    );
    let request = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the owner's server got the cancel")
        .expect("server task");
    assert_eq!(request, encode_cancel_request(SERVER_KEY));
    let counts = settles(&other, |c| c.forwarded == 1).await;
    assert_eq!(counts.forwarded, 1, "{counts:?}");
    assert_eq!(
        settles(&owner, |c| c.peer_received == 1)
            .await
            .peer_received,
        1
    );

    // A key nobody issued: every peer says no, counted unknown by the replica that asked.
    assert_eq!(
        other
            .client_cancel(CancelKey {
                process_id: 1,
                secret_key: 2
            })
            .await,
        ClientCancel::Forwarding
    );
    let counts = settles(&other, |c| c.unknown == 1).await;
    assert_eq!((counts.unknown, counts.forwarded), (1, 1), "{counts:?}");
    assert_eq!(owner.counts().peer_received, 1);
    assert_eq!(owner.counts().peer_refused + other.counts().peer_refused, 0);
    stop.cancel();
}

#[tokio::test]
async fn peer_requests_are_checked_counted_and_never_forwarded_again() {
    let stop = CancellationToken::new();
    // A peer of the receiving replica that must never be contacted.
    let bystander = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bystander_address = bystander.local_addr().expect("address");
    let (router, _) = replica(Some(&bystander_address.to_string()), &stop).await;
    let key = CancelKey {
        process_id: 5,
        secret_key: 6,
    };
    let request = PeerRequest {
        key,
        timestamp_ms: now_ms(),
        nonce: [7; NONCE_LEN],
    };
    let bytes = request.encode(&secret());
    let accepted = router
        .peer_request(&bytes)
        .expect("a fresh, signed request");
    assert!(accepted.server.is_none());
    let reply = router.peer_reply(&accepted).expect("a reply");
    assert_eq!(
        Verdict::decode(&reply, &[7; NONCE_LEN], &secret()),
        Ok(Verdict::NotOwner)
    );
    assert!(matches!(
        router.peer_request(&bytes),
        Err(PeerRefusal::Replayed)
    ));
    let other = PeerSecret::from_bytes(b"someone else's secret!").expect("long");
    let forged = PeerRequest {
        nonce: [8; NONCE_LEN],
        ..request
    }
    .encode(&other);
    let refusal = router.peer_request(&forged).expect_err("bad MAC");
    assert_eq!(refusal.reason(), "bad_mac");
    assert_eq!(
        router
            .peer_request(&bytes[..10])
            .expect_err("short")
            .reason(),
        "truncated"
    );
    assert_eq!(router.counts().peer_refused, 3);
    assert_eq!(router.counts().peer_received, 0);
    let contacted = tokio::time::timeout(Duration::from_millis(300), bystander.accept()).await;
    assert!(contacted.is_err(), "a peer request was forwarded again");
    stop.cancel();
}
