//! The admission handler: bytes in, bytes out. It reads the cluster only through
//! caches ([`ClusterLookup`]), asks the engine, and answers; Events are queued,
//! never awaited, and a dry-run request gets the same patch with no side effects.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::StatusCode;
use kinject_inject::{InjectDecision, Injector, Origin, PodRequest};
use kinject_k8s::cache::ClusterLookup;
use kinject_k8s::events::{EventSink, InjectionEvent, kind_name};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::metrics::{ErrorLabels, Metrics, RequestLabels, ResponseLabels};
use crate::review::{self, Review};

/// Prefix of every admission warning, so users can tell who said it.
const WARNING_PREFIX: &str = "kinject: ";

pub struct Admission<L> {
    engine: Arc<ArcSwap<Injector>>,
    cluster: L,
    metrics: Metrics,
    events: EventSink,
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
        }
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

    fn respond(&self, kind: &str, decision: &str, reason: String) {
        self.metrics
            .responses
            .get_or_create(&ResponseLabels {
                kind: kind.into(),
                decision: decision.into(),
                reason,
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
        let allow_plain =
            |warnings: &[String]| review::allow(api_version, &req.uid, None, warnings);
        if req.operation != "CREATE" || !matches!(kind.as_str(), "pod" | "service") {
            self.respond(&kind, "ignored", String::new());
            return allow_plain(&[]);
        }
        let Some(object) = req.object.as_ref().filter(|o| o.is_object()) else {
            self.respond(&kind, "ignored", String::new());
            return allow_plain(&[format!(
                "{WARNING_PREFIX}the request has no object; nothing injected"
            )]);
        };
        let ns_name = req
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
            })
            .unwrap_or("default");
        let ns = self.cluster.namespace(ns_name).await;
        if !ns.known {
            warn!(namespace = %ns_name, "namespace unknown; deciding without its labels");
        }
        let engine = self.engine.load();
        let dry_run = req.dry_run == Some(true);

        if kind == "service" {
            let patch = engine.service_patch(object, Some(&ns.as_meta()));
            let decision = if patch.is_empty() {
                "ignored"
            } else {
                "annotated"
            };
            self.respond(&kind, decision, String::new());
            let bytes = (!patch.is_empty()).then(|| patch.to_json_bytes());
            return review::allow(api_version, &req.uid, bytes.as_deref(), &[]);
        }

        let metadata = object.get("metadata").unwrap_or(&Value::Null);
        let owner = self.cluster.owner(ns_name, metadata).await;
        let outcome = engine.inject_pod(&PodRequest {
            pod: object,
            namespace: Some(ns.as_meta()),
            namespace_name: Some(ns_name),
            owner: owner.as_ref(),
            origin: Origin::Webhook,
            prefix: "",
        });
        let warnings: Vec<String> = outcome
            .warnings
            .iter()
            .map(|w| format!("{WARNING_PREFIX}{w}"))
            .collect();
        let pod_name = metadata
            .get("name")
            .or_else(|| metadata.get("generateName"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let (event_kind, event_name) = match &owner {
            Some(o) => (kind_name(&o.kind), o.name.clone()),
            None => ("Pod".to_string(), pod_name.to_string()),
        };
        match &outcome.decision {
            InjectDecision::Inject { source } => {
                info!(namespace = %ns_name, pod = %pod_name, owner = %event_name, source = ?source, dry_run, "injected");
                self.respond(&kind, "injected", String::new());
                if !dry_run {
                    self.events.send(InjectionEvent {
                        namespace: ns_name.to_string(),
                        kind: event_kind,
                        name: event_name,
                        injected: true,
                        note: "Linkerd sidecar proxy injected".into(),
                    });
                }
            }
            InjectDecision::Skip { reasons } => {
                let codes: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
                info!(namespace = %ns_name, pod = %pod_name, reasons = %codes.join(","), "skipped");
                self.respond(&kind, "skipped", codes.join(","));
                if !dry_run {
                    let why: Vec<&str> = reasons.iter().map(|r| r.describe()).collect();
                    self.events.send(InjectionEvent {
                        namespace: ns_name.to_string(),
                        kind: event_kind,
                        name: event_name,
                        injected: false,
                        note: format!(
                            "Linkerd sidecar proxy injection skipped: {}",
                            why.join(", ")
                        ),
                    });
                }
            }
        }
        let bytes = (!outcome.patch.is_empty()).then(|| outcome.patch.to_json_bytes());
        review::allow(api_version, &req.uid, bytes.as_deref(), &warnings)
    }
}
