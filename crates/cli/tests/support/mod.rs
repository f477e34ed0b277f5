//! Real-cluster test harness: a loopback etcd + kube-apiserver +
//! kube-controller-manager (`scripts/k8s-env.sh`), and `kinject proxy-injector`
//! registered by URL to 127.0.0.1. No kubelet: pods stay Pending and the tests
//! assert on their specs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the cluster tests should run. `scripts/test.sh` (and so CI) always
/// sets `KINJECT_E2E=1`; a plain `cargo test` skips them and says so.
pub fn enabled(test: &str) -> bool {
    if std::env::var("KINJECT_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("SKIPPED {test}: real-cluster test; run scripts/test.sh or set KINJECT_E2E=1");
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `cmd` to its end with `stdin` (none: an empty stdin) and its output
/// captured.
fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("output")
}

/// kubectl with a kubeconfig (for threads that do not hold the `Cluster`).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    run(cmd, stdin)
}

/// Runs the kinject CLI against the test cluster: (exit code, stdout, stderr).
pub fn kinject_cli(k: &Cluster, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinject"));
    cmd.args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env_remove("LINKERD_NAMESPACE");
    let out = run(cmd, stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kinject install ARGS | kubectl apply -f -`, the namespace (the first
/// document) first; the manifest.
pub fn install_and_apply(k: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    let (code, manifest, err) = kinject_cli(k, &all, None);
    assert_eq!(code, 0, "install {args:?}: {err}");
    k.apply(manifest.split("---\n").next().expect("namespace"));
    k.apply(&manifest);
    manifest
}

/// A TokenRequest token for a ServiceAccount, with the audience the
/// proxy's identity token has (`identity.l5d.io`).
pub fn sa_token(k: &Cluster, ns: &str, sa: &str) -> String {
    token_request(k, ns, sa, r#""audiences":["identity.l5d.io"],"#)
}

/// A TokenRequest token for a ServiceAccount, for the API server itself.
pub fn api_token(k: &Cluster, ns: &str, sa: &str) -> String {
    token_request(k, ns, sa, "")
}

fn token_request(k: &Cluster, ns: &str, sa: &str, audiences: &str) -> String {
    let body = format!(
        r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{{{audiences}"expirationSeconds":600}}}}"#
    );
    let out = k.kubectl(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
            "-f",
            "-",
        ],
        Some(&body),
    );
    assert!(
        out.status.success(),
        "TokenRequest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("TokenRequest JSON");
    v["status"]["token"].as_str().expect("token").to_string()
}

/// Like `wait_for`, but `None` on timeout (the caller says what went wrong).
pub fn wait_for_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// Started by `scripts/cluster.sh` (with a node) rather than `k8s-env.sh`.
    pub nodes: bool,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(repo_root().join("scripts/k8s-env.sh"))
            .arg("start")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/k8s-env.sh");
        assert!(
            out.status.success(),
            "the test cluster did not start (see output above)"
        );
        let kubeconfig = dir.path().join("kubeconfig");
        Self {
            dir,
            kubeconfig,
            nodes: false,
        }
    }

    /// A cluster whose pods run: `scripts/cluster.sh up DIR <version>`.
    pub fn start_with_node(version: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let out = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("up")
            .arg(dir.path())
            .arg(version)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/cluster.sh");
        let cluster = Self {
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            nodes: true,
        };
        assert!(
            out.status.success(),
            "the {version} cluster did not start (see output above)"
        );
        eprintln!(
            "cluster {version} with a Ready node in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig, args, stdin)
    }

    /// Runs kubectl and returns stdout, panicking with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl JSON")
    }

    /// A namespace whose default ServiceAccount exists (pods need it).
    pub fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("  labels:\n{labels}")
        };
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n{labels}"
        ));
        // Before 1.24 the API server refuses pods until the token controller
        // has made the ServiceAccount's token Secret and listed it there;
        // later servers project tokens and make no Secret.
        let token_secret = self.json(&["version"])["serverVersion"]["minor"]
            .as_str()
            .and_then(|m| m.trim_end_matches('+').parse::<u32>().ok())
            .is_some_and(|minor| minor < 24);
        wait_for(
            &format!("serviceaccount default in {name}"),
            Duration::from_secs(30),
            || {
                let out = self.kubectl(
                    &["get", "serviceaccount", "-n", name, "default", "-o", "json"],
                    None,
                );
                let sa: Value = serde_json::from_slice(&out.stdout).ok()?;
                let listed = sa["secrets"].as_array().is_some_and(|s| !s.is_empty());
                (!token_secret || listed).then_some(())
            },
        );
    }

    /// Pods of namespace `ns` matching `selector`, once at least `n` exist.
    pub fn pods(&self, ns: &str, selector: &str, n: usize) -> Vec<Value> {
        wait_for(
            &format!("{n} pod(s) {selector} in {ns}"),
            Duration::from_secs(60),
            || {
                let list = self.json(&["get", "pods", "-n", ns, "-l", selector]);
                let items = list["items"].as_array().cloned().unwrap_or_default();
                (items.len() >= n).then_some(items)
            },
        )
    }
}

impl Cluster {
    /// A kubeconfig that authenticates as `namespace/name`'s ServiceAccount
    /// token (Kubernetes 1.20 creates a token Secret per ServiceAccount).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = wait_for("the ServiceAccount token", Duration::from_secs(30), || {
            let secrets = self.json(&["get", "secrets", "-n", namespace]);
            secrets["items"].as_array()?.iter().find_map(|s| {
                let annotations = &s["metadata"]["annotations"];
                (s["type"] == "kubernetes.io/service-account-token"
                    && annotations["kubernetes.io/service-account.name"] == name)
                    .then(|| s["data"]["token"].as_str().map(String::from))
                    .flatten()
            })
        });
        use base64::Engine as _;
        let token = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(token)
                .expect("token base64"),
        )
        .expect("token utf8");
        self.token_kubeconfig(&format!("{namespace}-{name}"), &token)
    }

    /// A kubeconfig for the same cluster that authenticates with `token`.
    pub fn token_kubeconfig(&self, label: &str, token: &str) -> PathBuf {
        let admin: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig"))
                .expect("kubeconfig YAML");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": label, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": label}}],
            "current-context": "test",
        });
        let path = self.dir.path().join(format!("kubeconfig-{label}"));
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.nodes {
            if std::thread::panicking() {
                for log in ["kubelet.log", "containerd.log", "kube-apiserver.log"] {
                    let text =
                        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- {log} (last lines) ---");
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
            let _ = Command::new(repo_root().join("scripts/cluster.sh"))
                .arg("down")
                .arg(self.dir.path())
                .status();
            return;
        }
        let _ = Command::new(repo_root().join("scripts/k8s-env.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// Names of a pod's containers and init containers.
pub fn container_names(pod: &Value) -> (Vec<String>, Vec<String>) {
    let names = |k: &str| {
        pod["spec"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    (names("containers"), names("initContainers"))
}

/// True when the pod carries the proxy and linkerd-init (classic mode on 1.20).
pub fn injected(pod: &Value) -> bool {
    let (c, i) = container_names(pod);
    let proxies = c.iter().chain(&i).filter(|n| *n == "linkerd-proxy").count();
    assert!(proxies <= 1, "more than one proxy: {pod}");
    proxies == 1 && i.iter().any(|n| n == "linkerd-init")
}

pub struct Injector {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin: u16,
    pub ca_pem: String,
}

fn write_certs(dir: &Path) -> String {
    write_certs_valid(dir, None)
}

/// Test CA + serving certificate; `validity` = (not_before, not_after) of the leaf.
fn write_certs_valid(
    dir: &Path,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "kinject-test-webhook-ca");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    if let Some((nb, na)) = validity {
        leaf.not_before = nb;
        leaf.not_after = na;
    }
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write");
    ca_cert.pem()
}

impl Injector {
    pub fn start(cluster: &Cluster, extra: &[&str]) -> Self {
        Self::start_with(cluster, None, extra)
    }

    /// With `certs`, serve `certs/tls.crt` and `certs/tls.key` and register
    /// `certs/ca.crt` (e.g. written by `kinject identity`); otherwise a
    /// test CA is generated.
    pub fn start_with(cluster: &Cluster, certs: Option<&Path>, extra: &[&str]) -> Self {
        let inj = Self::spawn(cluster, certs, true, extra);
        wait_for("the injector to be ready", Duration::from_secs(30), || {
            (inj.get("/ready").0 == 200).then_some(())
        });
        inj
    }

    /// Starts the injector without `--trust-anchors` and without waiting
    /// for it to be ready (e.g. `--values-from-cluster` before the ConfigMap exists).
    pub fn start_unready(cluster: &Cluster, extra: &[&str]) -> Self {
        let inj = Self::spawn(cluster, None, false, extra);
        wait_for(
            "the injector's admin server",
            Duration::from_secs(30),
            || (inj.get("/live").0 == 200).then_some(()),
        );
        inj
    }

    /// Starts the injector on `certs` (empty for now) with `--wait-for-cert`,
    /// without waiting for it to be ready.
    pub fn start_waiting_for_cert(cluster: &Cluster, certs: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--wait-for-cert"];
        args.extend_from_slice(extra);
        let inj = Self::spawn(cluster, Some(certs), false, &args);
        wait_for(
            "the injector's admin server",
            Duration::from_secs(30),
            || (inj.get("/live").0 == 200).then_some(()),
        );
        inj
    }

    /// Writes a fresh test serving certificate into `dir`; returns the CA PEM.
    pub fn write_test_certs(dir: &Path) -> String {
        write_certs(dir)
    }

    /// Writes a test serving certificate that expired yesterday.
    pub fn write_expired_certs(dir: &Path) -> String {
        let now = time::OffsetDateTime::now_utc();
        write_certs_valid(
            dir,
            Some((
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            )),
        )
    }

    /// Runs with another kubeconfig (e.g. the injector's ServiceAccount), no
    /// `--trust-anchors` (the values come from the cluster), and waits until ready.
    pub fn start_as(cluster: &Cluster, kubeconfig: &Path, extra: &[&str]) -> Self {
        let inj = Self::spawn_with(cluster, None, false, None, Some(kubeconfig), extra);
        let ready = wait_for_opt(Duration::from_secs(30), || {
            (inj.get("/ready").0 == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "not ready: {}\n{}",
            inj.get("/ready").1,
            inj.log()
        );
        inj
    }

    /// Like `start_with`, on a given port.
    pub fn start_on(cluster: &Cluster, certs: Option<&Path>, port: u16, extra: &[&str]) -> Self {
        let inj = Self::spawn_on(cluster, certs, true, Some(port), extra);
        wait_for("the injector to be ready", Duration::from_secs(30), || {
            (inj.get("/ready").0 == 200).then_some(())
        });
        inj
    }

    fn spawn(cluster: &Cluster, certs: Option<&Path>, anchors_flag: bool, extra: &[&str]) -> Self {
        Self::spawn_on(cluster, certs, anchors_flag, None, extra)
    }

    fn spawn_on(
        cluster: &Cluster,
        certs: Option<&Path>,
        anchors_flag: bool,
        port: Option<u16>,
        extra: &[&str],
    ) -> Self {
        Self::spawn_with(cluster, certs, anchors_flag, port, None, extra)
    }

    fn spawn_with(
        cluster: &Cluster,
        certs: Option<&Path>,
        anchors_flag: bool,
        port: Option<u16>,
        kubeconfig: Option<&Path>,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_pem = match certs {
            // Empty when the test writes the certificate later (--wait-for-cert).
            Some(d) => std::fs::read_to_string(d.join("ca.crt")).unwrap_or_default(),
            None => write_certs(dir.path()),
        };
        let cert_dir = certs.unwrap_or(dir.path()).to_path_buf();
        let anchors = repo_root().join("examples/trust-anchors.pem");
        // The injector's Lease lives in its control-plane namespace.
        if !cluster
            .kubectl(&["get", "namespace", "linkerd"], None)
            .status
            .success()
        {
            let _ = cluster.kubectl(&["create", "namespace", "linkerd"], None);
        }
        let port = port.unwrap_or_else(free_port);
        let admin = free_port();
        let p = |f: &str| cert_dir.join(f).display().to_string();
        let log = std::fs::File::create(dir.path().join("injector.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_kinject"))
            .arg("proxy-injector")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--tls-cert", &p("tls.crt"), "--tls-key", &p("tls.key")])
            .args(["--ca-bundle", &p("ca.crt")])
            .args(["--webhook-url", &format!("https://127.0.0.1:{port}/inject")])
            .args(if anchors_flag {
                vec!["--trust-anchors".to_string(), anchors.display().to_string()]
            } else {
                vec![]
            })
            .args(["--reload-interval", "500ms"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig.unwrap_or(&cluster.kubeconfig))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kinject proxy-injector");
        Self {
            child,
            dir,
            port,
            admin,
            ca_pem,
        }
    }

    /// GET on the admin server: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path)
    }

    pub fn metric(&self, needle: &str) -> Option<f64> {
        metric(self.admin, needle)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("injector.log")).unwrap_or_default()
    }
}

/// GET on an admin server: (status, body).
pub fn admin_get(port: u16, path: &str) -> (u16, String) {
    {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return (0, String::new());
        };
        let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }
}

/// A metric's value from an admin server's /metrics.
pub fn metric(port: u16, needle: &str) -> Option<f64> {
    admin_get(port, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- injector log ---\n{}", self.log());
        }
    }
}

/// A running `kinject identity`.
pub struct Identity {
    child: Child,
    pub log: PathBuf,
    pub admin: u16,
    _dir: tempfile::TempDir,
}

impl Identity {
    pub fn start(cluster: &Cluster) -> Self {
        Self::start_with(cluster, &[])
    }

    pub fn start_with(cluster: &Cluster, extra: &[&str]) -> Self {
        Self::start_as(cluster, &cluster.kubeconfig, extra)
    }

    /// Runs with the given kubeconfig (e.g. a ServiceAccount's token).
    pub fn start_as(cluster: &Cluster, kubeconfig: &Path, extra: &[&str]) -> Self {
        let _ = cluster;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("identity.log");
        let admin = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kinject"))
            .args([
                "identity",
                "-l",
                "linkerd",
                "--workload-lifetime",
                "1h",
                "--resync",
                "1s",
            ])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(extra)
            // Each replica must have its own leader-election identity.
            .env_remove("HOSTNAME")
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start kinject identity");
        Self {
            child,
            log,
            admin,
            _dir: dir,
        }
    }
}

impl Identity {
    /// Sends SIGTERM (what the kubelet sends) and waits up to `timeout` for
    /// the process to exit; its exit status, or `None` if it did not.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        terminate(&mut self.child, timeout)
    }
}

impl Injector {
    /// As [`Identity::terminate`].
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        terminate(&mut self.child, timeout)
    }
}

fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -TERM {pid}");
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- identity log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// `kinject destination` on loopback, in plaintext unless `--cert-dir` is
/// among `extra` (then TLS).
pub struct Destination {
    child: Child,
    pub log: PathBuf,
    pub admin: u16,
    pub grpc: u16,
}

impl Destination {
    pub fn start_as(kubeconfig: &Path, tls_dir: Option<&Path>, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("kinject-destination-{}.log", free_port()));
        let admin = free_port();
        let grpc = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinject"));
        cmd.args(["destination", "-l", "linkerd", "--values-from-cluster"])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--reload-interval", "200ms"]);
        match tls_dir {
            Some(dir) => cmd.arg("--cert-dir").arg(dir),
            None => cmd.arg("--plaintext"),
        };
        let child = cmd
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start kinject destination");
        Self {
            child,
            log,
            admin,
            grpc,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- destination log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A Secret's data value, decoded.
pub fn secret_text(secret: &Value, key: &str) -> String {
    use base64::Engine as _;
    let b64 = secret["data"][key].as_str().unwrap_or("");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// A pod as the injector leaves it (meshed by control plane `linkerd`,
/// labels `app: web`, container port `http` 8080 with an HTTP readiness
/// probe), running at `ip` (its status written as a kubelet would).
pub fn meshed_pod(k: &Cluster, ns: &str, name: &str, ip: &str, annotations: Value) {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"linkerd.io/control-plane-ns": "linkerd", "app": "web"},
                     "annotations": annotations},
        "spec": {"serviceAccountName": "web", "containers": [{
            "name": "app", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        }]},
    });
    k.apply(&pod.to_string());
    // The status subresource, as a kubelet writes it (kubectl 1.20 has no
    // --subresource).
    let raw = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
    let current: Value =
        serde_json::from_str(&k.ok(&["get", "--raw", &raw])).expect("the pod as JSON");
    let mut updated = current;
    updated["status"]["podIP"] = serde_json::json!(ip);
    updated["status"]["podIPs"] = serde_json::json!([{"ip": ip}]);
    let out = k.kubectl(
        &["replace", "--raw", &raw, "-f", "-"],
        Some(&updated.to_string()),
    );
    assert!(
        out.status.success(),
        "setting {name}'s IP: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
