//! The policy checks: Linkerd's policy CRDs are there, and the policy
//! resources refer to what exists (a Server that selects no pod, an
//! AuthorizationPolicy whose target or authentication is missing or
//! refused: each grants nothing, which an operator should know), and
//! Services' retry and timeout annotations parse (one that does not applies
//! none of them). The objects are judged by destination's own reading of
//! them.

use super::*;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

pub(super) async fn policy_checks(client: &kube::Client, ns: &str, c: &mut Checker) {
    let cat = "kinject-policy";
    // One read for both lines: which kinds are served, and their objects.
    let read = timed(
        "LIST policy resources",
        kinject_destination::cluster::policy_snapshot(client),
    )
    .await;
    c.run(cat, "Linkerd's policy CRDs are installed", Kind::Normal, || async {
        let missing: Vec<&str> = match &read {
            Ok(r) => r.not_served.iter().map(|k| k.resource()).collect(),
            Err(e) => return fail(e),
        };
        if missing.is_empty() {
            Status::Ok
        } else {
            Status::Warning(format!(
                "not installed: {} (no such objects can exist, and ports keep their default policy); \
                 kinject install --crds | kubectl apply -f -",
                missing.join(", ")
            ))
        }
    })
    .await;
    c.run(
        cat,
        "policy resources refer to what exists",
        Kind::Normal,
        || async {
            let set = match &read {
                Ok(r) => &r.set,
                Err(e) => return fail(e),
            };
            let selector = format!("{}={ns}", kinject_mesh::labels::CONTROL_PLANE_NS_LABEL);
            let pods = match timed(
                "LIST meshed pods",
                Api::<Pod>::all(client.clone()).list(&ListParams::default().labels(&selector)),
            )
            .await
            {
                Ok(list) => list
                    .items
                    .iter()
                    .map(|p| (p.namespace().unwrap_or_default(), p.labels().clone()))
                    .collect::<Vec<_>>(),
                Err(e) => return fail(e),
            };
            let problems = set.problems(&pods);
            if problems.is_empty() {
                Status::Ok
            } else {
                Status::Warning(problems.join("; "))
            }
        },
    )
    .await;
    c.run(
        cat,
        "Services' outbound annotations are valid",
        Kind::Normal,
        || async {
            let services = match timed(
                "LIST services",
                Api::<Service>::all(client.clone()).list(&ListParams::default()),
            )
            .await
            {
                Ok(list) => list.items,
                Err(e) => return fail(e),
            };
            let bad = bad_route_annotations(&services);
            if bad.is_empty() {
                Status::Ok
            } else {
                Status::Warning(format!(
                    "{}: none of that Service's annotations of the same set (retry.linkerd.io/* \
                     and timeout.linkerd.io/*, or balancer.linkerd.io/failure-accrual*) apply \
                     until the value is fixed (kubectl annotate --overwrite)",
                    bad.join("; ")
                ))
            }
        },
    )
    .await;
}

/// Each Service whose retry or timeout annotation destination refuses, with
/// why.
fn bad_route_annotations(services: &[Service]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| {
            kinject_destination::model::service_info(s)
                .bad_annotations
                .into_iter()
                .map(|why| {
                    format!(
                        "Service {}/{}: {why}",
                        s.namespace().unwrap_or_default(),
                        s.name_any()
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_with_bad_route_annotations_are_named() {
        let svc = |name: &str, annotations: &[(&str, &str)]| {
            let mut s = Service::default();
            s.metadata.namespace = Some("apps".into());
            s.metadata.name = Some(name.into());
            s.metadata.annotations = Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            s
        };
        let services = [
            svc("plain", &[]),
            svc("good", &[("retry.linkerd.io/http", "5xx")]),
            svc("typo", &[("retry.linkerd.io/limit", "three")]),
            svc(
                "breaker",
                &[("balancer.linkerd.io/failure-accrual", "sometimes")],
            ),
        ];
        assert_eq!(
            bad_route_annotations(&services),
            [
                "Service apps/typo: retry.linkerd.io/limit: \"three\" is not a number",
                "Service apps/breaker: balancer.linkerd.io/failure-accrual: \"sometimes\" is not a mode kinject knows (consecutive)"
            ]
        );
    }
}
