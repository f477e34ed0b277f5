//! Port bookkeeping: inbound ports, opaque ports (resolution, default filtering)
//! and the opaque-ports annotation patch for Services and skipped pods.

use serde_json::Value;

use crate::warning::{Warning, WarningCode};
use kinject_mesh::parse::{self, PortRange};

/// Every container port of `initContainers` then `containers`: (port, name, protocol).
pub fn container_ports(spec: &Value) -> impl Iterator<Item = (u16, Option<&str>, Option<&str>)> {
    ["initContainers", "containers"]
        .into_iter()
        .filter_map(move |k| spec.get(k).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| {
            let port = p.get("containerPort").and_then(Value::as_u64)?;
            let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
            Some((
                port,
                p.get("name").and_then(Value::as_str),
                p.get("protocol").and_then(Value::as_str),
            ))
        })
}

/// `LINKERD2_PROXY_INBOUND_PORTS`: all container ports plus the integer ports of
/// HTTP liveness/readiness probes, deduplicated and sorted *as strings*, which is
/// Linkerd's (harmless) order and what its fixtures expect.
pub fn inbound_ports(spec: &Value) -> String {
    let mut ports: Vec<u16> = container_ports(spec).map(|(p, _, _)| p).collect();
    for c in ["initContainers", "containers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten()
    {
        for probe in ["livenessProbe", "readinessProbe"] {
            if let Some(p) = c
                .get(probe)
                .and_then(|p| p.get("httpGet"))
                .and_then(|h| h.get("port"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
            {
                ports.push(p);
            }
        }
    }
    let mut strs: Vec<String> = ports.iter().map(u16::to_string).collect();
    strs.sort();
    strs.dedup();
    strs.join(",")
}

/// Resolves an opaque-ports list (`3306,5000-6000,mysql`): numbers and ranges are
/// kept as written, names are looked up among the pod's container ports, and
/// entries that cannot be used are dropped with a warning.
pub fn resolve_opaque_ports(list: &str, spec: &Value, warnings: &mut Vec<Warning>) -> String {
    let mut out: Vec<String> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.starts_with(|c: char| c.is_ascii_digit()) {
            match parse::port_range(entry) {
                Ok(r) => out.push(r.to_string()),
                Err(e) => warnings.push(Warning::new(
                    WarningCode::InvalidConfigValue,
                    format!("opaque port {entry:?} ignored: {e}"),
                )),
            }
            continue;
        }
        let before = out.len();
        for (port, name, _) in container_ports(spec) {
            if name == Some(entry) && !out.contains(&port.to_string()) {
                out.push(port.to_string());
            }
        }
        if out.len() == before {
            warnings.push(Warning::new(
                WarningCode::InvalidConfigValue,
                format!("opaque port {entry:?} ignored: no container port has that name"),
            ));
        }
    }
    out.join(",")
}

fn default_ranges(defaults: &str) -> Vec<PortRange> {
    parse::port_ranges(defaults).unwrap_or_default()
}

/// The default opaque ports the pod actually exposes, in container and port order.
pub fn filtered_pod_defaults(defaults: &str, spec: &Value) -> String {
    let ranges = default_ranges(defaults);
    container_ports(spec)
        .filter(|(p, _, _)| ranges.iter().any(|r| r.contains(*p)))
        .map(|(p, _, _)| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The default opaque ports a Service routes to: `port` when the target port is
/// unset and `port` is a default, or when the integer `targetPort` is a default.
/// Named target ports cannot be resolved here and are skipped.
pub fn filtered_service_defaults(defaults: &str, svc: &Value) -> String {
    let ranges = default_ranges(defaults);
    let is_default = |p: u64| {
        u16::try_from(p)
            .ok()
            .is_some_and(|p| ranges.iter().any(|r| r.contains(p)))
    };
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = sp.get("port").and_then(Value::as_u64)?;
            let include = match sp.get("targetPort") {
                None | Some(Value::Null) => is_default(port),
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(0) => is_default(port),
                    Some(t) => is_default(t),
                    None => false,
                },
                Some(_) => false,
            };
            include.then(|| port.to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Warnings for UDP ports: the proxy only handles TCP; UDP traffic bypasses it.
pub fn udp_warning(spec: &Value) -> Option<Warning> {
    let udp: Vec<String> = container_ports(spec)
        .filter(|(_, _, proto)| *proto == Some("UDP"))
        .map(|(p, _, _)| p.to_string())
        .collect();
    (!udp.is_empty()).then(|| {
        Warning::new(
            WarningCode::UdpPort,
            format!(
                "UDP port(s) {} are not proxied (the proxy handles TCP only)",
                udp.join(",")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inbound_ports_include_probes_and_sort_as_strings() {
        let spec = json!({
            "initContainers": [{"name": "m", "ports": [{"containerPort": 11211}]}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 80}],
                            "readinessProbe": {"httpGet": {"port": 9090}},
                            "livenessProbe": {"httpGet": {"port": "http"}}}],
        });
        assert_eq!(inbound_ports(&spec), "11211,80,9090");
    }

    #[test]
    fn opaque_names_resolve_and_bad_entries_warn() {
        let spec = json!({"containers": [{"ports": [{"containerPort": 3306, "name": "mysql"}]}]});
        let mut w = vec![];
        assert_eq!(
            resolve_opaque_ports("3000,5000-6000,mysql,nope,99999", &spec, &mut w),
            "3000,5000-6000,3306"
        );
        assert_eq!(w.len(), 2);
        assert!(w[0].message.contains("nope"));
        assert!(w[1].message.contains("99999"));
    }

    #[test]
    fn service_defaults_follow_target_ports() {
        let svc = json!({"spec": {"ports": [
            {"port": 9090, "targetPort": 3306},
            {"port": 5432, "targetPort": 9091},
            {"port": 3306},
            {"port": 9093, "targetPort": "not-an-int"},
        ]}});
        assert_eq!(
            filtered_service_defaults("25,587,3306,4444,5432,6379,9300,11211", &svc),
            "9090,3306"
        );
    }

    #[test]
    fn udp_ports_warn() {
        let spec = json!({"containers": [{"ports": [{"containerPort": 53, "protocol": "UDP"}]}]});
        assert!(udp_warning(&spec).unwrap().message.contains("53"));
        assert!(udp_warning(&json!({"containers": []})).is_none());
    }
}
