//! The proxy container's environment: what linkerd2-proxy reads at start,
//! in the order Linkerd's `_proxy.tpl` writes it (tests compare the order).

use std::borrow::Cow;

use kinject_mesh::names;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{PROXY_CONTAINER, PodFacts, SA_TOKEN_PATH, listen, non_empty};
use kinject_mesh::values::Values;

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

/// Every env var of the `linkerd-proxy` container.
pub fn proxy_env<'a>(v: &'a Values, ns: &'a str, facts: &'a PodFacts<'a>) -> Vec<EnvVar<'a>> {
    let p = &v.proxy;
    let mut e: Vec<EnvVar<'a>> = Vec::with_capacity(64 + facts.additional_env.len());
    workload_env(v, &mut e);
    discovery_env(v, ns, &mut e);
    listener_env(v, facts, &mut e);
    tracing_env(v, ns, &mut e);
    protocol_env(v, facts, &mut e);
    identity_env(v, ns, facts, &mut e);
    // Appended, not merged into the list above: Kubernetes resolves duplicate
    // names to the last entry, so these win, as in Linkerd.
    e.extend(facts.additional_env.iter().map(EnvVar::Raw));
    e.extend(p.experimental_env.iter().map(EnvVar::Raw));
    e
}

/// The pod's own fields, the runtime's workers, and logging.
fn workload_env<'a>(v: &'a Values, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
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
}

/// Where the control plane's APIs are, and how long the proxy waits on them and on its peers.
fn discovery_env<'a>(v: &'a Values, ns: &'a str, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
    let cd = &v.cluster_domain;
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
}

/// What the proxy listens on and how it treats accepted connections.
fn listener_env<'a>(v: &'a Values, facts: &'a PodFacts<'a>, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
    let cd = &v.cluster_domain;
    let ports = &p.ports;
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
}

/// Where traces go (only when `proxy.tracing.enabled`).
fn tracing_env<'a>(v: &'a Values, ns: &'a str, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
    let td = v.trust_domain();
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
}

/// `proxy.inbound`/`proxy.outbound` parameters, opaque ports, and the destination context.
fn protocol_env<'a>(v: &'a Values, facts: &'a PodFacts<'a>, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
    param_env("LINKERD2_PROXY_INBOUND", &p.inbound, e);
    param_env("LINKERD2_PROXY_OUTBOUND", &p.outbound, e);
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
}

/// The identity the proxy asks for, whom it trusts, and the control plane names it checks.
fn identity_env<'a>(v: &'a Values, ns: &'a str, facts: &'a PodFacts<'a>, e: &mut Vec<EnvVar<'a>>) {
    let p = &v.proxy;
    let cd = &v.cluster_domain;
    let td = v.trust_domain();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_snake_case() {
        assert_eq!(upper_snake("keepAliveInterval"), "KEEP_ALIVE_INTERVAL");
        assert_eq!(upper_snake("http2"), "HTTP2");
    }
}
