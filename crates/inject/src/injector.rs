//! The `Injector`: configuration prepared once, then `inject_pod()` per request.
//!
//! Two layers, mirroring Linkerd so its fixtures can be replayed exactly:
//! - [`Injector::render`] builds the RFC 6902 patch for a pod (Linkerd's `GetPodPatch`);
//! - [`Injector::inject_pod`] decides, computes the annotations the webhook adds
//!   (created-by, inherited namespace keys, filtered opaque ports), then renders.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::annotations::{EffectiveAnnotations, scalar_str};
use crate::decide::{self, InjectDecision, NamespaceMeta, Policy};
use crate::overrides::{self, AnnotationSettings};
use crate::patch::{PatchBuilder, PodPatch};
use crate::ports;
use crate::proxy::{self, PodFacts};
use crate::warning::{Warning, WarningCode};
use kinject_mesh::labels::{
    CONTROL_PLANE_NS_LABEL, CREATED_BY_ANNOTATION, INJECT_ANNOTATION, NATIVE_SIDECAR_ALPHA,
    NATIVE_SIDECAR_BETA, NATIVE_SIDECAR_STABLE, OPAQUE_PORTS_ANNOTATION, PROXY_LABEL_PREFIX,
    PROXY_VERSION_ANNOTATION, TRUST_ROOT_SHA256_ANNOTATION, WORKLOAD_NS_LABEL,
};
use kinject_mesh::values::{Values, ValuesError};

/// Kubernetes' limit on the total size of an object's annotations.
pub const ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Everything the engine needs; built once, shared by all requests.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    pub values: Values,
    /// The control-plane namespace (`-l/--linkerd-namespace`).
    pub linkerd_namespace: String,
    /// Trust anchors PEM; when empty, `values.identityTrustAnchorsPEM` is used.
    pub trust_anchors_pem: String,
    /// Value of `linkerd.io/created-by` (e.g. `kinject/proxy-injector 0.1.0`).
    pub created_by: String,
    pub policy: Policy,
    /// False for API servers before 1.29, which drop `restartPolicy` on init
    /// containers: the proxy must then be a classic sidecar.
    pub native_sidecars_supported: bool,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            values: Values::default(),
            linkerd_namespace: "linkerd".into(),
            trust_anchors_pem: String::new(),
            created_by: format!("kinject/cli {}", env!("CARGO_PKG_VERSION")),
            policy: Policy::default(),
            native_sidecars_supported: true,
        }
    }
}

/// Where a request comes from; the webhook also writes the annotations Linkerd's
/// webhook writes (inherited namespace keys, filtered opaque ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Webhook,
    Cli,
}

/// The workload that owns a pod, resolved as far as the caller could
/// (ReplicaSet → Deployment, Job → CronJob). `kind` is lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// One pod to consider: a Pod or a pod template (`{metadata, spec}`).
#[derive(Clone, Copy, Debug)]
pub struct PodRequest<'a> {
    pub pod: &'a Value,
    /// The namespace object's metadata, when known (webhook, explain).
    pub namespace: Option<NamespaceMeta<'a>>,
    /// The namespace the pod is created in (admission `request.namespace`); falls
    /// back to the pod's `metadata.namespace`.
    pub namespace_name: Option<&'a str>,
    pub owner: Option<&'a Owner>,
    pub origin: Origin,
    /// JSON pointer of the pod within the object being patched
    /// (`""`, `/spec/template`, `/spec/jobTemplate/spec/template`).
    pub prefix: &'a str,
}

impl<'a> PodRequest<'a> {
    pub fn pod(pod: &'a Value) -> Self {
        Self {
            pod,
            namespace: None,
            namespace_name: None,
            owner: None,
            origin: Origin::Webhook,
            prefix: "",
        }
    }
}

/// The engine's answer.
#[derive(Clone, Debug, Serialize)]
pub struct InjectOutcome {
    pub decision: InjectDecision,
    /// The patch to apply: the full injection, an opaque-ports annotation for a
    /// skipped pod, or empty.
    pub patch: PodPatch,
    pub warnings: Vec<Warning>,
}

/// The prepared injection engine.
#[derive(Clone, Debug)]
pub struct Injector {
    cfg: InjectorConfig,
    trust_root_sha256: String,
    trust_anchors_env: String,
}

impl Injector {
    pub fn new(mut cfg: InjectorConfig) -> Result<Self, ValuesError> {
        cfg.values.validate()?;
        if cfg.trust_anchors_pem.is_empty() {
            cfg.trust_anchors_pem = cfg.values.identity_trust_anchors_pem.clone();
        }
        let digest = Sha256::digest(cfg.trust_anchors_pem.as_bytes());
        let trust_root_sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        let trust_anchors_env = format!("{}\n", cfg.trust_anchors_pem.trim());
        Ok(Self {
            cfg,
            trust_root_sha256,
            trust_anchors_env,
        })
    }

    pub fn config(&self) -> &InjectorConfig {
        &self.cfg
    }

    /// Decides only (used by `explain` and reports).
    pub fn decide(&self, req: &PodRequest<'_>, warnings: &mut Vec<Warning>) -> InjectDecision {
        decide::decide(
            &self.cfg.policy,
            &self.cfg.linkerd_namespace,
            req.pod,
            req.namespace.as_ref(),
            warnings,
        )
    }

    /// Decides, and builds the patch for, one pod.
    pub fn inject_pod(&self, req: &PodRequest<'_>) -> InjectOutcome {
        let mut warnings = Vec::new();
        let decision = self.decide(req, &mut warnings);
        let metadata = req.pod.get("metadata").and_then(Value::as_object);
        let own = metadata
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object);
        let ns_ann = req.namespace.and_then(|n| n.annotations);
        let spec = req.pod.get("spec").unwrap_or(&Value::Null);

        if !decision.is_inject() {
            let patch = if req.origin == Origin::Webhook {
                self.opaque_ports_patch(
                    req.pod,
                    ns_ann,
                    ports::filtered_pod_defaults(&self.cfg.values.proxy.opaque_ports, spec),
                )
            } else {
                PodPatch::default()
            };
            return InjectOutcome {
                decision,
                patch,
                warnings,
            };
        }

        let mut added = BTreeMap::new();
        if req.origin == Origin::Webhook {
            added = overrides::inherited_from_namespace(own, ns_ann);
            let has_opaque = own.is_some_and(|a| a.contains_key(OPAQUE_PORTS_ANNOTATION))
                || added.contains_key(OPAQUE_PORTS_ANNOTATION);
            if !has_opaque {
                let filtered =
                    ports::filtered_pod_defaults(&self.cfg.values.proxy.opaque_ports, spec);
                if !filtered.is_empty() {
                    added.insert(OPAQUE_PORTS_ANNOTATION.to_string(), filtered);
                }
            }
        }
        if !self.cfg.created_by.is_empty() {
            added.insert(CREATED_BY_ANNOTATION.into(), self.cfg.created_by.clone());
        }
        // Ingress mode from the values (`proxy.isIngress`, `--ingress`) is
        // written on the pod as Linkerd's CLI does, so re-injection and every
        // tool that reads the annotation see an ingress proxy.
        if self.cfg.values.proxy.is_ingress {
            added.insert(INJECT_ANNOTATION.into(), "ingress".into());
        }
        let workload_ns = req.namespace_name.or_else(|| {
            metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
        });
        let patch = self.render(
            req.pod,
            req.prefix,
            &added,
            req.owner,
            workload_ns,
            &mut warnings,
        );
        InjectOutcome {
            decision,
            patch,
            warnings,
        }
    }

    /// Builds the injection patch for `pod` (Linkerd's `GetPodPatch`). `added`
    /// annotations are written to the pod and read as its configuration.
    pub fn render(
        &self,
        pod: &Value,
        prefix: &str,
        added: &BTreeMap<String, String>,
        owner: Option<&Owner>,
        workload_ns: Option<&str>,
        warnings: &mut Vec<Warning>,
    ) -> PodPatch {
        let metadata = pod.get("metadata").and_then(Value::as_object);
        let own = metadata
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object);
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let eff = EffectiveAnnotations::collect(own, added);
        // Most pods carry no overrides: borrow the shared values then.
        let (values, settings) = if eff.has_overrides() {
            let mut values = self.cfg.values.clone();
            let settings = overrides::apply_overrides(&mut values, &eff, warnings);
            (Cow::Owned(values), settings)
        } else {
            (
                Cow::Borrowed(&self.cfg.values),
                AnnotationSettings::default(),
            )
        };
        let values: &Values = &values;
        let native = self.native_mode(values, &eff, warnings);

        if self.cfg.trust_anchors_pem.trim().is_empty() {
            warnings.push(Warning::new(
                WarningCode::NoTrustAnchors,
                "no identity trust anchors are configured; the proxy will not start \
                 (set --trust-anchors or identityTrustAnchorsPEM)",
            ));
        }
        if let Some(w) = ports::udp_warning(spec) {
            warnings.push(w);
        }

        let debug_sidecar = settings.enable_debug_sidecar;
        let facts = self.pod_facts(values, spec, settings, native, warnings);

        // Metadata: annotations and labels, each sorted by key.
        let mut new_annotations: BTreeMap<&str, &str> = BTreeMap::new();
        new_annotations.insert(PROXY_VERSION_ANNOTATION, proxy::proxy_version(values));
        new_annotations.insert(TRUST_ROOT_SHA256_ANNOTATION, &self.trust_root_sha256);
        for (k, v) in added {
            new_annotations.insert(k, v);
        }
        self.check_annotation_size(own, &new_annotations, warnings);

        let labels = self.pod_labels(owner, workload_ns);

        let mut b = PatchBuilder::new(prefix);
        if metadata.is_none() {
            b.add(&["metadata"], &Value::Object(Map::new()));
        }
        if own.is_none() {
            b.add(&["metadata", "annotations"], &Value::Object(Map::new()));
        }
        for (k, v) in &new_annotations {
            b.add(&["metadata", "annotations", k], v);
        }
        if metadata
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .is_none()
        {
            b.add(&["metadata", "labels"], &Value::Object(Map::new()));
        }
        for (k, v) in &labels {
            b.add(&["metadata", "labels", k], v);
        }
        let has = |k: &str| spec.get(k).and_then(Value::as_array).is_some();
        if !has("volumes") {
            b.add(&["spec", "volumes"], &Value::Array(vec![]));
        }
        if !has("initContainers") {
            b.add(&["spec", "initContainers"], &Value::Array(vec![]));
        }
        let init_slot = if native { "0" } else { "-" };
        if values.cni_enabled {
            b.add(
                &["spec", "initContainers", init_slot],
                &proxy::network_validator(values),
            );
        } else {
            b.add(&["spec", "volumes", "-"], &proxy::xtables_volume(values));
            b.add(
                &["spec", "initContainers", init_slot],
                &proxy::init_container(values, &facts),
            );
        }
        if debug_sidecar {
            b.add(
                &["spec", "containers", "-"],
                &proxy::debug_container(values),
            );
        }
        b.add(&["spec", "volumes", "-"], &proxy::end_entity_volume());
        if values.proxy.tracing.enabled {
            b.add(&["spec", "volumes", "-"], &proxy::podinfo_volume());
        }
        if values.identity.service_account_token_projection {
            b.add(&["spec", "volumes", "-"], &proxy::token_volume());
        }
        let proxy_path: [&str; 3] = if native {
            ["spec", "initContainers", "1"]
        } else if values.proxy.await_ {
            ["spec", "containers", "0"]
        } else {
            ["spec", "containers", "-"]
        };
        b.add(
            &proxy_path,
            &proxy::proxy_container(values, &self.cfg.linkerd_namespace, &facts),
        );
        finish(b, warnings)
    }

    /// The labels kinject adds: its control plane, the workload's namespace
    /// and the owner (which identity reads to name the workload's Secret).
    fn pod_labels<'a>(
        &'a self,
        owner: Option<&'a Owner>,
        workload_ns: Option<&'a str>,
    ) -> BTreeMap<String, &'a str> {
        let mut labels: BTreeMap<String, &str> = BTreeMap::new();
        labels.insert(CONTROL_PLANE_NS_LABEL.into(), &self.cfg.linkerd_namespace);
        if let Some(ns) = workload_ns.filter(|ns| !ns.is_empty()) {
            labels.insert(WORKLOAD_NS_LABEL.into(), ns);
        }
        if let Some(o) =
            owner.filter(|o| kinject_mesh::labels::LABELLED_OWNER_KINDS.contains(&o.kind.as_str()))
        {
            labels.insert(format!("{PROXY_LABEL_PREFIX}{}", o.kind), &o.name);
        }
        labels
    }

    fn native_mode(
        &self,
        values: &Values,
        eff: &EffectiveAnnotations<'_>,
        warnings: &mut Vec<Warning>,
    ) -> bool {
        if !values.proxy.native_sidecar {
            return false;
        }
        if self.cfg.native_sidecars_supported {
            return true;
        }
        if [
            NATIVE_SIDECAR_STABLE,
            NATIVE_SIDECAR_BETA,
            NATIVE_SIDECAR_ALPHA,
        ]
        .iter()
        .any(|k| eff.get(k).is_some())
        {
            warnings.push(Warning::new(
                WarningCode::NativeSidecarUnsupported,
                "native sidecar requested, but this API server predates native sidecars \
                 (Kubernetes < 1.29); the proxy is injected as a classic sidecar",
            ));
        }
        false
    }

    fn pod_facts<'a>(
        &'a self,
        values: &Values,
        spec: &'a Value,
        settings: AnnotationSettings,
        native: bool,
        warnings: &mut Vec<Warning>,
    ) -> PodFacts<'a> {
        let app = spec
            .get("containers")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        let app_capabilities = app
            .and_then(|c| c.pointer("/securityContext/capabilities"))
            .and_then(Value::as_object);
        let sa_mount = app
            .and_then(|c| c.get("volumeMounts"))
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m.get("mountPath").and_then(Value::as_str) == Some(proxy::SA_TOKEN_PATH)
                })
            })
            .map(|m| {
                let mut out = Map::new();
                for k in ["name", "mountPath", "readOnly"] {
                    if let Some(v) = m.get(k) {
                        out.insert(k.into(), v.clone());
                    }
                }
                Value::Object(out)
            });
        let inbound_ports = if values.proxy.pod_inbound_ports.is_empty() {
            ports::inbound_ports(spec)
        } else {
            values.proxy.pod_inbound_ports.clone()
        };
        PodFacts {
            app_capabilities,
            sa_mount,
            inbound_ports,
            opaque_ports: ports::resolve_opaque_ports(&values.proxy.opaque_ports, spec, warnings),
            trust_anchors_env: &self.trust_anchors_env,
            additional_env: proxy::additional_env(values, settings.additional_env_overrides),
            native,
        }
    }

    fn check_annotation_size(
        &self,
        own: Option<&Map<String, Value>>,
        new: &BTreeMap<&str, &str>,
        warnings: &mut Vec<Warning>,
    ) {
        let mut total: usize = new.iter().map(|(k, v)| k.len() + v.len()).sum();
        for (k, v) in own.into_iter().flatten() {
            if !new.contains_key(k.as_str()) {
                total += k.len() + scalar_str(v).map_or(0, |s| s.len());
            }
        }
        if total > ANNOTATION_SIZE_LIMIT {
            warnings.push(Warning::new(
                WarningCode::AnnotationsTooLarge,
                format!(
                    "annotations total {total} bytes after injection, over Kubernetes' \
                     {ANNOTATION_SIZE_LIMIT}-byte limit; the API server will reject the object"
                ),
            ));
        }
    }

    /// The opaque-ports annotation patch for a Service, or for a pod that is not
    /// injected: the namespace's list when it has one, else the default opaque
    /// ports the object actually uses. Empty when the object already says.
    pub fn service_patch(&self, svc: &Value, namespace: Option<&NamespaceMeta<'_>>) -> PodPatch {
        let filtered = ports::filtered_service_defaults(&self.cfg.values.proxy.opaque_ports, svc);
        self.opaque_ports_patch(svc, namespace.and_then(|n| n.annotations), filtered)
    }

    /// The opaque-ports annotation patch for a pod that is not injected
    /// (Linkerd's `CreateOpaquePortsPatch` for pods).
    pub fn pod_opaque_ports_patch(
        &self,
        pod: &Value,
        namespace: Option<&NamespaceMeta<'_>>,
    ) -> PodPatch {
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let filtered = ports::filtered_pod_defaults(&self.cfg.values.proxy.opaque_ports, spec);
        self.opaque_ports_patch(pod, namespace.and_then(|n| n.annotations), filtered)
    }

    fn opaque_ports_patch(
        &self,
        obj: &Value,
        ns_annotations: Option<&Map<String, Value>>,
        filtered: String,
    ) -> PodPatch {
        let own = obj
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        if own.is_some_and(|a| a.contains_key(OPAQUE_PORTS_ANNOTATION)) {
            return PodPatch::default();
        }
        let value = ns_annotations
            .and_then(|a| a.get(OPAQUE_PORTS_ANNOTATION))
            .and_then(scalar_str)
            .map(|s| s.into_owned())
            .unwrap_or(filtered);
        if value.is_empty() {
            return PodPatch::default();
        }
        let mut b = PatchBuilder::new("");
        if obj.get("metadata").and_then(Value::as_object).is_none() {
            b.add(&["metadata"], &Value::Object(Map::new()));
        }
        if own.is_none() {
            b.add(&["metadata", "annotations"], &Value::Object(Map::new()));
        }
        b.add(
            &["metadata", "annotations", OPAQUE_PORTS_ANNOTATION],
            &value,
        );
        finish(b, &mut Vec::new())
    }
}

/// A serialisation failure can only come from a bug in kinject's own types; the
/// pod is then admitted unchanged and the failure reported.
fn finish(b: PatchBuilder, warnings: &mut Vec<Warning>) -> PodPatch {
    b.finish().unwrap_or_else(|e| {
        warnings.push(Warning::new(
            WarningCode::InternalError,
            format!("internal error building the patch ({e}); nothing injected"),
        ));
        PodPatch::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inject(is_ingress: bool, pod: &Value) -> Value {
        let mut values = Values::default();
        values.proxy.is_ingress = is_ingress;
        let injector = Injector::new(InjectorConfig {
            values,
            ..InjectorConfig::default()
        })
        .expect("injector");
        let outcome = injector.inject_pod(&PodRequest::pod(pod));
        assert!(outcome.decision.is_inject());
        let mut out = pod.clone();
        outcome.patch.apply(&mut out).expect("patch applies");
        out
    }

    fn proxy_env(pod: &Value, name: &str) -> Option<Value> {
        let containers = pod.pointer("/spec/initContainers")?.as_array()?;
        let proxy = containers.iter().find(|c| c["name"] == "linkerd-proxy")?;
        let env = proxy["env"].as_array()?;
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    }

    #[test]
    fn is_ingress_marks_the_pod_and_configures_the_proxy() {
        let pod = json!({"metadata": {"annotations": {"linkerd.io/inject": "enabled"}},
                         "spec": {"containers": [{"name": "app", "image": "app"}]}});
        let out = inject(true, &pod);
        assert_eq!(
            out["metadata"]["annotations"]["linkerd.io/inject"],
            "ingress"
        );
        assert_eq!(
            proxy_env(&out, "LINKERD2_PROXY_INGRESS_MODE"),
            Some(json!("true"))
        );
        let out = inject(false, &pod);
        assert_eq!(
            out["metadata"]["annotations"]["linkerd.io/inject"],
            "enabled"
        );
        assert_eq!(proxy_env(&out, "LINKERD2_PROXY_INGRESS_MODE"), None);
    }
}
