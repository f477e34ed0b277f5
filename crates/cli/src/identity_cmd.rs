//! `kinject identity`: flags → `kinject_identity::controller::IdentityConfig`.

use anyhow::{Context, Result};
use clap::Args;
use kinject_identity::controller::IdentityConfig;
use kinject_identity::issuer::IssuerScheme;

fn parse_scheme(s: &str) -> Result<IssuerScheme, String> {
    s.parse()
}

use crate::server_args::{LogArgs, positive_duration};

#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
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
    /// Lifetime of the destination controller's serving certificate (Go duration).
    #[arg(long, default_value = "720h")]
    pub destination_lifetime: String,
    /// Also write the destination controller's serving certificate and the
    /// trust bundle to this directory, for a destination outside the cluster.
    #[arg(long, value_name = "DIR")]
    pub destination_cert_dir: Option<std::path::PathBuf>,
    /// The trust anchors (a PEM bundle of one or more ECDSA P-256 roots),
    /// used with --issuer-cert and --issuer-key instead of the issuer Secret.
    #[arg(long, visible_alias = "trust-anchors", value_name = "FILE", requires_all = ["issuer_cert", "issuer_key"])]
    pub trust_root: Option<std::path::PathBuf>,
    /// The issuer's certificate (PEM; a P-256 CA signed by one of the anchors).
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub issuer_cert: Option<std::path::PathBuf>,
    /// The issuer's private key (PEM: SEC1 `EC PRIVATE KEY` or PKCS#8).
    #[arg(long, value_name = "FILE", requires = "trust_root")]
    pub issuer_key: Option<std::path::PathBuf>,
    /// Who provides Secret linkerd-identity-issuer: `kinject` generates its
    /// own CA when it is missing; `linkerd.io/tls` (crt.pem, key.pem) and
    /// `kubernetes.io/tls` (tls.crt, tls.key, ca.crt; cert-manager) are the
    /// operator's, waited for and never generated. Changes to the Secret or
    /// to ConfigMap linkerd-identity-trust-roots are applied without a restart.
    #[arg(long, default_value = "kinject", value_parser = parse_scheme)]
    pub issuer_scheme: IssuerScheme,
    /// On SIGTERM, stay up this long, not ready, still answering Certify, so
    /// that endpoint removal reaches every client first (Go duration).
    #[arg(long, default_value = "5s")]
    pub drain: String,
    /// Serve the proxy's gRPC `Identity/Certify` on this address (TLS 1.3 with
    /// a certificate for identity's own mesh identity, `kinject_mesh::names::IDENTITY`).
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<std::net::SocketAddr>,
    /// Serve Certify in plaintext (loopback only: the proxy dials a loopback
    /// control plane in plaintext).
    #[arg(long, requires = "grpc_addr")]
    pub grpc_plaintext: bool,
    /// The identity trust domain. By default the values' (ConfigMap
    /// linkerd-config: `identityTrustDomain`, else `clusterDomain`), as the
    /// proxies are told by the injector; `cluster.local` without it.
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Lifetime of proxy certificates issued by Certify (Go duration).
    #[arg(long, default_value = "24h")]
    pub proxy_lifetime: String,
    /// Plain-HTTP address of /metrics, /live and /ready.
    #[arg(long, default_value = "0.0.0.0:9990")]
    pub admin_addr: std::net::SocketAddr,
    #[command(flatten)]
    pub log: LogArgs,
}

fn read(p: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
}

fn provided(args: &IdentityArgs) -> Result<Option<(String, kinject_identity::ca::CertAndKey)>> {
    use kinject_identity::pki;
    let (Some(root), Some(cert), Some(key)) =
        (&args.trust_root, &args.issuer_cert, &args.issuer_key)
    else {
        return Ok(None);
    };
    let (anchors, cert_pem, key_pem) = (read(root)?, read(cert)?, read(key)?);
    // Each file on its own first, so the error names the file at fault;
    // then together (chain, key match, validity). Nothing has started yet.
    let named = |flag: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{flag} {}: {e}", path.display())
    };
    pki::parse_trust_anchors(&anchors).map_err(|e| named("--trust-root", root, &e))?;
    pki::parse_certificates("issuer", &cert_pem, true)
        .map_err(|e| named("--issuer-cert", cert, &e))?;
    pki::parse_private_key("issuer key", &key_pem).map_err(|e| named("--issuer-key", key, &e))?;
    let issuer = kinject_identity::ca::CertAndKey { cert_pem, key_pem };
    kinject_identity::ca::Ca::load(&anchors, &issuer, time_now())
        .map_err(|e| anyhow::anyhow!("--trust-root/--issuer-cert/--issuer-key: {e}"))?;
    Ok(Some((anchors, issuer)))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The values' trust domain; Linkerd's default when the control plane has no
/// ConfigMap linkerd-config (identity run on its own).
async fn trust_domain_of_values(client: &kube::Client, ns: &str) -> Result<String> {
    let cluster = kinject_k8s::linkerd_config::fetch(client, ns).await?;
    let values = match cluster.values {
        Some(_) => {
            crate::values_cmd::load(
                &crate::values_cmd::ValuesArgs::default(),
                Some(&cluster),
                ns,
            )?
            .values
        }
        None => kinject_mesh::values::Values::default(),
    };
    Ok(values.trust_domain().to_string())
}

pub fn run(args: &IdentityArgs) -> Result<i32> {
    // Before anything else: this may re-execute the process.
    #[cfg(unix)]
    crate::allocator::ensure_server_allocator_options()?;
    let cfg = IdentityConfig {
        namespace: args.namespace.name.clone(),
        workload_lifetime: positive_duration("--workload-lifetime", &args.workload_lifetime)?,
        resync: positive_duration("--resync", &args.resync)?,
        webhook_service: args.webhook_service.clone(),
        webhook_lifetime: positive_duration("--webhook-lifetime", &args.webhook_lifetime)?,
        webhook_cert_dir: args.webhook_cert_dir.clone(),
        destination_lifetime: positive_duration(
            "--destination-lifetime",
            &args.destination_lifetime,
        )?,
        destination_cert_dir: args.destination_cert_dir.clone(),
        provided: provided(args)?,
        admin_addr: Some(args.admin_addr),
        grpc_addr: args.grpc_addr,
        grpc_plaintext: args.grpc_plaintext,
        proxy_lifetime: positive_duration("--proxy-lifetime", &args.proxy_lifetime)?,
        issuer_scheme: args.issuer_scheme,
        ..IdentityConfig::default()
    };
    let drain = crate::server_args::duration("--drain", &args.drain)?;
    // SIGTERM (the kubelet) or SIGINT: not ready, drain, finish the calls in
    // flight, release the Lease, exit 0.
    crate::server_args::runtime("kinject identity", &args.log, drain).run(|rt| async move {
        let client = rt.client().await?;
        let mut cfg = cfg;
        cfg.trust_domain = match &args.trust_domain {
            Some(td) => td.clone(),
            None => trust_domain_of_values(&client, &cfg.namespace)
                .await
                .context(
                    "cannot learn the trust domain from the values (or pass --trust-domain)",
                )?,
        };
        tracing::info!(trust_domain = %cfg.trust_domain, "issuing for the trust domain");
        kinject_identity::controller::run(&rt, client, cfg).await
    })?;
    Ok(0)
}
