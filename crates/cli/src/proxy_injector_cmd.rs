//! `kinject proxy-injector`: flags → `kinject_webhook::ProxyInjectorConfig`.

use kinject_mesh::settings::FailurePolicy;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use kinject_inject::Policy;
use kinject_k8s::webhook_config::ClientTarget;
use kinject_mesh::settings::DefaultPolicy;
use kinject_webhook::{NativeSidecars, ProxyInjectorConfig};

use crate::server_args::{LogArgs, positive_duration};
use crate::values_cmd::ValuesArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NativeMode {
    /// Native sidecars when the API server supports them (1.29+) and the values ask for them.
    Auto,
    /// Always classic sidecars.
    Never,
}

#[derive(Args, Debug)]
pub struct ProxyInjectorArgs {
    /// HTTPS address of the webhook.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP address of /metrics, /live and /ready.
    #[arg(long, visible_alias = "metrics-addr", default_value = "0.0.0.0:9995")]
    pub admin_addr: SocketAddr,
    /// Serving certificate chain (PEM); hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Serving private key (PEM); hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// CA bundle (PEM) written into the webhook configuration's caBundle;
    /// defaults to the serving certificate file. Hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Values files (hot-reloaded) and sets, as for `kinject inject`.
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Take the base values from the running Linkerd's ConfigMap
    /// `linkerd-config` (key `values`) in the -l namespace, and the trust
    /// anchors from `linkerd-identity-trust-roots` unless --trust-anchors is
    /// given. Both are watched: a change applies at once, a broken one is
    /// refused and the last good values stay. Not ready until they load.
    #[arg(long)]
    pub values_from_cluster: bool,
    /// Identity trust anchors (PEM); hot-reloaded.
    #[arg(long, value_name = "FILE")]
    pub trust_anchors: Option<PathBuf>,
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
    /// Register the webhook by URL (https://…/inject), for running outside the
    /// cluster. Without it the webhook is registered by Service.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Service name used when registering by Service (namespace: -l).
    #[arg(long, default_value = "linkerd-proxy-injector")]
    pub service_name: String,
    #[arg(long, default_value_t = 443)]
    pub service_port: i32,
    /// What the API server does when the webhook cannot be reached: Ignore
    /// or Fail.
    #[arg(long, default_value = "Ignore", value_parser = str::parse::<FailurePolicy>)]
    pub failure_policy: FailurePolicy,
    /// Admission timeout the API server applies (1-30 seconds).
    #[arg(long, default_value_t = 10)]
    pub timeout_seconds: i32,
    /// Pods with no injection label or annotation anywhere: `enabled` (the
    /// seed's opt-out model) or `disabled` (modern Linkerd's opt-in).
    #[arg(long, default_value = "enabled", value_parser = |s: &str| s.parse::<DefaultPolicy>())]
    pub default_policy: DefaultPolicy,
    /// Namespaces never injected (besides the control-plane namespace).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    pub excluded_namespaces: Vec<String>,
    #[arg(long, value_enum, default_value_t = NativeMode::Auto)]
    pub native_sidecars: NativeMode,
    /// Do not create or maintain the MutatingWebhookConfiguration.
    #[arg(long)]
    pub no_register: bool,
    /// Do not write Kubernetes Events.
    #[arg(long)]
    pub no_events: bool,
    /// Never gzip responses. By default an answer served again (the pods of
    /// one template) is gzip-encoded for clients that accept it, as the API
    /// server does: a patch answer shrinks from ~10.8 KB to ~4.3 KB.
    #[arg(long)]
    pub no_gzip: bool,
    /// Memory (MiB) that request bodies may hold at once, across all
    /// requests; a request that finds it spent waits, then gets 503. At least
    /// 8 (one body of the largest accepted size).
    #[arg(long, default_value_t = (kinject_webhook::server::DEFAULT_BODY_MEMORY >> 20) as u32, value_name = "MIB")]
    pub max_body_memory: u32,
    /// Start even if the certificate files (and a --trust-anchors file) do
    /// not exist yet: wait for them, not ready and not registered. In a
    /// cluster they come from the Secret `kinject identity` writes.
    #[arg(long)]
    pub wait_for_cert: bool,
    /// On SIGTERM, stay up this long, not ready, still answering (HTTP/1.1
    /// answers with `Connection: close`), so that endpoint removal reaches
    /// kube-proxy and the API server first; then finish and exit (Go
    /// duration; the pod's terminationGracePeriodSeconds must cover it).
    #[arg(long, default_value = "10s")]
    pub drain: String,
    /// Evict running pods that should be meshed but have no proxy, when a
    /// ReplicaSet, StatefulSet or DaemonSet recreates them (the replacement
    /// is injected). PodDisruptionBudgets are honoured; one eviction every
    /// 5 s at most. Off by default: such a pod restarts without warning.
    /// Without it they are only reported (Event, metric, `kinject check`).
    #[arg(long)]
    pub repair_missed: bool,
    /// Keep the certificate files (the directory of --tls-cert) from this
    /// Secret in the -l namespace, by watching it (in a cluster: what
    /// identity writes, without waiting for the kubelet to refresh a Secret
    /// volume). Implies --wait-for-cert.
    #[arg(long, value_name = "NAME")]
    pub cert_secret: Option<String>,
    /// How often watched files are re-read (Go duration).
    #[arg(long, default_value = "2s")]
    pub reload_interval: String,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ProxyInjectorArgs {
    pub fn config(&self) -> Result<ProxyInjectorConfig> {
        if !(1..=30).contains(&self.timeout_seconds) {
            bail!(
                "--timeout-seconds must be between 1 and 30, got {}",
                self.timeout_seconds
            );
        }
        let target = match &self.webhook_url {
            Some(url) => {
                if !url.starts_with("https://") {
                    bail!("--webhook-url must be an https:// URL, got {url:?}");
                }
                ClientTarget::Url(url.clone())
            }
            None => ClientTarget::Service {
                namespace: self.namespace.name.clone(),
                name: self.service_name.clone(),
                port: self.service_port,
            },
        };
        let min_mib = kinject_webhook::server::BODY_LIMIT / (1024 * 1024);
        if (self.max_body_memory as usize) < min_mib {
            bail!(
                "--max-body-memory must be at least {min_mib} (MiB: one body of the largest accepted size), got {}",
                self.max_body_memory
            );
        }
        let reload_interval = positive_duration("--reload-interval", &self.reload_interval)?;
        Ok(ProxyInjectorConfig {
            addr: self.addr,
            admin_addr: self.admin_addr,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            ca_bundle: self.ca_bundle.clone(),
            values: self.values.sources(),
            values_from_cluster: self.values_from_cluster,
            trust_anchors: self.trust_anchors.clone(),
            linkerd_namespace: self.namespace.name.clone(),
            target,
            failure_policy: self.failure_policy,
            timeout_seconds: self.timeout_seconds,
            policy: Policy {
                default: self.default_policy,
                excluded_namespaces: self.excluded_namespaces.clone(),
            },
            native_sidecars: match self.native_sidecars {
                NativeMode::Auto => NativeSidecars::Auto,
                NativeMode::Never => NativeSidecars::Never,
            },
            register: !self.no_register,
            events: !self.no_events,
            gzip: !self.no_gzip,
            max_body_memory: self.max_body_memory as usize * 1024 * 1024,
            reload_interval,
            wait_for_cert: self.wait_for_cert || self.cert_secret.is_some(),
            cert_secret: self.cert_secret.clone(),
            missed: kinject_webhook::missed::MissedConfig {
                repair: self.repair_missed,
                ..kinject_webhook::missed::MissedConfig::default()
            },
        })
    }
}

pub fn run(args: &ProxyInjectorArgs) -> Result<i32> {
    let cfg = args.config()?;
    #[cfg(unix)]
    crate::allocator::ensure_server_allocator_options()?;
    let drain = crate::server_args::duration("--drain", &args.drain)?;
    crate::server_args::runtime("kinject proxy-injector", &args.log, drain)
        .run(|rt| async move { kinject_webhook::run(&rt, cfg).await })?;
    Ok(0)
}
