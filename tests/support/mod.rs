//! Shared pieces of the end-to-end tests: certificates made at test time, a real PostgreSQL
//! server with TLS and password roles, the proxy started in-process, and a scripted
//! Redshift-like upstream. Each test binary uses only some of them.
#![allow(dead_code)]

pub mod certs;
pub mod eventually;
pub mod fake_aws;
pub mod http_get;
pub mod pg;
pub mod proxy;
pub mod proxy_process;
pub mod scripted;
