//! Linkerd's policy resources as typed Rust: the same groups, versions and
//! kinds as Linkerd's CRDs (`policy.linkerd.io` and the Gateway API's
//! `HTTPRoute`), so a cluster's existing objects keep working. Their CRDs
//! ([`crds`], printed by `kinject install --crds`) are generated from these
//! types by kube's `CustomResource` derive and schemars; nothing is copied
//! YAML.
//!
//! Every version Linkerd's CRDs have ever served is served here too, with
//! the same storage version, so applying these CRDs over Linkerd's keeps
//! every stored object readable (the API server refuses a CRD that drops a
//! version objects are stored in). Older versions share the newest schema:
//! their fields are a subset of it.
//!
//! The controller reads these objects as JSON, one at a time, and converts
//! each with [`serde_json::from_value`] into these types: one bad object is
//! skipped (and reported), never a failed watch.

pub mod authn;
pub mod route;
pub mod server;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kube::CustomResourceExt;
use serde::{Deserialize, Serialize};

pub use authn::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, ServerAuthorization,
};
pub use route::{GatewayHttpRoute, PolicyHttpRoute};
pub use server::Server;

/// Linkerd's policy API group.
pub const POLICY_GROUP: &str = "policy.linkerd.io";
/// The Gateway API's group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// A reference to an object in the referrer's namespace (Linkerd's
/// `targetRef`). An empty or absent group is the core group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct LocalTargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

/// A reference to an object in any namespace (the referrer's when absent).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
pub struct NamespacedTargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Whether a reference's group and kind are `group`/`kind`: kinds compare
/// case-insensitively (Linkerd accepts `server` and `Server`), and the core
/// group is spelt `""`, `core` or not at all.
pub fn refers_to(ref_group: Option<&str>, ref_kind: &str, group: &str, kind: &str) -> bool {
    let ref_group = match ref_group.unwrap_or("") {
        "core" => "",
        g => g,
    };
    let group = if group == "core" { "" } else { group };
    ref_group.eq_ignore_ascii_case(group) && ref_kind.eq_ignore_ascii_case(kind)
}

/// A version of a CRD beside the one the types describe.
struct OlderVersion {
    name: &'static str,
    deprecated_for: Option<&'static str>,
}

/// Serves `older` versions beside the generated (storage) one, with its
/// schema and columns.
fn with_older_versions(
    mut crd: CustomResourceDefinition,
    older: &[OlderVersion],
) -> CustomResourceDefinition {
    let Some(newest) = crd.spec.versions.first().cloned() else {
        return crd;
    };
    // Older versions never had the newest one's defaults (a v1beta1 Server
    // has no accessPolicy): reading a stored object in its own version must
    // not show one.
    let older_schema = newest.schema.clone().map(|mut v| {
        if let Some(schema) = v.open_api_v3_schema.take() {
            v.open_api_v3_schema = serde_json::to_value(schema)
                .map(|mut j| {
                    strip_defaults(&mut j);
                    j
                })
                .ok()
                .and_then(|j| serde_json::from_value(j).ok());
        }
        v
    });
    let mut versions: Vec<CustomResourceDefinitionVersion> = older
        .iter()
        .map(|o| CustomResourceDefinitionVersion {
            name: o.name.to_string(),
            served: true,
            storage: false,
            deprecated: o.deprecated_for.map(|_| true),
            deprecation_warning: o.deprecated_for.map(|newer| {
                format!(
                    "{}/{} {} is deprecated; use {}/{newer} {}",
                    crd.spec.group,
                    o.name,
                    crd.spec.names.kind,
                    crd.spec.group,
                    crd.spec.names.kind
                )
            }),
            schema: older_schema.clone(),
            ..newest.clone()
        })
        .collect();
    versions.push(newest);
    crd.spec.versions = versions;
    crd
}

fn strip_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("default");
            m.values_mut().for_each(strip_defaults);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// Every CRD kinject's policy server reads, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let v = |name, deprecated_for| OlderVersion {
        name,
        deprecated_for,
    };
    vec![
        with_older_versions(
            Server::crd(),
            &[
                v("v1alpha1", Some("v1beta3")),
                v("v1beta1", Some("v1beta3")),
                v("v1beta2", None),
            ],
        ),
        with_older_versions(
            ServerAuthorization::crd(),
            &[v("v1alpha1", Some("v1beta1"))],
        ),
        AuthorizationPolicy::crd(),
        MeshTLSAuthentication::crd(),
        NetworkAuthentication::crd(),
        with_older_versions(
            PolicyHttpRoute::crd(),
            &[v("v1alpha1", None), v("v1beta1", None), v("v1beta2", None)],
        ),
        with_older_versions(GatewayHttpRoute::crd(), &[v("v1beta1", None)]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_has_one_storage_version_and_serves_linkerds() {
        let want = [
            ("servers.policy.linkerd.io", "v1beta3", 4),
            ("serverauthorizations.policy.linkerd.io", "v1beta1", 2),
            ("authorizationpolicies.policy.linkerd.io", "v1alpha1", 1),
            ("meshtlsauthentications.policy.linkerd.io", "v1alpha1", 1),
            ("networkauthentications.policy.linkerd.io", "v1alpha1", 1),
            ("httproutes.policy.linkerd.io", "v1beta3", 4),
            ("httproutes.gateway.networking.k8s.io", "v1", 2),
        ];
        let crds = crds();
        assert_eq!(crds.len(), want.len());
        for (crd, (name, storage, served)) in crds.iter().zip(want) {
            assert_eq!(crd.metadata.name.as_deref(), Some(name));
            let stored: Vec<&str> = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.storage)
                .map(|v| v.name.as_str())
                .collect();
            assert_eq!(stored, vec![storage], "{name}");
            assert_eq!(
                crd.spec.versions.iter().filter(|v| v.served).count(),
                served,
                "{name}"
            );
            for v in crd.spec.versions.iter().filter(|v| !v.storage) {
                let schema = serde_json::to_string(&v.schema).expect("json");
                assert!(
                    !schema.contains("\"default\""),
                    "{name} {}: no defaults",
                    v.name
                );
            }
        }
    }

    #[test]
    fn references_compare_groups_and_kinds_as_linkerd_does() {
        assert!(refers_to(
            Some("policy.linkerd.io"),
            "server",
            POLICY_GROUP,
            "Server"
        ));
        assert!(refers_to(None, "Namespace", "core", "Namespace"));
        assert!(refers_to(
            Some("core"),
            "ServiceAccount",
            "",
            "ServiceAccount"
        ));
        assert!(!refers_to(None, "Server", POLICY_GROUP, "Server"));
        assert!(!refers_to(
            Some(GATEWAY_GROUP),
            "HTTPRoute",
            POLICY_GROUP,
            "HTTPRoute"
        ));
    }
}
