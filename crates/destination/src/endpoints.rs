//! `Destination/Get` and `GetProfile` answers, built from the index's views.
//! Pure: a view in, the updates that bring the proxy from what it was last
//! told to what is true now out.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use kinject_mesh::parse::PortRange;
use linkerd2_proxy_api::destination as d;
use linkerd2_proxy_api::net::TcpAddress;

use crate::index::{EndpointView, ServiceView};
use crate::model::{ObjKey, PodInfo};

/// Linkerd's endpoint weight.
const WEIGHT: u32 = 10_000;

/// Names that make up identities and authorities.
#[derive(Clone, Debug)]
pub struct Names {
    pub control_namespace: String,
    pub trust_domain: String,
    pub cluster_domain: String,
}

impl Names {
    /// A meshed pod's TLS identity, as Certify issued it.
    pub fn identity(&self, namespace: &str, pod: &PodInfo) -> String {
        kinject_mesh::names::identity(
            &pod.service_account,
            namespace,
            &self.control_namespace,
            &self.trust_domain,
        )
    }
}

/// What a `GetDestination.path` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `<svc>.<ns>.svc.<cluster domain>:<port>`.
    Service(ObjKey, u16),
    /// An `ip:port`.
    Addr(SocketAddr),
}

/// Parses the path the proxy sends; the error says why it is not one.
pub fn parse_path(path: &str, cluster_domain: &str) -> Result<Target, String> {
    if let Ok(addr) = path.parse::<SocketAddr>() {
        return Ok(Target::Addr(addr));
    }
    let (host, port) = path
        .rsplit_once(':')
        .ok_or_else(|| format!("{path:?} has no port (expected <name>:<port>)"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{path:?} has no valid port"))?;
    let host = host.trim_end_matches('.');
    let suffix = format!(".svc.{}", cluster_domain.trim_end_matches('.'));
    let Some(svc_ns) = host.strip_suffix(&suffix) else {
        return Err(format!(
            "{host:?} is not a Service name in the cluster (<svc>.<ns>{suffix})"
        ));
    };
    match svc_ns.split('.').collect::<Vec<_>>()[..] {
        [svc, ns] if !svc.is_empty() && !ns.is_empty() => {
            Ok(Target::Service(ObjKey::new(ns, svc), port))
        }
        _ => Err(format!(
            "{host:?} is not a Service name in the cluster (<svc>.<ns>{suffix})"
        )),
    }
}

fn tcp(addr: SocketAddr) -> TcpAddress {
    TcpAddress {
        ip: Some(addr.ip().into()),
        port: u32::from(addr.port()),
    }
}

/// One endpoint as the proxy wants it: with its identity and the h2 hint
/// when it is meshed (opaque transport on its opaque ports).
pub fn weighted_addr(
    addr: SocketAddr,
    namespace: &str,
    pod: Option<(&str, &PodInfo)>,
    names: &Names,
) -> d::WeightedAddr {
    let mut labels = HashMap::from([("namespace".to_string(), namespace.to_string())]);
    let mut tls_identity = None;
    let mut protocol_hint = None;
    if let Some((name, info)) = pod {
        labels.insert("pod".into(), name.to_string());
        labels.insert("serviceaccount".into(), info.service_account.clone());
        if info.meshed {
            let id = d::tls_identity::DnsLikeIdentity {
                name: names.identity(namespace, info),
            };
            tls_identity = Some(d::TlsIdentity {
                server_name: Some(id.clone()),
                strategy: Some(d::tls_identity::Strategy::DnsLikeIdentity(id)),
            });
            protocol_hint = Some(if info.is_opaque(addr.port()) {
                d::ProtocolHint {
                    protocol: Some(d::protocol_hint::Protocol::Opaque(
                        d::protocol_hint::Opaque {},
                    )),
                    opaque_transport: Some(d::protocol_hint::OpaqueTransport {
                        inbound_port: u32::from(info.inbound_port),
                    }),
                }
            } else {
                d::ProtocolHint {
                    protocol: Some(d::protocol_hint::Protocol::H2(d::protocol_hint::H2 {})),
                    opaque_transport: None,
                }
            });
        }
    }
    d::WeightedAddr {
        addr: Some(tcp(addr)),
        weight: WEIGHT,
        metric_labels: labels,
        tls_identity,
        protocol_hint,
        ..Default::default()
    }
}

/// The endpoints of a Service's `port`: each ready address with the slice
/// port that has the Service port's name.
pub fn service_endpoints(
    svc: &ObjKey,
    view: &ServiceView,
    port: u16,
    names: &Names,
) -> BTreeMap<SocketAddr, d::WeightedAddr> {
    let mut out = BTreeMap::new();
    let Some(info) = view.service.as_ref() else {
        return out;
    };
    let Some(sp) = info.port(port) else {
        return out;
    };
    for ep in &view.endpoints {
        let Some(target) = target_port(ep, sp.name.as_deref()) else {
            continue;
        };
        let addr = SocketAddr::new(ep.ip, target);
        let pod = ep.pod.as_ref().map(|(n, i)| (n.as_str(), &**i));
        out.insert(addr, weighted_addr(addr, &svc.namespace, pod, names));
    }
    out
}

fn target_port(ep: &EndpointView, name: Option<&str>) -> Option<u16> {
    ep.ports
        .iter()
        .find(|(n, _)| n.as_deref() == name)
        .map(|(_, p)| *p)
}

/// What a `Destination/Get` stream has told its proxy, and the updates that
/// bring it to a new state. The first answer is always `add` or
/// `no_endpoints`.
#[derive(Debug, Default)]
pub struct EndpointStream {
    /// Each address told, with a fingerprint of what was told about it: a
    /// stream holds 8 bytes per endpoint instead of the whole message (a
    /// thousand streams on one Service add up).
    told: Option<BTreeMap<SocketAddr, u64>>,
    told_exists: Option<bool>,
}

/// A fingerprint of what the proxy is told about an endpoint. Labels are
/// hashed in order (a `HashMap`'s own order varies between instances).
fn fingerprint(w: &d::WeightedAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same value always gives the same hash.
    let mut h = std::hash::DefaultHasher::new();
    w.weight.hash(&mut h);
    let mut labels: Vec<_> = w.metric_labels.iter().collect();
    labels.sort();
    labels.hash(&mut h);
    w.tls_identity.hash(&mut h);
    format!(
        "{:?}|{:?}|{:?}",
        w.protocol_hint, w.authority_override, w.resource_ref
    )
    .hash(&mut h);
    h.finish()
}

fn add(addrs: Vec<d::WeightedAddr>) -> d::Update {
    d::Update {
        update: Some(d::update::Update::Add(d::WeightedAddrSet {
            addrs,
            metric_labels: HashMap::new(),
        })),
    }
}

fn no_endpoints(exists: bool) -> d::Update {
    d::Update {
        update: Some(d::update::Update::NoEndpoints(d::NoEndpoints { exists })),
    }
}

impl EndpointStream {
    pub fn next(
        &mut self,
        now: BTreeMap<SocketAddr, d::WeightedAddr>,
        exists: bool,
    ) -> Vec<d::Update> {
        let mut out = Vec::new();
        let told = self.told.take().unwrap_or_default();
        let removed: Vec<TcpAddress> = told
            .keys()
            .filter(|a| !now.contains_key(a))
            .map(|a| tcp(*a))
            .collect();
        if !removed.is_empty() {
            out.push(d::Update {
                update: Some(d::update::Update::Remove(d::AddrSet { addrs: removed })),
            });
        }
        // New endpoints, and known ones whose metadata changed (identity,
        // hint): `add` replaces what the proxy holds for that address.
        let added: Vec<d::WeightedAddr> = now
            .iter()
            .filter(|(a, w)| told.get(a) != Some(&fingerprint(w)))
            .map(|(_, w)| w.clone())
            .collect();
        if !added.is_empty() {
            out.push(add(added));
        }
        if now.is_empty() && (self.told_exists != Some(exists) || !out.is_empty()) {
            out.push(no_endpoints(exists));
        }
        self.told = Some(now.iter().map(|(a, w)| (*a, fingerprint(w))).collect());
        self.told_exists = Some(exists);
        out
    }
}

/// Linkerd's default retry budget.
fn retry_budget() -> d::RetryBudget {
    d::RetryBudget {
        retry_ratio: 0.2,
        min_retries_per_second: 10,
        ttl: prost_types::Duration::try_from(std::time::Duration::from_secs(10)).ok(),
    }
}

/// A Service's profile: its name, and whether the port is opaque.
pub fn service_profile(
    svc: &ObjKey,
    view: &ServiceView,
    port: u16,
    names: &Names,
) -> d::DestinationProfile {
    d::DestinationProfile {
        fully_qualified_name: format!(
            "{}.{}.svc.{}",
            svc.name, svc.namespace, names.cluster_domain
        ),
        opaque_protocol: view.service.as_ref().is_some_and(|s| s.is_opaque(port)),
        retry_budget: Some(retry_budget()),
        ..Default::default()
    }
}

/// An address's profile: the endpoint itself (with its identity when it is
/// a meshed pod), opaque when the pod (or, for addresses no pod has, the
/// cluster default) says so.
pub fn address_profile(
    addr: SocketAddr,
    pod: Option<(&ObjKey, &PodInfo)>,
    default_opaque: &[PortRange],
    names: &Names,
) -> d::DestinationProfile {
    let (endpoint, opaque) = match pod {
        Some((key, info)) => (
            weighted_addr(addr, &key.namespace, Some((&key.name, info)), names),
            info.is_opaque(addr.port()),
        ),
        None => (
            d::WeightedAddr {
                addr: Some(tcp(addr)),
                weight: WEIGHT,
                ..Default::default()
            },
            default_opaque.iter().any(|r| r.contains(addr.port())),
        ),
    };
    d::DestinationProfile {
        opaque_protocol: opaque,
        retry_budget: Some(retry_budget()),
        endpoint: Some(endpoint),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServiceInfo, ServicePort};
    use std::sync::Arc;

    fn names() -> Names {
        Names {
            control_namespace: "linkerd".into(),
            trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("web.app.svc.cluster.local:80", "cluster.local"),
            Ok(Target::Service(ObjKey::new("app", "web"), 80))
        );
        assert_eq!(
            parse_path("web.app.svc.cluster.local.:80", "cluster.local"),
            Ok(Target::Service(ObjKey::new("app", "web"), 80))
        );
        assert_eq!(
            parse_path("10.1.2.3:8080", "cluster.local"),
            Ok(Target::Addr("10.1.2.3:8080".parse().expect("addr")))
        );
        assert_eq!(
            parse_path("[fd00::1]:80", "cluster.local"),
            Ok(Target::Addr("[fd00::1]:80".parse().expect("addr")))
        );
        for bad in [
            "web.app.svc.cluster.local",
            "web.app.svc.cluster.local:0",
            "web.app.svc.cluster.local:http",
            "example.com:443",
            "a.b.web.app.svc.cluster.local:80",
            ".app.svc.cluster.local:80",
            "",
        ] {
            assert!(parse_path(bad, "cluster.local").is_err(), "{bad}");
        }
    }

    fn pod(meshed: bool) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            service_account: "web".into(),
            meshed,
            inbound_port: 4143,
            opaque_ports: vec![PortRange { lo: 5432, hi: 5432 }],
            ..PodInfo::default()
        })
    }

    fn view(ips: &[(&str, bool)]) -> ServiceView {
        ServiceView {
            service: Some(Arc::new(ServiceInfo {
                ports: vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                }],
                ..ServiceInfo::default()
            })),
            endpoints: ips
                .iter()
                .map(|(ip, meshed)| EndpointView {
                    ip: ip.parse().expect("ip"),
                    ports: Arc::new(vec![(Some("http".into()), 8080)]),
                    pod: Some((format!("pod-{ip}"), pod(*meshed))),
                    node: None,
                })
                .collect(),
            ..ServiceView::default()
        }
    }

    fn kinds(u: &[d::Update]) -> Vec<String> {
        u.iter()
            .map(|u| match u.update.as_ref() {
                Some(d::update::Update::Add(s)) => format!("add {}", s.addrs.len()),
                Some(d::update::Update::Remove(s)) => format!("remove {}", s.addrs.len()),
                Some(d::update::Update::NoEndpoints(n)) => format!("none exists={}", n.exists),
                None => "empty".into(),
            })
            .collect()
    }

    #[test]
    fn endpoints_carry_identity_and_hint_when_meshed() {
        let key = ObjKey::new("app", "web");
        let eps = service_endpoints(
            &key,
            &view(&[("10.1.0.1", true), ("10.1.0.2", false)]),
            80,
            &names(),
        );
        let meshed = &eps[&"10.1.0.1:8080".parse().expect("addr")];
        let Some(d::tls_identity::Strategy::DnsLikeIdentity(id)) = meshed
            .tls_identity
            .as_ref()
            .and_then(|t| t.strategy.as_ref())
        else {
            panic!("identity")
        };
        assert_eq!(
            id.name,
            "web.app.serviceaccount.identity.linkerd.cluster.local"
        );
        assert!(matches!(
            meshed
                .protocol_hint
                .as_ref()
                .and_then(|h| h.protocol.as_ref()),
            Some(d::protocol_hint::Protocol::H2(_))
        ));
        let plain = &eps[&"10.1.0.2:8080".parse().expect("addr")];
        assert!(plain.tls_identity.is_none() && plain.protocol_hint.is_none());
        assert!(
            service_endpoints(&key, &view(&[("10.1.0.1", true)]), 81, &names()).is_empty(),
            "not a port of the Service"
        );
    }

    #[test]
    fn opaque_ports_get_opaque_transport() {
        let addr: SocketAddr = "10.1.0.1:5432".parse().expect("addr");
        let w = weighted_addr(addr, "app", Some(("p", &pod(true))), &names());
        let hint = w.protocol_hint.expect("hint");
        assert_eq!(hint.opaque_transport.map(|o| o.inbound_port), Some(4143));
    }

    #[test]
    fn the_stream_starts_with_add_or_no_endpoints_then_sends_differences() {
        let key = ObjKey::new("app", "web");
        let n = names();
        let mut s = EndpointStream::default();
        assert_eq!(
            kinds(&s.next(BTreeMap::new(), false)),
            vec!["none exists=false"]
        );
        assert!(s.next(BTreeMap::new(), false).is_empty(), "nothing new");
        assert_eq!(
            kinds(&s.next(BTreeMap::new(), true)),
            vec!["none exists=true"]
        );
        let two = service_endpoints(
            &key,
            &view(&[("10.1.0.1", true), ("10.1.0.2", true)]),
            80,
            &n,
        );
        assert_eq!(kinds(&s.next(two.clone(), true)), vec!["add 2"]);
        assert!(s.next(two, true).is_empty());
        let one = service_endpoints(
            &key,
            &view(&[("10.1.0.2", true), ("10.1.0.3", false)]),
            80,
            &n,
        );
        assert_eq!(kinds(&s.next(one, true)), vec!["remove 1", "add 1"]);
        assert_eq!(
            kinds(&s.next(BTreeMap::new(), true)),
            vec!["remove 2", "none exists=true"]
        );

        let mut first = EndpointStream::default();
        let one = service_endpoints(&key, &view(&[("10.1.0.1", true)]), 80, &n);
        assert_eq!(
            kinds(&first.next(one, true)),
            vec!["add 1"],
            "a first answer is add"
        );
    }

    #[test]
    fn a_changed_identity_is_sent_again() {
        let key = ObjKey::new("app", "web");
        let n = names();
        let mut s = EndpointStream::default();
        s.next(
            service_endpoints(&key, &view(&[("10.1.0.1", false)]), 80, &n),
            true,
        );
        let u = s.next(
            service_endpoints(&key, &view(&[("10.1.0.1", true)]), 80, &n),
            true,
        );
        assert_eq!(kinds(&u), vec!["add 1"]);
    }

    #[test]
    fn profiles() {
        let n = names();
        let addr: SocketAddr = "10.1.0.1:5432".parse().expect("addr");
        let key = ObjKey::new("app", "db-0");
        let p = address_profile(addr, Some((&key, &pod(true))), &[], &n);
        assert!(p.opaque_protocol);
        assert!(p.endpoint.and_then(|e| e.tls_identity).is_some());
        let p = address_profile(
            "192.0.2.1:3306".parse().expect("addr"),
            None,
            &[PortRange { lo: 3306, hi: 3306 }],
            &n,
        );
        assert!(p.opaque_protocol);
        assert!(p.endpoint.expect("endpoint").tls_identity.is_none());
        let svc = service_profile(&ObjKey::new("app", "web"), &view(&[]), 80, &n);
        assert_eq!(svc.fully_qualified_name, "web.app.svc.cluster.local");
        assert!(!svc.opaque_protocol);
    }
}
