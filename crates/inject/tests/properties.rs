//! Property tests over generated pods and workloads:
//! - every injection patch applies cleanly and yields a valid k8s-openapi Pod;
//! - injection is idempotent (the webhook answers an injected pod with nothing,
//!   the CLI re-injects to the same bytes);
//! - uninject(inject(x)) == x.
//!
//! Generated objects never contain empty lists or maps for the fields injection
//! creates (`volumes`, `initContainers`, `labels`, `annotations`, `metadata`):
//! Kubernetes treats those as absent, and uninject removes them when it empties
//! them (see `workload::uninject_at`).

use k8s_openapi::api::core::v1::Pod;
use kinject_inject::{
    InjectDecision, Injector, InjectorConfig, NamespaceMeta, ObjectStatus, PodRequest, SkipReason,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn injector(native: bool) -> Injector {
    let mut values = kinject_mesh::values::Values::default();
    values.proxy.native_sidecar = native;
    Injector::new(InjectorConfig {
        values,
        trust_anchors_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ..InjectorConfig::default()
    })
    .expect("injector")
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[a-z]{1,5}\\.example\\.com/[a-z~]{1,6}",
        Just("app".to_string()),
    ]
}

fn string_map() -> impl Strategy<Value = Option<Map<String, Value>>> {
    proptest::option::of(
        proptest::collection::btree_map(key(), "[ -~]{0,12}", 1..4).prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>()
        }),
    )
}

fn container(prefix: &'static str) -> impl Strategy<Value = Value> {
    (
        0u8..20,
        proptest::collection::vec((1u16..65535, proptest::option::of("[a-z]{1,6}")), 0..3),
        proptest::option::of(1u16..65535),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(n, ports, probe, caps, sa)| {
            let mut c = json!({"name": format!("{prefix}{n}"), "image": "example/app:1"});
            if !ports.is_empty() {
                c["ports"] = ports
                    .into_iter()
                    .map(|(p, name)| match name {
                        Some(name) => json!({"containerPort": p, "name": name}),
                        None => json!({"containerPort": p}),
                    })
                    .collect();
            }
            if let Some(p) = probe {
                c["readinessProbe"] = json!({"httpGet": {"path": "/", "port": p}});
            }
            if caps {
                c["securityContext"] =
                    json!({"capabilities": {"add": ["SYS_TIME"], "drop": ["NET_RAW"]}});
            }
            if sa {
                c["volumeMounts"] = json!([{
                    "name": "token",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "readOnly": true
                }]);
            }
            c
        })
}

prop_compose! {
    fn pod_template()(
        labels in string_map(),
        annotations in string_map(),
        containers in proptest::collection::vec(container("app"), 1..4),
        init in proptest::collection::vec(container("init"), 0..3),
        volumes in proptest::collection::vec("[a-z]{1,6}", 0..3),
        has_metadata in any::<bool>(),
        future_field in any::<bool>(),
    ) -> Value {
        let mut spec = json!({"containers": containers});
        if !init.is_empty() {
            spec["initContainers"] = Value::from(init);
        }
        if !volumes.is_empty() {
            spec["volumes"] = volumes
                .into_iter()
                .map(|v| json!({"name": format!("v-{v}"), "emptyDir": {}}))
                .collect();
        }
        if future_field {
            spec["someFutureField"] = json!({"x": [1, 2]});
        }
        let mut pod = json!({"spec": spec});
        let mut md = Map::new();
        if let Some(l) = labels { md.insert("labels".into(), l.into()); }
        if let Some(a) = annotations { md.insert("annotations".into(), a.into()); }
        if has_metadata || !md.is_empty() {
            md.insert("name".into(), "p".into());
            pod["metadata"] = md.into();
        }
        pod
    }
}

fn workload() -> impl Strategy<Value = Value> {
    (pod_template(), 0usize..4).prop_map(|(tpl, kind)| match kind {
        0 => {
            let mut pod = tpl;
            pod["kind"] = json!("Pod");
            pod["apiVersion"] = json!("v1");
            if pod.get("metadata").is_none() {
                pod["metadata"] = json!({"name": "p"});
            }
            pod
        }
        1 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "d", "namespace": "ns"}, "spec": {"template": tpl}}),
        2 => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "* * * * *",
                             "jobTemplate": {"spec": {"template": tpl}}}}),
        _ => json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
                    "spec": {"serviceName": "s", "template": tpl}}),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn patch_applies_and_yields_a_valid_pod(pod in pod_template(), native in any::<bool>()) {
        let inj = injector(native);
        let ns = json!({"metadata": {"name": "apps"}});
        let req = PodRequest {
            namespace: Some(NamespaceMeta::from_object(&ns)),
            namespace_name: Some("apps"),
            ..PodRequest::pod(&pod)
        };
        let out = inj.inject_pod(&req);
        prop_assert!(out.decision.is_inject(), "{:?}", out.decision);
        let mut patched = pod.clone();
        out.patch.apply(&mut patched).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let typed: Pod = serde_json::from_value(patched.clone())
            .map_err(|e| TestCaseError::fail(format!("not a Pod: {e}")))?;
        let spec = typed.spec.expect("spec");
        let proxies = spec.containers.iter().chain(spec.init_containers.iter().flatten())
            .filter(|c| c.name == "linkerd-proxy").count();
        prop_assert_eq!(proxies, 1);
        // The user's containers keep their order and content.
        prop_assert_eq!(
            patched["spec"]["containers"].as_array().expect("containers").iter()
                .filter(|c| c["name"] != "linkerd-proxy").cloned().collect::<Vec<_>>(),
            pod["spec"]["containers"].as_array().expect("containers").clone()
        );

        // Reinvocation: an injected pod gets no further patch.
        let again = inj.inject_pod(&PodRequest { pod: &patched, ..req });
        prop_assert_eq!(
            again.decision,
            InjectDecision::Skip { reasons: vec![SkipReason::SidecarAlreadyExists] }
        );
        prop_assert!(again.patch.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn inject_is_idempotent_and_uninject_inverts(doc in workload(), native in any::<bool>()) {
        let inj = injector(native);
        let once = inj.inject_document(&doc);
        prop_assert_eq!(&once.reports[0].status, &ObjectStatus::Injected);
        let injected = once.changed.expect("changed");
        let twice = inj.inject_document(&injected);
        prop_assert_eq!(twice.changed.as_ref(), Some(&injected));
        let un = inj.uninject_document(&injected);
        prop_assert_eq!(&un.reports[0].status, &ObjectStatus::Uninjected);
        prop_assert_eq!(un.changed.expect("uninjected"), doc);
    }
}

/// Arbitrary JSON biased towards Kubernetes-looking keys, so garbage reaches
/// deep into the engine (wrong types everywhere: strings for lists, numbers for
/// maps, nulls).
fn k8s_ish_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,10}".prop_map(Value::from),
        prop_oneof![
            Just("Pod"),
            Just("Deployment"),
            Just("CronJob"),
            Just("List"),
            Just("enabled"),
            Just("disabled"),
            Just("linkerd-proxy"),
            Just("UDP"),
            Just("80"),
            Just("1.5"),
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("kind"),
        Just("metadata"),
        Just("spec"),
        Just("template"),
        Just("jobTemplate"),
        Just("containers"),
        Just("initContainers"),
        Just("ports"),
        Just("containerPort"),
        Just("name"),
        Just("labels"),
        Just("annotations"),
        Just("items"),
        Just("volumes"),
        Just("hostNetwork"),
        Just("securityContext"),
        Just("capabilities"),
        Just("add"),
        Just("volumeMounts"),
        Just("mountPath"),
        Just("readinessProbe"),
        Just("httpGet"),
        Just("port"),
        Just("linkerd.io/inject"),
        Just("linkerd.io/auto-inject"),
        Just("config.linkerd.io/opaque-ports"),
        Just("config.linkerd.io/proxy-cpu-limit"),
        Just("config.linkerd.io/enable-debug-sidecar"),
        Just("namespace"),
        Just("targetPort"),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Nothing panics, whatever the input; what is injected still applies.
    #[test]
    fn garbage_never_panics(doc in k8s_ish_json(), ns in k8s_ish_json()) {
        let inj = injector(true);
        let out = inj.inject_document(&doc);
        if let Some(changed) = &out.changed {
            prop_assert!(changed.is_object());
        }
        let _ = inj.uninject_document(&doc);
        let req = PodRequest {
            namespace: Some(NamespaceMeta::from_object(&ns)),
            ..PodRequest::pod(&doc)
        };
        let res = inj.inject_pod(&req);
        let mut target = doc.clone();
        if !res.patch.is_empty() {
            prop_assert!(res.patch.apply(&mut target).is_ok(), "patch does not apply: {:?}", res.patch);
        }
        let _ = inj.service_patch(&doc, req.namespace.as_ref());
    }
}
