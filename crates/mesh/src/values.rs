//! `Values`: the injection-relevant subset of Linkerd's Helm chart values.
//!
//! The schema follows `charts/linkerd-control-plane/values.yaml` so that a real
//! `linkerd-config` values document can be loaded unchanged. The defaults are
//! Linkerd's chart defaults (edge-26.8.3), defined here in code so nothing is
//! read from disk at run time, except that `linkerdVersion` defaults to the
//! release whose proxy image kinject targets.
//!
//! [`ValuesLoader`] layers documents and `--set`s over the defaults as Helm
//! does ([`crate::helm`]), names the source and path of every bad value, and
//! reports keys that no schema knows ([`crate::schema`]): Linkerd's keys that
//! the injector does not use are accepted silently.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::helm::{self, Assignment, PathStep, SetKind};
use crate::schema::{Schema, UnknownKey};
use crate::settings::InboundPolicy;

/// The values `proxy.defaultInboundPolicy` (and its annotation) may take.
/// kinject's values schema: the keys [`Values`] writes (and the open maps).
static SCHEMA: std::sync::LazyLock<Schema> = std::sync::LazyLock::new(|| {
    Schema::from_defaults(&serde_json::to_value(Values::default()).unwrap_or(Value::Null))
});

/// Every key in `tree` (a user values layer) that kinject's values do not
/// have, in document order.
pub fn unknown_keys(tree: &Value) -> Vec<UnknownKey> {
    SCHEMA.unknown_keys(tree)
}

pub const DEFAULT_INBOUND_POLICIES: [&str; 6] = [
    InboundPolicy::AllUnauthenticated.name(),
    InboundPolicy::AllAuthenticated.name(),
    InboundPolicy::ClusterUnauthenticated.name(),
    InboundPolicy::ClusterAuthenticated.name(),
    InboundPolicy::Deny.name(),
    InboundPolicy::Audit.name(),
];

/// The Linkerd release whose proxy image and behaviour kinject reproduces.
pub const DEFAULT_LINKERD_VERSION: &str = "edge-26.8.3";

/// Errors loading values. Each names where the bad input came from (a file,
/// a `--set`, a ConfigMap key) and the path of the bad key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValuesError {
    /// YAML that does not parse; the message carries line and column.
    #[error("{source_name}: invalid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    /// A document that is not a map at its top.
    #[error("{source_name}: a values document must be a map of keys, found {found}")]
    NotAMap { source_name: String, found: String },
    /// A value of the wrong type (a string where a number belongs, ...).
    #[error("{source_name}: {path}: {message}")]
    Type {
        source_name: String,
        path: String,
        message: String,
    },
    /// A malformed `--set`, `--set-string` or `--set-file`.
    #[error(transparent)]
    Set(#[from] crate::helm::SetError),
    /// A well-typed value that is not allowed (an unknown enum value, ...).
    #[error("{}invalid value for {key}: {message}", source_prefix(.source_name))]
    Invalid {
        key: &'static str,
        message: String,
        /// Where the value was set; `None` for values built in code.
        source_name: Option<String>,
    },
}

fn source_prefix(source: &Option<String>) -> String {
    source
        .as_ref()
        .map(|s| format!("{s}: "))
        .unwrap_or_default()
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
    /// The trust-roots ConfigMap is managed outside kinject (install does
    /// not render it).
    #[serde(rename = "externalCA")]
    pub external_ca: bool,
    pub issuer: IssuerValues,
}

impl Default for IdentityValues {
    fn default() -> Self {
        Self {
            service_account_token_projection: true,
            external_ca: false,
            issuer: IssuerValues::default(),
        }
    }
}

/// `identity.issuer`: who provides the issuer, as Linkerd's chart says it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IssuerValues {
    /// `linkerd.io/tls` (the issuer in `tls`, or kinject's own CA when that
    /// is empty) or `kubernetes.io/tls` (Secret `linkerd-identity-issuer`
    /// owned by something else, e.g. cert-manager).
    pub scheme: String,
    pub tls: IssuerTlsValues,
}

impl Default for IssuerValues {
    fn default() -> Self {
        Self {
            scheme: ISSUER_SCHEME_LINKERD.into(),
            tls: IssuerTlsValues::default(),
        }
    }
}

/// The operator's issuer, PEM. Never written into `linkerd-config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IssuerTlsValues {
    #[serde(rename = "crtPEM")]
    pub crt_pem: String,
    #[serde(rename = "keyPEM")]
    pub key_pem: String,
}

/// `identity.issuer.scheme` values.
pub const ISSUER_SCHEME_LINKERD: &str = "linkerd.io/tls";
pub const ISSUER_SCHEME_EXTERNAL: &str = "kubernetes.io/tls";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyInjectorValues {
    pub timeout_seconds: u32,
    /// Evict running pods that should be meshed but have no proxy, when a
    /// controller recreates them (kinject's; `--repair-missed`).
    pub repair_missed: bool,
}

impl Default for ProxyInjectorValues {
    fn default() -> Self {
        Self {
            timeout_seconds: 10,
            repair_missed: false,
        }
    }
}

impl Values {
    /// Parses one values document over the defaults (a convenience for a
    /// single layer; see [`ValuesLoader`] for files and `--set`s together).
    /// Unknown keys are accepted here; the loader reports them.
    pub fn from_yaml(text: &str) -> Result<Self, ValuesError> {
        let mut loader = ValuesLoader::new();
        loader.add_document("values", text)?;
        Ok(loader.finish()?.values)
    }

    /// Checks the settings whose bad values would otherwise produce a broken
    /// pod: enums, ports, the proxy image, tracing without a collector.
    pub fn validate(&self) -> Result<(), ValuesError> {
        let invalid = |key: &'static str, message: String| ValuesError::Invalid {
            key,
            message,
            source_name: None,
        };
        let one_of = |key: &'static str, v: &str, allowed: &[&str]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    format!("{v:?} is not one of {}", allowed.join(", ")),
                ))
            }
        };
        const PULL: &[&str] = &["", "Always", "IfNotPresent", "Never"];
        let p = &self.proxy;
        one_of(
            "proxy.logHTTPHeaders",
            &p.log_http_headers,
            &["off", "insecure"],
        )?;
        one_of(
            "proxyInit.iptablesMode",
            &self.proxy_init.iptables_mode,
            &["nft", "legacy"],
        )?;
        one_of("proxy.logFormat", &p.log_format, &["plain", "json"])?;
        one_of("proxy.accessLog", &p.access_log, &["", "apache", "json"])?;
        one_of(
            "proxy.defaultInboundPolicy",
            &p.default_inbound_policy,
            &DEFAULT_INBOUND_POLICIES,
        )?;
        one_of(
            "webhookFailurePolicy",
            &self.webhook_failure_policy,
            &["Ignore", "Fail"],
        )?;
        one_of("imagePullPolicy", &self.image_pull_policy, PULL)?;
        one_of(
            "identity.issuer.scheme",
            &self.identity.issuer.scheme,
            &[ISSUER_SCHEME_LINKERD, ISSUER_SCHEME_EXTERNAL],
        )?;
        one_of("proxy.image.pullPolicy", &p.image.pull_policy, PULL)?;
        one_of(
            "proxyInit.image.pullPolicy",
            &self.proxy_init.image.pull_policy,
            PULL,
        )?;
        one_of(
            "debugContainer.image.pullPolicy",
            &self.debug_container.image.pull_policy,
            PULL,
        )?;
        if p.tracing.enabled && p.tracing.collector.endpoint.is_empty() {
            return Err(invalid(
                "proxy.tracing.collector.endpoint",
                "tracing is enabled but no collector endpoint is set".into(),
            ));
        }
        for (key, port) in [
            ("proxy.ports.admin", p.ports.admin),
            ("proxy.ports.control", p.ports.control),
            ("proxy.ports.inbound", p.ports.inbound),
            ("proxy.ports.outbound", p.ports.outbound),
        ] {
            if port == 0 {
                return Err(invalid(key, "port 0 is not a valid port".into()));
            }
        }
        if self.proxy.image.name.is_empty() {
            return Err(invalid("proxy.image.name", "must not be empty".into()));
        }
        Ok(())
    }

    /// The identity trust domain: `identityTrustDomain`, else `clusterDomain`.
    pub fn trust_domain(&self) -> &str {
        crate::names::trust_domain(&self.identity_trust_domain, &self.cluster_domain)
    }
}

/// A key no schema knows, and where it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValuesKey {
    /// The file, `--set` or ConfigMap key that set it.
    pub source_name: String,
    pub key: UnknownKey,
}

impl std::fmt::Display for UnknownValuesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source_name, self.key)
    }
}

/// Values loaded from layers, with what the user should hear about.
#[derive(Clone, Debug)]
pub struct LoadedValues {
    pub values: Values,
    /// Keys that no schema knows (probably typos), in the order given.
    pub unknown_keys: Vec<UnknownValuesKey>,
}

/// Builds [`Values`] as Helm does: the chart defaults, then each layer in the
/// order added (values documents, then `--set`, `--set-string`, `--set-file`
/// as the caller adds them), merged by [`helm::merge_layer`] and laid over the
/// defaults by [`helm::coalesce`]. Pure: callers read files and ConfigMaps.
#[derive(Debug, Default)]
pub struct ValuesLoader {
    layers: Vec<(String, Value)>,
    unknown_keys: Vec<UnknownValuesKey>,
}

impl ValuesLoader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a YAML (or JSON) values document. `source_name` names it in
    /// messages (`values file a.yaml`, `ConfigMap linkerd/linkerd-config key values`).
    /// An empty or all-comment document adds nothing.
    pub fn add_document(&mut self, source_name: &str, text: &str) -> Result<(), ValuesError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let tree: Value = serde_saphyr::from_str(text).map_err(|e| ValuesError::Yaml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        match tree {
            Value::Null => Ok(()),
            Value::Object(_) => {
                self.add_tree(source_name, tree);
                Ok(())
            }
            other => Err(ValuesError::NotAMap {
                source_name: source_name.to_string(),
                found: describe(&other),
            }),
        }
    }

    /// Adds one `--set` or `--set-string` argument (comma-separated assignments).
    pub fn add_set(&mut self, kind: SetKind, expr: &str) -> Result<(), ValuesError> {
        for assignment in helm::parse_set(expr, kind)? {
            let mut tree = Value::Object(serde_json::Map::new());
            assignment.apply(&mut tree);
            self.add_tree(&format!("{} {expr}", kind.flag()), tree);
        }
        Ok(())
    }

    /// Adds one `--set-file path=FILE`, whose file the caller has read.
    pub fn add_set_file(&mut self, path: Vec<PathStep>, file_name: &str, contents: String) {
        let source = format!("--set-file {}={file_name}", helm::render_path(&path));
        let mut tree = Value::Object(serde_json::Map::new());
        Assignment::file(path, contents).apply(&mut tree);
        self.add_tree(&source, tree);
    }

    fn add_tree(&mut self, source_name: &str, tree: Value) {
        self.unknown_keys
            .extend(
                SCHEMA
                    .unknown_keys(&tree)
                    .into_iter()
                    .map(|key| UnknownValuesKey {
                        source_name: source_name.to_string(),
                        key,
                    }),
            );
        self.layers.push((source_name.to_string(), tree));
    }

    /// The user's layers merged (before the defaults), for messages and tests.
    pub fn merged_user_values(&self) -> Value {
        let mut acc = Value::Object(serde_json::Map::new());
        for (_, tree) in &self.layers {
            helm::merge_layer(&mut acc, tree.clone());
        }
        acc
    }

    /// Merges everything over the defaults, type-checks and validates.
    pub fn finish(self) -> Result<LoadedValues, ValuesError> {
        let mut tree = serde_json::to_value(Values::default()).map_err(|e| ValuesError::Type {
            source_name: "defaults".into(),
            path: String::new(),
            message: e.to_string(),
        })?;
        helm::coalesce(&mut tree, &self.merged_user_values());
        let values: Values = serde_path_to_error::deserialize(&tree).map_err(|e| {
            let path = e.path().to_string();
            ValuesError::Type {
                source_name: self.source_of(&path),
                path,
                message: e.inner().to_string(),
            }
        })?;
        values.validate().map_err(|e| match e {
            ValuesError::Invalid { key, message, .. } => ValuesError::Invalid {
                key,
                message,
                source_name: Some(self.source_of(key)),
            },
            other => other,
        })?;
        Ok(LoadedValues {
            values,
            unknown_keys: self.unknown_keys,
        })
    }

    /// The last layer that sets `path` (serde's `a.b[0].c`), else "defaults".
    fn source_of(&self, path: &str) -> String {
        let steps = serde_path_steps(path);
        self.layers
            .iter()
            .rev()
            .find(|(_, tree)| lookup(tree, &steps).is_some())
            .map_or_else(|| "defaults".to_string(), |(s, _)| s.clone())
    }
}

/// Splits serde_path_to_error's `a.b[0].c` into steps.
fn serde_path_steps(path: &str) -> Vec<PathStep> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty() && *p != "?") {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(PathStep::Key(key.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                steps.push(PathStep::Index(i));
            }
        }
    }
    steps
}

fn lookup<'a>(tree: &'a Value, steps: &[PathStep]) -> Option<&'a Value> {
    steps.iter().try_fold(tree, |v, step| match step {
        PathStep::Key(k) => v.get(k.as_str()),
        PathStep::Index(i) => v.get(*i),
    })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
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
    fn unknown_keys_do_not_fail_the_load() {
        let v = Values::from_yaml("somethingElse: {a: 1}\nproxy: {uid: 7}\n").unwrap();
        assert_eq!(v.proxy.uid, 7);
    }

    #[test]
    fn wrong_type_is_a_clear_error() {
        let err = Values::from_yaml("proxy:\n  uid: nope\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: proxy.uid: invalid type: string \"nope\", expected i64"
        );
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

    fn load(layers: &[(&str, &str)]) -> Result<LoadedValues, ValuesError> {
        let mut l = ValuesLoader::new();
        for (source, text) in layers {
            match source.strip_prefix("--set-string ") {
                Some(_) => l.add_set(SetKind::String, text)?,
                None if *source == "--set" => l.add_set(SetKind::Typed, text)?,
                None => l.add_document(source, text)?,
            }
        }
        l.finish()
    }

    #[test]
    fn partial_image_merges_into_the_default_image() {
        let v = load(&[("a.yaml", "proxy: {image: {version: edge-26.9.1}}")]).unwrap();
        assert_eq!(v.values.proxy.image.name, "cr.l5d.io/linkerd/proxy");
        assert_eq!(v.values.proxy.image.version, "edge-26.9.1");
        assert!(v.unknown_keys.is_empty());
    }

    #[test]
    fn layers_merge_in_order_lists_replace_nulls_restore_defaults() {
        let v = load(&[
            (
                "a.yaml",
                "proxy:\n  logLevel: debug\n  uid: 7\n  additionalEnv: [{name: A}, {name: B}]\n",
            ),
            (
                "b.yaml",
                "proxy:\n  uid: null\n  additionalEnv: [{name: C}]\n",
            ),
            ("--set", "proxy.ports.admin=5000,proxy.image.version=v2"),
            ("--set-string x", "linkerdVersion=123"),
        ])
        .unwrap();
        let p = &v.values.proxy;
        assert_eq!(p.log_level, "debug");
        assert_eq!(p.uid, 2102, "null means the default");
        assert_eq!(p.additional_env, vec![serde_json::json!({"name": "C"})]);
        assert_eq!(p.ports.admin, 5000);
        assert_eq!(p.ports.control, 4190);
        assert_eq!(p.image.version, "v2");
        assert_eq!(v.values.linkerd_version, "123");
    }

    #[test]
    fn unknown_keys_are_reported_with_their_source() {
        let v = load(&[
            (
                "values file a.yaml",
                "proxy: {logLevl: debug}\nproxyy: {}\n",
            ),
            ("--set", "proxy.uidd=3"),
        ])
        .unwrap();
        let shown: Vec<String> = v.unknown_keys.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            shown,
            [
                "values file a.yaml: proxy.logLevl: unknown key, did you mean proxy.logLevel?",
                "values file a.yaml: proxyy: unknown key, did you mean proxy?",
                "--set proxy.uidd=3: proxy.uidd: unknown key, did you mean proxy.uid?",
            ]
        );
    }

    #[test]
    fn bad_input_names_source_and_path() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("f.yaml", "- a\n- b\n")],
                "f.yaml: a values document must be a map of keys, found a list",
            ),
            (
                &[("f.yaml", "just a string")],
                "f.yaml: a values document must be a map of keys, found a string",
            ),
            (
                &[
                    ("f.yaml", "proxy: {uid: 7}"),
                    ("g.yaml", "proxy:\n  ports:\n    admin: lots\n"),
                ],
                "g.yaml: proxy.ports.admin: invalid type: string \"lots\", expected u16",
            ),
            (
                &[("f.yaml", "proxy:\n  logLevel: {a: 1}\n")],
                "f.yaml: proxy.logLevel: invalid type: map, expected a string",
            ),
            (
                &[("f.yaml", "proxy: nope\n")],
                "f.yaml: proxy: invalid type: string \"nope\", expected struct ProxyValues",
            ),
            (
                &[("f.yaml", "proxy: {logFormat: xml}")],
                "f.yaml: invalid value for proxy.logFormat: \"xml\" is not one of plain, json",
            ),
            (
                &[("--set", "webhookFailurePolicy=Sometimes")],
                "--set webhookFailurePolicy=Sometimes: invalid value for webhookFailurePolicy: \"Sometimes\" is not one of Ignore, Fail",
            ),
            (
                &[("--set", "proxy..uid=1")],
                "--set \"proxy..uid=1\": empty key before '.' at character 7",
            ),
            (
                &[("--set", "a[x]=1")],
                "--set \"a[x]=1\": list index [x] is not a number",
            ),
        ];
        for (layers, want) in cases {
            let err = load(layers).unwrap_err().to_string();
            assert_eq!(&err, want);
        }
    }

    #[test]
    fn yaml_syntax_errors_carry_the_line() {
        let err = load(&[("f.yaml", "proxy:\n  logLevel: debug\n    uid: [1\n")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.yaml: invalid YAML: "), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn trust_domain_falls_back_to_cluster_domain() {
        let mut v = Values::default();
        assert_eq!(v.trust_domain(), "cluster.local");
        v.identity_trust_domain = "example.org".into();
        assert_eq!(v.trust_domain(), "example.org");
    }

    // The schema: which keys exist.

    fn unknown_paths(v: Value) -> Vec<String> {
        unknown_keys(&v)
            .into_iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn typos_get_the_nearest_key() {
        assert_eq!(
            unknown_paths(serde_json::json!({"proxy": {"logLevl": "debug"}, "proxyy": {}})),
            [
                "proxy.logLevl: unknown key, did you mean proxy.logLevel?",
                "proxyy: unknown key, did you mean proxy?"
            ]
        );
        assert_eq!(
            unknown_paths(serde_json::json!({"proxy": {"image": {"Version": "x"}}})),
            ["proxy.image.Version: unknown key, did you mean proxy.image.version?"]
        );
        assert_eq!(
            unknown_paths(serde_json::json!({"zzzzzzzzzz": 1})),
            ["zzzzzzzzzz: unknown key"]
        );
    }

    #[test]
    fn known_keys_and_open_maps_pass() {
        assert!(
            unknown_paths(serde_json::json!({
                "proxy": {"logLevel": "x", "cores": 2, "securityContext": {"anything": {"a": 1}},
                          "tracing": {"labels": {"k8s.pod.ip": "x"}},
                          "runtime": {"workers": {"maximumCPURatio": 0.5}}},
                "policyController": {"whatever": 1},
                "identity": {"issuer": {"scheme": "x"}, "serviceAccountTokenProjection": true},
                "nodeSelector": {"kubernetes.io/os": "linux"},
            }))
            .is_empty()
        );
    }

    #[test]
    fn dotted_keys_are_escaped_in_paths() {
        assert_eq!(
            unknown_paths(serde_json::json!({"proxy": {"log.level": 1}})),
            [r"proxy.log\.level: unknown key, did you mean proxy.logLevel?"]
        );
    }

    #[test]
    fn type_mismatches_are_left_to_the_reader() {
        assert!(unknown_paths(serde_json::json!({"proxy": "string"})).is_empty());
    }
}
