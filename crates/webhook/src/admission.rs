//! The admission handler: bytes in, bytes out. It reads the cluster only through
//! caches ([`ClusterLookup`]), asks the engine, and answers; Events are queued,
//! never awaited, and a dry-run request gets the same patch with no side effects.
//!
//! Answers are cached: a ReplicaSet scaling up sends the API server's webhook
//! call for N identical pods, and the answer depends only on the object's
//! bytes, the namespace's labels and annotations, the resolved owner and the
//! engine (configuration) in force. The key is a 128-bit hash of all of these;
//! a hit skips parsing the object and running the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::StatusCode;
use kinject_inject::{InjectDecision, Injector, Origin, Owner, PodRequest};
use kinject_k8s::NamespaceInfo;
use kinject_k8s::cache::ClusterLookup;
use kinject_k8s::events::{EventSink, InjectionEvent, kind_name};
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::metrics::{ErrorLabels, Metrics, RequestLabels, ResponseLabels};
use crate::review::{self, Review};

/// Prefix of every admission warning, so users can tell who said it.
const WARNING_PREFIX: &str = "kinject: ";
/// Cached answers kept (bounded; an arbitrary entry is evicted when full).
const CACHE_ENTRIES: usize = 512;

/// What the handler decided for one object, reusable for identical requests.
struct Answer {
    /// Keeps the engine alive, so pointer equality identifies it.
    engine: Arc<Injector>,
    decision: &'static str,
    reason: String,
    patch_b64: Option<String>,
    warnings: Vec<String>,
    /// (namespace, kind, name, injected, note) of the Event to write.
    event: Option<InjectionEvent>,
}

/// The few metadata fields read before deciding whether the engine must run.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PeekMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    owner_references: Vec<PeekOwner>,
}

#[derive(Deserialize)]
struct PeekOwner {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Peek {
    #[serde(default)]
    metadata: Option<PeekMeta>,
}

impl PeekMeta {
    fn controller(&self) -> Option<(&str, &str)> {
        let refs = &self.owner_references;
        refs.iter()
            .find(|r| r.controller == Some(true))
            .or_else(|| (refs.len() == 1).then(|| &refs[0]))
            .map(|r| (r.kind.as_str(), r.name.as_str()))
    }
}

pub struct Admission<L> {
    engine: Arc<ArcSwap<Injector>>,
    cluster: L,
    metrics: Metrics,
    events: EventSink,
    cache: Mutex<HashMap<u128, Arc<Answer>>>,
}

fn cache_key(
    engine: &Arc<Injector>,
    kind: &str,
    ns: &NamespaceInfo,
    owner: Option<&Owner>,
    object: &str,
) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    // Separators keep field boundaries unambiguous.
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(&(Arc::as_ptr(engine) as usize).to_le_bytes());
    field(kind.as_bytes());
    field(ns.name.as_bytes());
    field(&[u8::from(ns.known)]);
    for map in [&ns.labels, &ns.annotations] {
        field(&(map.len() as u64).to_le_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_str().unwrap_or("").as_bytes());
        }
    }
    match owner {
        Some(o) => {
            field(o.kind.as_bytes());
            field(o.name.as_bytes());
        }
        None => field(b"-"),
    }
    field(object.as_bytes());
    h.digest128()
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
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster view this handler reads.
    pub fn cluster(&self) -> &L {
        &self.cluster
    }

    /// Answers one request body: `200` with an AdmissionReview, or `400` with a
    /// message when the body is not a usable AdmissionReview.
    pub async fn handle(&self, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let start = Instant::now();
        self.metrics.in_flight.inc();
        let out = match review::parse(body) {
            Ok(review) => (StatusCode::OK, self.review(review).await),
            Err(e) => {
                debug!(error = %e, "bad admission request");
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        error: "bad_request".into(),
                    })
                    .inc();
                (StatusCode::BAD_REQUEST, format!("{e}\n").into_bytes())
            }
        };
        self.metrics.in_flight.dec();
        self.metrics.latency.observe(start.elapsed().as_secs_f64());
        out
    }

    fn respond(&self, kind: &str, decision: &str, reason: &str) {
        self.metrics
            .responses
            .get_or_create(&ResponseLabels {
                kind: kind.into(),
                decision: decision.into(),
                reason: reason.into(),
            })
            .inc();
    }

    async fn review(&self, review: Review) -> Vec<u8> {
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
        // Only a JSON object is an object; odd metadata (wrong types) is left
        // for the engine to judge, with no owner.
        let peeked = req.object.as_deref().and_then(|raw| {
            serde_json::from_str::<Peek>(raw.get())
                .ok()
                .or_else(|| raw.get().trim_start().starts_with('{').then(Peek::default))
        });
        let (Some(raw), Some(peek)) = (req.object.as_deref(), peeked) else {
            self.respond(&kind, "ignored", "");
            let warning = format!("{WARNING_PREFIX}the request has no object; nothing injected");
            return review::allow(api_version, &req.uid, None, &[warning]);
        };
        let meta = peek.metadata.unwrap_or_default();
        let ns_name = req
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(meta.namespace.as_deref())
            .unwrap_or("default")
            .to_string();
        let ns = self.cluster.namespace(&ns_name).await;
        if !ns.known {
            warn!(namespace = %ns_name, "namespace unknown; deciding without its labels");
        }
        let owner = if kind == "pod" {
            self.cluster.owner(&ns_name, meta.controller()).await
        } else {
            None
        };
        let engine = self.engine.load_full();
        let key = cache_key(&engine, &kind, &ns, owner.as_ref(), raw.get());
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
            .filter(|a| Arc::ptr_eq(&a.engine, &engine));
        let answer = match cached {
            Some(a) => a,
            None => {
                let answer =
                    Arc::new(self.decide(engine, &kind, raw.get(), &ns, &ns_name, owner, &meta));
                if let Ok(mut c) = self.cache.lock() {
                    // Evict one entry rather than clearing: dropping hundreds
                    // of answers at once would stall this request.
                    if c.len() >= CACHE_ENTRIES
                        && let Some(k) = c.keys().next().copied()
                    {
                        c.remove(&k);
                    }
                    c.insert(key, answer.clone());
                }
                answer
            }
        };
        self.respond(&kind, answer.decision, &answer.reason);
        let dry_run = req.dry_run == Some(true);
        if let Some(ev) = &answer.event
            && !dry_run
        {
            self.events.send(ev);
        }
        debug!(namespace = %ns_name, kind = %kind, decision = answer.decision, dry_run, "answered");
        review::allow(
            api_version,
            &req.uid,
            answer.patch_b64.as_deref(),
            &answer.warnings,
        )
    }

    /// Runs the engine for one object (a cache miss).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        engine: Arc<Injector>,
        kind: &str,
        raw: &str,
        ns: &NamespaceInfo,
        ns_name: &str,
        owner: Option<Owner>,
        meta: &PeekMeta,
    ) -> Answer {
        let object: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // Already parsed once as an object, so this cannot fail in practice.
            Err(e) => {
                return Answer {
                    engine,
                    decision: "ignored",
                    reason: String::new(),
                    patch_b64: None,
                    warnings: vec![format!("{WARNING_PREFIX}cannot read the object: {e}")],
                    event: None,
                };
            }
        };
        if kind == "service" {
            let patch = engine.service_patch(&object, Some(&ns.as_meta()));
            return Answer {
                decision: if patch.is_empty() {
                    "ignored"
                } else {
                    "annotated"
                },
                reason: String::new(),
                patch_b64: (!patch.is_empty())
                    .then(|| review::encode_patch(&patch.to_json_bytes())),
                warnings: Vec::new(),
                event: None,
                engine,
            };
        }
        let outcome = engine.inject_pod(&PodRequest {
            pod: &object,
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
            .collect();
        let pod_name = meta
            .name
            .as_deref()
            .or(meta.generate_name.as_deref())
            .unwrap_or("");
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
            reason,
            patch_b64: (!outcome.patch.is_empty())
                .then(|| review::encode_patch(&outcome.patch.to_json_bytes())),
            warnings,
            event: Some(InjectionEvent {
                namespace: ns_name.to_string(),
                kind: event_kind,
                name: event_name,
                injected,
                note,
            }),
            engine,
        }
    }
}
