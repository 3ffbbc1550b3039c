//! Cancels across replicas: real proxy processes with `--peers` listing each other's peer
//! ports on 127.0.0.1 (each its own too), one secret file, and in front of their client ports
//! a round-robin TCP balancer standing in for a Kubernetes Service. Sessions and cancels go
//! through the balancer, so a cancel lands on any replica; tokio-postgres's cancel token and
//! psql's SIGINT must get 57014 within 1 s wherever it lands. Forged, closed-session, badly
//! signed, stale and replayed cancels cancel nothing and are counted; a peer that is down or
//! silent delays neither a cancel to a live owner nor the client listener.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redshift_auth_proxy::cancel::peer_message::{
    NONCE_LEN, PeerRequest, REPLY_LEN, REQUEST_LEN, Verdict,
};
use redshift_auth_proxy::cancel::peer_secret::PeerSecret;
use redshift_auth_proxy::protocol::CancelKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

use crate::support::balancer::Balancer;
use crate::support::eventually::eventually;
use crate::support::http_get::sample;
use crate::support::pg::{self, PgServer};
use crate::support::replicas::{
    PEER_SECRET, aim, cancel_with_psql, cancel_with_token, start_replicas, wait_peered,
};
use crate::support::scripted;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_through_a_balancer_reach_the_session_on_whichever_replica_they_land() {
    let server = PgServer::shared();
    let (replicas, _dir) = start_replicas(server, 3, &[], "500ms");
    wait_peered(&replicas, 3).await;
    let ports: Vec<u16> = replicas.iter().map(|r| r.proxy.port).collect();
    let balancer = Balancer::start(&ports).await;
    let direct = server
        .connect_direct(pg::SCRAM_USER, pg::SCRAM_PASSWORD, "dev")
        .await;
    let n = replicas.len();
    let mut times = Vec::new();
    // Every pairing of the replica that holds the session and the one the cancel lands on,
    // with each client.
    for client in ["token", "psql"] {
        for session_at in 0..n {
            for cancel_at in 0..n {
                let name = format!("cancel_peers_{client}_{session_at}_{cancel_at}");
                aim(&balancer, session_at, n);
                let elapsed = match client {
                    "token" => cancel_with_token(&balancer, &direct, &name, cancel_at, n).await,
                    _ => cancel_with_psql(server, &balancer, &direct, &name, cancel_at, n).await,
                };
                assert!(
                    elapsed < Duration::from_secs(1),
                    "{name}: 57014 after {elapsed:?}"
                );
                times.push(elapsed);
            }
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "cancel via a balancer over 3 replicas: {}/{} cancelled, median time to 57014 {} ms",
        times.len(),
        2 * n * n,
        median.as_millis()
    );
    // Per replica and client: one cancel landed on the session's own replica, two came
    // from a client on another replica's session (forwarded), two were its sessions'
    // cancels forwarded by a peer.
    for (i, replica) in replicas.iter().enumerate() {
        let expected = BTreeMap::from([
            ("local", 2),
            ("forwarded", 4),
            ("peer_received", 4),
            ("unknown", 0),
            ("upstream_error", 0),
            ("peer_refused", 0),
        ]);
        let settled = eventually(Duration::from_secs(5), async || {
            let mut got = BTreeMap::new();
            for outcome in expected.keys() {
                got.insert(*outcome, replica.cancels(outcome).await);
            }
            got == expected
        })
        .await;
        assert!(settled, "replica {i}: {}", replica.metrics().await);
    }
}

/// Writes a peer message to a peer port; returns what came back (a reply, or nothing when
/// the message was refused).
async fn send_peer_message(port: u16, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the peer port");
    stream.write_all(message).await.expect("peer message");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the peer port closes")
        .expect("read");
    reply
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn peer_request(key: CancelKey, timestamp_ms: u64, nonce_byte: u8) -> PeerRequest {
    PeerRequest {
        key,
        timestamp_ms,
        nonce: [nonce_byte; NONCE_LEN],
    }
}

fn simple_query(sql: &str) -> Vec<u8> {
    let mut text = sql.as_bytes().to_vec();
    text.push(0);
    scripted::message(b'Q', &text)
}

/// Messages up to ReadyForQuery within `limit`; `None` when it takes longer.
async fn until_ready(stream: &mut TcpStream, limit: Duration) -> Option<Vec<(u8, Vec<u8>)>> {
    tokio::time::timeout(limit, async {
        let mut messages = Vec::new();
        loop {
            let (tag, payload) = scripted::read_message(stream).await.expect("session open");
            messages.push((tag, payload));
            if tag == b'Z' {
                return messages;
            }
        }
    })
    .await
    .ok()
}

fn error_code(messages: &[(u8, Vec<u8>)]) -> Option<String> {
    messages
        .iter()
        .find(|(tag, _)| *tag == b'E')
        .and_then(|(_, payload)| scripted::error_field(payload, b'C'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_closed_badly_signed_stale_and_replayed_cancels_cancel_nothing() {
    let server = PgServer::shared();
    let (replicas, _dir) = start_replicas(server, 3, &[], "500ms");
    wait_peered(&replicas, 3).await;
    let ports: Vec<u16> = replicas.iter().map(|r| r.proxy.port).collect();
    let balancer = Balancer::start(&ports).await;

    // A session on replica 1, its proxy-issued key from the greeting.
    let owner = 1;
    aim(&balancer, owner, 3);
    let mut session = TcpStream::connect(("127.0.0.1", balancer.port))
        .await
        .expect("connect");
    scripted::send_startup(&mut session, &[("user", "anyone"), ("database", "dev")]).await;
    let greeting = until_ready(&mut session, Duration::from_secs(30))
        .await
        .expect("greeting");
    let key = greeting
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .and_then(|(_, payload)| CancelKey::from_payload(payload))
        .expect("BackendKeyData");

    // While the session sleeps: a forged key through the balancer (forwarded, no replica owns
    // it), and peer messages for the live key signed with another secret or too old.
    session
        .write_all(&simple_query("select pg_sleep(2)"))
        .await
        .expect("query");
    tokio::time::sleep(Duration::from_millis(200)).await;
    aim(&balancer, 2, 3);
    let forged = CancelKey {
        process_id: key.process_id,
        secret_key: key.secret_key.wrapping_add(1),
    };
    scripted::send_cancel(balancer.port, forged).await;
    let other = PeerSecret::from_bytes(b"not the deployment's secret").expect("long");
    let ours = PeerSecret::from_bytes(PEER_SECRET.as_bytes()).expect("long");
    let badly_signed = peer_request(key, now_ms(), 1).encode(&other);
    let stale = peer_request(key, now_ms() - 10 * 60 * 1000, 2).encode(&ours);
    for replica in &replicas {
        assert!(
            send_peer_message(replica.peer, &badly_signed)
                .await
                .is_empty()
        );
        assert!(send_peer_message(replica.peer, &stale).await.is_empty());
        // Malformed: a truncated request.
        assert!(
            send_peer_message(replica.peer, &stale[..REQUEST_LEN / 2])
                .await
                .is_empty()
        );
    }
    let finished = until_ready(&mut session, Duration::from_secs(10))
        .await
        .expect("the query finishes");
    assert_eq!(error_code(&finished), None, "the query was cancelled");

    // A correctly signed, fresh request cancels (so the refusals above were not about the
    // test's own bytes); the same bytes sent again later do not.
    let genuine = peer_request(key, now_ms(), 3).encode(&ours);
    session
        .write_all(&simple_query("select pg_sleep(30)"))
        .await
        .expect("query");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = send_peer_message(replicas[owner].peer, &genuine).await;
    assert_eq!(reply.len(), REPLY_LEN);
    assert_eq!(
        Verdict::decode(&reply, &[3; NONCE_LEN], &ours),
        Ok(Verdict::Owner)
    );
    let cancelled = until_ready(&mut session, Duration::from_secs(5))
        .await
        .expect("cancelled within 5 s");
    assert_eq!(error_code(&cancelled).as_deref(), Some("57014"));
    // PostgreSQL signals a cancelled backend twice (the process, then its group); a second
    // signal that comes after the first was handled is held until the next query. Let a
    // throwaway query take it, so what follows sees only new cancels.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        session
            .write_all(&simple_query("select pg_sleep(0.2)"))
            .await
            .expect("query");
        let done = until_ready(&mut session, Duration::from_secs(5))
            .await
            .expect("the throwaway query ends");
        if error_code(&done).is_none() {
            break;
        }
    }
    session
        .write_all(&simple_query("select pg_sleep(1.5)"))
        .await
        .expect("query");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        send_peer_message(replicas[owner].peer, &genuine)
            .await
            .is_empty(),
        "a replayed message is refused"
    );
    let finished = until_ready(&mut session, Duration::from_secs(10))
        .await
        .expect("the query finishes");
    assert_eq!(
        error_code(&finished),
        None,
        "the replay cancelled the query: {:?}",
        finished
            .iter()
            .find(|(tag, _)| *tag == b'E')
            .and_then(|(_, e)| scripted::error_field(e, b'M'))
    );

    // The closed session's key, through the balancer: no replica has it any more.
    drop(session);
    let gone = eventually(Duration::from_secs(5), async || {
        let metrics = replicas[owner].metrics().await;
        sample(&metrics, "redshift_proxy_connections_active{") == Some(0.0)
    })
    .await;
    assert!(gone, "the closed session's key is no longer registered");
    aim(&balancer, 0, 3);
    scripted::send_cancel(balancer.port, key).await;

    // Counted: the forged and the closed key as unknown where they landed; every refused
    // peer message where it arrived; the genuine one where it cancelled.
    let totals = eventually(Duration::from_secs(5), async || {
        let mut unknown = 0;
        for replica in &replicas {
            unknown += replica.cancels("unknown").await;
        }
        unknown == 2
    })
    .await;
    assert!(totals, "two unknown keys");
    for (i, replica) in replicas.iter().enumerate() {
        let refused = if i == owner { 4 } else { 3 };
        assert_eq!(
            replica.cancels("peer_refused").await,
            refused,
            "replica {i}"
        );
        let received = if i == owner { 1 } else { 0 };
        assert_eq!(
            replica.cancels("peer_received").await,
            received,
            "replica {i}"
        );
        assert_eq!(replica.cancels("local").await, 0, "replica {i}");
        assert_eq!(replica.cancels("forwarded").await, 0, "replica {i}");
        let log = replica.proxy.log();
        assert_eq!(
            log.matches("peer message refused").count(),
            refused as usize,
            "one log line per refusal: {log}"
        );
        assert!(!log.contains(PEER_SECRET), "the secret is never logged");
        // The proxies keep serving.
        let (client, connection) =
            tokio_postgres::connect(&replica.proxy.conninfo("anyone", "dev"), NoTls)
                .await
                .expect("a new session");
        tokio::spawn(connection);
        client.simple_query("select 1").await.expect("select 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_or_silent_peer_delays_neither_the_owner_nor_the_listener() {
    let server = PgServer::shared();
    // A port nobody listens on, and a listener that accepts and never reads.
    let down = pg::free_port();
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let forward_timeout = Duration::from_secs(2);
    let (replicas, _dir) = start_replicas(server, 2, &[down, silent_port], "2s");
    wait_peered(&replicas, 4).await;
    let ports: Vec<u16> = replicas.iter().map(|r| r.proxy.port).collect();
    let balancer = Balancer::start(&ports).await;
    let direct = server
        .connect_direct(pg::SCRAM_USER, pg::SCRAM_PASSWORD, "dev")
        .await;

    // The owner answers at once; the dead and the silent peer are not waited for.
    aim(&balancer, 0, 2);
    let elapsed = cancel_with_token(&balancer, &direct, "cancel_peers_down_silent", 1, 2).await;
    assert!(
        elapsed < Duration::from_secs(1),
        "57014 after {elapsed:?} with a {forward_timeout:?} forward timeout"
    );
    assert_eq!(replicas[1].cancels("forwarded").await, 1);

    // A key nobody owns waits for every peer up to the timeout, in its own task: the
    // client's cancel connection closes at once, the same listener logs a new client in
    // meanwhile, and the forward ends (unknown) only when the silent peer's time is up.
    aim(&balancer, 1, 2);
    let sent = Instant::now();
    let closed_after = scripted::send_cancel(
        balancer.port,
        CancelKey {
            process_id: 12345,
            secret_key: 678,
        },
    )
    .await;
    assert!(
        closed_after < forward_timeout / 2,
        "the cancel connection stayed open {closed_after:?}"
    );
    let (client, connection) =
        tokio_postgres::connect(&replicas[1].proxy.conninfo("anyone", "dev"), NoTls)
            .await
            .expect("a new session");
    tokio::spawn(connection);
    client.simple_query("select 1").await.expect("select 1");
    let served_after = sent.elapsed();
    let settled = eventually(forward_timeout * 3, async || {
        replicas[1].cancels("unknown").await == 1
    })
    .await;
    let settled_after = sent.elapsed();
    assert!(settled, "{}", replicas[1].metrics().await);
    assert!(
        settled_after >= forward_timeout - Duration::from_millis(100),
        "the forward did not wait for the silent peer: {settled_after:?}"
    );
    assert!(
        served_after < settled_after,
        "a login waited on the forward: served after {served_after:?}, forward done after {settled_after:?}"
    );
    let log = replicas[1].proxy.log();
    for peer in [down, silent_port] {
        assert!(
            log.contains(&format!("127.0.0.1:{peer}")),
            "the unanswering peer {peer} is logged: {log}"
        );
    }
    assert!(log.contains("no answer within 2s"), "{log}");
}
