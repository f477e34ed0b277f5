//! The baseline for `scripts/bench-webhook.sh`: the same TLS and HTTP stack as
//! the injector (`kinject_webhook::server::serve_tls`, rustls, hyper-util), with
//! a handler that answers `allowed: true` without reading the request.
//!
//!     cargo run --release -p kinject-webhook --example null_webhook -- ADDR CERT KEY

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use kinject_webhook::{server, tls};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(cert), Some(key)) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: null_webhook ADDR CERT KEY");
    };
    tls::install_crypto_provider();
    let (resolver, _) = tls::ReloadingResolver::new(cert.into(), key.into())?;
    let cfg = Arc::new(tls::server_config(resolver)?);
    const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;
    let app = Router::new().route(
        "/inject",
        post(|_body: Bytes| async { ([("content-type", "application/json")], ANSWER) }),
    );
    let listener = kinject_runtime::admin::bind(addr.parse()?, "null webhook").await?;
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    server::serve_tls(listener, cfg, app, Default::default(), stop_rx).await;
    Ok(())
}
