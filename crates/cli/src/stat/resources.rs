//! `stat`'s rows from the API: the resources of a kind, and the pods each
//! one selects (its selector, as Linkerd's `GetPodsFor`), with whether each
//! pod runs and is meshed.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kinject_inject::proxy::{ADMIN_PORT_NAME, PROXY_CONTAINER};
use kinject_mesh::labels::CONTROL_PLANE_NS_LABEL;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};

/// The kinds `stat` shows, with kubectl's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicaSet,
    Pod,
    Namespace,
    Service,
}

impl Kind {
    pub fn parse(word: &str) -> Option<Kind> {
        Some(match word.to_ascii_lowercase().as_str() {
            "deploy" | "deployment" | "deployments" => Kind::Deployment,
            "sts" | "statefulset" | "statefulsets" => Kind::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => Kind::DaemonSet,
            "job" | "jobs" => Kind::Job,
            "cj" | "cronjob" | "cronjobs" => Kind::CronJob,
            "rs" | "replicaset" | "replicasets" => Kind::ReplicaSet,
            "po" | "pod" | "pods" => Kind::Pod,
            "ns" | "namespace" | "namespaces" => Kind::Namespace,
            "svc" | "service" | "services" => Kind::Service,
            _ => return None,
        })
    }

    pub const KNOWN: &str = "deployments (deploy), statefulsets (sts), daemonsets (ds), jobs, cronjobs (cj), replicasets (rs), pods (po), namespaces (ns) or services (svc)";

    /// As kubectl prints it (`deployment`), and in `-o json`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::Job => "job",
            Kind::CronJob => "cronjob",
            Kind::ReplicaSet => "replicaset",
            Kind::Pod => "pod",
            Kind::Namespace => "namespace",
            Kind::Service => "service",
        }
    }

    fn api(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            Kind::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets"),
            Kind::ReplicaSet => ("apps", "v1", "ReplicaSet", "replicasets"),
            Kind::Job => ("batch", "v1", "Job", "jobs"),
            Kind::CronJob => ("batch", "v1", "CronJob", "cronjobs"),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::Namespace => ("", "v1", "Namespace", "namespaces"),
            Kind::Pod => ("", "v1", "Pod", "pods"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// A pod, as far as `stat` cares.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// Labelled by the injector for this control plane (Linkerd's test).
    pub meshed: bool,
    /// The proxy's admin port (`linkerd-admin`), where `/metrics` is.
    pub admin_port: u16,
    /// The pod's IP, while it has one.
    pub ip: Option<String>,
    /// The pod's owners' uids (a Job's pods, for CronJobs).
    owners: Vec<String>,
}

impl PodInfo {
    pub fn from_pod(p: &Pod, linkerd_ns: &str) -> PodInfo {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let spec = p.spec.as_ref();
        let proxy = spec.into_iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter(|c| c.name == PROXY_CONTAINER)
        });
        let admin_port = proxy
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(4191);
        PodInfo {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            meshed: labels.get(CONTROL_PLANE_NS_LABEL).map(String::as_str) == Some(linkerd_ns),
            labels,
            running: p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
            admin_port,
            ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
            owners: p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
        }
    }
}

/// One row: a resource and the indices of its pods in the pod list.
#[derive(Clone, Debug)]
pub struct Resource {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
    pub pods: Vec<usize>,
}

/// Which pods a resource selects.
enum Selects {
    Labels(LabelSelector),
    /// A Service without a selector selects no pods.
    Nothing,
    Namespace,
    Pod(String),
    /// A CronJob: the pods of its Jobs (by the Jobs' uids).
    OwnedBy(Vec<String>),
}

fn selects(sel: &Selects, ns: &str, pod: &PodInfo) -> bool {
    if pod.namespace != ns {
        return false;
    }
    match sel {
        Selects::Labels(s) => crate::explain::selector_matches(Some(s), &pod.labels).is_ok(),
        Selects::Nothing => false,
        Selects::Namespace => true,
        Selects::Pod(name) => &pod.name == name,
        Selects::OwnedBy(uids) => pod.owners.iter().any(|o| uids.contains(o)),
    }
}

/// Lists `kind` in `namespace` (every namespace with `None`), keeps `names`
/// (all when empty), and gives each its pods. Pods are listed once.
pub async fn resolve(
    client: &kube::Client,
    kind: Kind,
    names: &[String],
    namespace: Option<&str>,
    linkerd_ns: &str,
) -> Result<(Vec<Resource>, Vec<PodInfo>)> {
    let all_pods = namespace.is_none() || kind == Kind::Namespace;
    let pod_api: Api<Pod> = match namespace {
        Some(ns) if !all_pods => Api::namespaced(client.clone(), ns),
        _ => Api::all(client.clone()),
    };
    let pods: Vec<PodInfo> = pod_api
        .list(&ListParams::default())
        .await
        .context("listing pods")?
        .items
        .iter()
        .map(|p| PodInfo::from_pod(p, linkerd_ns))
        .collect();
    let objects = list(client, kind, namespace).await?;
    let mut jobs_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if kind == Kind::CronJob {
        for job in list(client, Kind::Job, namespace).await? {
            for owner in job.metadata.owner_references.iter().flatten() {
                if let Some(uid) = &job.metadata.uid {
                    jobs_of
                        .entry(owner.uid.clone())
                        .or_default()
                        .push(uid.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for o in &objects {
        let name = o.metadata.name.clone().unwrap_or_default();
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        let ns = match kind {
            Kind::Namespace => name.clone(),
            _ => o.metadata.namespace.clone().unwrap_or_default(),
        };
        let spec = &o.data["spec"];
        let sel = match kind {
            Kind::Namespace => Selects::Namespace,
            Kind::Pod => Selects::Pod(name.clone()),
            Kind::Service => match spec["selector"].as_object() {
                Some(m) if !m.is_empty() => Selects::Labels(LabelSelector {
                    match_labels: Some(
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                            .collect(),
                    ),
                    match_expressions: None,
                }),
                _ => Selects::Nothing,
            },
            Kind::CronJob => Selects::OwnedBy(
                o.metadata
                    .uid
                    .as_ref()
                    .and_then(|u| jobs_of.get(u))
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => match serde_json::from_value::<LabelSelector>(spec["selector"].clone()) {
                // An empty selector selects nothing, not everything.
                Ok(s) if s.match_labels.is_some() || s.match_expressions.is_some() => {
                    Selects::Labels(s)
                }
                _ => Selects::Nothing,
            },
        };
        let selected = pods
            .iter()
            .enumerate()
            .filter(|(_, p)| selects(&sel, &ns, p))
            .map(|(i, _)| i)
            .collect();
        out.push(Resource {
            namespace: ns,
            kind,
            name,
            pods: selected,
        });
    }
    for n in names {
        if !out.iter().any(|r| &r.name == n) {
            let place = match (kind, namespace) {
                (Kind::Namespace, _) | (_, None) => String::new(),
                (_, Some(ns)) => format!(" in namespace {ns}"),
            };
            bail!(
                "{kind} {n:?} not found{place}: `kinject stat {}{}` lists them",
                kind.singular(),
                namespace.map_or(" -A".to_string(), |ns| format!(" -n {ns}"))
            );
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok((out, pods))
}

async fn list(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>> {
    let ar = kind.api();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) if kind != Kind::Namespace => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        // A kind this API server does not serve (CronJob v1 before 1.21).
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}s", kind.singular())),
    }
}

/// The pods a `--to`/`--from` target names (`deploy/web`, `ns/apps`), as a
/// destination: its namespace and, unless it is a namespace, its pods.
pub async fn peer(
    client: &kube::Client,
    target: &str,
    namespace: &str,
    linkerd_ns: &str,
) -> Result<(Resource, Vec<PodInfo>)> {
    let (word, name) = target
        .split_once('/')
        .with_context(|| format!("{target:?}: expected TYPE/NAME, e.g. deploy/web or ns/apps"))?;
    let kind = Kind::parse(word)
        .with_context(|| format!("{target:?}: unknown kind {word:?}; use {}", Kind::KNOWN))?;
    let (mut rows, pods) = resolve(
        client,
        kind,
        &[name.to_string()],
        Some(namespace),
        linkerd_ns,
    )
    .await?;
    let row = rows.pop().with_context(|| format!("{target} not found"))?;
    Ok((row, pods))
}

/// For tests: a pod's JSON as a [`PodInfo`].
#[cfg(test)]
pub fn pod_info(v: serde_json::Value, linkerd_ns: &str) -> PodInfo {
    let pod: Pod = serde_json::from_value(v).unwrap_or_default();
    PodInfo::from_pod(&pod, linkerd_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_follow_kubectl() {
        assert_eq!(Kind::parse("deploy"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("Deployments"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("svc"), Some(Kind::Service));
        assert_eq!(Kind::parse("cj"), Some(Kind::CronJob));
        assert_eq!(Kind::parse("po"), Some(Kind::Pod));
        assert_eq!(Kind::parse("ns"), Some(Kind::Namespace));
        assert_eq!(Kind::parse("routes"), None);
    }

    #[test]
    fn a_pod_is_meshed_by_the_injectors_label_and_reads_its_admin_port() {
        let p = pod_info(
            json!({
                "metadata": {"name": "web-1", "namespace": "apps",
                    "labels": {"app": "web", "linkerd.io/control-plane-ns": "linkerd"}},
                "spec": {"initContainers": [{"name": "linkerd-proxy",
                    "ports": [{"name": "linkerd-admin", "containerPort": 5191}]}],
                    "containers": [{"name": "app"}]},
                "status": {"phase": "Running"}
            }),
            "linkerd",
        );
        assert!(p.meshed && p.running);
        assert_eq!(p.admin_port, 5191);
        let other = pod_info(
            json!({"metadata": {"name": "x", "labels": {"linkerd.io/control-plane-ns": "other"}},
                   "spec": {"containers": [{"name": "app"}]},
                   "status": {"phase": "Pending"}}),
            "linkerd",
        );
        assert!(!other.meshed && !other.running);
        assert_eq!(other.admin_port, 4191);
    }

    #[test]
    fn selectors_choose_pods_in_their_namespace_only() {
        let p = pod_info(
            json!({"metadata": {"name": "web-1", "namespace": "apps", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "app"}]}}),
            "linkerd",
        );
        let by_app = Selects::Labels(LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: None,
        });
        assert!(selects(&by_app, "apps", &p));
        assert!(!selects(&by_app, "other", &p));
        assert!(!selects(&Selects::Nothing, "apps", &p));
        assert!(selects(&Selects::Namespace, "apps", &p));
        assert!(selects(&Selects::Pod("web-1".into()), "apps", &p));
    }
}
