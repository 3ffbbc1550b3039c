//! A tiny HTTP/1.1 client for the proxy's metrics and health endpoint, so the tests read it
//! exactly as Prometheus and the kubelet do, over a socket.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method path` to `port` on 127.0.0.1; returns (status, body), or `None` when the
/// endpoint cannot be reached.
pub async fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// `GET path`, panicking when the endpoint is unreachable.
pub async fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path)
        .await
        .unwrap_or_else(|| panic!("GET {path} on port {port} failed"))
}

/// The value of the sample whose line starts with `prefix` (name and labels), if present.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
