//! `kinject proxy-injector`: the mutating admission webhook.
//!
//! Thin by design: TLS and HTTP ([`server`]), the AdmissionReview codec
//! ([`review`]), and a handler ([`admission`]) that asks the pure engine
//! (`kinject-inject`) with what the cluster caches (`kinject-k8s`) know.
//! Configuration, trust anchors and the serving certificate are hot-reloaded;
//! the webhook registers itself and keeps its registration true.
#![forbid(unsafe_code)]

pub mod admission;
mod answer_cache;
pub mod keepalive;
pub mod metrics;
pub mod missed;
pub mod review;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use kinject_inject::{Injector, InjectorConfig, Policy};
use kinject_k8s::ClusterView;
use kinject_k8s::events::EventSink;
use kinject_k8s::linkerd_config::{self, LinkerdConfig};
use kinject_k8s::webhook_config::{self, ClientTarget, WebhookConfigSpec};
use kinject_mesh::values::UnknownValuesKey;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use kinject_k8s::ValuesSources;

/// Whether the proxy runs as a native sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeSidecars {
    /// When the API server supports them (≥ 1.29) and the values ask for them.
    Auto,
    /// Never (classic sidecars), whatever the server.
    Never,
}

/// Everything `proxy-injector` is configured with.
#[derive(Clone, Debug)]
pub struct ProxyInjectorConfig {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// PEM the API server verifies the webhook with; default: the serving chain's last certificate.
    pub ca_bundle: Option<PathBuf>,
    /// Values files and `--set*`s (re-read when a file changes).
    pub values: ValuesSources,
    /// Take the base values (and trust roots, unless `trust_anchors` is set)
    /// from a running Linkerd's ConfigMaps in `linkerd_namespace`, watched.
    pub values_from_cluster: bool,
    pub trust_anchors: Option<PathBuf>,
    pub linkerd_namespace: String,
    pub target: ClientTarget,
    pub failure_policy: kinject_mesh::settings::FailurePolicy,
    pub timeout_seconds: i32,
    pub policy: Policy,
    pub native_sidecars: NativeSidecars,
    pub register: bool,
    pub events: bool,
    /// Gzip reused answers for clients that accept it (the API server does).
    pub gzip: bool,
    /// Request-body bytes held at once across all requests
    /// ([`server::BodyBudget`]).
    pub max_body_memory: usize,
    /// How often watched files are re-read.
    pub reload_interval: Duration,
    /// Start without a serving certificate (or trust anchors) and wait, not
    /// ready and not registered, until the files appear (in a cluster: the
    /// Secret identity writes, mounted as an optional volume).
    pub wait_for_cert: bool,
    /// Mirror this Secret (in the control-plane namespace) into the
    /// directory of `tls_cert`, from a watch: no wait for the kubelet's
    /// volume refresh.
    pub cert_secret: Option<String>,
    /// Pods that slipped through: reported always, evicted for repair when
    /// `repair` is set (see [`missed`]).
    pub missed: missed::MissedConfig,
}

/// Repairs and contests of the webhook configuration: metrics, and a Warning
/// Event on the configuration when another writer keeps reverting it.
struct RegistrationReporter {
    metrics: Metrics,
    /// The control-plane namespace (where the Lease and its Events live).
    namespace: String,
    recorder: kube::runtime::events::Recorder,
}

impl RegistrationReporter {
    fn new(client: kube::Client, metrics: Metrics, namespace: String) -> Self {
        let instance = std::env::var("HOSTNAME").ok();
        Self {
            metrics,
            namespace,
            recorder: kube::runtime::events::Recorder::new(
                client,
                kube::runtime::events::Reporter {
                    controller: "kinject-proxy-injector".into(),
                    instance,
                },
            ),
        }
    }
}

impl webhook_config::RegistrationEvents for RegistrationReporter {
    fn repaired(&self, _reason: &str) {
        self.metrics.webhook_repairs.inc();
    }

    fn contested(&self, manager: &str, backoff: Duration) {
        self.metrics.webhook_conflicts.inc();
        let recorder = self.recorder.clone();
        let note = format!(
            "{manager} keeps changing this webhook configuration ({}); kinject backs off for {}s instead of fighting. Stop the other writer, or align its settings with the injector's",
            webhook_config::CONFIG_NAME,
            backoff.as_secs()
        );
        let namespace = self.namespace.clone();
        tokio::spawn(async move {
            // On the injector's Lease (namespaced): API servers before 1.21
            // refuse events.k8s.io Events about cluster-scoped objects.
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("coordination.k8s.io/v1".into()),
                kind: Some("Lease".into()),
                name: Some(kinject_mesh::names::PROXY_INJECTOR_LEASE.into()),
                namespace: Some(namespace),
                ..Default::default()
            };
            let event = kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "WebhookConfigurationContested".into(),
                note: Some(note),
                action: "Repair".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, "cannot publish the contest Event");
            }
        });
    }
}

/// Reports pods that slipped through: the gauge, and a Warning Event on
/// each pod (and another when it is evicted for repair).
struct MissedReporter {
    metrics: Metrics,
    recorder: kube::runtime::events::Recorder,
}

impl MissedReporter {
    fn new(client: kube::Client, metrics: Metrics) -> Self {
        Self {
            metrics,
            recorder: kube::runtime::events::Recorder::new(
                client,
                kube::runtime::events::Reporter {
                    controller: "kinject-proxy-injector".into(),
                    instance: std::env::var("HOSTNAME").ok(),
                },
            ),
        }
    }

    fn event(&self, m: &missed::Missed, reason: &str, note: String) {
        let recorder = self.recorder.clone();
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(m.name.clone()),
            namespace: Some(m.namespace.clone()),
            ..Default::default()
        };
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Inject".into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, "cannot publish the missing-proxy Event");
            }
        });
    }
}

impl missed::MissedReport for MissedReporter {
    fn count(&self, n: usize) {
        self.metrics
            .pods_missing_proxy
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn found(&self, m: &missed::Missed) {
        let fix = match &m.recreated_by {
            Some(owner) => format!(
                "`kubectl rollout restart` its workload (it belongs to {owner}), or run the injector with --repair-missed"
            ),
            None => "delete and recreate it: no controller recreates it".to_string(),
        };
        self.event(
            m,
            "MissingProxy",
            format!(
                "running without the linkerd proxy although it should be meshed ({}): it was created while the injector was unreachable (failurePolicy Ignore) or before its namespace opted in; {fix}",
                m.why
            ),
        );
    }

    fn evicted(&self, m: &missed::Missed) {
        self.metrics.missed_pods_evicted.inc();
        self.event(
            m,
            "EvictedForInjection",
            "evicted (--repair-missed) so that its replacement gets the linkerd proxy".into(),
        );
    }
}

/// Builds the engine from every values source: the cluster's `linkerd-config`
/// (when asked for), the files and the `--set`s; trust anchors from
/// `--trust-anchors`, else the cluster's trust roots, else the values. Any
/// error names its source.
fn build_engine(
    cfg: &ProxyInjectorConfig,
    native_supported: bool,
    cluster: Option<&LinkerdConfig>,
) -> Result<(Injector, Vec<UnknownValuesKey>)> {
    if cfg.values_from_cluster && cluster.is_none() {
        bail!("the cluster's ConfigMaps have not been read yet");
    }
    let base = cluster.filter(|_| cfg.values_from_cluster);
    let loaded = cfg.values.load_over(base, &cfg.linkerd_namespace)?;
    let anchors = kinject_k8s::linkerd_config::LinkerdConfig::trust_anchors(
        read(&cfg.trust_anchors)?,
        cluster,
        &loaded.values.identity_trust_anchors_pem,
    );
    let injector = Injector::new(InjectorConfig {
        values: loaded.values,
        linkerd_namespace: cfg.linkerd_namespace.clone(),
        trust_anchors_pem: anchors,
        created_by: format!("kinject/proxy-injector {}", env!("CARGO_PKG_VERSION")),
        policy: cfg.policy.clone(),
        native_sidecars_supported: native_supported,
    })?;
    Ok((injector, loaded.unknown_keys))
}

/// Rebuilds and swaps the engine when any of its inputs changes; on failure
/// the last good engine stays in force.
#[derive(Clone)]
struct EngineReloader {
    cfg: Arc<ProxyInjectorConfig>,
    native_supported: bool,
    cluster: Option<watch::Receiver<Option<LinkerdConfig>>>,
    engine: Arc<ArcSwap<Injector>>,
    metrics: Metrics,
    /// True once an engine has been built from the configured sources.
    loaded: Arc<watch::Sender<bool>>,
}

impl EngineReloader {
    fn reload(&self) -> Result<()> {
        let cluster = self.cluster.as_ref().map(|rx| rx.borrow().clone());
        let (injector, unknown) = build_engine(
            &self.cfg,
            self.native_supported,
            cluster.as_ref().and_then(|c| c.as_ref()),
        )?;
        // Unknown keys do not stop the injector; they are said once per load.
        for key in &unknown {
            warn!(source = %key.source_name, key = %key.key.path, "{key}");
        }
        self.metrics
            .values_unknown_keys
            .set(i64::try_from(unknown.len()).unwrap_or(i64::MAX));
        self.engine.store(Arc::new(injector));
        self.loaded.send_replace(true);
        Ok(())
    }

    /// Follows the cluster's ConfigMaps.
    fn spawn_cluster_watch(self) {
        let Some(mut rx) = self.cluster.clone() else {
            return;
        };
        tokio::spawn(async move {
            let what = "linkerd_config";
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                if rx.borrow().is_none() {
                    continue;
                }
                match self.reload() {
                    Ok(()) => {
                        info!(
                            configmap = kinject_mesh::names::VALUES_CONFIG_MAP,
                            "values loaded from the cluster"
                        );
                        self.metrics
                            .reloads
                            .get_or_create(&Metrics::file(what))
                            .inc();
                    }
                    // Before the first load this is waiting (for the trust
                    // anchors identity writes, say): INFO, with what it
                    // waits for. After it, a regression: ERROR, counted.
                    Err(e) if !*self.loaded.borrow() => {
                        info!(configmap = kinject_mesh::names::VALUES_CONFIG_MAP, reason = %format!("{e:#}"), "waiting to use the cluster's values (not ready until they load)");
                    }
                    Err(e) => {
                        error!(configmap = kinject_mesh::names::VALUES_CONFIG_MAP, error = %format!("{e:#}"), "cannot use the cluster's values; keeping the last good values");
                        self.metrics
                            .reload_failures
                            .get_or_create(&Metrics::file(what))
                            .inc();
                    }
                }
            }
        });
    }
}

fn read(path: &Option<PathBuf>) -> Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()
}

/// Re-reads `paths` every `interval`; when any content changed, calls `apply`
/// with the new contents. A failure is logged and counted and the last good
/// state stays in force.
/// Re-reads `paths` every `interval` and applies them when they change.
/// `applied` says whether the caller already loaded them: when it did not
/// (a certificate not written yet), the first read is applied even if the
/// files appeared in between, when the caller looked and when this starts.
fn spawn_reloader(
    what: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    metrics: Metrics,
    applied: bool,
    mut apply: impl FnMut(&[Vec<u8>]) -> Result<()> + Send + 'static,
) {
    tokio::spawn(async move {
        let read_all = |paths: &[PathBuf]| -> Vec<Vec<u8>> {
            paths
                .iter()
                .map(|p| std::fs::read(p).unwrap_or_default())
                .collect()
        };
        // Nothing read matches an empty list: not yet applied means apply.
        let mut last = if applied {
            read_all(&paths)
        } else {
            Vec::new()
        };
        let mut tick = tokio::time::interval(interval);
        let mut ever_applied = applied;
        loop {
            tick.tick().await;
            let now = read_all(&paths);
            if now == last {
                continue;
            }
            last = now;
            match apply(&last) {
                Ok(()) => {
                    info!(file = what, "reloaded");
                    ever_applied = true;
                    metrics.reloads.get_or_create(&Metrics::file(what)).inc();
                }
                // Files still being written the first time (identity has
                // not issued the certificate yet): waiting, not failing.
                Err(e) if !ever_applied => {
                    info!(file = what, reason = %format!("{e:#}"), "waiting for the files (not ready until they load)");
                }
                Err(e) => {
                    error!(file = what, error = %format!("{e:#}"), "reload failed; keeping the last good one");
                    metrics
                        .reload_failures
                        .get_or_create(&Metrics::file(what))
                        .inc();
                }
            }
        }
    });
}

struct Ready {
    stopping: kinject_runtime::shutdown::Stopping,
    cluster: ClusterView,
    registered: Arc<AtomicBool>,
    cert_ok: watch::Receiver<bool>,
    values_loaded: watch::Receiver<bool>,
}

impl kinject_runtime::admin::Readiness for Ready {
    fn not_ready(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.stopping.is_draining() {
            out.push("stopping");
        }
        if !self.cluster.is_synced() {
            out.push("caches not synced");
        }
        if !self.registered.load(Ordering::Acquire) {
            out.push("webhook not registered");
        }
        if !*self.cert_ok.borrow() {
            out.push("serving certificate not loaded");
        }
        if !*self.values_loaded.borrow() {
            out.push("values not loaded");
        }
        out
    }
}

fn ca_bundle(cfg: &ProxyInjectorConfig) -> Result<Vec<u8>> {
    match &cfg.ca_bundle {
        Some(p) => {
            std::fs::read(p).with_context(|| format!("cannot read CA bundle {}", p.display()))
        }
        None => std::fs::read(&cfg.tls_cert)
            .with_context(|| format!("cannot read {}", cfg.tls_cert.display())),
    }
}

/// Runs the webhook until the runtime says stop (SIGINT/SIGTERM, after
/// its drain).
pub async fn run(rt: &kinject_runtime::Runtime, cfg: ProxyInjectorConfig) -> Result<()> {
    let stopping = rt.stopping().clone();
    let mut registry = Registry::with_prefix("kinject_proxy_injector");
    let metrics = Metrics::register(&mut registry);

    check_inputs(&cfg)?;
    let (resolver, cert_now) = serving_certificate(&cfg, &metrics)?;
    let (cert_tx, cert_rx) = watch::channel(cert_now);
    let (bundle, bundle_applied) = match ca_bundle(&cfg) {
        Ok(b) => (b, true),
        Err(_) if cfg.wait_for_cert => (Vec::new(), false),
        Err(e) => return Err(e),
    };

    let client = rt.client().await?;
    if let Some(secret) = &cfg.cert_secret {
        spawn_certificate_sync(&cfg, &client, secret);
    }
    let version = kinject_k8s::ServerVersion::detect(&client)
        .await
        .context("cannot reach the Kubernetes API server")?;
    let native_supported =
        cfg.native_sidecars == NativeSidecars::Auto && version.supports_native_sidecars();
    info!(%version, native_sidecars = native_supported, "connected to the API server");

    let (reloader, loaded_rx, engine_applied) =
        EngineReloader::start(&cfg, &client, &metrics, native_supported)?;
    let engine = reloader.engine.clone();

    let cluster = ClusterView::spawn(client.clone());
    let events = if cfg.events {
        let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "kinject".into());
        EventSink::spawn(client.clone(), instance)
    } else {
        EventSink::disabled()
    };

    let registered = Arc::new(AtomicBool::new(!cfg.register));
    let spec = WebhookConfigSpec {
        control_plane_namespace: cfg.linkerd_namespace.clone(),
        target: cfg.target.clone(),
        ca_bundle: bundle,
        failure_policy: cfg.failure_policy,
        timeout_seconds: cfg.timeout_seconds,
        excluded_namespaces: cfg.policy.excluded_namespaces.clone(),
        include_services: true,
        match_conditions: version.supports_match_conditions(),
    };
    let (spec_tx, spec_rx) = watch::channel(spec);
    if cfg.register {
        spawn_registration(
            &cfg,
            &client,
            &metrics,
            Registration {
                engine: engine.clone(),
                cluster: cluster.clone(),
                spec: spec_rx,
                values_loaded: loaded_rx.clone(),
                cert_ok: cert_rx.clone(),
                registered: registered.clone(),
                stopping: stopping.clone(),
            },
        );
    }

    // Hot reloads: engine inputs, serving certificate, CA bundle.
    spawn_engine_reloader(&cfg, &metrics, reloader.clone(), engine_applied);
    spawn_cert_reloader(&cfg, &metrics, resolver.clone(), cert_now, cert_tx);
    spawn_bundle_reloader(&cfg, &metrics, bundle_applied, spec_tx);

    let tls_config = Arc::new(tls::server_config(resolver)?);
    let connections = metrics.connections.clone();
    let body_budget =
        server::BodyBudget::new(cfg.max_body_memory, metrics.request_body_bytes.clone());
    let admission = Arc::new(
        admission::Admission::new(engine, cluster.clone(), metrics, events).with_gzip(cfg.gzip),
    );
    let https = kinject_runtime::admin::bind(cfg.addr, "webhook").await?;
    let ready = Ready {
        stopping: stopping.clone(),
        cluster,
        registered,
        cert_ok: cert_rx,
        values_loaded: loaded_rx,
    };
    let admin_task = rt.serve_admin(cfg.admin_addr, registry, ready).await?;
    info!(addr = %cfg.addr, admin = %cfg.admin_addr, "serving");

    let (stop_tx, stop_rx) = watch::channel(false);
    let https_task = tokio::spawn(server::serve_tls(
        https,
        tls_config,
        server::admission_router(admission, body_budget).layer(
            axum::middleware::from_fn_with_state(stopping.clone(), server::close_while_draining),
        ),
        connections,
        stop_rx,
    ));

    // Draining: unready (above) and every HTTP/1.1 answer closes its
    // connection, so the API server's keep-alive pool moves to a replica
    // that stays; then stop accepting and finish what is in flight.
    stopping.stopped().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    if let Err(e) = https_task.await {
        warn!(error = %e, "webhook server task failed");
    }
    let _ = admin_task.await;
    Ok(())
}

impl EngineReloader {
    /// The engine, loaded now from files or (from the cluster) as soon as the
    /// values arrive; whether it loaded is the receiver, and the flag says
    /// whether the files loaded already.
    fn start(
        cfg: &ProxyInjectorConfig,
        client: &kube::Client,
        metrics: &Metrics,
        native_supported: bool,
    ) -> Result<(Self, watch::Receiver<bool>, bool)> {
        // Until values from the cluster load, the engine holds the defaults but
        // the injector is neither ready nor registered.
        let (loaded_tx, loaded_rx) = watch::channel(false);
        let reloader = EngineReloader {
            cfg: Arc::new(cfg.clone()),
            native_supported,
            cluster: cfg
                .values_from_cluster
                .then(|| linkerd_config::watch(client.clone(), cfg.linkerd_namespace.clone())),
            engine: Arc::new(ArcSwap::from_pointee(Injector::new(
                InjectorConfig::default(),
            )?)),
            metrics: metrics.clone(),
            loaded: Arc::new(loaded_tx),
        };
        let mut engine_applied = true;
        if cfg.values_from_cluster {
            info!(namespace = %cfg.linkerd_namespace, "waiting for the values in ConfigMap {}", kinject_mesh::names::VALUES_CONFIG_MAP);
            reloader.clone().spawn_cluster_watch();
        } else if let Err(e) = reloader.reload() {
            // With --wait-for-cert the trust anchors may be the certificate's
            // bundle, which has not been written yet: the file reloader retries.
            if !cfg.wait_for_cert {
                return Err(e);
            }
            engine_applied = false;
            info!(reason = %format!("{e:#}"), "waiting for the engine's inputs (not ready until they load)");
        }
        Ok((reloader, loaded_rx, engine_applied))
    }
}

/// Fails fast, before binding anything, on bad files. Values from the
/// cluster are checked once they are read.
fn check_inputs(cfg: &ProxyInjectorConfig) -> Result<()> {
    cfg.values.check_syntax()?;
    if cfg.wait_for_cert && !cfg.values_from_cluster {
        // The trust anchors may not exist yet; the values must be good now.
        cfg.values.load(None)?;
    } else if !cfg.values_from_cluster {
        build_engine(cfg, false, None)?;
    }
    Ok(())
}

/// Writes the serving certificate's Secret into the files the server reads,
/// as soon as identity changes it (no wait for the kubelet's refresh).
fn spawn_certificate_sync(cfg: &ProxyInjectorConfig, client: &kube::Client, secret: &str) {
    let dir = cfg
        .tls_cert
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    tokio::spawn(kinject_k8s::secret_files::sync(
        client.clone(),
        cfg.linkerd_namespace.clone(),
        secret.to_string(),
        dir,
    ));
}

/// The serving certificate now, or (with `--wait-for-cert`) a resolver that
/// answers once identity has written it.
fn serving_certificate(
    cfg: &ProxyInjectorConfig,
    metrics: &Metrics,
) -> Result<(Arc<tls::ReloadingResolver>, bool)> {
    match tls::ReloadingResolver::new(cfg.tls_cert.clone(), cfg.tls_key.clone()) {
        Ok((resolver, expiry)) => {
            metrics.serving_cert_expiry.set(expiry);
            Ok((resolver, true))
        }
        Err(e) if cfg.wait_for_cert => {
            info!(reason = %format!("{e:#}"), "waiting for the serving certificate (not ready until it appears)");
            Ok((
                tls::ReloadingResolver::waiting(cfg.tls_cert.clone(), cfg.tls_key.clone()),
                false,
            ))
        }
        Err(e) => Err(e),
    }
}

/// What the registration task needs besides the configuration.
struct Registration {
    engine: Arc<ArcSwap<Injector>>,
    cluster: ClusterView,
    spec: watch::Receiver<WebhookConfigSpec>,
    values_loaded: watch::Receiver<bool>,
    cert_ok: watch::Receiver<bool>,
    registered: Arc<AtomicBool>,
    stopping: kinject_runtime::shutdown::Stopping,
}

/// One replica at a time writes the webhook configuration; newer, different
/// settings take over at once (a rolling upgrade). The Lease's holder also
/// reports (and optionally repairs) the pods that slipped through.
fn spawn_registration(
    cfg: &ProxyInjectorConfig,
    client: &kube::Client,
    metrics: &Metrics,
    r: Registration,
) {
    let (leader_tx, leader_rx) = watch::channel(false);
    tokio::spawn(missed::watch_pods(
        client.clone(),
        r.engine,
        r.cluster,
        leader_rx.clone(),
        cfg.missed.clone(),
        MissedReporter::new(client.clone(), metrics.clone()),
    ));
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let lease_cfg = kinject_runtime::lease::LeaseConfig::new(
        &cfg.linkerd_namespace,
        kinject_mesh::names::PROXY_INJECTOR_LEASE,
        kinject_runtime::lease::holder_name("kinject-proxy-injector"),
    )
    .with_settings(kinject_runtime::lease::Settings {
        hash: r.spec.borrow().settings_hash(),
        epoch: started_ms,
    });
    let client = client.clone();
    let reporter = RegistrationReporter::new(
        client.clone(),
        metrics.clone(),
        cfg.linkerd_namespace.clone(),
    );
    let Registration {
        spec,
        mut values_loaded,
        mut cert_ok,
        registered,
        stopping,
        ..
    } = r;
    tokio::spawn(async move {
        // Never register an injector that would inject with the wrong
        // values, or that the API server could not verify.
        if values_loaded.wait_for(|ok| *ok).await.is_err()
            || cert_ok.wait_for(|ok| *ok).await.is_err()
        {
            return;
        }
        // Only a replica able to serve campaigns: a new replica that never
        // gets its values or certificate (a bad upgrade) must not take the
        // Lease from a working one. A stopping replica gives the Lease up at
        // once: its successor registers and reports without waiting for the
        // Lease to expire.
        tokio::spawn(kinject_runtime::lease::hold_until_draining(
            client.clone(),
            lease_cfg.clone(),
            leader_tx,
            stopping,
        ));
        webhook_config::keep_registered(
            client,
            spec,
            leader_rx,
            Some(lease_cfg),
            registered,
            webhook_config::RepairBudget::default(),
            reporter,
        )
        .await
    });
}

/// Values files and trust anchors: a new engine when they change.
fn spawn_engine_reloader(
    cfg: &ProxyInjectorConfig,
    metrics: &Metrics,
    reloader: EngineReloader,
    applied: bool,
) {
    let paths: Vec<PathBuf> = cfg
        .values
        .watched_files()
        .into_iter()
        .chain(cfg.trust_anchors.iter().cloned())
        .collect();
    if paths.is_empty() {
        return;
    }
    spawn_reloader(
        "engine",
        paths,
        cfg.reload_interval,
        metrics.clone(),
        applied,
        move |_| reloader.reload(),
    );
}

/// The serving certificate and key: swapped in without dropping connections.
fn spawn_cert_reloader(
    cfg: &ProxyInjectorConfig,
    metrics: &Metrics,
    resolver: Arc<tls::ReloadingResolver>,
    applied: bool,
    cert_ok: watch::Sender<bool>,
) {
    let m = metrics.clone();
    spawn_reloader(
        "serving_cert",
        vec![cfg.tls_cert.clone(), cfg.tls_key.clone()],
        cfg.reload_interval,
        metrics.clone(),
        applied,
        move |_| {
            let expiry = resolver.reload()?;
            m.serving_cert_expiry.set(expiry);
            cert_ok.send_replace(true);
            Ok(())
        },
    );
}

/// The CA bundle the API server verifies us with: into the webhook
/// configuration's spec (the registration task writes it).
fn spawn_bundle_reloader(
    cfg: &ProxyInjectorConfig,
    metrics: &Metrics,
    applied: bool,
    spec: watch::Sender<WebhookConfigSpec>,
) {
    let cfg2 = cfg.clone();
    let path = cfg
        .ca_bundle
        .clone()
        .unwrap_or_else(|| cfg.tls_cert.clone());
    spawn_reloader(
        "ca_bundle",
        vec![path],
        cfg.reload_interval,
        metrics.clone(),
        applied,
        move |_| {
            let bundle = ca_bundle(&cfg2)?;
            spec.send_modify(|s| s.ca_bundle = bundle);
            Ok(())
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files that appear between the caller's failed load and the
    /// reloader's start must still be applied (seen in a cluster: the
    /// certificate Secret's files were written a few milliseconds after the
    /// injector looked, and it stayed unready).
    #[tokio::test]
    async fn files_present_at_start_are_applied_when_the_caller_had_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tls.crt");
        std::fs::write(&path, "CERT").expect("write");
        let mut reg = Registry::default();
        let metrics = Metrics::register(&mut reg);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        spawn_reloader(
            "test",
            vec![path.clone()],
            Duration::from_millis(20),
            metrics.clone(),
            false,
            move |contents| {
                let _ = tx.send(contents[0].clone());
                Ok(())
            },
        );
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("applied without any change to the file")
            .expect("a value");
        assert_eq!(got, b"CERT");

        // Already applied by the caller: nothing until the file changes.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        spawn_reloader(
            "test",
            vec![path.clone()],
            Duration::from_millis(20),
            metrics,
            true,
            move |contents| {
                let _ = tx.send(contents[0].clone());
                Ok(())
            },
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), rx.recv())
                .await
                .is_err()
        );
        std::fs::write(&path, "NEW").expect("write");
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("a change is applied")
            .expect("a value");
        assert_eq!(got, b"NEW");
    }
}
