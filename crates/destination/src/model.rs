//! What the control plane keeps of each Kubernetes object: only the facts the
//! proxy's answers depend on, so a thousand pods cost kilobytes, not the
//! megabytes their full objects would. Conversions are pure.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, Probe, Service};
use kinject_mesh::labels::{
    CONTROL_PLANE_NS_LABEL, DEFAULT_INBOUND_POLICY_ANNOTATION, OPAQUE_PORTS_ANNOTATION,
};
use kinject_mesh::parse::{self, PortRange};
use serde::Deserialize;

use crate::route_annotations::{
    BadAnnotation, FailureAccrual, RouteAnnotations, failure_accrual, route_annotations,
};

const INBOUND_PORT_ANNOTATION: &str = "config.linkerd.io/proxy-inbound-port";
const ADMIN_PORT_ANNOTATION: &str = "config.linkerd.io/proxy-admin-port";
/// The proxy's defaults (Linkerd's chart): inbound 4143, admin 4191.
pub const DEFAULT_INBOUND_PORT: u16 = 4143;
pub const DEFAULT_ADMIN_PORT: u16 = 4191;

/// Namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An HTTP probe the kubelet sends: it must get through whatever the
/// inbound policy is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    pub port: u16,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub ips: Vec<IpAddr>,
    pub service_account: String,
    pub node: Option<String>,
    /// Injected by this control plane (`linkerd.io/control-plane-ns`).
    pub meshed: bool,
    pub default_policy: Option<String>,
    /// The pod's opaque ports (annotation, names resolved to numbers).
    pub opaque_ports: Vec<PortRange>,
    pub named_ports: Vec<(String, u16)>,
    /// What Servers select pods by.
    pub labels: std::collections::BTreeMap<String, String>,
    pub probes: Vec<HttpProbe>,
    pub inbound_port: u16,
    pub admin_port: u16,
    /// A `hostNetwork` pod's IP is its node's: never index it as the pod's.
    pub host_network: bool,
}

impl PodInfo {
    pub fn is_opaque(&self, port: u16) -> bool {
        self.opaque_ports.iter().any(|r| r.contains(port))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub opaque_ports: Vec<PortRange>,
    /// `ExternalName` Services have no endpoints and no cluster IP.
    pub external_name: bool,
    /// The Service's `retry.linkerd.io/*` and `timeout.linkerd.io/*`: for
    /// its default route and the rules of its HTTPRoutes that set none.
    pub route_defaults: RouteAnnotations,
    /// `balancer.linkerd.io/failure-accrual: consecutive`: the proxies'
    /// circuit breaker for the Service's endpoints.
    pub failure_accrual: Option<FailureAccrual>,
    /// Why some of those annotations were not applied (a value that does not
    /// parse: none of its set, retries and timeouts or the breaker, applies,
    /// as Linkerd does; the watch logs it and `check` names it).
    pub bad_annotations: Vec<BadAnnotation>,
}

impl ServiceInfo {
    pub fn is_opaque(&self, port: u16) -> bool {
        self.opaque_ports.iter().any(|r| r.contains(port))
    }
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamespaceInfo {
    pub default_policy: Option<String>,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ips: Vec<IpAddr>,
    pub ready: bool,
    pub pod: Option<String>,
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SliceInfo {
    pub service: String,
    pub ports: Vec<(Option<String>, u16)>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// A list of opaque ports: numbers and ranges, and names resolved with
/// `named` (a pod's container ports). Entries that do not parse are dropped,
/// as the injector does (it warned when it wrote them).
pub fn opaque_ports(list: &str, named: &[(String, u16)]) -> Vec<PortRange> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.starts_with(|c: char| c.is_ascii_digit()) {
            if let Ok(r) = parse::port_range(entry) {
                out.push(r);
            }
        } else {
            out.extend(
                named
                    .iter()
                    .filter(|(n, _)| n == entry)
                    .map(|(_, p)| PortRange { lo: *p, hi: *p }),
            );
        }
    }
    out
}

fn annotation<'a>(
    map: &'a Option<std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    map.as_ref()?.get(key).map(String::as_str)
}

fn port_annotation(
    map: &Option<std::collections::BTreeMap<String, String>>,
    key: &str,
    default: u16,
) -> u16 {
    annotation(map, key)
        .and_then(|v| parse::port(v).ok())
        .unwrap_or(default)
}

fn http_probe(p: &Option<Probe>, named: &[(String, u16)]) -> Option<HttpProbe> {
    let get = p.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
            u16::try_from(*i).ok()?
        }
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            named.iter().find(|(n, _)| n == name).map(|(_, p)| *p)?
        }
    };
    Some(HttpProbe {
        port,
        path: get.path.clone().unwrap_or_else(|| "/".into()),
    })
}

/// The facts of a pod. `control_ns` decides whether it is meshed here.
pub fn pod_info(pod: &Pod, control_ns: &str) -> PodInfo {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let containers: Vec<&Container> = spec
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .collect()
        })
        .unwrap_or_default();
    let named_ports: Vec<(String, u16)> = containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some((
                p.name.clone()?,
                u16::try_from(p.container_port).ok().filter(|p| *p > 0)?,
            ))
        })
        .collect();
    let mut probes = Vec::new();
    for c in &containers {
        for p in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe] {
            if let Some(probe) = http_probe(p, &named_ports)
                && !probes.contains(&probe)
            {
                probes.push(probe);
            }
        }
    }
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    PodInfo {
        ips,
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        node: spec.and_then(|s| s.node_name.clone()),
        meshed: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROL_PLANE_NS_LABEL))
            .is_some_and(|ns| ns == control_ns),
        default_policy: annotation(&meta.annotations, DEFAULT_INBOUND_POLICY_ANNOTATION)
            .map(str::to_string),
        opaque_ports: annotation(&meta.annotations, OPAQUE_PORTS_ANNOTATION)
            .map(|l| opaque_ports(l, &named_ports))
            .unwrap_or_default(),
        probes,
        inbound_port: port_annotation(
            &meta.annotations,
            INBOUND_PORT_ANNOTATION,
            DEFAULT_INBOUND_PORT,
        ),
        admin_port: port_annotation(&meta.annotations, ADMIN_PORT_ANNOTATION, DEFAULT_ADMIN_PORT),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        named_ports,
        labels: meta.labels.clone().unwrap_or_default(),
    }
}

pub fn service_info(svc: &Service) -> ServiceInfo {
    let spec = svc.spec.as_ref();
    // A set that does not parse applies none of its values; why is kept.
    let mut bad_annotations = Vec::new();
    let annotations = svc.metadata.annotations.as_ref();
    let route_defaults = annotations
        .map_or(Ok(RouteAnnotations::default()), route_annotations)
        .unwrap_or_else(|why| {
            bad_annotations.push(why);
            RouteAnnotations::default()
        });
    let failure_accrual = annotations
        .map_or(Ok(None), failure_accrual)
        .unwrap_or_else(|why| {
            bad_annotations.push(why);
            None
        });
    let mut cluster_ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if cluster_ips.is_empty()
        && let Some(ip) = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
    {
        cluster_ips.push(ip);
    }
    ServiceInfo {
        cluster_ips,
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: u16::try_from(p.port).ok()?,
                })
            })
            .collect(),
        opaque_ports: annotation(&svc.metadata.annotations, OPAQUE_PORTS_ANNOTATION)
            .map(|l| opaque_ports(l, &[]))
            .unwrap_or_default(),
        external_name: spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName"),
        route_defaults,
        failure_accrual,
        bad_annotations,
    }
}

pub fn namespace_info(ns: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        default_policy: annotation(&ns.metadata.annotations, DEFAULT_INBOUND_POLICY_ANNOTATION)
            .map(str::to_string),
    }
}

/// The fields of an EndpointSlice that kinject reads, the same in
/// `discovery.k8s.io/v1` and `v1beta1` (Kubernetes 1.20 serves only the
/// latter), so one type reads both.
#[derive(Debug, Deserialize)]
pub struct EndpointSliceLite {
    #[serde(default)]
    pub metadata: SliceMeta,
    #[serde(default, rename = "addressType")]
    pub address_type: String,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub endpoints: Vec<LiteEndpoint>,
    #[serde(default)]
    pub ports: Option<Vec<LitePort>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SliceMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct LiteEndpoint {
    #[serde(default, deserialize_with = "null_is_empty")]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: Option<LiteConditions>,
    #[serde(default, rename = "targetRef")]
    pub target_ref: Option<LiteRef>,
    #[serde(default, rename = "nodeName")]
    pub node_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LiteConditions {
    pub ready: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct LiteRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct LitePort {
    pub name: Option<String>,
    pub port: Option<i32>,
    pub protocol: Option<String>,
}

/// The API server writes `"endpoints": null` for a Service with no
/// endpoints: read it as empty.
fn null_is_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The slice's facts, or `None` for a slice that belongs to no Service or
/// holds FQDN addresses.
pub fn slice_info(s: &EndpointSliceLite) -> Option<SliceInfo> {
    let service = s.metadata.labels.get(SERVICE_NAME_LABEL)?.clone();
    if s.address_type == "FQDN" {
        return None;
    }
    Some(SliceInfo {
        service,
        ports: s
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| {
                Some((
                    p.name.clone().filter(|n| !n.is_empty()),
                    u16::try_from(p.port?).ok()?,
                ))
            })
            .collect(),
        endpoints: s
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                ips: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                // Unknown readiness is ready (the API's own rule).
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                pod: e
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind == "Pod")
                    .map(|r| r.name.clone()),
                node: e.node_name.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ports_resolve_names_and_ranges() {
        let named = vec![("mysql".to_string(), 3306), ("http".to_string(), 80)];
        let r = opaque_ports("mysql, 5000-5002,bogus,99999,", &named);
        assert_eq!(
            r,
            vec![
                PortRange { lo: 3306, hi: 3306 },
                PortRange { lo: 5000, hi: 5002 }
            ]
        );
    }

    #[test]
    fn pod_facts() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "app",
                "labels": {"linkerd.io/control-plane-ns": "linkerd"},
                "annotations": {"config.linkerd.io/opaque-ports": "db",
                                "config.linkerd.io/default-inbound-policy": "deny",
                                "config.linkerd.io/proxy-admin-port": "5000"}},
            "spec": {"serviceAccountName": "web", "nodeName": "n1", "containers": [{
                "name": "app", "ports": [{"name": "db", "containerPort": 5432}, {"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz"}},
                "livenessProbe": {"httpGet": {"port": 8080}}}]},
            "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}
        }))
        .expect("pod");
        let info = pod_info(&pod, "linkerd");
        assert!(info.meshed);
        assert_eq!(info.service_account, "web");
        assert_eq!(info.ips, vec!["10.1.0.5".parse::<IpAddr>().expect("ip")]);
        assert!(info.is_opaque(5432) && !info.is_opaque(8080));
        assert_eq!(info.default_policy.as_deref(), Some("deny"));
        assert_eq!(info.admin_port, 5000);
        assert_eq!(info.inbound_port, DEFAULT_INBOUND_PORT);
        assert_eq!(
            info.probes,
            vec![
                HttpProbe {
                    port: 8080,
                    path: "/".into()
                },
                HttpProbe {
                    port: 8080,
                    path: "/healthz".into()
                },
            ]
        );
        assert!(
            !pod_info(&pod, "other").meshed,
            "another control plane's pod"
        );
    }

    #[test]
    fn slices_of_both_api_versions_read_alike() {
        for version in ["discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"] {
            let s: EndpointSliceLite = serde_json::from_value(serde_json::json!({
                "apiVersion": version, "kind": "EndpointSlice",
                "metadata": {"name": "web-abc", "namespace": "app",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.1.0.5"], "conditions": {"ready": true},
                     "targetRef": {"kind": "Pod", "name": "web-1"}, "topology": {"kubernetes.io/hostname": "n1"}},
                    {"addresses": ["10.1.0.6"], "conditions": {"ready": false}},
                    {"addresses": ["10.1.0.7"]}
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
            }))
            .expect("slice");
            let info = slice_info(&s).expect("a Service's slice");
            assert_eq!(info.service, "web");
            assert_eq!(
                info.ports,
                vec![(Some("http".into()), 8080)],
                "UDP is not proxied"
            );
            let ready: Vec<bool> = info.endpoints.iter().map(|e| e.ready).collect();
            assert_eq!(ready, vec![true, false, true]);
            assert_eq!(info.endpoints[0].pod.as_deref(), Some("web-1"));
        }
    }

    #[test]
    fn an_empty_slice_has_null_endpoints() {
        let s: EndpointSliceLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "namespace": "a", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": null, "ports": null
        }))
        .expect("the API server's empty slice");
        let info = slice_info(&s).expect("a Service's slice");
        assert!(info.endpoints.is_empty() && info.ports.is_empty());
    }

    #[test]
    fn slices_without_a_service_are_ignored() {
        let s: EndpointSliceLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "namespace": "a"}, "addressType": "IPv4"
        }))
        .expect("slice");
        assert!(slice_info(&s).is_none());
    }
}
