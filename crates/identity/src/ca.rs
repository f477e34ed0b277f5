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

use crate::pki::{self, PkiError};

/// Errors of the CA; each says what is wrong with which input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The material itself: format, algorithm, not a CA.
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{what}: the private key does not match the certificate")]
    KeyMismatch { what: &'static str },
    #[error("{what}: expired at {not_after}")]
    Expired {
        what: &'static str,
        not_after: String,
    },
    #[error("{what}: not valid before {not_before}")]
    NotYetValid {
        what: &'static str,
        not_before: String,
    },
    #[error(
        "the issuer certificate is not signed by the trust root (none of the {anchors} trust anchor(s) signed it); give the anchor that issued it, or an issuer from one of them"
    )]
    NotSignedByRoot { anchors: usize },
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
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::BadCertificate {
            what,
            message: e.to_string(),
        })?;
    X509Certificate::from_der(&p.contents).map_err(|e| PkiError::BadCertificate {
        what,
        message: e.to_string(),
    })?;
    Ok(p.contents)
}

/// The certificates of a PEM bundle (unchecked; other blocks skipped).
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(|p| p.ok())
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// PEM text of one DER certificate, as rcgen writes it (LF, 64 columns),
/// so a re-encoded bundle equals the one kinject stored.
pub fn pem_encode(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Checks that a certificate is valid at `now`; returns its notAfter.
fn within_validity(
    what: &'static str,
    der: &[u8],
    now: OffsetDateTime,
) -> Result<OffsetDateTime, CaError> {
    let (not_before, not_after) = validity(der).ok_or(PkiError::BadCertificate {
        what,
        message: "no validity".into(),
    })?;
    if not_after <= now {
        return Err(CaError::Expired {
            what,
            not_after: not_after.to_string(),
        });
    }
    if not_before > now + CLOCK_SKEW {
        return Err(CaError::NotYetValid {
            what,
            not_before: not_before.to_string(),
        });
    }
    Ok(not_after)
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

/// A certificate's subject, for messages (its CN when it has one).
pub fn subject(der: &[u8]) -> String {
    with_cert(der, |c| {
        c.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok().map(str::to_string))
            .unwrap_or_else(|| c.subject().to_string())
    })
    .unwrap_or_else(|| "an unparsable certificate".into())
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
/// the last by one of the roots in the bundle `anchors_pem` (how a peer
/// verifies a workload).
pub fn chain_verifies(chain_pem: &str, anchors_pem: &str) -> bool {
    let anchors = pem_certificates(anchors_pem);
    let chain = pem_certificates(chain_pem);
    !chain.is_empty()
        && chain.windows(2).all(|w| signed_by(&w[0], &w[1]))
        && chain
            .last()
            .is_some_and(|last| anchors.iter().any(|a| signed_by(last, a)))
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

/// A loaded, validated CA: the trust anchors (one or more roots; certificates
/// only, to verify) and the issuer that signs leaves.
pub struct Ca {
    anchors_der: Vec<Vec<u8>>,
    /// The trust bundle every proxy and server is given (all anchors, PEM).
    pub trust_anchors_pem: String,
    issuer_der: Vec<u8>,
    issuer_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub issuer_not_after: OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("anchors", &self.anchors_der.len())
            .field("issuer_not_after", &self.issuer_not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Signs a new issuer with the root.
    pub fn new_issuer(
        root: &CertAndKey,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<CertAndKey, CaError> {
        let root_key = pki::parse_private_key("trust root key", &root.key_pem)?;
        let root_issuer = Issuer::from_ca_cert_pem(&root.cert_pem, root_key)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params("identity.linkerd.cluster.local", now, lifetime)
            .signed_by(&key, &root_issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads and validates trust anchors (a PEM bundle of one or more P-256
    /// roots) and an issuer (certificate and key, SEC1 or PKCS#8): the issuer
    /// is a P-256 CA signed by one of the anchors, that anchor and the issuer
    /// are within their validity, and the key matches.
    pub fn load(
        anchors_pem: &str,
        issuer: &CertAndKey,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let anchors_der = pki::parse_trust_anchors(anchors_pem)?;
        // The issuer comes first; a chain after it (cert-manager can append
        // its CA) is not needed: peers verify up to the anchors.
        let issuer_der = pki::parse_certificates("issuer", &issuer.cert_pem, true)?
            .into_iter()
            .next()
            .ok_or(PkiError::BadCertificate {
                what: "issuer",
                message: "no certificate".into(),
            })?;
        let Some(anchor) = anchors_der.iter().find(|a| signed_by(&issuer_der, a)) else {
            return Err(CaError::NotSignedByRoot {
                anchors: anchors_der.len(),
            });
        };
        within_validity("the trust anchor that signed the issuer", anchor, now)?;
        let not_after = within_validity("issuer", &issuer_der, now)?;
        let key = pki::parse_private_key("issuer key", &issuer.key_pem)?;
        let spki = with_cert(&issuer_der, |c| {
            c.public_key().subject_public_key.data.to_vec()
        })
        .unwrap_or_default();
        if key.public_key_raw() != spki.as_slice() {
            return Err(CaError::KeyMismatch { what: "issuer" });
        }
        let issuer_cert_pem = pem_encode(&issuer_der);
        let signer = Issuer::from_ca_cert_pem(&issuer_cert_pem, key)?;
        Ok(Self {
            trust_anchors_pem: anchors_der.iter().map(|d| pem_encode(d)).collect(),
            anchors_der,
            issuer_der,
            issuer_cert_pem,
            issuer: signer,
            issuer_not_after: not_after,
        })
    }

    /// The trust anchors (DER), in the bundle's order.
    pub fn anchors_der(&self) -> &[Vec<u8>] {
        &self.anchors_der
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

    /// True when `chain_pem`'s leaf was signed by this CA's issuer (which was
    /// checked against the anchors when loaded).
    pub fn verifies(&self, chain_pem: &str) -> bool {
        let Ok(leaf) = parse_pem_cert("leaf", chain_pem) else {
            return false;
        };
        signed_by(&leaf, &self.issuer_der)
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
        assert!(chain_verifies(&leaf.chain_pem, &ca.trust_anchors_pem));
        let der = parse_pem_cert("leaf", &leaf.chain_pem).unwrap();
        assert_eq!(dns_names(&der), vec![name]);
        let (nb, na) = validity(&der).unwrap();
        assert!(na - nb <= time::Duration::days(1) + time::Duration::minutes(2));
        assert!(na.year() < 2100, "explicit expiry, not rcgen's 4096");
        // Another CA's leaf does not verify.
        let (_, _, other) = self::ca(now);
        assert!(!other.verifies(&leaf.chain_pem));
        assert!(!chain_verifies(&leaf.chain_pem, &other.trust_anchors_pem));
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
            .add(CertificateDer::from_pem_slice(ca.trust_anchors_pem.as_bytes()).unwrap())
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
            err(Ca::load("garbage", &issuer, now)).contains("trust anchors: not a PEM certificate")
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
            err(Ca::load(&root.cert_pem, &bad_key, now))
                .contains("issuer key: no PEM private key found")
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

    /// A rotation's bundle: an issuer under either anchor loads, its leaves
    /// verify against the bundle, and only against the anchor that signed it.
    #[test]
    fn a_bundle_of_anchors_accepts_an_issuer_from_any_of_them() {
        let now = OffsetDateTime::now_utc();
        let old = generate_root("old", now, 3650 * DAY).unwrap();
        let new = generate_root("new", now, 3650 * DAY).unwrap();
        let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
        for (signer, other) in [(&old, &new), (&new, &old)] {
            let issuer = Ca::new_issuer(signer, now, 365 * DAY).unwrap();
            let ca = Ca::load(&bundle, &issuer, now).expect("issuer under one anchor");
            assert_eq!(ca.anchors_der().len(), 2);
            let leaf = ca.issue(&["a.example".into()], &[], now, DAY).unwrap();
            assert!(chain_verifies(&leaf.chain_pem, &bundle));
            assert!(chain_verifies(&leaf.chain_pem, &signer.cert_pem));
            assert!(!chain_verifies(&leaf.chain_pem, &other.cert_pem));
            assert!(Ca::load(&other.cert_pem, &issuer, now).is_err());
        }
    }

    /// The issuer key as openssl and step write it (SEC1) loads as well as
    /// PKCS#8, and signs leaves that verify.
    #[test]
    fn a_sec1_issuer_key_loads() {
        let now = OffsetDateTime::now_utc();
        let root = generate_root("root", now, 3650 * DAY).unwrap();
        let issuer = Ca::new_issuer(&root, now, 365 * DAY).unwrap();
        let key = crate::pki::parse_private_key("k", &issuer.key_pem).unwrap();
        let sec1 = {
            use p256::pkcs8::DecodePrivateKey;
            let sk = p256::SecretKey::from_pkcs8_der(key.serialized_der()).unwrap();
            sk.to_sec1_der().unwrap()
        };
        let sec1_pem = pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.as_slice()));
        let ca = Ca::load(
            &root.cert_pem,
            &CertAndKey {
                cert_pem: issuer.cert_pem,
                key_pem: sec1_pem,
            },
            now,
        )
        .expect("SEC1 issuer key");
        let leaf = ca.issue(&["a.example".into()], &[], now, DAY).unwrap();
        assert!(chain_verifies(&leaf.chain_pem, &root.cert_pem));
    }

    /// A loaded bundle is published exactly as rcgen wrote the root, so an
    /// upgrade re-issues nothing.
    #[test]
    fn pem_encoding_matches_rcgens() {
        let now = OffsetDateTime::now_utc();
        let root = generate_root("root", now, DAY).unwrap();
        assert_eq!(
            pem_encode(&parse_pem_cert("r", &root.cert_pem).unwrap()),
            root.cert_pem
        );
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
