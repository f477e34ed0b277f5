//! Pods that slipped through: running pods that the engine says must be
//! meshed but that have no proxy (the webhook was unreachable under
//! `failurePolicy: Ignore`, or the pod predates its namespace's opt-in).
//!
//! The injector's leader (the holder of its Lease) keeps a watch on pods
//! that carry no `linkerd.io/control-plane-ns` label (the injector adds it to
//! every pod it meshes), asks the same engine that decides at admission, and
//! for each pod that slipped through: a Warning Event on the pod, the
//! `pods_missing_proxy` gauge, and a log line. With `--repair-missed` it also
//! evicts the pod through the Eviction API when a controller recreates it (a
//! ReplicaSet, StatefulSet or DaemonSet owner), so that the replacement is
//! injected: PodDisruptionBudgets are honoured (an eviction they forbid is
//! retried later) and evictions are paced. Bare pods and Jobs' pods are
//! reported only: nothing would bring them back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kinject_inject::{InjectDecision, Injector, Origin, PodRequest};
use kinject_k8s::NamespaceInfo;
use kinject_k8s::cache::ClusterLookup;
use kube::api::{Api, EvictParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often a pod still without the proxy is reported again (Events
/// expire after an hour by default).
const REPORT_AGAIN: Duration = Duration::from_secs(30 * 60);

/// The label the injector puts on every pod it meshes.
const MESHED_LABEL: &str = "linkerd.io/control-plane-ns";

/// How the leader looks for, and repairs, pods that slipped through.
#[derive(Clone, Debug)]
pub struct MissedConfig {
    /// Evict repairable pods so that their replacement is injected.
    pub repair: bool,
    /// At most one eviction this often.
    pub eviction_interval: Duration,
    /// How often every unmeshed pod is judged again (a namespace may have
    /// been opted in since), besides pod events.
    pub resync: Duration,
}

impl Default for MissedConfig {
    fn default() -> Self {
        Self {
            repair: false,
            eviction_interval: Duration::from_secs(5),
            resync: Duration::from_secs(10),
        }
    }
}

/// A pod that should have the proxy and has not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    pub namespace: String,
    pub name: String,
    /// Why the engine would inject it (the decision's source).
    pub why: String,
    /// The controller that recreates it when evicted (`ReplicaSet/web-5d…`).
    pub recreated_by: Option<String>,
}

/// Whether a controller brings the pod back when it is evicted.
pub fn recreated_by(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .and_then(|o| {
            let kind = o["kind"].as_str()?;
            let name = o["name"].as_str()?;
            matches!(kind, "ReplicaSet" | "StatefulSet" | "DaemonSet")
                .then(|| format!("{kind}/{name}"))
        })
}

/// The engine's verdict on one running pod without the proxy: `Some` when it
/// would inject it now. Pure.
pub fn judge(engine: &Injector, pod: &Value, ns: &NamespaceInfo) -> Option<Missed> {
    if pod["status"]["phase"] != "Running" || pod["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    let mut warnings = Vec::new();
    let decision = engine.decide(
        &PodRequest {
            pod,
            namespace: Some(ns.as_meta()),
            namespace_name: Some(&ns.name),
            owner: None,
            origin: Origin::Webhook,
            prefix: "",
        },
        &mut warnings,
    );
    let InjectDecision::Inject { source } = decision else {
        return None;
    };
    Some(Missed {
        namespace: ns.name.clone(),
        name: pod["metadata"]["name"].as_str()?.to_string(),
        why: format!("{source:?}"),
        recreated_by: recreated_by(pod),
    })
}

/// What the watch reports to.
pub trait MissedReport: Send + Sync + 'static {
    /// The pods that slipped through, now (the gauge).
    fn count(&self, n: usize);
    /// A pod newly found (once per pod).
    fn found(&self, missed: &Missed);
    /// A pod evicted so that its replacement is injected.
    fn evicted(&self, missed: &Missed);
}

/// Runs until the process ends; judges only while `leader` is true.
pub async fn watch_pods<L, R>(
    client: kube::Client,
    engine: Arc<ArcSwap<Injector>>,
    cluster: L,
    mut leader: watch::Receiver<bool>,
    cfg: MissedConfig,
    report: R,
) where
    L: ClusterLookup + Send + Sync + 'static,
    R: MissedReport,
{
    let (store, writer) = reflector::store::<Pod>();
    let events = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!("!{MESHED_LABEL}")),
    )
    .default_backoff()
    // Every unmeshed pod of the cluster is held: keep only what the engine
    // judges (labels, Linkerd's annotations, owners, hostNetwork, container
    // names and images) and the phase.
    .modify(slim)
    .reflect(writer)
    .touched_objects();
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let changed = changed.clone();
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(_) => changed.notify_one(),
                    Err(e) => warn!(error = %e, "pod watch error (retrying)"),
                }
            }
        });
    }
    // Each pod with when it was last reported: again every REPORT_AGAIN,
    // so its Event (and `kinject check`'s line) lives as long as the pod
    // stays without the proxy.
    let mut known: BTreeMap<(String, String), (Missed, Instant)> = BTreeMap::new();
    let mut last_eviction: Option<Instant> = None;
    loop {
        if *leader.borrow_and_update() && store.wait_until_ready().await.is_ok() {
            let now_missed = judge_all(&engine, &cluster, &store).await;
            let mut next = BTreeMap::new();
            for m in now_missed {
                let key = (m.namespace.clone(), m.name.clone());
                let reported = match known.get(&key) {
                    Some((_, at)) if at.elapsed() < REPORT_AGAIN => *at,
                    _ => {
                        warn!(namespace = %m.namespace, pod = %m.name, why = %m.why, recreated_by = ?m.recreated_by, "running pod should be meshed but has no proxy");
                        report.found(&m);
                        Instant::now()
                    }
                };
                next.insert(key, (m, reported));
            }
            known = next;
            report.count(known.len());
            if cfg.repair
                && last_eviction.is_none_or(|t| t.elapsed() >= cfg.eviction_interval)
                && let Some((m, _)) = known.values().find(|(m, _)| m.recreated_by.is_some())
            {
                last_eviction = Some(Instant::now());
                evict(&client, m, &report).await;
            }
        } else if !*leader.borrow() {
            // Another replica reports; forget, so a regained lead reports anew.
            known.clear();
            report.count(0);
        }
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(Duration::from_millis(200)).await,
            changed = leader.changed() => {
                // The campaign ended (the injector is stopping): another
                // replica reports from now on.
                if changed.is_err() {
                    report.count(0);
                    return;
                }
            }
            _ = tokio::time::sleep(if cfg.repair && known.values().any(|(m, _)| m.recreated_by.is_some()) {
                cfg.eviction_interval.min(cfg.resync)
            } else {
                cfg.resync
            }) => {}
        }
    }
}

/// A pod reduced to what [`judge`] reads.
fn slim(p: &mut Pod) {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    p.metadata.managed_fields = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.retain(|k, _| k.contains("linkerd.io/"));
    }
    let names = |cs: &[Container]| -> Vec<Container> {
        cs.iter()
            .map(|c| Container {
                name: c.name.clone(),
                image: c.image.clone(),
                ..Container::default()
            })
            .collect()
    };
    if let Some(spec) = p.spec.take() {
        p.spec = Some(PodSpec {
            containers: names(&spec.containers),
            init_containers: spec.init_containers.as_deref().map(names),
            host_network: spec.host_network,
            ..PodSpec::default()
        });
    }
    if let Some(status) = p.status.take() {
        p.status = Some(PodStatus {
            phase: status.phase,
            ..PodStatus::default()
        });
    }
}

async fn judge_all<L: ClusterLookup>(
    engine: &ArcSwap<Injector>,
    cluster: &L,
    store: &Store<Pod>,
) -> Vec<Missed> {
    let engine = engine.load_full();
    let mut out = Vec::new();
    let mut namespaces: BTreeMap<String, NamespaceInfo> = BTreeMap::new();
    for pod in store.state() {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
            continue;
        }
        let Some(ns_name) = pod.metadata.namespace.clone() else {
            continue;
        };
        if !namespaces.contains_key(&ns_name) {
            let info = cluster.namespace(&ns_name).await;
            namespaces.insert(ns_name.clone(), info);
        }
        let Some(ns) = namespaces.get(&ns_name).filter(|n| n.known) else {
            continue;
        };
        let Ok(value) = serde_json::to_value(&*pod) else {
            continue;
        };
        out.extend(judge(&engine, &value, ns));
    }
    out
}

async fn evict<R: MissedReport>(client: &kube::Client, m: &Missed, report: &R) {
    let api = Api::<Pod>::namespaced(client.clone(), &m.namespace);
    match api.evict(&m.name, &EvictParams::default()).await {
        Ok(_) => {
            info!(namespace = %m.namespace, pod = %m.name, recreated_by = ?m.recreated_by, "evicted a pod without the proxy; its replacement will be injected");
            report.evicted(m);
        }
        // A PodDisruptionBudget forbids it now: try again on a later pass.
        Err(kube::Error::Api(e)) if e.code == 429 => {
            info!(namespace = %m.namespace, pod = %m.name, "eviction refused by a PodDisruptionBudget; retrying later");
        }
        Err(e) => warn!(namespace = %m.namespace, pod = %m.name, error = %e, "cannot evict"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinject_inject::InjectorConfig;
    use serde_json::json;

    fn engine() -> Injector {
        Injector::new(InjectorConfig {
            trust_anchors_pem: "ANCHORS".into(),
            ..InjectorConfig::default()
        })
        .expect("engine")
    }

    fn ns(labels: Value) -> NamespaceInfo {
        NamespaceInfo {
            name: "apps".into(),
            labels: labels.as_object().cloned().unwrap_or_default(),
            annotations: serde_json::Map::new(),
            known: true,
        }
    }

    fn pod(phase: &str, labels: Value, owner: Option<&str>) -> Value {
        let owners = owner
            .map(|k| json!([{"apiVersion": "apps/v1", "kind": k, "name": "web-1", "uid": "u", "controller": true}]))
            .unwrap_or(json!([]));
        json!({
            "metadata": {"name": "web-1-x", "namespace": "apps", "labels": labels, "ownerReferences": owners},
            "spec": {"containers": [{"name": "app", "image": "app"}]},
            "status": {"phase": phase},
        })
    }

    /// What the watch keeps of a pod judges as the whole pod does.
    #[test]
    fn a_slimmed_pod_is_judged_as_the_whole_pod() {
        let e = engine();
        let enabled = ns(json!({"linkerd.io/auto-inject": "enabled"}));
        for (labels, annotations, host_network, extra_container) in [
            (json!({}), json!({}), false, None),
            (
                json!({"linkerd.io/auto-inject": "disabled"}),
                json!({}),
                false,
                None,
            ),
            (
                json!({}),
                json!({"linkerd.io/inject": "disabled", "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
                false,
                None,
            ),
            (json!({}), json!({}), true, None),
            (json!({}), json!({}), false, Some("linkerd-proxy")),
        ] {
            let mut full = pod("Running", labels, Some("ReplicaSet"));
            full["metadata"]["annotations"] = annotations;
            full["spec"]["hostNetwork"] = host_network.into();
            full["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
            full["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "b"}]);
            if let Some(c) = extra_container {
                full["spec"]["containers"]
                    .as_array_mut()
                    .expect("containers")
                    .push(json!({"name": c, "image": "x"}));
            }
            let mut typed: Pod = serde_json::from_value(full.clone()).expect("pod");
            slim(&mut typed);
            let slimmed = serde_json::to_value(&typed).expect("json");
            assert!(slimmed["spec"]["volumes"].is_null());
            assert!(slimmed["spec"]["containers"][0]["env"].is_null());
            assert_eq!(
                judge(&e, &slimmed, &enabled).is_some(),
                judge(&e, &full, &enabled).is_some(),
                "{full}"
            );
        }
    }

    #[test]
    fn a_running_pod_the_engine_would_inject_has_slipped_through() {
        let e = engine();
        let enabled = ns(json!({"linkerd.io/auto-inject": "enabled"}));
        let m = judge(&e, &pod("Running", json!({}), Some("ReplicaSet")), &enabled)
            .expect("slipped through");
        assert_eq!(m.name, "web-1-x");
        assert_eq!(m.recreated_by.as_deref(), Some("ReplicaSet/web-1"));
        // Pending (not running yet), an opted-out pod, a disabled namespace:
        // nothing to report.
        assert!(judge(&e, &pod("Pending", json!({}), None), &enabled).is_none());
        let opted_out = pod(
            "Running",
            json!({"linkerd.io/auto-inject": "disabled"}),
            None,
        );
        assert!(judge(&e, &opted_out, &enabled).is_none());
        let disabled = ns(json!({"linkerd.io/auto-inject": "disabled"}));
        assert!(judge(&e, &pod("Running", json!({}), None), &disabled).is_none());
        // A bare pod and a Job's pod are reported, never repaired.
        let bare = judge(&e, &pod("Running", json!({}), None), &enabled).expect("bare");
        assert_eq!(bare.recreated_by, None);
        let job = judge(&e, &pod("Running", json!({}), Some("Job")), &enabled).expect("job");
        assert_eq!(job.recreated_by, None);
        // A pod with a proxy already is not reported.
        let mut meshed = pod("Running", json!({}), Some("ReplicaSet"));
        meshed["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "linkerd-proxy", "image": "proxy"}));
        assert!(judge(&e, &meshed, &enabled).is_none());
    }
}
