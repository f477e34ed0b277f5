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
