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
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
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
    /// `Ignore` (default) or `Fail`.
    pub failure_policy: String,
    pub timeout_seconds: i32,
    /// Namespaces excluded by name (needs Kubernetes ≥ 1.21 to take effect at
    /// the API server; the engine checks the same names itself).
    pub excluded_namespaces: Vec<String>,
    /// Also intercept Services (for the opaque-ports annotation).
    pub include_services: bool,
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
                failure_policy: Some(self.failure_policy.clone()),
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
                ..MutatingWebhook::default()
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
pub fn drift(
    desired: &MutatingWebhookConfiguration,
    actual: &MutatingWebhookConfiguration,
) -> Option<String> {
    let find = |c: &MutatingWebhookConfiguration| {
        c.webhooks
            .iter()
            .flatten()
            .find(|w| w.name == WEBHOOK_NAME)
            .and_then(|w| serde_json::to_value(w).ok())
    };
    let (Some(d), a) = (find(desired), find(actual)) else {
        return Some("desired webhook missing (bug)".into());
    };
    let Some(a) = a else {
        return Some(format!("webhook {WEBHOOK_NAME} missing"));
    };
    let Value::Object(dm) = &d else {
        return None;
    };
    dm.iter()
        .find(|(k, v)| !a.get(*k).is_some_and(|av| subset(v, av)))
        .map(|(k, _)| format!("{k} changed"))
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

/// Registers the webhook, then keeps it registered: every change to the object
/// (or its deletion) is compared with the desired spec and repaired. A new spec
/// on `spec_rx` (e.g. a rotated CA bundle) is applied at once. `registered`
/// turns true after the first successful apply; `on_repair` is told each repair.
pub async fn keep_registered(
    client: kube::Client,
    mut spec_rx: watch::Receiver<WebhookConfigSpec>,
    registered: Arc<AtomicBool>,
    on_repair: impl Fn(&str) + Send + 'static,
) {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={CONFIG_NAME}"));
    let events = watcher(api.clone(), cfg).default_backoff();
    futures::pin_mut!(events);
    let mut tick = tokio::time::interval(RESYNC);
    let mut desired = spec_rx.borrow_and_update().build();
    let ensure =
        async |desired: &MutatingWebhookConfiguration, reason: &str| match apply(&client, desired)
            .await
        {
            Ok(()) => {
                if registered.swap(true, Ordering::AcqRel) {
                    info!(%reason, "webhook configuration repaired");
                    on_repair(reason);
                } else {
                    info!(name = CONFIG_NAME, "webhook configuration registered");
                }
            }
            Err(e) => warn!(error = %e, "cannot apply the webhook configuration (retrying)"),
        };
    ensure(&desired, "start").await;
    // Whether the (re)list that the watcher is doing saw the object.
    let mut seen = true;
    loop {
        tokio::select! {
            changed = spec_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                desired = spec_rx.borrow_and_update().build();
                ensure(&desired, "configuration changed").await;
            }
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(actual) | watcher::Event::InitApply(actual))) => {
                    seen = true;
                    if let Some(why) = drift(&desired, &actual) {
                        ensure(&desired, &why).await;
                    }
                }
                Some(Ok(watcher::Event::Delete(_))) => ensure(&desired, "deleted").await,
                Some(Ok(watcher::Event::Init)) => seen = false,
                Some(Ok(watcher::Event::InitDone)) => {
                    if !seen {
                        ensure(&desired, "missing").await;
                    }
                }
                Some(Err(e)) => warn!(error = %e, "webhook configuration watch error"),
                None => return,
            },
            _ = tick.tick() => match api.get_opt(CONFIG_NAME).await {
                Ok(Some(actual)) => {
                    if let Some(why) = drift(&desired, &actual) {
                        ensure(&desired, &why).await;
                    }
                }
                Ok(None) => ensure(&desired, "deleted").await,
                Err(e) => warn!(error = %e, "cannot read the webhook configuration"),
            },
        }
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
            failure_policy: "Ignore".into(),
            timeout_seconds: 10,
            excluded_namespaces: vec!["kube-system".into()],
            include_services: true,
        }
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
            drift(&desired, &tampered).as_deref(),
            Some("clientConfig changed")
        );
        let mut gone = desired.clone();
        gone.webhooks = None;
        assert!(drift(&desired, &gone).unwrap().contains("missing"));
    }
}
