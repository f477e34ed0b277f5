//! `Server` (`policy.linkerd.io/v1beta3`): a port of the pods it selects,
//! its protocol, and who may connect when no authorization says otherwise.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "policy.linkerd.io",
    version = "v1beta3",
    kind = "Server",
    namespaced,
    shortname = "srv",
    printcolumn = r#"{"name":"Port","type":"string","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.proxyProtocol"}"#,
    printcolumn = r#"{"name":"Access Policy","type":"string","jsonPath":".spec.accessPolicy"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// The pods in the Server's namespace it applies to (all when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Linkerd's ExternalWorkloads; kinject has none, so such a Server
    /// applies to no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_workload_selector: Option<LabelSelector>,
    /// A container port's number or name.
    pub port: IntOrString,
    /// Supersedes the pods' `config.linkerd.io/opaque-ports` for this port;
    /// `unknown` (detect) when absent.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Who may connect when no authorization matches (a default inbound
    /// policy's name); `deny` when absent, as Linkerd's CRD defaults it.
    #[serde(default)]
    pub access_policy: AccessPolicy,
}

/// How the proxy treats a Server's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ProxyProtocol {
    /// Detect HTTP, else opaque.
    #[default]
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "HTTP/1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
    #[serde(rename = "gRPC")]
    Grpc,
    #[serde(rename = "opaque")]
    Opaque,
    #[serde(rename = "TLS")]
    Tls,
}

/// A Server's `accessPolicy`: the default inbound policies' names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccessPolicy {
    #[default]
    Deny,
    Audit,
    AllAuthenticated,
    AllUnauthenticated,
    ClusterAuthenticated,
    ClusterUnauthenticated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linkerds_server_reads() {
        let s: ServerSpec = serde_json::from_value(serde_json::json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "port": "http",
            "proxyProtocol": "HTTP/1",
            "accessPolicy": "all-authenticated",
        }))
        .expect("a Server");
        assert_eq!(s.port, IntOrString::String("http".into()));
        assert_eq!(s.proxy_protocol, ProxyProtocol::Http1);
        assert_eq!(s.access_policy, AccessPolicy::AllAuthenticated);
        let n: ServerSpec = serde_json::from_value(serde_json::json!({"port": 8080}))
            .expect("a Server by port number");
        assert_eq!(n.port, IntOrString::Int(8080));
        assert_eq!(
            (n.proxy_protocol, n.access_policy),
            (ProxyProtocol::Unknown, AccessPolicy::Deny),
            "Linkerd's defaults"
        );
        assert!(
            serde_json::from_value::<ServerSpec>(
                serde_json::json!({"port": 80, "proxyProtocol": "HTTP/3"})
            )
            .is_err()
        );
    }
}
