//! Operators' key material as they have it, checked before anything uses it
//! (pure, no I/O).
//!
//! The mesh runs on ECDSA P-256, as Linkerd does: the proxy's identity
//! client and every peer verify P-256 chains. Operators bring:
//! - private keys in SEC1 (`EC PRIVATE KEY`: what `openssl ecparam -genkey`,
//!   `step certificate create` and Linkerd's own codec write) or PKCS#8
//!   (`PRIVATE KEY`). Both are normalised to PKCS#8, the one form ring signs
//!   with;
//! - certificates whose key is P-256;
//! - trust anchors as a PEM bundle of one or more roots (several during a
//!   rotation).
//!
//! Anything else (RSA, another curve, an encrypted key, a certificate that is
//! not a CA where one is needed) is refused with what was found and what to do.

use pkcs8::der::Decode;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, ObjectIdentifier};
use rcgen::KeyPair;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why operator material cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PkiError {
    #[error(
        "{what}: no PEM private key found (expected `-----BEGIN EC PRIVATE KEY-----` or `-----BEGIN PRIVATE KEY-----`)"
    )]
    NoKey { what: &'static str },
    #[error(
        "{what}: the private key is encrypted; kinject needs it unencrypted (decrypt it with `openssl ec -in KEY -out KEY.plain`, and keep the result in a Secret)"
    )]
    EncryptedKey { what: &'static str },
    #[error(
        "{what}: {found} is not supported; the mesh uses ECDSA P-256 as Linkerd does (create one with `step certificate create ... --kty EC --crv P-256` or `openssl ecparam -name prime256v1 -genkey`)"
    )]
    Unsupported { what: &'static str, found: String },
    #[error("{what}: not a valid private key: {message}")]
    BadKey { what: &'static str, message: String },
    #[error("{what}: not a PEM certificate: {message}")]
    BadCertificate { what: &'static str, message: String },
    #[error(
        "{what}: the certificate {subject:?} is not a CA (basicConstraints CA:TRUE is needed to sign certificates)"
    )]
    NotACa { what: &'static str, subject: String },
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";

/// A name people know for an algorithm or curve OID.
fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.1" => "an RSA key".into(),
        "1.3.132.0.34" => "an ECDSA P-384 key".into(),
        "1.3.132.0.35" => "an ECDSA P-521 key".into(),
        "1.3.132.0.10" => "an ECDSA secp256k1 key".into(),
        "1.3.101.112" => "an Ed25519 key".into(),
        "1.3.101.113" => "an Ed448 key".into(),
        "1.2.840.10040.4.1" => "a DSA key".into(),
        other => format!("a key of algorithm or curve {other}"),
    }
}

/// The PEM blocks of a text: (label, DER).
fn pem_blocks(pem: &str) -> Vec<(String, Vec<u8>)> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(|p| p.ok().map(|p| (p.label, p.contents)))
        .collect()
}

/// Reads an ECDSA P-256 private key from PEM, SEC1 or PKCS#8.
pub fn parse_private_key(what: &'static str, pem: &str) -> Result<KeyPair, PkiError> {
    // Legacy OpenSSL encryption keeps the SEC1 label and adds headers.
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(PkiError::EncryptedKey { what });
    }
    let blocks = pem_blocks(pem);
    let Some((label, der)) = blocks.iter().find(|(l, _)| l.ends_with("PRIVATE KEY")) else {
        return Err(PkiError::NoKey { what });
    };
    let bad = |message: String| PkiError::BadKey { what, message };
    let secret = match label.as_str() {
        "ENCRYPTED PRIVATE KEY" => return Err(PkiError::EncryptedKey { what }),
        "RSA PRIVATE KEY" => {
            return Err(PkiError::Unsupported {
                what,
                found: "an RSA key".into(),
            });
        }
        "EC PRIVATE KEY" => {
            let sec1 = sec1::EcPrivateKey::from_der(der).map_err(|e| bad(e.to_string()))?;
            // Without parameters the curve is implied by the caller: P-256.
            if let Some(curve) = sec1.parameters.and_then(|p| p.named_curve())
                && curve.to_string() != P256
            {
                return Err(PkiError::Unsupported {
                    what,
                    found: algorithm_name(&curve.to_string()),
                });
            }
            p256::SecretKey::from_sec1_der(der).map_err(|e| bad(e.to_string()))?
        }
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| bad(e.to_string()))?;
            let algorithm = info.algorithm.oid.to_string();
            if algorithm != EC_PUBLIC_KEY {
                return Err(PkiError::Unsupported {
                    what,
                    found: algorithm_name(&algorithm),
                });
            }
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|o: ObjectIdentifier| o.to_string())
                .unwrap_or_default();
            if curve != P256 {
                return Err(PkiError::Unsupported {
                    what,
                    found: algorithm_name(&curve),
                });
            }
            p256::SecretKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?
        }
        other => {
            return Err(PkiError::Unsupported {
                what,
                found: format!("a `{other}` block"),
            });
        }
    };
    // Re-encoded, the PKCS#8 always carries the public key, which ring
    // requires and some tools leave out.
    let pkcs8 = secret.to_pkcs8_der().map_err(|e| bad(e.to_string()))?;
    KeyPair::try_from(pkcs8.as_bytes()).map_err(|e| bad(e.to_string()))
}

/// The curve of a certificate's key, or what else it is.
fn check_cert_key(what: &'static str, cert: &X509Certificate<'_>) -> Result<(), PkiError> {
    let spki = cert.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
        .unwrap_or_default();
    if algorithm == EC_PUBLIC_KEY && curve == P256 {
        return Ok(());
    }
    let found = if algorithm == EC_PUBLIC_KEY {
        algorithm_name(&curve)
    } else {
        algorithm_name(&algorithm)
    };
    Err(PkiError::Unsupported {
        what,
        found: format!("a certificate with {found}"),
    })
}

/// One certificate, checked: it parses, its key is P-256, and (with
/// `must_be_ca`) it may sign certificates. Returns its DER.
pub fn parse_certificate(
    what: &'static str,
    der: &[u8],
    must_be_ca: bool,
) -> Result<Vec<u8>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
        what,
        message: e.to_string(),
    })?;
    check_cert_key(what, &cert)?;
    if must_be_ca && !cert.is_ca() {
        return Err(PkiError::NotACa {
            what,
            subject: cert.subject().to_string(),
        });
    }
    Ok(der.to_vec())
}

/// The certificates of a PEM text, each checked as [`parse_certificate`]
/// does; at least one. Blocks that are not certificates are refused (a key
/// pasted into a bundle is a mistake worth hearing about).
pub fn parse_certificates(
    what: &'static str,
    pem: &str,
    must_be_ca: bool,
) -> Result<Vec<Vec<u8>>, PkiError> {
    let blocks = pem_blocks(pem);
    if blocks.is_empty() {
        return Err(PkiError::BadCertificate {
            what,
            message: "no `-----BEGIN CERTIFICATE-----` block".into(),
        });
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(blocks.len());
    for (label, der) in &blocks {
        if label != "CERTIFICATE" {
            return Err(PkiError::BadCertificate {
                what,
                message: format!("a `{label}` block where certificates were expected"),
            });
        }
        let der = parse_certificate(what, der, must_be_ca)?;
        if !out.contains(&der) {
            out.push(der);
        }
    }
    Ok(out)
}

/// Trust anchors: a bundle of one or more P-256 CA certificates.
pub fn parse_trust_anchors(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    parse_certificates("trust anchors", pem, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn sec1_and_pkcs8_p256_keys_load_to_the_same_key() {
        let from_sec1 = parse_private_key("issuer key", &key("sec1-p256.key")).expect("SEC1");
        let from_pkcs8 = parse_private_key("issuer key", &key("pkcs8-p256.key")).expect("PKCS#8");
        assert_eq!(from_sec1.public_key_raw(), from_pkcs8.public_key_raw());
        assert!(from_sec1.serialize_pem().contains("BEGIN PRIVATE KEY"));
        // rcgen's own P-256 keys (PKCS#8) load too.
        let generated = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let again = parse_private_key("k", &generated.serialize_pem()).expect("generated");
        assert_eq!(again.public_key_raw(), generated.public_key_raw());
    }

    #[test]
    fn other_keys_are_refused_with_what_they_are() {
        let err = |pem: &str| {
            parse_private_key("issuer key", pem)
                .map(|_| ())
                .expect_err("refused")
                .to_string()
        };
        for (file, says) in [
            (
                "sec1-p384.key",
                "issuer key: an ECDSA P-384 key is not supported",
            ),
            (
                "pkcs8-p384.key",
                "issuer key: an ECDSA P-384 key is not supported",
            ),
            ("pkcs1-rsa.key", "issuer key: an RSA key is not supported"),
            ("pkcs8-rsa.key", "issuer key: an RSA key is not supported"),
            (
                "pkcs8-ed25519.key",
                "issuer key: an Ed25519 key is not supported",
            ),
            (
                "pkcs8-encrypted.key",
                "issuer key: the private key is encrypted",
            ),
            (
                "sec1-encrypted.key",
                "issuer key: the private key is encrypted",
            ),
        ] {
            let e = err(&key(file));
            assert!(e.contains(says), "{file}: {e}");
            assert!(e.contains("openssl"), "{file}: says what to do: {e}");
        }
        assert!(err("no key here").contains("no PEM private key found"));
        let cert_only = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(err(cert_only).contains("no PEM private key found"));
        let garbage = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(
            err(garbage).contains("not a valid private key"),
            "{}",
            err(garbage)
        );
    }

    fn cert(ca: bool, alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["x.example".into()]).expect("params");
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        p.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn anchors_are_a_bundle_of_p256_cas() {
        let (a, b) = (
            cert(true, &rcgen::PKCS_ECDSA_P256_SHA256),
            cert(true, &rcgen::PKCS_ECDSA_P256_SHA256),
        );
        let both = parse_trust_anchors(&format!("{a}{b}{a}")).expect("bundle");
        assert_eq!(both.len(), 2, "duplicates dropped");
        let p384 = cert(true, &rcgen::PKCS_ECDSA_P384_SHA384);
        let e = parse_trust_anchors(&format!("{a}{p384}")).expect_err("P-384");
        assert!(
            e.to_string()
                .contains("a certificate with an ECDSA P-384 key"),
            "{e}"
        );
        let leaf = cert(false, &rcgen::PKCS_ECDSA_P256_SHA256);
        let e = parse_trust_anchors(&leaf).expect_err("leaf");
        assert!(matches!(e, PkiError::NotACa { .. }), "{e}");
        assert!(e.to_string().contains("is not a CA"));
        let e = parse_trust_anchors("").expect_err("empty");
        assert!(
            e.to_string()
                .contains("no `-----BEGIN CERTIFICATE-----` block")
        );
        let e = parse_trust_anchors(&format!("{a}{}", key("sec1-p256.key")))
            .expect_err("key in bundle");
        assert!(e.to_string().contains("`EC PRIVATE KEY` block"), "{e}");
    }
}
