//! `kinject explain`: why a pod was (or would be) injected or not, step by
//! step, from the same engine that decides at admission.
//!
//! For each target (a live pod, a workload's pod template, every workload of
//! a namespace, or the objects of `-f` files) it walks what the API server and
//! the injector do, in order: the webhook configuration's namespaceSelector,
//! objectSelector and matchConditions (the live configuration, evaluated
//! against the real objects), then `Injector::decide` (the truth table's
//! reasons), the `config.linkerd.io/*` annotations in effect and where each
//! comes from, the warnings, and what injection adds. A live pod that should
//! have the proxy and has not is called out with the ways that happens and the
//! fix. The pod's identity (what Certify would issue) comes last.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kinject_inject::{
    InjectDecision, Injector, InjectorConfig, NamespaceMeta, Origin, PodRequest, Policy,
    WorkloadKind,
};
use kinject_mesh::settings::DefaultPolicy;
use kinject_mesh::values::Values;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

mod ports;
pub use ports::{PortPolicy, port_policies};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExplainOutput {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// What to explain: `pod/NAME`, a workload (`deploy/NAME`, `sts/…`,
    /// `ds/…`, `job/…`, `cronjob/…`, `rs/…`, `rc/…`), or `ns/NAME` for every
    /// workload and bare pod of a namespace.
    pub targets: Vec<String>,
    /// Namespace of the targets (as kubectl's).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Explain the objects of these files instead (`-` for stdin), against
    /// the live cluster's namespaces and webhook configuration.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub linkerd: crate::namespace_arg::NamespaceArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ExplainOutput::Text)]
    pub output: ExplainOutput,
}

/// One step of the walk.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// One annotation in effect, with its origin.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct InEffect {
    pub key: String,
    pub value: String,
    /// `pod`, `workload` or `namespace`.
    pub from: &'static str,
}

/// The whole explanation of one pod (or pod template).
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub target: String,
    pub namespace: String,
    pub steps: Vec<Step>,
    /// `inject` or `skip`.
    pub verdict: &'static str,
    /// What made it eligible, or every reason it is skipped.
    pub reasons: Vec<String>,
    pub annotations: Vec<InEffect>,
    pub warnings: Vec<String>,
    /// Containers and volumes injection adds.
    pub adds: Vec<String>,
    /// Whether the live pod has the proxy (None for templates and files).
    pub has_proxy: Option<bool>,
    /// The identity Certify would issue for the pod's ServiceAccount.
    pub identity: String,
    /// Said when a live pod should have the proxy and has not.
    pub note: Option<String>,
    /// Who may connect to each container port, as destination answers the
    /// pod's proxy (its Server and authorizations, or the default policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortPolicy>,
}

/// `kinds` a target may name, as kubectl spells them.
fn kind_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "pod" | "pods" | "po" => "Pod",
        "deploy" | "deployment" | "deployments" => "Deployment",
        "sts" | "statefulset" | "statefulsets" => "StatefulSet",
        "ds" | "daemonset" | "daemonsets" => "DaemonSet",
        "job" | "jobs" => "Job",
        "cj" | "cronjob" | "cronjobs" => "CronJob",
        "rs" | "replicaset" | "replicasets" => "ReplicaSet",
        "rc" | "replicationcontroller" | "replicationcontrollers" => "ReplicationController",
        "ns" | "namespace" | "namespaces" => "Namespace",
        _ => return None,
    })
}

fn resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "Pod" => ("", "v1", "pods"),
        "Deployment" => ("apps", "v1", "deployments"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "Job" => ("batch", "v1", "jobs"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        _ => ("", "v1", "replicationcontrollers"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Whether `labels` satisfy `sel`; the first requirement that fails.
pub fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(sel) = sel else { return Ok(()) };
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Err(format!("matchLabels {k}={v}"));
        }
    }
    for r in sel.match_expressions.iter().flatten() {
        let values = r.values.clone().unwrap_or_default();
        let have = labels.get(&r.key);
        let ok = match r.operator.as_str() {
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => return Err(format!("unknown operator {other}")),
        };
        if !ok {
            let shown = have.map_or("(absent)".to_string(), |h| format!("{h:?}"));
            return Err(format!(
                "{} {} [{}] (it is {shown})",
                r.key,
                r.operator,
                values.join(", ")
            ));
        }
    }
    Ok(())
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// The webhook configuration's steps for a pod in a namespace.
pub fn webhook_steps(
    mwc: Option<&MutatingWebhookConfiguration>,
    ns_name: &str,
    ns_labels: &BTreeMap<String, String>,
    pod: &Value,
) -> Vec<Step> {
    let Some(w) = mwc
        .and_then(|m| m.webhooks.as_ref())
        .and_then(|w| w.first())
    else {
        return vec![Step {
            what: "webhook configuration".into(),
            passed: false,
            detail: format!(
                "{} is not registered: the API server calls no injector (is the injector running? `kinject check`)",
                kinject_k8s::webhook_config::CONFIG_NAME
            ),
        }];
    };
    let mut ns = ns_labels.clone();
    // The API server sets this label on every namespace (1.21+).
    ns.insert("kubernetes.io/metadata.name".into(), ns_name.into());
    let pod_labels = string_map(&pod["metadata"]["labels"]);
    let mut steps = vec![
        match selector_matches(w.namespace_selector.as_ref(), &ns) {
            Ok(()) => Step {
                what: "namespaceSelector".into(),
                passed: true,
                detail: format!("namespace {ns_name} matches"),
            },
            Err(why) => Step {
                what: "namespaceSelector".into(),
                passed: false,
                detail: format!(
                    "namespace {ns_name} does not match: {why}; the API server never calls the injector for it"
                ),
            },
        },
        match selector_matches(w.object_selector.as_ref(), &pod_labels) {
            Ok(()) => Step {
                what: "objectSelector".into(),
                passed: true,
                detail: "the pod's labels match".into(),
            },
            Err(why) => Step {
                what: "objectSelector".into(),
                passed: false,
                detail: format!("the pod's labels do not match: {why}"),
            },
        },
    ];
    for c in w.match_conditions.iter().flatten() {
        let (passed, detail) = match c.name.as_str() {
            "not-the-control-plane" => {
                let ok = !c.expression.contains(&format!("'{ns_name}'"));
                (
                    ok,
                    format!(
                        "{} ({})",
                        c.expression,
                        if ok {
                            "true"
                        } else {
                            "false: the control plane's own namespace"
                        }
                    ),
                )
            }
            "not-host-network" => {
                let ok = pod["spec"]["hostNetwork"] != true;
                (
                    ok,
                    format!(
                        "{} ({})",
                        c.expression,
                        if ok { "true" } else { "false: hostNetwork pod" }
                    ),
                )
            }
            _ => (true, format!("{}: not evaluated here (CEL)", c.expression)),
        };
        steps.push(Step {
            what: format!("matchCondition {}", c.name),
            passed,
            detail,
        });
    }
    steps
}

/// The engine's part: decision, annotations in effect, warnings, additions.
#[allow(clippy::too_many_arguments)]
pub fn explain_pod(
    engine: &Injector,
    target: String,
    ns_name: &str,
    ns_obj: &Value,
    template: &Value,
    workload_annotations: Option<&Value>,
    steps: Vec<Step>,
    live: bool,
    linkerd_ns: &str,
) -> Explanation {
    let ns_meta = NamespaceMeta {
        name: ns_name,
        labels: ns_obj["metadata"]["labels"].as_object(),
        annotations: ns_obj["metadata"]["annotations"].as_object(),
    };
    let outcome = engine.inject_pod(&PodRequest {
        pod: template,
        namespace: Some(ns_meta),
        namespace_name: Some(ns_name),
        owner: None,
        origin: Origin::Webhook,
        prefix: "",
    });
    let has_proxy = kinject_inject::decide::has_existing_sidecar(
        template["metadata"].as_object(),
        &template["spec"],
    );
    let (verdict, reasons) = match &outcome.decision {
        InjectDecision::Inject { source } => ("inject", vec![format!("{source:?}")]),
        InjectDecision::Skip { reasons } => (
            "skip",
            reasons
                .iter()
                .map(|r| format!("{}: {}", r.as_str(), r.describe()))
                .collect(),
        ),
    };
    let mut annotations = Vec::new();
    let own = template["metadata"]["annotations"].as_object();
    for (k, v) in own.into_iter().flatten() {
        if (kinject_mesh::labels::is_config_key(k) || k == "linkerd.io/inject")
            && let Some(s) = v.as_str()
        {
            let from = if workload_annotations.is_some_and(|w| w.get(k).is_some()) {
                "workload"
            } else {
                "pod"
            };
            annotations.push(InEffect {
                key: k.clone(),
                value: s.into(),
                from,
            });
        }
    }
    for (k, v) in kinject_inject::overrides::inherited_from_namespace(
        own,
        ns_obj["metadata"]["annotations"].as_object(),
    ) {
        annotations.push(InEffect {
            key: k,
            value: v,
            from: "namespace",
        });
    }
    let mut adds = Vec::new();
    if outcome.decision.is_inject()
        && let Ok(patch) = outcome.patch.to_json_patch()
        && let Ok(ops) = serde_json::to_value(&patch)
    {
        for op in ops.as_array().into_iter().flatten() {
            let path = op["path"].as_str().unwrap_or_default();
            let name = op["value"]["name"].as_str();
            if let Some(name) = name {
                if path.contains("ontainers") {
                    adds.push(format!("container {name}"));
                } else if path.contains("volumes") {
                    adds.push(format!("volume {name}"));
                }
            }
        }
    }
    let sa = template["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    // Exactly what Certify would issue for the pod's ServiceAccount.
    let identity = kinject_identity::certify::identity_for_user(
        &format!("system:serviceaccount:{ns_name}:{sa}"),
        linkerd_ns,
        engine.config().values.trust_domain(),
    )
    .unwrap_or_else(|e| format!("none: {e}"));
    let note = (live && outcome.decision.is_inject() && !has_proxy).then(|| {
        "this pod should have the proxy and has not: it was created while the injector was unreachable (failurePolicy Ignore), during an outage, or before its namespace opted in; `kubectl rollout restart` its workload (or delete it if nothing recreates it)".to_string()
    });
    Explanation {
        target,
        namespace: ns_name.into(),
        steps,
        verdict: if has_proxy && live {
            "has the proxy"
        } else {
            verdict
        },
        reasons,
        annotations,
        warnings: outcome.warnings.iter().map(|w| w.to_string()).collect(),
        adds,
        has_proxy: live.then_some(has_proxy),
        identity,
        note,
        ports: Vec::new(),
    }
}

/// Live, running pods (of `namespace`, or every namespace) that lack the
/// proxy although the webhook would call the injector for them and the
/// engine would inject them: `(namespace/name, why it should be meshed)`.
pub async fn pods_missing_the_proxy(
    client: &kube::Client,
    linkerd_ns: &str,
    namespace: Option<&str>,
) -> Result<Vec<(String, String)>> {
    use k8s_openapi::api::core::v1::Pod;
    let engine = engine(client, linkerd_ns).await?;
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(kinject_k8s::webhook_config::CONFIG_NAME)
        .await?;
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let namespaces = Api::<Namespace>::all(client.clone());
    let mut ns_cache: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Vec::new();
    for p in pods.list(&Default::default()).await?.items {
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let ns_name = p.metadata.namespace.clone().unwrap_or_default();
        if !running || p.metadata.deletion_timestamp.is_some() || ns_name == linkerd_ns {
            continue;
        }
        let pod = serde_json::to_value(&p)?;
        if !ns_cache.contains_key(&ns_name) {
            let Some(n) = namespaces.get_opt(&ns_name).await? else {
                continue;
            };
            ns_cache.insert(ns_name.clone(), serde_json::to_value(n)?);
        }
        let ns_obj = &ns_cache[&ns_name];
        let steps = webhook_steps(
            mwc.as_ref(),
            &ns_name,
            &string_map(&ns_obj["metadata"]["labels"]),
            &pod,
        );
        let called = steps.iter().all(|s| s.passed);
        let name = format!("{ns_name}/{}", p.metadata.name.as_deref().unwrap_or("?"));
        let e = explain_pod(
            &engine,
            name.clone(),
            &ns_name,
            ns_obj,
            &pod,
            None,
            steps,
            true,
            linkerd_ns,
        );
        if called && e.note.is_some() {
            out.push((name, e.reasons.join("; ")));
        }
    }
    Ok(out)
}

/// The engine as the installed injector runs it: the cluster's values and
/// trust roots, and the injector's `--default-policy`.
async fn engine(client: &kube::Client, linkerd_ns: &str) -> Result<Injector> {
    let cluster = kinject_k8s::linkerd_config::fetch(client, linkerd_ns).await?;
    let loaded = crate::values_cmd::load(
        &crate::values_cmd::ValuesArgs::default(),
        Some(&cluster),
        linkerd_ns,
    )?;
    engine_for(client, linkerd_ns, &cluster, loaded.values).await
}

/// The values the installed control plane injects with.
async fn engine_for(
    client: &kube::Client,
    linkerd_ns: &str,
    cluster: &kinject_k8s::linkerd_config::LinkerdConfig,
    values: Values,
) -> Result<Injector> {
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), linkerd_ns);
    let default = match deployments.get_opt(crate::install::INJECTOR).await {
        Ok(Some(d)) => {
            let args = d
                .spec
                .and_then(|s| s.template.spec)
                .and_then(|s| s.containers.into_iter().next())
                .and_then(|c| c.args)
                .unwrap_or_default();
            let policy = args
                .windows(2)
                .find(|w| w[0] == "--default-policy")
                .map(|w| w[1].clone());
            match policy.as_deref() {
                Some("disabled") => DefaultPolicy::Disabled,
                _ => DefaultPolicy::Enabled,
            }
        }
        _ => DefaultPolicy::Enabled,
    };
    let anchors = kinject_k8s::linkerd_config::LinkerdConfig::trust_anchors(
        None,
        Some(cluster),
        &values.identity_trust_anchors_pem,
    );
    Ok(Injector::new(InjectorConfig {
        values,
        linkerd_namespace: linkerd_ns.into(),
        // explain shows what injection adds, not the anchors themselves.
        trust_anchors_pem: if anchors.trim().is_empty() {
            "(the cluster's trust anchors)".into()
        } else {
            anchors
        },
        policy: Policy {
            default,
            ..Policy::default()
        },
        ..InjectorConfig::default()
    })?)
}

/// The pod template of a workload object (a pod is its own).
fn template_of(obj: &Value) -> Option<(Value, Option<Value>)> {
    let kind = WorkloadKind::from_kind(obj["kind"].as_str()?)?;
    let pointer = kind.template_pointer();
    let mut t = if pointer.is_empty() {
        obj.clone()
    } else {
        obj.pointer(pointer)?.clone()
    };
    if t["metadata"]["namespace"].is_null() {
        t["metadata"]["namespace"] = obj["metadata"]["namespace"].clone();
    }
    let workload_ann = (!pointer.is_empty()).then(|| obj["metadata"]["annotations"].clone());
    Some((t, workload_ann))
}

pub fn run(args: &ExplainArgs) -> Result<i32> {
    if args.targets.is_empty() && args.files.is_empty() {
        bail!("nothing to explain: give TYPE/NAME (pod/web-1, deploy/web, ns/apps) or -f FILE");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(explain_all(args))?;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    match args.output {
        ExplainOutput::Json => {
            serde_json::to_writer_pretty(&mut w, &out)?;
            writeln!(w)?;
        }
        ExplainOutput::Text => {
            let colour = std::io::stdout().is_terminal();
            for e in &out {
                write!(w, "{}", render(e, colour))?;
            }
        }
    }
    Ok(0)
}

async fn explain_all(args: &ExplainArgs) -> Result<Vec<Explanation>> {
    let client = kinject_runtime::client::client()
        .await
        .context("explain reads the live cluster: set KUBECONFIG (or --kubeconfig)")?;
    let linkerd_ns = &args.linkerd.name;
    let engine = engine(&client, linkerd_ns).await?;
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(kinject_k8s::webhook_config::CONFIG_NAME)
        .await?;
    let mut objects: Vec<(String, Value, bool)> = Vec::new();
    for t in &args.targets {
        let (word, name) = t
            .split_once('/')
            .with_context(|| format!("{t:?}: expected TYPE/NAME, e.g. pod/web-1 or deploy/web"))?;
        let kind = kind_of(word).with_context(|| {
            format!(
                "{t:?}: unknown kind {word:?}; use pod, deploy, sts, ds, job, cronjob, rs, rc or ns"
            )
        })?;
        if kind == "Namespace" {
            objects.extend(namespace_objects(&client, name).await?);
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &args.namespace, &resource(kind));
        let obj = api
            .get_opt(name)
            .await?
            .with_context(|| format!("{kind} {}/{name} not found", args.namespace))?;
        let mut v = serde_json::to_value(obj)?;
        v["kind"] = kind.into();
        objects.push((t.clone(), v, kind == "Pod"));
    }
    for f in &args.files {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        };
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for d in docs.into_iter().filter(|d| d.is_object()) {
            let name = format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?").to_lowercase(),
                d["metadata"]["name"].as_str().unwrap_or("?")
            );
            objects.push((format!("{} ({name})", f.display()), d, false));
        }
    }
    let namespaces = Api::<Namespace>::all(client.clone());
    // Who may connect to the pods' ports: destination's answer from the
    // cluster's policy objects (none when the CRDs are not installed).
    let policy_set = std::sync::Arc::new(
        kinject_destination::cluster::policy_snapshot(&client)
            .await
            .context("cannot read the policy resources (Servers, AuthorizationPolicies, …)")?
            .set,
    );
    let policy_cfg = kinject_destination::Config::from_values(&engine.config().values, linkerd_ns)
        .map(|c| c.policy)
        .unwrap_or_default();
    let mut out = Vec::new();
    for (target, obj, live) in objects {
        let Some((template, workload_ann)) = template_of(&obj) else {
            bail!("{target}: a {} has no pod template", obj["kind"]);
        };
        let ns_name = template["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&args.namespace)
            .to_string();
        let ns_obj = match namespaces.get_opt(&ns_name).await? {
            Some(n) => serde_json::to_value(n)?,
            None => bail!("namespace {ns_name} not found (for {target})"),
        };
        let steps = webhook_steps(
            mwc.as_ref(),
            &ns_name,
            &string_map(&ns_obj["metadata"]["labels"]),
            &template,
        );
        let mut e = explain_pod(
            &engine,
            target,
            &ns_name,
            &ns_obj,
            &template,
            workload_ann.as_ref(),
            steps,
            live,
            linkerd_ns,
        );
        if e.verdict != "skip" {
            e.ports = port_policies(&template, &ns_obj, linkerd_ns, &policy_set, &policy_cfg);
        }
        out.push(e);
    }
    Ok(out)
}

/// Every workload of a namespace, and its bare pods.
async fn namespace_objects(client: &kube::Client, ns: &str) -> Result<Vec<(String, Value, bool)>> {
    let mut out = Vec::new();
    for kind in [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "Pod",
    ] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(kind));
        let list = match api.list(&Default::default()).await {
            Ok(l) => l.items,
            // A kind the server does not serve (CronJob v1 before 1.21).
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        for o in list {
            let mut v = serde_json::to_value(o)?;
            // Pods a controller owns are explained through their workload.
            if kind == "Pod"
                && v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| !o.is_empty())
            {
                continue;
            }
            v["kind"] = kind.into();
            let name = v["metadata"]["name"].as_str().unwrap_or("?").to_string();
            out.push((format!("{}/{name}", kind.to_lowercase()), v, kind == "Pod"));
        }
    }
    if out.is_empty() {
        bail!("namespace {ns} has no workloads or pods to explain");
    }
    Ok(out)
}

fn render(e: &Explanation, colour: bool) -> String {
    let paint = |code: &str, s: &str| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mark = |ok: bool| {
        if ok {
            paint("32", "√")
        } else {
            paint("31", "×")
        }
    };
    let mut s = format!("{} (namespace {})\n", e.target, e.namespace);
    for st in &e.steps {
        s += &format!("  {} {}: {}\n", mark(st.passed), st.what, st.detail);
    }
    let verdict = match e.verdict {
        "inject" => paint("32", "inject"),
        "skip" => paint("33", "skip"),
        other => paint("32", other),
    };
    s += &format!("  decision: {verdict}\n");
    for r in &e.reasons {
        s += &format!("    {r}\n");
    }
    for a in &e.annotations {
        s += &format!("  annotation {}={} (from the {})\n", a.key, a.value, a.from);
    }
    for w in &e.warnings {
        s += &format!("  {} {w}\n", paint("33", "warning:"));
    }
    if !e.adds.is_empty() {
        s += &format!("  injection adds: {}\n", e.adds.join(", "));
    }
    s += &format!(
        "  identity: {}{}\n",
        e.identity,
        match e.has_proxy {
            Some(true) => " (has it: the proxy is running)",
            Some(false) => " (none now: no proxy)",
            None => "",
        }
    );
    if let Some(n) = &e.note {
        s += &format!("  {} {n}\n", paint("31", "!"));
    }
    for p in &e.ports {
        s += &format!("  inbound port {}: {}, {}\n", p.port, p.server, p.protocol);
        if p.authorizations.is_empty() {
            s += "    allowed: nobody but the probes' routes\n";
        }
        for a in &p.authorizations {
            s += &format!("    allowed: {a}\n");
        }
        for r in &p.routes {
            s += &format!("    route: {r}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_say_which_requirement_fails() {
        let sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "linkerd.io/auto-inject".into(),
                operator: "NotIn".into(),
                values: Some(vec!["disabled".into()]),
            }]),
            match_labels: Some([("team".to_string(), "a".to_string())].into()),
        };
        assert!(selector_matches(Some(&sel), &labels(&[("team", "a")])).is_ok());
        let e = selector_matches(
            Some(&sel),
            &labels(&[("team", "a"), ("linkerd.io/auto-inject", "disabled")]),
        )
        .unwrap_err();
        assert!(
            e.contains("linkerd.io/auto-inject NotIn [disabled] (it is \"disabled\")"),
            "{e}"
        );
        assert_eq!(
            selector_matches(Some(&sel), &labels(&[])).unwrap_err(),
            "matchLabels team=a"
        );
        assert!(selector_matches(None, &labels(&[])).is_ok());
    }

    #[test]
    fn kinds_follow_kubectl() {
        assert_eq!(kind_of("deploy"), Some("Deployment"));
        assert_eq!(kind_of("po"), Some("Pod"));
        assert_eq!(kind_of("ns"), Some("Namespace"));
        assert_eq!(kind_of("svc"), None);
    }
}
