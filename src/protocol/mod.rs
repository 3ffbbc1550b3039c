//! The PostgreSQL v3 messages the proxy itself reads or writes, as pure functions over byte
//! slices: no IO, no connection state. Everything else passes through the relay untouched.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html> and the
//! server's `src/backend/tcop/backend_startup.c` (startup packets) and
//! `src/backend/libpq/auth.c` (authentication requests).

pub mod auth_request;
pub(crate) mod error_response;
pub mod frame;
pub(crate) mod messages;
pub(crate) mod password;
pub(crate) mod sasl;
pub(crate) mod scram;
pub(crate) mod sqlstate;
pub mod startup;

pub use auth_request::{AuthRequest, AuthRequestError, parse_auth_request};
pub use error_response::{ErrorResponse, Severity};
pub use frame::{FrameHeader, FrameWalker};
pub use sasl::{SaslMessageError, parse_sasl_initial_response};
pub use startup::{CancelKey, FirstPacket, StartupError, StartupParams};
