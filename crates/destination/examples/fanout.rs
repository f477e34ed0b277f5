//! How long an endpoint change takes to reach every `Destination/Get`
//! stream: the index and the gRPC server in this process, the streams
//! opened by real `linkerd2-proxy-api` clients over loopback HTTP/2 (spread
//! over several connections, as many proxies would be).
//!
//! `cargo run --release -p kinject-destination --example fanout -- [STREAMS] [ROUNDS]`
//! (defaults 1000 and 20). Prints the time from the index update to the last
//! stream's message, per round, and p50/max.
//!
//! By default the streams connect as proxies do: TLS 1.3 with no ALPN, the
//! injected `LINKERD2_PROXY_DESTINATION_SVC_NAME` verified against a test
//! root, to this machine's first non-loopback address when it has one
//! (`BIND=ADDR` chooses). `PLAINTEXT=1` uses plaintext HTTP/2 on loopback.
//!
//! `fanout --remote ADDR SERVICES STREAMS` instead holds STREAMS Get streams
//! open on a running `kinject destination` (plaintext), spread over the
//! Services `web-0` … `web-<SERVICES-1>` in namespace `apps`, until killed
//! (`scripts/bench-destination.sh` measures its memory meanwhile).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use kinject_destination::index::Index;
use kinject_destination::model::{
    ObjKey, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo,
};
use linkerd2_proxy_api::destination as d;

use common::PER_CONNECTION;

fn slice(n: usize) -> SliceInfo {
    SliceInfo {
        service: "web".into(),
        ports: vec![(Some("http".into()), 8080)],
        endpoints: (0..n)
            .map(|i| SliceEndpoint {
                ips: vec![
                    format!("10.1.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .expect("ip"),
                ],
                ready: true,
                pod: Some(format!("web-{i}")),
                node: None,
            })
            .collect(),
    }
}

async fn hold_remote(addr: &str, services: usize, streams: usize) -> anyhow::Result<()> {
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
        let mut client = d::destination_client::DestinationClient::new(ch);
        let mut s = client
            .get(d::GetDestination {
                scheme: "k8s".into(),
                path: format!("web-{}.apps.svc.cluster.local:80", i % services.max(1)),
                context_token: String::new(),
            })
            .await?
            .into_inner();
        s.message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no first answer"))?;
        held.push(s);
    }
    eprintln!("{streams} streams open");
    futures::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--remote") {
        let a: Vec<String> = std::env::args().skip(2).collect();
        let [addr, services, streams] = &a[..] else {
            anyhow::bail!("usage: fanout --remote ADDR SERVICES STREAMS");
        };
        return hold_remote(addr, services.parse()?, streams.parse()?).await;
    }
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);

    let index = Index::new();
    index.apply_service(
        ObjKey::new("app", "web"),
        ServiceInfo {
            cluster_ips: vec!["10.96.0.10".parse()?],
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: 80,
            }],
            ..ServiceInfo::default()
        },
    );
    for i in 0..200 {
        index.apply_pod(
            ObjKey::new("app", format!("web-{i}")),
            PodInfo {
                ips: vec![format!("10.1.{}.{}", i / 250, i % 250 + 1).parse()?],
                service_account: "web".into(),
                meshed: true,
                inbound_port: 4143,
                admin_port: 4191,
                ..PodInfo::default()
            },
        );
    }
    index.apply_slice(ObjKey::new("app", "web-1"), slice(100));

    let plaintext = std::env::var_os("PLAINTEXT").is_some();
    let (addr, anchors) = common::serve(common::shared(index.clone()), plaintext).await?;

    // Open every stream and read its first answer.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let connections = streams.div_ceil(PER_CONNECTION);
    let mut opened = 0;
    for _ in 0..connections {
        let channel = common::connect(addr, &anchors, plaintext).await?;
        for _ in 0..PER_CONNECTION.min(streams - opened) {
            let mut client = d::destination_client::DestinationClient::new(channel.clone());
            let mut s = client
                .get(d::GetDestination {
                    scheme: "k8s".into(),
                    path: "web.app.svc.cluster.local:80".into(),
                    context_token: String::new(),
                })
                .await?
                .into_inner();
            s.message()
                .await?
                .ok_or_else(|| anyhow::anyhow!("no first answer"))?;
            common::forward(s, tx.clone());
            opened += 1;
        }
    }
    println!(
        "{streams} streams open on {connections} connections; watches held: {:?}",
        index.watches()
    );

    common::measure_rounds(rounds, streams, &mut rx, |round| {
        // Alternately one endpoint more and one fewer: one add or one remove.
        let n = if round % 2 == 0 { 101 } else { 100 };
        index.apply_slice(ObjKey::new("app", "web-1"), slice(n));
        Ok(())
    })
    .await
}
