//! Black-box tests of `kinject inject` / `kinject uninject`.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn kinject() -> Command {
    let mut c = Command::cargo_bin("kinject").expect("binary");
    c.env_remove("LINKERD_NAMESPACE");
    c
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/emojivoto.yaml")
        .display()
        .to_string()
}

fn anchors() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/trust-anchors.pem")
        .display()
        .to_string()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut c = kinject();
    c.args(args);
    if let Some(s) = stdin {
        c.write_stdin(s);
    }
    let out = c.output().expect("run");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf8"),
        stderr: String::from_utf8(out.stderr).expect("utf8"),
    }
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("valid YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn inject_stdin(input: &str) -> Run {
    run(&["inject", "--trust-anchors", &anchors(), "-"], Some(input))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).expect(kind)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn injects_the_example() {
    let r = run(&["inject", "--trust-anchors", &anchors(), &example()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = docs(&r.stdout);
    assert_eq!(out.len(), 7);
    let d = find(&out, "Deployment");
    let tpl = &d["spec"]["template"];
    assert_eq!(
        names(&tpl["spec"]["initContainers"]),
        ["linkerd-init", "linkerd-proxy"]
    );
    assert_eq!(
        tpl["metadata"]["labels"]["linkerd.io/proxy-deployment"],
        "web"
    );
    assert_eq!(tpl["metadata"]["labels"]["app"], "web-svc");
    let cron = find(&out, "CronJob");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["linkerd.io/proxy-cronjob"],
        "vote-bot"
    );
    // The DaemonSet opted out and is untouched.
    let ds = find(&out, "DaemonSet");
    assert_eq!(
        names(&ds["spec"]["template"]["spec"]["containers"]),
        ["agent"]
    );
    assert!(
        r.stderr
            .contains("Summary: 3 of 7 YAML document(s) injected"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("  deployment/web\n"));
    assert!(r.stderr.contains("daemonset/node-agent"));
    // The comment and the untouched documents are emitted as written.
    assert!(r.stdout.starts_with("# A small application"));
    assert!(
        r.stdout
            .contains("kind: Service\nmetadata:\n  name: web-svc\n")
    );
}

#[test]
fn inject_is_idempotent_and_uninject_restores() {
    let original = std::fs::read_to_string(example()).expect("example");
    let once = inject_stdin(&original);
    assert_eq!(once.code, 0);
    let twice = inject_stdin(&once.stdout);
    assert_eq!(twice.code, 0);
    assert_eq!(once.stdout, twice.stdout, "inject(inject(x)) != inject(x)");
    let un = run(&["uninject", "-"], Some(&once.stdout));
    assert_eq!(un.code, 0, "{}", un.stderr);
    assert_eq!(docs(&un.stdout), docs(&original));
    assert!(
        un.stderr
            .contains("Summary: 3 of 7 YAML document(s) uninjected"),
        "{}",
        un.stderr
    );
}

#[test]
fn flags_reach_the_pod() {
    let input = "kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: nginx}]\n";
    let r = run(
        &[
            "inject",
            "--trust-anchors",
            &anchors(),
            "--proxy-image",
            "reg.example/proxy",
            "--proxy-version",
            "v9",
            "--init-image",
            "reg.example/init",
            "--proxy-uid",
            "1234",
            "--proxy-log-level",
            "debug",
            "--skip-inbound-ports",
            "22,8000-8100",
            "--skip-outbound-ports",
            "5432",
            "--proxy-cpu",
            "100m",
            "--proxy-memory",
            "64Mi",
            "--native-sidecar=false",
            "-l",
            "mesh",
            "-o",
            "json",
            "-",
        ],
        Some(input),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pod: Value = serde_json::from_str(&r.stdout).expect("json");
    let proxy = &pod["spec"]["containers"][0];
    assert_eq!(
        proxy["name"], "linkerd-proxy",
        "classic sidecar with await goes first"
    );
    assert_eq!(proxy["image"], "reg.example/proxy:v9");
    assert_eq!(proxy["securityContext"]["runAsUser"], 1234);
    assert_eq!(
        proxy["resources"]["requests"],
        serde_json::json!({"cpu": "100m", "memory": "64Mi"})
    );
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["image"], "reg.example/init:v9");
    let args: Vec<&str> = init["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--inbound-ports-to-ignore", "4190,4191,22,8000-8100"])
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--outbound-ports-to-ignore", "5432"])
    );
    assert_eq!(
        pod["metadata"]["labels"]["linkerd.io/control-plane-ns"],
        "mesh"
    );
    let env = proxy["env"].as_array().expect("env");
    let log = env
        .iter()
        .find(|e| e["name"] == "LINKERD2_PROXY_LOG")
        .expect("log");
    assert_eq!(log["value"], "debug,[{headers}]=off,[{request}]=off");
}

#[test]
fn bad_flags_are_clear_errors() {
    for (flag, value, needle) in [
        ("--proxy-cpu", "lots", "--proxy-cpu"),
        ("--proxy-memory", "64MB", "--proxy-memory"),
        ("--skip-inbound-ports", "22,http", "--skip-inbound-ports"),
        ("--proxy-uid", "-1", "--proxy-uid"),
        ("--native-sidecar", "maybe", "--native-sidecar"),
    ] {
        let arg = format!("{flag}={value}");
        let r = run(&["inject", &arg, &example()], None);
        // 1 for kinject's own checks, 2 for clap's usage errors.
        assert!(matches!(r.code, 1 | 2), "{flag}: exit {}", r.code);
        assert!(r.stderr.contains(needle), "{flag}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = run(
        &["inject", "--values", "/nonexistent/values.yaml", &example()],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("/nonexistent/values.yaml"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_values_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "proxy:\n  logHTTPHeaders: loud\n").expect("write");
    let r = run(
        &[
            "inject",
            "--values",
            values.to_str().expect("path"),
            &example(),
        ],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("proxy.logHTTPHeaders"), "{}", r.stderr);
    // A real values file with keys kinject does not use works.
    std::fs::write(
        &values,
        "controllerLogLevel: info\nproxy:\n  logLevel: debug\n  cores:\n",
    )
    .expect("write");
    let r = run(
        &[
            "inject",
            "--values",
            values.to_str().expect("path"),
            &example(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn malformed_yaml_names_file_and_line_and_prints_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("a-good.yaml");
    std::fs::write(
        &good,
        "kind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: a}]}\n",
    )
    .expect("w");
    let bad = dir.path().join("b-bad.yaml");
    std::fs::write(
        &bad,
        "kind: ConfigMap\n---\nkind: Deployment\nmetadata:\n  name: x\n  labels: [a\nspec: {}\n",
    )
    .expect("w");
    let r = run(&["inject", dir.path().to_str().expect("dir")], None);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty(), "partial output: {}", r.stdout);
    let bad_name = bad.display().to_string();
    assert!(r.stderr.contains(&bad_name), "{}", r.stderr);
    let line: usize = r
        .stderr
        .split(&format!("{bad_name}:"))
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("line number");
    assert!((6..=7).contains(&line), "line {line}: {}", r.stderr);
}

#[test]
fn missing_inputs_are_errors() {
    let r = run(&["inject"], None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("please specify a kubernetes resource file")
    );
    let r = run(&["inject", "/nonexistent.yaml"], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent.yaml"));
}

#[test]
fn directories_are_walked_in_lexical_order() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("db")).expect("mkdir");
    let pod = |n: &str| {
        format!("kind: Pod\nmetadata: {{name: {n}}}\nspec: {{containers: [{{name: a}}]}}\n")
    };
    std::fs::write(dir.path().join("nginx.yaml"), pod("nginx")).expect("w");
    std::fs::write(dir.path().join("db/redis.yml"), pod("redis")).expect("w");
    std::fs::write(dir.path().join("README.md"), "not yaml: [").expect("w");
    let r = run(
        &[
            "inject",
            "--trust-anchors",
            &anchors(),
            dir.path().to_str().expect("dir"),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = docs(&r.stdout);
    let order: Vec<&str> = out
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(order, ["redis", "nginx"]);
    // One report block per file.
    assert_eq!(
        r.stderr.matches("Summary: 1 of 1").count(),
        2,
        "{}",
        r.stderr
    );
}

#[test]
fn lists_are_injected_item_by_item() {
    let input = r#"apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec: {template: {metadata: {labels: {app: a}}, spec: {containers: [{name: a, image: x}]}}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
  data: {k: v}
"#;
    let r = inject_stdin(input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = docs(&r.stdout);
    let items = out[0]["items"].as_array().expect("items");
    assert_eq!(
        names(&items[0]["spec"]["template"]["spec"]["initContainers"]),
        ["linkerd-init", "linkerd-proxy"]
    );
    assert_eq!(items[1]["data"]["k"], "v");
    assert!(r.stderr.contains("Summary: 1 of 2"), "{}", r.stderr);
}

#[test]
fn odd_documents_get_precise_warnings() {
    // Not an object.
    let r = inject_stdin("- just\n- a list\n");
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("document is a list, not a Kubernetes object"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "- just\n- a list\n---\n");
    // A Pod without containers.
    let r = inject_stdin("kind: Pod\nmetadata: {name: empty}\nspec: {}\n");
    assert!(
        r.stderr
            .contains("pod/empty: the pod spec has no containers"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Summary: 0 of 1"));
    // A workload without a template.
    let r = inject_stdin("kind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n");
    assert!(
        r.stderr.contains("Deployment has no pod template"),
        "{}",
        r.stderr
    );
    // No kind.
    let r = inject_stdin("metadata: {name: x}\n");
    assert!(
        r.stderr.contains("document has no \"kind\""),
        "{}",
        r.stderr
    );
}

#[test]
fn annotation_problems_are_reported() {
    let input = r#"kind: Pod
metadata:
  name: p
  annotations:
    quoted: 'say "hi" \ there'
    config.linkerd.io/no-such-setting: "1"
    config.linkerd.io/proxy-memory-limit: 64MB
    config.linkerd.io/admin-port: "99999"
spec:
  containers: [{name: a, image: nginx}]
"#;
    let r = inject_stdin(input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pod = &docs(&r.stdout)[0];
    assert_eq!(
        pod["metadata"]["annotations"]["quoted"],
        "say \"hi\" \\ there"
    );
    assert!(
        r.stderr
            .contains("unknown annotation config.linkerd.io/no-such-setting"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("config.linkerd.io/proxy-memory-limit=\"64MB\" ignored"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("config.linkerd.io/admin-port=\"99999\" ignored"),
        "{}",
        r.stderr
    );
    let proxy = &pod["spec"]["initContainers"][1];
    assert_eq!(
        proxy["ports"][1]["containerPort"], 4191,
        "bad port kept the default"
    );
}

#[test]
fn huge_annotations_warn() {
    let big = "x".repeat(300 * 1024);
    let input = format!(
        "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    big: {big}\nspec:\n  containers: [{{name: a}}]\n"
    );
    let r = inject_stdin(&input);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("over Kubernetes' 262144-byte limit"),
        "{}",
        &r.stderr[..r.stderr.len().min(2000)]
    );
    assert_eq!(
        docs(&r.stdout)[0]["metadata"]["annotations"]["big"]
            .as_str()
            .map(str::len),
        Some(big.len())
    );
}

#[test]
fn unknown_fields_survive() {
    let input = "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec:\n  futureField: {a: 1}\n  template:\n    spec:\n      containers: [{name: a, image: x, futureContainerField: true}]\n      futurePodField: [1, 2]\n";
    let r = inject_stdin(input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = &docs(&r.stdout)[0];
    assert_eq!(d["spec"]["futureField"]["a"], 1);
    assert_eq!(d["spec"]["template"]["spec"]["futurePodField"][1], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["futureContainerField"],
        true
    );
    // The template had no metadata: it was created.
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["linkerd.io/proxy-deployment"],
        "d"
    );
}

#[test]
fn third_party_sidecars_and_host_network_are_skipped() {
    let input = "kind: Pod\nmetadata: {name: istio}\nspec:\n  containers: [{name: a}, {name: istio-proxy}]\n---\nkind: Pod\nmetadata: {name: host}\nspec:\n  hostNetwork: true\n  containers: [{name: a}]\n---\nkind: Pod\nmetadata: {name: dns}\nspec:\n  containers: [{name: a, ports: [{containerPort: 53, protocol: UDP}]}]\n";
    let r = inject_stdin(input);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("[warn] -- known sidecar detected in pod/istio"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("[warn] -- \"hostNetwork: true\" detected in pod/host"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("[warn] -- pod/dns uses \"protocol: UDP\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Summary: 1 of 3"), "{}", r.stderr);
    let out = docs(&r.stdout);
    assert_eq!(names(&out[0]["spec"]["containers"]), ["a", "istio-proxy"]);
}

#[test]
fn json_output_is_one_document_per_object() {
    let r = run(
        &[
            "inject",
            "--trust-anchors",
            &anchors(),
            "-o",
            "json",
            &example(),
        ],
        None,
    );
    assert_eq!(r.code, 0);
    let stream = serde_json::Deserializer::from_str(&r.stdout).into_iter::<Value>();
    let all: Vec<Value> = stream.collect::<Result<_, _>>().expect("json stream");
    assert_eq!(all.len(), 7);
}

#[test]
fn uninject_leaves_foreign_objects_alone() {
    let input = "kind: Pod\nmetadata:\n  name: p\n  labels: {linkerd.io/control-plane-ns: hand-made}\nspec:\n  containers: [{name: a}]\n";
    let r = run(&["uninject", "-"], Some(input));
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, format!("{input}---\n"));
    assert!(r.stderr.contains("Summary: 0 of 1"));
}

#[test]
fn identity_refuses_mismatched_provided_material() {
    use kinject_identity::ca::{Ca, generate_root};
    let now = time::OffsetDateTime::now_utc();
    let day = std::time::Duration::from_secs(86_400);
    let root = generate_root("root", now, 10 * day).expect("root");
    let other_root = generate_root("other", now, 10 * day).expect("root");
    let issuer = Ca::new_issuer(&root, now, day).expect("issuer");
    let dir = tempfile::tempdir().expect("tmp");
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let other = w("other.crt", &other_root.cert_pem);
    let crt = w("issuer.crt", &issuer.cert_pem);
    let key = w("issuer.key", &issuer.key_pem);
    let r = run(
        &[
            "identity",
            "--trust-root",
            &other,
            "--issuer-cert",
            &crt,
            "--issuer-key",
            &key,
        ],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not signed by the trust root"),
        "{}",
        r.stderr
    );
    let r = run(&["identity", "--trust-root", &other], None);
    assert_eq!(r.code, 2, "the issuer files are required with a root");
    // Each file is checked on its own first: the error names the flag and
    // the file, and says what it found.
    let testdata = |n: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../identity/testdata")
            .join(n)
            .display()
            .to_string()
    };
    let root_file = w("root.crt", &root.cert_pem);
    for (flag, root_arg, crt_arg, key_arg, want) in [
        (
            "--issuer-key",
            root_file.clone(),
            crt.clone(),
            testdata("pkcs1-rsa.key"),
            "an RSA key is not supported",
        ),
        (
            "--issuer-key",
            root_file.clone(),
            crt.clone(),
            testdata("sec1-p384.key"),
            "an ECDSA P-384 key is not supported",
        ),
        (
            "--issuer-key",
            root_file.clone(),
            crt.clone(),
            testdata("sec1-encrypted.key"),
            "the private key is encrypted",
        ),
        (
            "--trust-root",
            key.clone(),
            crt.clone(),
            key.clone(),
            "trust anchors: not a PEM certificate",
        ),
        (
            "--issuer-cert",
            root_file.clone(),
            key.clone(),
            key.clone(),
            "issuer: not a PEM certificate",
        ),
    ] {
        let r = run(
            &[
                "identity",
                "--trust-root",
                &root_arg,
                "--issuer-cert",
                &crt_arg,
                "--issuer-key",
                &key_arg,
            ],
            None,
        );
        assert_eq!(r.code, 1, "{flag}: {}", r.stderr);
        assert!(
            r.stderr.contains(flag) && r.stderr.contains(want),
            "{flag}: want {want:?}: {}",
            r.stderr
        );
    }
    let r = run(&["identity", "--issuer-scheme", "tls"], None);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("use kinject, linkerd.io/tls or kubernetes.io/tls"),
        "{}",
        r.stderr
    );
}

#[test]
fn server_flags_are_validated_before_anything_starts() {
    let pi = |extra: &[&str]| {
        let mut a = vec![
            "proxy-injector",
            "--tls-cert",
            "/nonexistent.crt",
            "--tls-key",
            "/nonexistent.key",
        ];
        a.extend_from_slice(extra);
        run(&a, None)
    };
    for (extra, needle) in [
        (
            &["--timeout-seconds", "99"][..],
            "--timeout-seconds must be between 1 and 30",
        ),
        (
            &["--webhook-url", "http://127.0.0.1/inject"][..],
            "must be an https:// URL",
        ),
        (
            &["--reload-interval", "0s"][..],
            "--reload-interval must be positive",
        ),
        (&["--reload-interval", "soon"][..], "--reload-interval"),
        (&["--log-level", "[[["][..], "--log-level"),
        (
            &["--max-body-memory", "4"][..],
            "--max-body-memory must be at least 8",
        ),
        (
            &["--set", "proxy..uid=1"][..],
            "--set \"proxy..uid=1\": empty key before '.' at character 7",
        ),
        (
            &["--values", "/nonexistent/v.yaml"][..],
            "cannot read values file /nonexistent/v.yaml",
        ),
        (
            &["--set", "proxy.uid=x"][..],
            "--set proxy.uid=x: proxy.uid: invalid type: string \"x\", expected i64",
        ),
    ] {
        let r = pi(extra);
        assert_eq!(r.code, 1, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{extra:?}: {}", r.stderr);
    }
    // With valid flags, a missing certificate is the (clear) failure.
    let r = pi(&["--log-level", "error"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent.crt"), "{}", r.stderr);
    let r = run(&["identity", "--resync", "0s"], None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--resync must be positive"),
        "{}",
        r.stderr
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

fn proxy_of(doc: &Value) -> Value {
    let spec = &doc["spec"]["template"]["spec"];
    spec["initContainers"]
        .as_array()
        .into_iter()
        .chain(spec["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "linkerd-proxy")
        .cloned()
        .expect("a proxy")
}

fn env_of(proxy: &Value, name: &str) -> Option<String> {
    proxy["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
        .map(String::from)
}

#[test]
fn values_layers_merge_as_helm_does() {
    let dir = tempfile::tempdir().expect("tmp");
    // The most common override: only the version. Helm merges it into the
    // default image; it must not empty the image name.
    let a = write(
        dir.path(),
        "a.yaml",
        "proxy:\n  image: {version: edge-26.9.1}\n  logLevel: info\n  uid: 1000\n",
    );
    let b = write(dir.path(), "b.yaml", "proxy:\n  logLevel: debug\n");
    let pem = write(
        dir.path(),
        "ca.pem",
        &std::fs::read_to_string(anchors()).expect("pem"),
    );
    let r = run(
        &[
            "inject",
            "--values",
            &a,
            "--values",
            &b,
            "--set",
            "proxy.uid=2000",
            "--set-string",
            "proxy.logFormat=json",
            "--set-file",
            &format!("identityTrustAnchorsPEM={pem}"),
            &example(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("Warning"), "{}", r.stderr);
    let docs = docs(&r.stdout);
    let proxy = proxy_of(find(&docs, "Deployment"));
    assert_eq!(proxy["image"], "cr.l5d.io/linkerd/proxy:edge-26.9.1");
    assert!(
        env_of(&proxy, "LINKERD2_PROXY_LOG").is_some_and(|l| l.starts_with("debug,")),
        "log level from the later file"
    );
    assert_eq!(
        env_of(&proxy, "LINKERD2_PROXY_LOG_FORMAT").as_deref(),
        Some("json")
    );
    assert_eq!(proxy["securityContext"]["runAsUser"], 2000);
    assert!(
        env_of(&proxy, "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS")
            .is_some_and(|a| a.contains("BEGIN CERTIFICATE")),
        "trust anchors from --set-file"
    );
}

#[test]
fn unknown_values_keys_are_warned_and_the_rest_applies() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = write(
        dir.path(),
        "a.yaml",
        "proxy: {logLevl: debug}\nproxyy: {}\n",
    );
    let r = run(
        &[
            "inject",
            "--values",
            &a,
            "--set",
            "proxy.imag.version=x",
            &example(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        format!(
            "Warning: values file {a}: proxy.logLevl: unknown key, did you mean proxy.logLevel?"
        ),
        format!("Warning: values file {a}: proxyy: unknown key, did you mean proxy?"),
        "Warning: --set proxy.imag.version=x: proxy.imag: unknown key, did you mean proxy.image?"
            .into(),
    ] {
        assert!(
            r.stderr.contains(&line),
            "missing {line:?} in\n{}",
            r.stderr
        );
    }
    assert!(!r.stdout.is_empty());
}

#[test]
fn bad_values_are_precise_errors_and_print_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "- a\n- b\n",
            "a values document must be a map of keys, found a list".to_string(),
        ),
        (
            "proxy:\n  uid: lots\n",
            "proxy.uid: invalid type: string \"lots\", expected i64".into(),
        ),
        (
            "proxy:\n  image: registry/proxy\n",
            "proxy.image: invalid type: string \"registry/proxy\", expected struct ImageValues"
                .into(),
        ),
        (
            "proxy:\n  logLevel: {a: b}\n",
            "proxy.logLevel: invalid type: map, expected a string".into(),
        ),
        (
            "proxyInit:\n  iptablesMode: magic\n",
            "invalid value for proxyInit.iptablesMode: \"magic\" is not one of nft, legacy".into(),
        ),
        (
            "proxy:\n  logLevel: debug\n   uid: 1\n",
            "invalid YAML".into(),
        ),
    ];
    for (text, want) in cases {
        let f = write(dir.path(), "v.yaml", text);
        let r = run(&["inject", "--values", &f, &example()], None);
        assert_eq!(r.code, 1, "{text:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{text:?}: printed output");
        let want = format!("values file {f}: {want}");
        assert!(
            r.stderr.contains(&want),
            "{text:?}: want {want:?} in {}",
            r.stderr
        );
    }
    // A YAML syntax error names the line.
    let f = write(
        dir.path(),
        "v.yaml",
        "proxy:\n  logLevel: debug\n    uid: [1\n",
    );
    let r = run(&["inject", "--values", &f, &example()], None);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);
    for (set, want) in [
        ("a[0", "unclosed '['"),
        ("a[-2]=1", "negative list index [-2] is not allowed"),
        ("a", "key \"a\" has no value"),
        (
            "proxy.ports.admin=0",
            "invalid value for proxy.ports.admin: port 0 is not a valid port",
        ),
    ] {
        let r = run(&["inject", "--set", set, &example()], None);
        assert_eq!(r.code, 1, "{set}: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(
            r.stderr.contains(want),
            "{set}: want {want:?} in {}",
            r.stderr
        );
    }
    let r = run(
        &["inject", "--set-file", "a=/nonexistent/pem", &example()],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("--set-file a=/nonexistent/pem: cannot read /nonexistent/pem"),
        "{}",
        r.stderr
    );
}

#[test]
fn ingress_marks_injected_templates() {
    for args in [&["--ingress"][..], &["--set", "proxy.isIngress=true"][..]] {
        let mut a = vec!["inject", "--trust-anchors"];
        let anchors = anchors();
        let example = example();
        a.push(&anchors);
        a.extend_from_slice(args);
        a.push(&example);
        let r = run(&a, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let docs = docs(&r.stdout);
        let deploy = find(&docs, "Deployment");
        assert_eq!(
            deploy["spec"]["template"]["metadata"]["annotations"]["linkerd.io/inject"], "ingress",
            "{args:?}"
        );
        assert_eq!(
            env_of(&proxy_of(deploy), "LINKERD2_PROXY_INGRESS_MODE").as_deref(),
            Some("true")
        );
        // Re-injecting the output keeps ingress mode and changes nothing.
        let mut again = vec!["inject", "--trust-anchors", &anchors];
        again.extend_from_slice(args);
        again.push("-");
        let again = run(&again, Some(&r.stdout));
        assert!(again.stdout == r.stdout, "re-injection changed the output");
    }
}

#[test]
fn values_command_prints_the_effective_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = write(
        dir.path(),
        "a.yaml",
        "proxy: {image: {version: v1}, cores: 2}\nproxyy: 1\n",
    );
    let r = run(
        &[
            "values",
            "--values",
            &a,
            "--set",
            "proxy.cores=null",
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["proxy"]["image"]["name"], "cr.l5d.io/linkerd/proxy");
    assert_eq!(v["proxy"]["image"]["version"], "v1");
    assert_eq!(v["proxy"]["cores"], Value::Null, "null means the default");
    assert_eq!(v["proxy"]["ports"]["admin"], 4191);
    assert!(v.get("proxyy").is_none(), "unknown keys are not used");
    assert!(r.stderr.contains("proxyy: unknown key"), "{}", r.stderr);
    let r = run(&["values", "--set", "proxy.logLevel=debug"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let y: Value = serde_saphyr::from_str(&r.stdout).expect("yaml");
    assert_eq!(y["proxy"]["logLevel"], "debug");
    // Its output is a values file that reproduces itself.
    let f = write(dir.path(), "eff.yaml", &r.stdout);
    let again = run(&["values", "--values", &f], None);
    assert_eq!(again.stdout, r.stdout);
    assert!(again.stderr.is_empty(), "{}", again.stderr);
}

#[test]
fn values_from_cluster_without_a_cluster_is_a_clear_error() {
    let r = kinject()
        .args(["values", "--values-from-cluster"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--values-from-cluster needs a cluster: set KUBECONFIG"),
        "{err}"
    );
}

#[test]
fn install_is_deterministic_and_validates_its_flags() {
    let a = run(&["install"], None);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let b = run(&["install"], None);
    assert!(a.stdout == b.stdout, "same flags, different bytes");
    let objects = docs(&a.stdout);
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "Namespace/linkerd",
        "ServiceAccount/linkerd-identity",
        "ServiceAccount/linkerd-proxy-injector",
        "ClusterRole/linkerd-linkerd-proxy-injector",
        "ClusterRole/linkerd-linkerd-identity",
        "ClusterRoleBinding/linkerd-linkerd-proxy-injector",
        "ConfigMap/linkerd-config",
        "Service/linkerd-proxy-injector",
        "Deployment/linkerd-identity",
        "Deployment/linkerd-proxy-injector",
    ] {
        assert!(
            kinds.contains(&want.to_string()),
            "{want} missing from {kinds:?}"
        );
    }
    assert!(
        !a.stdout.contains("MutatingWebhookConfiguration"),
        "the injector owns it"
    );
    assert!(
        !a.stdout.contains("BEGIN"),
        "no certificates in the manifest"
    );
    let ns = find(&objects, "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["linkerd.io/auto-inject"],
        "disabled"
    );
    for d in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"][0], "ALL");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/live");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        assert!(c["resources"]["requests"]["memory"].is_string());
        assert_eq!(
            c["image"],
            format!("ghcr.io/kinject/kinject:{}", env!("CARGO_PKG_VERSION"))
        );
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            args.windows(2).any(|w| w == ["--log-format", "json"]),
            "{args:?}"
        );
        assert_eq!(d["spec"]["replicas"], 1);
    }

    // Flags reach the objects.
    let r = run(
        &[
            "install",
            "-l",
            "mesh",
            "--ha",
            "--registry",
            "localhost:5000/me",
            "--failure-policy",
            "Fail",
            "--default-inject",
            "disabled",
            "--set",
            "proxy.logLevel=debug",
            "--proxy-version",
            "edge-26.9.1",
            "--controller-log-level",
            "debug",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = docs(&r.stdout);
    let inj = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "linkerd-proxy-injector")
        .expect("injector");
    assert_eq!(inj["metadata"]["namespace"], "mesh");
    assert_eq!(inj["spec"]["replicas"], 3);
    assert!(inj["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
    let c = &inj["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        format!("localhost:5000/me/kinject:{}", env!("CARGO_PKG_VERSION"))
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for pair in [
        ["--failure-policy", "Fail"],
        ["--default-policy", "disabled"],
        ["--log-level", "debug"],
        ["--linkerd-namespace", "mesh"],
    ] {
        assert!(
            args.windows(2).any(|w| w == pair),
            "{pair:?} not in {args:?}"
        );
    }
    assert_eq!(
        objects
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .count(),
        3,
        "identity, destination, injector"
    );
    assert!(
        objects.iter().any(|o| o["kind"] == "ClusterRole"
            && o["metadata"]["name"] == "linkerd-mesh-proxy-injector")
    );
    let values = find(&objects, "ConfigMap")["data"]["values"]
        .as_str()
        .expect("values")
        .to_string();
    let values: Value = serde_saphyr::from_str(&values).expect("values yaml");
    assert_eq!(values["proxy"]["logLevel"], "debug");
    assert_eq!(values["proxy"]["image"]["version"], "edge-26.9.1");
    assert_eq!(values["webhookFailurePolicy"], "Fail");
    let image = run(&["install", "--image", "localhost/kinject:dev"], None);
    assert!(image.stdout.contains("image: localhost/kinject:dev"));

    // Contradictions and bad references are errors, with nothing printed.
    for (args, want) in [
        (
            &["install", "--ha", "--replicas", "1"][..],
            "--ha with --replicas 1 is contradictory",
        ),
        (
            &["install", "--image", "Kinject:latest"][..],
            "--image \"Kinject:latest\" is not an image reference",
        ),
        (
            &["install", "--registry", "bad host:1"][..],
            "--registry \"bad host:1/kinject:",
        ),
        (
            &["install", "--proxy-version", "a b"][..],
            "--proxy-version \"a b\" is not an image reference",
        ),
        (
            &["install", "-l", "Not_A_Namespace"][..],
            "is not a valid namespace name",
        ),
        (
            &["install", "--replicas", "0"][..],
            "--replicas must be at least 1",
        ),
        (
            &["install", "--set", "proxy.uid=x"][..],
            "proxy.uid: invalid type",
        ),
    ] {
        let r = run(args, None);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(r.stdout.is_empty(), "{args:?} printed output");
        assert!(
            r.stderr.contains(want),
            "{args:?}: want {want:?} in {}",
            r.stderr
        );
    }
}

#[test]
fn uninstall_lists_every_cluster_scoped_object() {
    let r = run(&["uninstall", "-l", "mesh"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = docs(&r.stdout);
    let names: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "MutatingWebhookConfiguration/linkerd-proxy-injector-webhook-config",
            "ClusterRoleBinding/linkerd-mesh-proxy-injector",
            "ClusterRole/linkerd-mesh-proxy-injector",
            "ClusterRoleBinding/linkerd-mesh-identity",
            "ClusterRole/linkerd-mesh-identity",
            "ClusterRoleBinding/linkerd-mesh-destination",
            "ClusterRole/linkerd-mesh-destination",
            "Namespace/mesh",
        ]
    );
    // Every cluster-scoped object install creates is in the list.
    let installed = docs(&run(&["install", "-l", "mesh"], None).stdout);
    for o in installed
        .iter()
        .filter(|o| o["metadata"]["namespace"].is_null())
    {
        let n = format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        );
        assert!(names.contains(&n), "{n} would be left behind");
    }
}

#[test]
fn check_without_a_cluster_fails_fast_and_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    // No kubeconfig at all.
    let start = std::time::Instant::now();
    let r = kinject()
        .args(["check"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(2), "{out}");
    assert!(
        out.contains("kubernetes-api: can initialize the client"),
        "{out}"
    );
    assert!(out.contains("[FAIL] -- kubeconfig:"), "{out}");
    assert!(
        out.contains("set KUBECONFIG to a kubeconfig for the cluster"),
        "{out}"
    );
    assert!(out.ends_with("Status check results are [FAIL]\n"), "{out}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // A server nobody answers on: said at once, not retried (the
    // kubeconfig is the user's to fix), even with a --wait.
    let kc = write(
        dir.path(),
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    );
    let start = std::time::Instant::now();
    let r = kinject()
        .args(["check", "--wait", "3s"])
        .env("KUBECONFIG", &kc)
        .output()
        .expect("run");
    let took = start.elapsed();
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(2), "{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with("kubernetes-api: can query the Kubernetes API")
                && l.contains("[FAIL] --")
        ),
        "{out}"
    );
    assert!(!out.contains("[retry] --"), "not retried: {out}");
    assert!(took < std::time::Duration::from_secs(6), "took {took:?}");
    let r = kinject()
        .args(["check", "--wait", "soon"])
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(1));
}

/// The chart's Linkerd values are exactly the engine's defaults (what
/// `kinject values` prints), so chart and `install` cannot drift apart.
#[test]
fn chart_values_are_the_engine_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/kinject/values.yaml");
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("chart values"))
            .expect("yaml");
    let mut chart = chart.as_object().expect("map").clone();
    for k in [
        "installNamespace",
        "registry",
        "image",
        "controllerLogLevel",
        "ha",
        "replicas",
        "defaultInject",
        "proxyAutoInject",
    ] {
        assert!(
            chart.remove(k).is_some(),
            "kinject setting {k} missing from the chart"
        );
    }
    let r = run(&["values", "-o", "json"], None);
    let engine: Value = serde_json::from_str(&r.stdout).expect("json");
    pretty_assertions::assert_eq!(Value::Object(chart), engine);
}

/// The typed settings refuse what they cannot mean, naming the choices, before
/// anything is rendered or started.
#[test]
fn typed_settings_refuse_unknown_values() {
    for (args, want) in [
        (
            &["install", "--default-inject", "maybe"][..],
            "\"maybe\" is not one of enabled, disabled",
        ),
        (
            &["install", "--failure-policy", "Sometimes"],
            "\"Sometimes\" is not a failure policy: use Ignore or Fail",
        ),
        (
            &["identity", "--log-format", "xml"],
            "\"xml\" is not a log format: use plain or json",
        ),
        (
            &["proxy-injector", "--default-policy", "sometimes"],
            "\"sometimes\" is not one of enabled, disabled",
        ),
    ] {
        let out = kinject().args(args).output().expect("run");
        assert!(!out.status.success(), "kinject {args:?} accepted");
        assert!(out.stdout.is_empty(), "kinject {args:?} printed something");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want),
            "kinject {args:?}: want {want:?} in {err}"
        );
    }
}

/// A server with no cluster to reach says so, and what to do, instead of
/// starting half-way (the runtime builds every server's client).
#[test]
fn servers_without_a_cluster_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("no-kubeconfig");
    for server in ["identity", "destination"] {
        let out = kinject()
            .arg(server)
            .env("KUBECONFIG", &missing)
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .expect("run");
        assert!(
            !out.status.success(),
            "kinject {server} started without a cluster"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "kinject {server} needs a cluster: set KUBECONFIG (or --kubeconfig) or run in a pod"
            )),
            "kinject {server}: {err}"
        );
    }
}
