//! `kinject stat`: the seed's last step. Per resource: meshed/running pods
//! (from the API) and what their proxies counted over a window: success
//! rate, requests per second, latency quantiles and the share over mTLS
//! (`-o wide`: TCP connections and bytes).
//!
//! Layers: [`resources`] finds the rows and their pods (kube), [`source`]
//! gathers each pod's counts over the window (the pod proxy subresource, or
//! Prometheus), [`traffic`] turns counts into numbers (pure), [`render`]
//! prints them (pure).

pub mod render;
pub mod resources;
pub mod source;
pub mod traffic;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kinject_inject::proxy::{ADMIN_PORT_NAME, PROXY_CONTAINER};

use render::{Numbers, Row};
use resources::{Kind, PodInfo, Resource};
use source::{Gathered, Prometheus};
use traffic::{Selection, Totals};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatOutput {
    Table,
    Wide,
    Json,
}

#[derive(Args, Debug)]
pub struct StatArgs {
    /// What to show: deployments (deploy), statefulsets (sts), daemonsets
    /// (ds), jobs, cronjobs (cj), replicasets (rs), pods (po), namespaces
    /// (ns) or services (svc); `KIND/NAME` names one.
    #[arg(required_unless_present_any = ["prometheus_config", "prometheus_targets"])]
    pub kind: Option<String>,
    /// Only these resources (all of the kind when none).
    pub names: Vec<String>,
    /// Namespace of the resources (as kubectl's).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace (adds a NAMESPACE column).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// How long to measure (`30s`, `1m`, `5m`).
    #[arg(short = 't', long, default_value = "1m", value_name = "DURATION")]
    pub time_window: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = StatOutput::Table)]
    pub output: StatOutput,
    /// Only traffic to this resource (`deploy/web`, `ns/apps`), as its
    /// clients' proxies saw it.
    #[arg(long, value_name = "KIND/NAME", conflicts_with = "from")]
    pub to: Option<String>,
    /// Namespace of --to (default: -n).
    #[arg(long, value_name = "NAMESPACE")]
    pub to_namespace: Option<String>,
    /// Only traffic from this resource (`deploy/client`), as its proxies saw it.
    #[arg(long, value_name = "KIND/NAME")]
    pub from: Option<String>,
    /// Namespace of --from (default: -n).
    #[arg(long, value_name = "NAMESPACE")]
    pub from_namespace: Option<String>,
    /// Read Prometheus' HTTP API at this URL instead of the proxies
    /// (it must scrape with `kinject stat --prometheus-config`).
    #[arg(long, value_name = "URL", conflicts_with = "prometheus_namespace")]
    pub prometheus_url: Option<String>,
    /// Read the Prometheus Service `prometheus:9090` of this namespace,
    /// through the API server's service proxy.
    #[arg(long, value_name = "NAMESPACE")]
    pub prometheus_namespace: Option<String>,
    /// Print the Prometheus configuration that --prometheus-url expects
    /// (with `--kubeconfig`, for a Prometheus outside the cluster) and exit.
    #[arg(long)]
    pub prometheus_config: bool,
    /// With --prometheus-config: find the proxies in this file_sd file
    /// (written by --prometheus-targets) instead of Kubernetes service
    /// discovery, for a Prometheus built without it (Debian's).
    #[arg(long, value_name = "FILE", requires = "prometheus_config")]
    pub file_sd: Option<std::path::PathBuf>,
    /// Print the meshed pods of -n (or -A) as Prometheus file_sd targets,
    /// labelled as --prometheus-config's discovery labels them, and exit.
    #[arg(long, conflicts_with = "prometheus_config")]
    pub prometheus_targets: bool,
    #[command(flatten)]
    pub linkerd: crate::namespace_arg::NamespaceArg,
}

pub fn run(args: &StatArgs) -> Result<i32> {
    if args.prometheus_config {
        let kubeconfig = kinject_runtime::client::access()
            .kubeconfig
            .or_else(|| std::env::var_os("KUBECONFIG").map(Into::into));
        let discovery = match &args.file_sd {
            Some(file) => Discovery::File(file),
            None => Discovery::Kubernetes(kubeconfig.as_deref()),
        };
        print!("{}", prometheus_config(discovery));
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.prometheus_targets {
        let targets = rt.block_on(prometheus_targets(args))?;
        println!("{}", serde_json::to_string_pretty(&targets)?);
        return Ok(0);
    }
    let (rows, left_out) = rt.block_on(stat(args))?;
    for (pod, why) in &left_out {
        eprintln!("warning: pod {pod} left out: {why}");
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if rows.is_empty() {
        let place = if args.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", args.namespace)
        };
        eprintln!("No resources found in {place}.");
        if args.output == StatOutput::Json {
            writeln!(w, "[]")?;
        }
        return Ok(0);
    }
    match args.output {
        StatOutput::Json => {
            serde_json::to_writer_pretty(&mut w, &rows)?;
            writeln!(w)?;
        }
        StatOutput::Table | StatOutput::Wide => {
            let wide = args.output == StatOutput::Wide;
            write!(w, "{}", render::table(&rows, args.all_namespaces, wide))?;
        }
    }
    if rows.iter().all(|r| r.numbers.rps.is_none()) {
        eprintln!("No traffic found.");
    }
    Ok(0)
}

/// How Prometheus finds the proxies.
pub enum Discovery<'a> {
    /// Kubernetes service discovery (in the cluster, or with a kubeconfig).
    Kubernetes(Option<&'a std::path::Path>),
    /// A file_sd file that `--prometheus-targets` writes.
    File(&'a std::path::Path),
}

/// The Prometheus configuration for `--prometheus-url`: the proxies' admin
/// ports, labelled with the `namespace` and `pod` the queries sum by, and
/// Linkerd's workload labels (`linkerd.io/proxy-deployment: web` gives
/// `deployment="web"`), as Linkerd viz's scrape configuration does.
pub fn prometheus_config(discovery: Discovery<'_>) -> String {
    let quoted = |p: &std::path::Path| serde_json::Value::from(p.display().to_string());
    let head = "# For `kinject stat --prometheus-url` (kinject stat --prometheus-config).\n\
                global:\n  scrape_interval: 10s\n\
                scrape_configs:\n  - job_name: linkerd-proxy\n";
    match discovery {
        Discovery::File(file) => format!(
            "{head}    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 5s\n",
            quoted(file)
        ),
        Discovery::Kubernetes(kubeconfig) => {
            let kc = kubeconfig
                .map(|p| format!("        kubeconfig_file: {}\n", quoted(p)))
                .unwrap_or_default();
            let label_meta = WORKLOAD_LABEL_PREFIX.replace(['.', '/', '-'], "_");
            format!(
                "{head}    kubernetes_sd_configs:\n      - role: pod\n{kc}\
                 \x20   relabel_configs:\n\
                 \x20     - source_labels: [__meta_kubernetes_pod_container_name, __meta_kubernetes_pod_container_port_name]\n\
                 \x20       action: keep\n\
                 \x20       regex: {PROXY_CONTAINER};{ADMIN_PORT_NAME}\n\
                 \x20     - source_labels: [__meta_kubernetes_namespace]\n\
                 \x20       target_label: namespace\n\
                 \x20     - source_labels: [__meta_kubernetes_pod_name]\n\
                 \x20       target_label: pod\n\
                 \x20     - action: labelmap\n\
                 \x20       regex: __meta_kubernetes_pod_label_{label_meta}(.+)\n"
            )
        }
    }
}

/// The injector's workload labels on meshed pods (`linkerd.io/proxy-deployment`).
const WORKLOAD_LABEL_PREFIX: &str = kinject_mesh::labels::PROXY_LABEL_PREFIX;

/// One file_sd entry.
#[derive(serde::Serialize)]
struct Target {
    targets: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

/// The labels `--prometheus-config`'s Kubernetes discovery gives a pod.
fn target_labels(p: &PodInfo) -> std::collections::BTreeMap<String, String> {
    let mut labels: std::collections::BTreeMap<String, String> = p
        .labels
        .iter()
        .filter_map(|(k, v)| {
            let kind = k.strip_prefix(WORKLOAD_LABEL_PREFIX)?;
            Some((kind.replace(['.', '/', '-'], "_"), v.clone()))
        })
        .collect();
    labels.insert("namespace".into(), p.namespace.clone());
    labels.insert("pod".into(), p.name.clone());
    labels
}

async fn prometheus_targets(args: &StatArgs) -> Result<Vec<Target>> {
    let client = kinject_runtime::client::client()
        .await
        .context("stat reads the live cluster: set KUBECONFIG (or --kubeconfig)")?;
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let (_, pods) =
        resources::resolve(&client, Kind::Pod, &[], namespace, &args.linkerd.name).await?;
    Ok(pods
        .iter()
        .filter(|p| p.meshed && p.running)
        .filter_map(|p| {
            Some(Target {
                targets: vec![format!("{}:{}", p.ip.as_deref()?, p.admin_port)],
                labels: target_labels(p),
            })
        })
        .collect())
}

fn parse_window(text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text).with_context(|| {
        format!("--time-window {text:?}: expected a duration such as 30s, 1m or 5m")
    })?;
    if d < Duration::from_secs(1) {
        bail!("--time-window {text:?}: at least 1s");
    }
    Ok(d)
}

/// `KIND` or `KIND/NAME` and the extra names.
fn kind_and_names(args: &StatArgs) -> Result<(Kind, Vec<String>)> {
    let word = args.kind.as_deref().unwrap_or_default();
    let (word, first) = match word.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (word, None),
    };
    let kind =
        Kind::parse(word).with_context(|| format!("unknown kind {word:?}: use {}", Kind::KNOWN))?;
    let mut names: Vec<String> = first.into_iter().collect();
    names.extend(args.names.iter().cloned());
    Ok((kind, names))
}

/// What each row reads, and which pods must be scraped for it.
struct Plan {
    /// Per row: (pod index, selection) pairs whose counts add up to the row.
    reads: Vec<Vec<(usize, Selection)>>,
    scrape: BTreeSet<usize>,
}

fn proxied(pods: &[PodInfo], which: &[usize]) -> Vec<usize> {
    which
        .iter()
        .copied()
        .filter(|&i| pods[i].meshed && pods[i].running)
        .collect()
}

fn outbound_to(row: &Resource, pods: &[PodInfo]) -> Selection {
    Selection::Outbound {
        namespace: row.namespace.clone(),
        pods: (row.kind != Kind::Namespace)
            .then(|| row.pods.iter().map(|&i| pods[i].name.clone()).collect()),
    }
}

async fn stat(args: &StatArgs) -> Result<(Vec<Row>, Vec<(String, String)>)> {
    let (kind, names) = kind_and_names(args)?;
    let window = parse_window(&args.time_window)?;
    let client = kinject_runtime::client::client()
        .await
        .context("stat reads the live cluster: set KUBECONFIG (or --kubeconfig)")?;
    let linkerd_ns = &args.linkerd.name;
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let (rows, pods) = resources::resolve(&client, kind, &names, namespace, linkerd_ns).await?;
    // The peer of --to/--from has its own pod list; append it to ours.
    let mut all_pods = pods;
    let peer = match (&args.to, &args.from) {
        (Some(t), _) => Some((true, t)),
        (_, Some(f)) => Some((false, f)),
        _ => None,
    };
    let mut plan = Plan {
        reads: Vec::new(),
        scrape: BTreeSet::new(),
    };
    match peer {
        None => {
            for r in &rows {
                let reads: Vec<_> = proxied(&all_pods, &r.pods)
                    .into_iter()
                    .map(|i| {
                        let sel = Selection::Inbound {
                            admin_port: all_pods[i].admin_port,
                        };
                        (i, sel)
                    })
                    .collect();
                plan.scrape.extend(reads.iter().map(|(i, _)| *i));
                plan.reads.push(reads);
            }
        }
        Some((to, target)) => {
            let ns = if to {
                &args.to_namespace
            } else {
                &args.from_namespace
            };
            let ns = ns.as_deref().unwrap_or(&args.namespace);
            let (mut other, other_pods) = resources::peer(&client, target, ns, linkerd_ns).await?;
            let offset = all_pods.len();
            other.pods = other.pods.iter().map(|i| i + offset).collect();
            all_pods.extend(other_pods);
            for r in &rows {
                let reads: Vec<_> = if to {
                    // The row's pods, as clients of the target.
                    proxied(&all_pods, &r.pods)
                        .into_iter()
                        .map(|i| (i, outbound_to(&other, &all_pods)))
                        .collect()
                } else {
                    // The source's pods, as clients of the row.
                    proxied(&all_pods, &other.pods)
                        .into_iter()
                        .map(|i| (i, outbound_to(r, &all_pods)))
                        .collect()
                };
                plan.scrape.extend(reads.iter().map(|(i, _)| *i));
                plan.reads.push(reads);
            }
        }
    }
    let which: Vec<usize> = plan.scrape.iter().copied().collect();
    let prometheus = match (&args.prometheus_url, &args.prometheus_namespace) {
        (Some(u), _) => Some(Prometheus::url(u)?),
        (_, Some(ns)) => Some(Prometheus::Service {
            client: client.clone(),
            namespace: ns.clone(),
            name: "prometheus:9090".into(),
        }),
        _ => None,
    };
    if prometheus.is_none() && !which.is_empty() && std::io::stderr().is_terminal() {
        eprintln!(
            "Reading {} proxies over {}…",
            which.len(),
            humantime::format_duration(window)
        );
    }
    let gathered: Gathered = match &prometheus {
        Some(p) => source::from_prometheus(p, &all_pods, &which, window).await?,
        None => source::from_pods(&client, &all_pods, &which, window).await,
    };
    let mut out = Vec::with_capacity(rows.len());
    for (r, reads) in rows.iter().zip(&plan.reads) {
        let running = r.pods.iter().filter(|&&i| all_pods[i].running).count();
        let meshed = proxied(&all_pods, &r.pods).len();
        let mut totals = Totals::default();
        let mut any = false;
        for (i, sel) in reads {
            if let Some(obs) = gathered.traffic.get(i) {
                totals.add(obs, sel);
                any = true;
            }
        }
        let stats = if any {
            totals.stats(gathered.window_secs)
        } else {
            None
        };
        out.push(Row {
            namespace: r.namespace.clone(),
            kind: r.kind.singular(),
            name: r.name.clone(),
            meshed: format!("{meshed}/{running}"),
            numbers: Numbers::from(stats),
        });
    }
    Ok((out, gathered.left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_durations_of_a_second_or_more() {
        assert_eq!(parse_window("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_window("1m").ok(), Some(Duration::from_secs(60)));
        let e = parse_window("soon")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("expected a duration"), "{e}");
        assert!(parse_window("10ms").is_err());
    }

    #[test]
    fn targets_carry_the_labels_kubernetes_discovery_gives() {
        let p = resources::pod_info(
            serde_json::json!({
                "metadata": {"name": "web-1", "namespace": "apps",
                    "labels": {"app": "web", "linkerd.io/proxy-deployment": "web",
                               "linkerd.io/control-plane-ns": "linkerd"}},
                "spec": {"containers": [{"name": "app"}]}
            }),
            "linkerd",
        );
        let labels = target_labels(&p);
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [
                ("deployment".to_string(), "web".to_string()),
                ("namespace".into(), "apps".into()),
                ("pod".into(), "web-1".into()),
            ]
        );
        let c = prometheus_config(Discovery::Kubernetes(None));
        assert!(
            c.contains("regex: __meta_kubernetes_pod_label_linkerd_io_proxy_(.+)"),
            "{c}"
        );
        let f = prometheus_config(Discovery::File(std::path::Path::new("/t.json")));
        let v: serde_json::Value = serde_saphyr::from_str(&f).unwrap_or_default();
        assert_eq!(
            v["scrape_configs"][0]["file_sd_configs"][0]["files"][0],
            "/t.json"
        );
    }

    #[test]
    fn the_prometheus_config_keeps_the_proxys_admin_port() {
        let c = prometheus_config(Discovery::Kubernetes(Some(std::path::Path::new(
            "/k/config",
        ))));
        assert!(c.contains("regex: linkerd-proxy;linkerd-admin"), "{c}");
        assert!(c.contains("kubeconfig_file: \"/k/config\""), "{c}");
        let v: serde_json::Value = serde_saphyr::from_str(&c).unwrap_or_default();
        assert_eq!(v["scrape_configs"][0]["job_name"], "linkerd-proxy");
        assert_eq!(
            v["scrape_configs"][0]["relabel_configs"][2]["target_label"],
            "pod"
        );
    }
}
