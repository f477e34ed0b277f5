//! The identity controller's configuration, its metrics, and the names of
//! the objects it writes: what both halves of the controller
//! ([`crate::controller`], [`crate::workloads`]) read.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ca::CertAndKey;
use crate::issuer::IssuerScheme;

const DAY: Duration = Duration::from_secs(86_400);
pub const TRUST_BUNDLE: &str = "linkerd-ca-bundle";
pub const TRUST_BUNDLE_KEY: &str = "trust-anchors.pem";

/// How the controller is configured.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The control-plane namespace (issuer Secret, trust bundle).
    pub namespace: String,
    /// Lifetime of workload certificates (renewed at two thirds).
    pub workload_lifetime: Duration,
    pub root_lifetime: Duration,
    pub issuer_lifetime: Duration,
    /// How often everything is re-checked even without events.
    pub resync: Duration,
    /// Service of the proxy injector: its serving certificate covers
    /// `<service>.<namespace>.svc[.cluster.local]` and 127.0.0.1.
    pub webhook_service: String,
    /// Lifetime of the injector's serving certificate (renewed at two thirds).
    pub webhook_lifetime: Duration,
    /// Also write the serving certificate (`tls.crt`, `tls.key`) and the trust
    /// bundle (`ca.crt`) here, for an injector running outside the cluster.
    pub webhook_cert_dir: Option<std::path::PathBuf>,
    /// Lifetime of the destination controller's serving certificate.
    pub destination_lifetime: Duration,
    /// Also write it (`tls.crt`, `tls.key`, `ca.crt`) here, for a
    /// destination controller running outside the cluster.
    pub destination_cert_dir: Option<std::path::PathBuf>,
    /// A user-provided trust root (PEM) and issuer (certificate and key PEM)
    /// to use instead of the issuer Secret.
    pub provided: Option<(String, CertAndKey)>,
    /// Plain-HTTP address of /metrics, /live and /ready.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// This replica's name for leader election (pod name in a cluster).
    pub holder: String,
    /// Serve the proxy's `Identity/Certify` here (every replica serves it:
    /// issuing a proxy certificate writes nothing).
    pub grpc_addr: Option<std::net::SocketAddr>,
    /// Serve it in plaintext (loopback, tests) instead of TLS.
    pub grpc_plaintext: bool,
    /// The identity trust domain (`identityTrustDomain`).
    pub trust_domain: String,
    /// Lifetime of proxy certificates issued by Certify.
    pub proxy_lifetime: Duration,
    /// Who provides the issuer (kinject, the operator, cert-manager).
    pub issuer_scheme: IssuerScheme,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            namespace: "linkerd".into(),
            workload_lifetime: DAY,
            root_lifetime: 3650 * DAY,
            issuer_lifetime: 365 * DAY,
            resync: Duration::from_secs(60),
            webhook_service: "linkerd-proxy-injector".into(),
            webhook_lifetime: 30 * DAY,
            webhook_cert_dir: None,
            destination_lifetime: 30 * DAY,
            destination_cert_dir: None,
            provided: None,
            admin_addr: None,
            holder: kinject_runtime::lease::holder_name("kinject-identity"),
            grpc_addr: None,
            grpc_plaintext: false,
            trust_domain: "cluster.local".into(),
            proxy_lifetime: DAY,
            issuer_scheme: IssuerScheme::Kinject,
        }
    }
}

/// Runs until the process ends.
/// The controller's metrics.
#[derive(Clone, Default)]
pub struct IdentityMetrics {
    pub issued: Counter,
    pub renewed: Counter,
    pub failures: Counter,
    pub issuer_expiry: Gauge,
    pub root_expiry: Gauge,
    pub issuer_reload_failures: Counter,
}

impl IdentityMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self::default();
        reg.register(
            "certificates_issued",
            "Certificates issued for new identities",
            m.issued.clone(),
        );
        reg.register(
            "certificates_renewed",
            "Certificates re-issued (expiring, edited or from another CA)",
            m.renewed.clone(),
        );
        reg.register(
            "reconcile_failures",
            "Reconcile passes that failed",
            m.failures.clone(),
        );
        reg.register(
            "issuer_expiry_timestamp_seconds",
            "Unix time at which the issuer expires",
            m.issuer_expiry.clone(),
        );
        reg.register(
            "root_expiry_timestamp_seconds",
            "Unix time at which the first trust anchor expires",
            m.root_expiry.clone(),
        );
        reg.register(
            "issuer_reload_failures",
            "Updates of the issuer Secret or trust-roots ConfigMap that could not be used (the last good CA stays)",
            m.issuer_reload_failures.clone(),
        );
        m
    }
}
