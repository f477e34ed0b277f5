//! The webhook's TLS configuration over the shared hot-reloading resolver
//! ([`kinject_runtime::tls`]).

use std::sync::Arc;

use anyhow::{Context, Result};
pub use kinject_runtime::tls::{ReloadingResolver, expiry, install_crypto_provider, load};
use rustls::{CipherSuite, ServerConfig};

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1 (the API server speaks HTTP/2).
pub fn server_config(resolver: Arc<ReloadingResolver>) -> Result<ServerConfig> {
    // Prefer AES-128-GCM, as Go's TLS stack (the API server's client) does:
    // every answer carries a ~9 KB patch, and AES-128 has 10 rounds to
    // AES-256's 14. The server's order decides.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    Ok(cfg)
}
