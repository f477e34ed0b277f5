//! The HTTPS accept loop (owned, not hidden in a framework): TLS handshake,
//! first byte, request head and body are time-bounded so slow, silent or
//! non-TLS clients cannot pin connections; request bodies share a memory
//! budget; HTTP/1 keep-alive outlives the API server's idle pool; every
//! connection is tracked for a graceful drain. The plain-HTTP admin server
//! (`/metrics`, `/live`, `/ready`) is `kinject_runtime::admin`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderValue, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use kinject_k8s::cache::ClusterLookup;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admission::Admission;
use crate::keepalive::{HeadClock, HeadTimed, KEEP_ALIVE_IDLE};
use crate::metrics::ProtocolLabels;
use crate::review;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request head may take from its first byte (HTTP/1: enforced by
/// [`crate::keepalive::HeadTimed`]; idle keep-alive connections wait up to
/// [`KEEP_ALIVE_IDLE`] for that first byte).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay silent after its TLS handshake before its
/// first request starts. hyper's header timer only runs once request bytes
/// arrive, so without this a client could hold a connection (and its
/// buffers) open forever by never sending anything.
pub const FIRST_BYTE_TIMEOUT: Duration = HEADER_READ_TIMEOUT;
/// How long a request body may take to arrive in full, from the end of its
/// headers. The API server sends a review at once and stops waiting after
/// the webhook's `timeoutSeconds` (10 s by default); a body trickling in
/// slower than that only holds memory.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest AdmissionReview accepted (Kubernetes objects are at most ~1.5 MiB,
/// and a review carries the object twice at most).
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// What one connection may read ahead of its handler: hyper's HTTP/1 read
/// buffer (which otherwise grows to ~400 KB) and the HTTP/2 flow-control
/// windows (otherwise 1 MiB per stream). Bytes beyond it wait in the kernel,
/// so under a flood of large bodies memory stays near the [`BodyBudget`].
pub const READ_AHEAD: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per connection (hyper's default is 200). Go's
/// client, the API server's, opens another connection beyond it.
pub const H2_MAX_STREAMS: u32 = 32;
/// Request-body bytes held at once across all requests, by default (see
/// [`BodyBudget`]).
pub const DEFAULT_BODY_MEMORY: usize = 64 * 1024 * 1024;

/// Bounds the memory held by request bodies across all connections.
///
/// [`BODY_LIMIT`] bounds one body; without a global bound, a few hundred
/// clients sending 8 MiB bodies at once take gigabytes (measured: 200 clients
/// of 7 MiB bodies, 1.1 GiB) and get the injector OOM-killed (and, with
/// `failurePolicy: Fail`, stop pod creation cluster-wide). A body's announced
/// `Content-Length` is reserved before any of it is read, so bodies admitted
/// are read at full speed and never sit half-read waiting for budget others
/// hold (counting bytes as they arrive did exactly that: 200 such clients
/// deadlocked each other until their deadlines, ~1 answer/s). A body of
/// unannounced length (chunked) is counted as it arrives. A request that
/// finds the budget spent is not read (its bytes wait in the kernel) until
/// budget frees up or its body deadline passes, then gets `503`. The price:
/// a client can hold what it announced, for at most [`BODY_READ_TIMEOUT`].
/// Beyond the budget, each connection may hold what hyper read ahead of the
/// handler.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    total: usize,
    available: Mutex<usize>,
    freed: Notify,
    /// `admission_request_body_bytes`.
    gauge: Gauge,
}

/// Budget bytes a request holds; given back when dropped.
#[derive(Debug)]
struct Held {
    budget: Arc<BudgetInner>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes > 0 {
            *self.budget.lock() += self.bytes;
            self.budget.gauge.dec_by(self.bytes as i64);
            self.budget.freed.notify_waiters();
        }
    }
}

impl BudgetInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // A poisoned count is still a count (no code panics while holding it).
        self.available
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut available = self.lock();
        let ok = *available >= bytes;
        if ok {
            *available -= bytes;
            self.gauge.inc_by(bytes as i64);
        }
        ok
    }
}

impl BodyBudget {
    /// A budget of `total` bytes (at least 1), reporting the bytes held in
    /// `gauge` (`admission_request_body_bytes`). Less than [`BODY_LIMIT`]
    /// means bodies larger than `total` are refused with `503`.
    pub fn new(total: usize, gauge: Gauge) -> Self {
        let total = total.max(1);
        Self {
            inner: Arc::new(BudgetInner {
                total,
                available: Mutex::new(total),
                freed: Notify::new(),
                gauge,
            }),
        }
    }

    /// Request-body bytes currently held.
    pub fn in_use(&self) -> usize {
        self.inner.total - *self.inner.lock()
    }

    fn nothing(&self) -> Held {
        Held {
            budget: self.inner.clone(),
            bytes: 0,
        }
    }

    /// Adds `more` bytes to `held`, waiting for them until `deadline`.
    /// First fit, not first come: a small review that fits goes ahead of a
    /// large body waiting for room (under a flood of large bodies, the API
    /// server's ordinary reviews still get through).
    async fn take(
        &self,
        held: &mut Held,
        more: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), BodyError> {
        if held.bytes + more > self.inner.total {
            return Err(BodyError::Busy);
        }
        let mut waited = false;
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            // Registered before the check: a release in between still wakes us.
            freed.as_mut().enable();
            if self.inner.try_take(more) {
                held.bytes += more;
                return Ok(());
            }
            if !waited {
                debug!(
                    bytes = more,
                    in_use = self.in_use(),
                    "waiting for request-body budget"
                );
                waited = true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(BodyError::Busy);
            }
        }
    }
}

/// What the `/inject` handler shares between requests.
struct InjectState<L> {
    adm: Arc<Admission<L>>,
    budget: BodyBudget,
}

async fn inject<L: ClusterLookup>(
    State(state): State<Arc<InjectState<L>>>,
    req: Request,
) -> Response {
    let adm = &state.adm;
    // The request taken whole, not as a `HeaderMap` extractor: that would
    // clone every request's headers.
    let (parts, body) = req.into_parts();
    let accepts_gzip = parts
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(review::accepts_gzip);
    // Chunks as they arrived: the handler joins them only if it must parse.
    let read = match read_body(body, &state.budget).await {
        Ok(read) => read,
        Err(e) => {
            adm.count_error(e.metric());
            let mut response = plain_text(e.status(), e.to_string());
            if matches!(e, BodyError::TimedOut | BodyError::Busy) {
                // The rest of the body may still be on its way: this
                // connection cannot carry another request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let parts: Vec<&[u8]> = read.chunks.iter().map(|c| &c[..]).collect();
    let (status, body) = adm.handle_parts(&parts, accepts_gzip).await;
    if status != StatusCode::OK {
        return plain_text(status, Body::new(body));
    }
    let gzip = body.is_gzip();
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            // The representation depends on Accept-Encoding.
            (header::VARY, "Accept-Encoding"),
        ],
        Body::new(body),
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// An error answer: a status and a one-line message.
fn plain_text(status: StatusCode, text: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body is larger than {BODY_LIMIT} bytes\n")]
    TooLarge,
    #[error("request body did not arrive within {}s\n", BODY_READ_TIMEOUT.as_secs())]
    TimedOut,
    #[error("cannot read the request body: {0}\n")]
    Broken(String),
    #[error("server busy: request bodies in flight fill the injector's body memory; retry\n")]
    Busy,
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Self::Broken(_) => StatusCode::BAD_REQUEST,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` label of `admission_errors_total`.
    fn metric(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::TimedOut => "body_timeout",
            Self::Broken(_) => "bad_body",
            Self::Busy => "busy",
        }
    }
}

/// A body as it arrived (chunks, no copy) and the budget its bytes hold until
/// the request is answered.
struct ReadBody {
    chunks: Vec<Bytes>,
    _held: Held,
}

/// Reads a body of at most [`BODY_LIMIT`] bytes within [`BODY_READ_TIMEOUT`],
/// counting its bytes against `budget`.
async fn read_body(body: Body, budget: &BodyBudget) -> Result<ReadBody, BodyError> {
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut held = budget.nothing();
    if let Some(announced) = body.size_hint().exact() {
        let announced = usize::try_from(announced).map_err(|_| BodyError::TooLarge)?;
        if announced > BODY_LIMIT {
            return Err(BodyError::TooLarge);
        }
        budget.take(&mut held, announced, deadline).await?;
    }
    let mut received = 0;
    let mut body = Limited::new(body, BODY_LIMIT);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| BodyError::TimedOut)?;
        match frame {
            None => {
                return Ok(ReadBody {
                    chunks,
                    _held: held,
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len();
                    if received > held.bytes {
                        // Until the budget admits these bytes, no more are read.
                        let more = received - held.bytes;
                        budget.take(&mut held, more, deadline).await?;
                    }
                    chunks.push(data);
                }
            }
            Some(Err(e)) if e.is::<LengthLimitError>() => return Err(BodyError::TooLarge),
            Some(Err(e)) => return Err(BodyError::Broken(e.to_string())),
        }
    }
}

/// `POST /inject` (and `POST /`, the seed's path); other methods get 405,
/// bodies over [`BODY_LIMIT`] get 413, and request bodies together hold at
/// most `budget` (see [`BodyBudget`]).
pub fn admission_router<L: ClusterLookup>(adm: Arc<Admission<L>>, budget: BodyBudget) -> Router {
    Router::new()
        .route("/inject", post(inject::<L>))
        .route("/", post(inject::<L>))
        .with_state(Arc::new(InjectState { adm, budget }))
}

/// While the server drains, asks HTTP/1.1 clients to close their
/// connection after this answer (`Connection: close`), so the next request
/// goes through the Service to another replica. HTTP/2 has no such header;
/// its connections end with the GOAWAY of the graceful stop.
pub async fn close_while_draining(
    axum::extract::State(stopping): axum::extract::State<kinject_runtime::shutdown::Stopping>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let http11 = req.version() == http::Version::HTTP_11;
    let mut res = next.run(req).await;
    if http11 && stopping.is_draining() {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// Serves `app` over TLS until `shutdown` turns true, then drains in-flight
/// connections for at most [`DRAIN_TIMEOUT`].
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    connections: Family<ProtocolLabels, Counter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(
                    serve_connection(
                        acceptor.clone(),
                        tcp,
                        app.clone(),
                        connections.clone(),
                        graceful.watcher(),
                    )
                    .instrument(info_span!("conn", client.ip = %peer.ip(), client.port = peer.port())),
                );
            }
        }
    }
    info!("draining connections");
    tokio::select! {
        _ = graceful.shutdown() => info!("all connections drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("drain timed out; closing remaining connections"),
    }
}

/// One accepted connection: the TLS handshake, its first byte, then HTTP/2
/// (ALPN `h2`) or HTTP/1.1, each bounded as the constants above say.
async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    app: Router,
    connections: Family<ProtocolLabels, Counter>,
    watcher: Watcher,
) {
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let protocol = if h2 { "h2" } else { "http/1.1" };
    debug!(protocol, "TLS connection");
    connections
        .get_or_create(&ProtocolLabels { protocol })
        .inc();
    // Nothing is parsed here: the bytes stay buffered for hyper.
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, tls.fill_buf()).await {
        Ok(Ok([])) => return,
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            debug!(error = %e, "connection failed before its first request");
            return;
        }
        Err(_) => {
            debug!("no request after the TLS handshake; closing");
            return;
        }
    }
    let result = if h2 {
        // The connection window fits every stream's window: a
        // stream whose handler waits (for body budget) can then
        // never starve the connection's other streams (hyper's
        // defaults, 1 MiB for both, let one stream take it all).
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .initial_stream_window_size(READ_AHEAD as u32)
            .initial_connection_window_size(READ_AHEAD as u32 * H2_MAX_STREAMS);
        let service = TowerToHyperService::new(app);
        watcher
            .watch(builder.serve_connection(TokioIo::new(tls), service))
            .await
    } else {
        // HTTP/1.1 (TLS without ALPN h2; RFC 9113 requires it
        // for h2): keep-alive idle and request-head limits
        // kept apart (see `keepalive`).
        let clock = HeadClock::new(HEADER_READ_TIMEOUT);
        let io = TokioIo::new(HeadTimed::new(tls, clock.clone()));
        let service = service_fn(move |req: http::Request<Incoming>| {
            let serving = clock.request_started();
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await;
                drop(serving);
                response
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(KEEP_ALIVE_IDLE)
            .max_buf_size(READ_AHEAD);
        watcher.watch(builder.serve_connection(io, service)).await
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}
