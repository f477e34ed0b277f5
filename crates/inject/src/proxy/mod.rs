//! The containers and volumes kinject adds, exactly as Linkerd's chart partials
//! (`_proxy.tpl`, `_proxy-init.tpl`, `_network-validator.tpl`, `_debug.tpl`)
//! render them, so that the real linkerd2-proxy finds what it expects.

mod env;
mod init;

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::annotations::merge_env;
use kinject_mesh::values::{ResourcesValues, Values};

pub use env::EnvVar;
pub use init::{init_container, network_validator};

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

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The `linkerd-proxy` container.
pub fn proxy_container<'a>(v: &'a Values, ns: &'a str, facts: &'a PodFacts<'a>) -> Container<'a> {
    let p = &v.proxy;
    let admin = p.ports.admin;
    Container {
        name: PROXY_CONTAINER,
        image: proxy_image(v),
        image_pull_policy: pull_policy(&p.image.pull_policy, v),
        command: None,
        args: Vec::new(),
        env: env::proxy_env(v, ns, facts),
        ports: vec![
            ContainerPort {
                container_port: p.ports.inbound,
                name: "linkerd-proxy",
            },
            ContainerPort {
                container_port: admin,
                name: ADMIN_PORT_NAME,
            },
        ],
        liveness_probe: Some(Probe {
            http_get: HttpGet {
                path: "/live",
                port: admin,
            },
            initial_delay_seconds: p.liveness_probe.initial_delay_seconds,
            timeout_seconds: Some(p.liveness_probe.timeout_seconds),
            period_seconds: None,
            failure_threshold: None,
        }),
        readiness_probe: Some(Probe {
            http_get: HttpGet {
                path: "/ready",
                port: admin,
            },
            initial_delay_seconds: p.readiness_probe.initial_delay_seconds,
            timeout_seconds: Some(p.readiness_probe.timeout_seconds),
            period_seconds: None,
            failure_threshold: None,
        }),
        // A native sidecar holds the app back until it is ready; a classic
        // one does the same with a postStart hook (`proxy_lifecycle`).
        startup_probe: (facts.native && p.await_).then_some(Probe {
            http_get: HttpGet {
                path: "/ready",
                port: admin,
            },
            initial_delay_seconds: p.startup_probe.initial_delay_seconds,
            timeout_seconds: None,
            period_seconds: Some(p.startup_probe.period_seconds),
            failure_threshold: Some(p.startup_probe.failure_threshold),
        }),
        resources: resources(&p.resources),
        restart_policy: facts.native.then_some("Always"),
        security_context: proxy_security_context(v, facts),
        termination_message_policy: "FallbackToLogsOnError",
        lifecycle: (!facts.native)
            .then(|| proxy_lifecycle(v))
            .filter(|l| !l.is_empty())
            .map(Value::Object),
        volume_mounts: proxy_mounts(v, facts),
    }
}

/// A classic sidecar's hooks: wait for the proxy before the app starts, and
/// linger before it stops.
fn proxy_lifecycle(v: &Values) -> Map<String, Value> {
    let p = &v.proxy;
    let mut lifecycle = Map::new();
    if p.await_ {
        lifecycle.insert(
            "postStart".into(),
            json!({"exec": {"command": [
                "/usr/lib/linkerd/linkerd-await",
                "--timeout=2m",
                format!("--port={}", p.ports.admin),
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
}

fn proxy_mounts<'a>(v: &'a Values, facts: &'a PodFacts<'a>) -> Vec<Mount<'a>> {
    let mut mounts = Vec::with_capacity(4);
    mounts.push(Mount::Mount {
        mount_path: "/var/run/linkerd/identity/end-entity",
        name: END_ENTITY_VOLUME,
    });
    if v.proxy.tracing.enabled {
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
    mounts
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
