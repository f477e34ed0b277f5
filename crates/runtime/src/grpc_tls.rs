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
            // Every unary call (Certify, GetPort) is a small request and a
            // small answer: with Nagle on, the answer's last TLS record
            // waits for the client's delayed ACK, ~40 ms per call.
            if let Err(e) = tcp.set_nodelay(true) {
                debug!(%peer, error = %e, server = what, "cannot set TCP_NODELAY");
            }
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

/// A gRPC channel that connects exactly as linkerd2-proxy dials the control
/// plane: TLS 1.3, no ALPN (HTTP/2 by prior knowledge), the server name of
/// the injected `*_SVC_NAME`, verified against `trust_anchors_pem`. For
/// `check`, benchmarks and tests that must see what a proxy sees.
pub async fn connect_as_proxy(
    addr: SocketAddr,
    server_name: &str,
    trust_anchors_pem: &str,
) -> Result<tonic::transport::Channel> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(trust_anchors_pem.as_bytes()) {
        roots
            .add(cert.context("the trust anchors are not PEM certificates")?)
            .context("a trust anchor")?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .context("TLS 1.3")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name:?} is not a server name"))?;
    let dial = tower::service_fn(move |_: http::Uri| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    // The URI only satisfies tonic; the connector decides where to go.
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .context("endpoint")?
        .connect_with_connector(dial)
        .await
        .with_context(|| format!("cannot connect to {addr} as {server_name}"))
}
