//! The proxy's discovery APIs over gRPC: `Destination` (Get, GetProfile),
//! `InboundServerPolicies` (GetPort, WatchPort) and `OutboundPolicies` (Get,
//! Watch). Every stream holds one [`Subscription`](crate::index::Subscription)
//! and is woken only when its own Service or pod changes; when the client
//! goes away tonic drops the stream, and with it the subscription.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use linkerd2_proxy_api::destination as d;
use linkerd2_proxy_api::inbound as ib;
use linkerd2_proxy_api::outbound as ob;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::Config;
use crate::endpoints::{self, EndpointStream, Target};
use crate::index::{Index, Lookup, Subscription};
use crate::model::ObjKey;
use crate::policy;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `get`, `get_profile`, `inbound`, `outbound`.
    pub api: &'static str,
}

/// Streams opened and open, per API.
#[derive(Clone, Debug, Default)]
pub struct StreamMetrics {
    pub opened: Family<ApiLabels, Counter>,
    pub open: Family<ApiLabels, Gauge>,
    pub refused: Family<ApiLabels, Counter>,
}

impl StreamMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register("streams_opened", "Streams opened, by API", m.opened.clone());
        reg.register("streams_open", "Streams open now, by API", m.open.clone());
        reg.register(
            "requests_refused",
            "Requests answered with an error status, by API",
            m.refused.clone(),
        );
        m
    }

    fn track(&self, api: &'static str) -> OpenStream {
        let labels = ApiLabels { api };
        self.opened.get_or_create(&labels).inc();
        let gauge = self.open.get_or_create(&labels).clone();
        gauge.inc();
        OpenStream(gauge)
    }

    fn refuse(&self, api: &'static str, s: Status) -> Status {
        self.refused.get_or_create(&ApiLabels { api }).inc();
        debug!(api, code = ?s.code(), message = s.message(), "refused");
        s
    }
}

/// Counts a stream as open until it is dropped.
struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Everything the services share.
#[derive(Clone)]
pub struct Shared {
    pub index: Index,
    pub cfg: Arc<Config>,
    pub metrics: StreamMetrics,
}

/// A stream that, each time its subscription wakes, computes the messages to
/// send (none when nothing the client sees changed). It ends only when the
/// client goes away (tonic drops it) or the index does.
fn watch_stream<T, V, F>(sub: Subscription<V>, track: OpenStream, step: F) -> BoxStream<T>
where
    T: Send + 'static,
    V: Send + Sync + 'static,
    F: FnMut(&V) -> Vec<T> + Send + 'static,
{
    let state = (sub, step, VecDeque::<T>::new(), false, track);
    Box::pin(futures::stream::unfold(
        state,
        |(mut sub, mut step, mut pending, mut started, track)| async move {
            loop {
                if let Some(m) = pending.pop_front() {
                    return Some((Ok(m), (sub, step, pending, started, track)));
                }
                if started && !sub.changed().await {
                    return None;
                }
                started = true;
                let view = sub.current();
                pending.extend(step(&view));
            }
        },
    ))
}

/// One message, then the stream stays open (the proxy treats a closed
/// stream as a failure and asks again).
fn once_then_hold<T: Send + 'static>(msg: T, track: OpenStream) -> BoxStream<T> {
    Box::pin(
        futures::stream::once(async move { Ok(msg) })
            .chain(futures::stream::unfold(track, |_track| {
                futures::future::pending::<Option<(Result<T, Status>, OpenStream)>>()
            })),
    )
}

/// Sends `next` only when it differs from what was sent last.
fn changed_only<T: PartialEq + Clone>(last: &mut Option<T>, next: Option<T>) -> Vec<T> {
    match next {
        Some(n) if last.as_ref() != Some(&n) => {
            *last = Some(n.clone());
            vec![n]
        }
        _ => Vec::new(),
    }
}

// --- Destination ---

pub struct DestinationService(pub Shared);

#[tonic::async_trait]
impl d::destination_server::Destination for DestinationService {
    type GetStream = BoxStream<d::Update>;
    type GetProfileStream = BoxStream<d::DestinationProfile>;

    async fn get(
        &self,
        request: Request<d::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let sh = &self.0;
        let req = request.into_inner();
        let target = endpoints::parse_path(&req.path, &sh.cfg.names.cluster_domain)
            .map_err(|e| sh.metrics.refuse("get", Status::invalid_argument(e)))?;
        match target {
            Target::Service(svc, port) => {
                debug!(%svc, port, "Get");
                let sub = sh.index.subscribe_service(&svc);
                let names = sh.cfg.names.clone();
                let mut told = EndpointStream::default();
                Ok(Response::new(watch_stream(
                    sub,
                    sh.metrics.track("get"),
                    move |view| {
                        let now = endpoints::service_endpoints(&svc, view, port, &names);
                        told.next(now, view.service.is_some())
                    },
                )))
            }
            Target::Addr(addr) => {
                // An address: the pod behind it, or the address itself.
                let key = match sh.index.lookup_ip(addr.ip()) {
                    Lookup::Pod(k) => k,
                    Lookup::Service(svc) => {
                        return Err(sh.metrics.refuse(
                            "get",
                            Status::invalid_argument(format!(
                                "{addr} is the cluster IP of Service {svc}: ask for its name"
                            )),
                        ));
                    }
                    Lookup::Unknown => {
                        let w = endpoints::weighted_addr(addr, "", None, &sh.cfg.names);
                        return Ok(Response::new(once_then_hold(
                            d::Update {
                                update: Some(d::update::Update::Add(d::WeightedAddrSet {
                                    addrs: vec![w],
                                    metric_labels: Default::default(),
                                })),
                            },
                            sh.metrics.track("get"),
                        )));
                    }
                };
                let sub = sh.index.subscribe_pod(&key);
                let names = sh.cfg.names.clone();
                let mut told = EndpointStream::default();
                Ok(Response::new(watch_stream(
                    sub,
                    sh.metrics.track("get"),
                    move |view| {
                        let mut now = std::collections::BTreeMap::new();
                        if let Some(pod) = view.pod.as_ref().filter(|p| p.ips.contains(&addr.ip()))
                        {
                            now.insert(
                                addr,
                                endpoints::weighted_addr(
                                    addr,
                                    &key.namespace,
                                    Some((&key.name, pod)),
                                    &names,
                                ),
                            );
                        }
                        told.next(now, true)
                    },
                )))
            }
        }
    }

    async fn get_profile(
        &self,
        request: Request<d::GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let sh = &self.0;
        let req = request.into_inner();
        let target =
            endpoints::parse_path(&req.path, &sh.cfg.names.cluster_domain).map_err(|e| {
                sh.metrics
                    .refuse("get_profile", Status::invalid_argument(e))
            })?;
        let (svc, port) = match target {
            Target::Service(svc, port) => (svc, port),
            Target::Addr(addr) => match sh.index.lookup_ip(addr.ip()) {
                Lookup::Service(svc) => (svc, addr.port()),
                Lookup::Pod(key) => {
                    let sub = sh.index.subscribe_pod(&key);
                    let names = sh.cfg.names.clone();
                    let opaque = sh.cfg.default_opaque_ports.clone();
                    let mut last = None;
                    return Ok(Response::new(watch_stream(
                        sub,
                        sh.metrics.track("get_profile"),
                        move |view| {
                            let pod = view.pod.as_deref().filter(|p| p.ips.contains(&addr.ip()));
                            let p = endpoints::address_profile(
                                addr,
                                pod.map(|p| (&key, p)),
                                &opaque,
                                &names,
                            );
                            changed_only(&mut last, Some(p))
                        },
                    )));
                }
                Lookup::Unknown => {
                    let p = endpoints::address_profile(
                        addr,
                        None,
                        &sh.cfg.default_opaque_ports,
                        &sh.cfg.names,
                    );
                    return Ok(Response::new(once_then_hold(
                        p,
                        sh.metrics.track("get_profile"),
                    )));
                }
            },
        };
        let sub = sh.index.subscribe_service(&svc);
        let names = sh.cfg.names.clone();
        let mut last = None;
        Ok(Response::new(watch_stream(
            sub,
            sh.metrics.track("get_profile"),
            move |view| {
                changed_only(
                    &mut last,
                    Some(endpoints::service_profile(&svc, view, port, &names)),
                )
            },
        )))
    }
}

// --- Inbound policy ---

/// The pod a proxy names in `PortSpec.workload`: the JSON the injector
/// renders (`{"ns":"…","pod":"…"}`), or the legacy `ns:pod`.
pub fn parse_workload(w: &str) -> Result<ObjKey, String> {
    #[derive(serde::Deserialize)]
    struct Workload {
        ns: String,
        pod: String,
    }
    let w = w.trim();
    if w.starts_with('{') {
        let parsed: Workload = serde_json::from_str(w)
            .map_err(|e| format!("the workload {w:?} is not {{\"ns\":…,\"pod\":…}}: {e}"))?;
        if parsed.ns.is_empty() || parsed.pod.is_empty() {
            return Err(format!("the workload {w:?} names no pod"));
        }
        return Ok(ObjKey::new(parsed.ns, parsed.pod));
    }
    match w.split_once(':') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains(':') => {
            Ok(ObjKey::new(ns, pod))
        }
        _ => Err(format!(
            "the workload {w:?} is neither {{\"ns\":…,\"pod\":…}} nor <ns>:<pod>"
        )),
    }
}

/// The client's namespace from `TrafficSpec.source_workload` (the JSON the
/// injector renders, with `pod` or `external_workload`, or the legacy
/// `ns:pod`): its consumer routes apply. Empty names none (producer routes
/// only); anything else that does not parse is refused, as Linkerd does.
pub fn source_namespace(w: &str) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Source {
        ns: String,
    }
    let w = w.trim();
    if w.is_empty() {
        return Ok(None);
    }
    if w.starts_with('{') {
        let parsed: Source = serde_json::from_str(w)
            .map_err(|e| format!("the source workload {w:?} is not {{\"ns\":…}}: {e}"))?;
        if parsed.ns.is_empty() {
            return Err(format!("the source workload {w:?} names no namespace"));
        }
        return Ok(Some(parsed.ns));
    }
    parse_workload(w).map(|k| Some(k.namespace))
}

fn port_of(p: u32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{p} is not a port"))
}

pub struct InboundService(pub Shared);

impl InboundService {
    /// The pod and port a `PortSpec` names, or InvalidArgument.
    fn port_spec(&self, spec: ib::PortSpec) -> Result<(ObjKey, u16), Status> {
        let refuse = |e: String| {
            self.0
                .metrics
                .refuse("inbound", Status::invalid_argument(e))
        };
        Ok((
            parse_workload(&spec.workload).map_err(refuse)?,
            port_of(spec.port).map_err(refuse)?,
        ))
    }
}

#[tonic::async_trait]
impl ib::inbound_server_policies_server::InboundServerPolicies for InboundService {
    async fn get_port(
        &self,
        request: Request<ib::PortSpec>,
    ) -> Result<Response<ib::Server>, Status> {
        let sh = &self.0;
        let (key, port) = self.port_spec(request.into_inner())?;
        let view = sh.index.pod_view(&key);
        policy::inbound_server(&view, port, &sh.cfg.policy)
            .map(Response::new)
            .ok_or_else(|| {
                sh.metrics
                    .refuse("inbound", Status::not_found(format!("no pod {key}")))
            })
    }

    type WatchPortStream = BoxStream<ib::Server>;

    async fn watch_port(
        &self,
        request: Request<ib::PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let sh = &self.0;
        let (key, port) = self.port_spec(request.into_inner())?;
        debug!(pod = %key, port, "WatchPort");
        let sub = sh.index.subscribe_pod(&key);
        let cfg = sh.cfg.clone();
        let mut last = None;
        Ok(Response::new(watch_stream(
            sub,
            sh.metrics.track("inbound"),
            move |view| changed_only(&mut last, policy::inbound_server(view, port, &cfg.policy)),
        )))
    }
}

// --- Outbound policy ---

pub struct OutboundService(pub Shared);

impl OutboundService {
    /// The client's namespace (for its consumer routes), or InvalidArgument.
    fn client_namespace(&self, spec: &ob::TrafficSpec) -> Result<Option<String>, Status> {
        source_namespace(&spec.source_workload).map_err(|e| {
            self.0
                .metrics
                .refuse("outbound", Status::invalid_argument(e))
        })
    }

    /// The Service a target names: its cluster IP, or its name.
    fn service(&self, spec: &ob::TrafficSpec) -> Result<(ObjKey, u16), Status> {
        let sh = &self.0;
        let not_found = |what: String| {
            sh.metrics.refuse(
                "outbound",
                Status::not_found(format!("{what} is not a Service")),
            )
        };
        match spec.target.as_ref() {
            Some(ob::traffic_spec::Target::Addr(a)) => {
                let ip =
                    a.ip.and_then(|ip| std::net::IpAddr::try_from(ip).ok())
                        .ok_or_else(|| {
                            sh.metrics
                                .refuse("outbound", Status::invalid_argument("no target IP"))
                        })?;
                let port = port_of(a.port)
                    .map_err(|e| sh.metrics.refuse("outbound", Status::invalid_argument(e)))?;
                match sh.index.lookup_ip(ip) {
                    Lookup::Service(svc) => Ok((svc, port)),
                    _ => Err(not_found(SocketAddr::new(ip, port).to_string())),
                }
            }
            Some(ob::traffic_spec::Target::Authority(a)) => {
                match endpoints::parse_path(a, &sh.cfg.names.cluster_domain) {
                    Ok(Target::Service(svc, port)) if sh.index.service_exists(&svc) => {
                        Ok((svc, port))
                    }
                    _ => Err(not_found(a.clone())),
                }
            }
            None => Err(sh
                .metrics
                .refuse("outbound", Status::invalid_argument("no target"))),
        }
    }
}

#[tonic::async_trait]
impl ob::outbound_policies_server::OutboundPolicies for OutboundService {
    async fn get(
        &self,
        request: Request<ob::TrafficSpec>,
    ) -> Result<Response<ob::OutboundPolicy>, Status> {
        let (svc, port) = self.service(request.get_ref())?;
        let client_ns = self.client_namespace(request.get_ref())?;
        let view = self.0.index.service_view(&svc);
        policy::outbound_policy(&svc, &view, port, client_ns.as_deref(), &self.0.cfg.policy)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("Service {svc} is gone")))
    }

    type WatchStream = BoxStream<ob::OutboundPolicy>;

    async fn watch(
        &self,
        request: Request<ob::TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (svc, port) = self.service(request.get_ref())?;
        let client_ns = self.client_namespace(request.get_ref())?;
        debug!(%svc, port, client_ns, "outbound Watch");
        let sub = self.0.index.subscribe_service(&svc);
        let cfg = self.0.cfg.clone();
        let mut last = None;
        Ok(Response::new(watch_stream(
            sub,
            self.0.metrics.track("outbound"),
            // A deleted Service keeps its last policy: the proxy's
            // connections stay routed until it is re-created or they end.
            move |view| {
                changed_only(
                    &mut last,
                    policy::outbound_policy(&svc, view, port, client_ns.as_deref(), &cfg.policy),
                )
            },
        )))
    }
}

/// The tonic router with all three services.
pub fn router(shared: Shared) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        // Unary answers (GetPort, Get) and small stream updates must not
        // wait for a delayed ACK.
        .tcp_nodelay(true)
        .add_service(d::destination_server::DestinationServer::new(
            DestinationService(shared.clone()),
        ))
        .add_service(
            ib::inbound_server_policies_server::InboundServerPoliciesServer::new(InboundService(
                shared.clone(),
            )),
        )
        .add_service(ob::outbound_policies_server::OutboundPoliciesServer::new(
            OutboundService(shared),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads() {
        assert_eq!(
            parse_workload("{\"ns\":\"app\", \"pod\":\"web-1\"}\n"),
            Ok(ObjKey::new("app", "web-1"))
        );
        assert_eq!(parse_workload("app:web-1"), Ok(ObjKey::new("app", "web-1")));
        for bad in [
            "",
            "app",
            ":web",
            "app:",
            "{\"ns\":\"app\"}",
            "{not json",
            "{\"ns\":\"\",\"pod\":\"x\"}",
            "a:b:c",
        ] {
            assert!(parse_workload(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_namespaces() {
        let ns = |w: &str| source_namespace(w);
        assert_eq!(
            ns("{\"ns\":\"shop\",\"pod\":\"cart-1\"}"),
            Ok(Some("shop".into()))
        );
        assert_eq!(
            ns("{\"ns\":\"shop\",\"external_workload\":\"vm-1\"}"),
            Ok(Some("shop".into()))
        );
        assert_eq!(ns("shop:cart-1"), Ok(Some("shop".into())));
        assert_eq!(ns(""), Ok(None), "no source: producer routes only");
        for bad in [
            "{\"pod\":\"x\"}",
            "{\"ns\":\"\"}",
            "{not json",
            "shop",
            "a:b:c",
        ] {
            assert!(ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(port_of(80), Ok(80));
        assert!(port_of(0).is_err());
        assert!(port_of(70000).is_err());
    }
}
