//! Label and annotation names, and the `config.linkerd.io/*` overrides.
//!
//! Precedence: the pod's own annotation beats the namespace's (for inheritable
//! keys), which beats the values file. Every unknown key and every value that
//! cannot be used becomes a [`Warning`]; the setting is then left at its default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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
pub const OPAQUE_PORTS_ANNOTATION: &str = "config.linkerd.io/opaque-ports";

pub(crate) const CONFIG_PREFIX: &str = "config.linkerd.io/";
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

/// Reads a string-valued map entry. Non-string scalars (`true`, `3` from
/// hand-written YAML) are read as their text, as Kubernetes' YAML loader would.
pub fn scalar_str(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

/// The effective configuration annotations of a pod: its own `config.*` and
/// `linkerd.io/inject` keys, plus the annotations the injector is about to add
/// (inherited namespace keys, the filtered opaque-ports list), which are read
/// as if the pod had them.
#[derive(Debug, Default)]
pub struct EffectiveAnnotations<'a> {
    pub map: BTreeMap<&'a str, std::borrow::Cow<'a, str>>,
}

impl<'a> EffectiveAnnotations<'a> {
    pub fn collect(
        pod: Option<&'a Map<String, Value>>,
        added: &'a BTreeMap<String, String>,
    ) -> Self {
        let mut out = Self::default();
        if let Some(pod) = pod {
            for (k, v) in pod {
                if (is_config_key(k) || k == INJECT_ANNOTATION)
                    && let Some(s) = scalar_str(v)
                {
                    out.map.insert(k.as_str(), s);
                }
            }
        }
        for (k, v) in added {
            if is_config_key(k) || k == INJECT_ANNOTATION {
                out.map.entry(k.as_str()).or_insert(v.as_str().into());
            }
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|v| v.as_ref())
    }

    /// True when any annotation changes the configuration (`linkerd.io/inject`
    /// only does so for `ingress`).
    pub fn has_overrides(&self) -> bool {
        self.map
            .iter()
            .any(|(k, v)| *k != INJECT_ANNOTATION || v.as_ref() == "ingress")
    }
}

/// Merges env var lists by name: entries of `over` replace same-named entries of
/// `base` in place; new names are appended.
pub fn merge_env(mut base: Vec<Value>, over: Vec<Value>) -> Vec<Value> {
    for e in over {
        let name = e.get("name").cloned();
        match base.iter_mut().find(|b| b.get("name") == name.as_ref()) {
            Some(slot) => *slot = e,
            None => base.push(e),
        }
    }
    base
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
