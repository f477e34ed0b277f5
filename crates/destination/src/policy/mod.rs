//! The proxy's policies, built from the index's views. Pure: views and
//! configuration in, protobuf messages out.
//!
//! Inbound (`InboundServerPolicies/WatchPort`): a port that a `Server`
//! selects gets that Server's protocol, authorizations and routes
//! (`inbound.rs`). Any other port: the pod's
//! `config.linkerd.io/default-inbound-policy`, else its namespace's, else the
//! cluster default, decides who may connect; the pod's opaque ports are
//! served opaque, every other port with protocol detection. The kubelet's
//! HTTP probes (and the proxy's own `/live` and `/ready` on the admin port)
//! get a route of their own that admits unauthenticated clients, so a strict
//! policy never fails a pod's probes.
//!
//! Outbound (`OutboundPolicies/Watch`): a Service's port gets the HTTPRoutes
//! whose parent it is (`outbound.rs`), else one default route per protocol
//! (HTTP/1, HTTP/2, opaque) to the Service itself, whose endpoints the proxy
//! resolves with `Destination/Get`.

mod http;
pub mod inbound;
pub mod outbound;

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use linkerd2_proxy_api::http_route as hr;
use linkerd2_proxy_api::inbound as ib;
use linkerd2_proxy_api::meta;
use linkerd2_proxy_api::outbound as ob;

use crate::index::{PodView, ServiceView};
use crate::model::ObjKey;
use crate::model::PodInfo;
use crate::route_annotations::{FailureAccrual, RouteAnnotations};
pub use kinject_mesh::settings::InboundPolicy;

/// What every policy depends on besides the cluster's objects.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub default_policy: InboundPolicy,
    /// `clusterNetworks`: who counts as "cluster" for cluster-* policies.
    pub cluster_networks: Vec<IpNet>,
    pub cluster_domain: String,
    /// The mesh's names: a ServiceAccount an authorization names is
    /// authorized by its identity.
    pub control_namespace: String,
    pub trust_domain: String,
    /// How long the proxy waits for a client's first bytes to detect HTTP.
    pub detect_timeout: Duration,
    /// The outbound queue: capacity and fail-fast timeout.
    pub queue_capacity: u32,
    pub failfast_timeout: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default_policy: InboundPolicy::AllUnauthenticated,
            cluster_networks: [
                "10.0.0.0/8",
                "100.64.0.0/10",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fd00::/8",
            ]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
            cluster_domain: "cluster.local".into(),
            control_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
            detect_timeout: Duration::from_secs(10),
            queue_capacity: 100,
            failfast_timeout: Duration::from_secs(3),
        }
    }
}

pub(crate) fn duration(d: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

pub(crate) fn default_meta(name: &str) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Default(name.to_string())),
    })
}

pub(crate) fn all_networks() -> Vec<IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

pub(crate) fn networks(nets: &[IpNet]) -> Vec<ib::Network> {
    nets.iter()
        .map(|n| ib::Network {
            net: Some((*n).into()),
            except: Vec::new(),
        })
        .collect()
}

pub(crate) fn unauthenticated() -> ib::Authn {
    ib::Authn {
        permit: Some(ib::authn::Permit::Unauthenticated(
            ib::authn::PermitUnauthenticated {},
        )),
    }
}

/// Any client with a mesh identity (an empty suffix matches every identity).
fn mesh_tls_any() -> ib::Authn {
    use ib::authn::permit_mesh_tls::{Clients, PermitClientIdentities};
    ib::Authn {
        permit: Some(ib::authn::Permit::MeshTls(ib::authn::PermitMeshTls {
            clients: Some(Clients::Identities(PermitClientIdentities {
                identities: Vec::new(),
                suffixes: vec![ib::IdentitySuffix { parts: Vec::new() }],
            })),
        })),
    }
}

/// The authorizations a default policy grants.
pub fn authorizations(policy: InboundPolicy, cfg: &PolicyConfig) -> Vec<ib::Authz> {
    let (nets, authn) = match policy {
        InboundPolicy::Deny => return Vec::new(),
        InboundPolicy::AllUnauthenticated | InboundPolicy::Audit => {
            (all_networks(), unauthenticated())
        }
        InboundPolicy::AllAuthenticated => (all_networks(), mesh_tls_any()),
        InboundPolicy::ClusterUnauthenticated => (cfg.cluster_networks.clone(), unauthenticated()),
        InboundPolicy::ClusterAuthenticated => (cfg.cluster_networks.clone(), mesh_tls_any()),
    };
    vec![ib::Authz {
        networks: networks(&nets),
        authentication: Some(authn),
        labels: HashMap::new(),
        metadata: default_meta(policy.name()),
    }]
}

pub(crate) fn path_prefix(p: &str) -> hr::HttpRouteMatch {
    hr::HttpRouteMatch {
        path: Some(hr::PathMatch {
            kind: Some(hr::path_match::Kind::Prefix(p.to_string())),
        }),
        ..Default::default()
    }
}

fn path_exact_get(p: &str) -> hr::HttpRouteMatch {
    hr::HttpRouteMatch {
        path: Some(hr::PathMatch {
            kind: Some(hr::path_match::Kind::Exact(p.to_string())),
        }),
        method: Some(linkerd2_proxy_api::http_types::HttpMethod {
            r#type: Some(
                linkerd2_proxy_api::http_types::http_method::Type::Registered(
                    linkerd2_proxy_api::http_types::http_method::Registered::Get as i32,
                ),
            ),
        }),
        ..Default::default()
    }
}

/// The policy that applies to a pod: its annotation, its namespace's, the
/// cluster's. An unknown name falls back to the next level (the injector
/// already warned about it).
pub fn effective_policy(view: &PodView, cfg: &PolicyConfig) -> InboundPolicy {
    view.pod
        .as_ref()
        .and_then(|p| p.default_policy.as_deref())
        .and_then(|p| p.parse().ok())
        .or_else(|| {
            view.namespace_default
                .as_deref()
                .and_then(|p| p.parse().ok())
        })
        .unwrap_or(cfg.default_policy)
}

/// The catch-all route every HTTP server needs (without one the proxy
/// answers 404): prefix `/`, the server's authorizations.
pub(crate) fn default_http_route() -> ib::HttpRoute {
    ib::HttpRoute {
        metadata: default_meta("default"),
        hosts: Vec::new(),
        authorizations: Vec::new(),
        rules: vec![ib::http_route::Rule {
            matches: vec![path_prefix("/")],
            filters: Vec::new(),
        }],
    }
}

/// The probes' route on `port`: the kubelet's own paths on this port, and
/// the proxy's health endpoints on its admin port; GET only, exact paths,
/// unauthenticated from anywhere. `None` when no probe uses the port.
pub(crate) fn probe_route(pod: &PodInfo, port: u16) -> Option<ib::HttpRoute> {
    let mut probe_paths: Vec<String> = pod
        .probes
        .iter()
        .filter(|p| p.port == port)
        .map(|p| p.path.clone())
        .collect();
    if port == pod.admin_port {
        probe_paths.extend(["/live".to_string(), "/ready".to_string()]);
    }
    probe_paths.sort();
    probe_paths.dedup();
    (!probe_paths.is_empty()).then(|| ib::HttpRoute {
        metadata: default_meta("probe"),
        hosts: Vec::new(),
        authorizations: vec![ib::Authz {
            networks: networks(&all_networks()),
            authentication: Some(unauthenticated()),
            labels: HashMap::new(),
            metadata: default_meta("probe"),
        }],
        rules: vec![ib::http_route::Rule {
            matches: probe_paths.iter().map(|p| path_exact_get(p)).collect(),
            filters: Vec::new(),
        }],
    })
}

/// The inbound server for `port` of the pod, or `None` while the pod is
/// unknown (the proxy keeps its configured default meanwhile).
pub fn inbound_server(view: &PodView, port: u16, cfg: &PolicyConfig) -> Option<ib::Server> {
    let pod = view.pod.as_ref()?;
    if let Some((name, server)) = view
        .policy
        .namespace(&view.namespace)
        .and_then(|ns| inbound::selecting_server(ns, pod, port))
    {
        return Some(inbound::explicit_server(view, pod, port, name, server, cfg));
    }
    let policy = effective_policy(view, cfg);
    let authz = authorizations(policy, cfg);
    let labels = HashMap::from([
        ("kind".to_string(), "default".to_string()),
        ("name".to_string(), policy.name().to_string()),
    ]);
    let protocol = if pod.is_opaque(port) {
        ib::proxy_protocol::Kind::Opaque(ib::proxy_protocol::Opaque {})
    } else {
        let mut routes = vec![default_http_route()];
        if policy != InboundPolicy::AllUnauthenticated {
            routes.extend(probe_route(pod, port));
        }
        ib::proxy_protocol::Kind::Detect(ib::proxy_protocol::Detect {
            timeout: duration(cfg.detect_timeout),
            http_routes: routes,
            http_local_rate_limit: None,
        })
    };
    Some(ib::Server {
        protocol: Some(ib::ProxyProtocol {
            kind: Some(protocol),
        }),
        server_ips: Vec::new(),
        authorizations: authz,
        labels,
    })
}

/// `<svc>.<ns>.svc.<domain>:<port>`: what `Destination/Get` resolves.
pub fn authority(svc: &ObjKey, port: u16, cfg: &PolicyConfig) -> String {
    format!(
        "{}.{}.svc.{}:{port}",
        svc.name, svc.namespace, cfg.cluster_domain
    )
}

pub(crate) fn service_meta(svc: &ObjKey, port: u16) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: "core".into(),
            kind: "Service".into(),
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            section: String::new(),
            port: u32::from(port),
        })),
    })
}

pub(crate) fn backend(svc: &ObjKey, port: u16, cfg: &PolicyConfig) -> ob::Backend {
    use ob::backend::{BalanceP2c, EndpointDiscovery, balance_p2c, endpoint_discovery};
    ob::Backend {
        metadata: service_meta(svc, port),
        queue: Some(ob::Queue {
            capacity: cfg.queue_capacity,
            failfast_timeout: duration(cfg.failfast_timeout),
        }),
        kind: Some(ob::backend::Kind::Balancer(BalanceP2c {
            discovery: Some(EndpointDiscovery {
                kind: Some(endpoint_discovery::Kind::Dst(
                    endpoint_discovery::DestinationGet {
                        path: authority(svc, port, cfg),
                    },
                )),
            }),
            load: Some(balance_p2c::Load::PeakEwma(balance_p2c::PeakEwma {
                default_rtt: duration(Duration::from_millis(30)),
                decay: duration(Duration::from_secs(10)),
            })),
        })),
    }
}

/// The default route: everything to the Service, with the Service's own
/// retry and timeout annotations (Linkerd's default route carries them too).
fn http_route(backend: &ob::Backend, service: &RouteAnnotations) -> ob::HttpRoute {
    use ob::http_route::{Distribution, RouteBackend, Rule, distribution};
    ob::HttpRoute {
        metadata: default_meta("http"),
        hosts: Vec::new(),
        rules: vec![Rule {
            matches: vec![path_prefix("/")],
            backends: Some(Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![RouteBackend {
                            backend: Some(backend.clone()),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            timeouts: service
                .has_timeouts()
                .then(|| outbound::annotated_timeouts(service)),
            retry: service.retry.as_ref().map(outbound::retry),
            ..Default::default()
        }],
    }
}

fn opaque_route(backend: &ob::Backend) -> ob::OpaqueRoute {
    use ob::opaque_route::{Distribution, RouteBackend, Rule, distribution};
    ob::OpaqueRoute {
        metadata: default_meta("opaq"),
        rules: vec![Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![RouteBackend {
                            backend: Some(backend.clone()),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
    }
}

/// Linkerd's consecutive-failures breaker as the proxy's failure accrual.
fn failure_accrual(f: &FailureAccrual) -> ob::FailureAccrual {
    use ob::failure_accrual::{ConsecutiveFailures, Kind};
    ob::FailureAccrual {
        kind: Some(Kind::ConsecutiveFailures(ConsecutiveFailures {
            max_failures: f.max_failures,
            backoff: Some(ob::ExponentialBackoff {
                min_backoff: duration(f.min_penalty),
                max_backoff: duration(f.max_penalty),
                // Thousandths, at most 100,000: exact in an f32.
                jitter_ratio: f.jitter_millis as f32 / 1000.0,
                respect_retry_after_hint: false,
            }),
        })),
        ejection: None,
    }
}

/// The outbound policy for `port` of a Service as a client in `client_ns`
/// sees it (its namespace's consumer routes), or `None` while the Service
/// does not exist.
pub fn outbound_policy(
    svc: &ObjKey,
    view: &ServiceView,
    port: u16,
    client_ns: Option<&str>,
    cfg: &PolicyConfig,
) -> Option<ob::OutboundPolicy> {
    let info = view.service.as_ref()?;
    let backend = backend(svc, port, cfg);
    let opaque = ob::proxy_protocol::Opaque {
        routes: vec![opaque_route(&backend)],
    };
    let kind = if info.is_opaque(port) {
        ob::proxy_protocol::Kind::Opaque(opaque)
    } else {
        let service = &info.route_defaults;
        let routes = outbound::routes(svc, view, port, client_ns, service, cfg)
            .unwrap_or_else(|| vec![http_route(&backend, service)]);
        let accrual = info.failure_accrual.as_ref().map(failure_accrual);
        ob::proxy_protocol::Kind::Detect(ob::proxy_protocol::Detect {
            timeout: duration(cfg.detect_timeout),
            opaque: Some(opaque),
            http1: Some(ob::proxy_protocol::Http1 {
                routes: routes.clone(),
                failure_accrual: accrual,
            }),
            http2: Some(ob::proxy_protocol::Http2 {
                routes,
                failure_accrual: accrual,
            }),
        })
    };
    Some(ob::OutboundPolicy {
        protocol: Some(ob::ProxyProtocol { kind: Some(kind) }),
        metadata: service_meta(svc, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HttpProbe, PodInfo, ServiceInfo, ServicePort};
    use kinject_mesh::parse::PortRange;
    use std::sync::Arc;

    fn pod(policy: Option<&str>) -> PodInfo {
        PodInfo {
            ips: vec!["10.1.0.5".parse().expect("ip")],
            service_account: "web".into(),
            meshed: true,
            default_policy: policy.map(str::to_string),
            opaque_ports: vec![PortRange { lo: 5432, hi: 5432 }],
            probes: vec![HttpProbe {
                port: 8080,
                path: "/healthz".into(),
            }],
            inbound_port: 4143,
            admin_port: 4191,
            ..PodInfo::default()
        }
    }

    fn view(p: Option<&str>, ns: Option<&str>) -> PodView {
        PodView {
            pod: Some(Arc::new(pod(p))),
            namespace_default: ns.map(str::to_string),
            ..PodView::default()
        }
    }

    fn authn_kind(s: &ib::Server) -> Vec<&'static str> {
        s.authorizations
            .iter()
            .map(
                |a| match a.authentication.as_ref().and_then(|a| a.permit.as_ref()) {
                    Some(ib::authn::Permit::Unauthenticated(_)) => "unauthenticated",
                    Some(ib::authn::Permit::MeshTls(_)) => "mtls",
                    None => "none",
                },
            )
            .collect()
    }

    #[test]
    fn the_pod_annotation_wins_then_the_namespace_then_the_cluster() {
        let cfg = PolicyConfig::default();
        assert_eq!(
            effective_policy(&view(Some("deny"), Some("all-authenticated")), &cfg),
            InboundPolicy::Deny
        );
        assert_eq!(
            effective_policy(&view(None, Some("all-authenticated")), &cfg),
            InboundPolicy::AllAuthenticated
        );
        assert_eq!(
            effective_policy(&view(None, None), &cfg),
            InboundPolicy::AllUnauthenticated
        );
        assert_eq!(
            effective_policy(&view(Some("bogus"), Some("also-bogus")), &cfg),
            InboundPolicy::AllUnauthenticated,
            "unknown names fall through"
        );
    }

    #[test]
    fn servers_by_policy() {
        let cfg = PolicyConfig::default();
        let s = inbound_server(&view(None, None), 8080, &cfg).expect("server");
        assert_eq!(authn_kind(&s), vec!["unauthenticated"]);
        assert_eq!(
            s.labels.get("name").map(String::as_str),
            Some("all-unauthenticated")
        );
        let nets = &s.authorizations[0].networks;
        assert_eq!(nets.len(), 2, "IPv4 and IPv6, everything");

        let s =
            inbound_server(&view(Some("cluster-authenticated"), None), 8080, &cfg).expect("server");
        assert_eq!(authn_kind(&s), vec!["mtls"]);
        assert_eq!(
            s.authorizations[0].networks.len(),
            cfg.cluster_networks.len()
        );

        let s = inbound_server(&view(Some("deny"), None), 8080, &cfg).expect("server");
        assert!(s.authorizations.is_empty());
    }

    fn routes(s: &ib::Server) -> Vec<(String, Vec<String>)> {
        let Some(ib::proxy_protocol::Kind::Detect(d)) =
            s.protocol.as_ref().and_then(|p| p.kind.as_ref())
        else {
            return Vec::new();
        };
        d.http_routes
            .iter()
            .map(|r| {
                let name = match r.metadata.as_ref().and_then(|m| m.kind.as_ref()) {
                    Some(meta::metadata::Kind::Default(n)) => n.clone(),
                    _ => String::new(),
                };
                let paths = r
                    .rules
                    .iter()
                    .flat_map(|rule| rule.matches.iter())
                    .filter_map(|m| match m.path.as_ref()?.kind.as_ref()? {
                        hr::path_match::Kind::Exact(p) | hr::path_match::Kind::Prefix(p) => {
                            Some(p.clone())
                        }
                        _ => None,
                    })
                    .collect();
                (name, paths)
            })
            .collect()
    }

    #[test]
    fn probes_get_through_a_strict_policy() {
        let cfg = PolicyConfig::default();
        let s = inbound_server(&view(Some("deny"), None), 8080, &cfg).expect("server");
        assert_eq!(
            routes(&s),
            vec![
                ("default".to_string(), vec!["/".to_string()]),
                ("probe".to_string(), vec!["/healthz".to_string()]),
            ]
        );
        let admin =
            inbound_server(&view(Some("all-authenticated"), None), 4191, &cfg).expect("server");
        assert_eq!(
            routes(&admin)[1],
            (
                "probe".to_string(),
                vec!["/live".to_string(), "/ready".to_string()]
            )
        );
        let open = inbound_server(&view(None, None), 4191, &cfg).expect("server");
        assert_eq!(
            routes(&open).len(),
            1,
            "nothing to add when all may connect"
        );
    }

    #[test]
    fn opaque_ports_are_opaque() {
        let cfg = PolicyConfig::default();
        let s = inbound_server(&view(None, None), 5432, &cfg).expect("server");
        assert!(matches!(
            s.protocol.and_then(|p| p.kind),
            Some(ib::proxy_protocol::Kind::Opaque(_))
        ));
    }

    #[test]
    fn an_unknown_pod_has_no_server_yet() {
        assert!(inbound_server(&PodView::default(), 80, &PolicyConfig::default()).is_none());
    }

    #[test]
    fn outbound_routes_to_the_service() {
        let cfg = PolicyConfig::default();
        let key = ObjKey::new("app", "web");
        let mut info = ServiceInfo {
            cluster_ips: vec!["10.96.0.10".parse().expect("ip")],
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: 80,
            }],
            ..ServiceInfo::default()
        };
        let v = ServiceView {
            service: Some(Arc::new(info.clone())),
            endpoints: Vec::new(),
            ..ServiceView::default()
        };
        let p = outbound_policy(&key, &v, 80, None, &cfg).expect("policy");
        let Some(ob::proxy_protocol::Kind::Detect(d)) = p.protocol.and_then(|p| p.kind) else {
            panic!("detect expected")
        };
        assert!(d.timeout.is_some());
        let route = &d.http1.expect("http1").routes[0];
        let Some(ob::http_route::distribution::Kind::FirstAvailable(fa)) = route.rules[0]
            .backends
            .as_ref()
            .and_then(|b| b.kind.as_ref())
        else {
            panic!("a backend")
        };
        let backend = fa.backends[0].backend.as_ref().expect("backend");
        assert!(backend.metadata.is_some() && backend.queue.is_some());
        let Some(ob::backend::Kind::Balancer(b)) = &backend.kind else {
            panic!("balancer")
        };
        let Some(ob::backend::endpoint_discovery::Kind::Dst(dst)) =
            b.discovery.as_ref().and_then(|d| d.kind.as_ref())
        else {
            panic!("dst")
        };
        assert_eq!(dst.path, "web.app.svc.cluster.local:80");
        assert!(b.load.is_some());

        info.opaque_ports = vec![PortRange { lo: 80, hi: 80 }];
        let v = ServiceView {
            service: Some(Arc::new(info)),
            endpoints: Vec::new(),
            ..ServiceView::default()
        };
        let p = outbound_policy(&key, &v, 80, None, &cfg).expect("policy");
        assert!(matches!(
            p.protocol.and_then(|p| p.kind),
            Some(ob::proxy_protocol::Kind::Opaque(_))
        ));
        assert!(outbound_policy(&key, &ServiceView::default(), 80, None, &cfg).is_none());
    }

    #[test]
    fn a_services_failure_accrual_reaches_http1_and_http2() {
        let key = ObjKey::new("app", "web");
        let accrual = |info: ServiceInfo| {
            let v = ServiceView {
                service: Some(Arc::new(info)),
                ..ServiceView::default()
            };
            let p = outbound_policy(&key, &v, 80, None, &PolicyConfig::default()).expect("policy");
            let Some(ob::proxy_protocol::Kind::Detect(d)) = p.protocol.and_then(|p| p.kind) else {
                panic!("detect expected")
            };
            let (h1, h2) = (d.http1.expect("http1"), d.http2.expect("http2"));
            assert_eq!(h1.failure_accrual, h2.failure_accrual);
            h1.failure_accrual
        };
        assert_eq!(
            accrual(ServiceInfo::default()),
            None,
            "no breaker unless asked"
        );
        let got = accrual(ServiceInfo {
            failure_accrual: Some(FailureAccrual {
                max_failures: 3,
                min_penalty: Duration::from_millis(250),
                max_penalty: Duration::from_secs(10),
                jitter_millis: 250,
            }),
            ..ServiceInfo::default()
        });
        let Some(ob::failure_accrual::Kind::ConsecutiveFailures(c)) = got.and_then(|f| f.kind)
        else {
            panic!("consecutive failures")
        };
        assert_eq!(c.max_failures, 3);
        let b = c.backoff.expect("backoff");
        assert_eq!(
            b.min_backoff,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 250_000_000
            })
        );
        assert_eq!(
            b.max_backoff,
            Some(prost_types::Duration {
                seconds: 10,
                nanos: 0
            })
        );
        assert_eq!(b.jitter_ratio, 0.25);
    }

    #[test]
    fn the_default_route_carries_the_services_retry_and_timeouts() {
        let key = ObjKey::new("app", "web");
        let mut info = ServiceInfo::default();
        let default_rule = |info: &ServiceInfo| {
            let v = ServiceView {
                service: Some(Arc::new(info.clone())),
                ..ServiceView::default()
            };
            let p = outbound_policy(&key, &v, 80, None, &PolicyConfig::default()).expect("policy");
            let Some(ob::proxy_protocol::Kind::Detect(d)) = p.protocol.and_then(|p| p.kind) else {
                panic!("detect expected")
            };
            d.http2.expect("http2").routes[0].rules[0].clone()
        };
        let plain = default_rule(&info);
        assert_eq!((plain.retry, plain.timeouts), (None, None));
        info.route_defaults = crate::route_annotations::route_annotations(
            &[
                ("retry.linkerd.io/http", "503"),
                ("retry.linkerd.io/limit", "4"),
                ("timeout.linkerd.io/idle", "1m"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .expect("valid");
        let annotated = default_rule(&info);
        assert_eq!(annotated.retry.map(|r| r.max_retries), Some(4));
        let t = annotated.timeouts.expect("timeouts");
        assert_eq!((t.request, t.response), (None, None));
        assert_eq!(
            t.idle,
            Some(prost_types::Duration {
                seconds: 60,
                nanos: 0
            })
        );
    }
}
