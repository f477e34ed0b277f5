//! The certificate authority, pure (no I/O): a trust root, an issuer signed by
//! it, and leaf certificates signed by the issuer. Every validity period is set
//! explicitly (rcgen's default notAfter is the year 4096).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Errors of the CA; each says what is wrong with which input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{what}: not a PEM certificate: {message}")]
    BadCertificate { what: &'static str, message: String },
    #[error("{what}: not a PEM private key: {message}")]
    BadKey { what: &'static str, message: String },
    #[error("{what}: the private key does not match the certificate")]
    KeyMismatch { what: &'static str },
    #[error("{what}: the certificate is not a CA certificate")]
    NotACa { what: &'static str },
    #[error("{what}: expired at {not_after}")]
    Expired {
        what: &'static str,
        not_after: String,
    },
    #[error("the issuer certificate is not signed by the trust root")]
    NotSignedByRoot,
    #[error("cannot sign: {0}")]
    Sign(#[from] rcgen::Error),
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A leaf certificate as handed to a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf followed by the issuer (the chain a peer needs).
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Certificates are back-dated by this much to tolerate clock skew between the
/// CA and its verifiers.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

fn params(cn: &str, now: OffsetDateTime, lifetime: Duration) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = now - CLOCK_SKEW;
    p.not_after = now + lifetime;
    p
}

fn ca_params(cn: &str, now: OffsetDateTime, lifetime: Duration) -> CertificateParams {
    let mut p = params(cn, now, lifetime);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Generates a self-signed ECDSA P-256 trust root.
pub fn generate_root(
    cn: &str,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertAndKey, CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(cn, now, lifetime).self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Parses the first certificate of a PEM text.
pub fn parse_pem_cert(what: &'static str, pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CaError::BadCertificate {
            what,
            message: e.to_string(),
        })?;
    X509Certificate::from_der(&p.contents).map_err(|e| CaError::BadCertificate {
        what,
        message: e.to_string(),
    })?;
    Ok(p.contents)
}

fn with_cert<T>(der: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    X509Certificate::from_der(der).ok().map(|(_, c)| f(&c))
}

/// notBefore and notAfter of a DER certificate.
pub fn validity(der: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    with_cert(der, |c| {
        (
            c.validity().not_before.to_datetime(),
            c.validity().not_after.to_datetime(),
        )
    })
}

/// True when `child` (DER) is signed by `parent` (DER).
pub fn signed_by(child: &[u8], parent: &[u8]) -> bool {
    let Ok((_, parent)) = X509Certificate::from_der(parent) else {
        return false;
    };
    with_cert(child, |c| {
        c.verify_signature(Some(parent.public_key())).is_ok()
    })
    .unwrap_or(false)
}

/// DNS SANs of a DER certificate.
pub fn dns_names(der: &[u8]) -> Vec<String> {
    with_cert(der, |c| {
        c.subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// True when every certificate of `chain_pem` is signed by the next one and
/// the last by the root in `root_pem` (how a peer verifies a workload).
pub fn chain_verifies(chain_pem: &str, root_pem: &str) -> bool {
    let Ok(root) = parse_pem_cert("trust root", root_pem) else {
        return false;
    };
    let chain: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(chain_pem.as_bytes())
        .filter_map(|p| p.ok().map(|p| p.contents))
        .collect();
    !chain.is_empty()
        && chain.windows(2).all(|w| signed_by(&w[0], &w[1]))
        && chain.last().is_some_and(|last| signed_by(last, &root))
}

/// Renewal is due at two thirds of the lifetime.
pub fn needs_renewal(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    // Counted from issuance, without the clock-skew back-dating, so short
    // lifetimes are not swamped by it.
    let issued = (not_before + CLOCK_SKEW).min(not_after);
    let life = not_after - issued;
    now >= issued + life * 2 / 3
}

/// A loaded, validated CA: the trust root (certificate only is needed to
/// verify) and the issuer that signs leaves.
pub struct Ca {
    root_der: Vec<u8>,
    pub root_pem: String,
    issuer_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub issuer_not_after: OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("issuer_not_after", &self.issuer_not_after)
            .finish_non_exhaustive()
    }
}

fn load_key(what: &'static str, pem: &str) -> Result<KeyPair, CaError> {
    KeyPair::from_pem(pem).map_err(|e| CaError::BadKey {
        what,
        message: e.to_string(),
    })
}

impl Ca {
    /// Signs a new issuer with the root.
    pub fn new_issuer(
        root: &CertAndKey,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<CertAndKey, CaError> {
        let root_key = load_key("trust root", &root.key_pem)?;
        let root_issuer = Issuer::from_ca_cert_pem(&root.cert_pem, root_key)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params("identity.linkerd.cluster.local", now, lifetime)
            .signed_by(&key, &root_issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads and validates a root certificate and an issuer (cert + key):
    /// both parse, the issuer is a CA signed by the root, its key matches, and
    /// it has not expired.
    pub fn load(root_pem: &str, issuer: &CertAndKey, now: OffsetDateTime) -> Result<Self, CaError> {
        let root_der = parse_pem_cert("trust root", root_pem)?;
        let issuer_der = parse_pem_cert("issuer", &issuer.cert_pem)?;
        let is_ca = with_cert(&issuer_der, |c| c.is_ca()).unwrap_or(false);
        if !is_ca {
            return Err(CaError::NotACa { what: "issuer" });
        }
        if !signed_by(&issuer_der, &root_der) {
            return Err(CaError::NotSignedByRoot);
        }
        let (_, not_after) = validity(&issuer_der).ok_or(CaError::NotACa { what: "issuer" })?;
        if not_after <= now {
            return Err(CaError::Expired {
                what: "issuer",
                not_after: not_after.to_string(),
            });
        }
        let key = load_key("issuer", &issuer.key_pem)?;
        let spki = with_cert(&issuer_der, |c| {
            c.public_key().subject_public_key.data.to_vec()
        })
        .unwrap_or_default();
        if key.public_key_raw() != spki.as_slice() {
            return Err(CaError::KeyMismatch { what: "issuer" });
        }
        let signer = Issuer::from_ca_cert_pem(&issuer.cert_pem, key)?;
        Ok(Self {
            root_der,
            root_pem: root_pem.to_string(),
            issuer_cert_pem: issuer.cert_pem.clone(),
            issuer: signer,
            issuer_not_after: not_after,
        })
    }

    /// Issues a leaf for `dns_names` (and `ips`), valid for `lifetime` but never
    /// beyond the issuer.
    pub fn issue(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Leaf, CaError> {
        let mut p = params(
            dns_names.first().map_or("kinject", String::as_str),
            now,
            lifetime,
        );
        if p.not_after > self.issuer_not_after {
            p.not_after = self.issuer_not_after;
        }
        p.subject_alt_names = dns_names
            .iter()
            .map(|d| {
                d.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(CaError::Sign)
            })
            .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, _>>()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.issuer_cert_pem),
            key_pem: key.serialize_pem(),
            not_before: p.not_before,
            not_after: p.not_after,
        })
    }

    /// The issuer that signs leaves (for `certify`).
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The issuer's certificate (PEM), the intermediate every leaf chains through.
    pub fn issuer_cert_pem(&self) -> &str {
        &self.issuer_cert_pem
    }

    /// True when `chain_pem`'s leaf was signed by this CA's issuer and the
    /// issuer by the root.
    pub fn verifies(&self, chain_pem: &str) -> bool {
        let Ok(leaf) = parse_pem_cert("leaf", chain_pem) else {
            return false;
        };
        let Ok(issuer) = parse_pem_cert("issuer", &self.issuer_cert_pem) else {
            return false;
        };
        signed_by(&leaf, &issuer) && signed_by(&issuer, &self.root_der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn ca(now: OffsetDateTime) -> (CertAndKey, CertAndKey, Ca) {
        let root = generate_root("root.linkerd.cluster.local", now, 3650 * DAY).unwrap();
        let issuer = Ca::new_issuer(&root, now, 365 * DAY).unwrap();
        let ca = Ca::load(&root.cert_pem, &issuer, now).unwrap();
        (root, issuer, ca)
    }

    #[test]
    fn issues_leaves_that_chain_to_the_root() {
        let now = OffsetDateTime::now_utc();
        let (_, _, ca) = ca(now);
        let name = "web.deployment.apps.linkerd-managed.linkerd.svc.cluster.local".to_string();
        let leaf = ca
            .issue(std::slice::from_ref(&name), &[], now, DAY)
            .unwrap();
        assert!(ca.verifies(&leaf.chain_pem));
        assert!(chain_verifies(&leaf.chain_pem, &ca.root_pem));
        let der = parse_pem_cert("leaf", &leaf.chain_pem).unwrap();
        assert_eq!(dns_names(&der), vec![name]);
        let (nb, na) = validity(&der).unwrap();
        assert!(na - nb <= time::Duration::days(1) + time::Duration::minutes(2));
        assert!(na.year() < 2100, "explicit expiry, not rcgen's 4096");
        // Another CA's leaf does not verify.
        let (_, _, other) = self::ca(now);
        assert!(!other.verifies(&leaf.chain_pem));
        assert!(!chain_verifies(&leaf.chain_pem, &other.root_pem));
    }

    /// The chain as a TLS peer checks it: rustls' webpki verifier, trusting
    /// only the root, for the workload's DNS name, at the current time.
    #[test]
    fn leaves_pass_webpki_path_validation() {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
        let now = OffsetDateTime::now_utc();
        let (_, _, ca) = ca(now);
        let name = "web.deployment.apps.linkerd-managed.linkerd.svc.cluster.local";
        let leaf = ca.issue(&[name.to_string()], &[], now, DAY).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.root_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .unwrap();
        let chain: Vec<CertificateDer<'_>> =
            CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let verify = |dns: &'static str| {
            verifier.verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(dns).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        verify(name).expect("valid chain for the workload's name");
        assert!(verify("other.deployment.apps.linkerd-managed.linkerd.svc.cluster.local").is_err());
    }

    #[test]
    fn leaves_never_outlive_the_issuer() {
        let now = OffsetDateTime::now_utc();
        let root = generate_root("root", now, 3650 * DAY).unwrap();
        let issuer = Ca::new_issuer(&root, now, DAY).unwrap();
        let ca = Ca::load(&root.cert_pem, &issuer, now).unwrap();
        let leaf = ca.issue(&["a.example".into()], &[], now, 30 * DAY).unwrap();
        assert!(leaf.not_after <= ca.issuer_not_after);
    }

    #[test]
    fn bad_material_is_refused_with_a_clear_error() {
        let now = OffsetDateTime::now_utc();
        let (root, issuer, _) = ca(now);
        let (other_root, other_issuer, _) = ca(now);
        let err = |r: Result<Ca, CaError>| r.map(|_| ()).unwrap_err().to_string();
        assert!(
            err(Ca::load("garbage", &issuer, now)).contains("trust root: not a PEM certificate")
        );
        let mismatched = CertAndKey {
            cert_pem: issuer.cert_pem.clone(),
            key_pem: other_issuer.key_pem.clone(),
        };
        assert!(err(Ca::load(&root.cert_pem, &mismatched, now)).contains("does not match"));
        assert!(
            err(Ca::load(&other_root.cert_pem, &issuer, now))
                .contains("not signed by the trust root")
        );
        let bad_key = CertAndKey {
            cert_pem: issuer.cert_pem.clone(),
            key_pem: "nope".into(),
        };
        assert!(
            err(Ca::load(&root.cert_pem, &bad_key, now)).contains("issuer: not a PEM private key")
        );
        // An expired issuer refuses to issue.
        let later = now + time::Duration::days(400);
        assert!(err(Ca::load(&root.cert_pem, &issuer, later)).contains("issuer: expired"));
        // A leaf is not a CA.
        let (_, _, ca) = ca(now);
        let leaf = ca.issue(&["x.example".into()], &[], now, DAY).unwrap();
        let leaf_as_issuer = CertAndKey {
            cert_pem: leaf.chain_pem.clone(),
            key_pem: leaf.key_pem,
        };
        assert!(err(Ca::load(&root.cert_pem, &leaf_as_issuer, now)).contains("not a CA"));
    }

    #[test]
    fn renewal_at_two_thirds() {
        let t0 = OffsetDateTime::now_utc();
        let t1 = t0 + time::Duration::hours(24);
        let nb = t0 - CLOCK_SKEW;
        assert!(!needs_renewal(nb, t1, t0 + time::Duration::hours(15)));
        assert!(needs_renewal(nb, t1, t0 + time::Duration::hours(17)));
        // Short lifetimes are not swamped by the back-dating.
        let short = t0 + time::Duration::seconds(6);
        assert!(!needs_renewal(nb, short, t0 + time::Duration::seconds(3)));
        assert!(needs_renewal(nb, short, t0 + time::Duration::seconds(5)));
    }
}
