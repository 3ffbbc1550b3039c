//! redshift-auth-proxy: a PostgreSQL wire-protocol proxy that logs in to Amazon Redshift
//! with short-lived IAM database credentials, so clients connect without a password.
//!
//! The path of one connection is described in `shared/design.md` section 2; each step has
//! its own module, named after the step.

pub mod auth;
pub mod buffer_pool;
pub mod cancel;
pub mod check;
pub mod client_auth;
pub mod client_stream;
pub mod client_tls;
pub mod config;
pub mod credentials;
pub mod hash_password;
pub mod health;
pub mod http;
pub mod metrics;
pub mod process_metrics;
pub mod protocol;
pub mod read_ahead;
pub mod relay;
pub mod scram_crypto;
pub mod server;
pub mod session;
pub mod setup;
pub mod shutdown;
pub mod target;
pub mod tls;
pub mod unix_socket;
pub mod upstream;
