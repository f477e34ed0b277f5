//! Whole Kubernetes objects for the offline CLI: workloads with pod templates,
//! bare Pods and `List`s of them. Objects stay `serde_json::Value`s throughout so
//! fields unknown to any typed model survive untouched.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use crate::decide::{InjectDecision, SkipReason, has_existing_sidecar};
use crate::injector::{Injector, Origin, Owner, PodRequest};
use crate::proxy;
use crate::warning::{Warning, WarningCode};
use kinject_mesh::labels::{
    CONTROL_PLANE_NS_LABEL, CREATED_BY_ANNOTATION, INJECT_ANNOTATION, PROXY_VERSION_ANNOTATION,
    TRUST_ROOT_SHA256_ANNOTATION, WORKLOAD_NS_LABEL, owner_label_kind,
};

/// The kinds whose pods kinject can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    ReplicationController,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl WorkloadKind {
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "Pod" => Self::Pod,
            "Deployment" => Self::Deployment,
            "ReplicaSet" => Self::ReplicaSet,
            "ReplicationController" => Self::ReplicationController,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            _ => return None,
        })
    }

    /// Where the pod (template) sits inside the object.
    pub fn template_pointer(self) -> &'static str {
        match self {
            Self::Pod => "",
            Self::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }
}

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ObjectStatus {
    Injected,
    Uninjected,
    Skipped {
        reasons: Vec<SkipReason>,
    },
    /// Not a kind with pods (Service, ConfigMap, …), or not a usable object.
    Unsupported,
    /// Nothing of kinject's was present (uninject).
    Unchanged,
}

/// One object's outcome: the (possibly new) object and what to report.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectReport {
    /// `<lowercase kind>/<name>`, as Linkerd's report names resources.
    pub resource: String,
    pub status: ObjectStatus,
    pub host_network: bool,
    /// A third-party proxy (another mesh) is present.
    pub sidecar: bool,
    pub udp: bool,
    pub warnings: Vec<Warning>,
}

/// The result of transforming one document.
#[derive(Clone, Debug)]
pub struct DocumentOutcome {
    /// `None` when the document is unchanged (the caller may re-emit its text).
    pub changed: Option<Value>,
    pub reports: Vec<ObjectReport>,
}

fn resource_name(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let md = obj.get("metadata");
    let name = md
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .or_else(|| {
            md.and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
        })
        .unwrap_or("");
    format!("{}/{}", kind.to_ascii_lowercase(), name)
}

fn unsupported(obj: &Value, message: String) -> ObjectReport {
    ObjectReport {
        resource: resource_name(obj),
        status: ObjectStatus::Unsupported,
        host_network: false,
        sidecar: false,
        udp: false,
        warnings: vec![Warning::new(WarningCode::UnsupportedObject, message)],
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Inject,
    Uninject,
}

impl Injector {
    /// Injects every pod template in a document (an object or a `List`).
    pub fn inject_document(&self, doc: &Value) -> DocumentOutcome {
        self.transform_document(doc, Mode::Inject)
    }

    /// Removes what `inject_document` added.
    pub fn uninject_document(&self, doc: &Value) -> DocumentOutcome {
        self.transform_document(doc, Mode::Uninject)
    }

    fn transform_document(&self, doc: &Value, mode: Mode) -> DocumentOutcome {
        if !doc.is_object() {
            let what = match doc {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "empty",
            };
            return DocumentOutcome {
                changed: None,
                reports: vec![unsupported(
                    doc,
                    format!(
                        "document is {what}, not a Kubernetes object; passed through unchanged"
                    ),
                )],
            };
        }
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            let Some(items) = doc.get("items").and_then(Value::as_array) else {
                return DocumentOutcome {
                    changed: None,
                    reports: vec![unsupported(
                        doc,
                        "List without items; passed through unchanged".into(),
                    )],
                };
            };
            let mut new_items = Vec::with_capacity(items.len());
            let mut reports = Vec::new();
            let mut any_changed = false;
            for item in items {
                let (new, report) = self.transform_object(item, mode);
                any_changed |= new.is_some();
                new_items.push(new.unwrap_or_else(|| item.clone()));
                reports.push(report);
            }
            let changed = any_changed.then(|| {
                let mut out = doc.clone();
                out["items"] = Value::Array(new_items);
                out
            });
            return DocumentOutcome { changed, reports };
        }
        let (changed, report) = self.transform_object(doc, mode);
        DocumentOutcome {
            changed,
            reports: vec![report],
        }
    }

    fn transform_object(&self, obj: &Value, mode: Mode) -> (Option<Value>, ObjectReport) {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(wk) = WorkloadKind::from_kind(kind) else {
            let msg = if kind.is_empty() {
                "document has no \"kind\"; passed through unchanged".to_string()
            } else {
                format!("kind {kind} has no pods to inject; passed through unchanged")
            };
            let mut r = unsupported(obj, msg);
            // Services, ConfigMaps etc. are normal in manifests: not worth a warning.
            if !kind.is_empty() {
                r.warnings.clear();
            }
            return (None, r);
        };
        let pointer = wk.template_pointer();
        let Some(pod) = obj.pointer(pointer).filter(|p| p.is_object()) else {
            return (
                None,
                unsupported(
                    obj,
                    format!("{kind} has no pod template at {pointer:?}; passed through unchanged"),
                ),
            );
        };
        match mode {
            Mode::Inject => self.inject_object(obj, wk, pod),
            Mode::Uninject => uninject_object(obj, pointer),
        }
    }

    fn inject_object(
        &self,
        obj: &Value,
        wk: WorkloadKind,
        pod: &Value,
    ) -> (Option<Value>, ObjectReport) {
        let pointer = wk.template_pointer();
        let mut report = ObjectReport {
            resource: resource_name(obj),
            status: ObjectStatus::Unsupported,
            host_network: pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true),
            sidecar: false,
            udp: crate::ports::udp_warning(pod.get("spec").unwrap_or(&Value::Null)).is_some(),
            warnings: Vec::new(),
        };
        // Re-injection: remove kinject's (or Linkerd's) own proxy first, so new
        // settings take effect and inject stays idempotent.
        let base: Cow<'_, Value> = if carries_proxy(pod) {
            let mut base = obj.clone();
            uninject_at(&mut base, pointer);
            if self.config().values.proxy.is_ingress {
                // Ingress mode from the values writes this annotation again;
                // removing it first keeps the output a fixed point (same
                // annotation order on every run).
                forget_ingress_annotation(&mut base, pointer);
            }
            Cow::Owned(base)
        } else {
            Cow::Borrowed(obj)
        };
        let pod = base.pointer(pointer).unwrap_or(pod);
        report.sidecar = has_existing_sidecar(
            pod.get("metadata").and_then(Value::as_object),
            pod.get("spec").unwrap_or(&Value::Null),
        );
        let owner = (wk != WorkloadKind::Pod).then(|| Owner {
            kind: obj
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase(),
            name: obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
        let namespace_name = base.pointer("/metadata/namespace").and_then(Value::as_str);
        let req = PodRequest {
            pod,
            namespace: None,
            namespace_name,
            owner: owner.as_ref(),
            origin: Origin::Cli,
            prefix: pointer,
        };
        let outcome = self.inject_pod(&req);
        report.warnings = outcome.warnings;
        match outcome.decision {
            InjectDecision::Inject { .. } => {
                let mut out = base.into_owned();
                if let Err(e) = outcome.patch.apply(&mut out) {
                    // The patch is built from this very object; failure is a bug.
                    report.warnings.push(Warning::new(
                        WarningCode::InternalError,
                        format!("internal error applying the patch ({e}); object left unchanged"),
                    ));
                    report.status = ObjectStatus::Skipped { reasons: vec![] };
                    return (None, report);
                }
                if let Some(pod) = out.pointer_mut(pointer) {
                    omit_empty_fields(pod);
                }
                report.status = ObjectStatus::Injected;
                (Some(out), report)
            }
            InjectDecision::Skip { reasons } => {
                report.status = ObjectStatus::Skipped { reasons };
                // A skipped object is emitted exactly as it was read.
                (None, report)
            }
        }
    }
}

/// Linkerd's CLI prints an injected object as Kubernetes' types serialise
/// it: the `resources: null` and zero `initialDelaySeconds` that the
/// webhook's patch carries (as Linkerd's webhook patch does) are not there.
/// Only the containers kinject adds are touched.
fn omit_empty_fields(pod: &mut Value) {
    const ADDED: [&str; 3] = [
        crate::proxy::PROXY_CONTAINER,
        crate::proxy::INIT_CONTAINER,
        crate::proxy::VALIDATOR_CONTAINER,
    ];
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            if !ADDED.contains(&c.get("name").and_then(Value::as_str).unwrap_or("")) {
                continue;
            }
            if c.get("resources").is_some_and(Value::is_null) {
                c.remove("resources");
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut)
                    && p.get("initialDelaySeconds").and_then(Value::as_i64) == Some(0)
                {
                    p.remove("initialDelaySeconds");
                }
            }
        }
    }
}

fn forget_ingress_annotation(obj: &mut Value, pointer: &str) {
    let annotations = obj
        .pointer_mut(&format!("{pointer}/metadata/annotations"))
        .and_then(Value::as_object_mut);
    if let Some(a) = annotations
        && a.get(INJECT_ANNOTATION).and_then(Value::as_str) == Some("ingress")
    {
        a.shift_remove(INJECT_ANNOTATION);
    }
}

fn uninject_object(obj: &Value, pointer: &str) -> (Option<Value>, ObjectReport) {
    let mut out = obj.clone();
    let changed = uninject_at(&mut out, pointer);
    let report = ObjectReport {
        resource: resource_name(obj),
        status: if changed {
            ObjectStatus::Uninjected
        } else {
            ObjectStatus::Unchanged
        },
        host_network: false,
        sidecar: false,
        udp: false,
        warnings: Vec::new(),
    };
    (changed.then_some(out), report)
}

const INJECTED_ANNOTATIONS: &[&str] = &[
    CREATED_BY_ANNOTATION,
    PROXY_VERSION_ANNOTATION,
    TRUST_ROOT_SHA256_ANNOTATION,
];
const INJECTED_CONTAINERS: &[&str] = &[proxy::PROXY_CONTAINER, proxy::DEBUG_CONTAINER];
const INJECTED_INIT_CONTAINERS: &[&str] = &[
    proxy::INIT_CONTAINER,
    proxy::PROXY_CONTAINER,
    proxy::VALIDATOR_CONTAINER,
];
const INJECTED_VOLUMES: &[&str] = &[
    proxy::END_ENTITY_VOLUME,
    proxy::TOKEN_VOLUME,
    proxy::PODINFO_VOLUME,
    "linkerd-proxy-init-xtables-lock",
];

fn is_injected_label(k: &str) -> bool {
    k == CONTROL_PLANE_NS_LABEL || k == WORKLOAD_NS_LABEL || owner_label_kind(k).is_some()
}

/// True when the pod carries kinject's (or Linkerd's) proxy: the marker
/// annotation, or a `linkerd-proxy` container or native sidecar.
fn carries_proxy(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(PROXY_VERSION_ANNOTATION))
        .is_some()
        || ["containers", "initContainers"].iter().any(|k| {
            pod.get("spec")
                .and_then(|s| s.get(*k))
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("name").and_then(Value::as_str) == Some(proxy::PROXY_CONTAINER)
                    })
                })
        })
}

/// Removes what injection added from the pod at `pointer`; true if anything was
/// removed. Lists and maps that injection created and that end up empty are
/// removed too: Kubernetes treats an empty list or map and an absent one alike.
pub fn uninject_at(obj: &mut Value, pointer: &str) -> bool {
    let Some(pod) = obj.pointer_mut(pointer) else {
        return false;
    };
    // Only pods that carry kinject's (or Linkerd's) proxy are touched: a pod
    // with a hand-added `linkerd.io/control-plane-ns` label keeps it.
    let has_proxy = carries_proxy(pod);
    if !has_proxy {
        return false;
    }
    let mut changed = false;
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        for (key, names) in [
            ("containers", INJECTED_CONTAINERS),
            ("initContainers", INJECTED_INIT_CONTAINERS),
            ("volumes", INJECTED_VOLUMES),
        ] {
            let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
                continue;
            };
            let before = list.len();
            list.retain(|c| {
                !c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| names.contains(&n))
            });
            if list.len() != before {
                changed = true;
                if list.is_empty() && key != "containers" {
                    spec.remove(key);
                }
            }
        }
    }
    if let Some(md) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        for (key, is_ours) in [
            (
                "annotations",
                (|k: &str| INJECTED_ANNOTATIONS.contains(&k)) as fn(&str) -> bool,
            ),
            ("labels", is_injected_label as fn(&str) -> bool),
        ] {
            let Some(map) = md.get_mut(key).and_then(Value::as_object_mut) else {
                continue;
            };
            let before = map.len();
            map.retain(|k, _| !is_ours(k));
            if map.len() != before {
                changed = true;
                if map.is_empty() {
                    md.remove(key);
                }
            }
        }
        if md.is_empty()
            && changed
            && let Some(p) = pod.as_object_mut()
        {
            p.remove("metadata");
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InjectorConfig;
    use serde_json::json;

    fn proxy_of(pod: &Value) -> &Value {
        let all = pod["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .chain(pod["spec"]["containers"].as_array())
            .flatten();
        all.into_iter()
            .find(|c| c["name"] == crate::proxy::PROXY_CONTAINER)
            .expect("a proxy container")
    }

    /// The CLI's output has no `resources: null` and no zero delays (as
    /// Linkerd's CLI prints it); the webhook's patch keeps both (as
    /// Linkerd's webhook patch has them).
    #[test]
    fn cli_output_omits_what_kubernetes_types_omit() {
        let mut cfg = InjectorConfig::default();
        cfg.values.proxy.native_sidecar = true;
        cfg.native_sidecars_supported = true;
        let injector = Injector::new(cfg).expect("injector");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": {"linkerd.io/inject": "enabled"}},
            "spec": {"containers": [{"name": "app", "image": "nginx",
                "resources": null}]},
        });
        let out = injector.inject_document(&pod);
        let injected = out.changed.expect("injected");
        let proxy = proxy_of(&injected);
        assert!(proxy.get("resources").is_none(), "{proxy}");
        assert!(proxy["startupProbe"].get("initialDelaySeconds").is_none());
        assert_eq!(proxy["livenessProbe"]["initialDelaySeconds"], 10);
        let init = &injected["spec"]["initContainers"][0];
        assert_eq!(init["name"], crate::proxy::INIT_CONTAINER);
        assert!(init.get("resources").is_none(), "{init}");
        // The app's own fields are the user's: left as they were.
        assert!(injected["spec"]["containers"][0]["resources"].is_null());
        assert!(
            injected["spec"]["containers"][0]
                .as_object()
                .is_some_and(|c| c.contains_key("resources"))
        );

        let mut patched = pod.clone();
        let outcome = injector.inject_pod(&PodRequest::pod(&pod));
        outcome.patch.apply(&mut patched).expect("patch applies");
        let proxy = proxy_of(&patched);
        assert!(proxy.get("resources").is_some_and(Value::is_null));
        assert_eq!(proxy["startupProbe"]["initialDelaySeconds"], 0);
    }
}
