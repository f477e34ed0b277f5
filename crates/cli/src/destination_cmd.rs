//! `kinject destination`: values and flags → `kinject_destination::ServerConfig`.
//!
//! The policy defaults come from the same values the injector renders with
//! (`proxy.defaultInboundPolicy`, `clusterNetworks`, `clusterDomain`,
//! `identityTrustDomain`, `proxy.opaquePorts`), read once at start: a
//! restart applies new values.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kinject_destination::{Config, ServerConfig};

use crate::server_args::{LogArgs, positive_duration};
use crate::values_cmd::ValuesArgs;

#[derive(Args, Debug)]
pub struct DestinationArgs {
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
    /// Addresses to serve Destination, InboundServerPolicies and
    /// OutboundPolicies on (each serves all three). The injected proxy
    /// dials the destination and policy Services' ports (8086 and 8090).
    #[arg(long = "grpc-addr", value_name = "ADDR", default_values = ["0.0.0.0:8086", "0.0.0.0:8090"])]
    pub grpc_addrs: Vec<SocketAddr>,
    /// Serve in plaintext (loopback only: the proxy dials a loopback control
    /// plane in plaintext).
    #[arg(long)]
    pub plaintext: bool,
    /// Directory with the serving certificate (tls.crt, tls.key) that
    /// `kinject identity` writes to Secret linkerd-destination-k8s-tls;
    /// re-read every --reload-interval. Not ready until it is there.
    #[arg(long, value_name = "DIR", default_value = "/var/run/linkerd/tls")]
    pub cert_dir: PathBuf,
    /// Keep --cert-dir from this Secret in the -l namespace by watching it
    /// (in a cluster: linkerd-destination-k8s-tls, which identity writes).
    #[arg(long, value_name = "NAME")]
    pub cert_secret: Option<String>,
    /// How often the certificate files are re-read (Go duration).
    #[arg(long, default_value = "2s")]
    pub reload_interval: String,
    /// On SIGTERM, stay up this long, not ready, still serving, so that
    /// endpoint removal reaches proxies first; then GOAWAY, and the process
    /// ends (Go duration).
    #[arg(long, default_value = "5s")]
    pub drain: String,
    /// Plain-HTTP address of /metrics, /live and /ready.
    #[arg(long, default_value = "0.0.0.0:9996")]
    pub admin_addr: SocketAddr,
    /// Values files and sets, as for `kinject inject`.
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Start from the values of ConfigMap `linkerd-config` in the -l
    /// namespace (what `kinject install` renders), read once at start.
    #[arg(long)]
    pub values_from_cluster: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

pub fn run(args: &DestinationArgs) -> Result<i32> {
    // Before anything else: this may re-execute the process.
    #[cfg(unix)]
    crate::allocator::ensure_server_allocator_options()?;
    let ns = &args.namespace.name;
    let cluster = if args.values_from_cluster {
        Some(crate::values_cmd::fetch_cluster_config(ns)?)
    } else {
        None
    };
    let loaded = crate::values_cmd::load(&args.values, cluster.as_ref(), ns)?;
    crate::values_cmd::warn_unknown(&loaded)?;
    let config = Config::from_values(&loaded.values, ns)?;
    let server = ServerConfig {
        config,
        grpc_addrs: args.grpc_addrs.clone(),
        admin_addr: Some(args.admin_addr),
        plaintext: args.plaintext,
        cert_dir: args.cert_dir.clone(),
        reload_interval: positive_duration("--reload-interval", &args.reload_interval)?,
        cert_secret: args.cert_secret.clone(),
    };
    let drain = crate::server_args::duration("--drain", &args.drain)?;
    crate::server_args::runtime("kinject destination", &args.log, drain)
        .run(|rt| async move { kinject_destination::run(&rt, server).await })?;
    Ok(0)
}
