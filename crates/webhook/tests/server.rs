//! The webhook server over real TLS on loopback, with a fake cluster view:
//! the admission protocol, every kind of bad input, and certificate reload.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use kinject_inject::{Injector, InjectorConfig, Owner};
use kinject_k8s::cache::{ClusterLookup, NamespaceInfo};
use kinject_k8s::events::EventSink;
use kinject_webhook::admission::Admission;
use kinject_webhook::metrics::Metrics;
use kinject_webhook::{server, tls};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

struct FakeCluster;

impl ClusterLookup for FakeCluster {
    async fn namespace(&self, name: &str) -> NamespaceInfo {
        let mut info = NamespaceInfo::unknown(name);
        info.known = true;
        if name == "off" {
            info.labels
                .insert("linkerd.io/auto-inject".into(), "disabled".into());
        }
        info
    }

    async fn owner(&self, _ns: &str, _controller: Option<(&str, &str)>) -> Option<Owner> {
        Some(Owner {
            kind: "deployment".into(),
            name: "web".into(),
        })
    }
}

struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
}

fn issue(dir: &std::path::Path, cn: &str) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{cn}-ca"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = issue(dir.path(), "gen-1");
    Certs { dir, ca_pem }
}

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    registry_text: Arc<dyn Fn() -> String + Send + Sync>,
    resolver: Arc<tls::ReloadingResolver>,
    certs: Certs,
    budget: server::BodyBudget,
}

fn client_for(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn start() -> Server {
    start_with(server::DEFAULT_BODY_MEMORY).await
}

async fn start_with(body_memory: usize) -> Server {
    tls::install_crypto_provider();
    let certs = certs();
    let (resolver, _) = tls::ReloadingResolver::new(
        certs.dir.path().join("tls.crt"),
        certs.dir.path().join("tls.key"),
    )
    .unwrap();
    let engine = Injector::new(InjectorConfig {
        trust_anchors_pem: "ANCHORS".into(),
        native_sidecars_supported: false,
        ..InjectorConfig::default()
    })
    .unwrap();
    let mut registry = Registry::with_prefix("kinject_proxy_injector");
    let metrics = Metrics::register(&mut registry);
    let budget = server::BodyBudget::new(body_memory, metrics.request_body_bytes.clone());
    let connections = metrics.connections.clone();
    let registry = Arc::new(registry);
    let adm = Arc::new(Admission::new(
        Arc::new(ArcSwap::from_pointee(engine)),
        FakeCluster,
        metrics,
        EventSink::disabled(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let cfg = Arc::new(tls::server_config(resolver.clone()).unwrap());
    let task = tokio::spawn(server::serve_tls(
        listener,
        cfg,
        server::admission_router(adm, budget.clone()),
        connections,
        stop_rx,
    ));
    let reg = registry.clone();
    Server {
        addr,
        client: client_for(&certs.ca_pem),
        stop,
        task,
        registry_text: Arc::new(move || {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
            s
        }),
        resolver,
        certs,
        budget,
    }
}

impl Server {
    /// The server still answers an ordinary review.
    async fn assert_serves_a_review(&self) {
        let (status, text) = self
            .post(pod_review("admission.k8s.io/v1", "apps", false).to_string())
            .await;
        assert_eq!(status, 200, "{text}");
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .client
            .post(self.url("/inject"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn pod_review(version: &str, ns: &str, dry_run: bool) -> Value {
    json!({
        "apiVersion": version, "kind": "AdmissionReview",
        "request": {
            "uid": "abc-123", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns, "operation": "CREATE", "dryRun": dry_run,
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-", "labels": {"app": "web"},
                             "annotations": {"config.linkerd.io/bogus": "x"}},
                "spec": {"containers": [{"name": "app", "image": "nginx",
                                         "ports": [{"containerPort": 3306}]}]}}
        }
    })
}

fn decode_patch(resp: &Value) -> Value {
    let b64 = resp["response"]["patch"].as_str().expect("patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn injects_pods_in_both_review_versions() {
    let s = start().await;
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let (status, body) = s.post(pod_review(version, "apps", false).to_string()).await;
        assert_eq!(status, 200, "{body}");
        let resp: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(resp["apiVersion"], version);
        assert_eq!(resp["response"]["uid"], "abc-123");
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let patch = decode_patch(&resp);
        let ops = patch.as_array().unwrap();
        // Classic mode (the engine was told the server predates native sidecars).
        let proxy = ops
            .iter()
            .find(|o| o["path"] == "/spec/containers/0")
            .expect("proxy op");
        assert_eq!(proxy["value"]["name"], "linkerd-proxy");
        assert!(ops.iter().any(
            |o| o["path"] == "/metadata/labels/linkerd.io~1proxy-deployment" && o["value"] == "web"
        ));
        assert!(ops.iter().any(|o| o["path"]
            == "/metadata/annotations/config.linkerd.io~1opaque-ports"
            && o["value"] == "3306"));
        let warnings = resp["response"]["warnings"].as_array().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("config.linkerd.io/bogus")),
            "{warnings:?}"
        );
    }
    // Dry run: the same patch.
    let (_, real) = s
        .post(pod_review("admission.k8s.io/v1", "apps", false).to_string())
        .await;
    let (_, dry) = s
        .post(pod_review("admission.k8s.io/v1", "apps", true).to_string())
        .await;
    let real: Value = serde_json::from_str(&real).unwrap();
    let dry: Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(decode_patch(&real), decode_patch(&dry));
    let metrics = (s.registry_text)();
    assert!(metrics.contains("kinject_proxy_injector_admission_responses_total{kind=\"pod\",decision=\"injected\",reason=\"\"} 4"), "{metrics}");
    let _ = s.stop.send(true);
    s.task.await.unwrap();
}

#[tokio::test]
async fn skipped_pods_and_services() {
    let s = start().await;
    let (status, body) = s
        .post(pod_review("admission.k8s.io/v1", "off", false).to_string())
        .await;
    assert_eq!(status, 200);
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["response"]["allowed"], true);
    // Skipped, but the opaque-ports annotation is still added.
    let patch = decode_patch(&resp);
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations/config.linkerd.io~1opaque-ports", "value": "3306"}])
    );
    let svc = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "s1", "kind": {"kind": "Service"}, "namespace": "apps", "operation": "CREATE",
            "object": {"kind": "Service", "metadata": {"name": "db"},
                       "spec": {"ports": [{"port": 3306}]}}}});
    let (status, body) = s.post(svc.to_string()).await;
    assert_eq!(status, 200);
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(decode_patch(&resp)[1]["value"], "3306");
    let metrics = (s.registry_text)();
    assert!(
        metrics.contains("decision=\"skipped\",reason=\"namespace_disabled_by_label\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let s = start().await;
    let review = |req: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
            .to_string()
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (String::new(), 400, "empty body"),
        ("{not json".into(), 400, "invalid JSON"),
        (r#"{"kind":"Pod","apiVersion":"v1"}"#.into(), 400, "not an AdmissionReview"),
        (r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.into(), 400, "has no request"),
        (review(json!({"operation": "CREATE"})), 400, "has no uid"),
        (r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v9","request":{"uid":"x"}}"#.into(), 400, "unsupported AdmissionReview version"),
        (review(json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"})), 200, "has no object"),
        (review(json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": "nope"})), 200, "has no object"),
        (review(json!({"uid": "u", "kind": {"kind": "ConfigMap"}, "operation": "CREATE", "object": {"data": {}}})), 200, "\"allowed\":true"),
        (review(json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "UPDATE", "object": {"spec": {}}})), 200, "\"allowed\":true"),
        (review(json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"kind": "Pod", "spec": {}}})), 200, "no containers"),
    ];
    for (body, status, needle) in cases {
        let (got, text) = s.post(body.clone()).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
        if status == 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["response"]["allowed"], true);
            assert!(v["response"].get("patch").is_none() || needle == "no containers");
        }
    }
    // Over the body limit.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(server::BODY_LIMIT + 10));
    let (status, text) = s.post(big).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than"), "{text}");
    assert!(
        (s.registry_text)().contains(r#"admission_errors_total{error="too_large"} 1"#),
        "{}",
        (s.registry_text)()
    );
    // Wrong method.
    let r = s.client.get(s.url("/inject")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // Still serving.
    s.assert_serves_a_review().await;
}

#[tokio::test]
async fn hostile_connections_do_not_stop_the_server() {
    let s = start().await;
    // Plain HTTP on the TLS port: the handshake fails, the connection closes.
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    raw.write_all(b"POST /inject HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)) || n.as_ref().is_ok_and(|n| *n > 0 && buf[0] == 0x15),
        "{n:?}"
    );

    // A client that stalls in the TLS handshake, and one that sends its
    // headers a byte at a time, are cut off; others are served meanwhile.
    let mut stalled = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03]).await.unwrap();
    let slow = {
        let ca = s.certs.ca_pem.clone();
        let addr = s.addr;
        tokio::spawn(async move {
            let mut tls = tls_connect_to(addr, &ca).await;
            let start = Instant::now();
            for b in b"POST /inject HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1234567890" {
                if tls.write_all(&[*b]).await.is_err() {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if start.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            start.elapsed()
        })
    };
    for _ in 0..5 {
        s.assert_serves_a_review().await;
    }
    let elapsed = slow.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(15),
        "slow client was not cut off ({elapsed:?})"
    );
    s.assert_serves_a_review().await;
    drop(stalled);
}

type ClientTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A raw TLS connection (no ALPN: HTTP/1.1) to `addr`, trusting `ca_pem`, for
/// clients that misbehave.
async fn tls_connect_to(addr: SocketAddr, ca_pem: &str) -> ClientTls {
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(ca_pem))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

async fn tls_connect(srv: &Server) -> ClientTls {
    tls_connect_to(srv.addr, &srv.certs.ca_pem).await
}

/// A rustls root store trusting the test CA (`pem`).
fn root_store(pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

#[tokio::test]
async fn serving_certificate_reloads_without_restart() {
    let s = start().await;
    s.assert_serves_a_review().await;
    // Rotate to a certificate from a new CA.
    let new_ca = issue(s.certs.dir.path(), "gen-2");
    s.resolver.reload().unwrap();
    // Old trust fails, new trust works: the new certificate is served.
    let old = client_for(&s.certs.ca_pem)
        .post(s.url("/inject"))
        .body(pod_review("admission.k8s.io/v1", "apps", false).to_string())
        .send()
        .await;
    assert!(old.is_err(), "still serving the old certificate");
    let r = client_for(&new_ca)
        .post(s.url("/inject"))
        .body(pod_review("admission.k8s.io/v1", "apps", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A broken file is refused and the good certificate stays.
    std::fs::write(s.certs.dir.path().join("tls.key"), "not a key").unwrap();
    assert!(s.resolver.reload().is_err());
    let r = client_for(&new_ca)
        .post(s.url("/inject"))
        .body(pod_review("admission.k8s.io/v1", "apps", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// A cluster whose namespace labels a test can change.
struct MutableCluster(std::sync::Mutex<Option<String>>);

impl ClusterLookup for MutableCluster {
    async fn namespace(&self, name: &str) -> NamespaceInfo {
        let mut info = NamespaceInfo::unknown(name);
        info.known = true;
        if let Some(v) = self.0.lock().unwrap().clone() {
            info.labels
                .insert("linkerd.io/auto-inject".into(), v.into());
        }
        info
    }
    async fn owner(&self, _ns: &str, _c: Option<(&str, &str)>) -> Option<Owner> {
        None
    }
}

#[tokio::test]
async fn cached_answers_follow_namespace_and_configuration_changes() {
    let engine = Arc::new(ArcSwap::from_pointee(
        Injector::new(InjectorConfig::default()).unwrap(),
    ));
    let mut registry = Registry::default();
    let adm = Admission::new(
        engine.clone(),
        MutableCluster(std::sync::Mutex::new(None)),
        Metrics::register(&mut registry),
        EventSink::disabled(),
    );
    let body = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    let ask = || async {
        serde_json::from_slice::<Value>(&adm.handle(body.as_bytes()).await.1.to_vec()).unwrap()
    };
    let first = ask().await;
    assert_eq!(first, ask().await, "identical requests, identical answers");
    assert!(first["response"]["patch"].is_string());

    // The namespace opts out: the cached injection must not be reused.
    *adm_cluster_label(&adm) = Some("disabled".into());
    let skipped = ask().await;
    assert_ne!(decode_patch(&skipped), decode_patch(&first));
    *adm_cluster_label(&adm) = None;
    assert_eq!(ask().await, first);

    // New configuration: new answers.
    let mut values = kinject_mesh::values::Values::default();
    values.proxy.log_level = "trace".into();
    engine.store(Arc::new(
        Injector::new(InjectorConfig {
            values,
            ..InjectorConfig::default()
        })
        .unwrap(),
    ));
    let after = ask().await;
    assert!(
        String::from_utf8(decode_patch(&after).to_string().into_bytes())
            .unwrap()
            .contains("trace,")
    );
}

fn adm_cluster_label(adm: &Admission<MutableCluster>) -> std::sync::MutexGuard<'_, Option<String>> {
    adm.cluster().0.lock().unwrap()
}

#[tokio::test]
async fn server_prefers_aes_128_gcm_in_both_tls_versions() {
    let srv = start().await;
    let roots = root_store(&srv.certs.ca_pem);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // A client that lists AES-256 first, as OpenSSL does.
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| {
            !matches!(
                s.suite(),
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            )
        });
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert!(
            matches!(
                suite,
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            ),
            "{version:?}: {suite:?}"
        );
    }
}

#[tokio::test]
async fn answers_carry_a_content_length() {
    let srv = start().await;
    let body = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    for _ in 0..2 {
        // The second answer comes from the cache: a head and a shared tail.
        let r = srv
            .client
            .post(srv.url("/inject"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let len = r.content_length().expect("a Content-Length");
        let text = r.text().await.unwrap();
        assert_eq!(len as usize, text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["response"]["uid"], "abc-123");
    }
}

#[tokio::test]
async fn reused_answers_are_gzipped_when_the_client_accepts_it() {
    use std::io::Read as _;
    let srv = start().await;
    let body = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    let mut encodings = Vec::new();
    for accept in ["gzip", "gzip", "identity", "deflate, gzip;q=0.5"] {
        let r = srv
            .client
            .post(srv.url("/inject"))
            .header("content-type", "application/json")
            .header("accept-encoding", accept)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
        let encoding = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let len = r.content_length().expect("a Content-Length");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(len as usize, bytes.len());
        let text = if encoding.as_deref() == Some("gzip") {
            let mut out = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut out)
                .expect("valid gzip");
            assert!(
                bytes.len() * 2 < out.len(),
                "{} -> {}",
                bytes.len(),
                out.len()
            );
            out
        } else {
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["response"]["uid"], "abc-123");
        assert!(
            decode_patch(&v)
                .as_array()
                .is_some_and(|ops| !ops.is_empty())
        );
        encodings.push(encoding);
    }
    // The first answer is new (plain); later ones are reused and compressed
    // unless the client did not ask for gzip.
    let gz = Some("gzip".to_string());
    assert_eq!(encodings, [None, gz.clone(), None, gz]);
    assert!(
        (srv.registry_text)().contains("kinject_proxy_injector_admission_gzip_replies_total 2")
    );
}

#[tokio::test]
async fn a_body_cut_short_is_counted_and_the_server_keeps_serving() {
    let srv = start().await;
    let mut tls = tls_connect(&srv).await;
    // 1000 bytes announced, 10 sent, then the client goes away.
    tls.write_all(b"POST /inject HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"kind\":\"")
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    drop(tls);
    let counted = r#"admission_errors_total{error="bad_body"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(srv.registry_text)().contains(counted) {
        assert!(Instant::now() < deadline, "{}", (srv.registry_text)());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.assert_serves_a_review().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed() {
    let srv = start().await;
    let mut silent = tls_connect(&srv).await;
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // The server closes the connection (EOF, or a reset while closing).
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("a silent connection was still open after 20 s");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= server::FIRST_BYTE_TIMEOUT - Duration::from_millis(500),
        "closed too early ({elapsed:?})"
    );
    // A connection whose request comes at once is served as before.
    srv.assert_serves_a_review().await;
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_408_and_others_are_served() {
    let srv = start().await;
    let mut tls = tls_connect(&srv).await;
    let body = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    tls.write_all(
        format!(
            "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let start = Instant::now();
    // One byte every 200 ms: 60 bytes would take 12 s, past the deadline.
    let trickle = tokio::spawn(async move {
        for b in body.as_bytes().iter().take(60) {
            if tls.write_all(&[*b]).await.is_err() {
                break;
            }
            tls.flush().await.ok();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Others are served while the slow body holds its connection.
    for _ in 0..3 {
        srv.assert_serves_a_review().await;
    }
    let answer = trickle.await.unwrap();
    let elapsed = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("did not arrive within 10s"), "{answer}");
    assert!(
        elapsed >= server::BODY_READ_TIMEOUT - Duration::from_millis(500)
            && elapsed < server::BODY_READ_TIMEOUT + Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(
        (srv.registry_text)().contains(r#"admission_errors_total{error="body_timeout"} 1"#),
        "{}",
        (srv.registry_text)()
    );
}

#[tokio::test]
async fn request_bodies_share_a_memory_budget() {
    const BUDGET: usize = 64 * 1024;
    let srv = start_with(BUDGET).await;
    let budget = srv.budget.clone();

    // A body larger than the whole budget can never be held: 503 at once.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(BUDGET + 10));
    let started = Instant::now();
    let (status, text) = srv.post(big).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("server busy"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A client announces all but 100 bytes of the budget and sends 10: what
    // it announced is reserved before anything is read.
    let mut holder = tls_connect(&srv).await;
    holder
        .write_all(
            format!(
                "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{\"kind\":\"",
                BUDGET - 100
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    holder.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_use() < BUDGET - 100 {
        assert!(Instant::now() < deadline, "held: {}", budget.in_use());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = format!("admission_request_body_bytes {}", BUDGET - 100);
    assert!(
        (srv.registry_text)().contains(&held),
        "{}",
        (srv.registry_text)()
    );
    // A review waits for budget instead of being read, and is answered once
    // the holder goes away (after ~2 s).
    let review = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    assert!(review.len() > 100);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(holder);
    });
    let started = Instant::now();
    let (status, text) = srv.post(review).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{text}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < server::BODY_READ_TIMEOUT,
        "answered after {waited:?}: the budget did not hold it back"
    );
    release.await.unwrap();
    // A body of unannounced length (chunked) is counted as it arrives: one
    // that outgrows the whole budget gets 503 too.
    let mut chunked = tls_connect(&srv).await;
    let chunk = vec![b' '; 16 * 1024];
    chunked
        .write_all(b"POST /inject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..(BUDGET / chunk.len() + 2) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if chunked.write_all(&frame).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), chunked.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Everything is given back.
    assert_eq!(budget.in_use(), 0);
    let text = (srv.registry_text)();
    assert!(text.contains("admission_request_body_bytes 0"), "{text}");
    assert!(
        text.contains(r#"admission_errors_total{error="busy"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_waiting_for_budget_does_not_stall_its_connection() {
    const MIB: usize = 1024 * 1024;
    let srv = start_with(4 * MIB).await;
    let budget = srv.budget.clone();
    // 3 MiB of the budget is held by a body announced and never sent.
    let mut holder = tls_connect(&srv).await;
    holder
        .write_all(
            format!(
                "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                3 * MIB
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    holder.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_use() < 3 * MIB {
        assert!(Instant::now() < deadline, "held: {}", budget.in_use());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Over one HTTP/2 connection: a 2 MiB body that must wait for budget,
    // then a review that fits.
    let r = srv.client.get(srv.url("/live")).send().await.unwrap();
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "the client must multiplex"
    );
    let text = (srv.registry_text)();
    assert!(
        text.contains(r#"connections_total{protocol="h2"} 1"#),
        "{text}"
    );
    let waiting = {
        let client = srv.client.clone();
        let url = srv.url("/inject");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .body(vec![b' '; 2 * MIB])
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let r = srv
        .client
        .post(srv.url("/inject"))
        .header("content-type", "application/json")
        .body(pod_review("admission.k8s.io/v1", "apps", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the review waited {:?} behind a stream that waits for budget",
        started.elapsed()
    );
    // The waiting body is read once the holder goes away (and is no review).
    drop(holder);
    assert_eq!(waiting.await.unwrap(), 400);
}

/// Reads one HTTP/1.1 response with a Content-Length: (status, body).
async fn read_response(tls: &mut ClientTls) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).await.unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_head_limit_and_slow_heads_do_not() {
    let srv = start().await;
    let review = pod_review("admission.k8s.io/v1", "apps", false).to_string();
    let request = format!(
        "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{review}",
        review.len()
    );
    // No ALPN: HTTP/1.1, as the API server's webhook client speaks it.
    let mut tls = tls_connect(&srv).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut tls).await.0, 200);
    // Idle for longer than the head limit: a pooled connection the client
    // reuses must still be open (closing it here is the race that fails
    // reviews with EOF).
    tokio::time::sleep(server::HEADER_READ_TIMEOUT + Duration::from_secs(2)).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut tls).await.0, 200);
    let text = (srv.registry_text)();
    assert!(
        text.contains(r#"connections_total{protocol="http/1.1"} 1"#),
        "both requests on one connection: {text}"
    );
    // A head that trickles in on the same connection is still cut off.
    let started = Instant::now();
    let mut cut = false;
    for b in b"POST /inject HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789abcdefghij" {
        if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if !cut {
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
        cut = matches!(r, Ok(Ok(_)) | Ok(Err(_)));
    }
    let elapsed = started.elapsed();
    assert!(cut, "slow head not cut off");
    assert!(
        elapsed < server::HEADER_READ_TIMEOUT + Duration::from_secs(4),
        "slow head cut off only after {elapsed:?}"
    );
}
