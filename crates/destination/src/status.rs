//! HTTPRoute status, as Linkerd's policy controller writes it: for each
//! parent kinject serves (a Server, a Service), `Accepted` and
//! `ResolvedRefs` conditions under `status.parents`, written by the replica
//! that holds the `kinject-destination` Lease. Entries of other controllers
//! are kept as they are.
//!
//! [`parent_statuses`] is pure (the route, what exists, the previous
//! status in; the new entries out); [`run`] follows the routes with its own
//! reflectors, wakes on every index change that can matter, and patches
//! only routes whose entries changed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kinject_k8s::policy::route::{ParentReference, RouteParentStatus};
use kinject_k8s::policy::{GATEWAY_GROUP, POLICY_GROUP, refers_to};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::index::Index;
use crate::model::ObjKey;
use crate::policy_index::{PolicyKind, PolicySet};
use crate::policy_model::{RouteFacts, RouteGroup};

/// The controller name kinject writes under: Linkerd's, so that tools which
/// read Linkerd's route status read kinject's.
pub const CONTROLLER_NAME: &str = "linkerd.io/policy-controller";

/// One route as the status writer sees it.
pub struct RouteState<'a> {
    pub namespace: &'a str,
    pub generation: Option<i64>,
    pub parents: &'a [ParentReference],
    /// What destination made of it: its facts, or why it was refused.
    pub facts: Result<&'a RouteFacts, String>,
}

fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
    previous: Option<&RouteParentStatus>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The API server refuses an empty message (it is sent as null).
    let message = if message.is_empty() {
        reason.to_string()
    } else {
        message
    };
    // The transition time moves only when the status does.
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// kinject's entries of `status.parents` for a route: one per parent it
/// serves.
pub fn parent_statuses(
    route: &RouteState<'_>,
    set: &PolicySet,
    service_exists: impl Fn(&ObjKey) -> bool,
    previous: &[RouteParentStatus],
    now: &Time,
) -> Vec<RouteParentStatus> {
    let mut out = Vec::new();
    for p in route.parents {
        let group = p.group.as_deref().or(Some(GATEWAY_GROUP));
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let exists = if refers_to(group, kind, POLICY_GROUP, "Server") {
            set.namespace(route.namespace)
                .is_some_and(|ns| ns.servers.contains_key(&p.name))
        } else if refers_to(group, kind, "core", "Service") {
            service_exists(&ObjKey::new(
                p.namespace.as_deref().unwrap_or(route.namespace),
                &p.name,
            ))
        } else {
            continue; // A Gateway's: another controller's to say.
        };
        let prev = previous
            .iter()
            .find(|s| s.controller_name == CONTROLLER_NAME && s.parent_ref == *p);
        let g = route.generation;
        let mut conditions = Vec::new();
        match &route.facts {
            Err(why) => conditions.push(condition(
                "Accepted",
                false,
                "UnsupportedValue",
                why.clone(),
                g,
                now,
                prev,
            )),
            Ok(_) if !exists => conditions.push(condition(
                "Accepted",
                false,
                "NoMatchingParent",
                format!("{kind} {} does not exist", p.name),
                g,
                now,
                prev,
            )),
            Ok(facts) => {
                conditions.push(condition(
                    "Accepted",
                    true,
                    "Accepted",
                    "Route accepted by kinject".to_string(),
                    g,
                    now,
                    prev,
                ));
                let mut missing: Vec<String> = facts
                    .rules
                    .iter()
                    .flat_map(|r| r.backends.iter())
                    .filter(|b| !service_exists(&b.service))
                    .map(|b| b.service.to_string())
                    .collect();
                missing.sort();
                missing.dedup();
                conditions.push(if missing.is_empty() {
                    condition(
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "All backend references resolved".to_string(),
                        g,
                        now,
                        prev,
                    )
                } else {
                    condition(
                        "ResolvedRefs",
                        false,
                        "BackendNotFound",
                        format!(
                            "Service {} not found: its share of the traffic is answered with 500",
                            missing.join(", ")
                        ),
                        g,
                        now,
                        prev,
                    )
                });
            }
        }
        out.push(RouteParentStatus {
            parent_ref: p.clone(),
            controller_name: CONTROLLER_NAME.to_string(),
            conditions,
        });
    }
    out
}

/// The route's parents and current status entries, from its JSON.
fn read(o: &DynamicObject) -> (Vec<ParentReference>, Vec<RouteParentStatus>) {
    let parents = o
        .data
        .pointer("/spec/parentRefs")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let status = o
        .data
        .pointer("/status/parents")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    (parents, status)
}

/// Brings one route's entries up to date; `false` if nothing needed writing.
async fn reconcile(
    client: &kube::Client,
    ar: &ApiResource,
    group: RouteGroup,
    o: &DynamicObject,
    index: &Index,
) -> kube::Result<bool> {
    let ns = o.namespace().unwrap_or_default();
    let name = o.name_any();
    let (parents, current) = read(o);
    let set = index.policy();
    let key = ObjKey::new(&ns, &name);
    let kind = PolicyKind::HttpRoute(group);
    let facts = match set
        .namespace(&ns)
        .and_then(|n| n.routes.get(&(group, name.clone())))
    {
        Some(f) => Ok(&**f),
        None => match set.refused().get(&(kind, key)) {
            Some(why) => Err(why.to_string()),
            // Not indexed yet: the next change will bring it.
            None => return Ok(false),
        },
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let state = RouteState {
        namespace: &ns,
        generation: o.meta().generation,
        parents: &parents,
        facts,
    };
    let mine = parent_statuses(&state, &set, |k| index.service_exists(k), &current, &now);
    let theirs: Vec<RouteParentStatus> = current
        .iter()
        .filter(|s| s.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    let kept: Vec<&RouteParentStatus> = current
        .iter()
        .filter(|s| s.controller_name == CONTROLLER_NAME)
        .collect();
    if kept.len() == mine.len() && kept.iter().zip(&mine).all(|(a, b)| *a == b) {
        return Ok(false);
    }
    let parents: Vec<RouteParentStatus> = theirs.into_iter().chain(mine).collect();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, ar);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"parents": parents}})),
    )
    .await?;
    Ok(true)
}

/// Writes route status while this replica leads, until the process ends.
pub async fn run(client: kube::Client, index: Index, leader: watch::Receiver<bool>) {
    let mut kinds = Vec::new();
    for group in [RouteGroup::Policy, RouteGroup::Gateway] {
        let kind = PolicyKind::HttpRoute(group);
        let ar = match crate::cluster::served(&client, kind).await {
            Some(ar) => ar,
            None => match crate::cluster::crd_appears(&client, kind).await {
                Some(ar) => ar,
                None => continue,
            },
        };
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let store = writer.as_reader();
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        let events = reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let mut changed = index.routes_changed();
        let wake = Arc::new(tokio::sync::Notify::new());
        let w = wake.clone();
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while events.next().await.is_some() {
                w.notify_one();
            }
        });
        let (client, index, mut leader) = (client.clone(), index.clone(), leader.clone());
        kinds.push(async move {
            loop {
                if *leader.borrow_and_update() {
                    let mut written = 0;
                    for o in store.state() {
                        match reconcile(&client, &ar, group, &o, &index).await {
                            Ok(true) => written += 1,
                            Ok(false) => {}
                            Err(e) => warn!(route = %o.name_any(), error = %e, "cannot write the route's status (retrying)"),
                        }
                    }
                    if written > 0 {
                        debug!(written, group = group.group(), "route status written");
                    }
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    r = changed.changed() => if r.is_err() { return },
                    r = leader.changed() => if r.is_err() { return },
                    // A write that failed is retried; time moves conditions'
                    // nothing else.
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                // Coalesce a burst of changes into one pass.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    futures::future::join_all(kinds).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_index::PolicyObject;
    use crate::policy_model::{Backend, RouteRule};

    fn parent(kind: &str, name: &str) -> ParentReference {
        ParentReference {
            group: Some(
                if kind == "Server" {
                    POLICY_GROUP
                } else {
                    "core"
                }
                .into(),
            ),
            kind: Some(kind.into()),
            name: name.into(),
            ..ParentReference::default()
        }
    }

    fn facts(backend: &str) -> RouteFacts {
        RouteFacts {
            created: String::new(),
            parents: Vec::new(),
            hostnames: Vec::new(),
            rules: vec![RouteRule {
                matches: Vec::new(),
                filters: Vec::new(),
                backends: vec![Backend {
                    service: ObjKey::new("apps", backend),
                    port: Some(80),
                    weight: 1,
                }],
                request_timeout: None,
                backend_timeout: None,
            }],
            linkerd: Default::default(),
        }
    }

    fn summary(s: &[RouteParentStatus]) -> Vec<String> {
        s.iter()
            .flat_map(|p| {
                p.conditions.iter().map(move |c| {
                    format!(
                        "{} {}={} {}",
                        p.parent_ref.name, c.type_, c.status, c.reason
                    )
                })
            })
            .collect()
    }

    #[test]
    fn conditions_per_parent() {
        let mut set = PolicySet::default();
        set.apply(
            PolicyKind::Server,
            &ObjKey::new("apps", "web-http"),
            Ok(PolicyObject::Server(
                crate::policy_model::server(
                    &serde_json::from_value(serde_json::json!({"podSelector": {}, "port": 80}))
                        .expect("spec"),
                    Default::default(),
                    String::new(),
                )
                .expect("server"),
            )),
        );
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let parents = [
            parent("Server", "web-http"),
            parent("Server", "gone"),
            parent("Service", "web"),
            ParentReference {
                name: "a-gateway".into(),
                ..ParentReference::default()
            },
        ];
        let f = facts("web-v2");
        let state = RouteState {
            namespace: "apps",
            generation: Some(3),
            parents: &parents,
            facts: Ok(&f),
        };
        let exists = |k: &ObjKey| k.name == "web";
        let s = parent_statuses(&state, &set, exists, &[], &now);
        assert_eq!(
            summary(&s),
            vec![
                "web-http Accepted=True Accepted",
                "web-http ResolvedRefs=False BackendNotFound",
                "gone Accepted=False NoMatchingParent",
                "web Accepted=True Accepted",
                "web ResolvedRefs=False BackendNotFound",
            ],
            "a Gateway parent is not kinject's"
        );
        assert_eq!(s[0].conditions[0].observed_generation, Some(3));

        // Unchanged conditions keep their transition time.
        let later = Time(k8s_openapi::jiff::Timestamp::now());
        let again = parent_statuses(&state, &set, exists, &s, &later);
        assert_eq!(again, s);

        let refused = RouteState {
            facts: Err("filter RequestMirror is not supported by kinject".into()),
            ..state
        };
        assert_eq!(
            summary(&parent_statuses(&refused, &set, exists, &[], &now))[0],
            "web-http Accepted=False UnsupportedValue"
        );
    }
}
