//! Fuzzes what a proxy sends to the destination controller: the protobuf
//! requests of `Destination/Get` and `GetProfile`, `InboundServerPolicies`
//! and `OutboundPolicies`, through the real tonic handlers over an index
//! holding a Service, its endpoints and a pod. Nothing may panic; a refusal
//! is InvalidArgument or NotFound; a stream's first answer comes at once; and
//! once every request is dropped, no watch is left behind.
#![no_main]

use std::sync::{Arc, LazyLock};

use futures::{FutureExt, StreamExt};
use kinject_destination::grpc::{DestinationService, InboundService, OutboundService, Shared, StreamMetrics};
use kinject_destination::index::Index;
use kinject_destination::model::{ObjKey, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo};
use kinject_destination::{Config, Names, PolicyConfig};
use kinject_mesh::parse::PortRange;
use libfuzzer_sys::fuzz_target;
use linkerd2_proxy_api::destination::destination_server::Destination;
use linkerd2_proxy_api::destination::GetDestination;
use linkerd2_proxy_api::inbound::inbound_server_policies_server::InboundServerPolicies;
use linkerd2_proxy_api::inbound::PortSpec;
use linkerd2_proxy_api::outbound::outbound_policies_server::OutboundPolicies;
use linkerd2_proxy_api::outbound::TrafficSpec;
use prost::Message;
use tonic::{Code, Request};

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let index = Index::new();
    index.apply_service(
        ObjKey::new("app", "web"),
        ServiceInfo {
            cluster_ips: vec!["10.96.0.10".parse().expect("ip")],
            ports: vec![ServicePort { name: Some("http".into()), port: 80 }],
            opaque_ports: vec![PortRange { lo: 5432, hi: 5432 }],
            ..ServiceInfo::default()
        },
    );
    index.apply_pod(
        ObjKey::new("app", "web-1"),
        PodInfo {
            ips: vec!["10.1.0.1".parse().expect("ip")],
            service_account: "web".into(),
            meshed: true,
            opaque_ports: vec![PortRange { lo: 5432, hi: 5432 }],
            inbound_port: 4143,
            admin_port: 4191,
            ..PodInfo::default()
        },
    );
    index.apply_slice(
        ObjKey::new("app", "web-abc"),
        SliceInfo {
            service: "web".into(),
            ports: vec![(Some("http".into()), 8080)],
            endpoints: vec![SliceEndpoint {
                ips: vec!["10.1.0.1".parse().expect("ip")],
                ready: true,
                pod: Some("web-1".into()),
                node: None,
            }],
        },
    );
    Shared {
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
    }
});

fn refused_well(code: Code) {
    assert!(matches!(code, Code::InvalidArgument | Code::NotFound), "{code:?}");
}

/// The first message of a stream, if it is ready now (answers that wait
/// for a pod or Service that does not exist have none yet).
fn first<S: futures::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    s.next().now_or_never().flatten()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let sh = SHARED.clone();
    futures::executor::block_on(async {
        match which % 5 {
            0 | 1 => {
                let Ok(req) = GetDestination::decode(rest) else { return };
                let svc = DestinationService(sh.clone());
                let answer = if which % 5 == 0 {
                    svc.get(Request::new(req)).await.map(|r| {
                        let mut s = r.into_inner();
                        assert!(first(&mut s).is_some(), "Get answers at once");
                    })
                } else {
                    svc.get_profile(Request::new(req)).await.map(|r| {
                        let mut s = r.into_inner();
                        assert!(first(&mut s).is_some(), "GetProfile answers at once");
                    })
                };
                if let Err(e) = answer {
                    refused_well(e.code());
                }
            }
            2 | 3 => {
                let Ok(req) = PortSpec::decode(rest) else { return };
                let svc = InboundService(sh.clone());
                if which % 5 == 2 {
                    match svc.watch_port(Request::new(req)).await {
                        Ok(r) => {
                            let mut s = r.into_inner();
                            let _ = first(&mut s);
                        }
                        Err(e) => refused_well(e.code()),
                    }
                } else if let Err(e) = svc.get_port(Request::new(req)).await {
                    refused_well(e.code());
                }
            }
            _ => {
                let Ok(req) = TrafficSpec::decode(rest) else { return };
                let svc = OutboundService(sh.clone());
                match svc.watch(Request::new(req)).await {
                    Ok(r) => {
                        let mut s = r.into_inner();
                        assert!(first(&mut s).is_some(), "a Service's policy comes at once");
                    }
                    Err(e) => refused_well(e.code()),
                }
            }
        }
    });
    assert_eq!(sh.index.watches(), (0, 0), "every watch freed with its stream");
});
