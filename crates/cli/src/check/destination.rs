//! The destination checks: what a proxy needs of destination beyond running
//! pods (endpoints behind the Services it dials, a certificate for the name it
//! checks).

use super::*;

/// What a proxy needs of the installed control plane beyond running pods:
/// endpoints behind the names it dials, and a destination certificate for
/// the name it checks.
/// `root`: the trust root, when the identity checks found it valid.
pub(super) async fn destination_checks(
    client: &kube::Client,
    args: &CheckArgs,
    c: &mut Checker,
    root: Option<&str>,
    modern_slices: bool,
) {
    let ns = args.namespace.name.as_str();
    let cat = "kinject-destination";
    c.run(
        cat,
        "proxies' control-plane Services have ready endpoints",
        Kind::Retryable,
        || async {
            let mut empty = Vec::new();
            // Headless: their DNS names answer with ready endpoints only, so
            // with none a new proxy cannot start its control-plane clients.
            for svc in kinject_mesh::names::PROXY_FACING.map(|s| s.name) {
                match ready_endpoints(client, ns, svc, modern_slices).await {
                    Ok(0) => empty.push(svc),
                    Ok(_) => {}
                    Err(e) => return fail(e),
                }
            }
            if empty.is_empty() {
                Status::Ok
            } else {
                fail(format!(
                    "no ready endpoints behind {}: new proxies cannot reach the control plane and stay unready; \
                     kubectl -n {ns} get pods,endpointslices",
                    empty.join(", ")
                ))
            }
        },
    )
    .await;
    c.run(
        cat,
        "certificate is valid for the name proxies check",
        Kind::Retryable,
        || async {
            let Some(root) = root else {
                return fail("no valid trust root: see the identity checks above");
            };
            let secrets = Api::<Secret>::namespaced(client.clone(), ns);
            let td = match trust_domain(client, ns).await {
                Ok(td) => td,
                Err(e) => return fail(e),
            };
            let name = kinject_mesh::names::DESTINATION.identity(ns, &td);
            let secret = kinject_mesh::names::DESTINATION_SECRET;
            match timed("GET destination Secret", secrets.get_opt(secret)).await {
                Ok(Some(s)) => destination_certificate(
                    &s,
                    ns,
                    root,
                    &name,
                    args.cert_min_days,
                    time::OffsetDateTime::now_utc(),
                ),
                Ok(None) => fail(format!(
                    "no Secret {ns}/{secret}: identity writes it; kubectl -n {ns} logs deploy/{IDENTITY}"
                )),
                Err(e) => fail(e),
            }
        },
    )
    .await;
}

/// Ready endpoints of one Service, read from its EndpointSlices as
/// destination reads them (`v1`, or `v1beta1` on servers before 1.21; an
/// endpoint without a `ready` condition is ready, as the API defines it).
pub(super) async fn ready_endpoints(
    client: &kube::Client,
    ns: &str,
    svc: &str,
    modern_slices: bool,
) -> Result<usize, String> {
    use kinject_destination::model;
    let ar = kinject_destination::cluster::endpoint_slice_resource(modern_slices);
    let api = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), ns, &ar);
    let lp = ListParams::default().labels(&format!("{}={svc}", model::SERVICE_NAME_LABEL));
    let list = timed(&format!("list EndpointSlices of {svc}"), api.list(&lp)).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| {
            serde_json::from_value::<model::EndpointSliceLite>(serde_json::to_value(o).ok()?).ok()
        })
        .filter_map(|s| model::slice_info(&s))
        .flat_map(|info| info.endpoints)
        .filter(|e| e.ready)
        .map(|e| e.ips.len())
        .sum())
}

/// The trust domain the injector renders into `*_SVC_NAME`: from the
/// installed `linkerd-config` values, loaded as the servers load them.
pub(super) async fn trust_domain(client: &kube::Client, ns: &str) -> Result<String, String> {
    let cfg = timed(
        "GET linkerd-config",
        kinject_k8s::linkerd_config::fetch(client, ns),
    )
    .await?;
    kinject_k8s::ValuesSources::default()
        .load_over(Some(&cfg), ns)
        .map(|l| l.values.trust_domain().to_string())
        .map_err(|e| format!("{e:#}"))
}

/// Destination's serving certificate as a proxy checks it: the chain ends at
/// the trust root, the leaf carries the name the injected
/// `LINKERD2_PROXY_DESTINATION_SVC_NAME` gives, and it is not about to expire.
pub(super) fn destination_certificate(
    s: &Secret,
    ns: &str,
    root_pem: &str,
    name: &str,
    min_days: u32,
    now: time::OffsetDateTime,
) -> Status {
    use kinject_identity::ca;
    let secret = kinject_mesh::names::DESTINATION_SECRET;
    // Identity repairs the Secret on its next pass; if this persists, its
    // log says why.
    let repair =
        format!("identity rewrites it; if this persists, kubectl -n {ns} logs deploy/{IDENTITY}");
    let Some(chain) = secret_text(s, "tls.crt") else {
        return fail(format!("Secret {ns}/{secret} lacks tls.crt; {repair}"));
    };
    let Ok(leaf) = ca::parse_pem_cert("destination certificate", &chain) else {
        return fail(format!(
            "Secret {ns}/{secret}: tls.crt is not a PEM certificate; {repair}"
        ));
    };
    if !ca::chain_verifies(&chain, root_pem) {
        return fail(format!(
            "it does not chain to the trust root, so proxies refuse destination; {repair}"
        ));
    }
    let names = ca::dns_names(&leaf);
    if !names.iter().any(|n| n == name) {
        return fail(format!(
            "it names {names:?}, but proxies check {name}; {repair}"
        ));
    }
    let Some((_, not_after)) = ca::validity(&leaf) else {
        return fail("the destination certificate does not parse");
    };
    if not_after <= now {
        return fail(format!("it expired at {not_after}; {repair}"));
    }
    if not_after - now < time::Duration::days(i64::from(min_days)) {
        return fail(format!(
            "it expires at {not_after}; identity renews it at two thirds of its life: {repair}"
        ));
    }
    Status::Ok
}
