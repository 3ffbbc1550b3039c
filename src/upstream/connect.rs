//! The connection to the server: TCP with a timeout, keepalive and no Nagle delay, then the
//! SSLRequest and the rustls handshake, all within `--connect-timeout`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::auth::PasswordAuthenticator;
use super::compression::ServerLink;
use super::login::{Greeting, login};
use super::read_ahead::ReadAhead;
use super::tls::describe_handshake_error;
use super::{UpstreamEndpoint, UpstreamError};
use crate::net::either::MaybeTls;
use crate::net::pg_stream::PgStream;

/// TCP keepalive: notice a dead server (or a NAT that forgot the flow) within minutes, not
/// the kernel's default two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The byte stream to the server: TLS unless `sslmode=disable`, the socket under TLS read
/// ahead in large chunks (see `read_ahead`).
pub type UpstreamStream = MaybeTls<TcpStream, TlsStream<ReadAhead<TcpStream>>>;

/// The server connection a session reads: plain frames whether or not the server compresses
/// (see `compression`), the wire bytes counted.
pub type ServerStream = ServerLink<UpstreamStream>;

/// True when the server's socket has nothing to read and is not at its end, asked of the
/// kernel without waiting (a peek). The runtime learns of a peer's bytes or close only when
/// it next polls the system, so a warm session checked just before its handoff is asked
/// directly; [`PgStream::is_quiet`] then covers what TLS or the framing already buffered.
pub fn socket_is_quiet(stream: &UpstreamStream) -> bool {
    let tcp = match stream {
        MaybeTls::Plain(tcp) => tcp,
        MaybeTls::Tls(tls) => tls.get_ref().0.get_ref(),
        MaybeTls::Closed => return false,
    };
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(tcp).peek(&mut byte),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

/// Whether the TLS session with the server was resumed from a ticket of an earlier one
/// (`None` without TLS), for the debug log and the tests of the shared session cache.
pub fn tls_resumed(stream: &UpstreamStream) -> Option<bool> {
    stream
        .tls()
        .map(|tls| tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
}

/// Opens TCP (and TLS unless `sslmode=disable`) to the server within `connect_timeout`.
pub async fn connect(endpoint: &UpstreamEndpoint) -> Result<UpstreamStream, UpstreamError> {
    within_connect_timeout(endpoint, connect_inner(endpoint)).await
}

/// Connects and logs in (see `login`) within one `connect_timeout`: a server, or a load
/// balancer in front of it, that completes the handshake and then says nothing must not hold
/// a session (and its `--max-connections` slot) forever. With `compression` on, the
/// StartupMessage also asks the server to compress, and the link decodes what it sends from
/// the first byte on, so `'z'` and compressed blocks may come at any point of the login.
pub async fn connect_and_login(
    endpoint: &UpstreamEndpoint,
    params: &[(String, String)],
    auth: &mut PasswordAuthenticator,
) -> Result<(PgStream<ServerStream>, Greeting), UpstreamError> {
    let address = endpoint.address();
    within_connect_timeout(endpoint, async {
        let stream = connect_inner(endpoint).await?;
        let wire = endpoint.wire.clone();
        let mut params = params.to_vec();
        let link = match endpoint.compression.startup_parameter() {
            None => ServerLink::plain(stream, wire),
            Some((name, value)) => {
                params.push((name.to_owned(), value.to_owned()));
                ServerLink::decoding(stream, wire)
            }
        };
        let mut server = PgStream::new(link);
        let greeting = login(&mut server, &address, &params, auth).await?;
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
        return Ok(MaybeTls::Plain(tcp));
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
    tracing::debug!(
        resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        version = ?tls.get_ref().1.protocol_version(),
        "upstream TLS handshake done"
    );
    Ok(MaybeTls::Tls(Box::new(tls)))
}
