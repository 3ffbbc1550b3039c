//! What an operator sees and steers: metrics, health, the HTTP endpoint and the stop sequence.

pub mod health;
pub mod http;
pub mod log_format;
pub mod metrics;
pub(crate) mod process_metrics;
pub mod shutdown;
