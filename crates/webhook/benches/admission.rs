//! The webhook's hot path without the network: AdmissionReview bytes in,
//! response bytes out (`Admission::handle`), with an in-memory cluster view.
//! Cases: the same pod again with a new uid (what a ReplicaSet scale-up
//! sends: a review-cache hit), the same with the uid not first in `request`
//! (a layout the API server does not send: an object-cache hit), a different
//! pod every time (the engine runs); a typical pod and a ~100 KB one, both
//! with the `managedFields` the API server adds.
//!
//!     cargo bench -p kinject-webhook --bench admission

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinject_inject::{Injector, InjectorConfig, Owner};
use kinject_k8s::cache::{ClusterLookup, NamespaceInfo};
use kinject_k8s::events::EventSink;
use kinject_webhook::admission::Admission;
use kinject_webhook::metrics::Metrics;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

// The allocator `kinject` runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Cluster;

impl ClusterLookup for Cluster {
    async fn namespace(&self, name: &str) -> NamespaceInfo {
        let mut info = NamespaceInfo::unknown(name);
        info.known = true;
        info.labels
            .insert("kubernetes.io/metadata.name".into(), name.into());
        info
    }
    async fn owner(&self, _ns: &str, controller: Option<(&str, &str)>) -> Option<Owner> {
        controller.map(|_| Owner {
            kind: "deployment".into(),
            name: "web".into(),
        })
    }
}

/// In the API server's layout: compact, `uid` first in `request`.
fn review(pod: Value) -> String {
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
           "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                       "kind": {"group": "", "version": "v1", "kind": "Pod"},
                       "resource": {"group": "", "version": "v1", "resource": "pods"},
                       "namespace": "apps", "operation": "CREATE", "object": pod}})
    .to_string()
}

/// A Deployment's pod as the API server sends it (generateName, owner).
fn typical_pod(tag: &str) -> Value {
    with_managed_fields(json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-5d9c8b7f6-", "namespace": "apps",
                        "labels": {"app": "web", "pod-template-hash": "5d9c8b7f6"},
                        "annotations": {"linkerd.io/inject": "enabled", "bench/tag": tag},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "name": "web-5d9c8b7f6", "uid": "0a5c",
                                             "controller": true, "blockOwnerDeletion": true}]},
           "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                    "ports": [{"name": "http", "containerPort": 80}],
                                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}))
}

/// The load benchmark's ~100 KB pod: 50 containers × 12 env vars.
fn big_pod(tag: &str) -> Value {
    let mut pod = typical_pod(tag);
    pod["spec"]["containers"] = (0..50)
        .map(|i| {
            json!({"name": format!("app-{i}"), "image": format!("example/app-{i}:1"),
                   "env": (0..12).map(|j| json!({"name": format!("VAR_{j}"), "value": "x".repeat(40)}))
                                 .collect::<Vec<_>>(),
                   "ports": [{"containerPort": 8000 + i}]})
        })
        .collect();
    with_managed_fields(pod)
}

/// Adds `metadata.managedFields` as the API server sets it for a pod the
/// ReplicaSet controller creates: one entry naming every field set.
fn with_managed_fields(mut pod: Value) -> Value {
    let fields = |v: &Value| -> Value {
        let mut out = serde_json::Map::new();
        if let Some(o) = v.as_object() {
            for k in o.keys() {
                out.insert(format!("f:{k}"), json!({}));
            }
        }
        Value::Object(out)
    };
    let mut containers = serde_json::Map::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let mut f = fields(c);
        if let Some(env) = c["env"].as_array() {
            let mut e = serde_json::Map::new();
            e.insert(".".into(), json!({}));
            for v in env {
                e.insert(
                    format!("k:{{\"name\":\"{}\"}}", v["name"].as_str().unwrap_or("")),
                    json!({".": {}, "f:name": {}, "f:value": {}}),
                );
            }
            f["f:env"] = Value::Object(e);
        }
        containers.insert(
            format!("k:{{\"name\":\"{}\"}}", c["name"].as_str().unwrap_or("")),
            f,
        );
    }
    let entry = json!({"manager": "kube-controller-manager", "operation": "Update",
        "apiVersion": "v1", "time": "2026-11-25T03:15:10Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": fields(&pod["metadata"]),
                     "f:spec": {"f:containers": containers, "f:dnsPolicy": {},
                                "f:restartPolicy": {}, "f:schedulerName": {}}}});
    pod["metadata"]["managedFields"] = json!([entry]);
    pod
}

/// `review` again with the next uid, as each pod of a scale-up comes.
fn with_new_uid(review: &str, n: &mut u64) -> String {
    *n += 1;
    review.replace("705ab4f5-6393", &format!("{n:013}"))
}

fn admission() -> Admission<Cluster> {
    let engine = Injector::new(InjectorConfig {
        trust_anchors_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        native_sidecars_supported: false,
        ..InjectorConfig::default()
    })
    .expect("default configuration");
    Admission::new(
        Arc::new(ArcSwap::from_pointee(engine)),
        Cluster,
        Metrics::register(&mut Registry::default()),
        EventSink::disabled(),
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let adm = admission();
    let mut g = c.benchmark_group("admission");
    for (name, make) in [
        ("typical", typical_pod as fn(&str) -> Value),
        ("100kb", big_pod),
    ] {
        let same = review(make("same"));
        g.throughput(Throughput::Bytes(same.len() as u64));
        let mut n = 0u64;
        g.bench_function(format!("{name}/repeated"), |b| {
            b.iter_batched(
                || with_new_uid(&same, &mut n),
                |body| black_box(rt.block_on(adm.handle(body.as_bytes()))),
                BatchSize::SmallInput,
            )
        });
        // As the server receives it: in 16 KB chunks, hashed in place.
        g.bench_function(format!("{name}/repeated-in-chunks"), |b| {
            b.iter_batched(
                || with_new_uid(&same, &mut n),
                |body| {
                    let parts: Vec<&[u8]> = body.as_bytes().chunks(16 * 1024).collect();
                    black_box(rt.block_on(adm.handle_parts(&parts, false)))
                },
                BatchSize::SmallInput,
            )
        });
        // As the API server asks (Accept-Encoding: gzip): the cached
        // compressed tail, a stored head and a combined CRC.
        g.bench_function(format!("{name}/repeated-gzip"), |b| {
            b.iter_batched(
                || with_new_uid(&same, &mut n),
                |body| black_box(rt.block_on(adm.handle_parts(&[body.as_bytes()], true))),
                BatchSize::SmallInput,
            )
        });
        // `uid` moved after `kind`: no review-level match, the object cache answers.
        let other_layout = same.replace(
            r#""uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"}"#,
            r#""kind":{"group":"","version":"v1","kind":"Pod"},"uid":"705ab4f5-6393-11e8-b7cc-42010a800002""#,
        );
        assert_ne!(other_layout, same, "layout rewrite");
        g.bench_function(format!("{name}/repeated-other-layout"), |b| {
            b.iter(|| black_box(rt.block_on(adm.handle(black_box(other_layout.as_bytes())))))
        });
        let template = review(make("__N__"));
        let mut n = 0u64;
        g.bench_function(format!("{name}/unique"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    template.replace("__N__", &n.to_string())
                },
                |body| black_box(rt.block_on(adm.handle(body.as_bytes()))),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
