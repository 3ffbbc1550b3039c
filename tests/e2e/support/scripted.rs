//! A small scripted upstream that speaks just enough of Redshift's side of the protocol to
//! test what PostgreSQL cannot: the SHA-256 digest challenge (code 13), the identity-provider
//! request (code 14), and Redshift's greeting. It serves one connection over TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// What the scripted server saw from the proxy.
#[derive(Debug, Default)]
pub struct Observed {
    /// StartupMessage parameters, in order.
    pub startup: Vec<(String, String)>,
    /// The payload of the proxy's first answer to the auth request (after type and length).
    pub auth_reply: Option<(u8, Vec<u8>)>,
}

/// A server that asks the proxy `auth_request` (the full `'R'` message) and, if `accept`
/// says the answer is right, sends `greeting` and then serves empty queries until Terminate.
pub struct ScriptedUpstream {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    observed: oneshot::Receiver<Observed>,
}

/// Builds one tagged message.
pub fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl ScriptedUpstream {
    /// Starts serving one connection with `tls` (a server config for `localhost`).
    pub async fn start(
        tls: Arc<rustls::ServerConfig>,
        auth_request: Vec<u8>,
        accept: impl Fn(u8, &[u8]) -> bool + Send + 'static,
        greeting: Vec<u8>,
    ) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut ssl_request = [0u8; 8];
            tcp.read_exact(&mut ssl_request).await.expect("ssl request");
            assert_eq!(
                ssl_request,
                [0, 0, 0, 8, 4, 210, 22, 47],
                "SSLRequest first"
            );
            tcp.write_all(b"S").await.expect("S");
            let mut stream = TlsAcceptor::from(tls)
                .accept(tcp)
                .await
                .expect("tls accept");
            let mut observed = Observed {
                startup: read_startup(&mut stream).await,
                ..Observed::default()
            };
            stream.write_all(&auth_request).await.expect("auth request");
            let Some(reply) = read_message(&mut stream).await else {
                let _ = tx.send(observed);
                return;
            };
            let ok = accept(reply.0, &reply.1);
            observed.auth_reply = Some(reply);
            if !ok {
                let mut error =
                    b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user\0\0"
                        .to_vec();
                error = message(b'E', &error);
                let _ = stream.write_all(&error).await;
                let _ = tx.send(observed);
                return;
            }
            stream.write_all(&greeting).await.expect("greeting");
            let _ = tx.send(observed);
            while let Some((tag, _)) = read_message(&mut stream).await {
                match tag {
                    b'Q' => {
                        let mut out = message(b'I', b"");
                        out.extend(message(b'Z', b"I"));
                        stream.write_all(&out).await.expect("reply");
                    }
                    b'X' => break,
                    _ => {}
                }
            }
            let _ = stream.shutdown().await;
        });
        ScriptedUpstream { port, observed: rx }
    }

    /// What the server saw, once it has answered the login.
    pub async fn observed(self) -> Observed {
        self.observed.await.unwrap_or_default()
    }
}

async fn read_startup<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<(String, String)> {
    let len = stream.read_u32().await.expect("startup length") as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await.expect("startup body");
    assert_eq!(&body[..4], &[0, 3, 0, 0], "protocol 3.0");
    let fields: Vec<String> = body[4..]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8(s.to_vec()).expect("utf-8"))
        .collect();
    fields
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty())
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

/// Field `code` (`b'C'` the SQLSTATE, `b'M'` the message, `b'S'` the severity) of an
/// ErrorResponse or NoticeResponse payload.
pub fn error_field(payload: &[u8], code: u8) -> Option<String> {
    let mut rest = payload;
    while let Some((&tag, tail)) = rest.split_first() {
        if tag == 0 {
            return None;
        }
        let nul = tail.iter().position(|&b| b == 0)?;
        if tag == code {
            return Some(String::from_utf8_lossy(&tail[..nul]).into_owned());
        }
        rest = &tail[nul + 1..];
    }
    None
}

/// Reads one tagged message, or `None` at end of stream.
pub async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await.ok()?;
    let len = stream.read_u32().await.ok()? as usize;
    let mut payload = vec![0u8; len.checked_sub(4)?];
    stream.read_exact(&mut payload).await.ok()?;
    Some((tag, payload))
}

/// Sends a CancelRequest for `key` on a new connection to `port` and waits for the proxy to
/// close it without an answer, as PostgreSQL does; returns how long that took. The close must
/// come within 5 s (the tighter of the bounds the two suites that send cancels had).
pub async fn send_cancel(port: u16, key: redshift_auth_proxy::protocol::CancelKey) -> Duration {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect for the cancel");
    stream
        .write_all(&redshift_auth_proxy::protocol::startup::encode_cancel_request(key))
        .await
        .expect("CancelRequest");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the proxy closes the cancel connection")
        .expect("clean close");
    assert!(rest.is_empty(), "nothing is answered to a cancel request");
    started.elapsed()
}

/// Sends a StartupMessage as a client would.
pub async fn send_startup<S: AsyncWrite + Unpin>(stream: &mut S, params: &[(&str, &str)]) {
    send_startup_version(stream, 0, params).await;
}

/// A StartupMessage for protocol 3.`minor` with `params`: 3.0 as every driver but libpq 18
/// sends, 3.2 as libpq 18 can.
pub async fn send_startup_version<S: AsyncWrite + Unpin>(
    stream: &mut S,
    minor: u16,
    params: &[(&str, &str)],
) {
    let mut body = vec![0, 3];
    body.extend_from_slice(&minor.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    stream.write_all(&packet).await.expect("startup");
}
