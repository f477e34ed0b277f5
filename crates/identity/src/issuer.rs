//! Where the CA comes from, and keeping it current without a restart.
//!
//! Three schemes, as Linkerd's `identity.issuer.scheme` plus kinject's own:
//! - [`IssuerScheme::Kinject`] (the default): kinject's own CA. A root and an
//!   issuer are generated on first start and kept in Secret
//!   `linkerd-identity-issuer` (`ca.crt`, `ca.key`, `crt.pem`, `key.pem`).
//! - [`IssuerScheme::LinkerdTls`] (`linkerd.io/tls`): the operator's issuer,
//!   rendered by `kinject install --identity-issuer-*-file` into that Secret
//!   as `crt.pem` and `key.pem`. Never generated.
//! - [`IssuerScheme::KubernetesTls`] (`kubernetes.io/tls`): an issuer owned
//!   by something else, typically cert-manager, as `tls.crt`, `tls.key` and
//!   `ca.crt`. Never generated; identity waits for it.
//!
//! The trust anchors are ConfigMap `linkerd-identity-trust-roots`
//! (`ca-bundle.crt`, one or more roots) when it exists, else the Secret's
//! `ca-bundle.crt` or `ca.crt`. The issuer must be signed by one of them.
//!
//! [`ca_from_objects`] is pure; [`keep_current`] watches the two objects and
//! publishes every good change, keeping the last good CA when an update is
//! broken (cert-manager mid-renewal, an operator's typo).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use time::OffsetDateTime;

use crate::ca::{Ca, CaError, CertAndKey};

use kinject_mesh::names::{ISSUER_SECRET, TRUST_ROOTS_CONFIG_MAP, TRUST_ROOTS_KEY};

/// Who provides the issuer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerScheme {
    /// kinject generates and keeps its own root and issuer.
    #[default]
    Kinject,
    /// `linkerd.io/tls`: `crt.pem` and `key.pem`, from the operator.
    LinkerdTls,
    /// `kubernetes.io/tls`: `tls.crt`, `tls.key`, `ca.crt` (cert-manager).
    KubernetesTls,
}

impl IssuerScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kinject => "kinject",
            Self::LinkerdTls => "linkerd.io/tls",
            Self::KubernetesTls => "kubernetes.io/tls",
        }
    }

    /// Whether identity may create the Secret when it is missing.
    pub fn generates(self) -> bool {
        self == Self::Kinject
    }
}

impl std::str::FromStr for IssuerScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kinject" => Ok(Self::Kinject),
            "linkerd.io/tls" => Ok(Self::LinkerdTls),
            "kubernetes.io/tls" => Ok(Self::KubernetesTls),
            other => Err(format!(
                "{other:?} is not an issuer scheme: use kinject, linkerd.io/tls or kubernetes.io/tls"
            )),
        }
    }
}

/// Why the objects do not give a CA.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "Secret {ns}/{ISSUER_SECRET} lacks {keys} (scheme {scheme}); fix it, or delete it to let kinject generate its own CA"
    )]
    MissingKeys {
        ns: String,
        keys: &'static str,
        scheme: &'static str,
    },
    #[error(
        "no trust anchors: neither ConfigMap {ns}/{TRUST_ROOTS_CONFIG_MAP} (key {TRUST_ROOTS_KEY}) nor the issuer Secret's ca.crt; create the ConfigMap with your anchors (kinject install --identity-trust-anchors-file)"
    )]
    NoAnchors { ns: String },
    #[error(
        "Secret {ns}/{ISSUER_SECRET}: ca-bundle.crt does not contain the trust root ca.crt; a rotation's bundle must keep the root in use"
    )]
    BundleLacksRoot { ns: String },
    #[error("{origin}: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: CaError,
    },
}

fn text(data: Option<&BTreeMap<String, ByteString>>, key: &str) -> Option<String> {
    data?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|s| !s.trim().is_empty())
}

/// The issuer and trust anchors the two objects hold, unchecked.
#[derive(Clone, Debug)]
pub struct Material {
    pub anchors_pem: String,
    pub issuer: CertAndKey,
    /// Where they came from, for messages.
    pub origin: String,
}

/// The CA the two objects describe, checked; `Ok(None)` when the Secret does
/// not exist (yet).
pub fn ca_from_objects(
    ns: &str,
    scheme: IssuerScheme,
    secret: Option<&Secret>,
    trust_roots: Option<&ConfigMap>,
    now: OffsetDateTime,
) -> Result<Option<Ca>, SourceError> {
    let Some(m) = material(ns, scheme, secret, trust_roots)? else {
        return Ok(None);
    };
    Ca::load(&m.anchors_pem, &m.issuer, now)
        .map(Some)
        .map_err(|source| SourceError::Invalid {
            origin: m.origin,
            source,
        })
}

/// What the two objects hold (see the module docs for which keys count).
pub fn material(
    ns: &str,
    scheme: IssuerScheme,
    secret: Option<&Secret>,
    trust_roots: Option<&ConfigMap>,
) -> Result<Option<Material>, SourceError> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let data = secret.data.as_ref();
    // The keys say which form the Secret is in, whatever the scheme: an
    // operator switching to cert-manager keeps working while both exist.
    let issuer = match (
        text(data, "tls.crt"),
        text(data, "tls.key"),
        text(data, "crt.pem"),
        text(data, "key.pem"),
    ) {
        (Some(cert_pem), Some(key_pem), _, _) | (_, _, Some(cert_pem), Some(key_pem)) => {
            CertAndKey { cert_pem, key_pem }
        }
        _ => {
            return Err(SourceError::MissingKeys {
                ns: ns.into(),
                keys: match scheme {
                    IssuerScheme::KubernetesTls => "tls.crt and tls.key",
                    _ => "crt.pem and key.pem",
                },
                scheme: scheme.as_str(),
            });
        }
    };
    let from_config_map = trust_roots.and_then(|cm| {
        cm.data
            .as_ref()
            .and_then(|d| d.get(TRUST_ROOTS_KEY))
            .filter(|s| !s.trim().is_empty())
            .cloned()
    });
    let (anchors, origin) = match (
        from_config_map,
        text(data, TRUST_ROOTS_KEY),
        text(data, "ca.crt"),
    ) {
        (Some(a), _, _) => (
            a,
            format!("ConfigMap {ns}/{TRUST_ROOTS_CONFIG_MAP} and Secret {ns}/{ISSUER_SECRET}"),
        ),
        (None, Some(bundle), Some(root)) => {
            let roots = crate::ca::pem_certificates(&bundle);
            let kept = crate::ca::pem_certificates(&root)
                .first()
                .is_some_and(|r| roots.contains(r));
            if !kept {
                return Err(SourceError::BundleLacksRoot { ns: ns.into() });
            }
            (bundle, format!("Secret {ns}/{ISSUER_SECRET}"))
        }
        (None, Some(a), None) | (None, None, Some(a)) => {
            (a, format!("Secret {ns}/{ISSUER_SECRET}"))
        }
        (None, None, None) => return Err(SourceError::NoAnchors { ns: ns.into() }),
    };
    Ok(Some(Material {
        anchors_pem: anchors,
        issuer,
        origin,
    }))
}

/// Whether two CAs are the same material (a no-op update, a resync).
pub fn same(a: &Ca, b: &Ca) -> bool {
    a.trust_anchors_pem == b.trust_anchors_pem && a.issuer_cert_pem() == b.issuer_cert_pem()
}

/// The CA in use now, swapped whole when the issuer or the anchors change:
/// a Certify call reads it once and signs with one consistent issuer.
pub type CurrentCa = Arc<arc_swap::ArcSwap<Ca>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{chain_verifies, generate_root};
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn roots(bundle: &str) -> ConfigMap {
        ConfigMap {
            data: Some([(TRUST_ROOTS_KEY.to_string(), bundle.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn every_scheme_loads_its_form() {
        let now = OffsetDateTime::now_utc();
        let root = generate_root("root", now, 3650 * DAY).unwrap();
        let issuer = Ca::new_issuer(&root, now, 365 * DAY).unwrap();
        let (crt, key) = (issuer.cert_pem.as_str(), issuer.key_pem.as_str());
        let ns = "linkerd";
        // Absent: nothing yet.
        assert!(
            ca_from_objects(ns, IssuerScheme::KubernetesTls, None, None, now)
                .unwrap()
                .is_none()
        );
        // kinject's own.
        let own = secret(&[
            ("ca.crt", &root.cert_pem),
            ("crt.pem", crt),
            ("key.pem", key),
        ]);
        let ca = ca_from_objects(ns, IssuerScheme::Kinject, Some(&own), None, now)
            .unwrap()
            .unwrap();
        assert!(chain_verifies(
            &ca.issue(&["a.example".into()], &[], now, DAY)
                .unwrap()
                .chain_pem,
            &root.cert_pem
        ));
        // Linkerd's: anchors from the ConfigMap only.
        let linkerd = secret(&[("crt.pem", crt), ("key.pem", key)]);
        let e = ca_from_objects(ns, IssuerScheme::LinkerdTls, Some(&linkerd), None, now)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, SourceError::NoAnchors { .. }), "{e}");
        assert!(e.to_string().contains("--identity-trust-anchors-file"));
        let cm = roots(&root.cert_pem);
        assert!(
            ca_from_objects(ns, IssuerScheme::LinkerdTls, Some(&linkerd), Some(&cm), now)
                .unwrap()
                .is_some()
        );
        // cert-manager's.
        let cm_secret = secret(&[
            ("tls.crt", crt),
            ("tls.key", key),
            ("ca.crt", &root.cert_pem),
        ]);
        assert!(
            ca_from_objects(ns, IssuerScheme::KubernetesTls, Some(&cm_secret), None, now)
                .unwrap()
                .is_some()
        );
        // Missing keys name what is expected.
        let e = ca_from_objects(
            ns,
            IssuerScheme::KubernetesTls,
            Some(&secret(&[("tls.crt", crt)])),
            None,
            now,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("lacks tls.crt and tls.key (scheme kubernetes.io/tls)"),
            "{e}"
        );
    }

    #[test]
    fn the_config_map_bundle_wins_and_must_hold_the_issuers_anchor() {
        let now = OffsetDateTime::now_utc();
        let old = generate_root("old", now, 3650 * DAY).unwrap();
        let new = generate_root("new", now, 3650 * DAY).unwrap();
        let issuer = Ca::new_issuer(&old, now, 365 * DAY).unwrap();
        let s = secret(&[
            ("tls.crt", &issuer.cert_pem),
            ("tls.key", &issuer.key_pem),
            ("ca.crt", &old.cert_pem),
        ]);
        let both = roots(&format!("{}{}", old.cert_pem, new.cert_pem));
        let ca = ca_from_objects("l", IssuerScheme::KubernetesTls, Some(&s), Some(&both), now)
            .unwrap()
            .unwrap();
        assert_eq!(ca.anchors_der().len(), 2, "the published bundle has both");
        let only_new = roots(&new.cert_pem);
        let e = ca_from_objects(
            "l",
            IssuerScheme::KubernetesTls,
            Some(&s),
            Some(&only_new),
            now,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ConfigMap l/linkerd-identity-trust-roots"),
            "{e}"
        );
        assert!(e.contains("not signed by the trust root"), "{e}");
    }

    #[test]
    fn schemes_parse() {
        for s in ["kinject", "linkerd.io/tls", "kubernetes.io/tls"] {
            assert_eq!(s.parse::<IssuerScheme>().unwrap().as_str(), s);
        }
        assert!("tls".parse::<IssuerScheme>().is_err());
    }
}
