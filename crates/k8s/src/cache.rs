//! The injector's view of the cluster: namespaces, ReplicaSets and Jobs, as
//! metadata-only reflectors (watches, not polling). Lookups never block a
//! request for long: a cache miss does one GET bounded by [`MISS_TIMEOUT`], then
//! the caller decides with what it has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kinject_inject::Owner;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Map, Value};
use tracing::{Instrument, debug, info_span, warn};

/// How long a request may wait for a cache miss to be fetched.
pub const MISS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an object a GET did not find (or could not fetch) is not asked
/// for again: a pod naming a ReplicaSet that does not exist, sent over and
/// over, must not turn every request into a GET (nor every GET failure into a
/// log line). The watches still add the object the moment it appears.
pub const MISS_MEMORY: Duration = Duration::from_secs(5);

/// Objects recently looked for and not found, each with when that was.
/// Bounded: when full, expired entries go, then everything.
#[derive(Debug, Default)]
struct RecentMisses {
    seen: std::collections::HashMap<String, Instant>,
}

impl RecentMisses {
    const CAPACITY: usize = 4096;

    fn is_recent(&self, key: &str, now: Instant) -> bool {
        self.seen
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < MISS_MEMORY)
    }

    fn record(&mut self, key: String, now: Instant) {
        if self.seen.len() >= Self::CAPACITY {
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < MISS_MEMORY);
            if self.seen.len() >= Self::CAPACITY {
                self.seen.clear();
            }
        }
        self.seen.insert(key, now);
    }
}

/// A namespace's name, labels and annotations, as the engine reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: Map<String, Value>,
    pub annotations: Map<String, Value>,
    /// False when the namespace could not be read (not cached, GET failed).
    pub known: bool,
}

impl NamespaceInfo {
    fn from_meta(name: &str, meta: &ObjectMeta) -> Self {
        let conv = |m: &Option<std::collections::BTreeMap<String, String>>| {
            m.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        Self {
            name: name.to_string(),
            labels: conv(&meta.labels),
            annotations: conv(&meta.annotations),
            known: true,
        }
    }

    pub fn unknown(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn as_meta(&self) -> kinject_inject::NamespaceMeta<'_> {
        kinject_inject::NamespaceMeta {
            name: &self.name,
            labels: Some(&self.labels),
            annotations: Some(&self.annotations),
        }
    }
}

/// What the admission handler needs to know about the cluster. A trait so the
/// handler is unit-tested without a cluster.
pub trait ClusterLookup: Send + Sync + 'static {
    fn namespace(&self, name: &str) -> impl Future<Output = NamespaceInfo> + Send;
    /// The workload owning a pod whose controller reference is `controller`
    /// (kind, name), resolved through ReplicaSet → Deployment and Job → CronJob.
    /// `None` for a bare pod.
    fn owner(
        &self,
        ns: &str,
        controller: Option<(&str, &str)>,
    ) -> impl Future<Output = Option<Owner>> + Send;
}

/// Reflector-backed [`ClusterLookup`].
#[derive(Clone)]
pub struct ClusterView {
    client: kube::Client,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    replicasets: Store<PartialObjectMeta<ReplicaSet>>,
    jobs: Store<PartialObjectMeta<Job>>,
    synced: Arc<AtomicBool>,
    misses: Arc<Mutex<RecentMisses>>,
}

impl ClusterView {
    /// Starts the watches; they run until the process exits, reconnecting with
    /// backoff on errors.
    pub fn spawn(client: kube::Client) -> Self {
        let (namespaces, ns_writer) = reflector::store();
        let (replicasets, rs_writer) = reflector::store();
        let (jobs, job_writer) = reflector::store();
        spawn_reflector::<Namespace>(&client, ns_writer, "namespaces");
        spawn_reflector::<ReplicaSet>(&client, rs_writer, "replicasets");
        spawn_reflector::<Job>(&client, job_writer, "jobs");
        let view = Self {
            client,
            namespaces,
            replicasets,
            jobs,
            synced: Arc::new(AtomicBool::new(false)),
            misses: Arc::default(),
        };
        let v = view.clone();
        tokio::spawn(async move {
            let ok = v.namespaces.wait_until_ready().await.is_ok()
                && v.replicasets.wait_until_ready().await.is_ok()
                && v.jobs.wait_until_ready().await.is_ok();
            v.synced.store(ok, Ordering::Release);
        });
        view
    }

    /// True once every watch has listed its objects.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// One bounded GET for an object the watch has not (yet) delivered,
    /// unless the same object was missed in the last [`MISS_MEMORY`].
    async fn get_meta<K>(&self, api: Api<K>, ns: &str, name: &str) -> Option<PartialObjectMeta<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let key = format!("{}/{ns}/{name}", K::kind(&()));
        if self
            .misses
            .lock()
            .is_ok_and(|m| m.is_recent(&key, Instant::now()))
        {
            debug!(%key, "recently missed; not fetched again");
            return None;
        }
        let found = match tokio::time::timeout(MISS_TIMEOUT, api.get_metadata_opt(name)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                warn!(%key, error = %e, "cache miss and GET failed");
                None
            }
            Err(_) => {
                warn!(%key, "cache miss and GET timed out");
                None
            }
        };
        if found.is_none()
            && let Ok(mut m) = self.misses.lock()
        {
            m.record(key, Instant::now());
        }
        found
    }

    async fn controller_of<K>(
        &self,
        store: &Store<PartialObjectMeta<K>>,
        api: Api<K>,
        ns: &str,
        name: &str,
    ) -> Option<OwnerReference>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        // Read in place: this runs for every pod, cache hits included.
        if let Some(cached) = store.get(&ObjectRef::new(name).within(ns)) {
            return controller_ref(&cached.metadata);
        }
        controller_ref(&self.get_meta(api, ns, name).await?.metadata)
    }
}

/// A metadata-only watch (`Api<PartialObjectMeta<K>>` asks for metadata only)
/// feeding a reflector store.
fn spawn_reflector<K>(
    client: &kube::Client,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
    what: &'static str,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|m| {
            m.metadata.managed_fields = None;
        })
        .reflect(writer)
        .applied_objects();
    tokio::spawn(
        async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    warn!(error = %e, "watch error (retrying)");
                }
            }
        }
        .instrument(info_span!("watch", resource = what)),
    );
}

fn controller_ref(meta: &ObjectMeta) -> Option<OwnerReference> {
    let refs = meta.owner_references.as_ref()?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| (refs.len() == 1).then(|| &refs[0]))
        .cloned()
}

/// The controller reference of a pod's metadata (or its only owner): (kind, name).
pub fn owner_ref_from_json(pod_metadata: &Value) -> Option<(String, String)> {
    let refs = pod_metadata.get("ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| (refs.len() == 1).then(|| &refs[0]))?;
    Some((
        r.get("kind")?.as_str()?.to_string(),
        r.get("name")?.as_str()?.to_string(),
    ))
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner {
        kind: kind.to_ascii_lowercase(),
        name: name.to_string(),
    }
}

impl ClusterLookup for ClusterView {
    async fn namespace(&self, name: &str) -> NamespaceInfo {
        if let Some(ns) = self.namespaces.get(&ObjectRef::new(name)) {
            return NamespaceInfo::from_meta(name, &ns.metadata);
        }
        debug!(%name, "namespace cache miss");
        match self
            .get_meta(Api::<Namespace>::all(self.client.clone()), "", name)
            .await
        {
            Some(ns) => NamespaceInfo::from_meta(name, &ns.metadata),
            None => NamespaceInfo::unknown(name),
        }
    }

    async fn owner(&self, ns: &str, controller: Option<(&str, &str)>) -> Option<Owner> {
        let (kind, name) = controller?;
        let parent = match kind {
            "ReplicaSet" => {
                let api = Api::<ReplicaSet>::namespaced(self.client.clone(), ns);
                self.controller_of(&self.replicasets, api, ns, name).await
            }
            "Job" => {
                let api = Api::<Job>::namespaced(self.client.clone(), ns);
                self.controller_of(&self.jobs, api, ns, name).await
            }
            _ => None,
        };
        match parent {
            Some(p) if matches!(p.kind.as_str(), "Deployment" | "CronJob") => {
                Some(owner(&p.kind, &p.name))
            }
            _ => Some(owner(kind, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recent_misses_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let mut m = RecentMisses::default();
        m.record("ReplicaSet/apps/gone".into(), t0);
        assert!(m.is_recent("ReplicaSet/apps/gone", t0 + Duration::from_secs(1)));
        assert!(!m.is_recent("ReplicaSet/apps/other", t0));
        assert!(!m.is_recent("ReplicaSet/apps/gone", t0 + MISS_MEMORY));
        // Full of fresh entries: cleared rather than grown.
        let mut m = RecentMisses::default();
        for i in 0..RecentMisses::CAPACITY {
            m.record(format!("k{i}"), t0);
        }
        assert_eq!(m.seen.len(), RecentMisses::CAPACITY);
        m.record("one-more".into(), t0);
        assert_eq!(m.seen.len(), 1);
        // Full with some expired entries: only those go.
        let mut m = RecentMisses::default();
        for i in 0..RecentMisses::CAPACITY - 1 {
            m.record(format!("k{i}"), t0);
        }
        m.record("young".into(), t0 + Duration::from_secs(4));
        let later = t0 + MISS_MEMORY;
        m.record("fresh".into(), later);
        assert_eq!(m.seen.len(), 2);
        assert!(m.is_recent("young", later) && m.is_recent("fresh", later));
    }

    #[test]
    fn owner_refs_prefer_the_controller() {
        let md = json!({"ownerReferences": [
            {"kind": "Foo", "name": "a"},
            {"kind": "ReplicaSet", "name": "web-123", "controller": true},
        ]});
        assert_eq!(
            owner_ref_from_json(&md),
            Some(("ReplicaSet".into(), "web-123".into()))
        );
        assert_eq!(owner_ref_from_json(&json!({})), None);
        let single = json!({"ownerReferences": [{"kind": "Job", "name": "j"}]});
        assert_eq!(
            owner_ref_from_json(&single),
            Some(("Job".into(), "j".into()))
        );
    }

    #[test]
    fn namespace_info_converts_labels() {
        let meta = ObjectMeta {
            labels: Some([("linkerd.io/auto-inject".to_string(), "disabled".to_string())].into()),
            ..ObjectMeta::default()
        };
        let info = NamespaceInfo::from_meta("apps", &meta);
        assert!(info.known);
        assert_eq!(info.labels["linkerd.io/auto-inject"], "disabled");
        assert_eq!(info.as_meta().name, "apps");
    }
}
