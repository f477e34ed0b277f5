//! `kinject check`: is the control plane healthy, or (`--pre`) can it be
//! installed? The seed's `linkerd check` format: one `category: description`
//! line per check, dots to column 80, then `[ok]`, `[FAIL] -- why`,
//! `[warning] -- why` or `[retry] -- why`; then `Status check results are
//! [ok]` (exit 0) or `[FAIL]` (exit 2). Every failure says what to do next.
//! No call leaves the cluster: versions are compared with the running
//! control plane, never with the internet.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde::Serialize;

mod data_plane;
mod destination;
mod identity;
mod policy;
mod webhook;

use destination::*;
use identity::*;
use policy::*;
use webhook::*;

use crate::install::{self, IDENTITY, INJECTOR};
use crate::values_cmd::Output;

/// Minimum Kubernetes version kinject supports (its seed-era test cluster).
const MIN_MINOR: u32 = 20;
/// A single API call never waits longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Check that the control plane can be installed instead.
    #[arg(long)]
    pub pre: bool,
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
    /// Retry checks that can still pass until this much time has passed (Go
    /// duration; 0s checks once). Five minutes, as `linkerd check`: run
    /// right after `install | kubectl apply`, it waits for the control plane
    /// to start instead of failing.
    #[arg(long, default_value = "5m")]
    pub wait: String,
    /// The serving certificate must stay valid at least this many days.
    #[arg(long, default_value_t = 7)]
    pub cert_min_days: u32,
    /// Also check the data plane: the meshed pods' proxies (ready, their
    /// version and certificate from their own metrics) and the pods that
    /// should be meshed and are not.
    #[arg(long, conflicts_with = "pre")]
    pub proxy: bool,
    /// With --proxy: only this namespace's pods (default: every namespace).
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NAMESPACE",
        requires = "proxy"
    )]
    pub proxy_namespace: Option<String>,
    /// Namespace of the end-to-end probe (a server-side dry-run pod create).
    #[arg(long, default_value = "default")]
    pub probe_namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml, hide_default_value = true)]
    pub output: Output,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", content = "error", rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail(String),
    Warning(String),
    Retry(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub category: &'static str,
    pub description: String,
    #[serde(flatten)]
    pub status: Status,
}

impl CheckResult {
    fn label(&self) -> String {
        format!("{}: {}", self.category, self.description)
    }
}

/// One line in the seed's format (79 columns up to the status).
pub fn line(r: &CheckResult, colour: bool) -> String {
    let label = r.label();
    debug_assert!(
        label.chars().count() < 75,
        "{label:?} leaves no room for the dots before its status"
    );
    let dots = 80usize.saturating_sub(label.chars().count() + "[ok]".len() + 1);
    let paint = |code: &str, s: &str| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let status = match &r.status {
        Status::Ok => paint("32", "[ok]"),
        Status::Fail(why) => format!("{} -- {why}", paint("31", "[FAIL]")),
        Status::Warning(why) => format!("{} -- {why}", paint("33", "[warning]")),
        Status::Retry(why) => format!("{} -- {why}", paint("33", "[retry]")),
    };
    format!("{label}{}{status}", ".".repeat(dots))
}

/// Whether a failed check may pass later (retried under `--wait`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Stops everything after it when it fails; never retried (a kubeconfig
    /// or an API server that does not answer is the user's to fix, as in
    /// `linkerd check`).
    Final,
    /// Stops everything after it when it fails; retried until the deadline.
    Fatal,
    /// May pass later: retried until the deadline.
    Retryable,
    Normal,
}

struct Checker {
    out: Vec<CheckResult>,
    deadline: Instant,
    colour: bool,
    print: bool,
    failed: bool,
}

impl Checker {
    /// Runs one check that yields nothing but its status.
    async fn run<F, Fut>(
        &mut self,
        category: &'static str,
        description: &str,
        kind: Kind,
        mut f: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Status>,
    {
        self.value(category, description, kind, || {
            let fut = f();
            async move {
                match fut.await {
                    Status::Ok => Ok(()),
                    other => Err(other),
                }
            }
        })
        .await
        .is_some()
    }

    /// Runs one check, retrying it while `--wait` allows, and prints its
    /// line. `Some` when it passed (with what it found).
    async fn value<T, F, Fut>(
        &mut self,
        category: &'static str,
        description: &str,
        kind: Kind,
        mut f: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        loop {
            let (status, value) = match f().await {
                Ok(v) => (Status::Ok, Some(v)),
                Err(Status::Ok) => (Status::Ok, None),
                Err(s) => (s, None),
            };
            let retry = matches!(kind, Kind::Fatal | Kind::Retryable)
                && matches!(status, Status::Fail(_))
                && Instant::now() + Duration::from_secs(1) < self.deadline;
            if let (true, Status::Fail(why)) = (retry, &status) {
                self.emit(CheckResult {
                    category,
                    description: description.to_string(),
                    status: Status::Retry(why.clone()),
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if matches!(status, Status::Fail(_)) {
                self.failed = true;
            }
            self.emit(CheckResult {
                category,
                description: description.to_string(),
                status,
            });
            return value;
        }
    }

    fn emit(&mut self, r: CheckResult) {
        if self.print {
            println!("{}", line(&r, self.colour));
        }
        // Retry lines are progress, not results.
        if !matches!(r.status, Status::Retry(_)) {
            self.out.push(r);
        }
    }
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

fn fail(why: impl Into<String>) -> Status {
    Status::Fail(why.into())
}

pub fn run(args: &CheckArgs) -> Result<i32> {
    let wait = crate::server_args::duration("--wait", &args.wait)?;
    let json = args.output == Output::Json;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut c = Checker {
        out: Vec::new(),
        deadline: Instant::now() + wait,
        colour: !json && std::io::stdout().is_terminal(),
        print: !json,
        failed: false,
    };
    rt.block_on(checks(args, &mut c));
    if json {
        let body = serde_json::json!({"success": !c.failed, "checks": c.out});
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let verdict = if c.failed { "[FAIL]" } else { "[ok]" };
        println!("\nStatus check results are {verdict}");
    }
    std::io::stdout().flush()?;
    Ok(if c.failed { 2 } else { 0 })
}

async fn checks(args: &CheckArgs, c: &mut Checker) {
    let ns = args.namespace.name.as_str();
    // kubernetes-api
    let client = c
        .value(
            "kubernetes-api",
            "can initialize the client",
            Kind::Final,
            || async {
                timed("kubeconfig", kinject_runtime::client::client())
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "{e}; set KUBECONFIG to a kubeconfig for the cluster (or --kubeconfig and --context, or run in a pod)"
                        ))
                    })
            },
        )
        .await;
    let Some(client) = client else {
        return;
    };
    let version = c
        .value(
            "kubernetes-api",
            "can query the Kubernetes API",
            Kind::Final,
            || async {
                timed("GET /version", client.apiserver_version())
                    .await
                    .map_err(|e| {
                        fail(format!(
                            "{e}; is the API server in your kubeconfig up and reachable?"
                        ))
                    })
            },
        )
        .await;
    let Some(version) = version else {
        return;
    };
    c.run(
        "kubernetes-api",
        "is running the minimum Kubernetes API version",
        Kind::Normal,
        || async {
            let minor: u32 = version
                .minor
                .trim_end_matches(|ch: char| !ch.is_ascii_digit())
                .parse()
                .unwrap_or(0);
            if version.major == "1" && minor >= MIN_MINOR {
                Status::Ok
            } else {
                fail(format!(
                    "the API server is {}.{}; kinject needs 1.{MIN_MINOR} or later",
                    version.major, version.minor
                ))
            }
        },
    )
    .await;

    if args.pre {
        pre_checks(&client, ns, c).await;
    } else {
        let server = kinject_k8s::ServerVersion::parse(&version.major, &version.minor);
        control_plane_checks(&client, args, c, server).await;
        if args.proxy {
            data_plane::checks(&client, args, c).await;
        }
    }
}

async fn pre_checks(client: &kube::Client, ns: &str, c: &mut Checker) {
    let cat = "kubernetes-setup";
    c.run(cat, "control plane namespace does not already exist", Kind::Normal, || async {
        match timed("GET namespace", Api::<Namespace>::all(client.clone()).get_opt(ns)).await {
            Ok(None) => Status::Ok,
            Ok(Some(_)) => fail(format!(
                "namespace {ns:?} exists; choose another with -l, or `kinject uninstall -l {ns} | kubectl delete -f -` first"
            )),
            Err(e) => fail(e),
        }
    })
    .await;
    c.run(cat, "no other control plane owns kinject's cluster-wide names", Kind::Normal, || async {
        let mut owners = Vec::new();
        for name in install::cluster_role_names(ns) {
            match timed("GET clusterrole", Api::<ClusterRole>::all(client.clone()).get_opt(&name)).await {
                Ok(Some(cr)) if !is_kinject(&cr.metadata) => owners.push(format!("ClusterRole {name}")),
                Ok(_) => {}
                Err(e) => return fail(e),
            }
        }
        let mwcs = Api::<MutatingWebhookConfiguration>::all(client.clone());
        match timed("GET webhook configuration", mwcs.get_opt(kinject_k8s::webhook_config::CONFIG_NAME)).await {
            Ok(Some(m)) if !managed_by_kinject(&m.metadata) => owners.push(format!(
                "MutatingWebhookConfiguration {}",
                kinject_k8s::webhook_config::CONFIG_NAME
            )),
            Ok(_) => {}
            Err(e) => return fail(e),
        }
        if owners.is_empty() {
            Status::Ok
        } else {
            fail(format!(
                "a Linkerd control plane already owns {}: uninstall it first (`linkerd uninstall | kubectl delete -f -`)",
                owners.join(", ")
            ))
        }
    })
    .await;
    for (group, resource, kind, namespaced) in [
        ("", "namespaces", "Namespaces", false),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRoles",
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBindings",
            false,
        ),
        ("rbac.authorization.k8s.io", "roles", "Roles", true),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            "RoleBindings",
            true,
        ),
        ("", "serviceaccounts", "ServiceAccounts", true),
        ("", "services", "Services", true),
        ("apps", "deployments", "Deployments", true),
        ("", "configmaps", "ConfigMaps", true),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfigurations",
            false,
        ),
    ] {
        c.run(cat, &format!("can create {kind}"), Kind::Normal, || async {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(group.into()),
                        resource: Some(resource.into()),
                        verb: Some("create".into()),
                        namespace: namespaced.then(|| ns.to_string()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let api = Api::<SelfSubjectAccessReview>::all(client.clone());
            match timed(
                "SelfSubjectAccessReview",
                api.create(&PostParams::default(), &review),
            )
            .await
            {
                Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Status::Ok,
                Ok(_) => fail(format!(
                    "you may not create {kind}; install with a cluster-admin kubeconfig"
                )),
                Err(e) => fail(e),
            }
        })
        .await;
    }
}

fn is_kinject(meta: &kube::api::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/part-of"))
        .is_some_and(|v| v == "kinject")
}

/// The webhook configuration kinject registers carries its field manager.
fn managed_by_kinject(meta: &kube::api::ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(|m| {
        m.manager
            .as_deref()
            .is_some_and(|n| n.starts_with("kinject"))
    })
}

/// `server`: what the server supports (matchConditions, so the injector
/// registers them; EndpointSlices v1).
async fn control_plane_checks(
    client: &kube::Client,
    args: &CheckArgs,
    c: &mut Checker,
    server: Option<kinject_k8s::ServerVersion>,
) {
    let ns = args.namespace.name.as_str();
    let match_conditions = server.is_some_and(|v| v.supports_match_conditions());
    let ok = c
        .run("kinject-existence", "control plane namespace exists", Kind::Fatal, || async {
            match timed("GET namespace", Api::<Namespace>::all(client.clone()).get_opt(ns)).await {
                Ok(Some(_)) => Status::Ok,
                Ok(None) => fail(format!(
                    "namespace {ns:?} not found; install with `kinject install -l {ns} | kubectl apply -f -`"
                )),
                Err(e) => fail(e),
            }
        })
        .await;
    if !ok {
        return;
    }
    // Deployments exist when `kinject install` put the servers in the
    // cluster; servers run elsewhere (development, tests) have none.
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let installed = timed(
        "list Deployments",
        deployments.list(&ListParams::default().labels("app.kubernetes.io/part-of=kinject")),
    )
    .await
    .map(|l| l.items)
    .unwrap_or_default();
    if !installed.is_empty() {
        c.run(
            "kinject-existence",
            "control plane pods are ready",
            Kind::Retryable,
            || async { pods_ready(client, ns).await },
        )
        .await;
    }
    let anchors = identity_checks(client, ns, c).await;

    if !installed.is_empty() {
        let modern_slices = server.is_none_or(|v| v.serves_endpoint_slices_v1());
        destination_checks(client, args, c, anchors.as_deref(), modern_slices).await;
        policy_checks(client, &args.namespace.name, c).await;
    }

    webhook_checks(client, args, c, match_conditions).await;
    if !installed.is_empty() {
        c.run("kinject-version", "control plane and cli versions match", Kind::Normal, || async {
            let cli = install::VERSION;
            let other: Vec<String> = installed
                .iter()
                .filter_map(|d| {
                    let v = d.metadata.labels.as_ref()?.get("app.kubernetes.io/version")?;
                    (v != cli).then(|| format!("{} is {v}", d.metadata.name.as_deref().unwrap_or("?")))
                })
                .collect();
            if other.is_empty() {
                Status::Ok
            } else {
                Status::Warning(format!(
                    "the cli is {cli} but {}; upgrade with `kinject install | kubectl apply -f -`",
                    other.join(", ")
                ))
            }
        })
        .await;
    }
}

async fn pods_ready(client: &kube::Client, ns: &str) -> Status {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let list = match timed(
        "list pods",
        pods.list(&ListParams::default().labels("app.kubernetes.io/part-of=kinject")),
    )
    .await
    {
        Ok(l) => l.items,
        Err(e) => return fail(e),
    };
    if list.is_empty() {
        return fail(format!(
            "no control plane pods in {ns}; kubectl -n {ns} get deploy,rs"
        ));
    }
    let mut problems = Vec::new();
    let mut first_unready = None;
    for p in &list {
        let name = p.metadata.name.as_deref().unwrap_or("?");
        let status = p.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            continue;
        }
        let waiting = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|cs| cs.state.as_ref()?.waiting.as_ref())
            .map(|w| match &w.message {
                Some(m) => format!("{}: {m}", w.reason.as_deref().unwrap_or("waiting")),
                None => w.reason.clone().unwrap_or_else(|| "waiting".into()),
            })
            .next();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        first_unready.get_or_insert(name.to_string());
        problems.push(format!(
            "{name} is not ready ({})",
            waiting.unwrap_or(phase)
        ));
    }
    if problems.is_empty() {
        Status::Ok
    } else {
        fail(format!(
            "{}; kubectl -n {ns} describe pod {}",
            problems.join("; "),
            first_unready.unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kinject_identity::ca::{self, Ca};

    const DAY: Duration = Duration::from_secs(86_400);
    const NAME: &str = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local";

    /// A trust root and a CA issuing under it.
    fn mesh_ca(now: time::OffsetDateTime) -> (String, Ca) {
        let root = ca::generate_root("root.linkerd.cluster.local", now, 365 * DAY).expect("root");
        let issuer = Ca::new_issuer(&root, now, 90 * DAY).expect("issuer");
        let ca = Ca::load(&root.cert_pem, &issuer, now).expect("load");
        (root.cert_pem, ca)
    }

    fn secret(tls_crt: Option<&str>) -> Secret {
        Secret {
            data: tls_crt.map(|c| {
                [("tls.crt".to_string(), ByteString(c.as_bytes().to_vec()))]
                    .into_iter()
                    .collect()
            }),
            ..Secret::default()
        }
    }

    fn status_of(lines: &[(&'static str, Status)], label: &str) -> Status {
        lines
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no line {label:?} in {lines:?}"))
    }

    #[test]
    fn identity_lines_follow_linkerds() {
        let now = time::OffsetDateTime::now_utc();
        let old = ca::generate_root("old-root", now, 3650 * DAY).expect("root");
        let issuer = Ca::new_issuer(&old, now, 365 * DAY).expect("issuer");
        let all_ok = pki_lines(&old.cert_pem, &issuer.cert_pem, now);
        assert_eq!(all_ok.len(), 7);
        assert!(all_ok.iter().all(|(_, s)| *s == Status::Ok), "{all_ok:?}");
        for (label, _) in &all_ok {
            assert!(format!("kinject-identity: {label}").len() < 75, "{label}");
        }
        // A bundle of two anchors (a rotation) is fine.
        let new = ca::generate_root("new-root", now, 3650 * DAY).expect("root");
        let both = format!("{}{}", old.cert_pem, new.cert_pem);
        assert!(
            pki_lines(&both, &issuer.cert_pem, now)
                .iter()
                .all(|(_, s)| *s == Status::Ok)
        );
        // The issuer's anchor removed too early.
        let lines = pki_lines(&new.cert_pem, &issuer.cert_pem, now);
        let why = failure(status_of(
            &lines,
            "issuer cert is issued by the trust anchor",
        ));
        assert!(why.contains("no trust anchor signed the issuer"), "{why}");
        // Expiring within 60 days: a warning; expired: a failure.
        let short = Ca::new_issuer(&old, now, 30 * DAY).expect("issuer");
        let lines = pki_lines(&old.cert_pem, &short.cert_pem, now);
        assert!(
            matches!(status_of(&lines, "issuer cert is valid for at least 60 days"), Status::Warning(w) if w.contains("rotate the issuer"))
        );
        assert_eq!(
            status_of(&lines, "issuer cert is within its validity period"),
            Status::Ok
        );
        let later = now + time::Duration::days(31);
        let lines = pki_lines(&old.cert_pem, &short.cert_pem, later);
        let why = failure(status_of(
            &lines,
            "issuer cert is within its validity period",
        ));
        assert!(why.contains("not valid now"), "{why}");
        let short_root = ca::generate_root("short-root", now, 10 * DAY).expect("root");
        let lines = pki_lines(&short_root.cert_pem, &issuer.cert_pem, now);
        assert!(
            matches!(status_of(&lines, "trust anchors are valid for at least 60 days"), Status::Warning(w) if w.contains("short-root"))
        );
        // Unsupported material stops the lines after it.
        let leaf = {
            let ca = Ca::load(&old.cert_pem, &issuer, now).expect("ca");
            ca.issue(&["x.example".into()], &[], now, DAY)
                .expect("leaf")
                .chain_pem
        };
        let lines = pki_lines(&leaf, &issuer.cert_pem, now);
        assert_eq!(lines.len(), 1);
        assert!(failure(lines[0].1.clone()).contains("is not a CA"));
        let lines = pki_lines(&old.cert_pem, "garbage", now);
        assert!(
            failure(status_of(
                &lines,
                "issuer cert is using supported crypto algorithm"
            ))
            .contains("not a PEM certificate")
        );
    }

    fn check(s: &Secret, root: &str, now: time::OffsetDateTime) -> Status {
        destination_certificate(s, "linkerd", root, NAME, 7, now)
    }

    fn failure(st: Status) -> String {
        match st {
            Status::Fail(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_destination_certificate_for_the_checked_name_from_the_root_passes() {
        let now = time::OffsetDateTime::now_utc();
        let (root, ca) = mesh_ca(now);
        let leaf = ca
            .issue(&[NAME.to_string()], &[], now, 30 * DAY)
            .expect("leaf");
        assert_eq!(
            check(&secret(Some(&leaf.chain_pem)), &root, now),
            Status::Ok
        );
    }

    #[test]
    fn every_way_a_destination_certificate_fails_a_proxy_is_named() {
        let now = time::OffsetDateTime::now_utc();
        let (root, ca) = mesh_ca(now);
        let (foreign_root, _) = mesh_ca(now);

        let why = failure(check(&secret(None), &root, now));
        assert!(
            why.contains("lacks tls.crt") && why.contains("logs deploy/"),
            "{why}"
        );

        let why = failure(check(&secret(Some("not a certificate")), &root, now));
        assert!(why.contains("not a PEM certificate"), "{why}");

        let good = ca
            .issue(&[NAME.to_string()], &[], now, 30 * DAY)
            .expect("leaf");
        let why = failure(check(&secret(Some(&good.chain_pem)), &foreign_root, now));
        assert!(why.contains("does not chain to the trust root"), "{why}");

        let other = "linkerd-destination.other.serviceaccount.identity.other.cluster.local";
        let wrong = ca
            .issue(&[other.to_string()], &[], now, 30 * DAY)
            .expect("leaf");
        let why = failure(check(&secret(Some(&wrong.chain_pem)), &root, now));
        assert!(
            why.contains(other) && why.contains(&format!("proxies check {NAME}")),
            "{why}"
        );

        let short = ca
            .issue(&[NAME.to_string()], &[], now, 2 * DAY)
            .expect("leaf");
        let why = failure(check(&secret(Some(&short.chain_pem)), &root, now));
        assert!(why.contains("expires at"), "{why}");

        let later = now + time::Duration::days(3);
        let why = failure(check(&secret(Some(&short.chain_pem)), &root, later));
        assert!(why.contains("expired at"), "{why}");
    }
}
