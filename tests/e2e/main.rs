//! Every end-to-end and property test of the proxy, in one test binary: each suite is a
//! module here, and they share `support/` and one PostgreSQL server per run
//! (`support::pg::PgServer::shared()`, started by the first test that needs it). One binary
//! links the crate and its AWS SDK dependencies once, instead of once per suite.
//!
//! Run one suite with `cargo test --test e2e SUITE::` (e.g. `cargo test --test e2e faults::`),
//! one test with its full name. docs/development.md describes each suite.

mod support;

mod aws_chain;
mod cancel_peers;
mod client_auth_properties;
mod client_security;
mod client_tls_binding;
mod compressed_link;
mod fake_aws_wire;
mod faults;
mod iam_credentials;
mod log_safety;
mod negotiation;
mod operations;
mod protocol_properties;
mod proxy_postgres;
mod redshift_drivers;
mod redshift_scripted;
mod sso_login;
mod warm_sessions;
