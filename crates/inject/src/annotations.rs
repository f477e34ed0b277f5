//! Label and annotation names, and the `config.linkerd.io/*` overrides.
//!
//! Precedence: the pod's own annotation beats the namespace's (for inheritable
//! keys), which beats the values file. Every unknown key and every value that
//! cannot be used becomes a [`Warning`]; the setting is then left at its default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::parse;
use crate::values::Values;
use crate::warning::{Warning, WarningCode};

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

const CONFIG_PREFIX: &str = "config.linkerd.io/";
const ALPHA_PREFIX: &str = "config.alpha.linkerd.io/";
const BETA_PREFIX: &str = "config.beta.linkerd.io/";

pub const NATIVE_SIDECAR_STABLE: &str = "config.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_BETA: &str = "config.beta.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_ALPHA: &str = "config.alpha.linkerd.io/proxy-enable-native-sidecar";
pub const WAIT_BEFORE_EXIT: &str = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";

/// Every configuration key kinject honours, and whether a namespace annotation
/// with that key is inherited by pods that lack it (Linkerd's `ProxyAnnotations`).
pub const CONFIG_KEYS: &[(&str, bool)] = &[
    ("config.linkerd.io/proxy-image", true),
    ("config.linkerd.io/proxy-version", true),
    ("config.linkerd.io/image-pull-policy", true),
    ("config.linkerd.io/admin-port", true),
    ("config.linkerd.io/control-port", true),
    ("config.linkerd.io/inbound-port", true),
    ("config.linkerd.io/outbound-port", true),
    ("config.linkerd.io/pod-inbound-ports", true),
    ("config.linkerd.io/skip-inbound-ports", true),
    ("config.linkerd.io/skip-outbound-ports", true),
    ("config.linkerd.io/skip-subnets", true),
    (OPAQUE_PORTS_ANNOTATION, true),
    ("config.linkerd.io/proxy-cpu-request", true),
    ("config.linkerd.io/proxy-cpu-limit", true),
    ("config.linkerd.io/proxy-cpu-ratio-limit", false),
    ("config.linkerd.io/proxy-memory-request", true),
    ("config.linkerd.io/proxy-memory-limit", true),
    ("config.linkerd.io/proxy-ephemeral-storage-request", true),
    ("config.linkerd.io/proxy-ephemeral-storage-limit", true),
    ("config.linkerd.io/proxy-uid", true),
    ("config.linkerd.io/proxy-gid", true),
    ("config.linkerd.io/proxy-log-level", true),
    ("config.linkerd.io/proxy-log-format", true),
    ("config.linkerd.io/proxy-log-http-headers", true),
    ("config.linkerd.io/proxy-admin-shutdown", true),
    ("config.linkerd.io/enable-external-profiles", true),
    (
        "config.linkerd.io/proxy-require-identity-inbound-ports",
        true,
    ),
    ("config.linkerd.io/proxy-metrics-hostname-labels", true),
    ("config.linkerd.io/proxy-outbound-connect-timeout", true),
    ("config.linkerd.io/proxy-inbound-connect-timeout", true),
    (
        "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout",
        true,
    ),
    (
        "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout",
        true,
    ),
    (
        "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout",
        true,
    ),
    (
        "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout",
        true,
    ),
    ("config.linkerd.io/proxy-await", true),
    ("config.linkerd.io/default-inbound-policy", true),
    ("config.linkerd.io/access-log", true),
    ("config.linkerd.io/shutdown-grace-period", true),
    (NATIVE_SIDECAR_STABLE, true),
    (NATIVE_SIDECAR_BETA, false),
    (NATIVE_SIDECAR_ALPHA, true),
    (WAIT_BEFORE_EXIT, true),
    ("config.linkerd.io/proxy-additional-env", true),
    ("config.linkerd.io/enable-debug-sidecar", true),
    ("config.linkerd.io/debug-image", false),
    ("config.linkerd.io/debug-image-version", false),
    ("config.linkerd.io/debug-image-pull-policy", false),
    ("config.linkerd.io/enable-gateway", false),
    ("config.linkerd.io/close-wait-timeout", false),
];

/// Keys under the config prefixes that are not proxy settings and are read elsewhere
/// (namespace selectors), so they are neither overrides nor "unknown".
const NON_PROXY_CONFIG_KEYS: &[&str] = &["config.linkerd.io/admission-webhooks"];

/// True for keys in the `config.linkerd.io/`, alpha or beta namespaces.
pub fn is_config_key(key: &str) -> bool {
    key.starts_with(CONFIG_PREFIX) || key.starts_with(ALPHA_PREFIX) || key.starts_with(BETA_PREFIX)
}

fn known_key(key: &str) -> Option<bool> {
    CONFIG_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, inherit)| *inherit)
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

/// The namespace annotations a pod inherits: inheritable keys (and
/// `linkerd.io/inject`) that the pod does not set itself.
pub fn inherited_from_namespace(
    pod: Option<&Map<String, Value>>,
    ns: Option<&Map<String, Value>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in ns.into_iter().flatten() {
        let inheritable = k == INJECT_ANNOTATION || known_key(k) == Some(true);
        if inheritable
            && !pod.is_some_and(|p| p.contains_key(k))
            && let Some(s) = scalar_str(v)
        {
            out.insert(k.clone(), s.into_owned());
        }
    }
    out
}

/// Extra settings carried by annotations that are not part of Linkerd's values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnnotationSettings {
    pub enable_debug_sidecar: bool,
    /// Env vars from `config.linkerd.io/proxy-additional-env`, merged by name
    /// over `proxy.additionalEnv`.
    pub additional_env_overrides: Vec<Value>,
}

/// Applies the effective annotations onto a copy of the values.
pub fn apply_overrides(
    values: &mut Values,
    ann: &EffectiveAnnotations<'_>,
    warnings: &mut Vec<Warning>,
) -> AnnotationSettings {
    let mut settings = AnnotationSettings::default();
    fn bad(warnings: &mut Vec<Warning>, key: &str, value: &str, why: String) {
        warnings.push(Warning::new(
            WarningCode::InvalidConfigValue,
            format!("annotation {key}={value:?} ignored: {why}"),
        ));
    }

    // Native sidecar: the stable key beats beta, which beats alpha.
    for key in [
        NATIVE_SIDECAR_ALPHA,
        NATIVE_SIDECAR_BETA,
        NATIVE_SIDECAR_STABLE,
    ] {
        if let Some(v) = ann.get(key) {
            match parse::go_bool(v) {
                Ok(b) => values.proxy.native_sidecar = b,
                Err(e) => bad(warnings, key, v, e),
            }
        }
    }

    for (&key, value) in &ann.map {
        let v: &str = value.as_ref();
        let p = &mut values.proxy;
        let res: Result<(), String> = match key {
            INJECT_ANNOTATION => {
                if v == "ingress" {
                    p.is_ingress = true;
                }
                Ok(())
            }
            NATIVE_SIDECAR_ALPHA | NATIVE_SIDECAR_BETA | NATIVE_SIDECAR_STABLE => Ok(()),
            "config.linkerd.io/proxy-image" => non_empty(v).map(|v| p.image.name = v),
            "config.linkerd.io/proxy-version" => non_empty(v).map(|v| p.image.version = v),
            "config.linkerd.io/image-pull-policy" => {
                pull_policy(v).map(|v| p.image.pull_policy = v)
            }
            "config.linkerd.io/admin-port" => parse::port(v).map(|n| p.ports.admin = n),
            "config.linkerd.io/control-port" => parse::port(v).map(|n| p.ports.control = n),
            "config.linkerd.io/inbound-port" => parse::port(v).map(|n| p.ports.inbound = n),
            "config.linkerd.io/outbound-port" => parse::port(v).map(|n| p.ports.outbound = n),
            "config.linkerd.io/pod-inbound-ports" => {
                parse::port_ranges(v).map(|_| p.pod_inbound_ports = v.to_string())
            }
            "config.linkerd.io/skip-inbound-ports" => parse::port_ranges(v)
                .map(|_| values.proxy_init.ignore_inbound_ports = v.to_string()),
            "config.linkerd.io/skip-outbound-ports" => parse::port_ranges(v)
                .map(|_| values.proxy_init.ignore_outbound_ports = v.to_string()),
            "config.linkerd.io/skip-subnets" => {
                parse::cidrs(v).map(|_| values.proxy_init.skip_subnets = v.to_string())
            }
            // Validated when resolved against the pod's named ports.
            OPAQUE_PORTS_ANNOTATION => {
                p.opaque_ports = v.to_string();
                Ok(())
            }
            "config.linkerd.io/proxy-cpu-request" => parse::whole_cpu_cores(v).map(|n| {
                p.resources.cpu.request = v.to_string();
                p.runtime.workers.minimum = n.max(1);
            }),
            "config.linkerd.io/proxy-cpu-limit" => parse::whole_cpu_cores(v).map(|n| {
                p.resources.cpu.limit = v.to_string();
                p.runtime.workers.maximum = Some(n.max(1));
            }),
            "config.linkerd.io/proxy-cpu-ratio-limit" => match v.parse::<f64>() {
                Ok(r) if r > 0.0 && r < 1.0 => {
                    p.runtime.workers.maximum_cpu_ratio = Some(r);
                    Ok(())
                }
                _ => Err(format!("{v:?} is not a number strictly between 0 and 1")),
            },
            "config.linkerd.io/proxy-memory-request" => {
                parse::quantity(v).map(|_| p.resources.memory.request = v.to_string())
            }
            "config.linkerd.io/proxy-memory-limit" => {
                parse::quantity(v).map(|_| p.resources.memory.limit = v.to_string())
            }
            "config.linkerd.io/proxy-ephemeral-storage-request" => {
                parse::quantity(v).map(|_| p.resources.ephemeral_storage.request = v.to_string())
            }
            "config.linkerd.io/proxy-ephemeral-storage-limit" => {
                parse::quantity(v).map(|_| p.resources.ephemeral_storage.limit = v.to_string())
            }
            "config.linkerd.io/proxy-uid" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => {
                    p.uid = n;
                    Ok(())
                }
                _ => Err(format!("{v:?} is not a non-negative user id")),
            },
            "config.linkerd.io/proxy-gid" => match v.parse::<i64>() {
                Ok(n) if n >= -1 => {
                    p.gid = n;
                    Ok(())
                }
                _ => Err(format!("{v:?} is not a group id")),
            },
            "config.linkerd.io/proxy-log-level" => non_empty(v).map(|v| p.log_level = v),
            "config.linkerd.io/proxy-log-format" => {
                one_of(v, &["plain", "json"]).map(|v| p.log_format = v)
            }
            // Linkerd fails the whole admission on a bad value here; kinject warns.
            "config.linkerd.io/proxy-log-http-headers" => {
                one_of(v, &["off", "insecure"]).map(|v| p.log_http_headers = v)
            }
            "config.linkerd.io/proxy-admin-shutdown" => {
                parse::enabled_disabled(v).map(|b| p.enable_shutdown_endpoint = b)
            }
            "config.linkerd.io/enable-external-profiles" => {
                parse::go_bool(v).map(|b| p.enable_external_profiles = b)
            }
            "config.linkerd.io/proxy-require-identity-inbound-ports" => {
                parse::port_ranges(v).map(|_| p.require_identity_on_inbound_ports = v.to_string())
            }
            "config.linkerd.io/proxy-metrics-hostname-labels" => {
                parse::go_bool(v).map(|b| p.metrics.hostname_labels = b)
            }
            "config.linkerd.io/proxy-outbound-connect-timeout" => {
                parse::duration_as_millis(v).map(|d| p.outbound_connect_timeout = d)
            }
            "config.linkerd.io/proxy-inbound-connect-timeout" => {
                parse::duration_as_millis(v).map(|d| p.inbound_connect_timeout = d)
            }
            "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout" => {
                parse::duration_as_secs(v).map(|d| p.outbound_discovery_cache_unused_timeout = d)
            }
            "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout" => {
                parse::duration_as_secs(v).map(|d| p.inbound_discovery_cache_unused_timeout = d)
            }
            "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout" => {
                parse::go_bool(v).map(|b| p.disable_outbound_protocol_detect_timeout = b)
            }
            "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout" => {
                parse::go_bool(v).map(|b| p.disable_inbound_protocol_detect_timeout = b)
            }
            "config.linkerd.io/proxy-await" => parse::enabled_disabled(v).map(|b| p.await_ = b),
            "config.linkerd.io/default-inbound-policy" => {
                one_of(v, &crate::values::DEFAULT_INBOUND_POLICIES)
                    .map(|v| p.default_inbound_policy = v)
            }
            "config.linkerd.io/access-log" => {
                one_of(v, &["apache", "json"]).map(|v| p.access_log = v)
            }
            "config.linkerd.io/shutdown-grace-period" => {
                parse::duration_as_millis(v).map(|d| p.shutdown_grace_period = d)
            }
            WAIT_BEFORE_EXIT => v
                .parse::<u64>()
                .map(|n| p.wait_before_exit_seconds = n)
                .map_err(|_| format!("{v:?} is not a whole number of seconds")),
            "config.linkerd.io/proxy-additional-env" => additional_env(v).map(|env| {
                settings.additional_env_overrides =
                    merge_env(std::mem::take(&mut settings.additional_env_overrides), env)
            }),
            "config.linkerd.io/enable-debug-sidecar" => {
                parse::go_bool(v).map(|b| settings.enable_debug_sidecar = b)
            }
            "config.linkerd.io/debug-image" => {
                non_empty(v).map(|v| values.debug_container.image.name = v)
            }
            "config.linkerd.io/debug-image-version" => {
                non_empty(v).map(|v| values.debug_container.image.version = v)
            }
            "config.linkerd.io/debug-image-pull-policy" => {
                pull_policy(v).map(|v| values.debug_container.image.pull_policy = v)
            }
            "config.linkerd.io/enable-gateway" => parse::go_bool(v).map(|b| p.is_gateway = b),
            // Linkerd denies admission when this is set without runAsRoot;
            // kinject warns and ignores it instead.
            "config.linkerd.io/close-wait-timeout" => parse::go_duration_nanos(v).and_then(|n| {
                if values.proxy_init.run_as_root {
                    values.proxy_init.close_wait_timeout_secs = (n / 1_000_000_000) as u64;
                    Ok(())
                } else {
                    Err("it needs proxyInit.runAsRoot=true in the values".into())
                }
            }),
            k if NON_PROXY_CONFIG_KEYS.contains(&k) => Ok(()),
            k if is_config_key(k) => {
                warnings.push(Warning::new(
                    WarningCode::UnknownConfigKey,
                    format!("unknown annotation {k} ignored (not a kinject/Linkerd setting)"),
                ));
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(why) = res {
            bad(warnings, key, v, why);
        }
    }
    settings
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("empty value".into())
    } else {
        Ok(v.to_string())
    }
}

fn one_of(v: &str, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} is not one of {}", allowed.join(", ")))
    }
}

fn pull_policy(v: &str) -> Result<String, String> {
    one_of(v, &["Always", "IfNotPresent", "Never"])
}

fn additional_env(v: &str) -> Result<Vec<Value>, String> {
    let parsed: Value =
        serde_json::from_str(v).map_err(|e| format!("not a JSON list of env vars: {e}"))?;
    let list = match parsed {
        Value::Array(list) => list,
        _ => return Err("not a JSON list of env vars".into()),
    };
    for item in &list {
        match item.get("name") {
            Some(Value::String(n)) if !n.is_empty() => {}
            _ => return Err("every env var needs a non-empty \"name\"".into()),
        }
    }
    Ok(list)
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
    use serde_json::json;

    fn apply(pod: Value, ns: Value) -> (Values, AnnotationSettings, Vec<Warning>) {
        let pod = pod.as_object().cloned().unwrap_or_default();
        let ns = ns.as_object().cloned().unwrap_or_default();
        let added = inherited_from_namespace(Some(&pod), Some(&ns));
        let eff = EffectiveAnnotations::collect(Some(&pod), &added);
        let mut values = Values::default();
        let mut warnings = vec![];
        let s = apply_overrides(&mut values, &eff, &mut warnings);
        (values, s, warnings)
    }

    #[test]
    fn pod_beats_namespace_and_only_inheritable_keys_inherit() {
        let (v, _, w) = apply(
            json!({"config.linkerd.io/proxy-log-level": "debug"}),
            json!({
                "config.linkerd.io/proxy-log-level": "trace",
                "config.linkerd.io/proxy-uid": "1234",
                "config.linkerd.io/enable-gateway": "true",
            }),
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(v.proxy.log_level, "debug");
        assert_eq!(v.proxy.uid, 1234);
        assert!(!v.proxy.is_gateway, "enable-gateway is not inherited");
    }

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

    #[test]
    fn unknown_keys_warn() {
        let (_, _, w) = apply(json!({"config.linkerd.io/invalid-key": "x"}), json!({}));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, WarningCode::UnknownConfigKey);
        assert!(w[0].message.contains("config.linkerd.io/invalid-key"));
        // Unknown namespace keys are not inherited, so they do not warn per pod.
        let (_, _, w) = apply(json!({}), json!({"config.linkerd.io/invalid-key": "x"}));
        assert!(w.is_empty());
    }

    #[test]
    fn invalid_values_warn_and_keep_defaults() {
        let cases = [
            ("config.linkerd.io/proxy-cpu-request", "lots"),
            ("config.linkerd.io/proxy-memory-limit", "64Mb"),
            ("config.linkerd.io/admin-port", "70000"),
            ("config.linkerd.io/inbound-port", "http"),
            ("config.linkerd.io/skip-inbound-ports", "22,abc"),
            ("config.linkerd.io/skip-subnets", "10.0.0.0/99"),
            ("config.linkerd.io/proxy-log-http-headers", "loud"),
            ("config.linkerd.io/proxy-outbound-connect-timeout", "soon"),
            ("config.linkerd.io/proxy-cpu-ratio-limit", "1.5"),
            ("config.linkerd.io/proxy-additional-env", "{not json"),
            ("config.linkerd.io/proxy-await", "maybe"),
            ("config.linkerd.io/image-pull-policy", "Sometimes"),
            ("config.linkerd.io/close-wait-timeout", "10s"),
            ("config.linkerd.io/proxy-uid", "-5"),
        ];
        for (k, val) in cases {
            let (v, _, w) = apply(json!({ k: val }), json!({}));
            assert_eq!(w.len(), 1, "{k}: {w:?}");
            assert_eq!(w[0].code, WarningCode::InvalidConfigValue);
            assert!(
                w[0].message.contains(k) && w[0].message.contains(val),
                "{w:?}"
            );
            assert_eq!(v, Values::default(), "{k} changed the values");
        }
    }

    #[test]
    fn cpu_overrides_set_workers() {
        let (v, _, w) = apply(
            json!({"config.linkerd.io/proxy-cpu-limit": "1.5",
                   "config.linkerd.io/proxy-cpu-request": "100m",
                   "config.linkerd.io/proxy-cpu-ratio-limit": "0.10"}),
            json!({}),
        );
        assert!(w.is_empty());
        assert_eq!(v.proxy.runtime.workers.maximum, Some(2));
        assert_eq!(v.proxy.runtime.workers.minimum, 1);
        assert_eq!(v.proxy.runtime.workers.maximum_cpu_ratio, Some(0.1));
        assert_eq!(v.proxy.resources.cpu.limit, "1.5");
    }

    #[test]
    fn durations_are_normalised() {
        let (v, _, _) = apply(
            json!({"config.linkerd.io/shutdown-grace-period": "30s",
                   "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout": "50000ms"}),
            json!({}),
        );
        assert_eq!(v.proxy.shutdown_grace_period, "30000ms");
        assert_eq!(v.proxy.inbound_discovery_cache_unused_timeout, "50s");
    }

    #[test]
    fn native_sidecar_precedence() {
        let (v, _, _) = apply(
            json!({NATIVE_SIDECAR_STABLE: "false", NATIVE_SIDECAR_ALPHA: "true"}),
            json!({}),
        );
        assert!(!v.proxy.native_sidecar);
        let (v, _, _) = apply(json!({NATIVE_SIDECAR_BETA: "false"}), json!({}));
        assert!(!v.proxy.native_sidecar);
        // The beta key is not inherited from namespaces.
        let (v, _, _) = apply(json!({}), json!({NATIVE_SIDECAR_BETA: "false"}));
        assert!(v.proxy.native_sidecar);
    }

    #[test]
    fn additional_env_merges_by_name() {
        let (_, s, w) = apply(
            json!({"config.linkerd.io/proxy-additional-env":
                   r#"[{"name":"A","value":"1"},{"name":"B","value":"2"}]"#}),
            json!({}),
        );
        assert!(w.is_empty());
        assert_eq!(s.additional_env_overrides.len(), 2);
        let merged = merge_env(
            vec![
                json!({"name":"B","value":"0"}),
                json!({"name":"C","value":"3"}),
            ],
            s.additional_env_overrides,
        );
        assert_eq!(
            merged,
            vec![
                json!({"name":"B","value":"2"}),
                json!({"name":"C","value":"3"}),
                json!({"name":"A","value":"1"})
            ]
        );
    }

    #[test]
    fn non_string_yaml_scalars_are_read_as_text() {
        let (_, s, w) = apply(
            json!({"config.linkerd.io/enable-debug-sidecar": true}),
            json!({}),
        );
        assert!(w.is_empty());
        assert!(s.enable_debug_sidecar);
    }
}
