//! Step 1: the client's first packets, up to its StartupMessage. SSLRequest gets `S` and a
//! TLS handshake when client TLS is configured, else `N`; a client that opens with a TLS
//! handshake instead (direct TLS, libpq 17's `sslnegotiation=direct`) is served TLS at once
//! when client TLS is configured, and must negotiate ALPN `postgresql`; GSSENCRequest always
//! gets `N`; a CancelRequest goes to the server that owns the key, or to the peer replicas
//! (`crate::cancel`), and the connection is closed. All of it within `--startup-timeout` of the accept.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Outcome, Session, Summary};
use crate::cancel::ClientCancel;
use crate::client::tls::ClientTls;
use crate::net::pg_stream::StartupReadError;
use crate::protocol::startup::{self, ALPN_PROTOCOL, StartupError, TLS_HANDSHAKE_RECORD};
use crate::protocol::{CancelKey, ErrorResponse, FirstPacket, StartupParams, messages, sqlstate};

/// What the negotiation produced.
enum Negotiated {
    Startup(StartupParams),
    Cancel(CancelKey),
    Gone,
}

/// Why the negotiation ended without a StartupMessage.
#[derive(Debug, thiserror::Error)]
enum NegotiationError {
    #[error(transparent)]
    Packet(#[from] StartupError),
    #[error("{0} sent twice: send it once, before the StartupMessage")]
    Repeated(&'static str),
    #[error("connection lost during startup: {0}")]
    Io(#[from] std::io::Error),
    #[error("client TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// PostgreSQL 17's rule: a direct handshake must agree on ALPN `postgresql`, so a TLS
    /// client of another protocol is not taken for a PostgreSQL one. Sent inside TLS.
    #[error(
        "received direct SSL connection request without ALPN protocol negotiation extension: a direct TLS client must offer ALPN \"postgresql\" (libpq 17 does with sslnegotiation=direct)"
    )]
    NoAlpn,
}

impl From<StartupReadError> for NegotiationError {
    fn from(e: StartupReadError) -> NegotiationError {
        match e {
            StartupReadError::Packet(e) => NegotiationError::Packet(e),
            StartupReadError::Io(e) => NegotiationError::Io(e),
        }
    }
}

impl NegotiationError {
    /// `0A000` for a protocol version the proxy does not speak, `08P01` for every other
    /// broken negotiation.
    fn sqlstate(&self) -> &'static str {
        match self {
            NegotiationError::Packet(e) => e.sqlstate(),
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Runs the negotiation within `--startup-timeout` and turns every ending but a
    /// StartupMessage into the connection's summary.
    pub(super) async fn negotiate(&mut self) -> Result<StartupParams, Summary> {
        let timeout = self.ctx.startup_timeout;
        let tls = self.ctx.client.tls.clone();
        let negotiated = tokio::time::timeout(timeout, self.first_packets(tls.as_deref())).await;
        let error = match negotiated {
            Ok(Ok(Negotiated::Startup(params))) => return Ok(params),
            Ok(Ok(Negotiated::Gone)) => return Err(Summary::new(Outcome::NoStartup)),
            Ok(Ok(Negotiated::Cancel(key))) => {
                // A key of another replica goes to the peers in a task of its own: the
                // client's connection closes now either way, as PostgreSQL closes it.
                match self.ctx.cancel.client_cancel(key).await {
                    ClientCancel::Done(outcome) => {
                        tracing::info!(outcome = outcome.as_str(), "cancel request");
                    }
                    ClientCancel::Forwarding => {
                        tracing::debug!(
                            "cancel request for a key this replica did not issue: asking the peers"
                        );
                    }
                }
                self.client.close().await;
                return Err(Summary::new(Outcome::Cancel));
            }
            Err(_) => {
                let message = format!(
                    "no startup packet received within {timeout:?} (--startup-timeout): the client must send its StartupMessage after connecting"
                );
                let error = ErrorResponse::fatal(sqlstate::PROTOCOL_VIOLATION, message);
                return Err(self.refuse(Outcome::ProtocolError, error).await);
            }
            Ok(Err(NegotiationError::Io(e))) => {
                tracing::debug!(error = %e, "client left during startup");
                return Err(Summary::new(Outcome::NoStartup));
            }
            Ok(Err(NegotiationError::Handshake(e))) => {
                // Nothing can be sent: the client expects TLS and the TLS session failed.
                tracing::info!(error = %e, "client TLS handshake failed");
                return Err(Summary::new(Outcome::ProtocolError));
            }
            Ok(Err(e)) => e,
        };
        let response = ErrorResponse::fatal(error.sqlstate(), error.to_string());
        Err(self.refuse(Outcome::ProtocolError, response).await)
    }

    /// Reads first packets until the StartupMessage or a CancelRequest.
    async fn first_packets(
        &mut self,
        tls: Option<&ClientTls>,
    ) -> Result<Negotiated, NegotiationError> {
        let mut ssl_seen = false;
        let mut gss_seen = false;
        if let Some(tls) = tls {
            match self.client.peek_first_byte().await? {
                None => return Ok(Negotiated::Gone),
                Some(TLS_HANDSHAKE_RECORD) => {
                    self.direct_tls(tls).await?;
                    // A later SSLRequest inside this TLS session is a repeat.
                    ssl_seen = true;
                }
                // A startup packet: its first byte stays buffered for `read_startup`.
                Some(_) => {}
            }
        }
        loop {
            let Some(packet) = self.client.read_startup().await? else {
                return Ok(Negotiated::Gone);
            };
            match startup::parse_first_packet(&packet)? {
                FirstPacket::SslRequest if ssl_seen => {
                    return Err(NegotiationError::Repeated("SSLRequest"));
                }
                FirstPacket::GssEncRequest if gss_seen => {
                    return Err(NegotiationError::Repeated("GSSENCRequest"));
                }
                FirstPacket::SslRequest => {
                    ssl_seen = true;
                    match tls {
                        Some(tls) if !self.client.get_ref().is_tls() => {
                            // `read_startup` reads exactly one packet, so no byte sent
                            // before the handshake can be taken as if it were encrypted.
                            self.client
                                .write_message(&[messages::ACCEPT_ENCRYPTION])
                                .await?;
                            self.client.flush().await?;
                            let handshake = tls.handshake();
                            self.client
                                .get_mut()
                                .start_tls(handshake.acceptor())
                                .await
                                .map_err(NegotiationError::Handshake)?;
                            self.end_point = handshake.end_point();
                        }
                        _ => self.refuse_encryption().await?,
                    }
                }
                FirstPacket::GssEncRequest => {
                    gss_seen = true;
                    self.refuse_encryption().await?;
                }
                FirstPacket::Cancel(key) => return Ok(Negotiated::Cancel(key)),
                FirstPacket::Startup(params) => return Ok(Negotiated::Startup(params)),
            }
        }
    }

    /// Serves TLS to a client whose first byte opened a handshake. The byte already read is
    /// handed to rustls; then the handshake must have agreed on ALPN `postgresql`.
    async fn direct_tls(&mut self, tls: &ClientTls) -> Result<(), NegotiationError> {
        let handshake = tls.handshake();
        let read_ahead = self.client.take_read_ahead();
        self.client
            .get_mut()
            .start_direct_tls(handshake.config(), &read_ahead)
            .await
            .map_err(NegotiationError::Handshake)?;
        if self.client.get_ref().alpn_protocol() != Some(ALPN_PROTOCOL) {
            return Err(NegotiationError::NoAlpn);
        }
        self.end_point = handshake.end_point();
        tracing::debug!("direct TLS handshake");
        Ok(())
    }

    /// Answers `N`: the client goes on without (further) encryption.
    async fn refuse_encryption(&mut self) -> std::io::Result<()> {
        self.client
            .write_message(&[messages::REFUSE_ENCRYPTION])
            .await?;
        self.client.flush().await
    }
}
