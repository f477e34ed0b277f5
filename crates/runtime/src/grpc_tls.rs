//! TLS 1.3 in front of a gRPC server, as the proxy's control-plane client
//! expects: ECDSA certificates (from any `ResolvesServerCert`, so a renewed or
//! reloaded certificate is used on the next handshake), ALPN `h2` offered but
//! not required (the proxy offers no ALPN and speaks HTTP/2 with prior
//! knowledge).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::Stream;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration: TLS 1.3 only, no client certificates, `h2`
/// offered.
pub fn server_config(certs: Arc<dyn ResolvesServerCert>) -> Result<rustls::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .context("TLS 1.3")?
    .with_no_client_auth()
    .with_cert_resolver(certs);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tls)
}

/// Listens on `addr` and yields finished TLS connections, for tonic's
/// `serve_with_incoming`. Handshakes run apart from the accept loop, so a
/// slow or silent client cannot hold up the others; failed ones are logged
/// at debug level (any client can cause them).
pub async fn incoming(
    addr: SocketAddr,
    certs: Arc<dyn ResolvesServerCert>,
    what: &'static str,
) -> Result<impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + use<>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(certs)?));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, server = what, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                // The server is gone: stop accepting.
                _ = tx.closed() => return,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, server = what, "TLS handshake failed"),
                    Err(_) => debug!(%peer, server = what, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (conn, rx))
    }))
}
