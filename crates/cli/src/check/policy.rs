//! The policy checks: Linkerd's policy CRDs are there, and the policy
//! resources refer to what exists (a Server that selects no pod, an
//! AuthorizationPolicy whose target or authentication is missing or
//! refused: each grants nothing, which an operator should know). The
//! objects are judged by destination's own reading of them.

use super::*;
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
}
