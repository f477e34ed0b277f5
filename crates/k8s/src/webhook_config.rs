//! The MutatingWebhookConfiguration kinject registers for itself, and the loop
//! that keeps it true. The seed wrote its caBundle once at start-up, so a CA
//! change silently stopped injection until someone deleted the injector pod;
//! here any drift (caBundle, rules, selectors, deletion) is repaired within
//! seconds of the watch event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

pub const CONFIG_NAME: &str = "linkerd-proxy-injector-webhook-config";
pub const WEBHOOK_NAME: &str = "linkerd-proxy-injector.linkerd.io";
const FIELD_MANAGER: &str = "kinject-proxy-injector";
/// A backstop re-check, in case a watch event is missed.
const RESYNC: Duration = Duration::from_secs(30);

/// Where the API server sends admission requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientTarget {
    /// `url:` (local development and tests; must be https).
    Url(String),
    /// A Service in the cluster.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
}

/// Everything that defines the registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfigSpec {
    pub control_plane_namespace: String,
    pub target: ClientTarget,
    /// PEM bundle the API server uses to verify the webhook's certificate.
    pub ca_bundle: Vec<u8>,
    pub failure_policy: kinject_mesh::settings::FailurePolicy,
    pub timeout_seconds: i32,
    /// Namespaces excluded by name (needs Kubernetes ≥ 1.21 to take effect at
    /// the API server; the engine checks the same names itself).
    pub excluded_namespaces: Vec<String>,
    /// Also intercept Services (for the opaque-ports annotation).
    pub include_services: bool,
    /// Add CEL `matchConditions` (Kubernetes 1.30+), so the API server does
    /// not even call the webhook for the control plane's own namespace or
    /// for `hostNetwork` pods. The engine skips both anyway; this saves the
    /// round trip, and keeps the control plane's pods from depending on the
    /// injector at all.
    pub match_conditions: bool,
}

/// The `matchConditions` kinject registers on servers that support them.
pub fn match_conditions(control_ns: &str) -> Vec<MatchCondition> {
    vec![
        MatchCondition {
            name: "not-the-control-plane".into(),
            expression: format!("request.namespace != '{control_ns}'"),
        },
        MatchCondition {
            name: "not-host-network".into(),
            expression: "request.resource.resource != 'pods' || !has(object.spec.hostNetwork) || !object.spec.hostNetwork".into(),
        },
    ]
}

fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values: Some(values.iter().map(|s| s.to_string()).collect()),
    }
}

impl WebhookConfigSpec {
    /// The desired object.
    pub fn build(&self) -> MutatingWebhookConfiguration {
        let mut excluded: Vec<&str> = self
            .excluded_namespaces
            .iter()
            .map(String::as_str)
            .collect();
        if !excluded.contains(&self.control_plane_namespace.as_str()) {
            excluded.push(&self.control_plane_namespace);
        }
        let client_config = match &self.target {
            ClientTarget::Url(url) => WebhookClientConfig {
                url: Some(url.clone()),
                ca_bundle: Some(ByteString(self.ca_bundle.clone())),
                service: None,
            },
            ClientTarget::Service {
                namespace,
                name,
                port,
            } => WebhookClientConfig {
                url: None,
                ca_bundle: Some(ByteString(self.ca_bundle.clone())),
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some("/inject".into()),
                    port: Some(*port),
                }),
            },
        };
        let mut resources = vec!["pods".to_string()];
        if self.include_services {
            resources.push("services".into());
        }
        MutatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(CONFIG_NAME.into()),
                labels: Some(
                    [
                        (
                            "linkerd.io/control-plane-component".to_string(),
                            "proxy-injector".to_string(),
                        ),
                        (
                            "linkerd.io/control-plane-ns".to_string(),
                            self.control_plane_namespace.clone(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: WEBHOOK_NAME.into(),
                admission_review_versions: vec!["v1".into(), "v1beta1".into()],
                client_config,
                failure_policy: Some(self.failure_policy.as_str().into()),
                match_policy: Some("Equivalent".into()),
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![
                        req("linkerd.io/auto-inject", "NotIn", &["disabled"]),
                        req(
                            "config.linkerd.io/admission-webhooks",
                            "NotIn",
                            &["disabled"],
                        ),
                        req("kubernetes.io/metadata.name", "NotIn", &excluded),
                    ]),
                    match_labels: None,
                }),
                object_selector: Some(LabelSelector {
                    match_expressions: Some(vec![
                        req(
                            "linkerd.io/auto-inject",
                            "NotIn",
                            &["disabled", "completed"],
                        ),
                        LabelSelectorRequirement {
                            key: "linkerd.io/control-plane-component".into(),
                            operator: "DoesNotExist".into(),
                            values: None,
                        },
                    ]),
                    match_labels: None,
                }),
                reinvocation_policy: Some("IfNeeded".into()),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(resources),
                    scope: Some("Namespaced".into()),
                }]),
                side_effects: "None".into(),
                timeout_seconds: Some(self.timeout_seconds),
                match_conditions: self
                    .match_conditions
                    .then(|| match_conditions(&self.control_plane_namespace)),
            }]),
        }
    }
}

/// True when every field of `desired` is present and equal in `actual`
/// (the server adds defaults of its own, which are not drift).
fn subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| subset(v, av))),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(x, y)| subset(x, y))
        }
        _ => desired == actual,
    }
}

/// Why `actual` differs from `desired`, or `None` when it does not.
/// How the live configuration differs from the desired one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// The desired object has no webhook (a bug).
    DesiredMissing,
    /// The live object has no webhook of kinject's name.
    WebhookMissing,
    /// This field of the webhook (`clientConfig`, `matchConditions`, …) differs.
    Changed(String),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::DesiredMissing => f.write_str("desired webhook missing (bug)"),
            Drift::WebhookMissing => write!(f, "webhook {WEBHOOK_NAME} missing"),
            Drift::Changed(field) => write!(f, "{field} changed"),
        }
    }
}

pub fn drift(
    desired: &MutatingWebhookConfiguration,
    actual: &MutatingWebhookConfiguration,
) -> Option<Drift> {
    let find = |c: &MutatingWebhookConfiguration| {
        c.webhooks
            .iter()
            .flatten()
            .find(|w| w.name == WEBHOOK_NAME)
            .and_then(|w| serde_json::to_value(w).ok())
    };
    let (Some(d), a) = (find(desired), find(actual)) else {
        return Some(Drift::DesiredMissing);
    };
    let Some(a) = a else {
        return Some(Drift::WebhookMissing);
    };
    let Value::Object(dm) = &d else {
        return None;
    };
    dm.iter()
        .find(|(k, v)| !a.get(*k).is_some_and(|av| subset(v, av)))
        .map(|(k, _)| Drift::Changed(k.clone()))
}

/// Creates or updates the configuration (server-side apply, forced: kinject owns it).
pub async fn apply(
    client: &kube::Client,
    desired: &MutatingWebhookConfiguration,
) -> kube::Result<()> {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let mut obj = desired.clone();
    // Server-side apply needs the type in the body.
    obj.metadata.managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": obj.metadata,
        "webhooks": obj.webhooks,
    });
    api.patch(
        CONFIG_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// How drift repairs are paced. A writer that keeps reverting the object is
/// reported and backed off from, not fought (two injectors with different
/// settings once rewrote it ~176 times a second).
#[derive(Clone, Debug)]
pub struct RepairBudget {
    /// At most this many repairs…
    pub max_repairs: usize,
    /// …within this window; beyond it the object is contested.
    pub window: Duration,
    /// First back-off once contested; doubled each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RepairBudget {
    fn default() -> Self {
        Self {
            max_repairs: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// What `keep_registered` reports.
pub trait RegistrationEvents: Send + 'static {
    /// A drift was repaired (`reason` says what had changed).
    fn repaired(&self, reason: &str);
    /// Another writer keeps changing the object; `manager` is its field
    /// manager when known. kinject backs off for `backoff`.
    fn contested(&self, manager: &str, backoff: Duration);
}

/// The field manager, other than kinject's, that wrote the object last.
pub fn foreign_manager(actual: &MutatingWebhookConfiguration) -> Option<String> {
    actual
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

/// Paces repairs ([`RepairBudget`]).
struct Pacer {
    budget: RepairBudget,
    recent: std::collections::VecDeque<tokio::time::Instant>,
    backoff: Duration,
    /// No repair before this (contested).
    until: Option<tokio::time::Instant>,
}

impl Pacer {
    fn new(budget: RepairBudget) -> Self {
        Self {
            backoff: budget.backoff,
            budget,
            recent: Default::default(),
            until: None,
        }
    }

    /// Whether a drift repair may happen now; `Err(backoff)` when the object
    /// just became contested (report it), `Ok(false)` while backing off.
    fn allow(&mut self, now: tokio::time::Instant) -> Result<bool, Duration> {
        if self.until.is_some_and(|u| now < u) {
            return Ok(false);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.budget.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.budget.max_repairs {
            let backoff = self.backoff;
            self.until = Some(now + backoff);
            self.backoff = (self.backoff * 2).min(self.budget.max_backoff);
            self.recent.clear();
            return Err(backoff);
        }
        if self.until.take().is_some() {
            // The back-off passed: the next contest backs off longer.
        } else if self.recent.is_empty() {
            self.backoff = self.budget.backoff;
        }
        self.recent.push_back(now);
        Ok(true)
    }
}

/// Registers the webhook, then keeps it registered: every change to the
/// object (or its deletion) is compared with the desired spec and repaired,
/// within a [`RepairBudget`]. Only the holder of the injector's Lease writes
/// (`leader`); other replicas only watch, and count as registered once the
/// object exists. A new spec on `spec_rx` (e.g. a rotated CA bundle) is
/// applied at once. `registered` turns true after the first successful apply
/// (leader) or once the object is seen (others).
pub async fn keep_registered(
    client: kube::Client,
    mut spec_rx: watch::Receiver<WebhookConfigSpec>,
    mut leader: watch::Receiver<bool>,
    lease: Option<kinject_runtime::lease::LeaseConfig>,
    registered: Arc<AtomicBool>,
    budget: RepairBudget,
    events: impl RegistrationEvents,
) {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={CONFIG_NAME}"));
    let stream = watcher(api.clone(), cfg).default_backoff();
    futures::pin_mut!(stream);
    let mut tick = tokio::time::interval(RESYNC);
    let mut desired = spec_rx.borrow_and_update().build();
    let mut pacer = Pacer::new(budget);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let is_leader = |leader: &watch::Receiver<bool>| *leader.borrow();
    // `drift`: a repair of someone else's change (paced); otherwise our own
    // reason to write (start, new spec, leadership) which is not paced.
    let apply_now =
        async |desired: &MutatingWebhookConfiguration, reason: &str, drift: bool| match apply(
            &client, desired,
        )
        .await
        {
            Ok(()) => {
                if registered.swap(true, Ordering::AcqRel) && drift {
                    info!(%reason, "webhook configuration repaired");
                    events.repaired(reason);
                } else {
                    info!(name = CONFIG_NAME, %reason, "webhook configuration applied");
                }
            }
            Err(e) => warn!(error = %e, "cannot apply the webhook configuration (retrying)"),
        };
    if is_leader(&leader) {
        apply_now(&desired, "start", false).await;
    }
    // Whether the (re)list that the watcher is doing saw the object.
    let mut seen = true;
    loop {
        let mut drifted: Option<Repair> = None;
        tokio::select! {
            changed = spec_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                desired = spec_rx.borrow_and_update().build();
                if is_leader(&leader) {
                    apply_now(&desired, "configuration changed", false).await;
                }
            }
            changed = leader.changed() => {
                if changed.is_err() {
                    return;
                }
                if *leader.borrow_and_update() {
                    apply_now(&desired, "leadership gained", false).await;
                }
            }
            ev = stream.next() => match ev {
                Some(Ok(ev)) => {
                    let leading = is_leader(&leader);
                    drifted = observe(ev, &mut seen, &api, &desired, leading, &registered).await;
                }
                Some(Err(e)) => warn!(error = %e, "webhook configuration watch error"),
                None => return,
            },
            _ = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                retry_at = None;
                drifted = recheck(&api, &desired).await;
            }
            _ = tick.tick() => drifted = recheck(&api, &desired).await,
        }
        let Some((why, actual)) = drifted else {
            continue;
        };
        if !is_leader(&leader) {
            continue;
        }
        // Leadership may have just moved (the flag lags by a renew period):
        // a replica that lost it must not "repair" its successor's write.
        if let Some(l) = &lease
            && !kinject_runtime::lease::holds(&client, l).await
        {
            continue;
        }
        match pacer.allow(tokio::time::Instant::now()) {
            Ok(true) => apply_now(&desired, &why, true).await,
            Ok(false) => {}
            Err(backoff) => {
                let manager = actual
                    .as_ref()
                    .and_then(foreign_manager)
                    .unwrap_or_else(|| "unknown".into());
                warn!(
                    %manager, %why, backoff_s = backoff.as_secs(),
                    "another writer keeps changing the webhook configuration; backing off instead of fighting it"
                );
                events.contested(&manager, backoff);
                retry_at = Some(tokio::time::Instant::now() + backoff);
            }
        }
    }
}

/// What needs doing: a reason to repair and the object observed (if any).
type Repair = (String, Option<MutatingWebhookConfiguration>);

/// What one watch event says needs repairing; `seen` tracks whether the
/// (re)list in progress has shown the object.
async fn observe(
    event: watcher::Event<MutatingWebhookConfiguration>,
    seen: &mut bool,
    api: &Api<MutatingWebhookConfiguration>,
    desired: &MutatingWebhookConfiguration,
    leading: bool,
    registered: &AtomicBool,
) -> Option<Repair> {
    match event {
        watcher::Event::Apply(actual) | watcher::Event::InitApply(actual) => {
            *seen = true;
            if !leading {
                registered.store(true, Ordering::Release);
            }
            drift(desired, &actual).map(|why| (why.to_string(), Some(actual)))
        }
        watcher::Event::Delete(_) => Some(("deleted".into(), None)),
        watcher::Event::Init => {
            *seen = false;
            None
        }
        // The list may predate our own first apply (they race at start):
        // ask again before calling it missing.
        watcher::Event::InitDone if !*seen => {
            recheck(api, desired)
                .await
                .map(|(why, actual)| match actual {
                    None => ("missing".into(), None),
                    Some(a) => (why, Some(a)),
                })
        }
        watcher::Event::InitDone => None,
    }
}

/// A GET-based check (resync, end of a back-off).
async fn recheck(
    api: &Api<MutatingWebhookConfiguration>,
    desired: &MutatingWebhookConfiguration,
) -> Option<Repair> {
    match api.get_opt(CONFIG_NAME).await {
        Ok(Some(actual)) => drift(desired, &actual).map(|why| (why.to_string(), Some(actual))),
        Ok(None) => Some(("deleted".into(), None)),
        Err(e) => {
            warn!(error = %e, "cannot read the webhook configuration");
            None
        }
    }
}

impl WebhookConfigSpec {
    /// A digest of everything a replica would register except the caBundle
    /// (replicas read the same Secret; a rotation is not a settings change).
    /// Replicas whose hashes differ contend for the webhook configuration's
    /// Lease by epoch ([`kinject_runtime::lease`]).
    pub fn settings_hash(&self) -> String {
        let mut without_ca = self.clone();
        without_ca.ca_bundle.clear();
        let json = serde_json::to_vec(&without_ca.build()).unwrap_or_default();
        // xxh3 is stable across builds and processes (unlike std's hasher).
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WebhookConfigSpec {
        WebhookConfigSpec {
            control_plane_namespace: "linkerd".into(),
            target: ClientTarget::Url("https://127.0.0.1:8443/inject".into()),
            ca_bundle: b"PEM".to_vec(),
            failure_policy: kinject_mesh::settings::FailurePolicy::Ignore,
            timeout_seconds: 10,
            excluded_namespaces: vec!["kube-system".into()],
            include_services: true,
            match_conditions: false,
        }
    }

    #[test]
    fn match_conditions_only_when_asked() {
        let v = serde_json::to_value(spec().build()).unwrap();
        assert!(v["webhooks"][0].get("matchConditions").is_none());
        let v = serde_json::to_value(
            WebhookConfigSpec {
                match_conditions: true,
                ..spec()
            }
            .build(),
        )
        .unwrap();
        let names: Vec<&str> = v["webhooks"][0]["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["not-the-control-plane", "not-host-network"]);
        assert_eq!(
            v["webhooks"][0]["matchConditions"][0]["expression"],
            "request.namespace != 'linkerd'"
        );
        // A server that dropped them is drift (the injector re-applies; check says so).
        let desired = WebhookConfigSpec {
            match_conditions: true,
            ..spec()
        }
        .build();
        assert_eq!(
            drift(&desired, &spec().build())
                .map(|d| d.to_string())
                .as_deref(),
            Some("matchConditions changed")
        );
    }

    #[test]
    fn repairs_are_paced_and_a_contest_backs_off_longer_each_time() {
        let mut p = Pacer::new(RepairBudget::default());
        let t0 = tokio::time::Instant::now();
        for i in 0..5 {
            assert_eq!(p.allow(t0 + Duration::from_secs(i)), Ok(true), "repair {i}");
        }
        // The sixth within a minute: contested, back off 10 s.
        assert_eq!(
            p.allow(t0 + Duration::from_secs(5)),
            Err(Duration::from_secs(10))
        );
        assert_eq!(p.allow(t0 + Duration::from_secs(6)), Ok(false));
        // After the back-off, repairs resume; a new contest backs off 20 s.
        let t1 = t0 + Duration::from_secs(16);
        for i in 0..5 {
            assert_eq!(p.allow(t1 + Duration::from_secs(i)), Ok(true));
        }
        assert_eq!(
            p.allow(t1 + Duration::from_secs(5)),
            Err(Duration::from_secs(20))
        );
        // A quiet object resets it: repairs spread over minutes are fine.
        let t2 = t1 + Duration::from_secs(600);
        assert_eq!(p.allow(t2), Ok(true));
        assert_eq!(p.allow(t2 + Duration::from_secs(61)), Ok(true));
    }

    #[test]
    fn settings_hash_ignores_the_ca_bundle_only() {
        let a = spec();
        let mut b = spec();
        b.ca_bundle = b"OTHER".to_vec();
        assert_eq!(a.settings_hash(), b.settings_hash());
        b.failure_policy = kinject_mesh::settings::FailurePolicy::Fail;
        assert_ne!(a.settings_hash(), b.settings_hash());
    }

    #[test]
    fn desired_object_has_the_seed_shape() {
        let c = spec().build();
        let v = serde_json::to_value(&c).unwrap();
        let w = &v["webhooks"][0];
        assert_eq!(w["sideEffects"], "None");
        assert_eq!(w["reinvocationPolicy"], "IfNeeded");
        assert_eq!(
            w["admissionReviewVersions"],
            serde_json::json!(["v1", "v1beta1"])
        );
        assert_eq!(
            w["rules"][0]["resources"],
            serde_json::json!(["pods", "services"])
        );
        assert_eq!(
            w["namespaceSelector"]["matchExpressions"][2]["values"],
            serde_json::json!(["kube-system", "linkerd"])
        );
        assert_eq!(
            w["objectSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["disabled", "completed"])
        );
    }

    #[test]
    fn service_mode_points_at_the_injector_service() {
        let spec = WebhookConfigSpec {
            target: ClientTarget::Service {
                namespace: "linkerd".into(),
                name: "linkerd-proxy-injector".into(),
                port: 443,
            },
            ..spec()
        };
        let v = serde_json::to_value(spec.build()).unwrap();
        let cc = &v["webhooks"][0]["clientConfig"];
        assert!(cc.get("url").is_none());
        assert_eq!(
            cc["service"],
            serde_json::json!({"name": "linkerd-proxy-injector", "namespace": "linkerd",
                               "path": "/inject", "port": 443})
        );
        assert_eq!(cc["caBundle"], "UEVN");
    }

    #[test]
    fn drift_ignores_server_defaults_but_not_changes() {
        let desired = spec().build();
        let mut actual = desired.clone();
        assert_eq!(drift(&desired, &actual), None);
        // Server defaults are not drift.
        if let Some(w) = actual.webhooks.as_mut().and_then(|w| w.first_mut()) {
            w.match_conditions = None;
        }
        let mut v = serde_json::to_value(&actual).unwrap();
        v["webhooks"][0]["clientConfig"]["extra"] = "x".into();
        let actual: MutatingWebhookConfiguration = serde_json::from_value(v).unwrap();
        assert_eq!(drift(&desired, &actual), None);
        // A tampered caBundle is.
        let mut tampered = desired.clone();
        if let Some(w) = tampered.webhooks.as_mut().and_then(|w| w.first_mut()) {
            w.client_config.ca_bundle = Some(ByteString(b"bad".to_vec()));
        }
        assert_eq!(
            drift(&desired, &tampered).map(|d| d.to_string()).as_deref(),
            Some("clientConfig changed")
        );
        let mut gone = desired.clone();
        gone.webhooks = None;
        assert!(
            drift(&desired, &gone)
                .unwrap()
                .to_string()
                .contains("missing")
        );
    }
}
