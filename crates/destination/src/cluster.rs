//! The watches that feed the [`Index`]: one per kind for the whole process,
//! however many proxies are streaming (kube-rs watchers; never a poll, never
//! one watch per client). Objects are reduced to their facts (`model.rs`) as
//! they arrive, so no full object is kept.
//!
//! - meshed pods (label `linkerd.io/control-plane-ns=<ns>`): unmeshed pods
//!   need nothing from kinject (their endpoints simply carry no identity);
//! - Services, EndpointSlices (`discovery.k8s.io/v1`, or `v1beta1` on
//!   Kubernetes 1.20, which serves only that);
//! - namespaces, metadata only (their default-inbound-policy annotation);
//! - Linkerd's policy resources (`run_policy`), each kind in the newest
//!   version the API server serves, read as JSON and converted one object at
//!   a time: a bad object is refused (logged, counted, left out), never a
//!   failed watch. A kind whose CRD is not installed is read from as soon
//!   as its CRD appears (a watch on that CRD).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{info, warn};

use crate::index::Index;
use crate::model::{self, ObjKey};
use crate::policy_index::{PolicyKind, PolicyObject};
use crate::policy_model::Refused;

/// Whether every watch has finished its first list: the four core kinds,
/// the discovery of the policy kinds, and each policy kind served. Not
/// ready before: answering a pod's port before its Servers are known would
/// grant the default where a Server denies.
#[derive(Clone)]
pub struct Synced {
    done: Arc<AtomicUsize>,
    expected: Arc<AtomicUsize>,
}

impl Default for Synced {
    fn default() -> Self {
        Self {
            done: Arc::default(),
            expected: Arc::new(AtomicUsize::new(Self::CORE_KINDS + 1)),
        }
    }
}

impl Synced {
    const CORE_KINDS: usize = 4;
    pub fn all(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.expected.load(Ordering::Acquire)
    }
    fn mark(&self) {
        self.done.fetch_add(1, Ordering::AcqRel);
    }
    fn expect(&self, more: usize) {
        self.expected.fetch_add(more, Ordering::AcqRel);
    }
}

/// Applies one kind's events to the index: `apply` and `delete` per object,
/// and after each (re)list, `retain` with every key listed, so objects
/// deleted while the watch was down go too.
async fn follow<K, Key, S>(
    what: &'static str,
    stream: S,
    synced: Synced,
    apply: impl Fn(&K),
    delete: impl Fn(&K),
    key: impl Fn(&K) -> Key,
    retain: impl Fn(&HashSet<Key>),
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    Key: Eq + Hash,
{
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<Key>> = None;
    let mut first = true;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(o)) => {
                apply(&o);
                if let Some(l) = listing.as_mut() {
                    l.insert(key(&o));
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(l) = listing.take() {
                    retain(&l);
                }
                if first {
                    first = false;
                    synced.mark();
                    info!(resource = what, "synced");
                }
            }
            Ok(watcher::Event::Apply(o)) => apply(&o),
            Ok(watcher::Event::Delete(o)) => delete(&o),
            Err(e) => warn!(resource = what, error = %e, "watch error (retrying)"),
        }
    }
}

fn key_of<K: Resource>(o: &K) -> ObjKey {
    ObjKey::new(o.namespace().unwrap_or_default(), o.name_any())
}

/// The EndpointSlice API this server has.
pub fn endpoint_slice_resource(modern: bool) -> ApiResource {
    let version = if modern { "v1" } else { "v1beta1" };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", version, "EndpointSlice"),
        "endpointslices",
    )
}

fn slice_lite(o: &DynamicObject) -> Option<model::EndpointSliceLite> {
    let v = serde_json::to_value(o).ok()?;
    match serde_json::from_value(v) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(slice = %key_of(o), error = %e, "an EndpointSlice kinject cannot read; ignored");
            None
        }
    }
}

/// Runs the four watches until the process ends. `modern_slices` is false
/// on servers before 1.21.
pub async fn run(
    client: kube::Client,
    index: Index,
    control_ns: String,
    modern_slices: bool,
    synced: Synced,
    bad_annotations: Gauge<i64>,
) {
    let cfg = watcher::Config::default();
    let pods = {
        let index = index.clone();
        let index2 = index.clone();
        let index3 = index.clone();
        let ns = control_ns.clone();
        let selector = format!(
            "{}={control_ns}",
            kinject_mesh::labels::CONTROL_PLANE_NS_LABEL
        );
        follow(
            "pods",
            watcher(
                Api::<Pod>::all(client.clone()),
                cfg.clone().labels(&selector),
            )
            .default_backoff(),
            synced.clone(),
            move |p: &Pod| index.apply_pod(key_of(p), model::pod_info(p, &ns)),
            move |p: &Pod| index2.delete_pod(&key_of(p)),
            key_of,
            move |keep| index3.retain_pods(keep),
        )
    };
    let services = {
        let (a, b, c) = (index.clone(), index.clone(), index.clone());
        let count =
            |i: &Index| i64::try_from(i.services_with_bad_annotations()).unwrap_or(i64::MAX);
        let (ga, gb, gc) = (
            bad_annotations.clone(),
            bad_annotations.clone(),
            bad_annotations,
        );
        follow(
            "services",
            watcher(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff(),
            synced.clone(),
            move |s: &Service| {
                let info = model::service_info(s);
                for why in &info.bad_annotations {
                    warn!(service = %key_of(s), %why,
                          "annotations not applied; fix the value");
                }
                a.apply_service(key_of(s), info);
                ga.set(count(&a));
            },
            move |s: &Service| {
                b.delete_service(&key_of(s));
                gb.set(count(&b));
            },
            key_of,
            move |keep| {
                c.retain_services(keep);
                gc.set(count(&c));
            },
        )
    };
    let slices = {
        let (a, b, c) = (index.clone(), index.clone(), index.clone());
        let ar = endpoint_slice_resource(modern_slices);
        follow(
            "endpointslices",
            watcher(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                cfg.clone(),
            )
            .default_backoff(),
            synced.clone(),
            move |o: &DynamicObject| match slice_lite(o).as_ref().and_then(model::slice_info) {
                Some(info) => a.apply_slice(key_of(o), info),
                // A slice that stopped being readable or a Service's: forget it.
                None => a.delete_slice(&key_of(o)),
            },
            move |o: &DynamicObject| b.delete_slice(&key_of(o)),
            key_of,
            move |keep| c.retain_slices(keep),
        )
    };
    let namespaces = {
        let (a, b, c) = (index.clone(), index.clone(), index.clone());
        follow(
            "namespaces",
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                cfg.clone(),
            )
            .default_backoff(),
            synced.clone(),
            move |n: &PartialObjectMeta<Namespace>| {
                let ns = Namespace {
                    metadata: n.metadata.clone(),
                    ..Namespace::default()
                };
                a.apply_namespace(n.name_any(), model::namespace_info(&ns))
            },
            move |n: &PartialObjectMeta<Namespace>| b.delete_namespace(&n.name_any()),
            |n: &PartialObjectMeta<Namespace>| n.name_any(),
            move |keep| c.retain_namespaces(keep),
        )
    };
    tokio::join!(pods, services, slices, namespaces);
}

/// A policy kind's versions, newest first.
fn policy_versions(kind: PolicyKind) -> (&'static str, &'static str, &'static [&'static str]) {
    use crate::policy_model::RouteGroup;
    use kinject_k8s::policy::{GATEWAY_GROUP, POLICY_GROUP};
    match kind {
        PolicyKind::Server => (POLICY_GROUP, "Server", &["v1beta3", "v1beta2", "v1beta1"]),
        PolicyKind::ServerAuthorization => (
            POLICY_GROUP,
            "ServerAuthorization",
            &["v1beta1", "v1alpha1"],
        ),
        PolicyKind::AuthorizationPolicy => (POLICY_GROUP, "AuthorizationPolicy", &["v1alpha1"]),
        PolicyKind::MeshTlsAuthentication => (POLICY_GROUP, "MeshTLSAuthentication", &["v1alpha1"]),
        PolicyKind::NetworkAuthentication => (POLICY_GROUP, "NetworkAuthentication", &["v1alpha1"]),
        PolicyKind::HttpRoute(RouteGroup::Policy) => (
            POLICY_GROUP,
            "HTTPRoute",
            &["v1beta3", "v1beta2", "v1beta1", "v1alpha1"],
        ),
        PolicyKind::HttpRoute(RouteGroup::Gateway) => {
            (GATEWAY_GROUP, "HTTPRoute", &["v1", "v1beta1"])
        }
    }
}

/// The newest version of `kind` the API server serves, or `None`.
pub async fn served(client: &kube::Client, kind: PolicyKind) -> Option<ApiResource> {
    let (group, kind_name, versions) = policy_versions(kind);
    for v in versions {
        let gv = format!("{group}/{v}");
        let Ok(list) = client.list_api_group_resources(&gv).await else {
            continue;
        };
        if let Some(r) = list
            .resources
            .iter()
            .find(|r| r.kind == kind_name && !r.name.contains('/'))
        {
            return Some(ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, v, kind_name),
                &r.name,
            ));
        }
    }
    None
}

/// An object's facts, from its JSON.
pub fn policy_facts(kind: PolicyKind, o: &DynamicObject) -> Result<PolicyObject, Refused> {
    use crate::policy_model as m;
    use kinject_k8s::policy as p;
    /// The object's spec as its type (the version is the one watched).
    fn spec<T: serde::de::DeserializeOwned>(o: &DynamicObject) -> Result<T, Refused> {
        let spec = o.data.get("spec").cloned().unwrap_or_default();
        serde_json::from_value(spec).map_err(|e| Refused(format!("cannot read its spec: {e}")))
    }
    let ns = o.namespace().unwrap_or_default();
    let created = o
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(match kind {
        PolicyKind::Server => {
            let s: p::server::ServerSpec = spec(o)?;
            PolicyObject::Server(m::server(&s, o.labels().clone(), created)?)
        }
        PolicyKind::ServerAuthorization => {
            let s: p::authn::ServerAuthorizationSpec = spec(o)?;
            PolicyObject::ServerAuthorization(m::server_authorization(&s, &ns)?)
        }
        PolicyKind::AuthorizationPolicy => {
            let s: p::authn::AuthorizationPolicySpec = spec(o)?;
            PolicyObject::AuthorizationPolicy(m::authorization_policy(&s, &ns)?)
        }
        PolicyKind::MeshTlsAuthentication => {
            let s: p::authn::MeshTLSAuthenticationSpec = spec(o)?;
            PolicyObject::MeshTlsAuthentication(m::mesh_tls_authentication(&s, &ns)?)
        }
        PolicyKind::NetworkAuthentication => {
            let s: p::authn::NetworkAuthenticationSpec = spec(o)?;
            PolicyObject::NetworkAuthentication(m::network_authentication(&s)?)
        }
        PolicyKind::HttpRoute(_) => {
            let s: p::route::HttpRouteSpec = spec(o)?;
            let mut route = m::http_route(&s, &ns, created)?;
            route.linkerd = crate::route_annotations::route_annotations(o.annotations())?;
            PolicyObject::HttpRoute(route)
        }
    })
}

/// Waits for a kind's CRD to be created (a watch on that one CRD's
/// metadata, so policies apply as soon as the CRDs do, not a poll later),
/// then until the API server serves it.
pub(crate) async fn crd_appears(client: &kube::Client, kind: PolicyKind) -> Option<ApiResource> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds = Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", kind.resource()));
    let events = watcher(crds, cfg).default_backoff().applied_objects();
    futures::pin_mut!(events);
    while let Some(ev) = events.next().await {
        match ev {
            Ok(_) => {
                // Created; served once the API server has established it.
                for _ in 0..100 {
                    if let Some(ar) = served(client, kind).await {
                        return Some(ar);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                warn!(resource = kind.resource(), error = %e, "watching for its CRD (retrying)")
            }
        }
    }
    None
}

/// Follows one policy kind: waits until the API server serves it, then
/// watches it for the life of the process.
async fn follow_policy(
    client: kube::Client,
    index: Index,
    kind: PolicyKind,
    synced: Synced,
    first: Option<ApiResource>,
    refused: Gauge<i64>,
) {
    let mut ar = first;
    if ar.is_none() {
        ar = crd_appears(&client, kind).await;
        if let Some(a) = &ar {
            info!(resource = kind.resource(), version = %a.version, "now served; reading it");
            synced.expect(1);
        }
    }
    let Some(ar) = ar else { return };
    let (a, b, c) = (index.clone(), index.clone(), index.clone());
    let (ra, rb) = (refused.clone(), refused);
    let count = |i: &Index| i64::try_from(i.policy().refused().len()).unwrap_or(i64::MAX);
    follow(
        kind.resource(),
        watcher(
            Api::<DynamicObject>::all_with(client, &ar),
            watcher::Config::default(),
        )
        .default_backoff(),
        synced,
        move |o: &DynamicObject| {
            let facts = policy_facts(kind, o);
            if let Err(why) = &facts {
                warn!(resource = kind.resource(), object = %key_of(o), %why,
                      "refused; what refers to it grants nothing");
            }
            a.apply_policy(kind, &key_of(o), facts);
            ra.set(count(&a));
        },
        move |o: &DynamicObject| {
            b.delete_policy(kind, &key_of(o));
            rb.set(count(&b));
        },
        key_of,
        move |keep| c.retain_policy(kind, keep),
    )
    .await;
}

/// Runs the policy kinds' watches until the process ends.
pub async fn run_policy(client: kube::Client, index: Index, synced: Synced, refused: Gauge<i64>) {
    let mut tasks = Vec::new();
    let mut missing = Vec::new();
    for kind in PolicyKind::ALL {
        let ar = served(&client, kind).await;
        match &ar {
            Some(_) => synced.expect(1),
            None => missing.push(kind.resource()),
        }
        tasks.push(follow_policy(
            client.clone(),
            index.clone(),
            kind,
            synced.clone(),
            ar,
            refused.clone(),
        ));
    }
    if !missing.is_empty() {
        info!(
            missing = %missing.join(", "),
            "policy CRDs not installed: each kind is read as soon as its CRD is (kinject install --crds | kubectl apply -f -)"
        );
    }
    // Discovery is done: what it found is now expected.
    synced.mark();
    futures::future::join_all(tasks).await;
}

/// The cluster's policy objects, read once (for `check` and `explain`).
pub struct PolicyObjects {
    /// Every served kind listed and judged as the watches judge them.
    pub set: crate::policy_index::PolicySet,
    /// The kinds whose CRD the API server does not serve.
    pub not_served: Vec<PolicyKind>,
}

/// Reads the cluster's policy objects now (one discovery per kind).
pub async fn policy_snapshot(client: &kube::Client) -> kube::Result<PolicyObjects> {
    let mut set = crate::policy_index::PolicySet::default();
    let mut not_served = Vec::new();
    for kind in PolicyKind::ALL {
        let Some(ar) = served(client, kind).await else {
            not_served.push(kind);
            continue;
        };
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        for o in api.list(&kube::api::ListParams::default()).await?.items {
            set.apply(kind, &key_of(&o), policy_facts(kind, &o));
        }
    }
    Ok(PolicyObjects { set, not_served })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds and versions read here are the CRDs kinject installs:
    /// each kind names a CRD, with its group and kind, and the versions
    /// tried are ones it serves, newest (the storage version) first.
    #[test]
    fn policy_kinds_are_the_installed_crds() {
        let crds = kinject_k8s::policy::crds();
        for kind in PolicyKind::ALL {
            let crd = crds
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(kind.resource()))
                .unwrap_or_else(|| panic!("no CRD {}", kind.resource()));
            let (group, kind_name, versions) = policy_versions(kind);
            assert_eq!(
                (crd.spec.group.as_str(), crd.spec.names.kind.as_str()),
                (group, kind_name)
            );
            let served: Vec<&str> = crd
                .spec
                .versions
                .iter()
                .rev()
                .map(|v| v.name.as_str())
                .collect();
            assert_eq!(
                served[0],
                versions[0],
                "{}: the storage version first",
                kind.resource()
            );
            assert!(
                versions.iter().all(|v| served.contains(v)),
                "{}: {versions:?} within {served:?}",
                kind.resource()
            );
            assert!(crd.spec.versions.last().is_some_and(|v| v.storage));
        }
    }
}
