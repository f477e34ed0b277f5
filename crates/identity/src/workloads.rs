//! The per-workload half of the identity controller: one TLS Secret per
//! meshed workload (owned by the workload, so the garbage collector deletes
//! it with it), the trust bundle ConfigMaps in every meshed namespace, and
//! the control plane's own serving certificates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch, PatchParams,
};
use kube::runtime::reflector::{self, Store};
use time::OffsetDateTime;
use tracing::info;

use kinject_mesh::labels::owner_label_kind;

use crate::ca::{self, Ca};
use crate::config::{IdentityConfig, IdentityMetrics, TRUST_BUNDLE, TRUST_BUNDLE_KEY};
use crate::names;
use kinject_mesh::names::{DESTINATION_SECRET, WEBHOOK_SECRET};

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The label on every Secret this controller writes for a workload.
pub(crate) const MANAGED_LABEL: &str = "kinject.io/workload-identity";
const FIELD_MANAGER: &str = "kinject-identity";

/// A workload that needs an identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    /// Lowercase kind (`deployment`, …, `pod` for bare pods).
    pub kind: String,
    pub name: String,
}

/// The owner of a meshed pod, from the labels the injector wrote.
pub fn workload_of(pod: &PartialObjectMeta<Pod>) -> Option<Workload> {
    let md = &pod.metadata;
    let ns = md.namespace.clone()?;
    let labels = md.labels.as_ref()?;
    let owned = labels
        .iter()
        .find_map(|(k, v)| owner_label_kind(k).map(|kind| (kind.to_string(), v.clone())));
    let (kind, name) = match owned {
        Some(x) => x,
        None => ("pod".to_string(), md.name.clone()?),
    };
    Some(Workload {
        namespace: ns,
        kind,
        name,
    })
}

fn resource(
    kind: &str,
) -> Option<(
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
)> {
    // (group, versions to try, Kind, plural)
    Some(match kind {
        "deployment" => ("apps", &["v1"], "Deployment", "deployments"),
        "statefulset" => ("apps", &["v1"], "StatefulSet", "statefulsets"),
        "daemonset" => ("apps", &["v1"], "DaemonSet", "daemonsets"),
        "replicaset" => ("apps", &["v1"], "ReplicaSet", "replicasets"),
        "job" => ("batch", &["v1"], "Job", "jobs"),
        "cronjob" => ("batch", &["v1", "v1beta1"], "CronJob", "cronjobs"),
        "replicationcontroller" => (
            "",
            &["v1"],
            "ReplicationController",
            "replicationcontrollers",
        ),
        "pod" => ("", &["v1"], "Pod", "pods"),
        _ => return None,
    })
}

/// The workload's owner reference (its UID), or `None` if it no longer exists.
async fn owner_ref(client: &kube::Client, w: &Workload) -> Result<Option<OwnerReference>> {
    let Some((group, versions, kind, plural)) = resource(&w.kind) else {
        return Ok(None);
    };
    for version in versions {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &w.namespace, &ar);
        match api.get_opt(&w.name).await {
            Ok(Some(obj)) => {
                return Ok(obj.metadata.uid.map(|uid| OwnerReference {
                    api_version: ar.api_version.clone(),
                    kind: kind.into(),
                    name: w.name.clone(),
                    uid,
                    ..OwnerReference::default()
                }));
            }
            Ok(None) => return Ok(None),
            // Version not served (CronJob v1 on old servers): try the next.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Whether a workload Secret is still good: issued by this CA, for this
/// identity, not due for renewal, complete.
fn secret_ok(ca: &Ca, s: &Secret, dns: &[String], ca_pem: &str, now: OffsetDateTime) -> bool {
    let (Some(chain), Some(_key), Some(root)) =
        (text(s, "tls.crt"), text(s, "tls.key"), text(s, "ca.crt"))
    else {
        return false;
    };
    if root != ca_pem || !ca.verifies(&chain) {
        return false;
    }
    let Ok(der) = ca::parse_pem_cert("workload", &chain) else {
        return false;
    };
    let Some((nb, na)) = ca::validity(&der) else {
        return false;
    };
    ca::dns_names(&der) == dns && !ca::needs_renewal(nb, na, now)
}

pub(crate) async fn reconcile(
    client: &kube::Client,
    cfg: &IdentityConfig,
    ca: &Ca,
    metrics: &IdentityMetrics,
    pods: &Store<PartialObjectMeta<Pod>>,
    secrets: &Store<Secret>,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let bundle = ca.trust_anchors_pem.as_str();
    let workloads: BTreeSet<Workload> =
        pods.state().iter().filter_map(|p| workload_of(p)).collect();
    let mut namespaces: BTreeSet<String> = workloads.iter().map(|w| w.namespace.clone()).collect();
    namespaces.insert(cfg.namespace.clone());
    for ns in &namespaces {
        apply_bundle(client, ns, bundle).await?;
    }
    let ns = &cfg.namespace;
    let svc = &cfg.webhook_service;
    serving_certificate(
        client,
        cfg,
        ca,
        bundle,
        now,
        &ServingCert {
            what: "the injector's serving certificate",
            secret: WEBHOOK_SECRET,
            dns: vec![
                format!("{svc}.{ns}.svc"),
                format!("{svc}.{ns}.svc.cluster.local"),
            ],
            ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            lifetime: cfg.webhook_lifetime,
            dir: cfg.webhook_cert_dir.as_deref(),
        },
    )
    .await?;
    serving_certificate(
        client,
        cfg,
        ca,
        bundle,
        now,
        &ServingCert {
            what: "the destination controller's serving certificate",
            secret: DESTINATION_SECRET,
            dns: vec![destination_service_name(ns, &cfg.trust_domain)],
            ips: Vec::new(),
            lifetime: cfg.destination_lifetime,
            dir: cfg.destination_cert_dir.as_deref(),
        },
    )
    .await?;
    // Workloads are independent: up to 16 are handled at once (the API
    // server round trips dominate), and one failure does not stop the others.
    let results: Vec<Result<()>> = futures::stream::iter(&workloads)
        .map(|w| ensure_workload(client, cfg, ca, bundle, metrics, secrets, w, now))
        .buffer_unordered(16)
        .collect()
        .await;
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failures.is_empty() {
        bail!(
            "{} workload(s) failed; first: {}",
            failures.len(),
            failures[0]
        );
    }
    Ok(())
}

async fn apply_bundle(client: &kube::Client, ns: &str, root_pem: &str) -> Result<()> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": TRUST_BUNDLE, "namespace": ns},
        "data": {TRUST_BUNDLE_KEY: root_pem},
    });
    api.patch(
        TRUST_BUNDLE,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .with_context(|| format!("writing ConfigMap {ns}/{TRUST_BUNDLE}"))?;
    Ok(())
}

fn tls_secret_data(chain: &str, key: &str, trust: &str) -> BTreeMap<String, ByteString> {
    [("tls.crt", chain), ("tls.key", key), ("ca.crt", trust)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The name the destination and policy services' certificate carries (the
/// injected `LINKERD2_PROXY_DESTINATION_SVC_NAME`/`_POLICY_SVC_NAME`).
pub fn destination_service_name(control_ns: &str, trust_domain: &str) -> String {
    kinject_mesh::names::DESTINATION.identity(control_ns, trust_domain)
}

/// A serving certificate the controller keeps for a control-plane server.
struct ServingCert<'a> {
    what: &'static str,
    secret: &'static str,
    dns: Vec<String>,
    ips: Vec<std::net::IpAddr>,
    lifetime: Duration,
    dir: Option<&'a std::path::Path>,
}

/// A server's certificate: a Secret in the control-plane namespace (mounted
/// and hot-reloaded in cluster) and, optionally, files. Its `ca.crt` is the
/// trust bundle (the injector registers it as caBundle), so a root
/// rotation's overlap covers admission too.
async fn serving_certificate(
    client: &kube::Client,
    cfg: &IdentityConfig,
    ca: &Ca,
    bundle: &str,
    now: OffsetDateTime,
    want: &ServingCert<'_>,
) -> Result<()> {
    let ns = &cfg.namespace;
    let dns = &want.dns;
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let mut current = api.get_opt(want.secret).await?;
    if !current
        .as_ref()
        .is_some_and(|s| secret_ok(ca, s, dns, bundle, now))
    {
        let leaf = ca.issue(dns, &want.ips, now, want.lifetime)?;
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": want.secret, "namespace": ns,
                         "annotations": {"kinject.io/not-after": leaf.not_after.to_string()}},
            "data": tls_secret_data(&leaf.chain_pem, &leaf.key_pem, bundle),
        });
        current = Some(
            api.patch(
                want.secret,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .with_context(|| format!("writing {}", want.what))?,
        );
        info!(not_after = %leaf.not_after, secret = want.secret, "issued {}", want.what);
    }
    if let (Some(dir), Some(s)) = (want.dir, &current) {
        for (file, key) in [
            ("ca.crt", "ca.crt"),
            ("tls.key", "tls.key"),
            ("tls.crt", "tls.crt"),
        ] {
            let want = text(s, key).unwrap_or_default();
            let path = dir.join(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
                // Write then rename, so a reader never sees half a file.
                let tmp = dir.join(format!(".{file}.tmp"));
                std::fs::write(&tmp, &want)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn ensure_workload(
    client: &kube::Client,
    cfg: &IdentityConfig,
    ca: &Ca,
    bundle: &str,
    metrics: &IdentityMetrics,
    secrets: &Store<Secret>,
    w: &Workload,
    now: OffsetDateTime,
) -> Result<()> {
    let name = names::secret_name(&w.name, &w.kind);
    let dns = names::workload_dns_name(&w.name, &w.kind, &w.namespace, &cfg.namespace);
    let current = secrets.get(&reflector::ObjectRef::new(&name).within(&w.namespace));
    if current
        .as_deref()
        .is_some_and(|s| secret_ok(ca, s, std::slice::from_ref(&dns), bundle, now))
    {
        return Ok(());
    }
    let Some(owner) = owner_ref(client, w).await? else {
        return Ok(()); // The workload is gone; its pods will follow.
    };
    let leaf = ca.issue(std::slice::from_ref(&dns), &[], now, cfg.workload_lifetime)?;
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": w.namespace,
            "labels": {MANAGED_LABEL: "true"},
            "annotations": {"kinject.io/identity": dns, "kinject.io/not-after": leaf.not_after.to_string()},
            "ownerReferences": [owner],
        },
        "data": tls_secret_data(&leaf.chain_pem, &leaf.key_pem, bundle),
    });
    Api::<Secret>::namespaced(client.clone(), &w.namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("writing Secret {}/{name}", w.namespace))?;
    if current.is_some() {
        metrics.renewed.inc();
    } else {
        metrics.issued.inc();
    }
    info!(namespace = %w.namespace, secret = %name, renewed = current.is_some(), "issued workload certificate");
    Ok(())
}
