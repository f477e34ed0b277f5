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

use crate::inject_cmd::Output;
use crate::install::{self, IDENTITY, INJECTOR};

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
                timed("kubeconfig", kinject_k8s::client::client())
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
    c.run("kinject-identity", "identity holds its leader lease", Kind::Retryable, || async {
        let leases = Api::<Lease>::namespaced(client.clone(), ns);
        match timed("GET lease", leases.get_opt("kinject-identity")).await {
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
    let anchors = match material {
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
    };

    if !installed.is_empty() {
        let modern_slices = server.is_none_or(|v| v.serves_endpoint_slices_v1());
        destination_checks(client, args, c, anchors.as_deref(), modern_slices).await;
    }

    let cat = "kinject-webhook";
    let mwc = c
        .value(cat, "webhook configuration exists", Kind::Retryable, || async {
            let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
            match timed("GET webhook configuration", api.get_opt(kinject_k8s::webhook_config::CONFIG_NAME)).await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(fail(format!(
                    "{} not found: the injector registers it once it is ready; kubectl -n {ns} logs deploy/{INJECTOR}",
                    kinject_k8s::webhook_config::CONFIG_NAME
                ))),
                Err(e) => Err(fail(e)),
            }
        })
        .await;
    let Some(mwc) = mwc else {
        return;
    };
    c.run(
        cat,
        "webhook configuration has the expected rules",
        Kind::Normal,
        || async { expected_rules(&mwc, ns, match_conditions) },
    )
    .await;
    c.run(
        cat,
        "webhook configuration is not contested by another writer",
        Kind::Normal,
        || async { contest_status(client, &mwc, ns).await },
    )
    .await;
    let expiry = c
        .value(cat, "caBundle verifies the injector's serving certificate", Kind::Retryable, || async {
            let (chain, bundle, name) = serving_chain(client, &mwc).await.map_err(fail)?;
            verify_chain(&chain, &bundle, &name).map_err(|e| {
                fail(format!(
                    "{e}; the API server cannot call the injector: restart the injector so it re-registers its caBundle"
                ))
            })
        })
        .await;
    if let Some(not_after) = expiry {
        let days = args.cert_min_days;
        c.run(cat, &format!("serving certificate is valid for at least {days} days"), Kind::Normal, || async {
            let left = not_after - time::OffsetDateTime::now_utc();
            if left <= time::Duration::ZERO {
                fail(format!(
                    "it expired at {not_after}; identity renews it (kubectl -n {ns} logs deploy/{IDENTITY})"
                ))
            } else if left < time::Duration::days(i64::from(days)) {
                fail(format!(
                    "it expires at {not_after}, in {} hours; identity renews it at two thirds of its life: is identity running?",
                    left.whole_hours()
                ))
            } else {
                Status::Ok
            }
        })
        .await;
    }
    c.run(
        cat,
        "a pod created in an injected namespace gets the proxy",
        Kind::Retryable,
        || async { probe_injection(client, &args.probe_namespace).await },
    )
    .await;
    c.run(
        cat,
        "no running pod that should be meshed lacks the proxy",
        Kind::Normal,
        || async { missing_proxies(client).await },
    )
    .await;
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

/// What a proxy needs of the installed control plane beyond running pods:
/// endpoints behind the names it dials, and a destination certificate for
/// the name it checks.
/// `root`: the trust root, when the identity checks found it valid.
async fn destination_checks(
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
            let secret = kinject_identity::controller::DESTINATION_SECRET;
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
async fn ready_endpoints(
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
async fn trust_domain(client: &kube::Client, ns: &str) -> Result<String, String> {
    let cfg = timed(
        "GET linkerd-config",
        kinject_k8s::linkerd_config::fetch(client, ns),
    )
    .await?;
    kinject_webhook::values_source::ValuesSources::default()
        .load_over(Some(&cfg), ns)
        .map(|l| l.values.trust_domain().to_string())
        .map_err(|e| format!("{e:#}"))
}

/// Destination's serving certificate as a proxy checks it: the chain ends at
/// the trust root, the leaf carries the name the injected
/// `LINKERD2_PROXY_DESTINATION_SVC_NAME` gives, and it is not about to expire.
fn destination_certificate(
    s: &Secret,
    ns: &str,
    root_pem: &str,
    name: &str,
    min_days: u32,
    now: time::OffsetDateTime,
) -> Status {
    use kinject_identity::ca;
    let secret = kinject_identity::controller::DESTINATION_SECRET;
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

/// A warning when another writer keeps reverting the webhook configuration:
/// the injector's recent `WebhookConfigurationContested` Event (it backs off
/// and reports), or a foreign field manager owning part of it right now.
async fn contest_status(
    client: &kube::Client,
    mwc: &MutatingWebhookConfiguration,
    ns: &str,
) -> Status {
    use k8s_openapi::api::core::v1::Event;
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let params = ListParams::default().fields("reason=WebhookConfigurationContested");
    let recent = timed("list Events", events.list(&params))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let latest = recent
        .iter()
        .filter_map(|e| {
            let at = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))?;
            let fresh = now.duration_since(at).as_secs() < 600;
            fresh.then(|| (at, e.message.clone().unwrap_or_default()))
        })
        .max_by_key(|(at, _)| *at);
    if let Some((_, message)) = latest {
        return Status::Warning(format!(
            "{message} (kubectl -n {ns} get events --field-selector reason=WebhookConfigurationContested)"
        ));
    }
    match kinject_k8s::webhook_config::foreign_manager(mwc) {
        None => Status::Ok,
        Some(m) => Status::Warning(format!(
            "{m} also writes it; the injector repairs drift and backs off from a writer that keeps reverting it"
        )),
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

fn lease_fresh(l: &Lease) -> Status {
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

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Pods the injector's leader reported as running without the proxy they
/// should have (its `MissingProxy` Events, kept alive while the pod stays
/// so), that still exist and still lack it. A warning: the control plane is
/// healthy, but those pods are outside the mesh.
async fn missing_proxies(client: &kube::Client) -> Status {
    use k8s_openapi::api::core::v1::Event;
    let events = match timed(
        "list MissingProxy Events",
        Api::<Event>::all(client.clone())
            .list(&ListParams::default().fields("reason=MissingProxy")),
    )
    .await
    {
        Ok(l) => l.items,
        Err(e) => return Status::Warning(format!("{e}; cannot tell")),
    };
    let mut pods: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .filter_map(|e| {
            Some((
                e.involved_object.namespace.clone()?,
                e.involved_object.name.clone()?,
            ))
        })
        .collect();
    pods.sort();
    pods.dedup();
    let mut still = Vec::new();
    for (ns, name) in pods {
        let pod = Api::<Pod>::namespaced(client.clone(), &ns);
        let Ok(Some(p)) = timed("GET pod", pod.get_opt(&name)).await.map_err(|_| ()) else {
            continue;
        };
        let spec = p.spec.unwrap_or_default();
        let has_proxy = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == "linkerd-proxy");
        if !has_proxy && p.metadata.deletion_timestamp.is_none() {
            still.push(format!("{ns}/{name}"));
        }
    }
    if still.is_empty() {
        Status::Ok
    } else {
        Status::Warning(format!(
            "{} running without the proxy although {} should be meshed: {}; `kubectl rollout restart` their workloads (or install with --repair-missed), and see `kubectl describe pod` for why",
            still.len(),
            if still.len() == 1 { "it" } else { "they" },
            still.join(", ")
        ))
    }
}

/// The issuer and anchors identity uses: Secret `linkerd-identity-issuer`
/// and ConfigMap `linkerd-identity-trust-roots`, read by identity's own rules.
async fn identity_material(
    client: &kube::Client,
    ns: &str,
) -> Result<kinject_identity::issuer::Material, Status> {
    use kinject_identity::issuer::{self, ISSUER_SECRET, IssuerScheme, TRUST_ROOTS_CONFIG_MAP};
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
const PKI_MIN_DAYS: i64 = 60;

/// Linkerd's identity lines (`healthcheck.go`, "linkerd-identity"), pure.
fn pki_lines(
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

fn expected_rules(mwc: &MutatingWebhookConfiguration, ns: &str, match_conditions: bool) -> Status {
    use kinject_k8s::webhook_config::{ClientTarget, WebhookConfigSpec};
    let Some(w) = mwc.webhooks.iter().flatten().next() else {
        return fail("it has no webhook; restart the injector so it re-registers");
    };
    // The desired object for what was observed: only rules and selectors are judged here.
    let spec = WebhookConfigSpec {
        control_plane_namespace: ns.to_string(),
        target: match (&w.client_config.url, &w.client_config.service) {
            (Some(u), _) => ClientTarget::Url(u.clone()),
            (_, Some(s)) => ClientTarget::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.unwrap_or(443),
            },
            _ => return fail("its clientConfig has neither url nor service"),
        },
        ca_bundle: w
            .client_config
            .ca_bundle
            .clone()
            .map(|b| b.0)
            .unwrap_or_default(),
        failure_policy: w.failure_policy.clone().unwrap_or_default(),
        timeout_seconds: w.timeout_seconds.unwrap_or(10),
        excluded_namespaces: excluded_from(w),
        include_services: w
            .rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|x| x == "services")),
        // On 1.30+ the injector registers them: missing ones did not reach
        // (or were removed from) the API server.
        match_conditions,
    };
    match kinject_k8s::webhook_config::drift(&spec.build(), mwc) {
        None => Status::Ok,
        Some(why) if why.starts_with("matchConditions") => fail(format!(
            "{why}: the API server supports matchConditions (1.30+) but the configuration lacks them; \
             is the AdmissionWebhookMatchConditions feature gate off, or an old injector registering?"
        )),
        Some(why) => fail(format!(
            "{why}: something edits the webhook configuration; the injector repairs it while it runs (is it running?)"
        )),
    }
}

/// The namespaces the observed selector excludes by name.
fn excluded_from(w: &k8s_openapi::api::admissionregistration::v1::MutatingWebhook) -> Vec<String> {
    w.namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .find(|e| e.key == "kubernetes.io/metadata.name")
        .and_then(|e| e.values.clone())
        .unwrap_or_default()
}

/// The certificate chain the injector serves, the caBundle, and the name the
/// API server checks: by URL, a TLS handshake with the injector (what the API
/// server does); by Service, the Secret that identity writes.
async fn serving_chain(
    client: &kube::Client,
    mwc: &MutatingWebhookConfiguration,
) -> Result<(Vec<Vec<u8>>, Vec<u8>, String), String> {
    let Some(w) = mwc.webhooks.iter().flatten().next() else {
        return Err("no webhook in the configuration".into());
    };
    let bundle = w
        .client_config
        .ca_bundle
        .clone()
        .map(|b| b.0)
        .unwrap_or_default();
    if bundle.is_empty() {
        return Err("the caBundle is empty; restart the injector so it re-registers".into());
    }
    if let Some(url) = &w.client_config.url {
        let rest = url
            .strip_prefix("https://")
            .ok_or("the webhook URL is not https")?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .trim_matches(['[', ']']);
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:443")
        };
        let chain = fetch_served_chain(&addr, host).await?;
        return Ok((chain, bundle, host.to_string()));
    }
    let svc = w
        .client_config
        .service
        .as_ref()
        .ok_or("no url and no service")?;
    let secrets = Api::<Secret>::namespaced(client.clone(), &svc.namespace);
    let secret_name = kinject_identity::controller::WEBHOOK_SECRET;
    let s = timed("GET serving Secret", secrets.get_opt(secret_name))
        .await?
        .ok_or_else(|| {
            format!(
                "no Secret {}/{secret_name}: is identity running?",
                svc.namespace
            )
        })?;
    let pem = secret_text(&s, "tls.crt").ok_or("the serving Secret has no tls.crt")?;
    let chain = rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
        .filter_map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.ok())
        .map(|c| c.to_vec())
        .collect();
    Ok((chain, bundle, format!("{}.{}.svc", svc.name, svc.namespace)))
}

/// The chain a TLS server presents (no verification here: that is the next step).
async fn fetch_served_chain(addr: &str, host: &str) -> Result<Vec<Vec<u8>>, String> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
    let tcp = timed(
        "connect to the injector",
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|e| format!("{e}; is the injector running?"))?;
    let tls = timed(
        "TLS handshake with the injector",
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await?;
    let (_, conn) = tls.get_ref();
    Ok(conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_vec())
        .collect())
}

/// Verifies `chain` for `name` against the caBundle as the API server does
/// (path to a bundle root, server name); returns the leaf's expiry.
fn verify_chain(
    chain: &[Vec<u8>],
    bundle: &[u8],
    name: &str,
) -> Result<time::OffsetDateTime, String> {
    let Some(leaf) = chain.first() else {
        return Err("the injector presented no certificate".into());
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(bundle) {
        let c: rustls_pki_types::CertificateDer<'static> =
            c.map_err(|e| format!("the caBundle is not PEM: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("the caBundle holds a bad certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("the caBundle cannot verify anything: {e}"))?;
    let end = rustls_pki_types::CertificateDer::from(leaf.clone());
    let rest: Vec<_> = chain[1..]
        .iter()
        .map(|c| rustls_pki_types::CertificateDer::from(c.clone()))
        .collect();
    let server = rustls_pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?}: {e}"))?;
    // Verify at a time inside the leaf's validity: expiry is the next check's job.
    let (not_before, not_after) =
        kinject_identity::ca::validity(leaf).ok_or("the serving certificate does not parse")?;
    let now = time::OffsetDateTime::now_utc();
    let at = if now > not_after || now < not_before {
        not_before + (not_after - not_before) / 2
    } else {
        now
    };
    let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ));
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*verifier,
        &end,
        &rest,
        &server,
        &[],
        at,
    )
    .map_err(|e| format!("the caBundle does not verify the serving certificate for {name}: {e}"))?;
    Ok(not_after)
}

/// A server-side dry-run pod create that should come back injected.
async fn probe_injection(client: &kube::Client, probe_ns: &str) -> Status {
    let pod: Pod = match serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "kinject-check-",
                     "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"containers": [{"name": "probe", "image": "kinject-check-probe"}]},
    })) {
        Ok(p) => p,
        Err(e) => return fail(format!("building the probe pod: {e}")),
    };
    let pods = Api::<Pod>::namespaced(client.clone(), probe_ns);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match timed("dry-run pod create", pods.create(&params, &pod)).await {
        Ok(p) => {
            let spec = p.spec.unwrap_or_default();
            let has_proxy = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .any(|c| c.name == "linkerd-proxy");
            if has_proxy {
                Status::Ok
            } else {
                fail(format!(
                    "a dry-run pod in {probe_ns:?} came back without linkerd-proxy: the API server did not reach the injector (failurePolicy Ignore hides it), or {probe_ns:?} is excluded (--probe-namespace)"
                ))
            }
        }
        Err(e) => fail(format!(
            "{e}; with failurePolicy Fail this means the injector is unreachable"
        )),
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
