//! `proxy-standin`: what the in-cluster tests run where an injected pod's
//! `linkerd-proxy` container would run linkerd2-proxy, whose image no
//! registry here carries (`docs/REAL-PROXY.md` records runs with the real
//! one). It is a test tool, never shipped.
//!
//! It behaves like the real proxy where a test relies on it:
//! - the admin server (`LINKERD2_PROXY_ADMIN_LISTEN_ADDR`) answers `/live`,
//!   `/ready` and `/metrics`;
//! - the inbound listener (`LINKERD2_PROXY_INBOUND_LISTEN_ADDR`) proxies
//!   HTTP/1 requests to the application's first inbound port on loopback.
//!   With no iptables rules (the stand-in's init programs none), a client
//!   sends to that listener itself;
//! - `/metrics` counts the requests it really served, in the real proxy's
//!   families, label names and buckets (`response_total`, `request_total`,
//!   `response_latency_ms`, `tcp_open_connections`,
//!   `tcp_read_bytes_total`, `tcp_write_bytes_total`,
//!   `process_start_time_seconds`), its own admin requests included, as the
//!   real proxy counts them. It has no identity, so every connection is
//!   `tls="no_identity"`.
//!
//! SIGTERM stops it at once (it may be PID 1).

mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use metrics::{CountingIo, Metrics, Target};

fn env_addr(name: &str, default: &str) -> Result<SocketAddr, String> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_string());
    v.parse()
        .map_err(|e| format!("{name}={v:?} is not an address: {e}"))
}

/// The first port of `LINKERD2_PROXY_INBOUND_PORTS` that is not the proxy's
/// own: where inbound requests go.
fn app_port(ports: &str, own: &[u16]) -> Option<u16> {
    ports
        .split(',')
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .find(|p| !own.contains(p))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("proxy-standin: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let admin = env_addr("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191")?;
    let inbound = env_addr("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143")?;
    let app = app_port(
        &std::env::var("LINKERD2_PROXY_INBOUND_PORTS").unwrap_or_default(),
        &[admin.port(), inbound.port()],
    );
    let pod_ip = std::env::var("LINKERD2_PROXY_INBOUND_IPS")
        .ok()
        .and_then(|ips| ips.split(',').next().map(str::to_string))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "0.0.0.0".to_string());
    let metrics = Arc::new(Metrics::new());
    let admin_listener = TcpListener::bind(admin)
        .await
        .map_err(|e| format!("admin {admin}: {e}"))?;
    let inbound_listener = TcpListener::bind(inbound)
        .await
        .map_err(|e| format!("inbound {inbound}: {e}"))?;
    eprintln!(
        "kinject proxy stand-in: admin on {admin}, inbound on {inbound} to 127.0.0.1:{}",
        app.map_or("-".to_string(), |p| p.to_string())
    );
    // The admin server reports its listen address, as the real proxy does.
    let admin_target = Target {
        addr: admin.to_string(),
        ip: admin.ip().to_string(),
        port: admin.port(),
    };
    let app_target = Target {
        addr: format!("{pod_ip}:{}", app.unwrap_or(0)),
        ip: pod_ip,
        port: app.unwrap_or(0),
    };
    tokio::spawn(serve(
        admin_listener,
        admin_target,
        metrics.clone(),
        Upstream::Admin,
    ));
    tokio::spawn(serve(
        inbound_listener,
        app_target,
        metrics.clone(),
        Upstream::App(app),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Upstream {
    Admin,
    App(Option<u16>),
}

async fn serve(listener: TcpListener, target: Target, metrics: Arc<Metrics>, up: Upstream) {
    let target = Arc::new(target);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = CountingIo::new(stream, metrics.connection(&target));
        let (metrics, target) = (metrics.clone(), target.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (metrics, target) = (metrics.clone(), target.clone());
                async move { Ok::<_, Infallible>(handle(req, up, &metrics, &target).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    up: Upstream,
    metrics: &Metrics,
    target: &Target,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    metrics.request(target);
    let rsp = match up {
        Upstream::Admin => admin(req.uri().path(), metrics),
        Upstream::App(Some(port)) => forward(req, port).await.unwrap_or_else(|e| {
            text(
                StatusCode::BAD_GATEWAY,
                format!("proxy stand-in: 127.0.0.1:{port}: {e}\n"),
            )
        }),
        Upstream::App(None) => text(
            StatusCode::BAD_GATEWAY,
            "proxy stand-in: LINKERD2_PROXY_INBOUND_PORTS names no application port\n".into(),
        ),
    };
    metrics.response(target, rsp.status().as_u16(), started.elapsed());
    rsp
}

fn admin(path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    match path {
        "/live" => text(StatusCode::OK, "live\n".into()),
        "/ready" => text(StatusCode::OK, "ready\n".into()),
        "/metrics" => text(StatusCode::OK, metrics.render()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp
}

/// One request to the application over a fresh loopback connection; the
/// response is read whole, so its latency covers the body, as the real
/// proxy's does.
async fn forward(req: Request<Incoming>, port: u16) -> Result<Response<Full<Bytes>>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let rsp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_port_is_the_first_that_is_not_the_proxys() {
        assert_eq!(app_port("4191,8080,9090", &[4191, 4143]), Some(8080));
        assert_eq!(app_port(" 80 ", &[4191, 4143]), Some(80));
        assert_eq!(app_port("", &[4191, 4143]), None);
        assert_eq!(app_port("x,4143", &[4191, 4143]), None);
    }
}
