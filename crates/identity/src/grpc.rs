//! The proxy's `io.linkerd.proxy.identity.Identity` service over gRPC:
//! a TokenReview proves who the caller is, then [`crate::certify`] checks and
//! signs its CSR with the CA that `kinject identity` keeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use linkerd2_proxy_api::identity::identity_server::{Identity, IdentityServer};
use linkerd2_proxy_api::identity::{CertifyRequest, CertifyResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::ca::Ca;
use crate::certify::{self, Refusal};
use crate::issuer::CurrentCa;

/// The audience of the projected token the injector mounts in meshed pods.
pub const TOKEN_AUDIENCE: &str = "identity.l5d.io";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `unauthenticated`, `failed_precondition`, `invalid_argument`.
    pub reason: &'static str,
}

/// Certify's metrics.
#[derive(Clone, Debug)]
pub struct CertifyMetrics {
    pub certified: Counter,
    pub refused: Family<RefusalLabels, Counter>,
    pub token_review_seconds: Histogram,
}

impl CertifyMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            certified: Counter::default(),
            refused: Family::default(),
            token_review_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0,
            ]),
        };
        reg.register(
            "certify_certified",
            "Proxy certificates issued",
            m.certified.clone(),
        );
        reg.register(
            "certify_refused",
            "Certify requests refused, by reason",
            m.refused.clone(),
        );
        reg.register(
            "certify_token_review_seconds",
            "Latency of the TokenReview behind each Certify",
            m.token_review_seconds.clone(),
        );
        m
    }
}

/// Where and how the service runs.
#[derive(Clone, Debug)]
pub struct CertifyConfig {
    pub control_namespace: String,
    pub trust_domain: String,
    /// Lifetime of proxy certificates (clamped to the issuer's).
    pub lifetime: Duration,
}

/// The `Identity` service.
pub struct CertifyService {
    client: kube::Client,
    ca: CurrentCa,
    cfg: CertifyConfig,
    metrics: CertifyMetrics,
}

impl CertifyService {
    pub fn new(
        client: kube::Client,
        ca: CurrentCa,
        cfg: CertifyConfig,
        metrics: CertifyMetrics,
    ) -> Self {
        Self {
            client,
            ca,
            cfg,
            metrics,
        }
    }

    /// The user the token belongs to: a TokenReview with the proxy token's
    /// audience, then with none when the API server rejects audiences (older
    /// tokens, servers without audience support).
    async fn review(&self, token: &str) -> Result<String, Refusal> {
        let api = Api::<TokenReview>::all(self.client.clone());
        let started = Instant::now();
        let mut result = None;
        for audiences in [Some(vec![TOKEN_AUDIENCE.to_string()]), None] {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: audiences.clone(),
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| Refusal::FailedPrecondition(format!("the TokenReview failed: {e}")));
            match answer {
                Ok(r) => {
                    let status = r.status.unwrap_or_default();
                    let audience_problem = status
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("audience"));
                    result = Some(Ok(status.clone()));
                    if status.authenticated == Some(true)
                        || !audience_problem
                        || audiences.is_none()
                    {
                        break;
                    }
                }
                Err(e) => {
                    result = Some(Err(e));
                    break;
                }
            }
        }
        self.metrics
            .token_review_seconds
            .observe(started.elapsed().as_secs_f64());
        let status = result.unwrap_or_else(|| {
            Err(Refusal::FailedPrecondition(
                "no TokenReview was made".into(),
            ))
        })?;
        if status.authenticated != Some(true) {
            return Err(Refusal::Unauthenticated(format!(
                "the token is not valid: {}",
                status.error.unwrap_or_else(|| "not authenticated".into())
            )));
        }
        status
            .user
            .and_then(|u| u.username)
            .ok_or_else(|| Refusal::Unauthenticated("the token names no user".into()))
    }

    async fn handle(&self, req: CertifyRequest) -> Result<CertifyResponse, Refusal> {
        if req.token.is_empty() {
            return Err(Refusal::Unauthenticated("no token".into()));
        }
        if req.identity.is_empty() {
            return Err(Refusal::InvalidArgument("no identity".into()));
        }
        let token = std::str::from_utf8(&req.token)
            .map_err(|_| Refusal::Unauthenticated("the token is not text".into()))?
            .trim();
        let user = self.review(token).await?;
        let expected =
            certify::identity_for_user(&user, &self.cfg.control_namespace, &self.cfg.trust_domain)?;
        if req.identity != expected {
            return Err(Refusal::FailedPrecondition(format!(
                "the token is for {expected:?}, not {:?}",
                req.identity
            )));
        }
        // One consistent issuer per call, even if it is swapped meanwhile.
        let ca = self.ca.load();
        let c = certify::certify(
            &ca,
            &req.certificate_signing_request,
            &req.identity,
            OffsetDateTime::now_utc(),
            self.cfg.lifetime,
        )?;
        let valid_until = prost_types::Timestamp {
            seconds: c.not_after.unix_timestamp(),
            nanos: 0,
        };
        Ok(CertifyResponse {
            leaf_certificate: c.leaf_der,
            intermediate_certificates: c.intermediates_der,
            valid_until: Some(valid_until),
        })
    }
}

fn status(r: Refusal) -> Status {
    match r {
        Refusal::Unauthenticated(m) => Status::unauthenticated(m),
        Refusal::FailedPrecondition(m) => Status::failed_precondition(m),
        Refusal::InvalidArgument(m) => Status::invalid_argument(m),
    }
}

#[tonic::async_trait]
impl Identity for CertifyService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = request.into_inner();
        let identity = req.identity.clone();
        match self.handle(req).await {
            Ok(answer) => {
                self.metrics.certified.inc();
                info!(%identity, "certified");
                Ok(Response::new(answer))
            }
            Err(r) => {
                self.metrics
                    .refused
                    .get_or_create(&RefusalLabels { reason: r.reason() })
                    .inc();
                warn!(%identity, reason = r.reason(), error = %r, "certify refused");
                Err(status(r))
            }
        }
    }
}

/// The name the identity service's certificate carries (what the injected
/// `LINKERD2_PROXY_IDENTITY_SVC_NAME` says).
pub fn service_name(control_ns: &str, trust_domain: &str) -> String {
    kinject_mesh::names::IDENTITY.identity(control_ns, trust_domain)
}

/// The Certify server's own certificate, issued by the current CA and
/// renewed on the first handshake after two thirds of its life, or after the
/// issuer changed (a rotation): no restart, no file, never a handshake
/// without a valid certificate.
#[derive(Debug)]
pub struct RenewingCert {
    ca: CurrentCa,
    name: String,
    lifetime: Duration,
    current: arc_swap::ArcSwap<Issued>,
    renewing: std::sync::Mutex<()>,
}

#[derive(Debug)]
struct Issued {
    key: Arc<rustls::sign::CertifiedKey>,
    /// The CA that signed it: a new one means renew.
    by: Arc<Ca>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl RenewingCert {
    pub fn new(ca: CurrentCa, name: String, lifetime: Duration) -> Result<Self> {
        let first = issue(ca.load_full(), &name, lifetime)?;
        Ok(Self {
            ca,
            name,
            lifetime,
            current: arc_swap::ArcSwap::from_pointee(first),
            renewing: std::sync::Mutex::new(()),
        })
    }

    /// The certificate to serve now, renewed first when due.
    pub fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        let now = OffsetDateTime::now_utc();
        let held = self.current.load();
        let ca = self.ca.load_full();
        let due = crate::ca::needs_renewal(held.not_before, held.not_after, now)
            || !Arc::ptr_eq(&held.by, &ca);
        if due && let Ok(_only_one) = self.renewing.try_lock() {
            match issue(ca, &self.name, self.lifetime) {
                Ok(new) => {
                    info!(name = %self.name, not_after = %new.not_after, "renewed the Certify server's certificate");
                    self.current.store(Arc::new(new));
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "cannot renew the Certify server's certificate; serving the current one")
                }
            }
        }
        self.current.load().key.clone()
    }
}

fn issue(ca: Arc<Ca>, name: &str, lifetime: Duration) -> Result<Issued> {
    let leaf = ca
        .issue(
            &[name.to_string()],
            &[],
            OffsetDateTime::now_utc(),
            lifetime,
        )
        .context("issuing the identity service's certificate")?;
    let key = kinject_runtime::tls::certified_key_from_pem(&leaf.chain_pem, &leaf.key_pem)?;
    Ok(Issued {
        key,
        by: ca,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    })
}

impl rustls::server::ResolvesServerCert for RenewingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

/// Lifetime of the Certify server's own certificate (renewed at two thirds).
pub const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Serves Certify on `addr` until the process ends: TLS 1.3 with a
/// certificate from the CA for [`service_name`] (a [`RenewingCert`]; ALPN
/// `h2` offered but not required, since the proxy offers none), or plaintext
/// with `plaintext` (loopback and tests: the proxy itself dials loopback
/// control planes in plaintext).
pub async fn serve(
    addr: SocketAddr,
    service: CertifyService,
    plaintext: bool,
    stopping: kinject_runtime::shutdown::Stopping,
) -> Result<()> {
    let ca = service.ca.clone();
    let name = service_name(&service.cfg.control_namespace, &service.cfg.trust_domain);
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(IdentityServer::new(service));
    // At the stop, tonic stops accepting, sends GOAWAY and waits for the
    // calls in flight (each is short: a TokenReview and a signature).
    let stopped = async move { stopping.stopped().await };
    if plaintext {
        info!(%addr, %name, "serving Identity/Certify in plaintext");
        return router
            .serve_with_shutdown(addr, stopped)
            .await
            .with_context(|| format!("the identity gRPC server on {addr}"));
    }
    let cert = Arc::new(RenewingCert::new(ca, name.clone(), SERVER_CERT_LIFETIME)?);
    let incoming = kinject_runtime::grpc_tls::incoming(addr, cert, "identity gRPC").await?;
    info!(%addr, %name, "serving Identity/Certify over TLS 1.3");
    router
        .serve_with_incoming_shutdown(incoming, stopped)
        .await
        .with_context(|| format!("the identity gRPC server on {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_renews_itself_when_due() {
        let now = OffsetDateTime::now_utc();
        let root = crate::ca::generate_root("root", now, Duration::from_secs(86400)).expect("root");
        let issuer = Ca::new_issuer(&root, now, Duration::from_secs(86400)).expect("issuer");
        let ca: CurrentCa = Arc::new(arc_swap::ArcSwap::from_pointee(
            Ca::load(&root.cert_pem, &issuer, now).expect("ca"),
        ));
        let name = service_name("linkerd", "cluster.local");
        // Two thirds of a 3 s life (counted from issuance) pass after 2 s.
        let cert =
            RenewingCert::new(ca.clone(), name.clone(), Duration::from_secs(3)).expect("cert");
        let first = cert.current();
        assert!(Arc::ptr_eq(&first, &cert.current()), "not due yet");
        assert_eq!(crate::ca::dns_names(first.cert[0].as_ref()), vec![name]);
        std::thread::sleep(Duration::from_millis(2100));
        let second = cert.current();
        assert!(!Arc::ptr_eq(&first, &second), "renewed once due");
        assert_ne!(first.cert[0], second.cert[0]);
        // A new issuer (a rotation) is used on the next handshake.
        let issuer2 = Ca::new_issuer(&root, now, Duration::from_secs(86400)).expect("issuer");
        let ca2 = Ca::load(&root.cert_pem, &issuer2, now).expect("ca");
        let issuer2_der = crate::ca::parse_pem_cert("i", ca2.issuer_cert_pem()).expect("der");
        ca.store(Arc::new(ca2));
        let third = cert.current();
        assert!(!Arc::ptr_eq(&second, &third), "renewed after the rotation");
        assert!(crate::ca::signed_by(third.cert[0].as_ref(), &issuer2_der));
    }
}
