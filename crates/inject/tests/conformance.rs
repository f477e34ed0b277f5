//! Conformance against Linkerd's own fixtures (`../shared/conformance/`).
//!
//! edge-26.8.3: every webhook patch case of section 3.3 of the behaviour spec,
//! replayed with the same parameters Linkerd's `webhook_test.go` uses, compared
//! structurally (parsed JSON, op order included).
//! edge-18.11.3: the seed-era decision cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kinject_inject::overrides::inherited_from_namespace;
use kinject_inject::{
    InjectDecision, Injector, InjectorConfig, NamespaceMeta, Owner, Policy, SkipReason,
};
use kinject_mesh::settings::DefaultPolicy;
use kinject_mesh::values::Values;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Finds `shared/conformance` above this crate, or `$KINJECT_CONFORMANCE_DIR`.
fn conformance_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("KINJECT_CONFORMANCE_DIR") {
        return Some(PathBuf::from(d));
    }
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        let candidate = dir.join("shared/conformance");
        if candidate.is_dir() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// The fixture directory; a missing one fails the test unless CI said why it
/// may be absent (`KINJECT_CONFORMANCE_OPTIONAL=1`, printed loudly by `.ci/run`).
fn fixtures(era: &str) -> Option<PathBuf> {
    match conformance_dir() {
        Some(d) => Some(d.join(era)),
        None if std::env::var("KINJECT_CONFORMANCE_OPTIONAL").as_deref() == Ok("1") => {
            eprintln!("CONFORMANCE FIXTURES NOT FOUND: test not run");
            None
        }
        None => panic!(
            "Linkerd conformance fixtures not found: set KINJECT_CONFORMANCE_DIR \
             to the shared/conformance directory"
        ),
    }
}

fn load_yaml(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).expect(name);
    serde_saphyr::from_str(&text).expect(name)
}

fn load_json(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).expect(name);
    serde_json::from_str(&text).expect(name)
}

/// Linkerd's webhook_test.go parameters.
fn head_injector() -> Injector {
    let mut values = Values {
        linkerd_version: "dev-undefined".into(),
        ..Values::default()
    };
    values.debug_container.image.version = "dev-undefined".into();
    Injector::new(InjectorConfig {
        values,
        linkerd_namespace: "linkerd".into(),
        trust_anchors_pem: "IdentityTrustAnchorsPEM".into(),
        created_by: String::new(),
        policy: Policy::default(),
        native_sidecars_supported: true,
    })
    .expect("injector")
}

fn owner() -> Owner {
    Owner {
        kind: "deployment".into(),
        name: "owner-deployment".into(),
    }
}

fn render(dir: &Path, pod_file: &str, ns_annotations: Option<Value>) -> Value {
    let injector = head_injector();
    let pod = load_yaml(dir, pod_file);
    let own = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let added: BTreeMap<String, String> = match &ns_annotations {
        Some(ns) => inherited_from_namespace(own, ns.as_object()),
        None => BTreeMap::new(),
    };
    let workload_ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
    let mut warnings = vec![];
    let patch = injector.render(&pod, "", &added, Some(&owner()), workload_ns, &mut warnings);
    serde_json::to_value(&patch).expect("patch json")
}

#[test]
fn head_webhook_patches() {
    let Some(dir) = fixtures("linkerd-edge-26.8.3") else {
        return;
    };
    let cases: &[(&str, Option<Value>, &str)] = &[
        ("pod-inject-empty.yaml", None, "pod.patch.json"),
        ("pod-inject-enabled.yaml", None, "pod.patch.json"),
        ("pod-with-debug-disabled.yaml", None, "pod.patch.json"),
        (
            "pod-with-debug-enabled.yaml",
            None,
            "pod-with-debug.patch.json",
        ),
        (
            "pod-with-custom-debug-tag.yaml",
            None,
            "pod-with-custom-debug.patch.json",
        ),
        (
            "pod-inject-enabled-log-level.yaml",
            None,
            "pod-log-level.json",
        ),
        (
            "pod-inject-enabled-cpu-ratio.yaml",
            None,
            "pod-cpu-ratio.json",
        ),
        (
            "pod-inject-enabled.yaml",
            Some(json!({
                "linkerd.io/inject": "enabled",
                "config.linkerd.io/skip-outbound-ports": "34567",
                "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "300",
                "config.linkerd.io/invalid-key": "invalid-value",
            })),
            "pod-with-ns-annotations.patch.json",
        ),
        (
            "pod-nativesidecar-inject-enabled.yaml",
            None,
            "pod.nativesidecar.patch.json",
        ),
    ];
    for (pod, ns, expected) in cases {
        let got = render(&dir, pod, ns.clone());
        let want = load_json(&dir, expected);
        assert_eq!(got, want, "{pod} -> {expected}");
    }
}

#[test]
fn head_decisions_for_the_patch_cases() {
    let Some(dir) = fixtures("linkerd-edge-26.8.3") else {
        return;
    };
    // Under Linkerd's opt-in policy these pods are injected (namespace enabled,
    // or the pod's own annotation).
    let injector = Injector::new(InjectorConfig {
        policy: Policy {
            default: DefaultPolicy::Disabled,
            excluded_namespaces: vec![],
        },
        ..InjectorConfig::default()
    })
    .expect("injector");
    let ns = load_yaml(&dir, "namespace-inject-enabled.yaml");
    let ns_meta = NamespaceMeta::from_object(&ns);
    for (pod_file, namespace) in [
        ("pod-inject-empty.yaml", Some(ns_meta)),
        ("pod-inject-enabled.yaml", None),
        ("pod-with-debug-disabled.yaml", None),
    ] {
        let pod = load_yaml(&dir, pod_file);
        let mut req = kinject_inject::PodRequest::pod(&pod);
        req.namespace = namespace;
        let mut w = vec![];
        assert!(injector.decide(&req, &mut w).is_inject(), "{pod_file}");
    }
    let pod = load_yaml(&dir, "pod-inject-empty.yaml");
    let mut w = vec![];
    assert_eq!(
        injector.decide(&kinject_inject::PodRequest::pod(&pod), &mut w),
        InjectDecision::Skip {
            reasons: vec![SkipReason::InjectionEnableAnnotationAbsent]
        }
    );
}

#[test]
fn head_opaque_ports_patches() {
    let Some(dir) = fixtures("linkerd-edge-26.8.3") else {
        return;
    };
    let injector = head_injector();
    let with = load_yaml(&dir, "namespace-with-opaque-ports.yaml");
    let without = load_yaml(&dir, "namespace-inject-enabled.yaml");
    let ns_with = NamespaceMeta::from_object(&with);
    let ns_without = NamespaceMeta::from_object(&without);
    let as_json = |p: kinject_inject::PodPatch| serde_json::to_value(&p).expect("json");

    let svc = load_yaml(&dir, "service-without-opaque-ports.yaml");
    assert_eq!(
        as_json(injector.service_patch(&svc, Some(&ns_with))),
        load_json(&dir, "annotation.patch.json")
    );
    assert!(injector.service_patch(&svc, Some(&ns_without)).is_empty());
    let svc = load_yaml(&dir, "service-with-opaque-ports.yaml");
    assert!(injector.service_patch(&svc, Some(&ns_with)).is_empty());
    assert!(injector.service_patch(&svc, Some(&ns_without)).is_empty());
    let svc = load_yaml(&dir, "filter-service-opaque-ports.yaml");
    assert_eq!(
        as_json(injector.service_patch(&svc, Some(&ns_without))),
        load_json(&dir, "filtered-service-opaque-ports.json")
    );

    let pod = load_yaml(&dir, "pod-without-opaque-ports.yaml");
    assert_eq!(
        as_json(injector.pod_opaque_ports_patch(&pod, Some(&ns_with))),
        load_json(&dir, "annotation.patch.json")
    );
    let pod = load_yaml(&dir, "pod-with-opaque-ports.yaml");
    assert!(
        injector
            .pod_opaque_ports_patch(&pod, Some(&ns_with))
            .is_empty()
    );
    assert!(
        injector
            .pod_opaque_ports_patch(&pod, Some(&ns_without))
            .is_empty()
    );
    let pod = load_yaml(&dir, "filter-pod-opaque-ports.yaml");
    assert_eq!(
        as_json(injector.pod_opaque_ports_patch(&pod, Some(&ns_without))),
        load_json(&dir, "filtered-pod-opaque-ports.json")
    );
}

/// The seed had no name-based namespace exclusions: its fixtures live in kube-public.
fn seed_injector() -> Injector {
    Injector::new(InjectorConfig {
        policy: Policy {
            default: DefaultPolicy::Enabled,
            excluded_namespaces: vec![],
        },
        ..InjectorConfig::default()
    })
    .expect("injector")
}

fn seed_decide(deployment: &Value) -> InjectDecision {
    let template = deployment.pointer("/spec/template").expect("template");
    let ns = json!({"metadata": {"name": "kube-public"}});
    let mut req = kinject_inject::PodRequest::pod(template);
    req.namespace = Some(NamespaceMeta::from_object(&ns));
    let mut w = vec![];
    seed_injector().decide(&req, &mut w)
}

#[test]
fn seed_template_label_gate() {
    let Some(dir) = fixtures("linkerd-edge-18.11.3") else {
        return;
    };
    for (file, ignored) in [
        ("deployment-inject-status-empty.yaml", false),
        ("deployment-inject-status-enabled.yaml", false),
        ("deployment-inject-status-disabled.yaml", true),
        ("deployment-inject-status-completed.yaml", true),
        ("deployment-with-injected-proxy.yaml", true),
    ] {
        let d = seed_decide(&load_yaml(&dir, file));
        assert_eq!(!d.is_inject(), ignored, "{file}: {d:?}");
    }
    let d = seed_decide(&load_yaml(&dir, "deployment-with-injected-proxy.yaml"));
    assert_eq!(d.skip_reasons(), &[SkipReason::SidecarAlreadyExists]);
}

#[test]
fn seed_admission_reviews() {
    let Some(dir) = fixtures("linkerd-edge-18.11.3") else {
        return;
    };
    for (name, injected) in [
        ("inject-no-labels", true),
        ("inject-enabled", true),
        ("inject-disabled", false),
        ("inject-completed", false),
    ] {
        let review = load_json(&dir, &format!("{name}-request.json"));
        let deployment = review.pointer("/request/object").expect("object");
        let response = load_yaml(&dir, &format!("{name}-response.yaml"));
        let has_patch = response
            .pointer("/response/patch")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty());
        assert_eq!(has_patch, injected, "{name}: fixture expectation");
        let d = seed_decide(deployment);
        assert_eq!(d.is_inject(), injected, "{name}: {d:?}");

        // Injecting the whole Deployment (CLI path) keeps the template's own
        // labels and adds the seed's two labels, as the seed's patch did.
        // (The admission object carries no `kind`; the request's `kind` says it.)
        let mut object = deployment.clone();
        object["kind"] = json!("Deployment");
        let out = seed_injector().inject_document(&object);
        if injected {
            let new = out.changed.expect("injected");
            let labels = new
                .pointer("/spec/template/metadata/labels")
                .expect("labels");
            assert_eq!(labels["app"], "nginx");
            assert_eq!(labels["linkerd.io/control-plane-ns"], "linkerd");
            assert_eq!(labels["linkerd.io/proxy-deployment"], "nginx");
            let ann = new
                .pointer("/spec/template/metadata/annotations")
                .expect("ann");
            assert_eq!(ann["created-by"], "isim");
            let names: Vec<&str> = new
                .pointer("/spec/template/spec/initContainers")
                .and_then(Value::as_array)
                .expect("init")
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert_eq!(names, ["linkerd-init", "linkerd-proxy"]);
        } else {
            assert!(out.changed.is_none(), "{name}");
        }
    }
}

/// Linkerd's complete chart defaults load with no unknown key, and give the
/// same values as kinject's built-in defaults (only `linkerdVersion`, a
/// placeholder in the chart, and the empty trust anchors differ).
#[test]
fn linkerd_values_yaml_loads_with_zero_warnings() {
    let Some(dir) = fixtures("linkerd-edge-26.8.3") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("values.yaml")).expect("values.yaml");
    let mut loader = kinject_mesh::values::ValuesLoader::new();
    loader
        .add_document("values.yaml", &text)
        .expect("values.yaml parses");
    let loaded = loader.finish().expect("values.yaml loads");
    let unknown: Vec<String> = loaded.unknown_keys.iter().map(|u| u.to_string()).collect();
    assert_eq!(unknown, Vec::<String>::new());
    let expected = Values {
        linkerd_version: "linkerdVersionValue".into(),
        identity_trust_anchors_pem: loaded.values.identity_trust_anchors_pem.clone(),
        ..Values::default()
    };
    assert_eq!(loaded.values, expected);
}
