//! What the suites share: certificates made at test time, a real PostgreSQL server with TLS
//! and password roles, the proxy started in-process or as the real binary (and the psql and
//! tokio-postgres runs the client-side suites make against it), Python and Java drivers
//! (redshift_connector, psycopg, pgjdbc) run as child processes, a scripted
//! Redshift-like upstream, a Redshift-flavoured upstream in front of PostgreSQL, a fake of the
//! AWS credential APIs, a fake of IAM Identity Center's SSO OIDC service, and the protocol
//! properties the fuzz targets check too.

pub mod aws_chain_proxy;
pub mod balancer;
pub mod certs;
pub mod client_side;
pub mod driver_programs;
pub mod eventually;
pub mod fake_aws;
pub mod fake_sso_oidc;
pub mod http_get;
pub mod pg;
pub mod protocol_checks;
pub mod proxy;
pub mod proxy_process;
pub mod redshift_connector;
pub mod redshift_upstream;
pub mod replicas;
pub mod scripted;
