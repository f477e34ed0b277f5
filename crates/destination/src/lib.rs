//! kinject's destination controller: the APIs an injected proxy calls once it
//! has its identity.
//! - `Destination/Get` and `GetProfile` (`endpoints.rs`): a Service's ready
//!   endpoints, each meshed one with its TLS identity and protocol hint;
//! - `InboundServerPolicies/WatchPort` and `OutboundPolicies/Watch`
//!   (`policy/`): Linkerd's Servers and authorizations, else the default
//!   inbound policy, with probe routes; a Service's HTTPRoutes (producer
//!   and consumer), else one route per protocol to its endpoints.
//!
//! Layers: `route_annotations.rs` (Linkerd's retry and timeout annotations,
//! pure) → `model.rs` (object facts, pure) → `index.rs` (the shared view
//! and its per-key watches) → `endpoints.rs`/`policy.rs` (answers, pure) →
//! `grpc.rs` (tonic services). `cluster.rs` feeds the index from one watch
//! per kind; [`run`] puts it all together with the runtime's admin server and
//! TLS.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod endpoints;
pub mod grpc;
pub mod index;
pub mod model;
pub mod policy;
pub mod policy_index;
pub mod policy_model;
pub mod route_annotations;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kinject_mesh::parse::PortRange;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

pub use endpoints::Names;
pub use policy::{InboundPolicy, PolicyConfig};

/// What the answers depend on besides the cluster's objects.
#[derive(Clone, Debug)]
pub struct Config {
    pub names: Names,
    pub policy: PolicyConfig,
    /// `proxy.opaquePorts`: opaque for addresses no pod or Service claims.
    pub default_opaque_ports: Vec<PortRange>,
}

/// A value the answers cannot be built from, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {why}")]
pub struct BadValue {
    pub key: &'static str,
    pub why: String,
}

impl Config {
    /// The answers' configuration from the values the injector renders with.
    pub fn from_values(
        v: &kinject_mesh::values::Values,
        control_namespace: &str,
    ) -> Result<Config, BadValue> {
        let default_policy: InboundPolicy =
            v.proxy
                .default_inbound_policy
                .parse()
                .map_err(|why| BadValue {
                    key: "proxy.defaultInboundPolicy",
                    why,
                })?;
        let cluster_networks = v
            .cluster_networks
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse().map_err(|_| BadValue {
                    key: "clusterNetworks",
                    why: format!("{n:?} is not a CIDR (e.g. 10.0.0.0/8)"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_opaque_ports = kinject_mesh::parse::port_ranges(&v.proxy.opaque_ports)
            .map_err(|why| BadValue {
                key: "proxy.opaquePorts",
                why: why.to_string(),
            })?;
        Ok(Config {
            names: Names {
                control_namespace: control_namespace.to_string(),
                trust_domain: v.trust_domain().to_string(),
                cluster_domain: v.cluster_domain.clone(),
            },
            policy: PolicyConfig {
                default_policy,
                cluster_networks,
                cluster_domain: v.cluster_domain.clone(),
                control_namespace: control_namespace.to_string(),
                trust_domain: v.trust_domain().to_string(),
                ..PolicyConfig::default()
            },
            default_opaque_ports,
        })
    }
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub config: Config,
    /// Where to serve all three APIs: the injected env dials the destination
    /// and the policy Services (`kinject_mesh::names`), both headless, so the
    /// pod listens on both ports.
    pub grpc_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Serve in plaintext (loopback, tests: the proxy dials loopback control
    /// planes in plaintext).
    pub plaintext: bool,
    /// `tls.crt` and `tls.key` (the Secret identity writes), re-read every
    /// `reload_interval`. Until they exist the server is not ready.
    pub cert_dir: PathBuf,
    pub reload_interval: Duration,
    /// Keep `cert_dir` from this Secret (control-plane namespace) by
    /// watching it, rather than a Secret volume the kubelet refreshes late.
    pub cert_secret: Option<String>,
}

struct Ready {
    stopping: kinject_runtime::shutdown::Stopping,
    synced: cluster::Synced,
    tls: Option<Arc<kinject_runtime::tls::ReloadingResolver>>,
}

impl kinject_runtime::admin::Readiness for Ready {
    fn not_ready(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.stopping.is_draining() {
            out.push("stopping");
        }
        if !self.synced.all() {
            out.push("caches not synced");
        }
        if self.tls.as_ref().is_some_and(|t| !t.has_certificate()) {
            out.push("no serving certificate yet");
        }
        out
    }
}

/// Serves the three APIs until `stopping` says stop: unready while it
/// drains (still serving), then the servers send GOAWAY, stop accepting and
/// give unary calls in flight [`STOP_GRACE`]; open streams are then cut, and
/// their proxies resume on another replica.
pub async fn run(rt: &kinject_runtime::Runtime, server: ServerConfig) -> Result<()> {
    let client = rt.client().await?;
    let stopping = rt.stopping().clone();
    tokio::select! {
        r = serve(rt, client, server) => r,
        // Streams keep tonic's graceful stop waiting forever: cut them once
        // unary calls had their grace.
        () = async {
            stopping.stopped().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => Ok(()),
    }
}

async fn serve(
    rt: &kinject_runtime::Runtime,
    client: kube::Client,
    server: ServerConfig,
) -> Result<()> {
    let stopping = rt.stopping().clone();
    let version = kinject_k8s::version::ServerVersion::detect(&client).await?;
    let modern_slices = version.serves_endpoint_slices_v1();
    if let (Some(secret), false) = (&server.cert_secret, server.plaintext) {
        tokio::spawn(kinject_k8s::secret_files::sync(
            client.clone(),
            server.config.names.control_namespace.clone(),
            secret.clone(),
            server.cert_dir.clone(),
        ));
    }
    let index = index::Index::new();
    let synced = cluster::Synced::default();
    let mut registry = Registry::with_prefix("kinject_destination");
    let bad_annotations = Gauge::<i64>::default();
    registry.register(
        "service_annotations_refused",
        "Services with a retry, timeout or failure-accrual annotation refused as invalid; none of that set applies",
        bad_annotations.clone(),
    );
    tokio::spawn(cluster::run(
        client.clone(),
        index.clone(),
        server.config.names.control_namespace.clone(),
        modern_slices,
        synced.clone(),
        bad_annotations,
    ));

    let refused = Gauge::<i64>::default();
    registry.register(
        "policy_objects_refused",
        "Policy objects (Servers, authorizations, routes) refused as invalid; what refers to them grants nothing",
        refused.clone(),
    );
    tokio::spawn(cluster::run_policy(
        client.clone(),
        index.clone(),
        synced.clone(),
        refused,
    ));
    // One replica writes HTTPRoute status: the Lease's holder.
    let lease = kinject_runtime::lease::LeaseConfig::new(
        &server.config.names.control_namespace,
        kinject_mesh::names::DESTINATION_LEASE,
        kinject_runtime::lease::holder_name("kinject-destination"),
    );
    // A stopping replica hands the Lease over at once.
    let (leader, _holding) = rt.lease(&client, lease);
    tokio::spawn(status::run(client.clone(), index.clone(), leader));
    let metrics = grpc::StreamMetrics::register(&mut registry);
    let cert_expiry = Gauge::<i64>::default();
    registry.register(
        "serving_cert_expiry_timestamp_seconds",
        "Unix time at which the serving certificate expires",
        cert_expiry.clone(),
    );
    let shared = grpc::Shared {
        index,
        cfg: Arc::new(server.config.clone()),
        metrics,
    };
    let tls = if server.plaintext {
        None
    } else {
        Some(kinject_runtime::tls::ReloadingResolver::waiting(
            server.cert_dir.join("tls.crt"),
            server.cert_dir.join("tls.key"),
        ))
    };
    if let Some(addr) = server.admin_addr {
        let ready = Ready {
            stopping: stopping.clone(),
            synced: synced.clone(),
            tls: tls.clone(),
        };
        rt.serve_admin(addr, registry, ready).await?;
    }
    if let Some(tls) = &tls {
        tokio::spawn(reload_certificate(
            tls.clone(),
            server.reload_interval,
            cert_expiry,
        ));
    }
    let servers = server
        .grpc_addrs
        .iter()
        .map(|&addr| {
            tokio::spawn(serve_grpc(
                addr,
                shared.clone(),
                tls.clone(),
                stopping.clone(),
            ))
        })
        .collect::<Vec<_>>();
    // The first server to stop (a port in use, say) stops the process;
    // after the stop, streams that never end are cut after a grace period.
    let (first, _, _) = futures::future::select_all(servers).await;
    let outcome = first.context("the gRPC server task")?;
    if outcome.is_err() || !stopping.is_draining() {
        return outcome;
    }
    Ok(())
}

/// The certificate comes from a mounted Secret: re-read it, so a renewal is
/// served on the next handshake.
async fn reload_certificate(
    tls: Arc<kinject_runtime::tls::ReloadingResolver>,
    every: Duration,
    cert_expiry: Gauge<i64>,
) {
    let mut last_err = String::new();
    loop {
        match tls.reload() {
            Ok(expiry) => {
                cert_expiry.set(expiry);
                last_err.clear();
            }
            Err(e) => {
                let e = format!("{e:#}");
                if e != last_err {
                    if tls.has_certificate() {
                        warn!(error = %e, "cannot use the updated serving certificate; serving the last good one");
                    } else {
                        info!(reason = %e, "waiting for the serving certificate kinject identity writes (not ready until then)");
                    }
                    last_err = e;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// One gRPC listener with every API, in plaintext (loopback, tests) or over
/// TLS 1.3 as proxies dial it, until the stop.
async fn serve_grpc(
    addr: SocketAddr,
    shared: grpc::Shared,
    tls: Option<Arc<kinject_runtime::tls::ReloadingResolver>>,
    stopping: kinject_runtime::shutdown::Stopping,
) -> Result<()> {
    let router = grpc::router(shared);
    let stopped = async move { stopping.stopped().await };
    match tls {
        None => {
            info!(%addr, "serving Destination and policy APIs in plaintext");
            router
                .serve_with_shutdown(addr, stopped)
                .await
                .with_context(|| format!("the destination gRPC server on {addr}"))
        }
        Some(tls) => {
            let incoming =
                kinject_runtime::grpc_tls::incoming(addr, tls, "destination gRPC").await?;
            info!(%addr, "serving Destination and policy APIs over TLS 1.3");
            router
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .with_context(|| format!("the destination gRPC server on {addr}"))
        }
    }
}

/// How long unary calls in flight get after the stop before the process ends.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;
    use kinject_mesh::values::Values;

    #[test]
    fn values_become_the_policy_defaults() {
        let mut v = Values::default();
        let c = Config::from_values(&v, "linkerd").expect("defaults");
        assert_eq!(c.policy.default_policy, InboundPolicy::AllUnauthenticated);
        assert_eq!(c.policy.cluster_networks.len(), 5);
        assert_eq!(c.names.trust_domain, "cluster.local");
        assert!(c.default_opaque_ports.iter().any(|r| r.contains(3306)));

        v.identity_trust_domain = String::new();
        v.cluster_domain = "example.org".into();
        let c = Config::from_values(&v, "linkerd").expect("trust domain");
        assert_eq!(c.names.trust_domain, "example.org", "the cluster domain");
        v.identity_trust_domain = "mesh.example".into();
        let c = Config::from_values(&v, "linkerd").expect("trust domain");
        assert_eq!(c.names.trust_domain, "mesh.example");
        v.proxy.default_inbound_policy = "deny".into();
        v.cluster_networks = "10.0.0.0/8".into();
        let c = Config::from_values(&v, "linkerd").expect("custom");
        assert_eq!(c.policy.default_policy, InboundPolicy::Deny);
        assert_eq!(c.policy.cluster_networks.len(), 1);

        v.cluster_networks = "10.0.0.0/8,nope".into();
        let e = Config::from_values(&v, "linkerd").expect_err("bad CIDR");
        assert!(format!("{e}").contains("clusterNetworks: \"nope\""), "{e}");
        v.cluster_networks = "10.0.0.0/8".into();
        v.proxy.default_inbound_policy = "open".into();
        let e = Config::from_values(&v, "linkerd").expect_err("bad policy");
        assert!(
            format!("{e}").starts_with("proxy.defaultInboundPolicy"),
            "{e}"
        );
    }
}
