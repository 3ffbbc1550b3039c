//! The operator's HTTP endpoint (`docs/operations.md`): `GET /metrics` (Prometheus text),
//! `/startup`, `/liveness`, `/readiness`, and `POST /quitquitquit` when enabled. Health
//! answers come from in-process state only; nothing here dials an upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// The OpenMetrics text format that prometheus-client writes; Prometheus scrapes it as is.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoint serves.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// Lifecycle for the probes.
    pub health: Arc<Health>,
    /// Fired by `POST /quitquitquit`, when enabled.
    pub quit: Option<CancellationToken>,
}

/// The listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for HTTP on {address}: {error} (choose another --http-address, or --http-address off)"
)]
pub struct HttpBindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The OS error.
    pub error: std::io::Error,
}

/// Binds the endpoint; serve it with `serve`.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, HttpBindError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| HttpBindError { address, error })
}

/// Serves HTTP/1 on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, state: HttpState, stop: CancellationToken) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(http = %address, "metrics and health endpoint listening");
    }
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn probe(ok: bool, what: &str) -> Response<Full<Bytes>> {
    let (status, text) = match ok {
        true => (StatusCode::OK, format!("{what}: ok\n")),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: not yet\n"),
        ),
    };
    reply(status, "text/plain; charset=utf-8", text)
}

fn route(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            reply(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.encode())
        }
        (&Method::GET, "/startup") => probe(state.health.is_started(), "startup"),
        (&Method::GET, "/liveness") => probe(true, "liveness"),
        (&Method::GET, "/readiness") => {
            let ready = state.health.is_ready();
            let mut response = probe(ready, "readiness");
            if !ready && state.health.is_draining() {
                *response.body_mut() = Full::new(Bytes::from_static(b"readiness: draining\n"));
            }
            response
        }
        (&Method::POST, "/quitquitquit") => match &state.quit {
            Some(quit) => {
                tracing::info!("POST /quitquitquit: stopping as on SIGTERM");
                quit.cancel();
                reply(StatusCode::OK, text, "stopping\n")
            }
            None => reply(
                StatusCode::NOT_FOUND,
                text,
                "/quitquitquit is disabled: start the proxy with --quitquitquit\n",
            ),
        },
        (_, "/metrics" | "/startup" | "/liveness" | "/readiness" | "/quitquitquit") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, text, "method not allowed\n")
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            text,
            "not found: try /metrics, /startup, /liveness, /readiness\n",
        ),
    }
}
