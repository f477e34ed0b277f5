//! The labels and annotations of the mesh contract: what the injector writes
//! on a pod, what the operator writes on namespaces and workloads, and what
//! destination, identity, `check`, `stat` and `explain` read back.

/// Set on a namespace, workload or pod: `enabled`, `ingress` or `disabled`.
pub const INJECT_ANNOTATION: &str = "linkerd.io/inject";
pub const AUTO_INJECT_LABEL: &str = "linkerd.io/auto-inject";
pub const CREATED_BY_ANNOTATION: &str = "linkerd.io/created-by";
pub const PROXY_VERSION_ANNOTATION: &str = "linkerd.io/proxy-version";
pub const TRUST_ROOT_SHA256_ANNOTATION: &str = "linkerd.io/trust-root-sha256";
pub const CONTROL_PLANE_NS_LABEL: &str = "linkerd.io/control-plane-ns";
pub const WORKLOAD_NS_LABEL: &str = "linkerd.io/workload-ns";
pub const PROXY_LABEL_PREFIX: &str = "linkerd.io/proxy-";
pub const CONTROL_PLANE_COMPONENT_LABEL: &str = "linkerd.io/control-plane-component";

/// Owner kinds that get a `linkerd.io/proxy-<kind>: <name>` label.
pub const LABELLED_OWNER_KINDS: &[&str] = &[
    "deployment",
    "replicationcontroller",
    "replicaset",
    "job",
    "daemonset",
    "statefulset",
    "cronjob",
];

/// The owner kind named by a `linkerd.io/proxy-<kind>` label key, if it is one.
pub fn owner_label_kind(key: &str) -> Option<&str> {
    key.strip_prefix(PROXY_LABEL_PREFIX)
        .filter(|kind| LABELLED_OWNER_KINDS.contains(kind))
}

/// Ports whose traffic the proxy forwards without protocol detection.
pub const OPAQUE_PORTS_ANNOTATION: &str = "config.linkerd.io/opaque-ports";

/// On a pod or its namespace: who may connect to a port no Server selects
/// (`settings::InboundPolicy`'s spellings).
pub const DEFAULT_INBOUND_POLICY_ANNOTATION: &str = "config.linkerd.io/default-inbound-policy";

pub const CONFIG_PREFIX: &str = "config.linkerd.io/";
const ALPHA_PREFIX: &str = "config.alpha.linkerd.io/";
const BETA_PREFIX: &str = "config.beta.linkerd.io/";

pub const NATIVE_SIDECAR_STABLE: &str = "config.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_BETA: &str = "config.beta.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_ALPHA: &str = "config.alpha.linkerd.io/proxy-enable-native-sidecar";
pub const WAIT_BEFORE_EXIT: &str = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";

/// True for keys in the `config.linkerd.io/`, alpha or beta namespaces.
pub fn is_config_key(key: &str) -> bool {
    key.starts_with(CONFIG_PREFIX) || key.starts_with(ALPHA_PREFIX) || key.starts_with(BETA_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_label_kinds() {
        assert_eq!(
            owner_label_kind("linkerd.io/proxy-deployment"),
            Some("deployment")
        );
        assert_eq!(
            owner_label_kind("linkerd.io/proxy-cronjob"),
            Some("cronjob")
        );
        assert_eq!(owner_label_kind("linkerd.io/proxy-version"), None);
        assert_eq!(owner_label_kind("app"), None);
    }
}
