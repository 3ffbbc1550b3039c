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
    let result = authenticate(auth, &mut server, Some(user), None).await;
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
        authenticate(&ClientAuth::Trust, &mut server, None, None)
            .await
            .unwrap(),
        None
    );
    let err = authenticate(&ClientAuth::Cert, &mut server, Some("alice"), None)
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
    let result = authenticate(auth, &mut server, Some(user), None).await;
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
