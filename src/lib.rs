//! redshift-auth-proxy: a PostgreSQL wire-protocol proxy that logs in to Amazon Redshift
//! with short-lived IAM database credentials, so clients connect without a password.
//!
//! # Layout
//!
//! The folders follow one connection, and say which side each module serves.
//!
//! - [`server`] accepts clients, one listener per target, and hands each to a session.
//! - [`session`] serves one connection in steps, a file each: `negotiate` (SSLRequest,
//!   GSSENCRequest, CancelRequest, client TLS), `admit` (limits and client authentication),
//!   `login` (credentials, then the server's login), `greet` (the greeting, the cancel key),
//!   `relay` (the hand-off and the farewell).
//! - [`client`] is the client's side: its stream and address, TLS toward it, and how it
//!   proves who it is (`client::auth`).
//! - [`upstream`] is the server's side: TCP and TLS, the login that answers the server's
//!   authentication request (`upstream::auth`), forwarded cancel requests, and the warm
//!   sessions kept logged in for clients to come (`upstream::warm`).
//! - [`cancel`] routes a client's CancelRequest: to this replica's server when it issued the
//!   key, else to the peer replicas (`--peers`), authenticated with a shared secret.
//! - [`credentials`] fetches and caches the temporary database passwords from AWS.
//! - [`relay`] moves bytes both ways after the login, frame-aware and without copying.
//! - [`net`] holds what both sides share: [`net::pg_stream::PgStream`], the one framed
//!   connection every exchange before the relay uses, and the plain-or-TLS stream.
//! - [`protocol`] is the pure codec: the messages the proxy reads or writes, the SQLSTATE
//!   codes it sends and the SCRAM arithmetic; no IO.
//! - [`config`] and [`target`] turn flags, environment, the config file and target strings
//!   into a checked configuration; [`setup`] turns that into what the listeners serve.
//! - [`ops`] is the operator's side: metrics, health, the HTTP endpoint, the stop sequence.
//! - [`check`] (`--check`), [`hash_password`] (`hash-password`) and [`sso_login`]
//!   (`sso-login`: IAM Identity Center sign-in into the AWS CLI's token cache) are the helper
//!   commands.
//!
//! `docs/architecture.md` walks the same path with the protocol and AWS facts the code
//! depends on.

// Unsafe code is refused except where a block says why it is sound: the terminal settings
// of `hash-password` and one test that reads a wiped buffer.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cancel;
pub mod check;
pub mod client;
pub mod config;
pub mod credentials;
pub mod hash_password;
mod net;
pub mod ops;
pub mod protocol;
mod relay;
pub mod server;
pub mod session;
pub mod setup;
pub mod sso_login;
pub mod target;
pub mod upstream;
