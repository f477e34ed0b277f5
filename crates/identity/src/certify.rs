//! `io.linkerd.proxy.identity.Identity/Certify`, the pure part: who a
//! ServiceAccount is in the mesh, whether a proxy's CSR may be signed, and the
//! signing. The gRPC service (`crate::grpc`) adds the TokenReview and the wire.
//!
//! Rules, as Linkerd's identity service applies them and the proxy expects:
//! - the token's user `system:serviceaccount:NS:SA` is the mesh identity of
//!   that ServiceAccount (`kinject_mesh::names::identity`), and it must be
//!   the identity the proxy asks for;
//! - the CSR (DER) has exactly one DNS SAN, equal to that identity, no other
//!   SAN, a CN that is empty or equal, an ECDSA P-256 key, and a valid
//!   self-signature;
//! - the leaf is for serverAuth and clientAuth, and never outlives the issuer.

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateSigningRequestDer;
use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use crate::ca::{CLOCK_SKEW, Ca, parse_pem_cert};

/// Why a request is refused; each maps to one gRPC status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token does not prove who the caller is.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is authenticated but may not have what it asks for, or
    /// the CA cannot issue now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Refusal {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::FailedPrecondition(_) => "failed_precondition",
            Refusal::InvalidArgument(_) => "invalid_argument",
        }
    }
}

/// The mesh identity of the Kubernetes user a token belongs to.
pub fn identity_for_user(
    username: &str,
    control_ns: &str,
    trust_domain: &str,
) -> Result<String, Refusal> {
    let parts: Vec<&str> = username.split(':').collect();
    match parts.as_slice() {
        ["system", "serviceaccount", ns, sa] if !ns.is_empty() && !sa.is_empty() => Ok(
            kinject_mesh::names::identity(sa, ns, control_ns, trust_domain),
        ),
        _ => Err(Refusal::FailedPrecondition(format!(
            "the token belongs to {username:?}, not a ServiceAccount"
        ))),
    }
}

/// What a signed certificate gives back, all DER.
#[derive(Clone, Debug)]
pub struct Certified {
    pub leaf_der: Vec<u8>,
    pub intermediates_der: Vec<Vec<u8>>,
    pub not_after: OffsetDateTime,
}

/// Checks `csr_der` against `identity` and signs it for `lifetime` (clamped
/// to the issuer's expiry).
pub fn certify(
    ca: &Ca,
    csr_der: &[u8],
    identity: &str,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<Certified, Refusal> {
    let invalid = |m: String| Refusal::InvalidArgument(m);
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| invalid(format!("the certificate signing request is not DER: {e}")))?;
    csr.verify_signature().map_err(|_| {
        invalid("the certificate signing request's signature does not verify".into())
    })?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256);
    if !p256 {
        return Err(invalid(
            "the key must be ECDSA P-256 (the proxy's key type)".into(),
        ));
    }
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| invalid("the CSR's common name is not a string".into()))?;
        if !cn.is_empty() && cn != identity {
            return Err(invalid(format!(
                "the CSR's common name {cn:?} is not the identity {identity:?}"
            )));
        }
    }
    let mut dns = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    other => {
                        return Err(invalid(format!(
                            "the CSR may carry one DNS name only, not {other}"
                        )));
                    }
                }
            }
        }
    }
    if dns.len() != 1 || dns[0] != identity {
        return Err(invalid(format!(
            "the CSR must carry exactly one DNS name, {identity:?}; it carries {dns:?}"
        )));
    }
    if now >= ca.issuer_not_after {
        return Err(Refusal::FailedPrecondition(
            "the issuer certificate has expired; rotate it".into(),
        ));
    }

    let mut params = CertificateParams::default();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = (now + lifetime).min(ca.issuer_not_after);
    params.distinguished_name.push(DnType::CommonName, identity);
    params.subject_alt_names =
        vec![SanType::DnsName(identity.try_into().map_err(|_| {
            invalid(format!("{identity:?} is not a DNS name"))
        })?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let mut request =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| invalid(format!("the certificate signing request: {e}")))?;
    let not_after = params.not_after;
    request.params = params;
    let cert = request
        .signed_by(ca.issuer())
        .map_err(|e| Refusal::FailedPrecondition(format!("signing failed: {e}")))?;
    let issuer_der = parse_pem_cert("issuer", ca.issuer_cert_pem())
        .map_err(|e| Refusal::FailedPrecondition(e.to_string()))?;
    Ok(Certified {
        leaf_der: cert.der().to_vec(),
        intermediates_der: vec![issuer_der],
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{self, CertAndKey};

    const ID: &str = "web.apps.serviceaccount.identity.linkerd.cluster.local";

    fn test_ca(now: OffsetDateTime) -> Ca {
        let root = ca::generate_root(
            "root.linkerd.cluster.local",
            now,
            Duration::from_secs(365 * 86400),
        )
        .expect("root");
        let issuer: CertAndKey =
            Ca::new_issuer(&root, now, Duration::from_secs(30 * 86400)).expect("issuer");
        Ca::load(&root.cert_pem, &issuer, now).expect("ca")
    }

    fn csr(alg: &'static rcgen::SignatureAlgorithm, cn: &str, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.serialize_request(&key).expect("csr").der().to_vec()
    }

    #[test]
    fn identities_come_from_service_accounts_only() {
        assert_eq!(
            identity_for_user("system:serviceaccount:apps:web", "linkerd", "cluster.local"),
            Ok(ID.to_string())
        );
        for bad in [
            "admin",
            "system:node:n1",
            "system:serviceaccount:apps",
            "system:serviceaccount::web",
        ] {
            assert!(matches!(
                identity_for_user(bad, "linkerd", "cluster.local"),
                Err(Refusal::FailedPrecondition(_))
            ));
        }
    }

    #[test]
    fn a_good_csr_gets_a_leaf_that_chains_and_expires_with_the_issuer() {
        let now = OffsetDateTime::now_utc();
        let ca = test_ca(now);
        let c = certify(
            &ca,
            &csr(&rcgen::PKCS_ECDSA_P256_SHA256, ID, &[ID]),
            ID,
            now,
            Duration::from_secs(86400),
        )
        .expect("certified");
        let pem = |der: &[u8]| {
            let b64 = base64_encode(der);
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
        };
        let chain = format!("{}{}", pem(&c.leaf_der), pem(&c.intermediates_der[0]));
        assert!(ca::chain_verifies(&chain, &ca.trust_anchors_pem));
        assert_eq!(ca::dns_names(&c.leaf_der), vec![ID.to_string()]);
        assert!(
            (c.not_after - (now + Duration::from_secs(86400))).abs() < time::Duration::seconds(2)
        );
        // An empty CN is fine too; a long lifetime is clamped to the issuer.
        let c = certify(
            &ca,
            &csr(&rcgen::PKCS_ECDSA_P256_SHA256, "", &[ID]),
            ID,
            now,
            Duration::from_secs(365 * 86400),
        )
        .expect("certified");
        assert_eq!(c.not_after, ca.issuer_not_after);
    }

    /// An RSA CSR (ring cannot make RSA keys): Debian's openssl.
    fn rsa_csr() -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("csr.der");
        let status = std::process::Command::new("openssl")
            .args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(dir.path().join("key.pem"))
            .args([
                "-subj",
                &format!("/CN={ID}"),
                "-addext",
                &format!("subjectAltName=DNS:{ID}"),
            ])
            .args(["-outform", "DER", "-out"])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian's openssl package) makes the RSA CSR");
        assert!(status.success());
        std::fs::read(out).expect("csr")
    }

    fn base64_encode(der: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn bad_csrs_are_invalid_arguments_with_the_reason() {
        let now = OffsetDateTime::now_utc();
        let ca = test_ca(now);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not DER"),
            (
                csr(&rcgen::PKCS_ECDSA_P256_SHA256, ID, &[ID, "other.example"]),
                "exactly one DNS name",
            ),
            (
                csr(&rcgen::PKCS_ECDSA_P256_SHA256, ID, &["other.example"]),
                "exactly one DNS name",
            ),
            (
                csr(&rcgen::PKCS_ECDSA_P256_SHA256, ID, &[]),
                "exactly one DNS name",
            ),
            (
                csr(&rcgen::PKCS_ECDSA_P256_SHA256, "someone", &[ID]),
                "common name \"someone\"",
            ),
            (
                csr(&rcgen::PKCS_ECDSA_P384_SHA384, ID, &[ID]),
                "ECDSA P-256",
            ),
            (csr(&rcgen::PKCS_ED25519, ID, &[ID]), "ECDSA P-256"),
            (rsa_csr(), "ECDSA P-256"),
        ];
        for (der, want) in cases {
            match certify(&ca, &der, ID, now, Duration::from_secs(86400)) {
                Err(Refusal::InvalidArgument(m)) => assert!(m.contains(want), "{m} !~ {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_expired_issuer_is_a_failed_precondition() {
        let now = OffsetDateTime::now_utc();
        let ca = test_ca(now);
        let later = now + Duration::from_secs(31 * 86400);
        assert!(matches!(
            certify(
                &ca,
                &csr(&rcgen::PKCS_ECDSA_P256_SHA256, ID, &[ID]),
                ID,
                later,
                Duration::from_secs(3600)
            ),
            Err(Refusal::FailedPrecondition(_))
        ));
    }
}
