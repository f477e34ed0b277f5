//! The watches that feed the [`Index`]: one per kind for the whole process,
//! however many proxies are streaming (kube-rs watchers; never a poll, never
//! one watch per client). Objects are reduced to their facts (`model.rs`) as
//! they arrive, so no full object is kept.
//!
//! - meshed pods (label `linkerd.io/control-plane-ns=<ns>`): unmeshed pods
//!   need nothing from kinject (their endpoints simply carry no identity);
//! - Services, EndpointSlices (`discovery.k8s.io/v1`, or `v1beta1` on
//!   Kubernetes 1.20, which serves only that);
//! - namespaces, metadata only (their default-inbound-policy annotation).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::index::Index;
use crate::model::{self, ObjKey};

/// How many of the four kinds have finished their first list.
#[derive(Clone, Default)]
pub struct Synced(Arc<AtomicUsize>);

impl Synced {
    pub const KINDS: usize = 4;
    pub fn all(&self) -> bool {
        self.0.load(Ordering::Acquire) >= Self::KINDS
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
                    synced.0.fetch_add(1, Ordering::AcqRel);
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
) {
    let cfg = watcher::Config::default();
    let pods = {
        let index = index.clone();
        let index2 = index.clone();
        let index3 = index.clone();
        let ns = control_ns.clone();
        let selector = format!(
            "{}={control_ns}",
            kinject_inject::annotations::CONTROL_PLANE_NS_LABEL
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
        follow(
            "services",
            watcher(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff(),
            synced.clone(),
            move |s: &Service| a.apply_service(key_of(s), model::service_info(s)),
            move |s: &Service| b.delete_service(&key_of(s)),
            key_of,
            move |keep| c.retain_services(keep),
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
