//! What the destination examples share: a TLS server as identity would
//! certify it, on an address where the kernel does not shortcut as on
//! loopback, and the connection spread.

use std::net::SocketAddr;
use std::sync::Arc;

use kinject_destination::grpc::{Shared, router};

/// Streams per HTTP/2 connection.
pub const PER_CONNECTION: usize = 100;

/// The name the injected proxy verifies (`LINKERD2_PROXY_DESTINATION_SVC_NAME`).
pub const SERVER_NAME: &str =
    "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";

/// The machine's first global IPv4 address (from `ip`), so TLS is measured
/// where the kernel does not shortcut as on loopback.
pub fn non_loopback_address() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
}

/// A root and a serving certificate for `name` under it, as identity would
/// issue (ECDSA P-256).
pub fn test_certificate(
    name: &str,
) -> anyhow::Result<(String, Arc<dyn rustls::server::ResolvesServerCert>)> {
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut root = rcgen::CertificateParams::new(Vec::<String>::new())?;
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root_cert = root.self_signed(&root_key)?;
    let issuer = rcgen::Issuer::new(root, root_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &issuer)?;
    let certified =
        kinject_runtime::tls::certified_key_from_pem(&leaf.pem(), &key.serialize_pem())?;
    Ok((
        root_cert.pem(),
        Arc::new(rustls::sign::SingleCertAndKey::from(certified)),
    ))
}

/// Serves the APIs: TLS 1.3 as proxies connect (the trust anchors
/// returned), or plaintext HTTP/2 on loopback.
pub async fn serve(shared: Shared, plaintext: bool) -> anyhow::Result<(SocketAddr, String)> {
    let (addr, anchors) = if plaintext {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let incoming = futures::stream::unfold(listener, |l| async move {
            let conn = l.accept().await.map(|(s, _)| s);
            Some((conn, l))
        });
        tokio::spawn(router(shared).serve_with_incoming(incoming));
        (addr, String::new())
    } else {
        let host: std::net::IpAddr = match std::env::var("BIND") {
            Ok(b) => b.parse()?,
            Err(_) => non_loopback_address().unwrap_or([127, 0, 0, 1].into()),
        };
        // Any free port on that address.
        let addr = std::net::TcpListener::bind((host, 0))?.local_addr()?;
        let (anchors, cert) = test_certificate(SERVER_NAME)?;
        let incoming = kinject_runtime::grpc_tls::incoming(addr, cert, "fanout").await?;
        tokio::spawn(router(shared).serve_with_incoming(incoming));
        (addr, anchors)
    };
    println!(
        "serving on {addr} {}",
        if plaintext {
            "in plaintext"
        } else {
            "over TLS 1.3 (clients: no ALPN, the service name verified)"
        }
    );
    Ok((addr, anchors))
}

/// A connection as a proxy makes it.
pub async fn connect(
    addr: SocketAddr,
    anchors: &str,
    plaintext: bool,
) -> anyhow::Result<tonic::transport::Channel> {
    Ok(if plaintext {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?
    } else {
        kinject_runtime::grpc_tls::connect_as_proxy(addr, SERVER_NAME, anchors).await?
    })
}

/// The shared state the servers answer from: `index`, and the names of a
/// control plane in `linkerd` of a `cluster.local` cluster.
pub fn shared(index: kinject_destination::index::Index) -> Shared {
    use kinject_destination::{Config, Names, PolicyConfig};
    Shared {
        index,
        cfg: Arc::new(Config {
            names: Names {
                control_namespace: "linkerd".into(),
                trust_domain: "cluster.local".into(),
                cluster_domain: "cluster.local".into(),
            },
            policy: PolicyConfig::default(),
            default_opaque_ports: Vec::new(),
        }),
        metrics: kinject_destination::grpc::StreamMetrics::default(),
    }
}

/// Sends the time of each later message of stream `s` to `tx`.
pub fn forward<T: Send + 'static>(
    mut s: tonic::Streaming<T>,
    tx: tokio::sync::mpsc::UnboundedSender<std::time::Instant>,
) {
    tokio::spawn(async move {
        while let Ok(Some(_)) = s.message().await {
            let _ = tx.send(std::time::Instant::now());
        }
    });
}

/// Runs `rounds` changes (`change(round)`), each of which must reach all
/// `streams` (their messages' times arrive on `rx`); prints each round's
/// time from the change to the last stream's message, then p50 and max.
/// What is left of a round (a change may send a stream two messages) is
/// drained before the next.
pub async fn measure_rounds(
    rounds: usize,
    streams: usize,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
    mut change: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let mut times = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        change(round)?;
        let mut last = started;
        for _ in 0..streams {
            let t = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("a stream ended"))?;
            last = last.max(t);
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {}
        let took = last - started;
        println!("round {round}: all {streams} streams updated in {took:?}");
        times.push(took);
    }
    times.sort();
    if let (Some(p50), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!("p50 {p50:?}, max {max:?} (bar: 1 s)");
    }
    Ok(())
}
