//! `kinject check --proxy`: the data plane, after the control plane's lines
//! (Linkerd's `linkerd-data-plane` group). What the proxies run and hold is
//! read from each proxy's own `/metrics` (through the API server's pod
//! proxy), not from the pod manifests: the version it was built as
//! (`proxy_build_info`) and the certificate it holds
//! (`control_identity_cert_*_timestamp_seconds`). kinject adds the pods that
//! should be meshed and are not, with explain's reason.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kinject_inject::proxy::PROXY_CONTAINER;
use kinject_mesh::labels::CONTROL_PLANE_NS_LABEL;
use kube::Api;
use kube::api::ListParams;

use super::{CheckArgs, Checker, Kind, Status, fail, timed};
use crate::stat::resources::PodInfo;

const CATEGORY: &str = "kinject-data-plane";
/// How many names a line lists before "and N more".
const NAMED: usize = 5;

/// What a proxy's metrics say about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyFacts {
    pub version: Option<String>,
    /// Unix seconds.
    pub cert_expires: Option<f64>,
    pub cert_refreshed: Option<f64>,
}

impl ProxyFacts {
    pub fn parse(text: &str) -> ProxyFacts {
        use prometheus_parse::Value;
        let mut facts = ProxyFacts::default();
        let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        else {
            return facts;
        };
        for s in scrape.samples {
            let value = match s.value {
                Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) if v.is_finite() => v,
                _ => continue,
            };
            match s.metric.as_str() {
                "proxy_build_info" => facts.version = s.labels.get("version").map(str::to_string),
                "control_identity_cert_expiration_timestamp_seconds" if value > 0.0 => {
                    facts.cert_expires = Some(value)
                }
                "control_identity_cert_refresh_timestamp_seconds" if value > 0.0 => {
                    facts.cert_refreshed = Some(value)
                }
                _ => {}
            }
        }
        facts
    }
}

fn listed(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        s.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    s
}

fn proxy_ready(p: &Pod) -> bool {
    let status = p.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
        .any(|c| c.name == PROXY_CONTAINER && c.ready)
}

/// The version line: every answering proxy runs `expected`.
pub fn version_status(facts: &[(String, ProxyFacts)], expected: &str) -> Status {
    let other: Vec<String> = facts
        .iter()
        .filter(|(_, f)| f.version.as_deref() != Some(expected))
        .map(|(name, f)| format!("{name} ({})", f.version.as_deref().unwrap_or("no version")))
        .collect();
    if other.is_empty() {
        Status::Ok
    } else {
        Status::Warning(format!(
            "the values name proxy {expected}; other builds run in {}: {}; `kubectl rollout restart` their workloads after an upgrade",
            if other.len() == 1 {
                "1 pod".to_string()
            } else {
                format!("{} pods", other.len())
            },
            listed(&other)
        ))
    }
}

/// The certificate line: every answering proxy holds an unexpired
/// certificate that identity issued since the current issuer took over.
/// `issuer_since`: the current issuer's notBefore (unix seconds).
pub fn certificate_status(
    facts: &[(String, ProxyFacts)],
    issuer_since: Option<f64>,
    now: f64,
) -> Status {
    let mut expired = Vec::new();
    let mut none = Vec::new();
    let mut older = Vec::new();
    for (name, f) in facts {
        match (f.cert_expires, f.cert_refreshed) {
            (None, _) => none.push(name.clone()),
            (Some(exp), _) if exp <= now => expired.push(name.clone()),
            (Some(_), Some(at)) if issuer_since.is_some_and(|since| at < since) => {
                older.push(name.clone())
            }
            _ => {}
        }
    }
    if !expired.is_empty() {
        return fail(format!(
            "{} hold an expired certificate (identity refused or could not be reached): {}; check `kinject check` above, then `kubectl rollout restart` their workloads",
            expired.len(),
            listed(&expired)
        ));
    }
    let mut said = Vec::new();
    if !older.is_empty() {
        said.push(format!(
            "{} still hold a certificate from before the current issuer: {} (they renew on their own before it expires; `kubectl rollout restart` renews now)",
            older.len(),
            listed(&older)
        ));
    }
    if !none.is_empty() {
        said.push(format!(
            "{} report no identity certificate: {} (not linkerd2-proxy, or identity disabled)",
            none.len(),
            listed(&none)
        ));
    }
    if said.is_empty() {
        Status::Ok
    } else {
        Status::Warning(said.join("; "))
    }
}

pub(super) async fn checks(client: &kube::Client, args: &CheckArgs, c: &mut Checker) {
    let linkerd_ns = args.namespace.name.as_str();
    let scope = args.proxy_namespace.as_deref();
    if let Some(ns) = scope {
        let found = c
            .run(
                CATEGORY,
                "data plane namespace exists",
                Kind::Fatal,
                || async {
                    match timed(
                        "GET namespace",
                        Api::<Namespace>::all(client.clone()).get_opt(ns),
                    )
                    .await
                    {
                        Ok(Some(_)) => Status::Ok,
                        Ok(None) => fail(format!("namespace {ns:?} not found")),
                        Err(e) => fail(e),
                    }
                },
            )
            .await;
        if !found {
            return;
        }
    }
    let where_ = scope.map_or("the cluster".to_string(), |ns| format!("namespace {ns}"));
    let pods = c
        .value(CATEGORY, "data plane proxies are ready", Kind::Retryable, || async {
            let api: Api<Pod> = match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let selector = format!("{CONTROL_PLANE_NS_LABEL}={linkerd_ns}");
            let list = timed("list pods", api.list(&ListParams::default().labels(&selector)))
                .await
                .map_err(fail)?
                .items;
            let running: Vec<&Pod> = list
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if running.is_empty() {
                return Err(Status::Warning(format!("no running meshed pods in {where_}")));
            }
            let unready: Vec<String> = running
                .iter()
                .filter(|p| !proxy_ready(p))
                .map(|p| PodInfo::from_pod(p, linkerd_ns))
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            if !unready.is_empty() {
                return Err(fail(format!(
                    "{} of {} proxies are not ready: {}; kubectl describe pod, and the proxy's log (kubectl logs POD -c {PROXY_CONTAINER})",
                    unready.len(),
                    running.len(),
                    listed(&unready)
                )));
            }
            Ok(running
                .iter()
                .map(|p| PodInfo::from_pod(p, linkerd_ns))
                .collect::<Vec<_>>())
        })
        .await;
    if let Some(pods) = pods {
        proxy_checks(client, linkerd_ns, &pods, c).await;
    }
    c.run(CATEGORY, "no pod that should be meshed lacks the proxy", Kind::Normal, || async {
        match crate::explain::pods_missing_the_proxy(client, linkerd_ns, scope).await {
            Ok(missing) if missing.is_empty() => Status::Ok,
            Ok(missing) => {
                let named: Vec<String> =
                    missing.iter().map(|(p, why)| format!("{p} ({why})")).collect();
                Status::Warning(format!(
                    "{} run without the proxy although the injector would add it: {}; `kubectl rollout restart` their workloads; `kinject explain pod/NAME -n NS` says why",
                    missing.len(),
                    listed(&named)
                ))
            }
            Err(e) => Status::Warning(format!("cannot tell: {e:#}")),
        }
    })
    .await;
}

/// What the ready proxies say of themselves (their metrics): that they
/// answer, their version, and their certificate's issuer.
async fn proxy_checks(client: &kube::Client, linkerd_ns: &str, pods: &[PodInfo], c: &mut Checker) {
    let scraped: Vec<(String, Result<ProxyFacts, String>)> = futures::stream::iter(pods.iter())
        .map(|p| async move {
            let name = format!("{}/{}", p.namespace, p.name);
            let text =
                crate::stat::source::proxy_metrics(client, &p.namespace, &p.name, p.admin_port)
                    .await;
            (name, text.map(|t| ProxyFacts::parse(&t)))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let silent: Vec<String> = scraped
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n} ({e})")))
        .collect();
    c.run(
        CATEGORY,
        "data plane proxies answer with their metrics",
        Kind::Normal,
        || async {
            if silent.is_empty() {
                Status::Ok
            } else {
                fail(format!("{} did not: {}", silent.len(), listed(&silent)))
            }
        },
    )
    .await;
    let facts: Vec<(String, ProxyFacts)> = scraped
        .into_iter()
        .filter_map(|(n, r)| r.ok().map(|f| (n, f)))
        .collect();
    let expected = crate::values_cmd::from_cluster(client, linkerd_ns)
        .await
        .map(|v| kinject_inject::proxy::proxy_version(&v).to_string());
    c.run(
        CATEGORY,
        "data plane is up-to-date",
        Kind::Normal,
        || async {
            match &expected {
                Ok(v) => version_status(&facts, v),
                Err(e) => Status::Warning(format!("cannot read the values: {e:#}")),
            }
        },
    )
    .await;
    let issuer_since = super::identity_material(client, linkerd_ns)
        .await
        .ok()
        .and_then(|m| {
            let der = kinject_identity::ca::pem_certificates(&m.issuer.cert_pem)
                .into_iter()
                .next()?;
            let (not_before, _) = kinject_identity::ca::validity(&der)?;
            Some(not_before.unix_timestamp() as f64)
        });
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    c.run(
        CATEGORY,
        "proxies' certificates are from the current issuer",
        Kind::Normal,
        || async { certificate_status(&facts, issuer_since, now) },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = include_str!("../stat/testdata/server-inbound.txt");

    #[test]
    fn the_real_proxys_metrics_give_version_and_certificate() {
        let f = ProxyFacts::parse(REAL);
        assert_eq!(f.version.as_deref(), Some("0.0.0-dev"));
        assert!(f.cert_expires.is_some_and(|e| e > 1.7e9), "{f:?}");
        assert!(f.cert_refreshed.is_some_and(|r| r > 1.7e9), "{f:?}");
        assert_eq!(ProxyFacts::parse("<html>"), ProxyFacts::default());
    }

    fn facts(version: &str, expires: Option<f64>, refreshed: Option<f64>) -> ProxyFacts {
        ProxyFacts {
            version: Some(version.into()),
            cert_expires: expires,
            cert_refreshed: refreshed,
        }
    }

    #[test]
    fn every_label_fits_the_seeds_line() {
        for description in [
            "data plane namespace exists",
            "data plane proxies are ready",
            "data plane proxies answer with their metrics",
            "data plane is up-to-date",
            "proxies' certificates are from the current issuer",
            "no pod that should be meshed lacks the proxy",
        ] {
            let r = super::super::CheckResult {
                category: CATEGORY,
                description: description.into(),
                status: Status::Ok,
            };
            // line() asserts (debug) that the label leaves room for the dots.
            assert!(super::super::line(&r, false).ends_with("[ok]"));
        }
    }

    #[test]
    fn versions_other_than_the_values_warn_with_names() {
        let all = vec![
            ("apps/a".to_string(), facts("edge-26.8.3", None, None)),
            ("apps/b".to_string(), facts("0.0.0-standin", None, None)),
        ];
        assert_eq!(version_status(&all[..1], "edge-26.8.3"), Status::Ok);
        match version_status(&all, "edge-26.8.3") {
            Status::Warning(w) => assert!(w.contains("apps/b (0.0.0-standin)"), "{w}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn certificates_expired_older_or_missing() {
        let now = 1000.0;
        let ok = ("apps/ok".to_string(), facts("v", Some(2000.0), Some(900.0)));
        assert_eq!(
            certificate_status(std::slice::from_ref(&ok), Some(500.0), now),
            Status::Ok
        );
        let expired = ("apps/old".to_string(), facts("v", Some(999.0), Some(100.0)));
        assert!(matches!(
            certificate_status(&[ok.clone(), expired], Some(500.0), now),
            Status::Fail(f) if f.contains("apps/old")
        ));
        let before = (
            "apps/before".to_string(),
            facts("v", Some(2000.0), Some(400.0)),
        );
        assert!(matches!(
            certificate_status(&[ok.clone(), before], Some(500.0), now),
            Status::Warning(w) if w.contains("apps/before") && w.contains("before the current issuer")
        ));
        let none = ("apps/none".to_string(), facts("v", None, None));
        assert!(matches!(
            certificate_status(&[ok, none], Some(500.0), now),
            Status::Warning(w) if w.contains("apps/none") && w.contains("no identity certificate")
        ));
    }
}
