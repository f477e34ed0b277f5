//! `Values`: the injection-relevant subset of Linkerd's Helm chart values.
//!
//! The schema follows `charts/linkerd-control-plane/values.yaml` so that a real
//! `linkerd-config` values document can be loaded unchanged; keys kinject does not
//! use are ignored. The defaults are Linkerd's chart defaults (edge-26.8.3), defined
//! here in code so nothing is read from disk at run time, except that
//! `linkerdVersion` defaults to the release whose proxy image kinject targets.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Linkerd release whose proxy image and behaviour kinject reproduces.
pub const DEFAULT_LINKERD_VERSION: &str = "edge-26.8.3";

/// Errors loading a values document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValuesError {
    #[error("invalid values YAML: {0}")]
    Yaml(String),
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Values {
    pub cluster_domain: String,
    pub cluster_networks: String,
    pub image_pull_policy: String,
    pub linkerd_version: String,
    #[serde(rename = "disableIPv6")]
    pub disable_ipv6: bool,
    pub cni_enabled: bool,
    #[serde(rename = "identityTrustAnchorsPEM")]
    pub identity_trust_anchors_pem: String,
    pub identity_trust_domain: String,
    pub proxy: ProxyValues,
    pub proxy_init: ProxyInitValues,
    pub network_validator: NetworkValidatorValues,
    pub debug_container: DebugContainerValues,
    pub identity: IdentityValues,
    pub webhook_failure_policy: String,
    pub proxy_injector: ProxyInjectorValues,
}

impl Default for Values {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            cluster_networks: "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8"
                .into(),
            image_pull_policy: "IfNotPresent".into(),
            linkerd_version: DEFAULT_LINKERD_VERSION.into(),
            disable_ipv6: true,
            cni_enabled: false,
            identity_trust_anchors_pem: String::new(),
            identity_trust_domain: String::new(),
            proxy: ProxyValues::default(),
            proxy_init: ProxyInitValues::default(),
            network_validator: NetworkValidatorValues::default(),
            debug_container: DebugContainerValues::default(),
            identity: IdentityValues::default(),
            webhook_failure_policy: "Ignore".into(),
            proxy_injector: ProxyInjectorValues::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyValues {
    pub enable_external_profiles: bool,
    pub outbound_connect_timeout: String,
    pub inbound_connect_timeout: String,
    pub outbound_discovery_cache_unused_timeout: String,
    pub inbound_discovery_cache_unused_timeout: String,
    pub disable_outbound_protocol_detect_timeout: bool,
    pub disable_inbound_protocol_detect_timeout: bool,
    pub image: ImageValues,
    pub enable_shutdown_endpoint: bool,
    pub log_level: String,
    pub log_format: String,
    #[serde(rename = "logHTTPHeaders")]
    pub log_http_headers: String,
    pub ports: PortsValues,
    /// Deprecated `proxy.cores`; `runtime.workers` wins when both are set.
    pub cores: Option<u32>,
    pub runtime: RuntimeValues,
    pub resources: ResourcesValues,
    pub uid: i64,
    pub gid: i64,
    /// When non-empty, replaces the proxy's whole securityContext.
    pub security_context: serde_json::Map<String, Value>,
    pub wait_before_exit_seconds: u64,
    #[serde(rename = "await")]
    pub await_: bool,
    pub require_identity_on_inbound_ports: String,
    pub opaque_ports: String,
    pub shutdown_grace_period: String,
    pub default_inbound_policy: String,
    pub native_sidecar: bool,
    pub liveness_probe: ProbeValues,
    pub readiness_probe: ProbeValues,
    pub startup_probe: StartupProbeValues,
    pub control: ControlValues,
    pub metrics: MetricsValues,
    pub tracing: TracingValues,
    /// Free-form `proxy.inbound` parameters, rendered as
    /// `LINKERD2_PROXY_INBOUND_<SCOPE>_<PROTO>_<PARAM>` env vars.
    pub inbound: serde_json::Map<String, Value>,
    pub outbound: serde_json::Map<String, Value>,
    pub additional_env: Vec<Value>,
    pub experimental_env: Vec<Value>,
    pub access_log: String,
    /// Overrides the computed `LINKERD2_PROXY_INBOUND_PORTS` when non-empty.
    pub pod_inbound_ports: String,
    pub is_ingress: bool,
    pub is_gateway: bool,
}

impl Default for ProxyValues {
    fn default() -> Self {
        let http2 = |interval: &str, timeout: &str| {
            serde_json::json!({"server": {"http2": {
                "keepAliveInterval": interval, "keepAliveTimeout": timeout}}})
        };
        let as_map = |v: Value| match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Self {
            enable_external_profiles: false,
            outbound_connect_timeout: "1000ms".into(),
            inbound_connect_timeout: "100ms".into(),
            outbound_discovery_cache_unused_timeout: "5s".into(),
            inbound_discovery_cache_unused_timeout: "90s".into(),
            disable_outbound_protocol_detect_timeout: false,
            disable_inbound_protocol_detect_timeout: false,
            image: ImageValues {
                name: "cr.l5d.io/linkerd/proxy".into(),
                pull_policy: String::new(),
                version: String::new(),
            },
            enable_shutdown_endpoint: false,
            log_level: "warn,linkerd=info,hickory=error".into(),
            log_format: "plain".into(),
            log_http_headers: "off".into(),
            ports: PortsValues::default(),
            cores: None,
            runtime: RuntimeValues::default(),
            resources: ResourcesValues::default(),
            uid: 2102,
            gid: -1,
            security_context: serde_json::Map::new(),
            wait_before_exit_seconds: 0,
            await_: true,
            require_identity_on_inbound_ports: String::new(),
            opaque_ports: "25,587,3306,4444,5432,6379,9300,11211".into(),
            shutdown_grace_period: String::new(),
            default_inbound_policy: "all-unauthenticated".into(),
            native_sidecar: true,
            liveness_probe: ProbeValues {
                initial_delay_seconds: 10,
                timeout_seconds: 1,
            },
            readiness_probe: ProbeValues {
                initial_delay_seconds: 2,
                timeout_seconds: 1,
            },
            startup_probe: StartupProbeValues::default(),
            control: ControlValues::default(),
            metrics: MetricsValues::default(),
            tracing: TracingValues::default(),
            inbound: as_map(http2("10s", "3s")),
            outbound: as_map(http2("10s", "3s")),
            additional_env: Vec::new(),
            experimental_env: Vec::new(),
            access_log: String::new(),
            pod_inbound_ports: String::new(),
            is_ingress: false,
            is_gateway: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ImageValues {
    pub name: String,
    pub pull_policy: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortsValues {
    pub admin: u16,
    pub control: u16,
    pub inbound: u16,
    pub outbound: u16,
}

impl Default for PortsValues {
    fn default() -> Self {
        Self {
            admin: 4191,
            control: 4190,
            inbound: 4143,
            outbound: 4140,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeValues {
    pub workers: WorkersValues,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkersValues {
    pub minimum: u32,
    pub maximum: Option<u32>,
    #[serde(rename = "maximumCPURatio")]
    pub maximum_cpu_ratio: Option<f64>,
}

impl Default for WorkersValues {
    fn default() -> Self {
        Self {
            minimum: 1,
            maximum: None,
            maximum_cpu_ratio: None,
        }
    }
}

/// `proxy.resources`: each entry is a Kubernetes quantity string, empty when unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesValues {
    pub cpu: RequestLimit,
    pub memory: RequestLimit,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: RequestLimit,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestLimit {
    pub request: String,
    pub limit: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProbeValues {
    pub initial_delay_seconds: i64,
    pub timeout_seconds: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StartupProbeValues {
    pub initial_delay_seconds: i64,
    pub period_seconds: i64,
    pub failure_threshold: i64,
}

impl Default for StartupProbeValues {
    fn default() -> Self {
        Self {
            initial_delay_seconds: 0,
            period_seconds: 1,
            failure_threshold: 120,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlValues {
    pub streams: StreamsValues,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StreamsValues {
    pub initial_timeout: String,
    pub idle_timeout: String,
    pub lifetime: String,
}

impl Default for StreamsValues {
    fn default() -> Self {
        Self {
            initial_timeout: "3s".into(),
            idle_timeout: "5m".into(),
            lifetime: "1h".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricsValues {
    pub hostname_labels: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TracingValues {
    pub enabled: bool,
    pub trace_service_name: String,
    /// Extra trace attributes (`k=v` lines), in key order.
    pub labels: serde_json::Map<String, Value>,
    pub collector: CollectorValues,
}

impl Default for TracingValues {
    fn default() -> Self {
        let mut labels = serde_json::Map::new();
        labels.insert("k8s.pod.ip".into(), "$(_pod_ip)".into());
        labels.insert("k8s.pod.uid".into(), "$(_pod_uid)".into());
        labels.insert("k8s.container.name".into(), "$(_pod_containerName)".into());
        Self {
            enabled: false,
            trace_service_name: "linkerd-proxy".into(),
            labels,
            collector: CollectorValues::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CollectorValues {
    pub endpoint: String,
    pub mesh_identity: MeshIdentityValues,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MeshIdentityValues {
    pub service_account_name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyInitValues {
    /// kinject extension: a separate image for `linkerd-init` and the network
    /// validator. Empty (the default) uses the proxy image, as Linkerd does
    /// since proxy-init merged into it.
    pub image: ImageValues,
    pub iptables_mode: String,
    pub ignore_inbound_ports: String,
    pub ignore_outbound_ports: String,
    #[serde(rename = "kubeAPIServerPorts")]
    pub kube_api_server_ports: String,
    pub skip_subnets: String,
    pub log_level: String,
    pub log_format: String,
    pub close_wait_timeout_secs: u64,
    pub privileged: bool,
    pub run_as_root: bool,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub xt_mount_path: XtMountPath,
}

impl Default for ProxyInitValues {
    fn default() -> Self {
        Self {
            image: ImageValues::default(),
            iptables_mode: "nft".into(),
            ignore_inbound_ports: "4567,4568".into(),
            ignore_outbound_ports: "4567,4568".into(),
            kube_api_server_ports: "443,6443".into(),
            skip_subnets: String::new(),
            log_level: String::new(),
            log_format: String::new(),
            close_wait_timeout_secs: 0,
            privileged: false,
            run_as_root: false,
            run_as_user: 65534,
            run_as_group: 65534,
            xt_mount_path: XtMountPath::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct XtMountPath {
    pub mount_path: String,
    pub name: String,
}

impl Default for XtMountPath {
    fn default() -> Self {
        Self {
            mount_path: "/run".into(),
            name: "linkerd-proxy-init-xtables-lock".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkValidatorValues {
    pub log_level: String,
    pub log_format: String,
    pub connect_addr: String,
    pub listen_addr: String,
    pub timeout: String,
    pub enable_security_context: bool,
    pub security_context: serde_json::Map<String, Value>,
}

impl Default for NetworkValidatorValues {
    fn default() -> Self {
        let sc = serde_json::json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65534,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        });
        Self {
            log_level: "debug".into(),
            log_format: "plain".into(),
            connect_addr: String::new(),
            listen_addr: String::new(),
            timeout: "10s".into(),
            enable_security_context: true,
            security_context: match sc {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugContainerValues {
    pub image: ImageValues,
}

impl Default for DebugContainerValues {
    fn default() -> Self {
        Self {
            image: ImageValues {
                name: "cr.l5d.io/linkerd/debug".into(),
                pull_policy: String::new(),
                version: String::new(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IdentityValues {
    pub service_account_token_projection: bool,
}

impl Default for IdentityValues {
    fn default() -> Self {
        Self {
            service_account_token_projection: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyInjectorValues {
    pub timeout_seconds: u32,
}

impl Default for ProxyInjectorValues {
    fn default() -> Self {
        Self {
            timeout_seconds: 10,
        }
    }
}

impl Values {
    /// Parses a values document (Linkerd's schema). Missing keys keep their
    /// defaults; unknown keys are ignored so a full `linkerd-config` works.
    pub fn from_yaml(text: &str) -> Result<Self, ValuesError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        // YAML `key:` with no value is null; Helm treats null as "use the default",
        // so nulls are dropped before typed deserialisation.
        let mut raw: Value =
            serde_saphyr::from_str(text).map_err(|e| ValuesError::Yaml(e.to_string()))?;
        if raw.is_null() {
            return Ok(Self::default());
        }
        if !raw.is_object() {
            return Err(ValuesError::Yaml(
                "the values document must be a mapping".into(),
            ));
        }
        strip_nulls(&mut raw);
        let values: Values =
            serde_json::from_value(raw).map_err(|e| ValuesError::Yaml(e.to_string()))?;
        values.validate()?;
        Ok(values)
    }

    /// Checks the settings whose bad values would otherwise produce a broken pod.
    pub fn validate(&self) -> Result<(), ValuesError> {
        let p = &self.proxy;
        if !matches!(p.log_http_headers.as_str(), "off" | "insecure") {
            return Err(ValuesError::Invalid {
                key: "proxy.logHTTPHeaders",
                message: format!("{:?} is not one of off, insecure", p.log_http_headers),
            });
        }
        if !matches!(self.proxy_init.iptables_mode.as_str(), "nft" | "legacy") {
            return Err(ValuesError::Invalid {
                key: "proxyInit.iptablesMode",
                message: format!(
                    "{:?} is not one of nft, legacy",
                    self.proxy_init.iptables_mode
                ),
            });
        }
        if p.tracing.enabled && p.tracing.collector.endpoint.is_empty() {
            return Err(ValuesError::Invalid {
                key: "proxy.tracing.collector.endpoint",
                message: "tracing is enabled but no collector endpoint is set".into(),
            });
        }
        for (key, port) in [
            ("proxy.ports.admin", p.ports.admin),
            ("proxy.ports.control", p.ports.control),
            ("proxy.ports.inbound", p.ports.inbound),
            ("proxy.ports.outbound", p.ports.outbound),
        ] {
            if port == 0 {
                return Err(ValuesError::Invalid {
                    key,
                    message: "port 0 is not a valid port".into(),
                });
            }
        }
        if self.proxy.image.name.is_empty() {
            return Err(ValuesError::Invalid {
                key: "proxy.image.name",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }

    /// The identity trust domain: `identityTrustDomain`, else `clusterDomain`.
    pub fn trust_domain(&self) -> &str {
        if self.identity_trust_domain.is_empty() {
            &self.cluster_domain
        } else {
            &self.identity_trust_domain
        }
    }
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_gives_defaults() {
        assert_eq!(Values::from_yaml("").unwrap(), Values::default());
        assert_eq!(Values::from_yaml("# nothing\n").unwrap(), Values::default());
    }

    #[test]
    fn partial_document_keeps_other_defaults() {
        let v =
            Values::from_yaml("proxy:\n  logLevel: debug\n  cores:\nlinkerdVersion: x\n").unwrap();
        assert_eq!(v.proxy.log_level, "debug");
        assert_eq!(v.linkerd_version, "x");
        assert_eq!(v.proxy.ports.admin, 4191);
        assert_eq!(v.proxy.cores, None);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let v = Values::from_yaml("somethingElse: {a: 1}\nproxy: {uid: 7}\n").unwrap();
        assert_eq!(v.proxy.uid, 7);
    }

    #[test]
    fn wrong_type_is_a_clear_error() {
        let err = Values::from_yaml("proxy:\n  uid: nope\n").unwrap_err();
        assert!(err.to_string().contains("invalid values YAML"), "{err}");
    }

    #[test]
    fn not_a_mapping_is_an_error() {
        assert!(Values::from_yaml("- a\n- b\n").is_err());
    }

    #[test]
    fn invalid_enum_values_are_rejected() {
        let err = Values::from_yaml("proxy:\n  logHTTPHeaders: loud\n").unwrap_err();
        assert!(err.to_string().contains("proxy.logHTTPHeaders"), "{err}");
        let err = Values::from_yaml("proxyInit:\n  iptablesMode: magic\n").unwrap_err();
        assert!(err.to_string().contains("iptablesMode"), "{err}");
    }

    #[test]
    fn trust_domain_falls_back_to_cluster_domain() {
        let mut v = Values::default();
        assert_eq!(v.trust_domain(), "cluster.local");
        v.identity_trust_domain = "example.org".into();
        assert_eq!(v.trust_domain(), "example.org");
    }
}
