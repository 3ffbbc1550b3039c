//! The client's side of a session: its stream and address, TLS toward it, and how it
//! proves who it is to the proxy.

pub mod auth;
mod der;
pub(crate) mod stream;
pub mod tls;
pub(crate) mod unix_socket;
