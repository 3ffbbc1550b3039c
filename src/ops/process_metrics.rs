//! The standard process metrics (`process_open_fds`, `process_resident_memory_bytes`,
//! `process_cpu_seconds_total`), read from `/proc/self` at scrape time, so an operator sees
//! the proxy's own footprint beside its traffic. On systems without `/proc` they are absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the process figures on each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

/// Open file descriptors: the entries of `/proc/self/fd`.
pub fn open_fds() -> Option<i64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as i64)
}

/// Resident set size in bytes, from `VmRSS` in `/proc/self/status`.
pub fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU seconds, from fields 14 and 15 of `/proc/self/stat`.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3, so fields 14 and 15 are at 11 and 12.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(fds) = open_fds() {
            let gauge = ConstGauge::new(fds);
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(rss) = resident_memory_bytes() {
            let gauge = ConstGauge::new(rss);
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(cpu) = cpu_seconds() {
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(open_fds().unwrap_or(0) >= 3);
        assert!(resident_memory_bytes().unwrap_or(0) > 1024 * 1024);
        assert!(cpu_seconds().is_some());
    }
}
