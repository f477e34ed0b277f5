//! Load for `Identity/Certify` (used by `scripts/bench-certify.sh`, never by
//! CI): N ServiceAccounts, a token each (TokenRequest, audience
//! identity.l5d.io) and a P-256 CSR each, prepared first; then every one is
//! certified from scratch, `CONCURRENCY` at a time. Prints p50/p99 latency of
//! single calls (sequential phase) and the wall time for all N.
//!
//!   certify_load ADDR N        (KUBECONFIG names the cluster; namespace `bench`)
//!
//! With `TRUST_ANCHORS=FILE` it connects as the proxy does: TLS 1.3, no
//! ALPN, server name `linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local`
//! verified against those anchors; without it, plaintext.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;

const NS: &str = "bench";

fn csr(id: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = rcgen::CertificateParams::new(vec![id.to_string()]).expect("params");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, id);
    p.serialize_request(&key).expect("csr").der().to_vec()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let n: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    let concurrency: usize = std::env::var("CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(32);
    let client = kube::Client::try_default().await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?,
        )
        .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    eprintln!("preparing {n} ServiceAccounts, tokens and CSRs");
    let prep = Instant::now();
    let mut work = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("sa{i}");
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        let _ = sas.create(&PostParams::default(), &sa).await;
        let tr = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["identity.l5d.io".into()],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = sas
            .create_token_request(&name, &PostParams::default(), &tr)
            .await?
            .status
            .map(|s| s.token)
            .unwrap_or_default();
        let id = format!("{name}.{NS}.serviceaccount.identity.linkerd.cluster.local");
        work.push(CertifyRequest {
            certificate_signing_request: csr(&id),
            identity: id,
            token: token.into_bytes(),
        });
    }
    eprintln!("prepared in {:?}", prep.elapsed());
    let channel = match std::env::var_os("TRUST_ANCHORS") {
        Some(path) => {
            let anchors = std::fs::read_to_string(&path)?;
            let name = kinject_identity::grpc::service_name("linkerd", "cluster.local");
            eprintln!("connecting over TLS 1.3 as {name}, no ALPN");
            kinject_runtime::grpc_tls::connect_as_proxy(addr.parse()?, &name, &anchors).await?
        }
        None => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?
        }
    };

    // Single-call latency: the first 200, one at a time.
    let mut one = IdentityClient::new(channel.clone());
    let mut lat = Vec::new();
    for req in work.iter().take(200.min(n)) {
        let t = Instant::now();
        one.certify(req.clone()).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "sequential: {} calls, p50 {:?}, p99 {:?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    // All N, concurrently, from scratch (distinct ServiceAccounts).
    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(n);
    for req in work {
        let mut c = IdentityClient::new(channel.clone());
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let r = c.certify(req).await;
            drop(permit);
            r.map(|_| ())
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    println!(
        "all: {n} distinct ServiceAccounts certified in {:?} ({concurrency} concurrent), {failed} failed",
        started.elapsed()
    );
    Ok(())
}
