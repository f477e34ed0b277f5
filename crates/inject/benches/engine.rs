//! Hot paths of the engine: decide + patch + serialised patch bytes (what the
//! webhook does per pod), and whole-document injection (what the CLI does).
//!
//!     cargo bench -p kinject-inject --bench engine

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kinject_inject::{Injector, InjectorConfig, NamespaceMeta, Owner, PodRequest};
use serde_json::{Value, json};

/// The shape of Linkerd's `pod-inject-enabled.yaml` fixture.
fn typical_pod() -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "nginx", "namespace": "kube-public",
                     "annotations": {"linkerd.io/inject": "enabled"},
                     "labels": {"app": "nginx"}},
        "spec": {"containers": [{
            "name": "nginx", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 80}],
            "readinessProbe": {"httpGet": {"path": "/metrics", "port": 9090}},
        }]},
    })
}

/// 50 containers with 20 env vars and 2 ports each, 100 annotations.
fn large_pod() -> Value {
    let containers: Vec<Value> = (0..50)
        .map(|i| {
            let env: Vec<Value> = (0..20)
                .map(|j| json!({"name": format!("VAR_{j}"), "value": format!("value-{i}-{j}")}))
                .collect();
            json!({"name": format!("app-{i}"), "image": format!("example/app-{i}:1.0"),
                   "env": env,
                   "ports": [{"containerPort": 8000 + i, "name": format!("p{i}")},
                             {"containerPort": 9000 + i}],
                   "readinessProbe": {"httpGet": {"path": "/ready", "port": 8000 + i}}})
        })
        .collect();
    let annotations: serde_json::Map<String, Value> = (0..100)
        .map(|i| {
            (
                format!("example.com/annotation-{i}"),
                json!(format!("value {i}")),
            )
        })
        .collect();
    json!({"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": "big", "namespace": "apps", "annotations": annotations,
                        "labels": {"app": "big"}},
           "spec": {"containers": containers}})
}

fn injector() -> Injector {
    Injector::new(InjectorConfig {
        trust_anchors_pem:
            "-----BEGIN CERTIFICATE-----\nMIIBrjCCAVWgAwIBAgIU\n-----END CERTIFICATE-----\n".into(),
        created_by: "kinject/proxy-injector bench".into(),
        ..InjectorConfig::default()
    })
    .expect("injector")
}

fn bench(c: &mut Criterion) {
    let inj = injector();
    let ns = json!({"metadata": {"name": "apps", "annotations": {"linkerd.io/inject": "enabled"}}});
    let owner = Owner {
        kind: "deployment".into(),
        name: "web".into(),
    };
    for (name, pod) in [("typical", typical_pod()), ("large", large_pod())] {
        c.bench_function(&format!("inject_pod/{name}"), |b| {
            b.iter(|| {
                let req = PodRequest {
                    namespace: Some(NamespaceMeta::from_object(&ns)),
                    namespace_name: Some("apps"),
                    owner: Some(&owner),
                    ..PodRequest::pod(black_box(&pod))
                };
                let out = inj.inject_pod(&req);
                black_box(out.patch.to_json_bytes())
            })
        });
    }
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                              "spec": typical_pod()["spec"].clone()}}});
    c.bench_function("inject_document/deployment", |b| {
        b.iter(|| black_box(inj.inject_document(black_box(&deployment))))
    });
    let injected = inj.inject_document(&deployment).changed.expect("injected");
    c.bench_function("uninject_document/deployment", |b| {
        b.iter(|| black_box(inj.uninject_document(black_box(&injected))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
