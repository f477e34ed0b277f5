//! Who may connect: `AuthorizationPolicy` and the authentications it
//! requires (`MeshTLSAuthentication`, `NetworkAuthentication`, a
//! ServiceAccount), and the legacy `ServerAuthorization`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalTargetRef, NamespacedTargetRef};

/// Grants the clients that pass every `requiredAuthenticationRefs` access to
/// its target: a Server, an HTTPRoute, or the whole namespace.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    shortname = "authzpolicy",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRef.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    pub target_ref: LocalTargetRef,
    pub required_authentication_refs: Vec<NamespacedTargetRef>,
}

/// Clients with one of these mesh identities (or ServiceAccounts').
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "MeshTLSAuthentication",
    namespaced,
    shortname = "meshtlsauthn"
)]
#[serde(rename_all = "camelCase")]
pub struct MeshTLSAuthenticationSpec {
    /// Identities, `*` for any, or `*.<suffix>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    /// ServiceAccounts (kind `ServiceAccount`), whose identities count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_refs: Option<Vec<NamespacedTargetRef>>,
}

/// Clients from these networks, authenticated or not.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1alpha1",
    kind = "NetworkAuthentication",
    namespaced,
    shortname = "netauthn",
    shortname = "networkauthn"
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAuthenticationSpec {
    pub networks: Vec<Network>,
}

/// A CIDR (or a single address) and the CIDRs carved out of it. Kept as
/// text: a malformed CIDR must reach the controller, which refuses it and
/// fails closed, rather than fail the whole watch.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// The legacy authorization (`policy.linkerd.io/v1beta1`): a client rule
/// for the Servers it names or selects by label.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta1",
    kind = "ServerAuthorization",
    namespaced,
    shortname = "saz",
    shortname = "serverauthz",
    shortname = "srvauthz",
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServerAuthorizationSpec {
    pub server: ServerRef,
    pub client: Client,
}

/// A Server by name, or Servers by their labels.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ServerRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// Where clients may connect from; the cluster's networks when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// Clients without TLS too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unauthenticated: bool,
    #[serde(default, rename = "meshTLS", skip_serializing_if = "Option::is_none")]
    pub mesh_tls: Option<ClientMeshTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientMeshTls {
    /// TLS clients without a mesh identity (e.g. the identity service's).
    #[serde(
        default,
        rename = "unauthenticatedTLS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub unauthenticated_tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<ServiceAccountRef>>,
}

/// A ServiceAccount (the ServerAuthorization's namespace when absent).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ServiceAccountRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}
