//! The identity checks: identity's Lease, the issuer and trust anchors read
//! by identity's own rules, and Linkerd's lines about them.

use super::*;

pub(super) fn lease_fresh(l: &Lease) -> Status {
    let Some(spec) = &l.spec else {
        return fail("the Lease has no spec");
    };
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
        return fail("nobody holds the Lease: is identity running?");
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let Some(renewed) = &spec.renew_time else {
        return fail(format!("{holder} never renewed the Lease"));
    };
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed.0);
    if age.as_secs() > duration {
        fail(format!(
            "{holder} last renewed it {}s ago (lease {duration}s): identity is down or cannot reach the API server",
            age.as_secs()
        ))
    } else {
        Status::Ok
    }
}

pub(super) fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The issuer and anchors identity uses: Secret `linkerd-identity-issuer`
/// and ConfigMap `linkerd-identity-trust-roots`, read by identity's own rules.
pub(super) async fn identity_material(
    client: &kube::Client,
    ns: &str,
) -> Result<kinject_identity::issuer::Material, Status> {
    use kinject_identity::issuer::{self, IssuerScheme};
    use kinject_mesh::names::{ISSUER_SECRET, TRUST_ROOTS_CONFIG_MAP};
    let secret = timed(
        "GET issuer Secret",
        Api::<Secret>::namespaced(client.clone(), ns).get_opt(ISSUER_SECRET),
    )
    .await
    .map_err(fail)?;
    let roots = timed(
        "GET trust-roots ConfigMap",
        Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(TRUST_ROOTS_CONFIG_MAP),
    )
    .await
    .map_err(fail)?;
    match issuer::material(ns, IssuerScheme::Kinject, secret.as_ref(), roots.as_ref()) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(fail(format!(
            "no Secret {ns}/{ISSUER_SECRET}: identity creates its own at its first start (is it running?); with --identity-external-issuer, cert-manager must create it"
        ))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// How long the anchors and the issuer must stay valid (Linkerd's 60 days).
pub(super) const PKI_MIN_DAYS: i64 = 60;

/// Linkerd's identity lines (`healthcheck.go`, "linkerd-identity"), pure.
pub(super) fn pki_lines(
    anchors_pem: &str,
    issuer_pem: &str,
    now: time::OffsetDateTime,
) -> Vec<(&'static str, Status)> {
    use kinject_identity::{ca, pki};
    let soon = now + time::Duration::days(PKI_MIN_DAYS);
    // (subject, notBefore, notAfter) of each certificate, for the lines.
    let dates = |ders: &[Vec<u8>]| -> Vec<(String, time::OffsetDateTime, time::OffsetDateTime)> {
        ders.iter()
            .filter_map(|d| ca::validity(d).map(|(nb, na)| (ca::subject(d), nb, na)))
            .collect()
    };
    let validity_lines = |what: &str, ders: &[Vec<u8>], rotate: &str| -> (Status, Status) {
        let all = dates(ders);
        let outside: Vec<String> = all
            .iter()
            .filter(|(_, nb, na)| *na <= now || *nb > now + ca::CLOCK_SKEW)
            .map(|(s, nb, na)| format!("{s:?} (valid {nb} to {na})"))
            .collect();
        let expiring: Vec<String> = all
            .iter()
            .filter(|(_, _, na)| *na > now && *na <= soon)
            .map(|(s, _, na)| format!("{s:?} expires at {na}"))
            .collect();
        let within = if outside.is_empty() {
            Status::Ok
        } else {
            fail(format!(
                "{what} not valid now: {}; {rotate}",
                outside.join(", ")
            ))
        };
        let lasting = if expiring.is_empty() {
            Status::Ok
        } else {
            Status::Warning(format!("{}; {rotate}", expiring.join(", ")))
        };
        (within, lasting)
    };
    let rotate_anchors = "rotate the trust anchors (docs/IDENTITY.md)";
    let rotate_issuer = "rotate the issuer (docs/IDENTITY.md)";
    const ANCHORS_ALGORITHM: &str = "trust anchors are using supported crypto algorithm";
    const ISSUER_ALGORITHM: &str = "issuer cert is using supported crypto algorithm";
    // Unsupported material stops the lines after it: they would only repeat it.
    let anchors = match pki::parse_trust_anchors(anchors_pem) {
        Ok(a) => a,
        Err(e) => return vec![(ANCHORS_ALGORITHM, fail(e.to_string()))],
    };
    let mut out = vec![(ANCHORS_ALGORITHM, Status::Ok)];
    let (within, lasting) = validity_lines("trust anchors", &anchors, rotate_anchors);
    out.push(("trust anchors are within their validity period", within));
    out.push(("trust anchors are valid for at least 60 days", lasting));
    let issuer = match pki::parse_certificates("issuer", issuer_pem, true) {
        Ok(i) => i,
        Err(e) => {
            out.push((ISSUER_ALGORITHM, fail(e.to_string())));
            return out;
        }
    };
    out.push((ISSUER_ALGORITHM, Status::Ok));
    let first = &issuer[..1];
    let (within, lasting) = validity_lines("the issuer is", first, rotate_issuer);
    out.push(("issuer cert is within its validity period", within));
    out.push(("issuer cert is valid for at least 60 days", lasting));
    let signed = anchors.iter().any(|a| ca::signed_by(&first[0], a));
    out.push((
        "issuer cert is issued by the trust anchor",
        if signed {
            Status::Ok
        } else {
            fail(format!(
                "no trust anchor signed the issuer {:?}: proxies would refuse every certificate; add its anchor to the bundle, or issue a new issuer from an anchor",
                ca::subject(&first[0])
            ))
        },
    ));
    out
}

/// Identity's Lease, then the issuer and the trust anchors as identity reads
/// them, and Linkerd's lines about them. The anchors, if they are good
/// (destination's certificate must chain to them).
pub(super) async fn identity_checks(
    client: &kube::Client,
    ns: &str,
    c: &mut Checker,
) -> Option<String> {
    c.run("kinject-identity", "identity holds its leader lease", Kind::Retryable, || async {
        let leases = Api::<Lease>::namespaced(client.clone(), ns);
        match timed("GET lease", leases.get_opt(kinject_mesh::names::IDENTITY_LEASE)).await {
            Ok(Some(l)) => lease_fresh(&l),
            Ok(None) => fail(format!(
                "no Lease {ns}/kinject-identity: is `kinject identity` running? kubectl -n {ns} logs deploy/{IDENTITY}"
            )),
            Err(e) => fail(e),
        }
    })
    .await;
    // The issuer and the trust anchors, as identity reads them; then
    // Linkerd's lines about them. Destination's certificate must chain to
    // the anchors.
    let material = c
        .value(
            "kinject-identity",
            "certificate config is valid",
            Kind::Retryable,
            || async { identity_material(client, ns).await },
        )
        .await;
    match material {
        Some(m) => {
            let now = time::OffsetDateTime::now_utc();
            let mut good = true;
            for (label, status) in pki_lines(&m.anchors_pem, &m.issuer.cert_pem, now) {
                good &= !matches!(status, Status::Fail(_));
                c.run("kinject-identity", label, Kind::Normal, || {
                    let status = status.clone();
                    async move { status }
                })
                .await;
            }
            good.then_some(m.anchors_pem)
        }
        None => None,
    }
}
