//! A running Linkerd's configuration: ConfigMap `linkerd-config` (key
//! `values`, the installation's full Helm values) and ConfigMap
//! `linkerd-identity-trust-roots` (key `ca-bundle.crt`), in the control-plane
//! namespace. `kinject inject --values-from-cluster` reads them once;
//! `kinject proxy-injector --values-from-cluster` watches them (one watch per
//! ConfigMap, never polling) so it can run beside an existing Linkerd with
//! nothing mounted.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tracing::warn;

use kinject_mesh::names::{TRUST_ROOTS_CONFIG_MAP, TRUST_ROOTS_KEY, VALUES_CONFIG_MAP, VALUES_KEY};

/// What the cluster holds, as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkerdConfig {
    /// `linkerd-config`: `None` when the ConfigMap does not exist;
    /// `Some(Err)` when it exists without a `values` key.
    pub values: Option<Result<String, String>>,
    /// `linkerd-identity-trust-roots`'s bundle; `None` when absent.
    pub trust_roots: Option<String>,
}

impl LinkerdConfig {
    /// The trust anchors injected proxies get, by one rule for every front
    /// end and the injector: `explicit` (a file the user named), else the
    /// cluster's `linkerd-identity-trust-roots`, else the values'
    /// `identityTrustAnchorsPEM` (empty when there are none).
    pub fn trust_anchors(
        explicit: Option<String>,
        cluster: Option<&LinkerdConfig>,
        values_pem: &str,
    ) -> String {
        explicit
            .or_else(|| {
                cluster
                    .and_then(|c| c.trust_roots.clone())
                    .filter(|roots| !roots.trim().is_empty())
            })
            .unwrap_or_else(|| values_pem.to_string())
    }
}

/// How messages name the values document (`ConfigMap linkerd/linkerd-config key values`).
pub fn values_source_name(namespace: &str) -> String {
    format!("ConfigMap {namespace}/{VALUES_CONFIG_MAP} key {VALUES_KEY}")
}

/// Why there are no values to use, with what to do next.
pub fn missing_message(namespace: &str) -> String {
    format!(
        "ConfigMap {namespace}/{VALUES_CONFIG_MAP} not found: is Linkerd installed in namespace \
         {namespace:?}? Name its namespace with -l, or drop --values-from-cluster"
    )
}

fn values_of(namespace: &str, cm: &ConfigMap) -> Result<String, String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(VALUES_KEY))
        .cloned()
        .ok_or_else(|| {
            format!("ConfigMap {namespace}/{VALUES_CONFIG_MAP} has no {VALUES_KEY:?} key")
        })
}

fn trust_roots_of(cm: &ConfigMap) -> Option<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(TRUST_ROOTS_KEY))
        .filter(|s| !s.trim().is_empty())
        .cloned()
}

/// Reads both ConfigMaps once.
pub async fn fetch(client: &kube::Client, namespace: &str) -> anyhow::Result<LinkerdConfig> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let get = |name: &'static str| {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read ConfigMap {namespace}/{name}: {e}"))
        }
    };
    let values = get(VALUES_CONFIG_MAP)
        .await?
        .map(|cm| values_of(namespace, &cm));
    let trust_roots = get(TRUST_ROOTS_CONFIG_MAP)
        .await?
        .as_ref()
        .and_then(trust_roots_of);
    Ok(LinkerdConfig {
        values,
        trust_roots,
    })
}

/// Watches both ConfigMaps; the receiver holds `None` until both watches
/// have listed once, then the latest [`LinkerdConfig`].
pub fn watch(client: kube::Client, namespace: String) -> watch::Receiver<Option<LinkerdConfig>> {
    let (tx, rx) = watch::channel(None);
    let (values_tx, mut values_rx) = watch::channel(None::<Option<ConfigMap>>);
    let (roots_tx, mut roots_rx) = watch::channel(None::<Option<ConfigMap>>);
    tokio::spawn(watch_one(
        client.clone(),
        namespace.clone(),
        VALUES_CONFIG_MAP,
        values_tx,
    ));
    tokio::spawn(watch_one(
        client,
        namespace.clone(),
        TRUST_ROOTS_CONFIG_MAP,
        roots_tx,
    ));
    tokio::spawn(async move {
        loop {
            let values = values_rx.borrow_and_update().clone();
            let roots = roots_rx.borrow_and_update().clone();
            if let (Some(values), Some(roots)) = (values, roots) {
                let cfg = LinkerdConfig {
                    values: values.as_ref().map(|cm| values_of(&namespace, cm)),
                    trust_roots: roots.as_ref().and_then(trust_roots_of),
                };
                tx.send_if_modified(|cur| {
                    let changed = cur.as_ref() != Some(&cfg);
                    if changed {
                        *cur = Some(cfg);
                    }
                    changed
                });
            }
            tokio::select! {
                r = values_rx.changed() => if r.is_err() { return },
                r = roots_rx.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}

/// One ConfigMap by name: `Some(None)` once listed and absent, `Some(Some)`
/// when present.
async fn watch_one(
    client: kube::Client,
    namespace: String,
    name: &'static str,
    tx: watch::Sender<Option<Option<ConfigMap>>>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    // What the current (re)list has seen so far.
    let mut listing: Option<ConfigMap> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = None,
            Ok(watcher::Event::InitApply(cm)) => listing = Some(cm),
            Ok(watcher::Event::InitDone) => {
                let _ = tx.send(Some(listing.take()));
            }
            Ok(watcher::Event::Apply(cm)) => {
                let _ = tx.send(Some(Some(cm)));
            }
            Ok(watcher::Event::Delete(_)) => {
                let _ = tx.send(Some(None));
            }
            Err(e) => {
                warn!(configmap = name, namespace = %namespace, error = %e, "watch failed; retrying")
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
