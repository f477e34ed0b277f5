//! A pod's inbound policy per container port, as destination answers the
//! pod's proxy: its Server (or the default policy), protocol, who may
//! connect from where, and its HTTP routes. Computed by destination's own
//! pure answer from a snapshot of the cluster's policy objects.

use serde::Serialize;
use serde_json::Value;

/// The inbound policy of one port.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PortPolicy {
    pub port: u16,
    /// `Server NAME`, or `default POLICY`.
    pub server: String,
    pub protocol: &'static str,
    /// `kind/name: who, from where`.
    pub authorizations: Vec<String>,
    /// HTTP routes, with the authorizations of their own.
    pub routes: Vec<String>,
}

fn describe_authz(a: &linkerd2_proxy_api::inbound::Authz) -> String {
    use linkerd2_proxy_api::inbound::authn::Permit;
    use linkerd2_proxy_api::inbound::authn::permit_mesh_tls::Clients;
    use linkerd2_proxy_api::meta::metadata::Kind;
    let name = match a.metadata.as_ref().and_then(|m| m.kind.as_ref()) {
        Some(Kind::Default(n)) => format!("default/{n}"),
        Some(Kind::Resource(r)) => format!("{}/{}", r.kind, r.name),
        None => "?".into(),
    };
    let who = match a.authentication.as_ref().and_then(|a| a.permit.as_ref()) {
        Some(Permit::Unauthenticated(_)) => "any client".to_string(),
        Some(Permit::MeshTls(m)) => match m.clients.as_ref() {
            Some(Clients::Unauthenticated(_)) => "TLS clients".to_string(),
            Some(Clients::Identities(ids)) => {
                let mut v: Vec<String> = ids.identities.iter().map(|i| i.name.clone()).collect();
                v.extend(ids.suffixes.iter().map(|s| {
                    if s.parts.is_empty() {
                        "any mesh identity".to_string()
                    } else {
                        format!("*.{}", s.parts.join("."))
                    }
                }));
                format!("mTLS {}", v.join(", "))
            }
            None => "nobody".to_string(),
        },
        None => "nobody".to_string(),
    };
    let nets: Vec<String> = a
        .networks
        .iter()
        .filter_map(|n| {
            let net: ipnet::IpNet = n.net?.try_into().ok()?;
            Some(if n.except.is_empty() {
                net.to_string()
            } else {
                format!("{net} (except {})", n.except.len())
            })
        })
        .collect();
    format!("{name}: {who} from {}", nets.join(", "))
}

/// Each container port's inbound policy, computed by destination's own
/// answer for a pod like `template` in namespace `ns_obj`.
pub fn port_policies(
    template: &Value,
    ns_obj: &Value,
    linkerd_ns: &str,
    set: &std::sync::Arc<kinject_destination::policy_index::PolicySet>,
    cfg: &kinject_destination::PolicyConfig,
) -> Vec<PortPolicy> {
    use linkerd2_proxy_api::inbound::proxy_protocol::Kind;
    let Ok(pod) = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(template.clone())
    else {
        return Vec::new();
    };
    let info = kinject_destination::model::pod_info(&pod, linkerd_ns);
    let mut ports: Vec<u16> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    ports.sort();
    ports.dedup();
    let ns = ns_obj["metadata"]["name"].as_str().unwrap_or_default();
    let view = kinject_destination::index::PodView {
        pod: Some(std::sync::Arc::new(info)),
        namespace: ns.to_string(),
        namespace_default: ns_obj["metadata"]["annotations"]
            [kinject_mesh::labels::DEFAULT_INBOUND_POLICY_ANNOTATION]
            .as_str()
            .map(str::to_string),
        policy: kinject_destination::policy_index::PolicySnapshot(set.clone()),
    };
    ports
        .into_iter()
        .filter_map(|port| {
            let s = kinject_destination::policy::inbound_server(&view, port, cfg)?;
            let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let (protocol, routes) = match s.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
                Some(Kind::Detect(d)) => ("detect", d.http_routes.clone()),
                Some(Kind::Http1(h)) => ("HTTP/1", h.routes.clone()),
                Some(Kind::Http2(h)) => ("HTTP/2", h.routes.clone()),
                Some(Kind::Grpc(_)) => ("gRPC", Vec::new()),
                Some(Kind::Opaque(_)) => ("opaque", Vec::new()),
                Some(Kind::Tls(_)) => ("TLS", Vec::new()),
                None => ("?", Vec::new()),
            };
            Some(PortPolicy {
                port,
                server: if label("kind") == "server" {
                    format!("Server {}", label("name"))
                } else {
                    format!("default {}", label("name"))
                },
                protocol,
                authorizations: s.authorizations.iter().map(describe_authz).collect(),
                routes: routes
                    .iter()
                    .map(|r| {
                        use linkerd2_proxy_api::meta::metadata::Kind;
                        let name = match r.metadata.as_ref().and_then(|m| m.kind.as_ref()) {
                            Some(Kind::Default(n)) => format!("default/{n}"),
                            Some(Kind::Resource(r)) => format!("{}/{}", r.kind, r.name),
                            None => "?".into(),
                        };
                        if r.authorizations.is_empty() {
                            name
                        } else {
                            let a: Vec<String> =
                                r.authorizations.iter().map(describe_authz).collect();
                            format!("{name} [{}]", a.join("; "))
                        }
                    })
                    .collect(),
            })
        })
        .collect()
}
