//! The PostgreSQL v3 messages the proxy itself reads or writes, as pure functions over byte
//! slices: no IO, no connection state. Everything else passes through the relay untouched.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html> and the
//! server's `src/backend/tcop/backend_startup.c` (startup packets) and
//! `src/backend/libpq/auth.c` (authentication requests).

pub mod auth_request;
pub mod error_response;
pub mod frame;
pub mod messages;
pub mod sasl;
pub mod scram;
pub mod sqlstate;
pub mod startup;

pub use auth_request::{AuthRequest, AuthRequestError, parse_auth_request};
pub use error_response::{ErrorResponse, Severity};
pub use frame::{FrameHeader, FrameWalker};
pub use startup::{CancelKey, FirstPacket, StartupError, StartupParams};
