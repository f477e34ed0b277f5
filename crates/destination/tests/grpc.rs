//! The three APIs over real gRPC (loopback, plaintext) with the published
//! `linkerd2-proxy-api` clients, the index fed by hand: every answer the
//! proxy depends on, updates as objects change, bad requests, and streams
//! that free their watch when the client goes away. (`crates/cli/tests/
//! cluster.rs` runs the same against a real API server.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kinject_destination::grpc::{Shared, StreamMetrics, router};
use kinject_destination::index::Index;
use kinject_destination::model::{
    NamespaceInfo, ObjKey, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo,
};
use kinject_destination::{Config, Names, PolicyConfig};
use kinject_mesh::parse::PortRange;
use kinject_test_support::{next_message, no_message_within};
use linkerd2_proxy_api::destination as d;
use linkerd2_proxy_api::inbound as ib;
use linkerd2_proxy_api::net::TcpAddress;
use linkerd2_proxy_api::outbound as ob;
use tonic::Streaming;

async fn serve(index: Index) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shared = Shared {
        index,
        cfg: Arc::new(Config {
            names: Names {
                control_namespace: "linkerd".into(),
                trust_domain: "cluster.local".into(),
                cluster_domain: "cluster.local".into(),
            },
            policy: PolicyConfig::default(),
            default_opaque_ports: vec![PortRange { lo: 3306, hi: 3306 }],
        }),
        metrics: StreamMetrics::default(),
    };
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(router(shared).serve_with_incoming(incoming));
    addr
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn pod(sa: &str, ip: &str) -> PodInfo {
    PodInfo {
        ips: vec![ip.parse().expect("ip")],
        service_account: sa.into(),
        meshed: true,
        inbound_port: 4143,
        admin_port: 4191,
        ..PodInfo::default()
    }
}

fn service(ip: &str) -> ServiceInfo {
    ServiceInfo {
        cluster_ips: vec![ip.parse().expect("ip")],
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: 80,
        }],
        ..ServiceInfo::default()
    }
}

fn slice(pods: &[(&str, &str)]) -> SliceInfo {
    SliceInfo {
        service: "web".into(),
        ports: vec![(Some("http".into()), 8080)],
        endpoints: pods
            .iter()
            .map(|(name, ip)| SliceEndpoint {
                ips: vec![ip.parse().expect("ip")],
                ready: true,
                pod: Some(name.to_string()),
                node: None,
            })
            .collect(),
    }
}

async fn next<T>(s: &mut Streaming<T>) -> T {
    next_message(s, Duration::from_secs(5)).await
}

async fn nothing_within<T: std::fmt::Debug>(s: &mut Streaming<T>, ms: u64) {
    no_message_within(s, Duration::from_millis(ms)).await
}

fn describe(u: &d::Update) -> String {
    match u.update.as_ref() {
        Some(d::update::Update::Add(set)) => {
            let mut parts: Vec<String> = set
                .addrs
                .iter()
                .map(|a| {
                    let addr = a.addr.as_ref().map(sock).unwrap_or_default();
                    let id = a
                        .tls_identity
                        .as_ref()
                        .and_then(|t| t.strategy.as_ref())
                        .map(|s| match s {
                            d::tls_identity::Strategy::DnsLikeIdentity(n) => n.name.clone(),
                            d::tls_identity::Strategy::UriLikeIdentity(u) => u.uri.clone(),
                        })
                        .unwrap_or_default();
                    format!("{addr} {id}")
                })
                .collect();
            parts.sort();
            format!("add [{}]", parts.join(", "))
        }
        Some(d::update::Update::Remove(set)) => {
            let mut parts: Vec<String> = set.addrs.iter().map(sock).collect();
            parts.sort();
            format!("remove [{}]", parts.join(", "))
        }
        Some(d::update::Update::NoEndpoints(n)) => format!("no_endpoints exists={}", n.exists),
        None => "empty".into(),
    }
}

fn sock(a: &TcpAddress) -> String {
    let ip: std::net::IpAddr = a.ip.and_then(|ip| ip.try_into().ok()).expect("an IP");
    SocketAddr::new(ip, a.port as u16).to_string()
}

async fn settle(index: &Index, want: (usize, usize)) {
    for _ in 0..100 {
        if index.watches() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("watches {:?}, expected {want:?}", index.watches());
}

#[tokio::test]
async fn destination_get_follows_the_service() {
    let index = Index::new();
    let addr = serve(index.clone()).await;
    let mut client = d::destination_client::DestinationClient::connect(url(addr))
        .await
        .expect("connect");
    let mut s = client
        .get(d::GetDestination {
            scheme: "k8s".into(),
            path: "web.app.svc.cluster.local:80".into(),
            context_token: String::new(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(describe(&next(&mut s).await), "no_endpoints exists=false");

    index.apply_service(ObjKey::new("app", "web"), service("10.96.0.10"));
    assert_eq!(describe(&next(&mut s).await), "no_endpoints exists=true");

    index.apply_pod(ObjKey::new("app", "web-1"), pod("web", "10.1.0.1"));
    index.apply_pod(ObjKey::new("app", "web-2"), pod("web", "10.1.0.2"));
    index.apply_slice(
        ObjKey::new("app", "web-abc"),
        slice(&[("web-1", "10.1.0.1"), ("web-2", "10.1.0.2")]),
    );
    let id = "web.app.serviceaccount.identity.linkerd.cluster.local";
    assert_eq!(
        describe(&next(&mut s).await),
        format!("add [10.1.0.1:8080 {id}, 10.1.0.2:8080 {id}]")
    );

    // Scale down: one removal, nothing else.
    index.apply_slice(
        ObjKey::new("app", "web-abc"),
        slice(&[("web-2", "10.1.0.2")]),
    );
    assert_eq!(describe(&next(&mut s).await), "remove [10.1.0.1:8080]");
    nothing_within(&mut s, 200).await;

    // A pod's ServiceAccount changes its identity: sent again.
    index.apply_pod(ObjKey::new("app", "web-2"), pod("other", "10.1.0.2"));
    assert_eq!(
        describe(&next(&mut s).await),
        "add [10.1.0.2:8080 other.app.serviceaccount.identity.linkerd.cluster.local]"
    );

    index.delete_slice(&ObjKey::new("app", "web-abc"));
    assert_eq!(describe(&next(&mut s).await), "remove [10.1.0.2:8080]");
    assert_eq!(describe(&next(&mut s).await), "no_endpoints exists=true");

    // The client goes away: its watch is freed.
    assert_eq!(index.watches(), (1, 0));
    drop(s);
    settle(&index, (0, 0)).await;
}

#[tokio::test]
async fn two_hundred_streams_share_one_watch_and_leave_nothing() {
    let index = Index::new();
    index.apply_service(ObjKey::new("app", "web"), service("10.96.0.10"));
    let addr = serve(index.clone()).await;
    let client = d::destination_client::DestinationClient::connect(url(addr))
        .await
        .expect("connect");
    let mut streams = Vec::new();
    for _ in 0..200 {
        let mut c = client.clone();
        let mut s = c
            .get(d::GetDestination {
                scheme: "k8s".into(),
                path: "web.app.svc.cluster.local:80".into(),
                context_token: String::new(),
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(describe(&next(&mut s).await), "no_endpoints exists=true");
        streams.push(s);
    }
    assert_eq!(index.watches(), (1, 0), "one watch for all streams");
    index.apply_pod(ObjKey::new("app", "web-1"), pod("web", "10.1.0.1"));
    index.apply_slice(
        ObjKey::new("app", "web-abc"),
        slice(&[("web-1", "10.1.0.1")]),
    );
    for s in &mut streams {
        assert!(describe(&next(s).await).starts_with("add [10.1.0.1:8080"));
    }
    drop(streams);
    settle(&index, (0, 0)).await;
}

#[tokio::test]
async fn bad_requests_are_refused_precisely() {
    let index = Index::new();
    let addr = serve(index.clone()).await;
    let mut dst = d::destination_client::DestinationClient::connect(url(addr))
        .await
        .expect("connect");
    for path in ["web.app.svc.cluster.local", "example.com:443", ""] {
        let err = dst
            .get(d::GetDestination {
                scheme: "k8s".into(),
                path: path.into(),
                context_token: String::new(),
            })
            .await
            .expect_err(path);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{path}: {err}");
    }
    let mut inbound =
        ib::inbound_server_policies_client::InboundServerPoliciesClient::connect(url(addr))
            .await
            .expect("connect");
    for (workload, port) in [("garbage", 80), ("{\"ns\":\"app\",\"pod\":\"p\"}", 0)] {
        let err = inbound
            .watch_port(ib::PortSpec {
                workload: workload.into(),
                port,
            })
            .await
            .expect_err(workload);
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{workload}: {err}"
        );
    }
    let mut outbound = ob::outbound_policies_client::OutboundPoliciesClient::connect(url(addr))
        .await
        .expect("connect");
    let err = outbound
        .watch(ob::TrafficSpec {
            source_workload: String::new(),
            target: None,
        })
        .await
        .expect_err("no target");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = outbound
        .watch(ob::TrafficSpec {
            source_workload: String::new(),
            target: Some(ob::traffic_spec::Target::Addr(TcpAddress {
                ip: Some("192.0.2.1".parse::<std::net::IpAddr>().expect("ip").into()),
                port: 80,
            })),
        })
        .await
        .expect_err("unknown address");
    assert_eq!(err.code(), tonic::Code::NotFound, "forward in plaintext");
    assert_eq!(index.watches(), (0, 0), "refusals hold nothing");
}

fn policy_name(s: &ib::Server) -> String {
    s.labels.get("name").cloned().unwrap_or_default()
}

#[tokio::test]
async fn inbound_policy_follows_pod_and_namespace() {
    let index = Index::new();
    let addr = serve(index.clone()).await;
    let mut client =
        ib::inbound_server_policies_client::InboundServerPoliciesClient::connect(url(addr))
            .await
            .expect("connect");
    let mut s = client
        .watch_port(ib::PortSpec {
            workload: "{\"ns\":\"app\",\"pod\":\"web-1\"}\n".into(),
            port: 8080,
        })
        .await
        .expect("watch")
        .into_inner();
    // Nothing until the pod is known: the proxy keeps its default meanwhile.
    nothing_within(&mut s, 200).await;
    let key = ObjKey::new("app", "web-1");
    index.apply_pod(key.clone(), pod("web", "10.1.0.1"));
    assert_eq!(policy_name(&next(&mut s).await), "all-unauthenticated");
    index.apply_namespace(
        "app".into(),
        NamespaceInfo {
            default_policy: Some("cluster-authenticated".into()),
        },
    );
    let server = next(&mut s).await;
    assert_eq!(policy_name(&server), "cluster-authenticated");
    assert!(matches!(
        server.authorizations[0]
            .authentication
            .as_ref()
            .and_then(|a| a.permit.as_ref()),
        Some(ib::authn::Permit::MeshTls(_))
    ));
    let mut strict = pod("web", "10.1.0.1");
    strict.default_policy = Some("deny".into());
    index.apply_pod(key.clone(), strict.clone());
    let server = next(&mut s).await;
    assert_eq!(policy_name(&server), "deny");
    assert!(server.authorizations.is_empty());
    // A change that does not touch this port's policy sends nothing.
    strict.service_account = "renamed".into();
    index.apply_pod(key.clone(), strict);
    nothing_within(&mut s, 200).await;

    // Opaque ports are served opaque (unary GetPort too).
    let mut opaque = pod("web", "10.1.0.1");
    opaque.opaque_ports = vec![PortRange { lo: 5432, hi: 5432 }];
    index.apply_pod(key, opaque);
    let server = client
        .get_port(ib::PortSpec {
            workload: "app:web-1".into(),
            port: 5432,
        })
        .await
        .expect("get_port")
        .into_inner();
    assert!(matches!(
        server.protocol.and_then(|p| p.kind),
        Some(ib::proxy_protocol::Kind::Opaque(_))
    ));
    drop(s);
    settle(&index, (0, 0)).await;
}

fn dst_path(p: &ob::OutboundPolicy) -> (bool, String) {
    let kind = p.protocol.as_ref().and_then(|p| p.kind.as_ref());
    let (opaque, route) = match kind {
        Some(ob::proxy_protocol::Kind::Detect(d)) => (false, d.opaque.as_ref()),
        Some(ob::proxy_protocol::Kind::Opaque(o)) => (true, Some(o)),
        _ => panic!("unexpected protocol {kind:?}"),
    };
    let route = route.expect("an opaque route");
    let Some(ob::opaque_route::distribution::Kind::FirstAvailable(fa)) = route.routes[0].rules[0]
        .backends
        .as_ref()
        .and_then(|b| b.kind.as_ref())
    else {
        panic!("first available")
    };
    let Some(ob::backend::Kind::Balancer(b)) = fa.backends[0]
        .backend
        .as_ref()
        .and_then(|b| b.kind.as_ref())
    else {
        panic!("balancer")
    };
    let Some(ob::backend::endpoint_discovery::Kind::Dst(dst)) =
        b.discovery.as_ref().and_then(|d| d.kind.as_ref())
    else {
        panic!("dst")
    };
    (opaque, dst.path.clone())
}

#[tokio::test]
async fn outbound_policy_by_cluster_ip_and_by_name() {
    let index = Index::new();
    index.apply_service(ObjKey::new("app", "web"), service("10.96.0.10"));
    let addr = serve(index.clone()).await;
    let mut client = ob::outbound_policies_client::OutboundPoliciesClient::connect(url(addr))
        .await
        .expect("connect");
    let mut s = client
        .watch(ob::TrafficSpec {
            source_workload: "app:client".into(),
            target: Some(ob::traffic_spec::Target::Addr(TcpAddress {
                ip: Some("10.96.0.10".parse::<std::net::IpAddr>().expect("ip").into()),
                port: 80,
            })),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        dst_path(&next(&mut s).await),
        (false, "web.app.svc.cluster.local:80".to_string())
    );
    // Endpoints changing do not change the policy.
    index.apply_slice(
        ObjKey::new("app", "web-abc"),
        slice(&[("web-1", "10.1.0.1")]),
    );
    nothing_within(&mut s, 200).await;
    // The Service marks the port opaque.
    let mut opaque = service("10.96.0.10");
    opaque.opaque_ports = vec![PortRange { lo: 80, hi: 80 }];
    index.apply_service(ObjKey::new("app", "web"), opaque);
    assert_eq!(
        dst_path(&next(&mut s).await),
        (true, "web.app.svc.cluster.local:80".to_string())
    );
    let by_name = client
        .get(ob::TrafficSpec {
            source_workload: String::new(),
            target: Some(ob::traffic_spec::Target::Authority(
                "web.app.svc.cluster.local:80".into(),
            )),
        })
        .await
        .expect("by name")
        .into_inner();
    assert_eq!(dst_path(&by_name).1, "web.app.svc.cluster.local:80");
    let err = client
        .get(ob::TrafficSpec {
            source_workload: String::new(),
            target: Some(ob::traffic_spec::Target::Authority(
                "nope.app.svc.cluster.local:80".into(),
            )),
        })
        .await
        .expect_err("no such Service");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn profiles_for_services_pods_and_strangers() {
    let index = Index::new();
    index.apply_service(ObjKey::new("app", "web"), service("10.96.0.10"));
    let mut db = pod("db", "10.1.0.9");
    db.opaque_ports = vec![PortRange { lo: 5432, hi: 5432 }];
    index.apply_pod(ObjKey::new("app", "db-0"), db);
    let addr = serve(index.clone()).await;
    let mut client = d::destination_client::DestinationClient::connect(url(addr))
        .await
        .expect("connect");
    let mut ask = async |path: &str| {
        let mut s = client
            .get_profile(d::GetDestination {
                scheme: "k8s".into(),
                path: path.into(),
                context_token: "{\"ns\":\"app\",\"nodeName\":\"n\",\"pod\":\"client\"}".into(),
            })
            .await
            .expect(path)
            .into_inner();
        next(&mut s).await
    };
    let svc = ask("10.96.0.10:80").await;
    assert_eq!(svc.fully_qualified_name, "web.app.svc.cluster.local");
    assert!(svc.retry_budget.is_some());
    let by_name = ask("web.app.svc.cluster.local:80").await;
    assert_eq!(by_name.fully_qualified_name, svc.fully_qualified_name);

    let p = ask("10.1.0.9:5432").await;
    assert!(p.opaque_protocol);
    let ep = p.endpoint.expect("the pod as endpoint");
    let Some(d::tls_identity::Strategy::DnsLikeIdentity(id)) =
        ep.tls_identity.and_then(|t| t.strategy)
    else {
        panic!("identity")
    };
    assert_eq!(
        id.name,
        "db.app.serviceaccount.identity.linkerd.cluster.local"
    );
    assert_eq!(
        ep.protocol_hint
            .and_then(|h| h.opaque_transport)
            .map(|o| o.inbound_port),
        Some(4143)
    );

    let stranger = ask("10.9.9.9:3306").await;
    assert!(stranger.opaque_protocol, "a default opaque port");
    assert!(stranger.endpoint.expect("endpoint").tls_identity.is_none());
}
