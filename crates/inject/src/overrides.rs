//! The `config.linkerd.io/*` overrides: one table of the keys kinject
//! honours, each with whether a namespace passes it on and how its value is
//! read into the settings.
//!
//! Precedence: the pod's own annotation beats the namespace's (for inherited
//! keys), which beats the values file. Every unknown key and every value that
//! cannot be used becomes a [`Warning`]; the setting then keeps its value.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::annotations::{EffectiveAnnotations, merge_env, scalar_str};
use crate::warning::{Warning, WarningCode};
use kinject_mesh::labels::{
    DEFAULT_INBOUND_POLICY_ANNOTATION, INJECT_ANNOTATION, NATIVE_SIDECAR_ALPHA,
    NATIVE_SIDECAR_BETA, NATIVE_SIDECAR_STABLE, OPAQUE_PORTS_ANNOTATION, WAIT_BEFORE_EXIT,
    is_config_key,
};
use kinject_mesh::parse;
use kinject_mesh::values::{DEFAULT_INBOUND_POLICIES, Values};

/// Extra settings carried by annotations that are not part of Linkerd's values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnnotationSettings {
    pub enable_debug_sidecar: bool,
    /// Env vars from `config.linkerd.io/proxy-additional-env`, merged by name
    /// over `proxy.additionalEnv`.
    pub additional_env_overrides: Vec<Value>,
}

/// What an override may change: the pod's copy of the values, and the
/// settings that are not values.
pub struct Overridden<'a> {
    pub values: &'a mut Values,
    pub settings: &'a mut AnnotationSettings,
}

/// Reads an annotation's value into the settings, or says why it cannot.
type Apply = fn(&str, &mut Overridden<'_>) -> Result<(), String>;

/// One configuration annotation kinject honours.
pub struct ConfigKey {
    pub key: &'static str,
    /// Whether a namespace's annotation reaches pods that lack it (Linkerd's
    /// `ProxyAnnotations`).
    pub inherited: bool,
    apply: Apply,
}

const fn inherited(key: &'static str, apply: Apply) -> ConfigKey {
    ConfigKey {
        key,
        inherited: true,
        apply,
    }
}

const fn pod_only(key: &'static str, apply: Apply) -> ConfigKey {
    ConfigKey {
        key,
        inherited: false,
        apply,
    }
}

/// Every configuration key kinject honours.
///
/// The three native-sidecar keys write the same setting: the effective
/// annotations are applied in key order, and `config.alpha…` < `config.beta…`
/// < `config.linkerd.io…`, so the stable key beats beta, which beats alpha.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    inherited("config.linkerd.io/proxy-image", |v, o| {
        non_empty(v).map(|v| o.values.proxy.image.name = v)
    }),
    inherited("config.linkerd.io/proxy-version", |v, o| {
        non_empty(v).map(|v| o.values.proxy.image.version = v)
    }),
    inherited("config.linkerd.io/image-pull-policy", |v, o| {
        pull_policy(v).map(|v| o.values.proxy.image.pull_policy = v)
    }),
    inherited("config.linkerd.io/admin-port", |v, o| {
        parse::port(v).map(|n| o.values.proxy.ports.admin = n)
    }),
    inherited("config.linkerd.io/control-port", |v, o| {
        parse::port(v).map(|n| o.values.proxy.ports.control = n)
    }),
    inherited("config.linkerd.io/inbound-port", |v, o| {
        parse::port(v).map(|n| o.values.proxy.ports.inbound = n)
    }),
    inherited("config.linkerd.io/outbound-port", |v, o| {
        parse::port(v).map(|n| o.values.proxy.ports.outbound = n)
    }),
    inherited("config.linkerd.io/pod-inbound-ports", |v, o| {
        parse::port_ranges(v).map(|_| o.values.proxy.pod_inbound_ports = v.to_string())
    }),
    inherited("config.linkerd.io/skip-inbound-ports", |v, o| {
        parse::port_ranges(v).map(|_| o.values.proxy_init.ignore_inbound_ports = v.to_string())
    }),
    inherited("config.linkerd.io/skip-outbound-ports", |v, o| {
        parse::port_ranges(v).map(|_| o.values.proxy_init.ignore_outbound_ports = v.to_string())
    }),
    inherited("config.linkerd.io/skip-subnets", |v, o| {
        parse::cidrs(v).map(|_| o.values.proxy_init.skip_subnets = v.to_string())
    }),
    // Checked later, against the pod's named ports.
    inherited(OPAQUE_PORTS_ANNOTATION, |v, o| {
        o.values.proxy.opaque_ports = v.to_string();
        Ok(())
    }),
    inherited("config.linkerd.io/proxy-cpu-request", |v, o| {
        parse::whole_cpu_cores(v).map(|n| {
            o.values.proxy.resources.cpu.request = v.to_string();
            o.values.proxy.runtime.workers.minimum = n.max(1);
        })
    }),
    inherited("config.linkerd.io/proxy-cpu-limit", |v, o| {
        parse::whole_cpu_cores(v).map(|n| {
            o.values.proxy.resources.cpu.limit = v.to_string();
            o.values.proxy.runtime.workers.maximum = Some(n.max(1));
        })
    }),
    pod_only(
        "config.linkerd.io/proxy-cpu-ratio-limit",
        |v, o| match v.parse::<f64>() {
            Ok(r) if r > 0.0 && r < 1.0 => {
                o.values.proxy.runtime.workers.maximum_cpu_ratio = Some(r);
                Ok(())
            }
            _ => Err(format!("{v:?} is not a number strictly between 0 and 1")),
        },
    ),
    inherited("config.linkerd.io/proxy-memory-request", |v, o| {
        parse::quantity(v).map(|_| o.values.proxy.resources.memory.request = v.to_string())
    }),
    inherited("config.linkerd.io/proxy-memory-limit", |v, o| {
        parse::quantity(v).map(|_| o.values.proxy.resources.memory.limit = v.to_string())
    }),
    inherited(
        "config.linkerd.io/proxy-ephemeral-storage-request",
        |v, o| {
            parse::quantity(v)
                .map(|_| o.values.proxy.resources.ephemeral_storage.request = v.to_string())
        },
    ),
    inherited("config.linkerd.io/proxy-ephemeral-storage-limit", |v, o| {
        parse::quantity(v).map(|_| o.values.proxy.resources.ephemeral_storage.limit = v.to_string())
    }),
    inherited("config.linkerd.io/proxy-uid", |v, o| {
        match v.parse::<i64>() {
            Ok(n) if n >= 0 => {
                o.values.proxy.uid = n;
                Ok(())
            }
            _ => Err(format!("{v:?} is not a non-negative user id")),
        }
    }),
    inherited("config.linkerd.io/proxy-gid", |v, o| {
        match v.parse::<i64>() {
            Ok(n) if n >= -1 => {
                o.values.proxy.gid = n;
                Ok(())
            }
            _ => Err(format!("{v:?} is not a group id")),
        }
    }),
    inherited("config.linkerd.io/proxy-log-level", |v, o| {
        non_empty(v).map(|v| o.values.proxy.log_level = v)
    }),
    inherited("config.linkerd.io/proxy-log-format", |v, o| {
        one_of(v, &["plain", "json"]).map(|v| o.values.proxy.log_format = v)
    }),
    // Linkerd fails the whole admission on a bad value here; kinject warns.
    inherited("config.linkerd.io/proxy-log-http-headers", |v, o| {
        one_of(v, &["off", "insecure"]).map(|v| o.values.proxy.log_http_headers = v)
    }),
    inherited("config.linkerd.io/proxy-admin-shutdown", |v, o| {
        parse::enabled_disabled(v).map(|b| o.values.proxy.enable_shutdown_endpoint = b)
    }),
    inherited("config.linkerd.io/enable-external-profiles", |v, o| {
        parse::go_bool(v).map(|b| o.values.proxy.enable_external_profiles = b)
    }),
    inherited(
        "config.linkerd.io/proxy-require-identity-inbound-ports",
        |v, o| {
            parse::port_ranges(v)
                .map(|_| o.values.proxy.require_identity_on_inbound_ports = v.to_string())
        },
    ),
    inherited("config.linkerd.io/proxy-metrics-hostname-labels", |v, o| {
        parse::go_bool(v).map(|b| o.values.proxy.metrics.hostname_labels = b)
    }),
    inherited(
        "config.linkerd.io/proxy-outbound-connect-timeout",
        |v, o| parse::duration_as_millis(v).map(|d| o.values.proxy.outbound_connect_timeout = d),
    ),
    inherited("config.linkerd.io/proxy-inbound-connect-timeout", |v, o| {
        parse::duration_as_millis(v).map(|d| o.values.proxy.inbound_connect_timeout = d)
    }),
    inherited(
        "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout",
        |v, o| {
            parse::duration_as_secs(v)
                .map(|d| o.values.proxy.outbound_discovery_cache_unused_timeout = d)
        },
    ),
    inherited(
        "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout",
        |v, o| {
            parse::duration_as_secs(v)
                .map(|d| o.values.proxy.inbound_discovery_cache_unused_timeout = d)
        },
    ),
    inherited(
        "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout",
        |v, o| {
            parse::go_bool(v).map(|b| o.values.proxy.disable_outbound_protocol_detect_timeout = b)
        },
    ),
    inherited(
        "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout",
        |v, o| {
            parse::go_bool(v).map(|b| o.values.proxy.disable_inbound_protocol_detect_timeout = b)
        },
    ),
    inherited("config.linkerd.io/proxy-await", |v, o| {
        parse::enabled_disabled(v).map(|b| o.values.proxy.await_ = b)
    }),
    inherited(DEFAULT_INBOUND_POLICY_ANNOTATION, |v, o| {
        one_of(v, &DEFAULT_INBOUND_POLICIES).map(|v| o.values.proxy.default_inbound_policy = v)
    }),
    inherited("config.linkerd.io/access-log", |v, o| {
        one_of(v, &["apache", "json"]).map(|v| o.values.proxy.access_log = v)
    }),
    inherited("config.linkerd.io/shutdown-grace-period", |v, o| {
        parse::duration_as_millis(v).map(|d| o.values.proxy.shutdown_grace_period = d)
    }),
    inherited(NATIVE_SIDECAR_STABLE, native_sidecar),
    pod_only(NATIVE_SIDECAR_BETA, native_sidecar),
    inherited(NATIVE_SIDECAR_ALPHA, native_sidecar),
    inherited(WAIT_BEFORE_EXIT, |v, o| {
        v.parse::<u64>()
            .map(|n| o.values.proxy.wait_before_exit_seconds = n)
            .map_err(|_| format!("{v:?} is not a whole number of seconds"))
    }),
    inherited("config.linkerd.io/proxy-additional-env", |v, o| {
        additional_env(v).map(|env| {
            let before = std::mem::take(&mut o.settings.additional_env_overrides);
            o.settings.additional_env_overrides = merge_env(before, env);
        })
    }),
    inherited("config.linkerd.io/enable-debug-sidecar", |v, o| {
        parse::go_bool(v).map(|b| o.settings.enable_debug_sidecar = b)
    }),
    pod_only("config.linkerd.io/debug-image", |v, o| {
        non_empty(v).map(|v| o.values.debug_container.image.name = v)
    }),
    pod_only("config.linkerd.io/debug-image-version", |v, o| {
        non_empty(v).map(|v| o.values.debug_container.image.version = v)
    }),
    pod_only("config.linkerd.io/debug-image-pull-policy", |v, o| {
        pull_policy(v).map(|v| o.values.debug_container.image.pull_policy = v)
    }),
    pod_only("config.linkerd.io/enable-gateway", |v, o| {
        parse::go_bool(v).map(|b| o.values.proxy.is_gateway = b)
    }),
    // Linkerd denies admission when this is set without runAsRoot; kinject
    // warns and ignores it instead.
    pod_only("config.linkerd.io/close-wait-timeout", |v, o| {
        let nanos = parse::go_duration_nanos(v)?;
        if !o.values.proxy_init.run_as_root {
            return Err("it needs proxyInit.runAsRoot=true in the values".into());
        }
        o.values.proxy_init.close_wait_timeout_secs = (nanos / 1_000_000_000) as u64;
        Ok(())
    }),
];

/// Keys under the config prefixes that are not proxy settings and are read
/// elsewhere (namespace selectors), so they are neither overrides nor unknown.
const NON_PROXY_CONFIG_KEYS: &[&str] = &["config.linkerd.io/admission-webhooks"];

fn config_key(key: &str) -> Option<&'static ConfigKey> {
    CONFIG_KEYS.iter().find(|k| k.key == key)
}

/// Whether a namespace's annotation `key` reaches pods that lack it.
pub fn is_inherited(key: &str) -> bool {
    config_key(key).is_some_and(|k| k.inherited)
}

/// The namespace annotations a pod inherits: inheritable keys (and
/// `linkerd.io/inject`) that the pod does not set itself.
pub fn inherited_from_namespace(
    pod: Option<&Map<String, Value>>,
    ns: Option<&Map<String, Value>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in ns.into_iter().flatten() {
        let inheritable = k == INJECT_ANNOTATION || is_inherited(k);
        if inheritable
            && !pod.is_some_and(|p| p.contains_key(k))
            && let Some(s) = scalar_str(v)
        {
            out.insert(k.clone(), s.into_owned());
        }
    }
    out
}

/// Applies the effective annotations onto the pod's copy of the values.
pub fn apply_overrides(
    values: &mut Values,
    ann: &EffectiveAnnotations<'_>,
    warnings: &mut Vec<Warning>,
) -> AnnotationSettings {
    let mut settings = AnnotationSettings::default();
    if ann.get(INJECT_ANNOTATION) == Some("ingress") {
        values.proxy.is_ingress = true;
    }
    let mut target = Overridden {
        values,
        settings: &mut settings,
    };
    for (&key, value) in &ann.map {
        let value: &str = value.as_ref();
        if let Some(k) = config_key(key) {
            if let Err(why) = (k.apply)(value, &mut target) {
                warnings.push(Warning::new(
                    WarningCode::InvalidConfigValue,
                    format!("annotation {key}={value:?} ignored: {why}"),
                ));
            }
        } else if is_config_key(key) && !NON_PROXY_CONFIG_KEYS.contains(&key) {
            warnings.push(Warning::new(
                WarningCode::UnknownConfigKey,
                format!("unknown annotation {key} ignored (not a kinject/Linkerd setting)"),
            ));
        }
    }
    settings
}

fn native_sidecar(v: &str, o: &mut Overridden<'_>) -> Result<(), String> {
    parse::go_bool(v).map(|b| o.values.proxy.native_sidecar = b)
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
    let Value::Array(list) = parsed else {
        return Err("not a JSON list of env vars".into());
    };
    for item in &list {
        match item.get("name") {
            Some(Value::String(n)) if !n.is_empty() => {}
            _ => return Err("every env var needs a non-empty \"name\"".into()),
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::{EffectiveAnnotations, merge_env};
    use kinject_mesh::labels::{NATIVE_SIDECAR_ALPHA, NATIVE_SIDECAR_BETA, NATIVE_SIDECAR_STABLE};
    use serde_json::{Value, json};

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

    #[test]
    fn every_key_is_listed_once_under_a_config_prefix() {
        let mut seen = std::collections::BTreeSet::new();
        for k in CONFIG_KEYS {
            assert!(is_config_key(k.key), "{}", k.key);
            assert!(seen.insert(k.key), "{} listed twice", k.key);
        }
        // The native-sidecar precedence rests on the map's key order.
        assert!(NATIVE_SIDECAR_ALPHA < NATIVE_SIDECAR_BETA);
        assert!(NATIVE_SIDECAR_BETA < NATIVE_SIDECAR_STABLE);
    }

    #[test]
    fn ingress_mode_comes_from_the_inject_annotation() {
        let (v, _, w) = apply(json!({"linkerd.io/inject": "ingress"}), json!({}));
        assert!(w.is_empty());
        assert!(v.proxy.is_ingress);
        let (v, _, _) = apply(json!({"linkerd.io/inject": "enabled"}), json!({}));
        assert!(!v.proxy.is_ingress);
    }
}
