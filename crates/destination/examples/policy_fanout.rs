//! How long a policy change takes to reach every `WatchPort` stream: the
//! index and the gRPC server in this process, 1,000 meshed pods in one
//! namespace under 300 Servers (each with a MeshTLSAuthentication, an
//! AuthorizationPolicy and an HTTPRoute), and one stream per pod opened by
//! the published `linkerd2-proxy-api` client over TLS as proxies connect
//! (`common::serve`; `PLAINTEXT=1` for loopback h2c).
//!
//! Each round creates or deletes a namespace-wide AuthorizationPolicy with
//! its NetworkAuthentication (the change that reaches every Server, hence
//! every stream), fed to the index as the watch would feed it, and measures
//! the time to the last stream's message.
//!
//! `cargo run --release -p kinject-destination --example policy_fanout -- [STREAMS] [ROUNDS]`
//! (defaults 1000 and 20).
//!
//! `policy_fanout --remote ADDR PODS STREAMS` instead holds STREAMS WatchPort
//! streams open on a running `kinject destination` (plaintext) for pods
//! `web-0` … in namespace `apps`, until killed (`scripts/bench-destination.sh`
//! measures its memory meanwhile).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use common::PER_CONNECTION;
use kinject_destination::index::Index;
use kinject_destination::model::{HttpProbe, ObjKey, PodInfo};
use kinject_destination::policy_index::{PolicyKind, PolicyObject};
use kinject_destination::policy_model::{self as m, RouteGroup};
use linkerd2_proxy_api::inbound as ib;
use serde_json::json;

const SERVERS: usize = 300;

fn port_spec(pod: usize) -> ib::PortSpec {
    ib::PortSpec {
        workload: format!("{{\"ns\":\"apps\",\"pod\":\"web-{pod}\"}}"),
        port: 8080,
    }
}

fn spec<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

/// Pods and policy objects, as the watches would have fed them.
fn populate(index: &Index, pods: usize) -> anyhow::Result<()> {
    for i in 0..pods {
        index.apply_pod(
            ObjKey::new("apps", format!("web-{i}")),
            PodInfo {
                ips: vec![format!("10.1.{}.{}", i / 250, i % 250 + 1).parse()?],
                service_account: "web".into(),
                meshed: true,
                inbound_port: 4143,
                admin_port: 4191,
                named_ports: vec![("http".into(), 8080)],
                labels: [("app".to_string(), format!("web-{}", i % SERVERS))].into(),
                probes: vec![HttpProbe {
                    port: 8080,
                    path: "/healthz".into(),
                }],
                ..PodInfo::default()
            },
        );
    }
    for s in 0..SERVERS {
        let name = format!("web-{s}");
        let key = ObjKey::new("apps", &name);
        index.apply_policy(
            PolicyKind::Server,
            &key,
            Ok(PolicyObject::Server(m::server(
                &spec(json!({"podSelector": {"matchLabels": {"app": name}},
                             "port": "http", "proxyProtocol": "HTTP/1"}))?,
                Default::default(),
                String::new(),
            )?)),
        );
        index.apply_policy(
            PolicyKind::MeshTlsAuthentication,
            &key,
            Ok(PolicyObject::MeshTlsAuthentication(
                m::mesh_tls_authentication(
                    &spec(json!({"identityRefs": [{"kind": "ServiceAccount", "name": "client"}]}))?,
                    "apps",
                )?,
            )),
        );
        index.apply_policy(
            PolicyKind::AuthorizationPolicy,
            &key,
            Ok(PolicyObject::AuthorizationPolicy(m::authorization_policy(
                &spec(json!({
                    "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": name},
                    "requiredAuthenticationRefs": [
                        {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": name}],
                }))?,
                "apps",
            )?)),
        );
        index.apply_policy(
            PolicyKind::HttpRoute(RouteGroup::Policy),
            &key,
            Ok(PolicyObject::HttpRoute(m::http_route(
                &spec(json!({
                    "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": name}],
                    "rules": [{"matches": [{"path": {"value": "/api"}}]}],
                }))?,
                "apps",
                String::new(),
            )?)),
        );
    }
    Ok(())
}

/// One round's change: a namespace-wide policy from the cluster networks,
/// created (`on`) or deleted.
fn toggle_namespace_policy(index: &Index, on: bool) -> anyhow::Result<()> {
    let key = ObjKey::new("apps", "lan");
    if on {
        index.apply_policy(
            PolicyKind::NetworkAuthentication,
            &key,
            Ok(PolicyObject::NetworkAuthentication(
                m::network_authentication(&spec(json!({"networks": [{"cidr": "10.0.0.0/8"}]}))?)?,
            )),
        );
        index.apply_policy(
            PolicyKind::AuthorizationPolicy,
            &key,
            Ok(PolicyObject::AuthorizationPolicy(m::authorization_policy(
                &spec(json!({
                    "targetRef": {"kind": "Namespace", "name": "apps"},
                    "requiredAuthenticationRefs": [
                        {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "lan"}],
                }))?,
                "apps",
            )?)),
        );
    } else {
        index.delete_policy(PolicyKind::AuthorizationPolicy, &key);
        index.delete_policy(PolicyKind::NetworkAuthentication, &key);
    }
    Ok(())
}

async fn hold_remote(addr: &str, pods: usize, streams: usize) -> anyhow::Result<()> {
    let mut held = Vec::new();
    let mut channel = None;
    for i in 0..streams {
        if i % PER_CONNECTION == 0 {
            channel = Some(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            );
        }
        let ch = channel
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no connection"))?;
        let mut client = ib::inbound_server_policies_client::InboundServerPoliciesClient::new(ch);
        let mut s = client
            .watch_port(port_spec(i % pods.max(1)))
            .await?
            .into_inner();
        s.message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no first answer"))?;
        held.push(s);
    }
    eprintln!("{streams} WatchPort streams open");
    futures::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--remote") {
        let a: Vec<String> = std::env::args().skip(2).collect();
        let [addr, pods, streams] = &a[..] else {
            anyhow::bail!("usage: policy_fanout --remote ADDR PODS STREAMS");
        };
        return hold_remote(addr, pods.parse()?, streams.parse()?).await;
    }
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);

    let index = Index::new();
    populate(&index, streams)?;
    let plaintext = std::env::var_os("PLAINTEXT").is_some();
    let (addr, anchors) = common::serve(common::shared(index.clone()), plaintext).await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let connections = streams.div_ceil(PER_CONNECTION);
    let mut opened = 0;
    for _ in 0..connections {
        let channel = common::connect(addr, &anchors, plaintext).await?;
        for _ in 0..PER_CONNECTION.min(streams - opened) {
            let mut client = ib::inbound_server_policies_client::InboundServerPoliciesClient::new(
                channel.clone(),
            );
            let mut s = client.watch_port(port_spec(opened)).await?.into_inner();
            let first = s
                .message()
                .await?
                .ok_or_else(|| anyhow::anyhow!("no first answer"))?;
            if first.labels.get("kind").map(String::as_str) != Some("server") {
                anyhow::bail!(
                    "web-{opened}:8080 is not under its Server: {:?}",
                    first.labels
                );
            }
            common::forward(s, tx.clone());
            opened += 1;
        }
    }
    println!(
        "{streams} WatchPort streams open on {connections} connections, each under one of {SERVERS} Servers; watches held: {:?}",
        index.watches()
    );

    // Each change is two objects when created (two messages per stream at
    // most); the rounds drain what is left of each.
    common::measure_rounds(rounds, streams, &mut rx, |round| {
        toggle_namespace_policy(&index, round % 2 == 0)
    })
    .await
}
