//! The admin server every kinject server runs: `/metrics` (OpenMetrics),
//! `/live`, and `/ready`, which lists what is not ready yet.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

/// What `/ready` reports on.
pub trait Readiness: Send + Sync + 'static {
    /// Conditions not yet met; empty when ready.
    fn not_ready(&self) -> Vec<&'static str>;
}

struct AdminState<R> {
    registry: Registry,
    readiness: R,
}

async fn metrics<R: Readiness>(State(s): State<Arc<AdminState<R>>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready<R: Readiness>(State(s): State<Arc<AdminState<R>>>) -> Response {
    let missing = s.readiness.not_ready();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
            .into_response()
    }
}

pub fn admin_router<R: Readiness>(registry: Registry, readiness: R) -> Router {
    let state = Arc::new(AdminState {
        registry,
        readiness,
    });
    Router::new()
        .route("/metrics", get(metrics::<R>))
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready::<R>))
        .with_state(state)
}

/// Serves the admin router over plain HTTP until `shutdown`.
pub async fn serve_admin(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    use axum::serve::ListenerExt;
    // Scrapes and probes are small request/response pairs: without
    // TCP_NODELAY each answer can wait out Nagle plus a delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = res {
        warn!(error = %e, "admin server failed");
    }
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({what}): {e}"))
}
