//! How long a route change takes to reach every `OutboundPolicies/Watch`
//! stream: the index and the gRPC server in this process, 300 Services in
//! namespace `apps`, each with a producer HTTPRoute (a 90/10 split to itself
//! and Service `canary`) and a consumer HTTPRoute in one of ten client
//! namespaces, and one stream per client opened by the published
//! `linkerd2-proxy-api` client over TLS as proxies connect
//! (`common::serve`; `PLAINTEXT=1` for loopback h2c). Stream `i` asks for
//! Service `svc-{i % 300}` as a client in namespace `client-{i / 300 % 10}`;
//! the consumer route of `svc-{s}` is in `client-{s % 10}`, so a tenth of the
//! streams also see their namespace's consumer route.
//!
//! Each round creates or deletes Service `canary`, fed to the index as the
//! watch would feed it: every route's 10 % share flips between the Service
//! and a failing backend, so every stream's answer changes. It measures the
//! time to the last stream's message.
//!
//! `cargo run --release -p kinject-destination --example outbound_fanout -- [STREAMS] [ROUNDS]`
//! (defaults 1000 and 20).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use common::PER_CONNECTION;
use kinject_destination::index::Index;
use kinject_destination::model::{ObjKey, ServiceInfo, ServicePort};
use kinject_destination::policy_index::{PolicyKind, PolicyObject};
use kinject_destination::policy_model::{self as m, RouteGroup};
use linkerd2_proxy_api::outbound as ob;
use serde_json::json;

const SERVICES: usize = 300;
const CLIENT_NAMESPACES: usize = 10;

fn spec<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

fn service(n: usize) -> anyhow::Result<ServiceInfo> {
    Ok(ServiceInfo {
        cluster_ips: vec![format!("10.96.{}.{}", n / 250, n % 250 + 1).parse()?],
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: 80,
        }],
        ..ServiceInfo::default()
    })
}

/// Services and routes, as the watches would have fed them.
fn populate(index: &Index) -> anyhow::Result<()> {
    for s in 0..SERVICES {
        let name = format!("svc-{s}");
        index.apply_service(ObjKey::new("apps", &name), service(s)?);
        let producer = m::http_route(
            &spec(json!({
                "parentRefs": [{"group": "core", "kind": "Service", "name": name, "port": 80}],
                "rules": [{"backendRefs": [{"name": name, "port": 80, "weight": 90},
                                           {"name": "canary", "port": 80, "weight": 10}]}],
            }))?,
            "apps",
            format!("2026-12-06T00:00:{:02}Z", s % 60),
        )?;
        index.apply_policy(
            PolicyKind::HttpRoute(RouteGroup::Gateway),
            &ObjKey::new("apps", &name),
            Ok(PolicyObject::HttpRoute(producer)),
        );
        let client_ns = format!("client-{}", s % CLIENT_NAMESPACES);
        let consumer = m::http_route(
            &spec(json!({
                "parentRefs": [{"group": "core", "kind": "Service", "name": name,
                                "namespace": "apps", "port": 80}],
                "rules": [{"matches": [{"path": {"value": "/consumer"}}],
                           "timeouts": {"request": "2s"},
                           "backendRefs": [{"name": name, "namespace": "apps", "port": 80, "weight": 90},
                                           {"name": "canary", "namespace": "apps", "port": 80, "weight": 10}]}],
            }))?,
            &client_ns,
            format!("2026-12-06T00:01:{:02}Z", s % 60),
        )?;
        index.apply_policy(
            PolicyKind::HttpRoute(RouteGroup::Gateway),
            &ObjKey::new(&client_ns, &name),
            Ok(PolicyObject::HttpRoute(consumer)),
        );
    }
    Ok(())
}

fn client_namespace(stream: usize) -> usize {
    stream / SERVICES % CLIENT_NAMESPACES
}

fn traffic_spec(stream: usize) -> ob::TrafficSpec {
    ob::TrafficSpec {
        source_workload: format!(
            "{{\"ns\":\"client-{}\",\"pod\":\"client-{stream}\"}}",
            client_namespace(stream)
        ),
        target: Some(ob::traffic_spec::Target::Authority(format!(
            "svc-{}.apps.svc.cluster.local:80",
            stream % SERVICES
        ))),
    }
}

fn routes(p: &ob::OutboundPolicy) -> usize {
    match p.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(ob::proxy_protocol::Kind::Detect(d)) => d.http1.as_ref().map_or(0, |h| h.routes.len()),
        _ => 0,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);

    let index = Index::new();
    populate(&index)?;
    let plaintext = std::env::var_os("PLAINTEXT").is_some();
    let (addr, anchors) = common::serve(common::shared(index.clone()), plaintext).await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let connections = streams.div_ceil(PER_CONNECTION);
    let mut opened = 0;
    for _ in 0..connections {
        let channel = common::connect(addr, &anchors, plaintext).await?;
        for _ in 0..PER_CONNECTION.min(streams - opened) {
            let mut client =
                ob::outbound_policies_client::OutboundPoliciesClient::new(channel.clone());
            let mut s = client.watch(traffic_spec(opened)).await?.into_inner();
            let first = s
                .message()
                .await?
                .ok_or_else(|| anyhow::anyhow!("no first answer"))?;
            // The producer route, and the consumer route where the client's
            // namespace has one for this Service.
            let want = if opened % SERVICES % CLIENT_NAMESPACES == client_namespace(opened) {
                2
            } else {
                1
            };
            if routes(&first) != want {
                anyhow::bail!(
                    "stream {opened}: {} routes, expected {want}",
                    routes(&first)
                );
            }
            common::forward(s, tx.clone());
            opened += 1;
        }
    }
    println!(
        "{streams} OutboundPolicies Watch streams open on {connections} connections over {SERVICES} Services, each with a producer route and a consumer route in one of {CLIENT_NAMESPACES} namespaces; watches held: {:?}",
        index.watches()
    );

    let canary = ObjKey::new("apps", "canary");
    common::measure_rounds(rounds, streams, &mut rx, |round| {
        if round % 2 == 0 {
            index.apply_service(canary.clone(), service(SERVICES)?);
        } else {
            index.delete_service(&canary);
        }
        Ok(())
    })
    .await
}
