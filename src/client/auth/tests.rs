//! Client authentication over an in-memory connection: SCRAM and cleartext passwords
//! against verifiers, trust, and cert without a certificate.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{DuplexStream, duplex};

fn users(password: &str) -> ClientAuth {
    let text = format!("alice:{}\n", hash_password(password));
    ClientAuth::scram(ScramUsers::parse(&text).unwrap()).unwrap()
}

async fn read_r(stream: &mut PgStream<DuplexStream>) -> (u32, Vec<u8>) {
    let message = stream.read_message(4096).await.unwrap();
    assert_eq!(message.header.tag, b'R');
    let mut payload = message.payload();
    let code = bytes::Buf::get_u32(&mut payload);
    (code, payload.to_vec())
}

/// A client speaking the wire protocol with postgres-protocol's SCRAM client.
async fn client_side(stream: DuplexStream, password: &str) {
    let mut stream = PgStream::new(stream);
    let (code, _) = read_r(&mut stream).await;
    assert_eq!(code, 10);
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(MECHANISM, scram.message(), &mut out).unwrap();
    stream.write_message(&out).await.unwrap();
    let (code, data) = read_r(&mut stream).await;
    assert_eq!(code, 11);
    scram.update(&data).unwrap();
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).unwrap();
    stream.write_message(&out).await.unwrap();
    if let Ok(message) = stream.read_message(4096).await
        && message.header.tag == b'R'
    {
        let body = message.payload();
        assert_eq!(&body[..4], &[0, 0, 0, 12]);
        scram.finish(&body[4..]).expect("server signature verifies");
    }
}

async fn run(
    auth: &ClientAuth,
    user: &str,
    password: &str,
) -> Result<Option<String>, ClientAuthError> {
    let (server, client) = duplex(4096);
    let mut server = PgStream::new(server);
    let password = password.to_owned();
    let client = tokio::spawn(async move { client_side(client, &password).await });
    let result = authenticate(auth, &mut server, Some(user), Channel::default()).await;
    drop(server);
    client.await.unwrap();
    result
}

#[tokio::test]
async fn scram_over_the_wire() {
    let auth = users("s3cret");
    assert_eq!(
        run(&auth, "alice", "s3cret").await.unwrap().as_deref(),
        Some("alice")
    );
    let wrong = run(&auth, "alice", "nope").await.unwrap_err();
    let unknown = run(&auth, "mallory", "s3cret").await.unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "password authentication failed for user \"alice\""
    );
    assert_eq!(
        unknown.to_string(),
        "password authentication failed for user \"mallory\""
    );
    assert_eq!((wrong.sqlstate(), unknown.sqlstate()), ("28P01", "28P01"));
}

#[test]
fn unknown_users_get_a_stable_salt() {
    let secret = [9u8; 32];
    assert_eq!(
        mock_verifier(&secret, "bob").salt,
        mock_verifier(&secret, "bob").salt
    );
    assert_ne!(
        mock_verifier(&secret, "bob").salt,
        mock_verifier(&secret, "eve").salt
    );
}

#[tokio::test]
async fn trust_and_cert_without_a_certificate() {
    let (server, _client) = duplex(64);
    let mut server = PgStream::new(server);
    assert_eq!(
        authenticate(&ClientAuth::Trust, &mut server, None, Channel::default())
            .await
            .unwrap(),
        None
    );
    let err = authenticate(
        &ClientAuth::Cert,
        &mut server,
        Some("alice"),
        Channel::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.sqlstate(), "28000");
    assert!(err.hint().is_some());
}

/// A client that answers AuthenticationCleartextPassword with `answer` (the payload of
/// its PasswordMessage), as every Redshift driver does.
async fn cleartext(
    auth: &ClientAuth,
    user: &str,
    answer: &[u8],
) -> Result<Option<String>, ClientAuthError> {
    let (server, client) = duplex(4096);
    let mut server = PgStream::new(server);
    let answer = answer.to_vec();
    let client = tokio::spawn(async move {
        let mut stream = PgStream::new(client);
        let (code, _) = read_r(&mut stream).await;
        assert_eq!(code, 3, "AuthenticationCleartextPassword");
        let mut out = BytesMut::new();
        out.extend_from_slice(b"p");
        out.extend_from_slice(&(answer.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&answer);
        stream.write_message(&out).await.unwrap();
        stream.flush().await.unwrap();
        stream
    });
    let result = authenticate(auth, &mut server, Some(user), Channel::default()).await;
    drop(client.await.unwrap());
    result
}

#[tokio::test]
async fn cleartext_passwords_against_scram_verifiers() {
    let text = format!("alice:{}\n", hash_password("s3cret"));
    let auth = ClientAuth::password(ScramUsers::parse(&text).unwrap()).unwrap();
    assert_eq!(
        cleartext(&auth, "alice", b"s3cret\0")
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    let wrong = cleartext(&auth, "alice", b"nope\0").await.unwrap_err();
    let unknown = cleartext(&auth, "mallory", b"s3cret\0").await.unwrap_err();
    let empty = cleartext(&auth, "alice", b"\0").await.unwrap_err();
    for err in [&wrong, &unknown, &empty] {
        assert_eq!(err.sqlstate(), "28P01");
    }
    assert_eq!(
        wrong.to_string(),
        "password authentication failed for user \"alice\""
    );
    assert_eq!(
        unknown.to_string(),
        "password authentication failed for user \"mallory\""
    );
    assert!(matches!(
        unknown,
        ClientAuthError::Password { known: false, .. }
    ));
    assert!(matches!(
        wrong,
        ClientAuthError::Password { known: true, .. }
    ));
    let broken = cleartext(&auth, "alice", b"s3cret").await.unwrap_err();
    assert_eq!(broken.sqlstate(), "08P01");
    assert!(
        broken.to_string().contains("invalid password packet size"),
        "{broken}"
    );
}

/// Over a connection with binding data `END_POINT`: the client reads the offer, picks -PLUS
/// if offered and binds to `client_binding`; returns the mechanisms offered.
async fn bound(
    auth: &ClientAuth,
    end_point: Option<&[u8]>,
    client_binding: Vec<u8>,
) -> (Vec<String>, Result<Option<String>, ClientAuthError>) {
    let (server, client) = duplex(4096);
    let mut server = PgStream::new(server);
    let client = tokio::spawn(async move {
        let mut stream = PgStream::new(client);
        let (code, data) = read_r(&mut stream).await;
        assert_eq!(code, 10);
        let offered: Vec<String> = data
            .split(|&b| b == 0)
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect();
        let plus = offered.iter().any(|m| m == MECHANISM_PLUS);
        let (mechanism, binding) = if plus {
            (
                MECHANISM_PLUS,
                ChannelBinding::tls_server_end_point(client_binding),
            )
        } else {
            (MECHANISM, ChannelBinding::unsupported())
        };
        let mut scram = ScramSha256::new(b"s3cret", binding);
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(mechanism, scram.message(), &mut out).unwrap();
        stream.write_message(&out).await.unwrap();
        let (code, data) = read_r(&mut stream).await;
        assert_eq!(code, 11);
        scram.update(&data).unwrap();
        out.clear();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        stream.write_message(&out).await.unwrap();
        let _ = stream.read_message(4096).await;
        offered
    });
    let channel = Channel {
        certificate: None,
        end_point,
    };
    let result = authenticate(auth, &mut server, Some("alice"), channel).await;
    drop(server);
    (client.await.unwrap(), result)
}

#[tokio::test]
async fn scram_plus_binds_to_this_connections_certificate() {
    let auth = users("s3cret");
    let end_point = [0x5a; 32];
    let (offered, result) = bound(&auth, Some(&end_point), end_point.to_vec()).await;
    assert_eq!(offered, [MECHANISM_PLUS, MECHANISM]);
    assert_eq!(result.unwrap().as_deref(), Some("alice"));

    // A client served another certificate (a man in the middle's) binds to its hash.
    let (_, result) = bound(&auth, Some(&end_point), vec![0x11; 32]).await;
    let err = result.unwrap_err();
    assert_eq!(err.sqlstate(), "28000");
    assert_eq!(err.to_string(), "SCRAM channel binding check failed");
    assert_eq!(err.metric_reason(), Some("client_channel_binding"));
    assert!(err.hint().is_some());

    // Plain text: only SCRAM-SHA-256 is offered, and it works.
    let (offered, result) = bound(&auth, None, Vec::new()).await;
    assert_eq!(offered, [MECHANISM]);
    assert_eq!(result.unwrap().as_deref(), Some("alice"));
}

/// Sends SASLInitialResponse `mechanism` with `first` and returns the server's verdict.
async fn first_message(
    auth: &ClientAuth,
    end_point: Option<&[u8]>,
    mechanism: &'static str,
    first: &'static [u8],
) -> ClientAuthError {
    let (server, client) = duplex(4096);
    let mut server = PgStream::new(server);
    let client = tokio::spawn(async move {
        let mut stream = PgStream::new(client);
        read_r(&mut stream).await;
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(mechanism, first, &mut out).unwrap();
        stream.write_message(&out).await.unwrap();
        stream
    });
    let channel = Channel {
        certificate: None,
        end_point,
    };
    let err = authenticate(auth, &mut server, Some("alice"), channel)
        .await
        .unwrap_err();
    drop(client.await.unwrap());
    err
}

#[tokio::test]
async fn binding_claims_on_plain_text_and_downgrades_are_refused() {
    let auth = users("s3cret");
    // A p= claim on plain text, with either mechanism name.
    let err = first_message(&auth, None, MECHANISM, b"p=tls-server-end-point,,n=,r=abc").await;
    assert_eq!(err.sqlstate(), "08P01");
    assert!(
        err.to_string().contains("includes channel binding data"),
        "{err}"
    );
    let err = first_message(
        &auth,
        None,
        MECHANISM_PLUS,
        b"p=tls-server-end-point,,n=,r=abc",
    )
    .await;
    assert_eq!(err.sqlstate(), "08P01");
    assert!(
        err.to_string()
            .contains("invalid SASL authentication mechanism"),
        "{err}"
    );
    // y over TLS where -PLUS was offered: the offer was stripped on the way.
    let err = first_message(&auth, Some(&[1; 32]), MECHANISM, b"y,,n=,r=abc").await;
    assert_eq!(err.sqlstate(), "28000");
    assert!(err.to_string().contains("negotiation error"), "{err}");
}
