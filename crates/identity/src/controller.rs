//! The identity controller: keeps the trust root (persisted, never replaced
//! behind the user's back), the trust bundle ConfigMaps, and one TLS Secret per
//! meshed workload, true.
//!
//! Meshed pods are found by a metadata-only watch on pods labelled
//! `linkerd.io/control-plane-ns=<ns>` (the injector adds it); the owner comes
//! from the `linkerd.io/proxy-<kind>` label the injector also adds, so the CA
//! resolves owners exactly as the injector did. Workload Secrets are owned by
//! the workload: the garbage collector deletes them with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::ca::{self, Ca};
use crate::issuer::CurrentCa;
use crate::workloads::{MANAGED_LABEL, reconcile};
use kinject_mesh::names::{ISSUER_SECRET, TRUST_ROOTS_CONFIG_MAP};

pub use crate::config::{IdentityConfig, IdentityMetrics, TRUST_BUNDLE, TRUST_BUNDLE_KEY};

/// The CA described by the cluster's objects now (the issuer Secret and the
/// trust-roots ConfigMap); kinject's own CA is generated and stored when the
/// scheme allows it and the Secret is missing. `Ok(None)`: not there yet.
async fn load_from_cluster(client: &kube::Client, cfg: &IdentityConfig) -> Result<Option<Ca>> {
    let secrets = Api::<Secret>::namespaced(client.clone(), &cfg.namespace);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &cfg.namespace);
    loop {
        let now = OffsetDateTime::now_utc();
        let secret = secrets.get_opt(ISSUER_SECRET).await?;
        let roots = config_maps.get_opt(TRUST_ROOTS_CONFIG_MAP).await?;
        if secret.is_some() || !cfg.issuer_scheme.generates() {
            return Ok(crate::issuer::ca_from_objects(
                &cfg.namespace,
                cfg.issuer_scheme,
                secret.as_ref(),
                roots.as_ref(),
                now,
            )?);
        }
        let root = ca::generate_root("root.linkerd.cluster.local", now, cfg.root_lifetime)?;
        let issuer = Ca::new_issuer(&root, now, cfg.issuer_lifetime)?;
        let data: BTreeMap<String, ByteString> = [
            ("ca.crt", root.cert_pem.as_bytes()),
            ("ca.key", root.key_pem.as_bytes()),
            ("crt.pem", issuer.cert_pem.as_bytes()),
            ("key.pem", issuer.key_pem.as_bytes()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
        .collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(ISSUER_SECRET.into()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => info!(namespace = %cfg.namespace, "generated and stored a new trust root"),
            // Another replica won the race: use its root.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("cannot store the trust root"),
        }
    }
}

/// Keeps `tx` on the CA the cluster describes: loads it at start (an error
/// then is fatal: there is nothing good to keep), then reloads on every
/// change of the issuer Secret or the trust-roots ConfigMap (watches, no
/// polling). A broken update keeps the last good CA, loudly. Operator files
/// (`provided`) are loaded once.
pub async fn keep_ca_current(
    client: kube::Client,
    cfg: IdentityConfig,
    tx: tokio::sync::watch::Sender<Option<Arc<Ca>>>,
    failures: Counter,
) -> Result<()> {
    if let Some((anchors, issuer)) = &cfg.provided {
        let ca = Ca::load(anchors, issuer, OffsetDateTime::now_utc())
            .context("the provided trust anchors and issuer")?;
        tx.send_replace(Some(Arc::new(ca)));
        std::future::pending::<()>().await;
    }
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let secret_events = watcher(
        Api::<Secret>::namespaced(client.clone(), &cfg.namespace),
        by_name(ISSUER_SECRET),
    )
    .default_backoff()
    .map(|e| e.map(|_| ()));
    let roots_events = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &cfg.namespace),
        by_name(TRUST_ROOTS_CONFIG_MAP),
    )
    .default_backoff()
    .map(|e| e.map(|_| ()));
    let events = futures::stream::select(secret_events, roots_events);
    futures::pin_mut!(events);
    let mut waiting_said = false;
    let mut last_error = String::new();
    // The first pass runs before any event.
    let mut event: Option<Result<(), watcher::Error>> = Some(Ok(()));
    while let Some(ev) = event {
        if let Err(e) = ev {
            warn!(error = %e, "issuer watch error (retrying)");
        } else {
            match load_from_cluster(&client, &cfg).await {
                Ok(Some(ca)) => {
                    last_error.clear();
                    let changed = tx
                        .borrow()
                        .as_ref()
                        .is_none_or(|cur| !crate::issuer::same(cur, &ca));
                    if changed {
                        info!(
                            issuer_not_after = %ca.issuer_not_after,
                            trust_anchors = ca.anchors_der().len(),
                            "issuer loaded"
                        );
                        tx.send_replace(Some(Arc::new(ca)));
                    }
                }
                Ok(None) => {
                    if !waiting_said {
                        info!(
                            secret = %format!("{}/{ISSUER_SECRET}", cfg.namespace),
                            scheme = cfg.issuer_scheme.as_str(),
                            "waiting for the issuer Secret (not ready until it exists)"
                        );
                        waiting_said = true;
                    }
                }
                Err(e) if tx.borrow().is_none() && !is_transient(&e) => return Err(e),
                Err(e) => {
                    failures.inc();
                    let e = format!("{e:#}");
                    if e != last_error {
                        tracing::error!(error = %e, "cannot use the updated issuer or trust anchors; keeping the last good ones");
                        last_error = e;
                    }
                }
            }
        }
        event = events.next().await;
    }
    Ok(())
}

/// API errors (the server restarting, a timeout) are retried, never fatal.
fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<kube::Error>().is_some()
}

struct Ready {
    synced: Arc<AtomicBool>,
    ca: tokio::sync::watch::Receiver<Option<Arc<Ca>>>,
    stopping: kinject_runtime::shutdown::Stopping,
}

impl kinject_runtime::admin::Readiness for Ready {
    fn not_ready(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.stopping.is_draining() {
            out.push("stopping");
        }
        if !self.synced.load(Ordering::Acquire) {
            out.push("caches not synced");
        }
        match self.ca.borrow().as_ref() {
            None => out.push("no issuer yet"),
            Some(ca) if OffsetDateTime::now_utc() >= ca.issuer_not_after => {
                out.push("issuer expired")
            }
            Some(_) => {}
        }
        out
    }
}

fn set_expiry_gauges(metrics: &IdentityMetrics, ca: &Ca) {
    metrics
        .issuer_expiry
        .set(ca.issuer_not_after.unix_timestamp());
    // The first anchor to expire bounds the bundle.
    if let Some(root_not_after) = ca
        .anchors_der()
        .iter()
        .filter_map(|d| ca::validity(d).map(|(_, na)| na))
        .min()
    {
        metrics.root_expiry.set(root_not_after.unix_timestamp());
    }
}

/// Runs until the runtime says stop: then the Certify server finishes its
/// in-flight calls and the Lease is released.
pub async fn run(
    rt: &kinject_runtime::Runtime,
    client: kube::Client,
    cfg: IdentityConfig,
) -> Result<()> {
    let stopping = rt.stopping().clone();
    let mut registry = Registry::with_prefix("kinject_identity");
    let metrics = IdentityMetrics::register(&mut registry);
    let (ca_tx, mut ca_rx) = tokio::sync::watch::channel(None);
    let mut source = tokio::spawn(keep_ca_current(
        client.clone(),
        cfg.clone(),
        ca_tx,
        metrics.issuer_reload_failures.clone(),
    ));
    let certify_metrics = cfg
        .grpc_addr
        .map(|_| crate::grpc::CertifyMetrics::register(&mut registry));
    let synced = Arc::new(AtomicBool::new(false));
    let admin_task = match cfg.admin_addr {
        Some(addr) => {
            let ready = Ready {
                synced: synced.clone(),
                ca: ca_rx.clone(),
                stopping: stopping.clone(),
            };
            Some(rt.serve_admin(addr, registry, ready).await?)
        }
        None => None,
    };
    // Nothing is issued before the first good CA. The source ending first
    // (a broken Secret at start) is the error to report.
    let source_ended = |r: Result<Result<()>, tokio::task::JoinError>| match r {
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Err(anyhow::anyhow!("the issuer source ended")),
        Err(e) => Err(anyhow::anyhow!("the issuer source failed: {e}")),
    };
    let first = tokio::select! {
        r = ca_rx.wait_for(Option::is_some) => r.ok().and_then(|c| c.clone()),
        r = &mut source => return source_ended(r),
        _ = stopping.stopped() => return Ok(()),
    };
    let Some(first) = first else {
        return source_ended(source.await);
    };
    info!(issuer_not_after = %first.issuer_not_after, "CA loaded");
    set_expiry_gauges(&metrics, &first);
    let current: CurrentCa = Arc::new(arc_swap::ArcSwap::new(first));
    let changed = Arc::new(Notify::new());
    tokio::spawn(follow_ca(
        ca_rx.clone(),
        current.clone(),
        changed.clone(),
        metrics.clone(),
    ));
    let certify_task = match (cfg.grpc_addr, certify_metrics) {
        (Some(addr), Some(m)) => Some(serve_certify(addr, &client, &cfg, &current, m, &stopping)),
        _ => None,
    };

    let (pods, secrets) = watch_meshed(&client, &cfg.namespace, &changed);
    tokio::select! {
        r = async { pods.wait_until_ready().await?; secrets.wait_until_ready().await } => r?,
        _ = stopping.stopped() => return Ok(()),
    }
    synced.store(true, Ordering::Release);
    info!("caches synced");
    let lease = kinject_runtime::lease::LeaseConfig::new(
        &cfg.namespace,
        kinject_mesh::names::IDENTITY_LEASE,
        cfg.holder.clone(),
    );
    // Draining: no new writes, and the Lease goes to a successor at once;
    // Certify keeps answering until the stop.
    let (leader, holding) = rt.lease(&client, lease);
    let issuing = Issuing {
        client: &client,
        cfg: &cfg,
        metrics: &metrics,
        pods: &pods,
        secrets: &secrets,
    };
    tokio::select! {
        () = issuing.reconcile_while_leading(&current, &changed, &leader) => {}
        _ = stopping.draining() => {}
    }
    let _ = holding.await;
    stopping.stopped().await;
    if let Some(t) = certify_task {
        let _ = t.await;
    }
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    info!("stopped");
    Ok(())
}

/// Every later good CA is swapped in whole, and a reconcile pass re-issues
/// what the old issuer signed.
async fn follow_ca(
    mut ca_rx: tokio::sync::watch::Receiver<Option<Arc<Ca>>>,
    current: CurrentCa,
    changed: Arc<Notify>,
    metrics: IdentityMetrics,
) {
    while ca_rx.changed().await.is_ok() {
        let Some(ca) = ca_rx.borrow_and_update().clone() else {
            continue;
        };
        set_expiry_gauges(&metrics, &ca);
        current.store(ca);
        changed.notify_one();
    }
}

fn serve_certify(
    addr: std::net::SocketAddr,
    client: &kube::Client,
    cfg: &IdentityConfig,
    current: &CurrentCa,
    metrics: crate::grpc::CertifyMetrics,
    stopping: &kinject_runtime::shutdown::Stopping,
) -> tokio::task::JoinHandle<()> {
    let service = crate::grpc::CertifyService::new(
        client.clone(),
        current.clone(),
        crate::grpc::CertifyConfig {
            control_namespace: cfg.namespace.clone(),
            trust_domain: cfg.trust_domain.clone(),
            lifetime: cfg.proxy_lifetime,
        },
        metrics,
    );
    let plaintext = cfg.grpc_plaintext;
    let stopping = stopping.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::grpc::serve(addr, service, plaintext, stopping).await {
            tracing::error!(error = %format!("{e:#}"), "the Certify server stopped");
        }
    })
}

/// Caches of the meshed pods (names and labels only) and of the Secrets
/// this controller wrote; any change to either wakes `changed`.
fn watch_meshed(
    client: &kube::Client,
    control_ns: &str,
    changed: &Arc<Notify>,
) -> (Store<PartialObjectMeta<Pod>>, Store<Secret>) {
    let (pods, pod_writer) = reflector::store::<PartialObjectMeta<Pod>>();
    let (secrets, secret_writer) = reflector::store::<Secret>();
    let selector = format!("linkerd.io/control-plane-ns={}", control_ns);
    let pod_stream = watcher(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    // Only names and labels are read: keep no more of each pod (memory
    // grows with the cluster's pods).
    .modify(|p| {
        p.metadata.managed_fields = None;
        p.metadata.annotations = None;
    })
    .reflect(pod_writer)
    .touched_objects();
    let secret_stream = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
    )
    .default_backoff()
    .modify(|s| s.metadata.managed_fields = None)
    .reflect(secret_writer)
    .touched_objects();
    for (stream, what) in [
        (pod_stream.map(|r| r.map(|_| ())).boxed(), "pods"),
        (secret_stream.map(|r| r.map(|_| ())).boxed(), "secrets"),
    ] {
        let changed = changed.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(()) => changed.notify_one(),
                    Err(e) => warn!(resource = what, error = %e, "watch error (retrying)"),
                }
            }
        });
    }
    (pods, secrets)
}

/// What a reconcile pass reads and writes with.
struct Issuing<'a> {
    client: &'a kube::Client,
    cfg: &'a IdentityConfig,
    metrics: &'a IdentityMetrics,
    pods: &'a Store<PartialObjectMeta<Pod>>,
    secrets: &'a Store<Secret>,
}

impl Issuing<'_> {
    /// Reconciles on every change (and every resync) while this replica
    /// holds the Lease; never returns.
    async fn reconcile_while_leading(
        &self,
        current: &CurrentCa,
        changed: &Notify,
        leader: &tokio::sync::watch::Receiver<bool>,
    ) {
        let Issuing {
            client,
            cfg,
            metrics,
            pods,
            secrets,
        } = *self;
        loop {
            let ca = current.load_full();
            if !*leader.borrow() {
                // Another replica holds the lease; stay warm and re-check soon.
            } else if OffsetDateTime::now_utc() >= ca.issuer_not_after {
                // Issuing from an expired issuer would hand out certificates no
                // peer accepts: refuse, loudly, until a new issuer is provided.
                tracing::error!(expired_at = %ca.issuer_not_after, "the issuer has expired; not issuing (update Secret linkerd-identity-issuer)");
                metrics.failures.inc();
            } else if let Err(e) = reconcile(client, cfg, &ca, metrics, pods, secrets).await {
                metrics.failures.inc();
                warn!(error = %format!("{e:#}"), "reconcile failed (retrying)");
            }
            tokio::select! {
                _ = changed.notified() => {
                    // Coalesce bursts (a Deployment scaling up) into one pass.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ = tokio::time::sleep(if *leader.borrow() { cfg.resync } else { Duration::from_secs(1) }) => {}
            }
        }
    }
}
