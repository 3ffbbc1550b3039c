//! The login on the server: the StartupMessage, the answers to the server's authentication
//! requests, and the greeting up to the first ReadyForQuery, collected to be forwarded to
//! the client as it is but for BackendKeyData, whose key the session replaces with one the
//! proxy issues (see [`crate::protocol::startup::replace_backend_key`]).

use crate::protocol::sqlstate;
use std::io;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroize;

use super::UpstreamError;
use super::auth::{AuthStep, PasswordAuthenticator};
use super::compression::decompress_error;
use crate::net::pg_stream::{PgStream, ReadError};
use crate::protocol::error_response;
use crate::protocol::startup::BACKEND_KEY_DATA_PAYLOAD_LEN;
use crate::protocol::{CancelKey, parse_auth_request};

/// Largest message accepted from the server before the relay starts. Login messages are
/// small; a huge length there means the peer is not a PostgreSQL server.
const MAX_LOGIN_MESSAGE_LEN: usize = 1 << 20;

/// What a successful login leaves: the greeting to forward and the session's cancel key.
/// Bytes the server sent past ReadyForQuery (normally none) stay in the `PgStream`.
#[derive(Debug)]
pub struct Greeting {
    /// AuthenticationOk, ParameterStatus, BackendKeyData, NoticeResponse … ReadyForQuery,
    /// exactly as the server sent them: complete messages, so the session can replace the
    /// server's key before the client sees it.
    pub forward: BytesMut,
    /// The server's BackendKeyData, which a CancelRequest must name.
    pub backend_key: Option<CancelKey>,
    /// The `server_version` ParameterStatus, for logs.
    pub server_version: Option<String>,
}

/// Sends the StartupMessage with `params`, answers the server's authentication requests with
/// `auth`, and collects the greeting up to ReadyForQuery.
pub async fn login<S>(
    stream: &mut PgStream<S>,
    address: &str,
    params: &[(String, String)],
    auth: &mut PasswordAuthenticator,
) -> Result<Greeting, UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = |why: String| UpstreamError::Protocol {
        address: address.to_owned(),
        why,
    };
    let lost = |e: io::Error| protocol(e.to_string());
    let broken = |e: ReadError| {
        if let ReadError::Io(io) = &e
            && let Some(source) = decompress_error(io)
        {
            return UpstreamError::Compression {
                address: address.to_owned(),
                source: source.clone(),
            };
        }
        protocol(match e {
            ReadError::Closed | ReadError::Truncated => {
                "the server closed the connection".to_owned()
            }
            ReadError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "the server closed the connection".to_owned()
            }
            ReadError::TooLong { len, .. } => format!(
                "a login message of {len} bytes is too long: this is not a PostgreSQL server"
            ),
            other => other.to_string(),
        })
    };
    // The proxy speaks protocol 3.0 and passes no client's `_pq_.*` on, so a
    // NegotiateProtocolVersion answers its own request (`_pq_.compression`): the server
    // does not know the option and will not compress, which the client need not hear of.
    let asked_extension = params.iter().any(|(name, _)| name.starts_with("_pq_."));
    let mut out = WipedOnDrop(BytesMut::with_capacity(512));
    let out = &mut out.0;
    let startup = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    frontend::startup_message(startup, out)
        .map_err(|e| protocol(format!("startup parameters cannot be encoded: {e}")))?;
    stream.write_message(out).await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let mut forward = BytesMut::new();
    let mut authenticated = false;
    let mut backend_key = None;
    let mut server_version = None;
    loop {
        let message = stream
            .read_message(MAX_LOGIN_MESSAGE_LEN)
            .await
            .map_err(broken)?;
        let payload = message.payload();
        match message.header.tag {
            b'R' if !authenticated => {
                let request = parse_auth_request(payload).map_err(|e| protocol(e.to_string()))?;
                out.clear();
                match auth.answer(&request, out)? {
                    AuthStep::Reply => {
                        stream.write_message(out).await.map_err(lost)?;
                        stream.flush().await.map_err(lost)?;
                    }
                    AuthStep::Wait => {}
                    AuthStep::Done => {
                        authenticated = true;
                        forward.extend_from_slice(message.bytes);
                    }
                }
            }
            b'E' => {
                let sqlstate = error_response::field(payload, b'C')
                    .unwrap_or(sqlstate::INTERNAL_ERROR)
                    .to_owned();
                let message_text = error_response::field(payload, b'M')
                    .unwrap_or("")
                    .to_owned();
                forward.extend_from_slice(message.bytes);
                return Err(UpstreamError::Server {
                    forward,
                    sqlstate,
                    message: message_text,
                });
            }
            // Only a 3.0 key (two Int32s) can be replaced by the proxy's; anything else
            // would reach the client as the server sent it.
            b'K' if authenticated => {
                if payload.len() != BACKEND_KEY_DATA_PAYLOAD_LEN {
                    return Err(protocol(format!(
                        "a BackendKeyData of {} bytes, not {BACKEND_KEY_DATA_PAYLOAD_LEN}",
                        payload.len()
                    )));
                }
                backend_key = CancelKey::from_payload(payload);
                forward.extend_from_slice(message.bytes);
            }
            b'S' if authenticated => {
                if let Some(version) = parameter_status(payload, "server_version") {
                    server_version = Some(version.to_owned());
                }
                forward.extend_from_slice(message.bytes);
            }
            b'Z' if authenticated => {
                forward.extend_from_slice(message.bytes);
                return Ok(Greeting {
                    forward,
                    backend_key,
                    server_version,
                });
            }
            b'v' if asked_extension => {
                tracing::debug!(
                    "the server does not know the protocol extension the proxy asked for (_pq_.compression); carrying on uncompressed"
                );
            }
            // NoticeResponse and NegotiateProtocolVersion may come at any time; pass them on.
            b'N' | b'v' => forward.extend_from_slice(message.bytes),
            // After AuthenticationOk the greeting goes to the client as the server sent it.
            _ if authenticated => forward.extend_from_slice(message.bytes),
            other => {
                return Err(protocol(format!(
                    "unexpected message '{}' before authentication finished",
                    char::from(other)
                )));
            }
        }
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
