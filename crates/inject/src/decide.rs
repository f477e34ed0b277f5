//! `decide()`: should this pod be meshed? The truth table of `DESIGN.md`.
//!
//! All rules are evaluated and every reason that applies is returned, so a user
//! sees the whole story at once ("hostNetwork *and* disabled by label").

use serde::Serialize;
use serde_json::{Map, Value};

use crate::annotations::scalar_str;
use crate::warning::{Warning, WarningCode};
use kinject_mesh::labels::{AUTO_INJECT_LABEL, INJECT_ANNOTATION, PROXY_VERSION_ANNOTATION};
use kinject_mesh::settings::DefaultPolicy;

/// Namespaces the engine never injects, whatever the webhook selectors say:
/// API servers before 1.21 do not set the `kubernetes.io/metadata.name` label
/// that name-based selectors rely on.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// Injection policy knobs that are kinject's own (not Linkerd values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default: DefaultPolicy,
    /// Namespaces never injected (besides the control-plane namespace).
    pub excluded_namespaces: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default: DefaultPolicy::Enabled,
            excluded_namespaces: SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The namespace a pod is created in, as the cluster reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NamespaceMeta<'a> {
    pub name: &'a str,
    pub labels: Option<&'a Map<String, Value>>,
    pub annotations: Option<&'a Map<String, Value>>,
}

impl<'a> NamespaceMeta<'a> {
    /// Reads name, labels and annotations from a Namespace object (JSON).
    pub fn from_object(ns: &'a Value) -> Self {
        let md = ns.get("metadata");
        Self {
            name: md
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(""),
            labels: md.and_then(|m| m.get("labels")).and_then(Value::as_object),
            annotations: md
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object),
        }
    }
}

/// Why a pod is not injected. The string codes are stable (metrics, Events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A system namespace or the control-plane namespace.
    NamespaceExcluded,
    /// Namespace label `linkerd.io/auto-inject: disabled`.
    NamespaceDisabledByLabel,
    HostNetworkEnabled,
    SidecarAlreadyExists,
    /// Pod label `linkerd.io/auto-inject: disabled|completed`.
    InjectionDisabledByLabel,
    /// Pod annotation `linkerd.io/inject: disabled`.
    InjectionDisabledByAnnotation,
    /// An unknown value of `linkerd.io/inject` or `linkerd.io/auto-inject`.
    InvalidInjectValue,
    /// Namespace annotation `linkerd.io/inject: disabled` and no pod opt-in.
    InjectionDisabledByNamespaceAnnotation,
    /// Opt-in policy and nothing opted in.
    InjectionEnableAnnotationAbsent,
    NoContainers,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NamespaceExcluded => "namespace_excluded",
            Self::NamespaceDisabledByLabel => "namespace_disabled_by_label",
            Self::HostNetworkEnabled => "host_network_enabled",
            Self::SidecarAlreadyExists => "sidecar_already_exists",
            Self::InjectionDisabledByLabel => "injection_disabled_by_label",
            Self::InjectionDisabledByAnnotation => "injection_disabled_by_annotation",
            Self::InvalidInjectValue => "invalid_inject_value",
            Self::InjectionDisabledByNamespaceAnnotation => {
                "injection_disabled_by_namespace_annotation"
            }
            Self::InjectionEnableAnnotationAbsent => "injection_enable_annotation_absent",
            Self::NoContainers => "no_containers",
        }
    }

    /// A sentence for humans (Events, the CLI report, `explain`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::NamespaceExcluded => "the namespace is a system or control-plane namespace",
            Self::NamespaceDisabledByLabel => {
                "the namespace has label \"linkerd.io/auto-inject: disabled\""
            }
            Self::HostNetworkEnabled => "hostNetwork is enabled",
            Self::SidecarAlreadyExists => "pod has a sidecar injected already",
            Self::InjectionDisabledByLabel => {
                "pod has label \"linkerd.io/auto-inject\" set to disabled or completed"
            }
            Self::InjectionDisabledByAnnotation => {
                "pod has annotation \"linkerd.io/inject: disabled\""
            }
            Self::InvalidInjectValue => "an injection label or annotation has an invalid value",
            Self::InjectionDisabledByNamespaceAnnotation => {
                "the namespace has annotation \"linkerd.io/inject: disabled\""
            }
            Self::InjectionEnableAnnotationAbsent => {
                "neither the namespace nor the pod has \"linkerd.io/inject: enabled\""
            }
            Self::NoContainers => "the pod spec has no containers",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a pod eligible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectSource {
    PodAnnotation,
    PodLabel,
    NamespaceAnnotation,
    NamespaceLabel,
    DefaultPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum InjectDecision {
    Inject { source: InjectSource },
    Skip { reasons: Vec<SkipReason> },
}

impl InjectDecision {
    pub fn is_inject(&self) -> bool {
        matches!(self, Self::Inject { .. })
    }

    pub fn skip_reasons(&self) -> &[SkipReason] {
        match self {
            Self::Skip { reasons } => reasons,
            Self::Inject { .. } => &[],
        }
    }
}

fn get_str<'a>(m: Option<&'a Map<String, Value>>, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    m.and_then(|m| m.get(key)).and_then(scalar_str)
}

/// Image prefixes and container names of proxies that are already present.
const SIDECAR_NAMES: &[&str] = &["linkerd-proxy", "istio-proxy"];
const SIDECAR_IMAGES: &[&str] = &["cr.l5d.io/linkerd/proxy:", "gcr.io/istio-release/proxyv2:"];
const INIT_NAMES: &[&str] = &["linkerd-init", "istio-init"];
const INIT_IMAGES: &[&str] = &[
    "cr.l5d.io/linkerd/proxy-init:",
    "gcr.io/istio-release/proxy_init:",
];

fn containers<'a>(spec: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// True when the pod carries a proxy (Linkerd's or another mesh's). kinject's
/// own marker annotation is checked first, then names and images, in both
/// `containers` and `initContainers` (native sidecars live there).
pub fn has_existing_sidecar(metadata: Option<&Map<String, Value>>, spec: &Value) -> bool {
    if metadata.is_some_and(|m| {
        m.get("annotations")
            .and_then(|a| a.get(PROXY_VERSION_ANNOTATION))
            .is_some()
    }) {
        return true;
    }
    let matches = |c: &Value, names: &[&str], images: &[&str]| {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        names.contains(&name) || images.iter().any(|p| image.starts_with(p))
    };
    containers(spec, "containers")
        .chain(containers(spec, "initContainers"))
        .any(|c| matches(c, SIDECAR_NAMES, SIDECAR_IMAGES))
        || containers(spec, "initContainers").any(|c| matches(c, INIT_NAMES, INIT_IMAGES))
}

/// Where an inject setting was read, its key, its value, and the values
/// that key takes.
type InjectSetting<'a> = (&'a str, &'a str, Option<&'a str>, &'a [&'a str]);

/// Warns of each setting whose value its key does not take (naming the key,
/// the value and the choices); true if there was one.
fn warn_invalid_values(settings: [InjectSetting<'_>; 4], warnings: &mut Vec<Warning>) -> bool {
    let mut any = false;
    for (place, key, value, allowed) in settings {
        if let Some(v) = value
            && !allowed.contains(&v)
        {
            warnings.push(Warning::new(
                WarningCode::InvalidInjectValue,
                format!(
                    "{place} {key}={v:?} is not one of {}; the pod is not injected",
                    allowed.join(", ")
                ),
            ));
            any = true;
        }
    }
    any
}

/// Decides whether to inject `pod` (a Pod or pod template: `{metadata, spec}`).
///
/// `namespace` is `None` for offline use (the CLI), where only the object's own
/// labels and annotations count.
pub fn decide(
    policy: &Policy,
    control_plane_ns: &str,
    pod: &Value,
    namespace: Option<&NamespaceMeta<'_>>,
    warnings: &mut Vec<Warning>,
) -> InjectDecision {
    let mut reasons = Vec::new();
    let metadata = pod.get("metadata").and_then(Value::as_object);
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let pod_labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object);
    let pod_annotations = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    let ns_labels = namespace.and_then(|n| n.labels);
    let ns_annotations = namespace.and_then(|n| n.annotations);

    // 1. Namespaces that are never injected.
    if let Some(ns) = namespace
        && (ns.name == control_plane_ns || policy.excluded_namespaces.iter().any(|n| n == ns.name))
    {
        reasons.push(SkipReason::NamespaceExcluded);
    }
    let ns_label = get_str(ns_labels, AUTO_INJECT_LABEL);
    if ns_label.as_deref() == Some("disabled") {
        reasons.push(SkipReason::NamespaceDisabledByLabel);
    }
    // 2. hostNetwork pods share the node's network namespace: iptables rules
    // would capture the node's traffic.
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        reasons.push(SkipReason::HostNetworkEnabled);
    }
    // 3. Already injected.
    if has_existing_sidecar(metadata, spec) {
        reasons.push(SkipReason::SidecarAlreadyExists);
    }
    // 4./5. Explicit opt-outs on the pod.
    let pod_label = get_str(pod_labels, AUTO_INJECT_LABEL);
    if matches!(pod_label.as_deref(), Some("disabled" | "completed")) {
        reasons.push(SkipReason::InjectionDisabledByLabel);
    }
    let pod_ann = get_str(pod_annotations, INJECT_ANNOTATION);
    if pod_ann.as_deref() == Some("disabled") {
        reasons.push(SkipReason::InjectionDisabledByAnnotation);
    }
    // 6. Invalid values: refuse to guess, and say which key and value.
    let ns_ann = get_str(ns_annotations, INJECT_ANNOTATION);
    let any_invalid = warn_invalid_values(
        [
            (
                "pod label",
                AUTO_INJECT_LABEL,
                pod_label.as_deref(),
                &["enabled", "disabled", "completed"],
            ),
            (
                "pod annotation",
                INJECT_ANNOTATION,
                pod_ann.as_deref(),
                &["enabled", "disabled", "ingress"],
            ),
            (
                "namespace label",
                AUTO_INJECT_LABEL,
                ns_label.as_deref(),
                &["enabled", "disabled"],
            ),
            (
                "namespace annotation",
                INJECT_ANNOTATION,
                ns_ann.as_deref(),
                &["enabled", "disabled", "ingress"],
            ),
        ],
        warnings,
    );
    if any_invalid {
        reasons.push(SkipReason::InvalidInjectValue);
    }
    if containers(spec, "containers").next().is_none() {
        warnings.push(Warning::new(
            WarningCode::NoContainers,
            "the pod spec has no containers; nothing to inject",
        ));
        reasons.push(SkipReason::NoContainers);
    }
    if !reasons.is_empty() {
        return InjectDecision::Skip { reasons };
    }

    // 7. Explicit opt-ins, most specific first.
    let enabling = |v: Option<&str>| matches!(v, Some("enabled" | "ingress"));
    let source = if enabling(pod_ann.as_deref()) {
        Some(InjectSource::PodAnnotation)
    } else if pod_label.as_deref() == Some("enabled") {
        Some(InjectSource::PodLabel)
    } else if enabling(ns_ann.as_deref()) {
        Some(InjectSource::NamespaceAnnotation)
    } else if ns_label.as_deref() == Some("enabled") {
        Some(InjectSource::NamespaceLabel)
    } else {
        None
    };
    if let Some(source) = source {
        return InjectDecision::Inject { source };
    }
    if ns_ann.as_deref() == Some("disabled") {
        return InjectDecision::Skip {
            reasons: vec![SkipReason::InjectionDisabledByNamespaceAnnotation],
        };
    }
    // 8. Nothing set anywhere.
    match policy.default {
        DefaultPolicy::Enabled => InjectDecision::Inject {
            source: InjectSource::DefaultPolicy,
        },
        DefaultPolicy::Disabled => InjectDecision::Skip {
            reasons: vec![SkipReason::InjectionEnableAnnotationAbsent],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, annotations: Value) -> Value {
        json!({"metadata": {"labels": labels, "annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    }

    fn run(
        policy: DefaultPolicy,
        pod: &Value,
        ns: Option<(&str, Value, Value)>,
    ) -> (InjectDecision, Vec<Warning>) {
        let policy = Policy {
            default: policy,
            ..Policy::default()
        };
        let ns_obj = ns
            .map(|(name, l, a)| json!({"metadata": {"name": name, "labels": l, "annotations": a}}));
        let meta = ns_obj.as_ref().map(NamespaceMeta::from_object);
        let mut w = vec![];
        let d = decide(&policy, "linkerd", pod, meta.as_ref(), &mut w);
        (d, w)
    }

    fn skip(r: &[SkipReason]) -> InjectDecision {
        InjectDecision::Skip {
            reasons: r.to_vec(),
        }
    }

    #[test]
    fn seed_label_semantics() {
        use DefaultPolicy::Enabled;
        let ns = |l: Value| Some(("apps", l, json!({})));
        let none = pod(json!({}), json!({}));
        assert!(run(Enabled, &none, ns(json!({}))).0.is_inject());
        assert!(
            run(
                Enabled,
                &none,
                ns(json!({"linkerd.io/auto-inject": "enabled"}))
            )
            .0
            .is_inject()
        );
        assert_eq!(
            run(
                Enabled,
                &none,
                ns(json!({"linkerd.io/auto-inject": "disabled"}))
            )
            .0,
            skip(&[SkipReason::NamespaceDisabledByLabel])
        );
        for v in ["disabled", "completed"] {
            let p = pod(json!({"linkerd.io/auto-inject": v}), json!({}));
            assert_eq!(
                run(Enabled, &p, ns(json!({}))).0,
                skip(&[SkipReason::InjectionDisabledByLabel])
            );
        }
        let p = pod(json!({"linkerd.io/auto-inject": "enabled"}), json!({}));
        assert_eq!(
            run(Enabled, &p, ns(json!({}))).0,
            InjectDecision::Inject {
                source: InjectSource::PodLabel
            }
        );
    }

    #[test]
    fn namespace_label_disabled_beats_pod_opt_in() {
        let p = pod(json!({}), json!({"linkerd.io/inject": "enabled"}));
        let (d, _) = run(
            DefaultPolicy::Enabled,
            &p,
            Some((
                "apps",
                json!({"linkerd.io/auto-inject": "disabled"}),
                json!({}),
            )),
        );
        assert_eq!(d, skip(&[SkipReason::NamespaceDisabledByLabel]));
    }

    #[test]
    fn excluded_namespaces() {
        let p = pod(json!({}), json!({"linkerd.io/inject": "enabled"}));
        for ns in ["kube-system", "kube-public", "kube-node-lease", "linkerd"] {
            let (d, _) = run(DefaultPolicy::Enabled, &p, Some((ns, json!({}), json!({}))));
            assert_eq!(d, skip(&[SkipReason::NamespaceExcluded]), "{ns}");
        }
    }

    #[test]
    fn modern_annotation_truth_table() {
        // Linkerd's report_test.go matrix under the opt-in policy.
        use DefaultPolicy::Disabled;
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<InjectSource, SkipReason>,
        );
        let cases: &[Case<'_>] = &[
            (Some("enabled"), None, Ok(InjectSource::NamespaceAnnotation)),
            (Some("ingress"), None, Ok(InjectSource::NamespaceAnnotation)),
            (
                Some("enabled"),
                Some("disabled"),
                Err(SkipReason::InjectionDisabledByAnnotation),
            ),
            (
                Some("disabled"),
                Some("enabled"),
                Ok(InjectSource::PodAnnotation),
            ),
            (
                Some("disabled"),
                None,
                Err(SkipReason::InjectionDisabledByNamespaceAnnotation),
            ),
            (None, Some("enabled"), Ok(InjectSource::PodAnnotation)),
            (None, Some("ingress"), Ok(InjectSource::PodAnnotation)),
            (
                None,
                Some("disabled"),
                Err(SkipReason::InjectionDisabledByAnnotation),
            ),
            (None, None, Err(SkipReason::InjectionEnableAnnotationAbsent)),
            (Some("true"), None, Err(SkipReason::InvalidInjectValue)),
            (None, Some("yes"), Err(SkipReason::InvalidInjectValue)),
        ];
        for (ns_ann, pod_ann, want) in cases {
            let ann = pod_ann
                .map(|v| json!({"linkerd.io/inject": v}))
                .unwrap_or(json!({}));
            let nsa = ns_ann
                .map(|v| json!({"linkerd.io/inject": v}))
                .unwrap_or(json!({}));
            let (d, w) = run(
                Disabled,
                &pod(json!({}), ann),
                Some(("apps", json!({}), nsa)),
            );
            let want = match want {
                Ok(source) => InjectDecision::Inject { source: *source },
                Err(r) => skip(&[*r]),
            };
            assert_eq!(d, want, "ns={ns_ann:?} pod={pod_ann:?}");
            if d == skip(&[SkipReason::InvalidInjectValue]) {
                assert_eq!(w.len(), 1);
                assert!(w[0].message.contains("linkerd.io/inject"), "{w:?}");
            }
        }
    }

    #[test]
    fn invalid_label_values_warn_with_key_and_value() {
        let p = pod(json!({"linkerd.io/auto-inject": "maybe"}), json!({}));
        let (d, w) = run(DefaultPolicy::Enabled, &p, None);
        assert_eq!(d, skip(&[SkipReason::InvalidInjectValue]));
        assert!(w[0].message.contains("linkerd.io/auto-inject") && w[0].message.contains("maybe"));
        let (d, w) = run(
            DefaultPolicy::Enabled,
            &pod(json!({}), json!({})),
            Some(("apps", json!({"linkerd.io/auto-inject": "on"}), json!({}))),
        );
        assert_eq!(d, skip(&[SkipReason::InvalidInjectValue]));
        assert!(w[0].message.contains("namespace label"));
    }

    #[test]
    fn every_reason_is_reported() {
        let mut p = pod(
            json!({"linkerd.io/auto-inject": "disabled"}),
            json!({"linkerd.io/inject": "disabled"}),
        );
        p["spec"]["hostNetwork"] = json!(true);
        p["spec"]["containers"] = json!([{"name": "linkerd-proxy"}]);
        let (d, _) = run(DefaultPolicy::Enabled, &p, None);
        assert_eq!(
            d,
            skip(&[
                SkipReason::HostNetworkEnabled,
                SkipReason::SidecarAlreadyExists,
                SkipReason::InjectionDisabledByLabel,
                SkipReason::InjectionDisabledByAnnotation,
            ])
        );
    }

    #[test]
    fn sidecar_detection() {
        let spec = |c: Value, i: Value| json!({"containers": c, "initContainers": i});
        assert!(has_existing_sidecar(
            None,
            &spec(json!([{"name": "istio-proxy"}]), json!([]))
        ));
        assert!(has_existing_sidecar(
            None,
            &spec(
                json!([{"name": "a", "image": "cr.l5d.io/linkerd/proxy:v1"}]),
                json!([])
            )
        ));
        // A native-sidecar proxy sits in initContainers.
        assert!(has_existing_sidecar(
            None,
            &spec(json!([{"name": "a"}]), json!([{"name": "linkerd-proxy"}]))
        ));
        assert!(has_existing_sidecar(
            None,
            &spec(json!([{"name": "a"}]), json!([{"name": "linkerd-init"}]))
        ));
        assert!(!has_existing_sidecar(
            None,
            &spec(json!([{"name": "a", "image": "nginx"}]), json!([]))
        ));
        let md = json!({"annotations": {"linkerd.io/proxy-version": "v1"}});
        assert!(has_existing_sidecar(
            md.as_object(),
            &spec(json!([{"name": "a"}]), json!([]))
        ));
    }

    #[test]
    fn no_containers_is_reported() {
        let p = json!({"metadata": {}, "spec": {}});
        let (d, w) = run(DefaultPolicy::Enabled, &p, None);
        assert_eq!(d, skip(&[SkipReason::NoContainers]));
        assert_eq!(w[0].code, WarningCode::NoContainers);
    }
}
