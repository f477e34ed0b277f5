//! How a kinject server process runs, in the manner of kubert's `Runtime`
//! in Linkerd's policy controller: one [`Builder`] gives every server its
//! logging, the crypto provider, a multi-threaded tokio runtime, SIGINT and
//! SIGTERM with a drain, and the cluster the user chose; the server receives
//! a [`Runtime`] and asks it for its client, its admin endpoints and its
//! Lease, so that each is set up once, the same way, for all three.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Readiness;
use crate::lease::LeaseConfig;
use crate::log::LogSettings;
use crate::shutdown::Stopping;

/// What a server process is, before it runs.
#[derive(Debug)]
pub struct Builder {
    name: &'static str,
    log: LogSettings,
    drain: Duration,
    on_start: Option<fn()>,
}

impl Builder {
    /// `name` is what error messages call the process (`kinject identity`).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            log: LogSettings::default(),
            drain: Duration::ZERO,
            on_start: None,
        }
    }

    pub fn log(mut self, log: LogSettings) -> Self {
        self.log = log;
        self
    }

    /// How long, after SIGTERM, the server stays up not ready and serving.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Called first on the runtime (the CLI's allocator starts its periodic
    /// collect here).
    pub fn on_start(mut self, hook: fn()) -> Self {
        self.on_start = Some(hook);
        self
    }

    /// Sets the process up and runs `server` to its end.
    pub fn run<F, Fut>(self, server: F) -> Result<()>
    where
        F: FnOnce(Runtime) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        self.log.init()?;
        crate::tls::install_crypto_provider();
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        tokio.block_on(async move {
            if let Some(hook) = self.on_start {
                hook();
            }
            // Listening starts before the server does anything: a SIGTERM
            // during start-up is a stop, not a kill.
            let stopping = Stopping::on_signal(self.drain);
            server(Runtime::new(self.name, stopping)).await
        })
    }
}

/// What a running server asks of its process.
#[derive(Clone, Debug)]
pub struct Runtime {
    name: &'static str,
    stopping: Stopping,
}

impl Runtime {
    /// A runtime stopped by `stopping` (the builder's signals, or a test).
    pub fn new(name: &'static str, stopping: Stopping) -> Self {
        Self { name, stopping }
    }

    /// Draining, then stopped: see [`Stopping`].
    pub fn stopping(&self) -> &Stopping {
        &self.stopping
    }

    /// A client for the cluster the user chose (`--kubeconfig`,
    /// `--context`, `KUBECONFIG`, in-cluster), or what to do without one.
    pub async fn client(&self) -> Result<kube::Client> {
        crate::client::client().await.map_err(|e| {
            anyhow::anyhow!(
                "{} needs a cluster: set KUBECONFIG (or --kubeconfig) or run in a pod ({e})",
                self.name
            )
        })
    }

    /// Serves `/metrics`, `/live` and `/ready` on `addr` until the stop
    /// (they stay up while draining: `/ready` says not ready then).
    pub async fn serve_admin<R: Readiness>(
        &self,
        addr: SocketAddr,
        registry: Registry,
        readiness: R,
    ) -> Result<JoinHandle<()>> {
        let listener = crate::admin::bind(addr, "admin").await?;
        let app = crate::admin::admin_router(registry, readiness);
        Ok(tokio::spawn(crate::admin::serve_admin(
            listener,
            app,
            self.stopping.stopped_watch(),
        )))
    }

    /// Campaigns for `lease` until draining, then hands it to a successor at
    /// once. The receiver says whether this replica holds it now; the task
    /// ends once the Lease is released.
    pub fn lease(
        &self,
        client: &kube::Client,
        lease: LeaseConfig,
    ) -> (watch::Receiver<bool>, JoinHandle<()>) {
        let (leader_tx, leader) = watch::channel(false);
        let task = tokio::spawn(crate::lease::hold_until_draining(
            client.clone(),
            lease,
            leader_tx,
            self.stopping.clone(),
        ));
        (leader, task)
    }
}
