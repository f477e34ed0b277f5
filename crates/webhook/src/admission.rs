//! The admission handler: bytes in, bytes out. It reads the cluster only through
//! caches ([`ClusterLookup`]), asks the engine, and answers; Events are queued,
//! never awaited, and a dry-run request gets the same patch with no side effects.
//!
//! Answers are cached ([`crate::answer_cache`]): a ReplicaSet scaling up
//! sends one webhook call per identical pod.

use std::cell::LazyCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use http::StatusCode;
use kinject_inject::{InjectDecision, Injector, Origin, Owner, PodRequest};
use kinject_k8s::NamespaceInfo;
use kinject_k8s::cache::{ClusterLookup, owner_ref_from_json};
use kinject_k8s::events::{EventSink, InjectionEvent, kind_name};
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::{debug, info, warn};

use crate::answer_cache::{
    Bounded, context_key, genuine_times, keyed_hash, object_key, time_spans, time_spans_in_parts,
    uid_span,
};
use crate::metrics::{CacheLabels, ErrorLabels, Metrics, RequestLabels, ResponseLabels};
use crate::review::{self, GzipTail, Reply, Review};

/// Prefix of every admission warning, so users can tell who said it.
const WARNING_PREFIX: &str = "kinject: ";
/// What the handler decided for one object, reusable for identical requests.
struct Answer {
    /// Keeps the engine alive, so pointer equality identifies it.
    engine: Arc<Injector>,
    /// Hash of what the answer depends on besides the object: the namespace's
    /// labels and annotations and the resolved owner.
    context: u128,
    /// What was read from the object's metadata, so a hit needs no parse.
    facts: ObjectFacts,
    decision: &'static str,
    /// The response after the uid: the patch and warnings (shared bytes).
    tail: Bytes,
    /// `tail` gzip-compressed, made the first time the answer is served again
    /// to a client that accepts gzip (`None` inside: not worth compressing).
    gzip: OnceLock<Option<GzipTail>>,
    event: Option<InjectionEvent>,
    /// `admission_responses{kind, decision, reason}`, resolved once.
    counted: Counter,
}

/// The few metadata fields the handler itself reads (the engine reads the rest).
/// Wrong types count as absent: the engine judges odd metadata.
#[derive(Clone)]
struct ObjectFacts {
    /// `metadata.name`, else `metadata.generateName` (the API server names a
    /// pod after admission).
    name: Option<String>,
    namespace: Option<String>,
    /// (kind, name) of the controller reference.
    controller: Option<(String, String)>,
}

impl ObjectFacts {
    fn of(object: &Value) -> Self {
        let metadata = object.get("metadata");
        let field = |k: &str| {
            metadata
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Self {
            name: field("name").or_else(|| field("generateName")),
            namespace: field("namespace"),
            controller: metadata.and_then(owner_ref_from_json),
        }
    }

    fn controller(&self) -> Option<(&str, &str)> {
        self.controller
            .as_ref()
            .map(|(k, n)| (k.as_str(), n.as_str()))
    }
}

/// A review seen before, up to its uid: everything the fast path needs to
/// answer without parsing.
struct Reviewed {
    api_version: &'static str,
    kind: String,
    ns_name: String,
    dry_run: bool,
    answer: Arc<Answer>,
    /// `admission_requests{kind}`, resolved once.
    requests: Counter,
}

pub struct Admission<L> {
    engine: Arc<ArcSwap<Injector>>,
    cluster: L,
    metrics: Metrics,
    events: EventSink,
    seed: u64,
    /// Whether reused answers may be gzip-encoded for clients that accept it.
    gzip: bool,
    objects: Bounded<Arc<Answer>>,
    reviews: Bounded<Arc<Reviewed>>,
}

impl<L: ClusterLookup> Admission<L> {
    pub fn new(
        engine: Arc<ArcSwap<Injector>>,
        cluster: L,
        metrics: Metrics,
        events: EventSink,
    ) -> Self {
        Self {
            engine,
            cluster,
            metrics,
            events,
            seed: {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(0u8)
            },
            gzip: true,
            objects: Bounded::new(),
            reviews: Bounded::new(),
        }
    }

    /// Whether reused answers are gzip-encoded for clients that accept it
    /// (default: yes).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Counts a request answered with an HTTP error before it reached the
    /// handler (`too_large`, …).
    pub fn count_error(&self, error: &str) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                error: error.into(),
            })
            .inc();
    }

    /// The cluster view this handler reads.
    pub fn cluster(&self) -> &L {
        &self.cluster
    }

    /// Answers one request body: `200` with an AdmissionReview, or `400` with a
    /// message when the body is not a usable AdmissionReview.
    pub async fn handle(&self, body: &[u8]) -> (StatusCode, Reply) {
        self.handle_parts(&[body], false).await
    }

    /// [`Admission::handle`] for a body as it arrived: in chunks. The fast path
    /// hashes the chunks where they are; only a body that must be parsed is
    /// joined (a 100 KB review is then never copied on a cache hit).
    /// `accepts_gzip`: the client's `Accept-Encoding` admits gzip; a reused
    /// answer is then sent compressed (a ~10.8 KB patch answer becomes ~4.3 KB).
    pub async fn handle_parts(&self, parts: &[&[u8]], accepts_gzip: bool) -> (StatusCode, Reply) {
        let start = Instant::now();
        self.metrics.in_flight.inc();
        // The uid must lie in the first part (the API server's is ~60 bytes
        // in); otherwise the general path decides.
        let fast = match parts.first().and_then(|first| uid_span(first)) {
            Some(span) => self.seen_review(parts, span, accepts_gzip).await,
            None => None,
        };
        let out = match fast {
            Some(answer) => (StatusCode::OK, answer),
            None => match parts {
                [] => self.parse_and_review(&[], accepts_gzip).await,
                [body] => self.parse_and_review(body, accepts_gzip).await,
                _ => self.parse_and_review(&parts.concat(), accepts_gzip).await,
            },
        };
        self.metrics.in_flight.dec();
        self.metrics.latency.observe(start.elapsed().as_secs_f64());
        out
    }

    /// The fast path: a body seen before up to its uid, in a cluster context
    /// that has not changed since.
    async fn seen_review(
        &self,
        parts: &[&[u8]],
        span: (usize, usize),
        accepts_gzip: bool,
    ) -> Option<Reply> {
        let mut spans = vec![span];
        spans.extend(time_spans_in_parts(parts, span.1));
        let key = keyed_hash(self.seed, parts, &spans);
        let seen = self.reviews.get(key)?;
        // `uid_span` admits ASCII only.
        let uid = std::str::from_utf8(&parts.first()?[span.0..span.1]).ok()?;
        let answer = &seen.answer;
        let ns = self.cluster.namespace(&seen.ns_name).await;
        let owner = if seen.kind == "pod" {
            self.cluster
                .owner(&seen.ns_name, answer.facts.controller())
                .await
        } else {
            None
        };
        let engine = self.engine.load_full();
        if !Arc::ptr_eq(&answer.engine, &engine)
            || context_key(&engine, &ns, owner.as_ref()) != answer.context
        {
            return None;
        }
        seen.requests.inc();
        self.metrics
            .cache_hits
            .get_or_create(&CacheLabels { level: "review" })
            .inc();
        Some(self.answer(
            seen.api_version,
            uid,
            &seen.kind,
            &seen.ns_name,
            seen.dry_run,
            answer,
            true,
            accepts_gzip,
        ))
    }

    async fn parse_and_review(&self, body: &[u8], accepts_gzip: bool) -> (StatusCode, Reply) {
        match review::parse(body) {
            Ok(review) => (
                StatusCode::OK,
                self.review(body, review, accepts_gzip).await,
            ),
            Err(e) => {
                debug!(error = %e, "bad admission request");
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        error: "bad_request".into(),
                    })
                    .inc();
                (StatusCode::BAD_REQUEST, Reply::whole(format!("{e}\n")))
            }
        }
    }

    /// Counts the decision, queues the Event (not for a dry run) and writes
    /// the response. `reused` (from the cache) and `accepts_gzip`: send it
    /// gzip-encoded. Only reused answers are compressed: compressing costs
    /// ~100 us once, which a one-off answer would not earn back.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        api_version: &'static str,
        uid: &str,
        kind: &str,
        ns_name: &str,
        dry_run: bool,
        answer: &Answer,
        reused: bool,
        accepts_gzip: bool,
    ) -> Reply {
        answer.counted.inc();
        if let Some(ev) = &answer.event
            && !dry_run
        {
            self.events.send(ev);
        }
        debug!(namespace = %ns_name, kind = %kind, decision = answer.decision, dry_run, "answered");
        if self.gzip && reused && accepts_gzip {
            let compressed = answer
                .gzip
                .get_or_init(|| GzipTail::compress(&answer.tail))
                .as_ref()
                .and_then(|gz| review::allow_gzip(api_version, uid, gz));
            if let Some(reply) = compressed {
                self.metrics.gzip_replies.inc();
                return reply;
            }
        }
        review::allow_with(api_version, uid, answer.tail.clone())
    }

    fn respond(&self, kind: &str, decision: &str, reason: &str) {
        self.response_counter(kind, decision, reason).inc();
    }

    fn response_counter(&self, kind: &str, decision: &str, reason: &str) -> Counter {
        self.metrics
            .responses
            .get_or_create(&ResponseLabels {
                kind: kind.into(),
                decision: decision.into(),
                reason: reason.into(),
            })
            .clone()
    }

    /// The review-cache key of `body`, if its twins may be answered from
    /// it: the spans the key leaves out are exactly this request's uid and
    /// the pod's managedFields timestamps (`times`, offsets in `object`).
    fn review_key(
        &self,
        body: &[u8],
        uid: &str,
        object: &RawValue,
        times: &[(usize, usize)],
    ) -> Option<u128> {
        // A uid that had to be unescaped is a copy: it is not at the span.
        let span = uid_span(body)?;
        let object_at = object.get().as_ptr() as usize - body.as_ptr() as usize;
        let times_in_body: Vec<_> = times
            .iter()
            .map(|(s, e)| (object_at + s, object_at + e))
            .collect();
        if uid.as_ptr() as usize != body.as_ptr() as usize + span.0
            || uid.len() != span.1 - span.0
            || time_spans_in_parts(&[body], span.1) != times_in_body
        {
            return None;
        }
        let mut spans = vec![span];
        spans.extend(times_in_body);
        Some(keyed_hash(self.seed, &[body], &spans))
    }

    async fn review(&self, body: &[u8], review: Review<'_>, accepts_gzip: bool) -> Reply {
        let Review {
            api_version,
            request: req,
        } = review;
        let kind = req.kind.kind.to_ascii_lowercase();
        self.metrics
            .requests
            .get_or_create(&RequestLabels { kind: kind.clone() })
            .inc();
        if req.operation != "CREATE" || !matches!(kind.as_str(), "pod" | "service") {
            self.respond(&kind, "ignored", "");
            return review::allow(api_version, &req.uid, None, &[]);
        }
        let no_object = |this: &Self| {
            this.respond(&kind, "ignored", "");
            let warning = format!("{WARNING_PREFIX}the request has no object; nothing injected");
            review::allow(api_version, &req.uid, None, &[warning])
        };
        let Some(raw) = req.object else {
            return no_object(self);
        };
        // A hit needs no parse of the object: its facts are in the entry. The
        // review parse has already validated the object's JSON.
        let mut times = Vec::new();
        time_spans(raw.get().as_bytes(), 0, 0, &mut times);
        let object_key = object_key(self.seed, &kind, raw.get(), &times);
        let entry = self.objects.get(object_key);
        // Twins may differ in the spans left out only if those are exactly
        // the pod's managedFields timestamps (not a look-alike elsewhere).
        // (Looked at only when an entry is made: it parses the whole object.)
        let keyable = LazyCell::new(|| genuine_times(raw).is_some_and(|g| g == times));
        let (facts, mut parsed) = match &entry {
            Some(e) => (Facts::Cached(e.clone()), None),
            None => match serde_json::from_str::<Value>(raw.get()) {
                // Only a JSON object is an object (not null, a string, …).
                Ok(v) if v.is_object() => (Facts::Read(ObjectFacts::of(&v)), Some(v)),
                _ => return no_object(self),
            },
        };
        let facts = facts.get();
        let ns_name = req
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(facts.namespace.as_deref())
            .unwrap_or("default");
        let ns = self.cluster.namespace(ns_name).await;
        if !ns.known {
            warn!(namespace = %ns_name, "namespace unknown; deciding without its labels");
        }
        let owner = if kind == "pod" {
            self.cluster.owner(ns_name, facts.controller()).await
        } else {
            None
        };
        let engine = self.engine.load_full();
        let context = context_key(&engine, &ns, owner.as_ref());
        let (answer, reused) =
            match entry.filter(|a| a.context == context && Arc::ptr_eq(&a.engine, &engine)) {
                Some(a) => {
                    self.metrics
                        .cache_hits
                        .get_or_create(&CacheLabels { level: "object" })
                        .inc();
                    (a, true)
                }
                None => {
                    let object = match parsed.take() {
                        Some(v) => v,
                        None => match serde_json::from_str::<Value>(raw.get()) {
                            Ok(v) => v,
                            Err(_) => return no_object(self),
                        },
                    };
                    let answer = Arc::new(self.decide(
                        engine,
                        context,
                        facts.clone(),
                        &kind,
                        &object,
                        &ns,
                        ns_name,
                        owner,
                    ));
                    if *keyable {
                        self.objects.insert(object_key, answer.clone());
                    }
                    (answer, false)
                }
            };
        let dry_run = req.dry_run == Some(true);
        // (`keyable` last: it parses the whole object, which a body in
        // another layout never needs.)
        if let Some(key) = self.review_key(body, &req.uid, raw, &times)
            && *keyable
        {
            let seen = Reviewed {
                requests: self
                    .metrics
                    .requests
                    .get_or_create(&RequestLabels { kind: kind.clone() })
                    .clone(),
                api_version,
                kind: kind.clone(),
                ns_name: ns_name.to_string(),
                dry_run,
                answer: answer.clone(),
            };
            self.reviews.insert(key, Arc::new(seen));
        }
        self.answer(
            api_version,
            &req.uid,
            &kind,
            ns_name,
            dry_run,
            &answer,
            reused,
            accepts_gzip,
        )
    }

    /// Runs the engine for one object (a cache miss).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        engine: Arc<Injector>,
        context: u128,
        facts: ObjectFacts,
        kind: &str,
        object: &Value,
        ns: &NamespaceInfo,
        ns_name: &str,
        owner: Option<Owner>,
    ) -> Answer {
        if kind == "service" {
            let patch = engine.service_patch(object, Some(&ns.as_meta()));
            let decision = if patch.is_empty() {
                "ignored"
            } else {
                "annotated"
            };
            return Answer {
                decision,
                counted: self.response_counter(kind, decision, ""),
                tail: review::allow_tail(
                    (!patch.is_empty())
                        .then(|| review::encode_patch(&patch.to_json_bytes()))
                        .as_deref(),
                    &[],
                ),
                event: None,
                gzip: OnceLock::new(),
                engine,
                context,
                facts,
            };
        }
        let outcome = engine.inject_pod(&PodRequest {
            pod: object,
            namespace: Some(ns.as_meta()),
            namespace_name: Some(ns_name),
            owner: owner.as_ref(),
            origin: Origin::Webhook,
            prefix: "",
        });
        let warnings = outcome
            .warnings
            .iter()
            .map(|w| format!("{WARNING_PREFIX}{w}"))
            .collect::<Vec<_>>();
        let pod_name = facts.name.as_deref().unwrap_or("");
        let (event_kind, event_name) = match &owner {
            Some(o) => (kind_name(&o.kind), o.name.clone()),
            None => ("Pod".to_string(), pod_name.to_string()),
        };
        let (decision, reason, injected, note) = match &outcome.decision {
            InjectDecision::Inject { source } => {
                info!(namespace = %ns_name, pod = %pod_name, owner = %event_name, source = ?source, "injected");
                (
                    "injected",
                    String::new(),
                    true,
                    "Linkerd sidecar proxy injected".to_string(),
                )
            }
            InjectDecision::Skip { reasons } => {
                let codes: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
                info!(namespace = %ns_name, pod = %pod_name, reasons = %codes.join(","), "skipped");
                let why: Vec<&str> = reasons.iter().map(|r| r.describe()).collect();
                (
                    "skipped",
                    codes.join(","),
                    false,
                    format!(
                        "Linkerd sidecar proxy injection skipped: {}",
                        why.join(", ")
                    ),
                )
            }
        };
        Answer {
            decision,
            counted: self.response_counter(kind, decision, &reason),
            tail: review::allow_tail(
                (!outcome.patch.is_empty())
                    .then(|| review::encode_patch(&outcome.patch.to_json_bytes()))
                    .as_deref(),
                &warnings,
            ),
            event: Some(InjectionEvent {
                namespace: ns_name.to_string(),
                kind: event_kind,
                name: event_name,
                injected,
                note,
            }),
            gzip: OnceLock::new(),
            engine,
            context,
            facts,
        }
    }
}

/// The object's facts, from a cache entry or read from the parsed object.
enum Facts {
    Cached(Arc<Answer>),
    Read(ObjectFacts),
}

impl Facts {
    fn get(&self) -> &ObjectFacts {
        match self {
            Facts::Cached(a) => &a.facts,
            Facts::Read(f) => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use serde_json::json;

    struct Cluster;

    impl ClusterLookup for Cluster {
        async fn namespace(&self, name: &str) -> NamespaceInfo {
            NamespaceInfo {
                known: true,
                ..NamespaceInfo::unknown(name)
            }
        }
        async fn owner(&self, _ns: &str, c: Option<(&str, &str)>) -> Option<Owner> {
            c.map(|(kind, name)| Owner {
                kind: kind.to_ascii_lowercase(),
                name: name.to_string(),
            })
        }
    }

    fn admission() -> Admission<Cluster> {
        let engine = Injector::new(kinject_inject::InjectorConfig {
            trust_anchors_pem: "ANCHORS".into(),
            native_sidecars_supported: false,
            ..Default::default()
        })
        .expect("default configuration");
        Admission::new(
            Arc::new(ArcSwap::from_pointee(engine)),
            Cluster,
            Metrics::register(&mut Registry::default()),
            EventSink::disabled(),
        )
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "web-", "namespace": "apps",
                            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true}]},
               "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    }

    /// A review in the API server's layout (`uid` first in `request`).
    fn review(uid: &str, object: Value) -> String {
        json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
               "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                           "namespace": "apps", "operation": "CREATE", "object": object}})
        .to_string()
    }

    fn hits(adm: &Admission<Cluster>, level: &'static str) -> u64 {
        adm.metrics
            .cache_hits
            .get_or_create(&CacheLabels { level })
            .get()
    }

    async fn ask(adm: &Admission<Cluster>, body: &str) -> Value {
        let (status, out) = adm.handle(body.as_bytes()).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&out.to_vec()).expect("a JSON response")
    }

    #[tokio::test]
    async fn twins_are_answered_from_the_review_cache_with_their_own_uid() {
        let adm = admission();
        let first = ask(&adm, &review("uid-1", pod())).await;
        assert_eq!(hits(&adm, "review"), 0);
        let second = ask(&adm, &review("uid-2", pod())).await;
        assert_eq!(hits(&adm, "review"), 1);
        assert_eq!(first["response"]["uid"], "uid-1");
        assert_eq!(second["response"]["uid"], "uid-2");
        assert!(first["response"]["patch"].is_string());
        assert_eq!(first["response"]["patch"], second["response"]["patch"]);
        // Another field changed: not a twin.
        let mut other = pod();
        other["metadata"]["annotations"] = json!({"config.linkerd.io/proxy-log-level": "debug"});
        let third = ask(&adm, &review("uid-3", other)).await;
        assert_eq!(hits(&adm, "review"), 1);
        assert_eq!(third["response"]["uid"], "uid-3");
        assert_ne!(third["response"]["patch"], first["response"]["patch"]);
    }

    #[tokio::test]
    async fn a_body_in_chunks_is_the_same_body() {
        let adm = admission();
        let first = ask(&adm, &review("uid-1", pod())).await;
        let body = review("uid-2", pod());
        let b = body.as_bytes();
        // Split after the uid (fast path over the chunks), and inside the uid
        // (the general path joins them); both answer like the whole body.
        let uid_end = body.find("uid-2").unwrap() + 5;
        for cut in [uid_end + 7, uid_end - 2] {
            let (status, out) = adm
                .handle_parts(&[&b[..cut], &b[cut..cut + 50], &b[cut + 50..]], false)
                .await;
            assert_eq!(status, StatusCode::OK);
            let out: Value = serde_json::from_slice(&out.to_vec()).unwrap();
            assert_eq!(out["response"]["uid"], "uid-2");
            assert_eq!(out["response"]["patch"], first["response"]["patch"]);
        }
        assert_eq!(hits(&adm, "review"), 1);
        assert_eq!(hits(&adm, "object"), 1);
        // Broken JSON in a later chunk is still broken.
        let broken = body.replace("\"CREATE\"", "\"CREATE");
        let b = broken.as_bytes();
        let (status, _) = adm.handle_parts(&[&b[..100], &b[100..]], false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// Asks with `Accept-Encoding: gzip`; the reply decoded, and whether it
    /// came compressed.
    async fn ask_gzip(adm: &Admission<Cluster>, body: &str) -> (Value, bool) {
        use std::io::Read as _;
        let (status, out) = adm.handle_parts(&[body.as_bytes()], true).await;
        assert_eq!(status, StatusCode::OK);
        let mut bytes = out.to_vec();
        if out.is_gzip() {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .expect("valid gzip");
            bytes = plain;
        }
        (serde_json::from_slice(&bytes).expect("JSON"), out.is_gzip())
    }

    #[tokio::test]
    async fn reused_answers_are_gzipped_for_clients_that_accept_it() {
        let adm = admission();
        // A first answer is sent as is: compressing it would not pay.
        let (first, gz) = ask_gzip(&adm, &review("uid-1", pod())).await;
        assert!(!gz);
        // Its twin (review cache) and a re-laid-out body (object cache) are
        // compressed, and decode to their own uid and the same patch.
        let (second, gz) = ask_gzip(&adm, &review("uid-2", pod())).await;
        assert!(gz);
        assert_eq!(second["response"]["uid"], "uid-2");
        assert_eq!(second["response"]["patch"], first["response"]["patch"]);
        let other_layout =
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "request": {"operation": "CREATE", "uid": "uid-3", "namespace": "apps",
                        "kind": {"kind": "Pod"}, "object": pod()}})
            .to_string();
        let (third, gz) = ask_gzip(&adm, &other_layout).await;
        assert!(gz);
        assert_eq!(third["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(third["response"]["uid"], "uid-3");
        assert_eq!(third["response"]["patch"], first["response"]["patch"]);
        assert_eq!(adm.metrics.gzip_replies.get(), 2);
        // Without Accept-Encoding the same answer goes out plain.
        let (status, plain) = adm.handle(review("uid-4", pod()).as_bytes()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!plain.is_gzip());
        assert_eq!(adm.metrics.gzip_replies.get(), 2);
        // A skip answer is too small to compress.
        let mut skipped = pod();
        skipped["metadata"]["annotations"] = json!({"linkerd.io/inject": "disabled"});
        for uid in ["s1", "s2"] {
            let (out, gz) = ask_gzip(&adm, &review(uid, skipped.clone())).await;
            assert!(!gz);
            assert!(out["response"].get("patch").is_none());
        }
        // Turned off, nothing is compressed.
        let adm = admission().with_gzip(false);
        for uid in ["a", "b", "c"] {
            assert!(!ask_gzip(&adm, &review(uid, pod())).await.1);
        }
        assert_eq!(adm.metrics.gzip_replies.get(), 0);
    }

    /// A pod as the API server hands it over: with managedFields stamped to
    /// the second the controller created it.
    fn managed_pod(time: &str) -> Value {
        let mut p = pod();
        p["metadata"]["managedFields"] = json!([{"manager": "kube-controller-manager",
            "operation": "Update", "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:ownerReferences": {".": {}}}}}]);
        p
    }

    #[tokio::test]
    async fn twins_created_in_different_seconds_are_twins() {
        let adm = admission();
        let first = ask(&adm, &review("uid-1", managed_pod("2026-11-25T03:15:10Z"))).await;
        let second = ask(&adm, &review("uid-2", managed_pod("2026-11-25T03:15:12Z"))).await;
        assert_eq!(hits(&adm, "review"), 1);
        assert_eq!(second["response"]["uid"], "uid-2");
        assert_eq!(first["response"]["patch"], second["response"]["patch"]);
        // Whatever the parts, unless they cut through the managedFields (then
        // the general path answers, from the object cache).
        let body = review("uid-3", managed_pod("2026-11-25T03:15:13Z"));
        let b = body.as_bytes();
        let inside = body.find("03:15:13").unwrap();
        let after = body.find("\"spec\"").unwrap();
        assert!(inside < after);
        for (cut, review_hits, object_hits) in [(after, 2, 0), (inside, 2, 1)] {
            let (status, out) = adm.handle_parts(&[&b[..cut], &b[cut..]], false).await;
            assert_eq!(status, StatusCode::OK);
            let out: Value = serde_json::from_slice(&out.to_vec()).unwrap();
            assert_eq!(out["response"]["patch"], first["response"]["patch"]);
            assert_eq!(hits(&adm, "review"), review_hits, "cut at {cut}");
            assert_eq!(hits(&adm, "object"), object_hits, "cut at {cut}");
        }
        // Other layouts: the object cache leaves managedFields out too.
        let other = |uid: &str, time: &str| {
            json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                   "request": {"operation": "CREATE", "uid": uid, "namespace": "apps",
                               "kind": {"kind": "Pod"}, "object": managed_pod(time)}})
            .to_string()
        };
        let adm = admission();
        ask(&adm, &other("a", "2026-11-25T03:15:10Z")).await;
        let b = ask(&adm, &other("b", "2026-11-25T03:16:00Z")).await;
        assert_eq!((hits(&adm, "review"), hits(&adm, "object")), (0, 1));
        assert_eq!(b["response"]["patch"], first["response"]["patch"]);
    }

    #[tokio::test]
    async fn only_the_pods_own_timestamps_are_left_out() {
        // A look-alike before the object (a request field): the review is not
        // learnt; the object still is.
        let adm = admission();
        let with_option = |uid: &str, time: &str| {
            json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                   "request": {"uid": uid, "kind": {"kind": "Pod"}, "namespace": "apps",
                               "operation": "CREATE", "options": {"time": "2026-01-01T00:00:00Z"},
                               "object": managed_pod(time)}})
            .to_string()
        };
        for (uid, time) in [
            ("e1", "2026-11-25T03:15:10Z"),
            ("e2", "2026-11-25T03:15:11Z"),
        ] {
            let out = ask(&adm, &with_option(uid, time)).await;
            assert_eq!(out["response"]["uid"], uid);
        }
        assert_eq!((hits(&adm, "review"), hits(&adm, "object")), (0, 1));
        // A look-alike inside the pod but not in its managedFields (a
        // nodeSelector key named `time`): such a pod is never learnt, so a
        // difference there always counts.
        let adm = admission();
        let odd = |uid: &str, annotation: &str, zone: &str| {
            let mut p = managed_pod("2026-11-25T03:15:10Z");
            p["spec"]["nodeSelector"] = json!({"time": zone});
            p["metadata"]["annotations"] = json!({"linkerd.io/inject": annotation});
            review(uid, p)
        };
        let on = ask(&adm, &odd("o1", "enabled", "a")).await;
        let off = ask(&adm, &odd("o2", "disabled", "a")).await;
        assert!(on["response"]["patch"].is_string());
        assert!(off["response"].get("patch").is_none());
        ask(&adm, &odd("o3", "enabled", "b")).await;
        ask(&adm, &odd("o4", "enabled", "b")).await;
        assert_eq!((hits(&adm, "review"), hits(&adm, "object")), (0, 0));
        // Duplicate metadata keys: the pod's own timestamps cannot be told.
        let dup = review("d1", managed_pod("2026-11-25T03:15:10Z")).replacen(
            "\"metadata\":{",
            "\"metadata\":{},\"metadata\":{",
            1,
        );
        let object = &dup[dup.find("\"object\":").unwrap() + 9..dup.len() - 2];
        assert!(
            genuine_times(serde_json::from_str::<&serde_json::value::RawValue>(object).unwrap())
                .is_none()
        );
    }

    #[tokio::test]
    async fn other_layouts_use_the_object_cache() {
        let adm = admission();
        let body = |uid: &str| {
            json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                   "request": {"operation": "CREATE", "uid": uid, "namespace": "apps",
                               "kind": {"kind": "Pod"}, "object": pod()}})
            .to_string()
        };
        let first = ask(&adm, &body("a")).await;
        let second = ask(&adm, &body("b")).await;
        assert_eq!(hits(&adm, "review"), 0);
        assert_eq!(hits(&adm, "object"), 1);
        assert_eq!(second["response"]["uid"], "b");
        assert_eq!(first["response"]["patch"], second["response"]["patch"]);
    }

    #[tokio::test]
    async fn a_decoy_uid_marker_never_replaces_the_real_uid() {
        // The first `"request":{"uid":"` is not the request's: the fast path
        // must neither learn this body nor answer with the decoy.
        let adm = admission();
        let body = |uid: &str| {
            json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                   "decoy": {"request": {"uid": "decoy"}},
                   "request": {"uid": uid, "kind": {"kind": "Pod"}, "namespace": "apps",
                               "operation": "CREATE", "object": pod()}})
            .to_string()
        };
        for uid in ["real-1", "real-2", "real-3"] {
            let out = ask(&adm, &body(uid)).await;
            assert_eq!(out["response"]["uid"], uid);
        }
        assert_eq!(hits(&adm, "review"), 0);
        assert_eq!(hits(&adm, "object"), 2);
    }

    #[tokio::test]
    async fn escaped_uids_take_the_general_path() {
        let adm = admission();
        for _ in 0..2 {
            let body = review("u\\u0031", pod()).replace("u\\\\u0031", "u\\u0031");
            assert!(body.contains(r#""uid":"u\u0031""#), "{body}");
            let out = ask(&adm, &body).await;
            assert_eq!(out["response"]["uid"], "u1");
        }
        assert_eq!(hits(&adm, "review"), 0);
    }

    #[tokio::test]
    async fn a_twin_with_broken_json_elsewhere_is_not_a_twin() {
        let adm = admission();
        ask(&adm, &review("uid-1", pod())).await;
        let broken = review("uid-2", pod()).replace("\"CREATE\"", "\"CREATE");
        let (status, _) = adm.handle(broken.as_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The uid span ends at the first quote: text spliced in after it is
        // part of the rest of the body, which then differs.
        let spliced = review("uid-1", pod()).replace("uid-1", "uid\",\"x\":\"1");
        let out = ask(&adm, &spliced).await;
        assert_eq!(out["response"]["uid"], "uid");
        assert_eq!(hits(&adm, "review"), 0);
    }
}
