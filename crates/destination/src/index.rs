//! The one in-memory view of the cluster that every stream reads. The
//! watchers (`cluster.rs`) apply object changes; streams subscribe to the one
//! Service or pod they are about and are woken only when its view changes.
//!
//! Watches exist only while a stream holds them: a [`Subscription`] removes
//! its entry when the last stream of that key goes away, so clients that come
//! and go leave nothing behind.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use crate::model::{NamespaceInfo, ObjKey, PodInfo, ServiceInfo, SliceInfo};
use crate::policy_index::{PolicyKind, PolicyObject, PolicySet, PolicySnapshot};
use crate::policy_model::{Refused, RouteParent};

/// A slice's ports (name, number), shared by its endpoints.
pub type SlicePorts = Arc<Vec<(Option<String>, u16)>>;

/// One endpoint as a stream sees it: the slice's address and ports, and the
/// pod behind it (when known).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointView {
    pub ip: IpAddr,
    pub ports: SlicePorts,
    pub pod: Option<(String, Arc<PodInfo>)>,
    pub node: Option<String>,
}

/// Everything a Service's streams (endpoints, outbound policy, profile) need.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceView {
    pub service: Option<Arc<ServiceInfo>>,
    /// Ready endpoints only.
    pub endpoints: Vec<EndpointView>,
    /// The policy objects (HTTPRoutes whose parent is this Service).
    pub policy: PolicySnapshot,
    /// The routes' backend Services that do not exist.
    pub missing_backends: Vec<ObjKey>,
}

/// Everything a pod's inbound policy needs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodView {
    pub pod: Option<Arc<PodInfo>>,
    /// The pod's namespace (its Servers and policies are there).
    pub namespace: String,
    pub namespace_default: Option<String>,
    /// Servers, authorizations and routes, for the pod's namespace (and
    /// the authentications its policies refer to anywhere).
    pub policy: PolicySnapshot,
}

#[derive(Default)]
struct State {
    pods: HashMap<ObjKey, Arc<PodInfo>>,
    pod_ips: HashMap<IpAddr, ObjKey>,
    services: HashMap<ObjKey, Arc<ServiceInfo>>,
    cluster_ips: HashMap<IpAddr, ObjKey>,
    /// Slices by (namespace, slice name), and each Service's slice names.
    slices: HashMap<ObjKey, (Arc<SliceInfo>, SlicePorts)>,
    slices_of: HashMap<ObjKey, BTreeSet<String>>,
    /// Which Services' endpoints name a pod, so a pod change reaches them.
    services_of_pod: HashMap<ObjKey, HashSet<ObjKey>>,
    namespaces: HashMap<String, Arc<NamespaceInfo>>,
    policy: PolicySnapshot,
    service_watches: HashMap<ObjKey, watch::Sender<Arc<ServiceView>>>,
    pod_watches: HashMap<ObjKey, watch::Sender<Arc<PodView>>>,
    /// How many Services have an annotation destination refused.
    services_with_bad_annotations: usize,
}

/// The shared index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    state: Arc<Mutex<State>>,
    /// Bumped when the policy objects change, or a Service a route refers
    /// to comes or goes: what the route status writer follows.
    routes_changed: Arc<watch::Sender<u64>>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            routes_changed: Arc::new(watch::channel(0).0),
        }
    }
}

/// What an address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Service(ObjKey),
    Pod(ObjKey),
    Unknown,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // --- writes (the watchers) ---

    pub fn apply_pod(&self, key: ObjKey, info: PodInfo) {
        let mut s = self.lock();
        let info = Arc::new(info);
        if s.pods.get(&key) == Some(&info) {
            return;
        }
        if let Some(old) = s.pods.insert(key.clone(), info.clone()) {
            for ip in &old.ips {
                if s.pod_ips.get(ip) == Some(&key) {
                    s.pod_ips.remove(ip);
                }
            }
        }
        if !info.host_network {
            for ip in &info.ips {
                s.pod_ips.insert(*ip, key.clone());
            }
        }
        s.pod_changed(&key);
    }

    pub fn delete_pod(&self, key: &ObjKey) {
        let mut s = self.lock();
        if let Some(old) = s.pods.remove(key) {
            for ip in &old.ips {
                if s.pod_ips.get(ip) == Some(key) {
                    s.pod_ips.remove(ip);
                }
            }
            s.pod_changed(key);
        }
    }

    pub fn apply_service(&self, key: ObjKey, info: ServiceInfo) {
        let mut s = self.lock();
        let info = Arc::new(info);
        if s.services.get(&key) == Some(&info) {
            return;
        }
        let old = s.services.insert(key.clone(), info.clone());
        let existed = old.is_some();
        let was_bad = old.as_ref().is_some_and(|o| !o.bad_annotations.is_empty());
        let is_bad = !info.bad_annotations.is_empty();
        s.services_with_bad_annotations =
            s.services_with_bad_annotations + usize::from(is_bad) - usize::from(was_bad);
        if let Some(old) = old {
            for ip in &old.cluster_ips {
                if s.cluster_ips.get(ip) == Some(&key) {
                    s.cluster_ips.remove(ip);
                }
            }
        }
        for ip in &info.cluster_ips {
            s.cluster_ips.insert(*ip, key.clone());
        }
        s.service_changed(&key);
        drop(s);
        if !existed {
            self.routes_changed.send_modify(|g| *g += 1);
        }
    }

    pub fn delete_service(&self, key: &ObjKey) {
        let mut s = self.lock();
        if let Some(old) = s.services.remove(key) {
            if !old.bad_annotations.is_empty() {
                s.services_with_bad_annotations -= 1;
            }
            for ip in &old.cluster_ips {
                if s.cluster_ips.get(ip) == Some(key) {
                    s.cluster_ips.remove(ip);
                }
            }
            s.service_changed(key);
            drop(s);
            self.routes_changed.send_modify(|g| *g += 1);
        }
    }

    /// `key` is the slice's namespace and name.
    pub fn apply_slice(&self, key: ObjKey, info: SliceInfo) {
        let mut s = self.lock();
        let svc = ObjKey::new(&key.namespace, &info.service);
        let ports = Arc::new(info.ports.clone());
        let old = s.slices.insert(key.clone(), (Arc::new(info), ports));
        let mut touched = vec![svc.clone()];
        if let Some((old, _)) = old {
            let old_svc = ObjKey::new(&key.namespace, &old.service);
            if old_svc != svc {
                if let Some(set) = s.slices_of.get_mut(&old_svc) {
                    set.remove(&key.name);
                }
                touched.push(old_svc);
            }
        }
        s.slices_of.entry(svc).or_default().insert(key.name.clone());
        for svc in touched {
            s.endpoints_changed(&svc);
        }
    }

    pub fn delete_slice(&self, key: &ObjKey) {
        let mut s = self.lock();
        if let Some((old, _)) = s.slices.remove(key) {
            let svc = ObjKey::new(&key.namespace, &old.service);
            if let Some(set) = s.slices_of.get_mut(&svc) {
                set.remove(&key.name);
                if set.is_empty() {
                    s.slices_of.remove(&svc);
                }
            }
            s.endpoints_changed(&svc);
        }
    }

    pub fn apply_namespace(&self, name: String, info: NamespaceInfo) {
        let mut s = self.lock();
        let info = Arc::new(info);
        if s.namespaces.get(&name) == Some(&info) {
            return;
        }
        s.namespaces.insert(name.clone(), info);
        s.namespace_changed(&name);
    }

    pub fn delete_namespace(&self, name: &str) {
        let mut s = self.lock();
        if s.namespaces.remove(name).is_some() {
            s.namespace_changed(name);
        }
    }

    /// Records a policy object's facts (or its refusal) and republishes
    /// every view it may change.
    pub fn apply_policy(
        &self,
        kind: PolicyKind,
        key: &ObjKey,
        facts: Result<PolicyObject, Refused>,
    ) {
        self.change_policy(|set| set.apply(kind, key, facts));
    }

    pub fn delete_policy(&self, kind: PolicyKind, key: &ObjKey) {
        self.change_policy(|set| set.delete(kind, key));
    }

    /// Applies `change` to a copy of the policy set; when it says something
    /// changed, the copy becomes the snapshot every view carries.
    fn change_policy(&self, change: impl FnOnce(&mut PolicySet) -> bool) {
        let mut s = self.lock();
        let mut set = PolicySet::clone(&s.policy);
        if change(&mut set) {
            s.policy = PolicySnapshot(Arc::new(set));
            s.policy_changed();
            self.routes_changed.send_modify(|g| *g += 1);
        }
    }

    pub fn retain_policy(&self, kind: PolicyKind, keep: &HashSet<ObjKey>) {
        let gone: Vec<ObjKey> = self
            .lock()
            .policy
            .keys(kind)
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        for k in gone {
            self.delete_policy(kind, &k);
        }
    }

    /// The policy objects now.
    pub fn policy(&self) -> PolicySnapshot {
        self.lock().policy.clone()
    }

    /// Wakes when what a route's status depends on may have changed.
    pub fn routes_changed(&self) -> watch::Receiver<u64> {
        self.routes_changed.subscribe()
    }

    /// A watch restarted from a fresh list: forget what the list no longer
    /// holds. `kind` picks the map; `keep` is every key listed.
    pub fn retain_pods(&self, keep: &HashSet<ObjKey>) {
        let gone: Vec<ObjKey> = {
            let s = self.lock();
            s.pods
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect()
        };
        for k in gone {
            self.delete_pod(&k);
        }
    }

    /// How many Services have a retry, timeout or failure-accrual
    /// annotation that was refused (none of its set applies).
    pub fn services_with_bad_annotations(&self) -> usize {
        self.lock().services_with_bad_annotations
    }

    pub fn retain_services(&self, keep: &HashSet<ObjKey>) {
        let gone: Vec<ObjKey> = {
            let s = self.lock();
            s.services
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect()
        };
        for k in gone {
            self.delete_service(&k);
        }
    }

    pub fn retain_slices(&self, keep: &HashSet<ObjKey>) {
        let gone: Vec<ObjKey> = {
            let s = self.lock();
            s.slices
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect()
        };
        for k in gone {
            self.delete_slice(&k);
        }
    }

    pub fn retain_namespaces(&self, keep: &HashSet<String>) {
        let gone: Vec<String> = {
            let s = self.lock();
            s.namespaces
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect()
        };
        for k in gone {
            self.delete_namespace(&k);
        }
    }

    // --- reads (the streams) ---

    pub fn lookup_ip(&self, ip: IpAddr) -> Lookup {
        let s = self.lock();
        if let Some(k) = s.cluster_ips.get(&ip) {
            Lookup::Service(k.clone())
        } else if let Some(k) = s.pod_ips.get(&ip) {
            Lookup::Pod(k.clone())
        } else {
            Lookup::Unknown
        }
    }

    pub fn service_exists(&self, key: &ObjKey) -> bool {
        self.lock().services.contains_key(key)
    }

    /// A Service's view now, for a one-off answer (no watch is made).
    pub fn service_view(&self, key: &ObjKey) -> ServiceView {
        self.lock().service_view(key)
    }

    /// A pod's view now, for a one-off answer (no watch is made).
    pub fn pod_view(&self, key: &ObjKey) -> PodView {
        self.lock().pod_view(key)
    }

    /// Watches a Service's view (it need not exist yet).
    pub fn subscribe_service(&self, key: &ObjKey) -> Subscription<ServiceView> {
        let mut s = self.lock();
        let rx = match s.service_watches.get(key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Arc::new(s.service_view(key)));
                s.service_watches.insert(key.clone(), tx);
                rx
            }
        };
        Subscription {
            rx: Some(rx),
            index: Arc::downgrade(&self.state),
            key: WatchKey::Service(key.clone()),
        }
    }

    /// Watches a pod's view (it need not exist yet).
    pub fn subscribe_pod(&self, key: &ObjKey) -> Subscription<PodView> {
        let mut s = self.lock();
        let rx = match s.pod_watches.get(key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Arc::new(s.pod_view(key)));
                s.pod_watches.insert(key.clone(), tx);
                rx
            }
        };
        Subscription {
            rx: Some(rx),
            index: Arc::downgrade(&self.state),
            key: WatchKey::Pod(key.clone()),
        }
    }

    /// Watches held now (Services, pods): what the streams cost.
    pub fn watches(&self) -> (usize, usize) {
        let s = self.lock();
        (s.service_watches.len(), s.pod_watches.len())
    }
}

impl State {
    fn service_view(&self, key: &ObjKey) -> ServiceView {
        let mut endpoints = Vec::new();
        for slice in self.slices_of.get(key).into_iter().flatten() {
            let Some((info, ports)) = self.slices.get(&ObjKey::new(&key.namespace, slice)) else {
                continue;
            };
            for ep in info.endpoints.iter().filter(|e| e.ready) {
                let pod = ep.pod.as_ref().and_then(|name| {
                    let info = self.pods.get(&ObjKey::new(&key.namespace, name))?;
                    Some((name.clone(), info.clone()))
                });
                for ip in &ep.ips {
                    endpoints.push(EndpointView {
                        ip: *ip,
                        ports: ports.clone(),
                        pod: pod.clone(),
                        node: ep.node.clone(),
                    });
                }
            }
        }
        // One order whatever order the slices arrived in.
        endpoints.sort_by_key(|e| e.ip);
        endpoints.dedup_by(|a, b| a.ip == b.ip && a.ports == b.ports);
        let mut missing_backends: Vec<ObjKey> = self
            .routes_of(key)
            .flat_map(|r| r.rules.iter())
            .flat_map(|rule| rule.backends.iter())
            .map(|b| b.service.clone())
            .filter(|b| !self.services.contains_key(b))
            .collect();
        missing_backends.sort();
        missing_backends.dedup();
        ServiceView {
            service: self.services.get(key).cloned(),
            endpoints,
            policy: self.policy.clone(),
            missing_backends,
        }
    }

    fn pod_view(&self, key: &ObjKey) -> PodView {
        PodView {
            pod: self.pods.get(key).cloned(),
            namespace: key.namespace.clone(),
            namespace_default: self
                .namespaces
                .get(&key.namespace)
                .and_then(|n| n.default_policy.clone()),
            policy: self.policy.clone(),
        }
    }

    /// The routes whose parent is Service `key`: its namespace's (producer
    /// routes) and other namespaces' (consumer routes).
    fn routes_of<'a>(
        &'a self,
        key: &'a ObjKey,
    ) -> impl Iterator<Item = &'a crate::policy_model::RouteFacts> + 'a {
        self.policy
            .namespaces()
            .flat_map(|(_, ns)| ns.routes.values())
            .filter(move |r| {
                r.parents
                    .iter()
                    .any(|p| matches!(p, RouteParent::Service(s, _) if s == key))
            })
            .map(|r| &**r)
    }

    /// Whether a route sends to Service `key`: its existence changes that
    /// route's answer.
    fn is_route_backend(&self, key: &ObjKey) -> bool {
        self.policy.namespaces().any(|(_, ns)| {
            ns.routes.values().any(|r| {
                r.rules
                    .iter()
                    .any(|rule| rule.backends.iter().any(|b| &b.service == key))
            })
        })
    }

    fn policy_changed(&self) {
        let pods: Vec<ObjKey> = self.pod_watches.keys().cloned().collect();
        for k in pods {
            self.publish_pod(&k);
        }
        let services: Vec<ObjKey> = self.service_watches.keys().cloned().collect();
        for k in services {
            self.publish_service(&k);
        }
    }

    fn publish_service(&self, key: &ObjKey) {
        if let Some(tx) = self.service_watches.get(key) {
            let view = self.service_view(key);
            tx.send_if_modified(|cur| {
                if **cur == view {
                    false
                } else {
                    *cur = Arc::new(view);
                    true
                }
            });
        }
    }

    fn publish_pod(&self, key: &ObjKey) {
        if let Some(tx) = self.pod_watches.get(key) {
            let view = self.pod_view(key);
            tx.send_if_modified(|cur| {
                if **cur == view {
                    false
                } else {
                    *cur = Arc::new(view);
                    true
                }
            });
        }
    }

    fn pod_changed(&self, key: &ObjKey) {
        self.publish_pod(key);
        for svc in self.services_of_pod.get(key).into_iter().flatten() {
            self.publish_service(svc);
        }
    }

    fn service_changed(&self, key: &ObjKey) {
        if self.is_route_backend(key) {
            // Routes elsewhere send to it: their views change too.
            let services: Vec<ObjKey> = self.service_watches.keys().cloned().collect();
            for k in services {
                self.publish_service(&k);
            }
        } else {
            self.publish_service(key);
        }
    }

    fn endpoints_changed(&mut self, svc: &ObjKey) {
        // Re-derive which pods this Service names.
        let mut named: HashSet<ObjKey> = HashSet::new();
        for slice in self.slices_of.get(svc).into_iter().flatten() {
            if let Some((info, _)) = self.slices.get(&ObjKey::new(&svc.namespace, slice)) {
                named.extend(
                    info.endpoints
                        .iter()
                        .filter_map(|e| e.pod.as_ref())
                        .map(|p| ObjKey::new(&svc.namespace, p)),
                );
            }
        }
        self.services_of_pod.retain(|pod, svcs| {
            if !named.contains(pod) {
                svcs.remove(svc);
            }
            !svcs.is_empty()
        });
        for pod in named {
            self.services_of_pod
                .entry(pod)
                .or_default()
                .insert(svc.clone());
        }
        self.publish_service(svc);
    }

    fn namespace_changed(&self, ns: &str) {
        let keys: Vec<ObjKey> = self
            .pod_watches
            .keys()
            .filter(|k| k.namespace == ns)
            .cloned()
            .collect();
        for k in keys {
            self.publish_pod(&k);
        }
    }
}

enum WatchKey {
    Service(ObjKey),
    Pod(ObjKey),
}

/// A stream's hold on one watch. Dropping the last one for a key frees the
/// watch.
pub struct Subscription<T> {
    rx: Option<watch::Receiver<Arc<T>>>,
    index: Weak<Mutex<State>>,
    key: WatchKey,
}

impl<T> Subscription<T> {
    /// The current view, marked as seen.
    pub fn current(&mut self) -> Arc<T> {
        match self.rx.as_mut() {
            Some(rx) => rx.borrow_and_update().clone(),
            None => unreachable!("the receiver lives as long as the subscription"),
        }
    }

    /// Waits for the next change; `false` if the index is gone.
    pub async fn changed(&mut self) -> bool {
        match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        // Drop our receiver first, then free the watch if it was the last.
        drop(self.rx.take());
        let Some(state) = self.index.upgrade() else {
            return;
        };
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        match &self.key {
            WatchKey::Service(k) => {
                if s.service_watches
                    .get(k)
                    .is_some_and(|tx| tx.receiver_count() == 0)
                {
                    s.service_watches.remove(k);
                }
            }
            WatchKey::Pod(k) => {
                if s.pod_watches
                    .get(k)
                    .is_some_and(|tx| tx.receiver_count() == 0)
                {
                    s.pod_watches.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_annotations::BadAnnotation;

    #[test]
    fn services_with_bad_annotations_are_counted() {
        let index = Index::new();
        let bad = || ServiceInfo {
            bad_annotations: vec![BadAnnotation {
                key: "timeout.linkerd.io/idle",
                why: "soon".into(),
            }],
            ..ServiceInfo::default()
        };
        let (a, b) = (ObjKey::new("apps", "a"), ObjKey::new("apps", "b"));
        index.apply_service(a.clone(), bad());
        index.apply_service(b.clone(), bad());
        index.apply_service(a.clone(), bad());
        assert_eq!(
            index.services_with_bad_annotations(),
            2,
            "an update is not a second"
        );
        index.apply_service(a.clone(), ServiceInfo::default());
        assert_eq!(index.services_with_bad_annotations(), 1, "fixed");
        index.delete_service(&b);
        assert_eq!(index.services_with_bad_annotations(), 0, "gone");
        index.delete_service(&b);
        assert_eq!(index.services_with_bad_annotations(), 0);
    }
}
