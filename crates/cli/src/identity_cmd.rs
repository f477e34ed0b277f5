//! `kinject identity`: flags → `kinject_identity::controller::IdentityConfig`.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use kinject_identity::controller::IdentityConfig;
use kinject_inject::parse;

use crate::proxy_injector_cmd::{LogFormat, init_logging};

#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// Control-plane namespace: the issuer Secret and trust bundle live here,
    /// and meshed pods carry `linkerd.io/control-plane-ns=<this>`.
    #[arg(
        short = 'l',
        long,
        env = "LINKERD_NAMESPACE",
        default_value = "linkerd"
    )]
    pub linkerd_namespace: String,
    /// Lifetime of workload certificates (renewed at two thirds; Go duration).
    #[arg(long, default_value = "24h")]
    pub workload_lifetime: String,
    /// Re-check everything this often even without events (Go duration).
    #[arg(long, default_value = "60s")]
    pub resync: String,
    /// Service name of the proxy injector (its serving certificate's DNS names).
    #[arg(long, default_value = "linkerd-proxy-injector")]
    pub webhook_service: String,
    /// Lifetime of the injector's serving certificate (Go duration).
    #[arg(long, default_value = "720h")]
    pub webhook_lifetime: String,
    /// Also write the injector's serving certificate and the trust bundle to
    /// this directory (tls.crt, tls.key, ca.crt), for an injector outside the cluster.
    #[arg(long, value_name = "DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,
    /// A user-provided trust root (PEM), used with --issuer-cert and
    /// --issuer-key instead of the issuer Secret.
    #[arg(long, value_name = "FILE", requires_all = ["issuer_cert", "issuer_key"])]
    pub trust_root: Option<std::path::PathBuf>,
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub issuer_cert: Option<std::path::PathBuf>,
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub issuer_key: Option<std::path::PathBuf>,
    /// Plain-HTTP address of /metrics, /live and /ready.
    #[arg(long, default_value = "0.0.0.0:9990")]
    pub admin_addr: std::net::SocketAddr,
    #[arg(long, env = "KINJECT_LOG", default_value = "info")]
    pub log_level: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

fn duration(flag: &str, v: &str) -> Result<Duration> {
    let n = parse::go_duration_nanos(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if n == 0 {
        bail!("{flag} must be positive");
    }
    Ok(Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX)))
}

fn read(p: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
}

fn provided(args: &IdentityArgs) -> Result<Option<(String, kinject_identity::ca::CertAndKey)>> {
    let (Some(root), Some(cert), Some(key)) =
        (&args.trust_root, &args.issuer_cert, &args.issuer_key)
    else {
        return Ok(None);
    };
    let issuer = kinject_identity::ca::CertAndKey {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    };
    // Validate now, before anything starts: a clear error, nothing written.
    kinject_identity::ca::Ca::load(&read(root)?, &issuer, time_now())
        .map_err(|e| anyhow::anyhow!("--trust-root/--issuer-cert/--issuer-key: {e}"))?;
    Ok(Some((read(root)?, issuer)))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn run(args: &IdentityArgs) -> Result<i32> {
    let cfg = IdentityConfig {
        namespace: args.linkerd_namespace.clone(),
        workload_lifetime: duration("--workload-lifetime", &args.workload_lifetime)?,
        resync: duration("--resync", &args.resync)?,
        webhook_service: args.webhook_service.clone(),
        webhook_lifetime: duration("--webhook-lifetime", &args.webhook_lifetime)?,
        webhook_cert_dir: args.webhook_cert_dir.clone(),
        provided: provided(args)?,
        admin_addr: Some(args.admin_addr),
        ..IdentityConfig::default()
    };
    init_logging(&args.log_level, args.log_format)?;
    kinject_webhook::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kube::Client::try_default().await?;
        tokio::select! {
            r = kinject_identity::controller::run(client, cfg) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(0)
}
