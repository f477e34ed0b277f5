//! The injector's Prometheus metrics, registered into a caller-owned registry
//! (no global state, so tests build their own).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `pod`, `service`, or the lowercased kind of anything else.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub kind: String,
    /// `injected`, `skipped`, `annotated` (opaque ports only) or `ignored`.
    pub decision: String,
    /// Skip reason codes joined by `,`; empty unless skipped.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `bad_request`, `too_large`, …
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `http/1.1` or `h2`, as negotiated by ALPN.
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `review` (the whole body but its uid was seen before) or `object`.
    pub level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    /// `engine` (values files, trust anchors), `linkerd_config` (the
    /// cluster's ConfigMaps), `serving_cert`, `ca_bundle`.
    pub file: String,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Histogram,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub gzip_replies: Counter,
    pub in_flight: Gauge,
    pub request_body_bytes: Gauge,
    pub connections: Family<ProtocolLabels, Counter>,
    pub serving_cert_expiry: Gauge,
    pub reload_failures: Family<FileLabels, Counter>,
    pub reloads: Family<FileLabels, Counter>,
    pub webhook_repairs: Counter,
    pub webhook_conflicts: Counter,
    pub values_unknown_keys: Gauge,
    pub pods_missing_proxy: Gauge,
    pub missed_pods_evicted: Counter,
}

impl Metrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            responses: Family::default(),
            errors: Family::default(),
            latency: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ]),
            cache_hits: Family::default(),
            gzip_replies: Counter::default(),
            in_flight: Gauge::default(),
            request_body_bytes: Gauge::default(),
            connections: Family::default(),
            serving_cert_expiry: Gauge::default(),
            reload_failures: Family::default(),
            reloads: Family::default(),
            webhook_repairs: Counter::default(),
            webhook_conflicts: Counter::default(),
            values_unknown_keys: Gauge::default(),
            pods_missing_proxy: Gauge::default(),
            missed_pods_evicted: Counter::default(),
        };
        reg.register(
            "admission_requests",
            "AdmissionReview requests by object kind",
            m.requests.clone(),
        );
        reg.register(
            "admission_responses",
            "Admission responses by kind, decision and skip reason",
            m.responses.clone(),
        );
        reg.register(
            "admission_errors",
            "Requests answered with an HTTP error",
            m.errors.clone(),
        );
        reg.register(
            "admission_duration_seconds",
            "Time to answer an AdmissionReview",
            m.latency.clone(),
        );
        reg.register(
            "admission_cache_hits",
            "Requests answered from the answer cache, by level",
            m.cache_hits.clone(),
        );
        reg.register(
            "admission_gzip_replies",
            "Responses sent gzip-encoded (reused answers, to clients that accept gzip)",
            m.gzip_replies.clone(),
        );
        reg.register(
            "admission_in_flight",
            "Requests being answered",
            m.in_flight.clone(),
        );
        reg.register(
            "admission_request_body_bytes",
            "Request-body bytes held against the body-memory budget (--max-body-memory)",
            m.request_body_bytes.clone(),
        );
        reg.register(
            "connections",
            "TLS connections accepted, by protocol (the API server keeps HTTP/1.1 ones alive)",
            m.connections.clone(),
        );
        reg.register(
            "serving_cert_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires",
            m.serving_cert_expiry.clone(),
        );
        reg.register(
            "reload_failures",
            "Configuration or certificate reloads that failed (the last good one is kept)",
            m.reload_failures.clone(),
        );
        reg.register("reloads", "Successful reloads", m.reloads.clone());
        reg.register(
            "webhook_configuration_repairs",
            "Times the MutatingWebhookConfiguration was found drifted and repaired",
            m.webhook_repairs.clone(),
        );
        reg.register(
            "webhook_configuration_conflicts",
            "Times another writer kept reverting the webhook configuration and kinject backed off",
            m.webhook_conflicts.clone(),
        );
        reg.register(
            "values_unknown_keys",
            "Keys in the values in force that no schema knows (likely typos; each is logged at load)",
            m.values_unknown_keys.clone(),
        );
        reg.register(
            "pods_missing_proxy",
            "Running pods that should be meshed but have no proxy (reported by the leader only)",
            m.pods_missing_proxy.clone(),
        );
        reg.register(
            "missed_pods_evicted",
            "Pods without the proxy evicted so that their replacement is injected (--repair-missed)",
            m.missed_pods_evicted.clone(),
        );
        m
    }

    pub fn file(file: &str) -> FileLabels {
        FileLabels { file: file.into() }
    }
}
