//! The containers and volumes kinject adds, exactly as Linkerd's chart partials
//! (`_proxy.tpl`, `_proxy-init.tpl`, `_network-validator.tpl`, `_debug.tpl`)
//! render them, so that the real linkerd2-proxy finds what it expects.

use kinject_mesh::names;
use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::annotations::merge_env;
use crate::values::{ResourcesValues, Values};

pub const PROXY_CONTAINER: &str = "linkerd-proxy";
pub const INIT_CONTAINER: &str = "linkerd-init";
/// The proxy container's admin port (`/live`, `/ready`, `/metrics`), by name.
pub const ADMIN_PORT_NAME: &str = "linkerd-admin";
pub const VALIDATOR_CONTAINER: &str = "linkerd-network-validator";
pub const DEBUG_CONTAINER: &str = "linkerd-debug";
pub const END_ENTITY_VOLUME: &str = "linkerd-identity-end-entity";
pub const TOKEN_VOLUME: &str = "linkerd-identity-token";
pub const PODINFO_VOLUME: &str = "linkerd-podinfo";
pub const SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the templates need to know about the pod being injected.
#[derive(Debug, Default)]
pub struct PodFacts<'a> {
    /// `securityContext.capabilities` of the first app container.
    pub app_capabilities: Option<&'a Map<String, Value>>,
    /// The first app container's service-account token mount, if any.
    pub sa_mount: Option<Value>,
    /// `LINKERD2_PROXY_INBOUND_PORTS` (computed unless overridden).
    pub inbound_ports: String,
    /// Resolved opaque ports for `…_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION`.
    pub opaque_ports: String,
    /// Trust anchors PEM, trimmed with one trailing newline.
    pub trust_anchors_env: &'a str,
    /// `proxy.additionalEnv` merged with the annotation's env vars.
    pub additional_env: Vec<Value>,
    /// Whether the proxy runs as a native sidecar (already capability-checked).
    pub native: bool,
}

type Str<'a> = Cow<'a, str>;

/// An env var of the proxy container. Typed and borrowed: building the ~60
/// entries as `serde_json::Value` maps dominated admission latency.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EnvVar<'a> {
    Value {
        name: &'static str,
        value: Str<'a>,
    },
    Field {
        name: &'static str,
        #[serde(rename = "valueFrom")]
        value_from: FieldRef,
    },
    /// Verbatim entries from `additionalEnv` / `experimentalEnv`.
    Raw(&'a Value),
    Dynamic {
        name: String,
        value: Str<'a>,
    },
}

#[derive(Serialize)]
pub struct FieldRef {
    #[serde(rename = "fieldRef")]
    field_ref: FieldPath,
}

#[derive(Serialize)]
struct FieldPath {
    #[serde(rename = "fieldPath")]
    field_path: &'static str,
}

fn env<'a>(name: &'static str, value: impl Into<Str<'a>>) -> EnvVar<'a> {
    EnvVar::Value {
        name,
        value: value.into(),
    }
}

fn env_field(name: &'static str, path: &'static str) -> EnvVar<'static> {
    EnvVar::Field {
        name,
        value_from: FieldRef {
            field_ref: FieldPath { field_path: path },
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpGet {
    path: &'static str,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
    initial_delay_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_threshold: Option<i64>,
}

#[derive(Serialize)]
struct Seccomp {
    #[serde(rename = "type")]
    kind: &'static str,
}

const RUNTIME_DEFAULT: Seccomp = Seccomp {
    kind: "RuntimeDefault",
};

#[derive(Serialize)]
#[serde(untagged)]
enum SecurityContext<'a> {
    /// `proxy.securityContext` replaces the whole block when set.
    Custom(&'a Map<String, Value>),
    Proxy(ProxySecurityContext<'a>),
    Init(InitSecurityContext<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProxySecurityContext<'a> {
    allow_privilege_escalation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<&'a Map<String, Value>>,
    read_only_root_filesystem: bool,
    run_as_non_root: bool,
    run_as_user: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as_group: Option<i64>,
    seccomp_profile: Seccomp,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Capability<'a> {
    Name(&'static str),
    Raw(&'a Value),
}

#[derive(Serialize)]
struct InitCapabilities<'a> {
    add: Vec<Capability<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop: Option<Vec<&'a Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitSecurityContext<'a> {
    allow_privilege_escalation: bool,
    capabilities: InitCapabilities<'a>,
    privileged: bool,
    run_as_non_root: bool,
    run_as_user: i64,
    run_as_group: i64,
    read_only_root_filesystem: bool,
    seccomp_profile: Seccomp,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Mount<'a> {
    Mount {
        #[serde(rename = "mountPath")]
        mount_path: &'a str,
        name: &'a str,
    },
    Raw(&'a Value),
}

/// A container kinject adds (the proxy or `linkerd-init`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    name: &'static str,
    image: String,
    image_pull_policy: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup_probe: Option<Probe>,
    /// `null` when nothing is configured, as in Linkerd's patch.
    resources: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_policy: Option<&'static str>,
    security_context: SecurityContext<'a>,
    termination_message_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle: Option<Value>,
    volume_mounts: Vec<Mount<'a>>,
}

/// `resources`, or `null` when nothing is configured (as Linkerd's patch has it).
pub fn resources(r: &ResourcesValues) -> Value {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for (name, rl) in [
        ("cpu", &r.cpu),
        ("memory", &r.memory),
        ("ephemeral-storage", &r.ephemeral_storage),
    ] {
        if !rl.limit.is_empty() {
            limits.insert(name.into(), rl.limit.clone().into());
        }
        if !rl.request.is_empty() {
            requests.insert(name.into(), rl.request.clone().into());
        }
    }
    let mut out = Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), limits.into());
    }
    if !requests.is_empty() {
        out.insert("requests".into(), requests.into());
    }
    if out.is_empty() {
        Value::Null
    } else {
        out.into()
    }
}

fn image(name: &str, version: &str, fallback_version: &str) -> String {
    let tag = if version.is_empty() {
        fallback_version
    } else {
        version
    };
    format!("{name}:{tag}")
}

/// The proxy image tag (also the `linkerd.io/proxy-version` annotation).
pub fn proxy_version(v: &Values) -> &str {
    if v.proxy.image.version.is_empty() {
        &v.linkerd_version
    } else {
        &v.proxy.image.version
    }
}

pub fn proxy_image(v: &Values) -> String {
    image(
        &v.proxy.image.name,
        &v.proxy.image.version,
        &v.linkerd_version,
    )
}

/// The image of `linkerd-init` and the network validator.
pub fn init_image(v: &Values) -> String {
    let i = &v.proxy_init.image;
    if i.name.is_empty() {
        proxy_image(v)
    } else {
        image(&i.name, &i.version, proxy_version(v))
    }
}

fn pull_policy<'a>(specific: &'a str, v: &'a Values) -> &'a str {
    if specific.is_empty() {
        &v.image_pull_policy
    } else {
        specific
    }
}

fn listen(v: &Values, port: u16) -> String {
    if v.disable_ipv6 {
        format!("0.0.0.0:{port}")
    } else {
        format!("[::]:{port}")
    }
}

/// `camelCase` → `CAMEL_CASE`.
fn upper_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Flattens `proxy.inbound`/`proxy.outbound` into env vars, keys sorted at each
/// level as Helm iterates maps.
fn param_env<'a>(prefix: &str, m: &'a Map<String, Value>, out: &mut Vec<EnvVar<'a>>) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let name = format!("{prefix}_{}", upper_snake(k));
        match &m[k] {
            Value::Object(inner) => param_env(&name, inner, out),
            Value::String(s) => out.push(EnvVar::Dynamic {
                name,
                value: s.as_str().into(),
            }),
            Value::Null => {}
            other => out.push(EnvVar::Dynamic {
                name,
                value: other.to_string().into(),
            }),
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The `linkerd-proxy` container.
pub fn proxy_container<'a>(v: &'a Values, ns: &'a str, facts: &'a PodFacts<'a>) -> Container<'a> {
    let p = &v.proxy;
    let cd = &v.cluster_domain;
    let td = v.trust_domain();
    let ports = &p.ports;
    let mut e: Vec<EnvVar<'a>> = Vec::with_capacity(64 + facts.additional_env.len());
    e.push(env_field("_pod_name", "metadata.name"));
    e.push(env_field("_pod_ns", "metadata.namespace"));
    e.push(env_field("_pod_uid", "metadata.uid"));
    e.push(env_field("_pod_ip", "status.podIP"));
    e.push(env_field("_pod_nodeName", "spec.nodeName"));
    e.push(env("_pod_containerName", PROXY_CONTAINER));
    // The deprecated `proxy.cores` only applies while workers.minimum is unset.
    let cores = match p.cores {
        Some(c) if p.runtime.workers.minimum <= 1 => c,
        _ => p.runtime.workers.minimum,
    };
    e.push(env("LINKERD2_PROXY_CORES", cores.to_string()));
    e.push(env("LINKERD2_PROXY_CORES_MIN", cores.to_string()));
    if let Some(max) = p.runtime.workers.maximum {
        e.push(env("LINKERD2_PROXY_CORES_MAX", max.to_string()));
    }
    if let Some(r) = p.runtime.workers.maximum_cpu_ratio {
        e.push(env("LINKERD2_PROXY_CORES_MAX_RATIO", r.to_string()));
    }
    if let Some(ports) = non_empty(&p.require_identity_on_inbound_ports) {
        e.push(env("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY", ports));
    }
    e.push(env(
        "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED",
        if p.enable_shutdown_endpoint {
            "true"
        } else {
            "false"
        },
    ));
    let log: Str<'a> = if p.log_http_headers == "insecure" {
        p.log_level.as_str().into()
    } else {
        format!("{},[{{headers}}]=off,[{{request}}]=off", p.log_level).into()
    };
    e.push(env("LINKERD2_PROXY_LOG", log));
    e.push(env("LINKERD2_PROXY_LOG_FORMAT", p.log_format.as_str()));
    e.push(env(
        "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
        names::DESTINATION_HEADLESS.address(ns, cd),
    ));
    e.push(env(
        "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS",
        v.cluster_networks.as_str(),
    ));
    e.push(env(
        "LINKERD2_PROXY_POLICY_SVC_ADDR",
        names::POLICY.address(ns, cd),
    ));
    e.push(env(
        "LINKERD2_PROXY_POLICY_WORKLOAD",
        "{\"ns\":\"$(_pod_ns)\", \"pod\":\"$(_pod_name)\"}\n",
    ));
    e.push(env(
        "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
        p.default_inbound_policy.as_str(),
    ));
    e.push(env(
        "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS",
        v.cluster_networks.as_str(),
    ));
    let streams = &p.control.streams;
    e.push(env(
        "LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT",
        streams.initial_timeout.as_str(),
    ));
    e.push(env(
        "LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT",
        streams.idle_timeout.as_str(),
    ));
    e.push(env(
        "LINKERD2_PROXY_CONTROL_STREAM_LIFETIME",
        streams.lifetime.as_str(),
    ));
    for (name, val) in [
        (
            "LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT",
            &p.inbound_connect_timeout,
        ),
        (
            "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT",
            &p.outbound_connect_timeout,
        ),
        (
            "LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT",
            &p.outbound_discovery_cache_unused_timeout,
        ),
        (
            "LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT",
            &p.inbound_discovery_cache_unused_timeout,
        ),
    ] {
        if let Some(val) = non_empty(val) {
            e.push(env(name, val));
        }
    }
    if p.disable_outbound_protocol_detect_timeout {
        e.push(env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "365d"));
    }
    if p.disable_inbound_protocol_detect_timeout {
        e.push(env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "365d"));
    }
    e.push(env(
        "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
        listen(v, ports.control),
    ));
    e.push(env(
        "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
        listen(v, ports.admin),
    ));
    let outbound = format!("127.0.0.1:{}", ports.outbound);
    let outbound_addrs = if v.disable_ipv6 {
        outbound.clone()
    } else {
        format!("{outbound},[::1]:{}", ports.outbound)
    };
    e.push(env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", outbound));
    e.push(env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS", outbound_addrs));
    e.push(env(
        "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
        listen(v, ports.inbound),
    ));
    e.push(env_field("LINKERD2_PROXY_INBOUND_IPS", "status.podIPs"));
    if let Some(ports) = non_empty(&facts.inbound_ports) {
        e.push(env("LINKERD2_PROXY_INBOUND_PORTS", ports));
    }
    if p.is_gateway {
        e.push(env(
            "LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES",
            format!("svc.{cd}."),
        ));
    }
    if p.is_ingress {
        e.push(env("LINKERD2_PROXY_INGRESS_MODE", "true"));
    }
    let suffixes: Str<'a> = if p.enable_external_profiles {
        ".".into()
    } else {
        format!("svc.{cd}.").into()
    };
    e.push(env("LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES", suffixes));
    e.push(env("LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE", "10000ms"));
    e.push(env("LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE", "10000ms"));
    e.push(env("LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT", "30s"));
    e.push(env("LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT", "30s"));
    e.push(env(
        "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
        if p.metrics.hostname_labels {
            "true"
        } else {
            "false"
        },
    ));
    if p.tracing.enabled {
        let t = &p.tracing;
        e.push(env(
            "LINKERD2_PROXY_TRACE_ATTRIBUTES_PATH",
            "/var/run/linkerd/podinfo/labels",
        ));
        e.push(env(
            "LINKERD2_PROXY_TRACE_ANNOTATIONS_PATH",
            "/var/run/linkerd/podinfo/annotations",
        ));
        e.push(env("LINKERD2_PROXY_TRACE_PROTOCOL", "opentelemetry"));
        e.push(env(
            "LINKERD2_PROXY_TRACE_SERVICE_NAME",
            t.trace_service_name.as_str(),
        ));
        e.push(env(
            "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_ADDR",
            t.collector.endpoint.as_str(),
        ));
        let mi = &t.collector.mesh_identity;
        if !mi.service_account_name.is_empty() {
            e.push(env(
                "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_NAME",
                names::identity(&mi.service_account_name, &mi.namespace, ns, td),
            ));
        }
        let attrs: Vec<String> = t
            .labels
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
            .collect();
        if !attrs.is_empty() {
            e.push(env(
                "LINKERD2_PROXY_TRACE_EXTRA_ATTRIBUTES",
                attrs.join("\n"),
            ));
        }
    }
    param_env("LINKERD2_PROXY_INBOUND", &p.inbound, &mut e);
    param_env("LINKERD2_PROXY_OUTBOUND", &p.outbound, &mut e);
    if let Some(opaque) = non_empty(&facts.opaque_ports) {
        e.push(env(
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            opaque,
        ));
    }
    e.push(env(
        "LINKERD2_PROXY_DESTINATION_CONTEXT",
        "{\"ns\":\"$(_pod_ns)\", \"nodeName\":\"$(_pod_nodeName)\", \"pod\":\"$(_pod_name)\"}\n",
    ));
    e.push(env_field("_pod_sa", "spec.serviceAccountName"));
    e.push(env("_l5d_ns", ns));
    e.push(env("_l5d_trustdomain", td));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_DIR",
        "/var/run/linkerd/identity/end-entity",
    ));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
        facts.trust_anchors_env,
    ));
    let token: Str<'a> = if v.identity.service_account_token_projection {
        "/var/run/secrets/tokens/linkerd-identity-token".into()
    } else {
        format!("{SA_TOKEN_PATH}/token").into()
    };
    e.push(env("LINKERD2_PROXY_IDENTITY_TOKEN_FILE", token));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
        names::IDENTITY_HEADLESS.address(ns, cd),
    ));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
        names::identity("$(_pod_sa)", "$(_pod_ns)", ns, td),
    ));
    e.push(env(
        "LINKERD2_PROXY_IDENTITY_SVC_NAME",
        names::IDENTITY.identity(ns, td),
    ));
    let dst = names::DESTINATION.identity(ns, td);
    e.push(env("LINKERD2_PROXY_DESTINATION_SVC_NAME", dst.clone()));
    e.push(env("LINKERD2_PROXY_POLICY_SVC_NAME", dst));
    if let Some(log) = non_empty(&p.access_log) {
        e.push(env("LINKERD2_PROXY_ACCESS_LOG", log));
    }
    if let Some(grace) = non_empty(&p.shutdown_grace_period) {
        e.push(env("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", grace));
    }
    // Appended, not merged into the list above: Kubernetes resolves duplicate
    // names to the last entry, so these win, as in Linkerd.
    e.extend(facts.additional_env.iter().map(EnvVar::Raw));
    e.extend(p.experimental_env.iter().map(EnvVar::Raw));

    let startup_probe = (facts.native && p.await_).then_some(Probe {
        http_get: HttpGet {
            path: "/ready",
            port: ports.admin,
        },
        initial_delay_seconds: p.startup_probe.initial_delay_seconds,
        timeout_seconds: None,
        period_seconds: Some(p.startup_probe.period_seconds),
        failure_threshold: Some(p.startup_probe.failure_threshold),
    });
    let lifecycle = (!facts.native).then(|| {
        let mut lifecycle = Map::new();
        if p.await_ {
            lifecycle.insert(
                "postStart".into(),
                json!({"exec": {"command": [
                    "/usr/lib/linkerd/linkerd-await",
                    "--timeout=2m",
                    format!("--port={}", ports.admin),
                ]}}),
            );
        }
        if p.wait_before_exit_seconds > 0 {
            lifecycle.insert(
                "preStop".into(),
                json!({"exec": {"command": ["/bin/sleep", p.wait_before_exit_seconds.to_string()]}}),
            );
        }
        lifecycle
    });
    let mut mounts = Vec::with_capacity(4);
    mounts.push(Mount::Mount {
        mount_path: "/var/run/linkerd/identity/end-entity",
        name: END_ENTITY_VOLUME,
    });
    if p.tracing.enabled {
        mounts.push(Mount::Mount {
            mount_path: "/var/run/linkerd/podinfo",
            name: PODINFO_VOLUME,
        });
    }
    if v.identity.service_account_token_projection {
        mounts.push(Mount::Mount {
            mount_path: "/var/run/secrets/tokens",
            name: TOKEN_VOLUME,
        });
    }
    if let Some(m) = &facts.sa_mount {
        mounts.push(Mount::Raw(m));
    }
    Container {
        name: PROXY_CONTAINER,
        image: proxy_image(v),
        image_pull_policy: pull_policy(&p.image.pull_policy, v),
        command: None,
        args: Vec::new(),
        env: e,
        ports: vec![
            ContainerPort {
                container_port: ports.inbound,
                name: "linkerd-proxy",
            },
            ContainerPort {
                container_port: ports.admin,
                name: ADMIN_PORT_NAME,
            },
        ],
        liveness_probe: Some(Probe {
            http_get: HttpGet {
                path: "/live",
                port: ports.admin,
            },
            initial_delay_seconds: p.liveness_probe.initial_delay_seconds,
            timeout_seconds: Some(p.liveness_probe.timeout_seconds),
            period_seconds: None,
            failure_threshold: None,
        }),
        readiness_probe: Some(Probe {
            http_get: HttpGet {
                path: "/ready",
                port: ports.admin,
            },
            initial_delay_seconds: p.readiness_probe.initial_delay_seconds,
            timeout_seconds: Some(p.readiness_probe.timeout_seconds),
            period_seconds: None,
            failure_threshold: None,
        }),
        startup_probe,
        resources: resources(&p.resources),
        restart_policy: facts.native.then_some("Always"),
        security_context: proxy_security_context(v, facts),
        termination_message_policy: "FallbackToLogsOnError",
        lifecycle: lifecycle.filter(|l| !l.is_empty()).map(Value::Object),
        volume_mounts: mounts,
    }
}

fn proxy_security_context<'a>(v: &'a Values, facts: &PodFacts<'a>) -> SecurityContext<'a> {
    let p = &v.proxy;
    if !p.security_context.is_empty() {
        return SecurityContext::Custom(&p.security_context);
    }
    SecurityContext::Proxy(ProxySecurityContext {
        allow_privilege_escalation: false,
        capabilities: facts.app_capabilities,
        read_only_root_filesystem: true,
        run_as_non_root: true,
        run_as_user: p.uid,
        run_as_group: (p.gid >= 0).then_some(p.gid),
        seccomp_profile: RUNTIME_DEFAULT,
    })
}

/// The `linkerd-init` container (iptables mode).
pub fn init_container<'a>(v: &'a Values, facts: &'a PodFacts<'a>) -> Container<'a> {
    let p = &v.proxy;
    let pi = &v.proxy_init;
    let mut args: Vec<Str<'a>> = Vec::with_capacity(24);
    if pi.iptables_mode == "nft" {
        args.extend(
            [
                "--firewall-bin-path",
                "iptables-nft",
                "--firewall-save-bin-path",
                "iptables-nft-save",
            ]
            .map(Str::from),
        );
    }
    if v.disable_ipv6 {
        args.push("--ipv6=false".into());
    }
    args.push("--incoming-proxy-port".into());
    args.push(p.ports.inbound.to_string().into());
    args.push("--outgoing-proxy-port".into());
    args.push(p.ports.outbound.to_string().into());
    args.push("--proxy-uid".into());
    args.push(p.uid.to_string().into());
    if p.gid >= 0 {
        args.push("--proxy-gid".into());
        args.push(p.gid.to_string().into());
    }
    let mut inbound_ignore = format!("{},{}", p.ports.control, p.ports.admin);
    if !pi.ignore_inbound_ports.is_empty() {
        inbound_ignore.push(',');
        inbound_ignore.push_str(&pi.ignore_inbound_ports);
    }
    args.push("--inbound-ports-to-ignore".into());
    args.push(inbound_ignore.into());
    if let Some(ports) = non_empty(&pi.ignore_outbound_ports) {
        args.push("--outbound-ports-to-ignore".into());
        args.push(ports.into());
    }
    if pi.close_wait_timeout_secs > 0 {
        args.push("--timeout-close-wait-secs".into());
        args.push(pi.close_wait_timeout_secs.to_string().into());
    }
    if let Some(f) = non_empty(&pi.log_format) {
        args.push("--log-format".into());
        args.push(f.into());
    }
    if let Some(l) = non_empty(&pi.log_level) {
        args.push("--log-level".into());
        args.push(l.into());
    }
    if let Some(s) = non_empty(&pi.skip_subnets) {
        args.push("--subnets-to-ignore".into());
        args.push(s.into());
    }
    let privileged = pi.privileged || pi.close_wait_timeout_secs > 0;

    let app = facts.app_capabilities;
    let mut add = vec![Capability::Name("NET_ADMIN"), Capability::Name("NET_RAW")];
    if let Some(a) = app.and_then(|c| c.get("add")).and_then(Value::as_array) {
        add.extend(a.iter().map(Capability::Raw));
    }
    let drop = app
        .and_then(|c| c.get("drop"))
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter(|c| !matches!(c.as_str(), Some("NET_ADMIN" | "NET_RAW")))
                .collect()
        });
    let nz = |id: i64| if id == 0 { 65534 } else { id };
    let (run_as_non_root, run_as_user, run_as_group) = if pi.run_as_root {
        (false, 0, 0)
    } else {
        (true, nz(pi.run_as_user), nz(pi.run_as_group))
    };
    let mut mounts = vec![Mount::Mount {
        mount_path: &pi.xt_mount_path.mount_path,
        name: &pi.xt_mount_path.name,
    }];
    if let Some(m) = &facts.sa_mount {
        mounts.push(Mount::Raw(m));
    }
    Container {
        name: INIT_CONTAINER,
        image: init_image(v),
        image_pull_policy: pull_policy(&p.image.pull_policy, v),
        command: Some(["/usr/lib/linkerd/linkerd2-proxy-init"]),
        args,
        env: Vec::new(),
        ports: Vec::new(),
        liveness_probe: None,
        readiness_probe: None,
        startup_probe: None,
        resources: resources(&p.resources),
        restart_policy: None,
        security_context: SecurityContext::Init(InitSecurityContext {
            allow_privilege_escalation: privileged,
            capabilities: InitCapabilities { add, drop },
            privileged,
            run_as_non_root,
            run_as_user,
            run_as_group,
            read_only_root_filesystem: true,
            seccomp_profile: RUNTIME_DEFAULT,
        }),
        termination_message_policy: "FallbackToLogsOnError",
        lifecycle: None,
        volume_mounts: mounts,
    }
}

/// The `linkerd-network-validator` init container (CNI mode).
pub fn network_validator(v: &Values) -> Value {
    let nv = &v.network_validator;
    let outbound = v.proxy.ports.outbound;
    let connect = if !nv.connect_addr.is_empty() {
        nv.connect_addr.clone()
    } else if v.disable_ipv6 {
        "1.1.1.1:20001".into()
    } else {
        "[fd00::1]:20001".into()
    };
    let listen = if !nv.listen_addr.is_empty() {
        nv.listen_addr.clone()
    } else if v.disable_ipv6 {
        format!("0.0.0.0:{outbound}")
    } else {
        format!("[::]:{outbound}")
    };
    let mut c = Map::new();
    c.insert("name".into(), VALIDATOR_CONTAINER.into());
    c.insert("image".into(), init_image(v).into());
    c.insert(
        "imagePullPolicy".into(),
        pull_policy(&v.proxy.image.pull_policy, v).into(),
    );
    c.insert(
        "command".into(),
        json!(["/usr/lib/linkerd/linkerd2-network-validator"]),
    );
    c.insert(
        "args".into(),
        json!([
            "--log-format",
            nv.log_format,
            "--log-level",
            nv.log_level,
            "--connect-addr",
            connect,
            "--listen-addr",
            listen,
            "--timeout",
            nv.timeout,
        ]),
    );
    c.insert("resources".into(), resources(&v.proxy.resources));
    if nv.enable_security_context {
        c.insert("securityContext".into(), nv.security_context.clone().into());
    }
    c.into()
}

/// The `linkerd-debug` container.
pub fn debug_container(v: &Values) -> Value {
    let img = &v.debug_container.image;
    json!({
        "image": image(&img.name, &img.version, &v.linkerd_version),
        "imagePullPolicy": pull_policy(&img.pull_policy, v),
        "name": DEBUG_CONTAINER,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "livenessProbe": {"exec": {"command": ["true"]}},
        "readinessProbe": {"exec": {"command": ["true"]}},
    })
}

pub fn xtables_volume(v: &Values) -> Value {
    json!({"emptyDir": {}, "name": v.proxy_init.xt_mount_path.name})
}

pub fn end_entity_volume() -> Value {
    json!({"name": END_ENTITY_VOLUME, "emptyDir": {"medium": "Memory"}})
}

pub fn token_volume() -> Value {
    json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": "identity.l5d.io", "expirationSeconds": 86400, "path": TOKEN_VOLUME}}]}})
}

pub fn podinfo_volume() -> Value {
    json!({"name": PODINFO_VOLUME, "downwardAPI": {"items": [
        {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"}]}})
}

/// Merges `proxy.additionalEnv` (values) with the annotation's list.
pub fn additional_env(v: &Values, overrides: Vec<Value>) -> Vec<Value> {
    if overrides.is_empty() {
        v.proxy.additional_env.clone()
    } else {
        merge_env(v.proxy.additional_env.clone(), overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(c: Container<'_>) -> Value {
        serde_json::to_value(c).unwrap()
    }

    #[test]
    fn upper_snake_case() {
        assert_eq!(upper_snake("keepAliveInterval"), "KEEP_ALIVE_INTERVAL");
        assert_eq!(upper_snake("http2"), "HTTP2");
    }

    #[test]
    fn resources_null_when_unset() {
        assert_eq!(resources(&ResourcesValues::default()), Value::Null);
        let mut r = ResourcesValues::default();
        r.memory.limit = "64Mi".into();
        assert_eq!(resources(&r), json!({"limits": {"memory": "64Mi"}}));
    }

    #[test]
    fn ipv6_listen_addresses() {
        let v = Values {
            disable_ipv6: false,
            ..Values::default()
        };
        let facts = PodFacts::default();
        let c = json(proxy_container(&v, "linkerd", &facts));
        let envs = c["env"].as_array().unwrap();
        let get = |n: &str| {
            envs.iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].clone())
        };
        assert_eq!(
            get("LINKERD2_PROXY_INBOUND_LISTEN_ADDR").unwrap(),
            "[::]:4143"
        );
        assert_eq!(
            get("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS").unwrap(),
            "127.0.0.1:4140,[::1]:4140"
        );
        let init = json(init_container(&v, &facts));
        assert!(
            !init["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--ipv6=false"))
        );
    }

    #[test]
    fn classic_mode_has_lifecycle_and_no_restart_policy() {
        let mut v = Values::default();
        v.proxy.wait_before_exit_seconds = 30;
        let facts = PodFacts::default();
        let c = json(proxy_container(&v, "linkerd", &facts));
        assert!(c.get("restartPolicy").is_none());
        assert!(c.get("startupProbe").is_none());
        assert_eq!(c["lifecycle"]["preStop"]["exec"]["command"][1], "30");
        assert_eq!(
            c["lifecycle"]["postStart"]["exec"]["command"][2],
            "--port=4191"
        );
    }

    #[test]
    fn init_container_capabilities_follow_the_app() {
        let caps = json!({"add": ["SYS_TIME"], "drop": ["ALL", "NET_RAW"]});
        let facts = PodFacts {
            app_capabilities: caps.as_object(),
            ..PodFacts::default()
        };
        let v = Values::default();
        let c = json(init_container(&v, &facts));
        assert_eq!(
            c["securityContext"]["capabilities"],
            json!({"add": ["NET_ADMIN", "NET_RAW", "SYS_TIME"], "drop": ["ALL"]})
        );
        let p = json(proxy_container(&v, "linkerd", &facts));
        assert_eq!(
            p["securityContext"]["capabilities"],
            json!({"add": ["SYS_TIME"], "drop": ["ALL", "NET_RAW"]})
        );
    }
}
