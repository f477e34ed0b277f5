//! The operator's PKI against a real Kubernetes 1.20 API server: `kinject
//! install` with the operator's anchors and issuer (or an external issuer),
//! `kinject identity` with exactly the installed RBAC, serving Certify over
//! TLS, and rotations done as docs/IDENTITY.md tells users to do them.
//!
//! Throughout each rotation a client certifies continuously, as a fresh proxy
//! would (TLS 1.3, no ALPN, the identity service name verified against the
//! anchors that proxy was given), and every leaf is verified as peers verify
//! it, against the anchors of every proxy still running. Not one call may
//! fail, and not one chain may fail to verify.
//! Run by `scripts/test.sh` (KINJECT_E2E=1), one test at a time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinject_identity::ca::{self, Ca, CertAndKey, generate_root};
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use support::{Cluster, Identity, enabled, sa_token, wait_for};

const DAY: Duration = Duration::from_secs(86_400);
const ID: &str = "web.apps.serviceaccount.identity.linkerd.cluster.local";
const SERVICE_NAME: &str = "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local";

/// `kinject install ARGS | kubectl apply -f -`, the namespace first.
fn install(k: &Cluster, args: &[&str]) {
    support::install_and_apply(k, args);
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = rcgen::CertificateParams::new(vec![ID.to_string()]).expect("params");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, ID);
    p.serialize_request(&key).expect("csr").der().to_vec()
}

/// Verifies a leaf and its intermediates as a peer proxy does (rustls'
/// webpki, as server and as client certificate), against a bundle.
fn verify(leaf: &[u8], intermediates: &[Vec<u8>], anchors_pem: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(anchors_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let roots = Arc::new(roots);
    let end = CertificateDer::from(leaf.to_vec());
    let mids: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*server,
        &end,
        &mids,
        &ServerName::try_from(ID.to_string()).map_err(|e| e.to_string())?,
        &[],
        UnixTime::now(),
    )
    .map_err(|e| format!("as a server certificate: {e}"))?;
    let client = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())?;
    client
        .verify_client_cert(&end, &mids, UnixTime::now())
        .map_err(|e| format!("as a client certificate: {e}"))?;
    Ok(())
}

/// What the continuous certifier saw.
#[derive(Default)]
struct Tally {
    calls: usize,
    failures: Vec<String>,
    /// DER of the issuer of the latest leaf.
    last_issuer: Vec<u8>,
}

/// The proxies' anchors over time: new proxies get `fresh` (what the
/// injector hands out now); `running` are the anchors of every proxy still
/// running, each of which must verify every new leaf.
#[derive(Clone)]
struct Proxies {
    fresh: Arc<Mutex<String>>,
    running: Arc<Mutex<Vec<String>>>,
}

/// Certifies continuously, each call on a new TLS connection as a starting
/// proxy makes it, until `stop`.
async fn certify_continuously(
    addr: std::net::SocketAddr,
    token: String,
    proxies: Proxies,
    tally: Arc<Mutex<Tally>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopped = *stop.borrow();
        if stopped {
            break;
        }
        let anchors = proxies.fresh.lock().expect("lock").clone();
        let running = proxies.running.lock().expect("lock").clone();
        let result = async {
            let channel = kinject_runtime::grpc_tls::connect_as_proxy(addr, SERVICE_NAME, &anchors)
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            let answer = IdentityClient::new(channel)
                .certify(CertifyRequest {
                    identity: ID.into(),
                    token: token.as_bytes().to_vec(),
                    certificate_signing_request: csr(),
                })
                .await
                .map_err(|e| format!("certify: {e}"))?
                .into_inner();
            for peer in &running {
                verify(
                    &answer.leaf_certificate,
                    &answer.intermediate_certificates,
                    peer,
                )?;
            }
            Ok::<_, String>(
                answer
                    .intermediate_certificates
                    .first()
                    .cloned()
                    .unwrap_or_default(),
            )
        }
        .await;
        {
            let mut t = tally.lock().expect("lock");
            t.calls += 1;
            match result {
                Ok(issuer) => t.last_issuer = issuer,
                Err(e) => t.failures.push(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The continuous certifier on its own runtime, started with every proxy
/// holding `anchors_pem`.
struct Certifier {
    rt: tokio::runtime::Runtime,
    proxies: Proxies,
    tally: Arc<Mutex<Tally>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Certifier {
    fn start(addr: std::net::SocketAddr, token: String, anchors_pem: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let proxies = Proxies {
            fresh: Arc::new(Mutex::new(anchors_pem.to_string())),
            running: Arc::new(Mutex::new(vec![anchors_pem.to_string()])),
        };
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = rt.spawn(certify_continuously(
            addr,
            token,
            proxies.clone(),
            tally.clone(),
            stop_rx,
        ));
        Self {
            rt,
            proxies,
            tally,
            stop,
            task,
        }
    }

    /// Stops after the call in flight.
    fn stop(self) {
        self.stop.send_replace(true);
        self.rt.block_on(self.task).expect("certifier");
    }
}

fn der(pem: &str) -> Vec<u8> {
    ca::parse_pem_cert("test", pem).expect("pem")
}

fn ready(id: &Identity) -> bool {
    support::admin_get(id.admin, "/ready").0 == 200
}

/// Waits until the certifier's latest leaf comes from `issuer`; the time it took.
fn wait_for_issuer(tally: &Arc<Mutex<Tally>>, issuer: &str, what: &str) -> Duration {
    let want = der(issuer);
    let started = Instant::now();
    wait_for(what, Duration::from_secs(20), || {
        (tally.lock().expect("lock").last_issuer == want).then_some(())
    });
    started.elapsed()
}

fn published_bundle(k: &Cluster) -> String {
    let cm = k.json(&["get", "configmap", "-n", "linkerd", "linkerd-ca-bundle"]);
    cm["data"]["trust-anchors.pem"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// cert-manager's way: install with `--identity-external-issuer`, identity
/// waits for the Secret (not ready, no error), then follows every renewal
/// within seconds with no restart and no failed call, and keeps the last
/// good issuer when an update is broken.
#[test]
fn an_external_issuer_is_followed_without_a_restart() {
    if !enabled("an_external_issuer_is_followed_without_a_restart") {
        return;
    }
    let k = Cluster::start();
    let dir = tempfile::tempdir().expect("tmp");
    let now = time::OffsetDateTime::now_utc();
    let root = generate_root("root.linkerd.cluster.local", now, 365 * DAY).expect("root");
    let anchors = write(dir.path(), "ca.crt", &root.cert_pem);
    install(
        &k,
        &[
            "--identity-trust-anchors-file",
            &anchors,
            "--identity-external-issuer",
        ],
    );
    let cm = k.json(&[
        "get",
        "configmap",
        "-n",
        "linkerd",
        "linkerd-identity-trust-roots",
    ]);
    assert_eq!(cm["data"]["ca-bundle.crt"], root.cert_pem.as_str());
    let config = k.json(&["get", "configmap", "-n", "linkerd", "linkerd-config"]);
    let values = config["data"]["values"].as_str().expect("values");
    assert!(
        !values.contains("crtPEM") && !values.contains("keyPEM"),
        "no issuer material in linkerd-config: {values}"
    );
    assert!(values.contains("scheme: kubernetes.io/tls"), "{values}");
    k.namespace("apps", &[]);
    k.ok(&["create", "serviceaccount", "-n", "apps", "web"]);
    let token = sa_token(&k, "apps", "web");

    let restricted = k.service_account_kubeconfig("linkerd", "linkerd-identity");
    let port = support::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let id = Identity::start_as(
        &k,
        &restricted,
        &[
            "--issuer-scheme",
            "kubernetes.io/tls",
            "--grpc-addr",
            &addr.to_string(),
        ],
    );
    // Waiting for cert-manager: not ready, and it says so without an error.
    wait_for("identity's admin server", Duration::from_secs(20), || {
        let (code, body) = support::admin_get(id.admin, "/ready");
        (code != 0).then_some((code, body))
    });
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = support::admin_get(id.admin, "/ready");
    assert_ne!(code, 200, "ready without an issuer: {body}");
    assert!(body.contains("no issuer yet"), "{body}");
    let log = std::fs::read_to_string(&id.log).unwrap_or_default();
    assert!(log.contains("waiting for the issuer Secret"), "{log}");
    assert!(!log.contains("ERROR"), "waiting is not an error: {log}");

    let tls_secret = |issuer: &CertAndKey| {
        use base64::Engine as _;
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {{name: linkerd-identity-issuer, namespace: linkerd}}\ndata:\n  tls.crt: {}\n  tls.key: {}\n  ca.crt: {}\n",
            b(&issuer.cert_pem),
            b(&issuer.key_pem),
            b(&root.cert_pem)
        )
    };
    let first = Ca::new_issuer(&root, now, 2 * DAY).expect("issuer");
    k.apply(&tls_secret(&first));
    wait_for(
        "identity ready with the issuer",
        Duration::from_secs(20),
        || ready(&id).then_some(()),
    );

    let certifier = Certifier::start(addr, token, &root.cert_pem);
    let tally = certifier.tally.clone();
    wait_for_issuer(&tally, &first.cert_pem, "a leaf from the first issuer");

    // cert-manager renews: the next calls use the new issuer.
    for round in 0..2 {
        let renewed =
            Ca::new_issuer(&root, time::OffsetDateTime::now_utc(), 2 * DAY).expect("issuer");
        k.apply(&tls_secret(&renewed));
        let took = wait_for_issuer(&tally, &renewed.cert_pem, "a leaf from the renewed issuer");
        eprintln!("renewal {round}: the renewed issuer signed within {took:?}");
        assert!(took <= Duration::from_secs(5), "renewal took {took:?}");
        assert!(ready(&id), "ready throughout");
    }
    let in_use = tally.lock().expect("lock").last_issuer.clone();

    // A broken renewal (the key of another issuer) is refused; the last good
    // issuer keeps signing.
    let other = Ca::new_issuer(&root, now, 2 * DAY).expect("issuer");
    let broken = CertAndKey {
        cert_pem: Ca::new_issuer(&root, now, 2 * DAY)
            .expect("issuer")
            .cert_pem,
        key_pem: other.key_pem,
    };
    k.apply(&tls_secret(&broken));
    wait_for(
        "the refused update counted",
        Duration::from_secs(10),
        || {
            support::metric(id.admin, "kinject_identity_issuer_reload_failures_total")
                .filter(|n| *n >= 1.0)
        },
    );
    let calls = tally.lock().expect("lock").calls;
    wait_for(
        "more calls after the broken update",
        Duration::from_secs(10),
        || (tally.lock().expect("lock").calls >= calls + 5).then_some(()),
    );
    assert_eq!(
        tally.lock().expect("lock").last_issuer,
        in_use,
        "the last good issuer signs"
    );
    assert!(ready(&id));
    let log = std::fs::read_to_string(&id.log).unwrap_or_default();
    assert!(
        log.contains("does not match the certificate"),
        "the reason is logged: {log}"
    );

    certifier.stop();
    let t = tally.lock().expect("lock");
    eprintln!("{} Certify calls, {} failed", t.calls, t.failures.len());
    assert!(t.calls > 20, "the certifier ran: {}", t.calls);
    assert!(t.failures.is_empty(), "failed calls: {:?}", t.failures);
}

/// Linkerd's trust-anchor rotation, through `kinject install` with the
/// operator's files: bundle, roll, new issuer, drop the old anchor. At every
/// step new proxies certify and every leaf verifies against every running
/// proxy's anchors; the wrong order is refused.
#[test]
fn trust_anchor_rotation_without_a_failed_call() {
    if !enabled("trust_anchor_rotation_without_a_failed_call") {
        return;
    }
    let k = Cluster::start();
    let dir = tempfile::tempdir().expect("tmp");
    let now = time::OffsetDateTime::now_utc();
    let old = generate_root("old-root", now, 365 * DAY).expect("root");
    let new = generate_root("new-root", now, 365 * DAY).expect("root");
    let old_issuer = Ca::new_issuer(&old, now, 30 * DAY).expect("issuer");
    let new_issuer = Ca::new_issuer(&new, now, 30 * DAY).expect("issuer");
    let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
    let f = |name: &str, text: &str| write(dir.path(), name, text);
    let (old_crt, old_key) = (
        f("old.crt", &old_issuer.cert_pem),
        f("old.key", &old_issuer.key_pem),
    );
    let (new_crt, new_key) = (
        f("new.crt", &new_issuer.cert_pem),
        f("new.key", &new_issuer.key_pem),
    );
    let (old_anchor, both, new_anchor) = (
        f("old.pem", &old.cert_pem),
        f("bundle.pem", &bundle),
        f("new.pem", &new.cert_pem),
    );
    let pki = |anchors: &str, crt: &str, key: &str| {
        vec![
            "--identity-trust-anchors-file".to_string(),
            anchors.to_string(),
            "--identity-issuer-certificate-file".to_string(),
            crt.to_string(),
            "--identity-issuer-key-file".to_string(),
            key.to_string(),
        ]
    };
    let install_with = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        install(&k, &args);
    };
    install_with(pki(&old_anchor, &old_crt, &old_key));
    k.namespace("apps", &[]);
    k.ok(&["create", "serviceaccount", "-n", "apps", "web"]);
    let token = sa_token(&k, "apps", "web");
    let restricted = k.service_account_kubeconfig("linkerd", "linkerd-identity");
    let port = support::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let id = Identity::start_as(
        &k,
        &restricted,
        &[
            "--issuer-scheme",
            "linkerd.io/tls",
            "--grpc-addr",
            &addr.to_string(),
        ],
    );
    wait_for("identity ready", Duration::from_secs(30), || {
        ready(&id).then_some(())
    });

    let certifier = Certifier::start(addr, token, &old.cert_pem);
    let (tally, proxies) = (certifier.tally.clone(), certifier.proxies.clone());
    wait_for_issuer(&tally, &old_issuer.cert_pem, "a leaf from the old issuer");

    // The wrong order is refused by install: the new anchor alone does not
    // sign the issuer in use.
    let args = pki(&new_anchor, &old_crt, &old_key);
    let mut all: Vec<&str> = vec!["install"];
    all.extend(args.iter().map(String::as_str));
    let (code, _, err) = support::kinject_cli(&k, &all, None);
    assert_eq!(code, 1);
    assert!(err.contains("not signed by the trust root"), "{err}");

    // 1. The bundle, with the old issuer: published to new pods.
    install_with(pki(&both, &old_crt, &old_key));
    wait_for("the bundle published", Duration::from_secs(20), || {
        let b = published_bundle(&k);
        (b.contains(old.cert_pem.trim()) && b.contains(new.cert_pem.trim())).then_some(())
    });
    let injector_anchors = wait_for("the injector's anchors", Duration::from_secs(20), || {
        let s = k.json(&[
            "get",
            "secret",
            "-n",
            "linkerd",
            "linkerd-proxy-injector-k8s-tls",
        ]);
        let text = support::secret_text(&s, "ca.crt");
        text.contains(new.cert_pem.trim()).then_some(text)
    });
    assert!(injector_anchors.contains(old.cert_pem.trim()));
    *proxies.fresh.lock().expect("lock") = bundle.clone();
    // 2. The proxies rolled: every running proxy has both anchors.
    *proxies.running.lock().expect("lock") = vec![bundle.clone()];
    std::thread::sleep(Duration::from_secs(1));

    // Dropping the issuer's anchor now (an operator editing the ConfigMap)
    // is refused by identity, which keeps the last good CA.
    let cm = |pem: &str| {
        let indent: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: linkerd-identity-trust-roots, namespace: linkerd}}\ndata:\n  ca-bundle.crt: |\n{indent}"
        )
    };
    k.apply(&cm(&new.cert_pem));
    wait_for(
        "the refused bundle counted",
        Duration::from_secs(10),
        || {
            support::metric(id.admin, "kinject_identity_issuer_reload_failures_total")
                .filter(|n| *n >= 1.0)
        },
    );
    k.apply(&cm(&bundle));

    // 3. The new issuer, from the new anchor.
    let applied = Instant::now();
    install_with(pki(&both, &new_crt, &new_key));
    wait_for_issuer(&tally, &new_issuer.cert_pem, "a leaf from the new issuer");
    eprintln!(
        "the new issuer signed within {:?} of `kinject install | kubectl apply`",
        applied.elapsed()
    );

    // 4. The old anchor removed, then the proxies rolled again.
    install_with(pki(&new_anchor, &new_crt, &new_key));
    wait_for(
        "only the new anchor published",
        Duration::from_secs(20),
        || {
            let b = published_bundle(&k);
            (!b.contains(old.cert_pem.trim()) && b.contains(new.cert_pem.trim())).then_some(())
        },
    );
    *proxies.fresh.lock().expect("lock") = new.cert_pem.clone();
    *proxies.running.lock().expect("lock") = vec![bundle.clone(), new.cert_pem.clone()];
    let calls = tally.lock().expect("lock").calls;
    wait_for(
        "calls with the new anchor alone",
        Duration::from_secs(20),
        || (tally.lock().expect("lock").calls >= calls + 10).then_some(()),
    );
    *proxies.running.lock().expect("lock") = vec![new.cert_pem.clone()];
    let calls = tally.lock().expect("lock").calls;
    wait_for("calls after the last roll", Duration::from_secs(20), || {
        (tally.lock().expect("lock").calls >= calls + 10).then_some(())
    });
    assert!(ready(&id));

    certifier.stop();
    let t = tally.lock().expect("lock");
    eprintln!(
        "{} Certify calls through the rotation, {} failed",
        t.calls,
        t.failures.len()
    );
    assert!(t.failures.is_empty(), "failed calls: {:?}", t.failures);
    let (code, out, err) = support::kinject_cli(&k, &["check", "--wait", "0s"], None);
    for label in [
        "trust anchors are using supported crypto algorithm",
        "issuer cert is issued by the trust anchor",
    ] {
        let line = out.lines().find(|l| l.contains(label)).unwrap_or_default();
        assert!(
            line.ends_with("[ok]"),
            "{label}: {line}\n{out}{err} ({code})"
        );
    }
}

/// Bad operator material is refused by install, naming the file and what to
/// do, and nothing is printed.
#[test]
fn install_refuses_bad_operator_material() {
    let dir = tempfile::tempdir().expect("tmp");
    let now = time::OffsetDateTime::now_utc();
    let root = generate_root("root", now, 365 * DAY).expect("root");
    let issuer = Ca::new_issuer(&root, now, 30 * DAY).expect("issuer");
    let testdata = |n: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../identity/testdata")
            .join(n)
            .display()
            .to_string()
    };
    let f = |name: &str, text: &str| write(dir.path(), name, text);
    let (anchors, crt, key) = (
        f("ca.crt", &root.cert_pem),
        f("issuer.crt", &issuer.cert_pem),
        f("issuer.key", &issuer.key_pem),
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinject"))
            .arg("install")
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let full = |a: &str, c: &str, k: &str| {
        run(&[
            "--identity-trust-anchors-file",
            a,
            "--identity-issuer-certificate-file",
            c,
            "--identity-issuer-key-file",
            k,
        ])
    };
    // The good case renders the Secret and the ConfigMap; the key is in
    // the Secret only.
    let (code, out, err) = full(&anchors, &crt, &key);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("name: linkerd-identity-trust-roots"));
    assert!(out.contains("name: linkerd-identity-issuer"));
    assert!(out.contains("--issuer-scheme"));
    assert!(
        !out.contains("PRIVATE KEY"),
        "the key is base64 in the Secret only"
    );
    // A SEC1 key (openssl, step, Linkerd) works, for a certificate it matches.
    let sec1 = {
        let pair = rcgen::KeyPair::from_pem(&issuer.key_pem).expect("key");
        use p256::pkcs8::DecodePrivateKey;
        let sk = p256::SecretKey::from_pkcs8_der(pair.serialized_der()).expect("p256");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(sk.to_sec1_der().expect("sec1").as_slice());
        format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n")
    };
    let (code, _, err) = full(&anchors, &crt, &f("issuer-sec1.key", &sec1));
    assert_eq!(code, 0, "SEC1: {err}");
    let cases: Vec<(String, String, String, &str)> = vec![
        (
            anchors.clone(),
            crt.clone(),
            testdata("pkcs1-rsa.key"),
            "an RSA key is not supported",
        ),
        (
            anchors.clone(),
            crt.clone(),
            testdata("sec1-p384.key"),
            "an ECDSA P-384 key is not supported",
        ),
        (
            anchors.clone(),
            crt.clone(),
            testdata("pkcs8-encrypted.key"),
            "the private key is encrypted",
        ),
        (
            crt.clone(),
            crt.clone(),
            key.clone(),
            "not signed by the trust root",
        ),
        (
            anchors.clone(),
            f("leaf.crt", &{
                let ca = Ca::load(&root.cert_pem, &issuer, now).expect("ca");
                ca.issue(&["x.example".into()], &[], now, DAY)
                    .expect("leaf")
                    .chain_pem
            }),
            key.clone(),
            "is not a CA",
        ),
        (
            f(
                "other.pem",
                &generate_root("other", now, DAY).expect("root").cert_pem,
            ),
            crt.clone(),
            key.clone(),
            "not signed by the trust root",
        ),
    ];
    for (a, c, k, want) in cases {
        let (code, out, err) = full(&a, &c, &k);
        assert_eq!(code, 1, "{a} {c} {k}: {err}");
        assert!(out.is_empty(), "nothing printed on error");
        assert!(err.contains(want), "want {want:?}: {err}");
        assert!(
            err.contains("--identity-"),
            "names the flag and file: {err}"
        );
    }
    // Contradictions and missing halves.
    for (args, want) in [
        (
            vec!["--identity-trust-anchors-file", anchors.as_str()],
            "needs the issuer it signs",
        ),
        (
            vec![
                "--identity-issuer-certificate-file",
                crt.as_str(),
                "--identity-issuer-key-file",
                key.as_str(),
            ],
            "needs the trust anchors",
        ),
        (
            vec![
                "--identity-trust-anchors-file",
                anchors.as_str(),
                "--identity-issuer-certificate-file",
                crt.as_str(),
            ],
            "needs --identity-issuer-key-file",
        ),
        (
            vec![
                "--identity-external-issuer",
                "--identity-trust-anchors-file",
                anchors.as_str(),
                "--identity-issuer-key-file",
                key.as_str(),
            ],
            "drop --identity-issuer-certificate-file",
        ),
        (vec!["--identity-external-ca"], "needs your issuer"),
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty());
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
    }
    // The same settings as values, as Linkerd's chart takes them.
    let values = f(
        "pki.yaml",
        &format!(
            "identityTrustAnchorsPEM: |\n{}identity:\n  issuer:\n    tls:\n      crtPEM: |\n{}      keyPEM: |\n{}",
            root.cert_pem
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
            issuer
                .cert_pem
                .lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>(),
            issuer
                .key_pem
                .lines()
                .map(|l| format!("        {l}\n"))
                .collect::<String>(),
        ),
    );
    let (code, by_values, err) = run(&["--values", &values]);
    assert_eq!(code, 0, "{err}");
    let (_, by_flags, _) = full(&anchors, &crt, &key);
    assert_eq!(
        by_values, by_flags,
        "values and flags are the same settings"
    );
}

/// SIGTERM during a burst of Certify calls: identity turns unready at once,
/// keeps answering through its drain period (endpoint removal takes that
/// long to reach clients), finishes what is in flight, gives its Lease up
/// and exits 0. Every call that started before the drain ended succeeds.
#[test]
fn identity_drains_on_sigterm() {
    if !enabled("identity_drains_on_sigterm") {
        return;
    }
    let k = Cluster::start();
    install(&k, &[]);
    k.namespace("apps", &[]);
    k.ok(&["create", "serviceaccount", "-n", "apps", "web"]);
    let token = sa_token(&k, "apps", "web");
    let restricted = k.service_account_kubeconfig("linkerd", "linkerd-identity");
    let port = support::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let drain = Duration::from_secs(2);
    let mut id = Identity::start_as(
        &k,
        &restricted,
        &["--grpc-addr", &addr.to_string(), "--drain", "2s"],
    );
    wait_for("identity ready", Duration::from_secs(30), || {
        ready(&id).then_some(())
    });
    wait_for("identity holds its Lease", Duration::from_secs(20), || {
        let l = k.json(&["get", "lease", "-n", "linkerd", "kinject-identity"]);
        l["spec"]["holderIdentity"].as_str().map(|_| ())
    });
    let secret = k.json(&["get", "secret", "-n", "linkerd", "linkerd-identity-issuer"]);
    let anchors = support::secret_text(&secret, "ca.crt");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    // (started, result) of every call, from 8 connections calling in a loop.
    type Calls = Arc<Mutex<Vec<(Instant, Result<(), String>)>>>;
    let calls: Calls = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let channel = rt
            .block_on(kinject_runtime::grpc_tls::connect_as_proxy(
                addr,
                SERVICE_NAME,
                &anchors,
            ))
            .expect("connect");
        let (calls, stop, token) = (calls.clone(), stop_rx.clone(), token.clone());
        clients.push(rt.spawn(async move {
            let mut client = IdentityClient::new(channel);
            loop {
                let stopped = *stop.borrow();
                if stopped {
                    break;
                }
                let started = Instant::now();
                let r = client
                    .certify(CertifyRequest {
                        identity: ID.into(),
                        token: token.as_bytes().to_vec(),
                        certificate_signing_request: csr(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                calls.lock().expect("lock").push((started, r));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = calls.lock().expect("lock").len();
    assert!(before > 8, "the burst is running: {before} calls");

    let admin = id.admin;
    let sigterm = Instant::now();
    let pid_exit = std::thread::spawn(move || {
        let status = id.terminate(Duration::from_secs(20));
        (status, id)
    });
    // Unready at once, still answering.
    let unready = wait_for("unready after SIGTERM", Duration::from_secs(2), || {
        let (code, body) = support::admin_get(admin, "/ready");
        (code == 503 || body.contains("stopping")).then_some(sigterm.elapsed())
    });
    eprintln!("unready {unready:?} after SIGTERM");
    // The clients stop calling just before the drain ends, as a client does
    // once the endpoint is gone.
    std::thread::sleep(drain.saturating_sub(sigterm.elapsed() + Duration::from_millis(300)));
    stop_tx.send_replace(true);
    for c in clients {
        rt.block_on(c).expect("client");
    }
    let (status, id) = pid_exit.join().expect("join");
    let status = status.expect("identity exits after its drain");
    let exited = sigterm.elapsed();
    eprintln!("identity exited {status} {exited:?} after SIGTERM");
    assert!(status.success(), "exit 0: {status}");
    assert!(
        exited >= drain,
        "it drained for {drain:?} first ({exited:?})"
    );
    assert!(exited < drain + Duration::from_secs(5), "{exited:?}");
    let calls = calls.lock().expect("lock");
    let during: Vec<_> = calls.iter().filter(|(t, _)| *t >= sigterm).collect();
    let failed: Vec<_> = calls.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!(
        "{} calls, {} of them after SIGTERM, {} failed",
        calls.len(),
        during.len(),
        failed.len()
    );
    assert!(during.len() > 8, "calls were answered during the drain");
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    let log = std::fs::read_to_string(&id.log).unwrap_or_default();
    assert!(log.contains("released the lease"), "{log}");
    let lease = k.json(&["get", "lease", "-n", "linkerd", "kinject-identity"]);
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is free for a successor: {lease}"
    );
}
