//! The serving certificate, hot-reloaded: a `ResolvesServerCert` over an
//! `ArcSwap`, so a rotation takes effect on the next handshake with no restart
//! and no failed handshake. A new certificate is validated (parses, key
//! matches) before it is published; a bad one keeps the last good one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The process-wide crypto provider (ring). Installed once; harmless if a
/// provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Loads and validates a certificate chain and key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, i64)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key_der, &provider)
        .with_context(|| format!("{} does not match {}", key.display(), cert.display()))?;
    let not_after = expiry(&ck.cert[0])?;
    Ok((Arc::new(ck), not_after))
}

/// A certificate chain and key held in memory (PEM), validated as [`load`] does.
pub fn certified_key_from_pem(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("not a PEM certificate chain")?;
    if chain.is_empty() {
        bail!("no certificate in the chain");
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("not a PEM private key")?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key_der, &provider)
        .context("the key does not match the certificate")?;
    Ok(Arc::new(ck))
}

/// The leaf's notAfter as a Unix timestamp.
pub fn expiry(cert: &CertificateDer<'_>) -> Result<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| anyhow::anyhow!("cannot parse the certificate: {e}"))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// Serves whatever certificate was last stored (none yet: handshakes fail).
#[derive(Debug)]
pub struct ReloadingResolver {
    current: ArcSwapOption<CertifiedKey>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl ReloadingResolver {
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> Result<(Arc<Self>, i64)> {
        let (ck, expiry) = load(&cert_path, &key_path)?;
        Ok((
            Arc::new(Self {
                current: ArcSwapOption::new(Some(ck)),
                cert_path,
                key_path,
            }),
            expiry,
        ))
    }

    /// A resolver with no certificate yet, for an injector that starts before
    /// its certificate exists (`--wait-for-cert`); `reload` fills it.
    pub fn waiting(cert_path: PathBuf, key_path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            cert_path,
            key_path,
        })
    }

    pub fn has_certificate(&self) -> bool {
        self.current.load().is_some()
    }

    /// Re-reads the files; on success the next handshake uses them.
    pub fn reload(&self) -> Result<i64> {
        let (ck, expiry) = load(&self.cert_path, &self.key_path)?;
        self.current.store(Some(ck));
        Ok(expiry)
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}
