//! The Helm chart (`charts/kinject`) renders the same objects as
//! `kinject install` for the same settings, and passes `helm lint`. Needs the
//! real helm: `scripts/test.sh` builds it (`scripts/helm-build.sh`) and sets
//! `KINJECT_HELM`; without it these tests fail under `KINJECT_E2E=1` and say
//! why otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm() -> Option<PathBuf> {
    match std::env::var_os("KINJECT_HELM") {
        Some(h) => Some(PathBuf::from(h)),
        None if std::env::var("KINJECT_E2E").as_deref() == Ok("1") => {
            panic!(
                "KINJECT_HELM is not set: scripts/test.sh builds helm with scripts/helm-build.sh"
            )
        }
        None => {
            eprintln!("SKIPPED: helm chart tests need KINJECT_HELM (run scripts/test.sh)");
            None
        }
    }
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Objects by kind/namespace/name; linkerd-config's values parsed, so both
/// sides compare as data, not as YAML text.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    let mut out = BTreeMap::new();
    for mut d in docs.into_iter().filter(|d| !d.is_null()) {
        if d["kind"] == "ConfigMap" && d["metadata"]["name"] == "linkerd-config" {
            let text = d["data"]["values"].as_str().expect("values").to_string();
            let parsed: Value = serde_saphyr::from_str(&text).expect("values YAML");
            d["data"]["values"] = parsed;
        }
        let key = format!(
            "{}/{}/{}",
            d["kind"].as_str().unwrap_or(""),
            d["metadata"]["namespace"].as_str().unwrap_or(""),
            d["metadata"]["name"].as_str().unwrap_or("")
        );
        out.insert(key, d);
    }
    out
}

fn install(args: &[&str]) -> BTreeMap<String, Value> {
    let (ok, out, err) = run(Command::new(env!("CARGO_BIN_EXE_kinject"))
        .arg("install")
        .args(args));
    assert!(ok, "kinject install {args:?}: {err}");
    objects(&out)
}

fn template(helm: &Path, args: &[&str]) -> BTreeMap<String, Value> {
    let (ok, out, err) = run(Command::new(helm)
        .args(["template", "kinject"])
        .arg(repo().join("charts/kinject"))
        .args(args));
    assert!(ok, "helm template {args:?}: {err}");
    objects(&out)
}

/// One dimension of install's flag space: the flags that set one thing, and
/// the values they take here, each beside the helm arguments that say the
/// same. The first choice is the default (no flag, no helm argument).
struct Dimension {
    flags: &'static [&'static str],
    choices: Vec<Choice>,
}

#[derive(Clone, Debug, Default)]
struct Choice {
    install: Vec<String>,
    helm: Vec<String>,
}

fn choice(install: &[&str], helm: &[&str]) -> Choice {
    Choice {
        install: install.iter().map(|s| s.to_string()).collect(),
        helm: helm.iter().map(|s| s.to_string()).collect(),
    }
}

/// A flag and the chart value it becomes: the default, then one other value.
fn flag(name: &'static [&'static str], install: &[&str], helm_set: &str) -> Dimension {
    Dimension {
        flags: name,
        choices: vec![Choice::default(), choice(install, &["--set", helm_set])],
    }
}

/// Flags of `kinject install` that are not a setting of the rendered
/// objects, and why.
const NOT_RENDERING_INPUTS: &[(&str, &str)] = &[
    (
        "--kubeconfig",
        "install renders offline; where a cluster is, not what to render",
    ),
    (
        "--context",
        "install renders offline; where a cluster is, not what to render",
    ),
    (
        "--crds",
        "prints the policy CRDs instead of the control plane (applied once per cluster)",
    ),
    ("--help", "prints help"),
    ("--version", "prints the version"),
];

/// Every long flag of `kinject install`, read from its own help.
fn install_flags() -> Vec<String> {
    let (ok, out, err) =
        run(Command::new(env!("CARGO_BIN_EXE_kinject")).args(["install", "--help"]));
    assert!(ok, "kinject install --help: {err}");
    out.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            // `-l, --linkerd-namespace <NAMESPACE>`: the long form.
            let line = match line.split_once(", --") {
                Some((short, _)) if short.starts_with('-') && short.len() == 2 => {
                    &line[short.len() + 2..]
                }
                _ => line,
            };
            line.strip_prefix("--").map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                format!("--{name}")
            })
        })
        .collect()
}

struct Files {
    anchors: String,
    crt: String,
    key: String,
    values: String,
    log_level: String,
}

/// Install's flag space, and how the chart is told the same.
fn flag_space(files: &Files) -> Vec<Dimension> {
    let (anchors, crt, key) = (
        format!("identityTrustAnchorsPEM={}", files.anchors),
        format!("identity.issuer.tls.crtPEM={}", files.crt),
        format!("identity.issuer.tls.keyPEM={}", files.key),
    );
    let external = "identity.issuer.scheme=kubernetes.io/tls";
    let log_file = format!("proxy.logLevel={}", files.log_level);
    vec![
        Dimension {
            flags: &["--linkerd-namespace"],
            choices: vec![
                Choice::default(),
                choice(&["-l", "mesh"], &["--namespace", "mesh"]),
            ],
        },
        Dimension {
            flags: &["--tls"],
            choices: vec![Choice::default(), choice(&["--tls", "optional"], &[])],
        },
        Dimension {
            flags: &["--proxy-auto-inject"],
            choices: vec![
                Choice::default(),
                choice(
                    &["--proxy-auto-inject=false"],
                    &["--set", "proxyAutoInject=false"],
                ),
                choice(&["--proxy-auto-inject"], &["--set", "proxyAutoInject=true"]),
            ],
        },
        flag(
            &["--controller-log-level"],
            &["--controller-log-level", "debug"],
            "controllerLogLevel=debug",
        ),
        flag(
            &["--registry"],
            &["--registry", "localhost:5000/me"],
            "registry=localhost:5000/me",
        ),
        flag(
            &["--image"],
            &["--image", "localhost/kinject:dev"],
            "image=localhost/kinject:dev",
        ),
        flag(
            &["--proxy-image"],
            &["--proxy-image", "localhost/proxy"],
            "proxy.image.name=localhost/proxy",
        ),
        flag(
            &["--proxy-version"],
            &["--proxy-version", "edge-26.9.1"],
            "proxy.image.version=edge-26.9.1",
        ),
        flag(
            &["--init-image"],
            &["--init-image", "localhost/init"],
            "proxyInit.image.name=localhost/init",
        ),
        flag(&["--ha"], &["--ha"], "ha=true"),
        Dimension {
            flags: &["--replicas"],
            choices: vec![
                Choice::default(),
                choice(&["--replicas", "2"], &["--set", "replicas=2"]),
                choice(&["--replicas", "5"], &["--set", "replicas=5"]),
            ],
        },
        Dimension {
            flags: &["--failure-policy"],
            choices: vec![
                Choice::default(),
                choice(
                    &["--failure-policy", "Fail"],
                    &["--set", "webhookFailurePolicy=Fail"],
                ),
                choice(
                    &["--failure-policy", "Ignore"],
                    &["--set", "webhookFailurePolicy=Ignore"],
                ),
            ],
        },
        flag(
            &["--default-inject"],
            &["--default-inject", "disabled"],
            "defaultInject=disabled",
        ),
        flag(
            &["--repair-missed"],
            &["--repair-missed"],
            "proxyInjector.repairMissed=true",
        ),
        // Where identity's issuer and anchors come from: the five forms the
        // flags allow (the contradictions are refused, tested below).
        Dimension {
            flags: &[
                "--identity-trust-anchors-file",
                "--identity-issuer-certificate-file",
                "--identity-issuer-key-file",
                "--identity-external-issuer",
                "--identity-external-ca",
            ],
            choices: vec![
                Choice::default(),
                choice(
                    &[
                        "--identity-trust-anchors-file",
                        &files.anchors,
                        "--identity-issuer-certificate-file",
                        &files.crt,
                        "--identity-issuer-key-file",
                        &files.key,
                    ],
                    &[
                        "--set-file",
                        &anchors,
                        "--set-file",
                        &crt,
                        "--set-file",
                        &key,
                    ],
                ),
                choice(
                    &[
                        "--identity-issuer-certificate-file",
                        &files.crt,
                        "--identity-issuer-key-file",
                        &files.key,
                        "--identity-external-ca",
                    ],
                    &[
                        "--set-file",
                        &crt,
                        "--set-file",
                        &key,
                        "--set",
                        "identity.externalCA=true",
                    ],
                ),
                choice(
                    &[
                        "--identity-trust-anchors-file",
                        &files.anchors,
                        "--identity-external-issuer",
                    ],
                    &["--set-file", &anchors, "--set", external],
                ),
                choice(
                    &["--identity-external-issuer", "--identity-external-ca"],
                    &["--set", external, "--set", "identity.externalCA=true"],
                ),
            ],
        },
        Dimension {
            flags: &["--values"],
            choices: vec![
                Choice::default(),
                choice(&["--values", &files.values], &["-f", &files.values]),
            ],
        },
        Dimension {
            flags: &["--set"],
            choices: vec![
                Choice::default(),
                choice(
                    &["--set", "proxy.logLevel=debug"],
                    &["--set", "proxy.logLevel=debug"],
                ),
                choice(
                    &[
                        "--set",
                        "identityTrustDomain=mesh.example.org,clusterDomain=example.org",
                    ],
                    &[
                        "--set",
                        "identityTrustDomain=mesh.example.org,clusterDomain=example.org",
                    ],
                ),
            ],
        },
        Dimension {
            flags: &["--set-string"],
            choices: vec![
                Choice::default(),
                choice(
                    &["--set-string", "proxy.logFormat=json"],
                    &["--set-string", "proxy.logFormat=json"],
                ),
            ],
        },
        // The same key as --set and the values file: the order of the
        // sources is part of what must agree.
        Dimension {
            flags: &["--set-file"],
            choices: vec![
                Choice::default(),
                choice(&["--set-file", &log_file], &["--set-file", &log_file]),
            ],
        },
    ]
}

/// The cases: all defaults, every choice of every dimension alone, then
/// combinations drawn (from a fixed seed) until every pair of choices of any
/// two dimensions has been rendered together at least once.
fn cases(space: &[Dimension]) -> Vec<Vec<usize>> {
    let defaults = vec![0; space.len()];
    let mut cases = vec![defaults.clone()];
    for (d, dim) in space.iter().enumerate() {
        for c in 1..dim.choices.len() {
            let mut case = defaults.clone();
            case[d] = c;
            cases.push(case);
        }
    }
    let mut uncovered = BTreeSet::new();
    for (i, a) in space.iter().enumerate() {
        for (j, b) in space.iter().enumerate().skip(i + 1) {
            for x in 0..a.choices.len() {
                for y in 0..b.choices.len() {
                    uncovered.insert((i, x, j, y));
                }
            }
        }
    }
    let covers = |case: &[usize], uncovered: &mut BTreeSet<(usize, usize, usize, usize)>| {
        let before = uncovered.len();
        for i in 0..case.len() {
            for j in i + 1..case.len() {
                uncovered.remove(&(i, case[i], j, case[j]));
            }
        }
        uncovered.len() < before
    };
    for case in &cases {
        covers(case, &mut uncovered);
    }
    let mut rng = fastrand::Rng::with_seed(20_261_206);
    for _ in 0..10_000 {
        if uncovered.is_empty() {
            break;
        }
        let case: Vec<usize> = space.iter().map(|d| rng.usize(..d.choices.len())).collect();
        if covers(&case, &mut uncovered) {
            cases.push(case);
        }
    }
    assert!(uncovered.is_empty(), "pairs never drawn: {uncovered:?}");
    cases
}

/// The chart and install are two renderings of the same objects: equal for
/// every flag of install with each value class, alone and for every pair of
/// flags together (plus whatever else each drawn combination sets).
#[test]
fn chart_renders_what_install_prints_over_the_flag_space() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    // The operator's PKI, as files for install and --set-file for helm.
    let now = time::OffsetDateTime::now_utc();
    let day = std::time::Duration::from_secs(86_400);
    let root = kinject_identity::ca::generate_root("root", now, 30 * day).expect("root");
    let issuer = kinject_identity::ca::Ca::new_issuer(&root, now, day).expect("issuer");
    let files = Files {
        anchors: file("ca.crt", &root.cert_pem),
        crt: file("issuer.crt", &issuer.cert_pem),
        key: file("issuer.key", &issuer.key_pem),
        values: file(
            "v.yaml",
            "proxy:\n  logLevel: warn\n  image: {version: edge-26.9.9}\nproxyInit:\n  ignoreInboundPorts: \"22\"\n",
        ),
        log_level: file("log-level", "trace"),
    };
    let space = flag_space(&files);

    // Every flag install has is in the space, or said not to render.
    let mut named: Vec<&str> = space.iter().flat_map(|d| d.flags.iter().copied()).collect();
    named.extend(NOT_RENDERING_INPUTS.iter().map(|(f, _)| *f));
    let flags = install_flags();
    assert!(
        flags.len() > 20,
        "read too few flags from the help: {flags:?}"
    );
    for f in flags {
        assert!(
            named.contains(&f.as_str()),
            "kinject install {f} is in neither the chart test's flag space nor \
             NOT_RENDERING_INPUTS: give the chart the same setting and add it here"
        );
    }

    let cases = cases(&space);
    eprintln!("{} dimensions, {} cases", space.len(), cases.len());
    for case in &cases {
        let (mut flags, mut sets) = (Vec::new(), Vec::new());
        for (dim, &c) in space.iter().zip(case) {
            flags.extend(dim.choices[c].install.iter().map(String::as_str));
            sets.extend(dim.choices[c].helm.iter().map(String::as_str));
        }
        if !sets.contains(&"--namespace") {
            sets.extend(["--namespace", "linkerd"]);
        }
        let want = install(&flags);
        let got = template(&helm, &sets);
        let context = format!("kinject install {flags:?} / helm template {sets:?}");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "objects for {context}"
        );
        for (k, w) in &want {
            pretty_assertions::assert_eq!(&got[k], w, "{k} for {context}");
        }
    }
}

#[test]
fn chart_passes_helm_lint_and_refuses_contradictions() {
    let Some(helm) = helm() else { return };
    let chart = repo().join("charts/kinject");
    let (ok, out, err) = run(Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .args(["--namespace", "linkerd"]));
    assert!(ok, "helm lint: {out}{err}");
    let (ok, out, err) = run(Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .args(["--set", "ha=true"]));
    assert!(ok, "helm lint --set ha=true: {out}{err}");
    // Each contradiction as the chart's values and as install's flags (the
    // chart's own block, `ha`, `replicas`, …, are flags of install).
    for (set, install_args, want) in [
        (
            "ha=true,replicas=1",
            &["--ha", "--replicas", "1"][..],
            "ha with replicas 1 is contradictory",
        ),
        (
            "webhookFailurePolicy=Sometimes",
            &["--failure-policy", "Sometimes"],
            "webhookFailurePolicy \"Sometimes\" is not one of Ignore, Fail",
        ),
        (
            "replicas=0",
            &["--replicas", "0"],
            "replicas must be at least 1",
        ),
        (
            "identityTrustAnchorsPEM=x",
            &["--set", "identityTrustAnchorsPEM=x"],
            "identityTrustAnchorsPEM needs the issuer it signs",
        ),
        (
            "identity.issuer.scheme=kubernetes.io/tls",
            &["--set", "identity.issuer.scheme=kubernetes.io/tls"],
            "your issuer needs the trust anchors",
        ),
        (
            "identity.issuer.tls.crtPEM=x",
            &["--set", "identity.issuer.tls.crtPEM=x"],
            "identity.issuer.tls.crtPEM needs identity.issuer.tls.keyPEM",
        ),
    ] {
        let (ok, _, err) = run(Command::new(&helm)
            .args(["template", "kinject"])
            .arg(&chart)
            .args(["--set", set]));
        assert!(!ok, "{set} rendered");
        assert!(err.contains(want), "{set}: want {want:?} in {err}");
        let (ok, out, _) = run(Command::new(env!("CARGO_BIN_EXE_kinject"))
            .arg("install")
            .args(install_args));
        assert!(!ok, "kinject install {install_args:?} rendered:\n{out}");
    }
}
