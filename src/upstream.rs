//! The connection to the server: TCP with a timeout, keepalive and no Nagle delay; the
//! SSLRequest and rustls handshake; the StartupMessage; the password exchange; and the
//! greeting up to the first ReadyForQuery, collected to be forwarded to the client untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroize;

use crate::auth::{AuthError, AuthStep, PasswordAuthenticator};
use crate::protocol::error_response::{self, ErrorResponse};
use crate::protocol::frame::{FrameHeader, HEADER_LEN};
use crate::protocol::{CancelKey, parse_auth_request};
use crate::read_ahead::ReadAhead;
use crate::tls::{SslMode, describe_handshake_error};

/// Largest message accepted from the server before the relay starts. Login messages are
/// small; a huge length there means the peer is not a PostgreSQL server.
const MAX_LOGIN_MESSAGE_LEN: usize = 1 << 20;

/// TCP keepalive: notice a dead server (or a NAT that forgot the flow) within minutes, not
/// the kernel's default two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Where and how to reach one server.
#[derive(Debug, Clone)]
pub struct UpstreamEndpoint {
    /// Host name or address, also the TLS server name (SNI).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// How the certificate is checked.
    pub sslmode: SslMode,
    /// The rustls configuration for `sslmode`; `None` exactly when `sslmode` is `disable`.
    pub tls: Option<Arc<ClientConfig>>,
    /// How long TCP connect, the TLS handshake and the login together may take.
    pub connect_timeout: Duration,
}

impl UpstreamEndpoint {
    /// `host:port`, as users write it in messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The byte stream to the server: TLS unless `sslmode=disable`.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain TCP (`sslmode=disable`).
    Plain(TcpStream),
    /// TLS over TCP, the socket read ahead in large chunks (see `read_ahead`).
    Tls(Box<TlsStream<ReadAhead<TcpStream>>>),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why the proxy could not open a session on the server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The host name does not resolve.
    #[error("cannot resolve the server's host name \"{host}\": {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address accepted the TCP connection.
    #[error(
        "cannot connect to the server at {address}: {source}; check the host, the port and that security groups or firewalls let this machine in"
    )]
    Connect {
        /// `host:port`.
        address: String,
        /// The last connect error.
        source: io::Error,
    },
    /// TCP connect and TLS handshake took longer than `--connect-timeout`.
    #[error(
        "the server at {address} did not answer within {timeout:?} (--connect-timeout): check the host, port and network path"
    )]
    Timeout {
        /// `host:port`.
        address: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The server answered SSLRequest with something other than `S`.
    #[error(
        "the server at {address} refused TLS: Redshift always offers TLS, so check that {address} is the cluster endpoint; for a local server without TLS use sslmode=disable"
    )]
    TlsRefused {
        /// `host:port`.
        address: String,
    },
    /// The TLS handshake failed; the message says which check and how to fix it.
    #[error("TLS with the server at {address} failed: {message}")]
    Handshake {
        /// `host:port`.
        address: String,
        /// What failed and what to do.
        message: String,
    },
    /// The server's ErrorResponse during login (wrong password, unknown database, …),
    /// forwarded to the client as the server sent it.
    #[error("the server refused the login: {sqlstate} {message}")]
    Server {
        /// Bytes to forward to the client: the greeting so far, then the ErrorResponse.
        forward: BytesMut,
        /// The server's SQLSTATE.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The server asked for something the proxy cannot answer.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The server broke the protocol or closed during login.
    #[error("the server at {address} broke off the login: {why}")]
    Protocol {
        /// `host:port`.
        address: String,
        /// What happened.
        why: String,
    },
}

impl UpstreamError {
    /// The ErrorResponse the client gets for a failure the proxy owns, or `None` when the
    /// server's own bytes are forwarded instead.
    pub fn client_error(&self) -> Option<ErrorResponse> {
        let code = match self {
            UpstreamError::Server { .. } => return None,
            UpstreamError::Auth(_) => "28000",
            UpstreamError::Protocol { .. } => "08006",
            _ => "08001",
        };
        Some(ErrorResponse::fatal(code, self.to_string()))
    }

    /// A short, fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Resolve { .. } => "resolve",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::TlsRefused { .. } => "tls_refused",
            UpstreamError::Handshake { .. } => "tls_handshake",
            UpstreamError::Server { .. } => "server_error",
            UpstreamError::Auth(_) => "auth_method",
            UpstreamError::Protocol { .. } => "protocol",
        }
    }
}

/// Opens TCP (and TLS unless `sslmode=disable`) to the server within `connect_timeout`.
pub async fn connect(endpoint: &UpstreamEndpoint) -> Result<UpstreamStream, UpstreamError> {
    within_connect_timeout(endpoint, connect_inner(endpoint)).await
}

/// Connects and logs in (see `login`) within one `connect_timeout`: a server, or a load
/// balancer in front of it, that completes the handshake and then says nothing must not hold
/// a session (and its `--max-connections` slot) forever.
pub async fn connect_and_login(
    endpoint: &UpstreamEndpoint,
    params: &[(String, String)],
    auth: &mut PasswordAuthenticator,
) -> Result<(UpstreamStream, Greeting), UpstreamError> {
    let address = endpoint.address();
    within_connect_timeout(endpoint, async {
        let mut server = connect_inner(endpoint).await?;
        let greeting = login(&mut server, &address, params, auth).await?;
        Ok((server, greeting))
    })
    .await
}

async fn within_connect_timeout<T>(
    endpoint: &UpstreamEndpoint,
    work: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(endpoint.connect_timeout, work)
        .await
        .map_err(|_| UpstreamError::Timeout {
            address: endpoint.address(),
            timeout: endpoint.connect_timeout,
        })?
}

async fn connect_inner(endpoint: &UpstreamEndpoint) -> Result<UpstreamStream, UpstreamError> {
    let tcp = connect_tcp(endpoint).await?;
    let Some(tls) = &endpoint.tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    start_tls(tcp, endpoint, tls.clone()).await
}

async fn connect_tcp(endpoint: &UpstreamEndpoint) -> Result<TcpStream, UpstreamError> {
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| UpstreamError::Resolve {
                host: endpoint.host.clone(),
                source,
            })?
            .collect();
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tune_socket(&stream);
                return Ok(stream);
            }
            Err(e) => last_error = e,
        }
    }
    Err(UpstreamError::Connect {
        address: endpoint.address(),
        source: last_error,
    })
}

/// TCP_NODELAY (the protocol is request/response: Nagle would add 40 ms stalls) and keepalive.
fn tune_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

async fn start_tls(
    mut tcp: TcpStream,
    endpoint: &UpstreamEndpoint,
    config: Arc<ClientConfig>,
) -> Result<UpstreamStream, UpstreamError> {
    let address = endpoint.address();
    let lost = |e: io::Error| UpstreamError::Protocol {
        address: endpoint.address(),
        why: format!("connection lost while asking for TLS: {e}"),
    };
    let mut request = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(lost)?;
    let answer = tcp.read_u8().await.map_err(lost)?;
    if answer != b'S' {
        return Err(UpstreamError::TlsRefused { address });
    }
    let server_name =
        ServerName::try_from(endpoint.host.clone()).map_err(|e| UpstreamError::Handshake {
            address: address.clone(),
            message: format!("\"{}\" is not a valid TLS server name: {e}", endpoint.host),
        })?;
    let tls = TlsConnector::from(config)
        .connect(server_name, ReadAhead::new(tcp))
        .await
        .map_err(|e| UpstreamError::Handshake {
            address,
            message: describe_handshake_error(&e, &endpoint.host, endpoint.sslmode),
        })?;
    Ok(UpstreamStream::Tls(Box::new(tls)))
}

/// What a successful login leaves: the greeting to forward and the session's cancel key.
#[derive(Debug)]
pub struct Greeting {
    /// AuthenticationOk, ParameterStatus, BackendKeyData, NoticeResponse … ReadyForQuery,
    /// exactly as the server sent them.
    pub forward: BytesMut,
    /// Any bytes the server sent after ReadyForQuery (normally none); the relay sends them first.
    pub after: BytesMut,
    /// The server's BackendKeyData, which a CancelRequest must name.
    pub backend_key: Option<CancelKey>,
    /// The `server_version` ParameterStatus, for logs.
    pub server_version: Option<String>,
}

/// Sends the StartupMessage with `params`, answers the server's authentication requests with
/// `auth`, and collects the greeting up to ReadyForQuery.
pub async fn login<S>(
    stream: &mut S,
    address: &str,
    params: &[(String, String)],
    auth: &mut PasswordAuthenticator,
) -> Result<Greeting, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let lost = |e: io::Error| UpstreamError::Protocol {
        address: address.to_owned(),
        why: if e.kind() == io::ErrorKind::UnexpectedEof {
            "the server closed the connection".to_owned()
        } else {
            e.to_string()
        },
    };
    let mut out = WipedOnDrop(BytesMut::with_capacity(512));
    let out = &mut out.0;
    let startup = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    frontend::startup_message(startup, out).map_err(|e| UpstreamError::Protocol {
        address: address.to_owned(),
        why: format!("startup parameters cannot be encoded: {e}"),
    })?;
    stream.write_all(out).await.map_err(lost)?;

    let mut reader = MessageReader::default();
    let mut forward = BytesMut::new();
    let mut authenticated = false;
    let mut backend_key = None;
    let mut server_version = None;
    loop {
        let header = reader.next(stream).await.map_err(lost)?;
        let payload = &reader.buf[HEADER_LEN..HEADER_LEN + header.payload_len()];
        match header.tag {
            b'R' if !authenticated => {
                let request = parse_auth_request(payload).map_err(|e| UpstreamError::Protocol {
                    address: address.to_owned(),
                    why: e.to_string(),
                })?;
                out.clear();
                match auth.answer(&request, out)? {
                    AuthStep::Reply => stream.write_all(out).await.map_err(lost)?,
                    AuthStep::Wait => {}
                    AuthStep::Done => {
                        authenticated = true;
                        forward.extend_from_slice(reader.current(header));
                    }
                }
            }
            b'E' => {
                let sqlstate = error_response::field(payload, b'C')
                    .unwrap_or("XX000")
                    .to_owned();
                let message = error_response::field(payload, b'M')
                    .unwrap_or("")
                    .to_owned();
                forward.extend_from_slice(reader.current(header));
                return Err(UpstreamError::Server {
                    forward,
                    sqlstate,
                    message,
                });
            }
            b'K' if authenticated && payload.len() >= 8 => {
                backend_key = Some(CancelKey {
                    process_id: i32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]),
                    secret_key: i32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]),
                });
                forward.extend_from_slice(reader.current(header));
            }
            b'S' if authenticated => {
                if let Some(version) = parameter_status(payload, "server_version") {
                    server_version = Some(version.to_owned());
                }
                forward.extend_from_slice(reader.current(header));
            }
            b'Z' if authenticated => {
                forward.extend_from_slice(reader.current(header));
                reader.consume(header);
                return Ok(Greeting {
                    forward,
                    after: reader.buf,
                    backend_key,
                    server_version,
                });
            }
            // NoticeResponse and NegotiateProtocolVersion may come at any time; pass them on.
            b'N' | b'v' => forward.extend_from_slice(reader.current(header)),
            // After AuthenticationOk the greeting goes to the client as the server sent it.
            _ if authenticated => forward.extend_from_slice(reader.current(header)),
            other => {
                return Err(UpstreamError::Protocol {
                    address: address.to_owned(),
                    why: format!(
                        "unexpected message '{}' before authentication finished",
                        char::from(other)
                    ),
                });
            }
        }
        reader.consume(header);
    }
}

/// The login's output buffer, overwritten when the login ends however it ends: a cleartext
/// answer puts the password itself in it, and an MD5 answer something as good as it.
struct WipedOnDrop(BytesMut);

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        // Bytes past the current length (earlier, longer answers) are wiped too.
        let capacity = self.0.capacity();
        self.0.resize(capacity, 0);
        self.0.as_mut().zeroize();
    }
}

/// The value of a ParameterStatus payload if it is for `name`.
fn parameter_status<'a>(payload: &'a [u8], name: &str) -> Option<&'a str> {
    let mut parts = payload.split(|&b| b == 0);
    let key = parts.next()?;
    let value = parts.next()?;
    (key == name.as_bytes())
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Reads whole tagged messages during login; the buffer keeps what arrived past them.
#[derive(Default)]
struct MessageReader {
    buf: BytesMut,
}

impl MessageReader {
    /// Waits for one complete message at the front of the buffer and returns its header.
    async fn next<S>(&mut self, stream: &mut S) -> io::Result<FrameHeader>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        loop {
            if let Some(header) = FrameHeader::parse(&self.buf) {
                let header = header.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if header.len as usize > MAX_LOGIN_MESSAGE_LEN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a login message of {} bytes is too long: this is not a PostgreSQL server",
                            header.len
                        ),
                    ));
                }
                if self.buf.len() > header.len as usize {
                    return Ok(header);
                }
            }
            self.buf.reserve(8 * 1024);
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The whole current message, header included.
    fn current(&self, header: FrameHeader) -> &[u8] {
        &self.buf[..1 + header.len as usize]
    }

    /// Drops the current message from the buffer.
    fn consume(&mut self, header: FrameHeader) {
        self.buf.advance(1 + header.len as usize);
    }
}

/// Which client startup parameters go to the server: all except `user` (replaced by the
/// database user) and `_pq_.*` protocol extensions, which would change the framing the relay
/// relies on. Returns the parameters to send and the dropped extension names.
pub fn upstream_startup_params<'a>(
    client: &'a [(String, String)],
    user: &str,
    database: &str,
) -> (Vec<(String, String)>, Vec<&'a str>) {
    let mut params = vec![
        ("user".to_owned(), user.to_owned()),
        ("database".to_owned(), database.to_owned()),
    ];
    let mut dropped = Vec::new();
    for (name, value) in client {
        match name.as_str() {
            "user" | "database" => {}
            extension if extension.starts_with("_pq_.") => dropped.push(extension),
            _ => params.push((name.clone(), value.clone())),
        }
    }
    (params, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_params_replace_user_and_drop_extensions() {
        let client = vec![
            ("user".to_owned(), "anything".to_owned()),
            ("database".to_owned(), "dev".to_owned()),
            ("application_name".to_owned(), "psql".to_owned()),
            ("_pq_.compression".to_owned(), "on".to_owned()),
            ("client_protocol_version".to_owned(), "2".to_owned()),
        ];
        let (params, dropped) = upstream_startup_params(&client, "IAM:alice", "prod");
        assert_eq!(
            params,
            vec![
                ("user".to_owned(), "IAM:alice".to_owned()),
                ("database".to_owned(), "prod".to_owned()),
                ("application_name".to_owned(), "psql".to_owned()),
                ("client_protocol_version".to_owned(), "2".to_owned()),
            ]
        );
        assert_eq!(dropped, vec!["_pq_.compression"]);
    }

    #[test]
    fn parameter_status_reads_the_named_value() {
        assert_eq!(
            parameter_status(b"server_version\08.0.2\0", "server_version"),
            Some("8.0.2")
        );
        assert_eq!(parameter_status(b"TimeZone\0UTC\0", "server_version"), None);
    }
}
