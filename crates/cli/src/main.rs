//! `kinject`: Linkerd-style automatic proxy injection for Kubernetes.
#![deny(unsafe_code)] // one reviewed exception: allocator.rs

use clap::{Parser, Subcommand};

// The CLI allocates many small JSON/YAML nodes from several threads; glibc's
// allocator spent a quarter of `kinject inject`'s time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod allocator;
mod check;
mod destination_cmd;
mod explain;
mod identity_cmd;
mod inject_cmd;
mod install;
mod manifest;
mod namespace_arg;
mod proxy_injector_cmd;
mod report;
mod server_args;
mod stat;
mod values_cmd;

#[derive(Parser, Debug)]
#[command(name = "kinject", version, about, propagate_version = true)]
struct Cli {
    /// The kubeconfig file to use (as kubectl's; default: KUBECONFIG, then
    /// ~/.kube/config, then the in-cluster ServiceAccount).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add the Linkerd proxy to the workloads in Kubernetes manifests (offline).
    ///
    /// Prints the manifests with every injectable pod template meshed, and a
    /// report on stderr. Documents that cannot be injected pass through
    /// unchanged. On any error nothing is printed to stdout and the exit code is 1.
    Inject(Box<inject_cmd::InjectArgs>),
    /// Print the control plane's manifests, for `| kubectl apply -f -`.
    ///
    /// The same flags always give the same bytes (no certificates or random
    /// values). Applying the output of other flags is an upgrade.
    Install(Box<install::InstallArgs>),
    /// Print what to delete (every cluster-scoped object, including the
    /// webhook configuration the injector registered), for `| kubectl delete -f -`.
    Uninstall(install::UninstallArgs),
    /// Check the control plane's health (or, with --pre, that it can be installed).
    ///
    /// One line per check in the seed's format; exit 0 when every check
    /// passes, 2 when one fails.
    Check(Box<check::CheckArgs>),
    /// Print the values the engine will use: the defaults, then the cluster's
    /// (`--values-from-cluster`), then `--values` files, then `--set`s.
    Values(Box<values_cmd::ValuesCmdArgs>),
    /// Why a pod was, or would be, injected or not: the webhook's selectors
    /// and conditions against the live objects, the decision and its
    /// reasons, the annotations in effect and where they come from, what
    /// injection adds, and the pod's identity.
    Explain(Box<explain::ExplainArgs>),
    /// Show what the meshed pods' proxies see: per resource, meshed/running
    /// pods, success rate, requests per second, latency quantiles and the
    /// share over mTLS, over a window (`-t`).
    ///
    /// Reads each meshed pod's proxy `/metrics` through the API server
    /// (`get` on pods/proxy) at the start and end of the window, or
    /// Prometheus with --prometheus-url.
    Stat(Box<stat::StatArgs>),
    /// Remove what `kinject inject` added (offline).
    Uninject(inject_cmd::UninjectArgs),
    /// Run the mutating admission webhook that injects pods as they are created.
    ///
    /// Registers (and keeps registered) the MutatingWebhookConfiguration
    /// `linkerd-proxy-injector-webhook-config`, watches namespaces and pod
    /// owners, and hot-reloads its values, trust anchors and certificate.
    ProxyInjector(Box<proxy_injector_cmd::ProxyInjectorArgs>),
    /// Run the mesh CA: a persisted trust root, the trust bundle ConfigMaps
    /// (`linkerd-ca-bundle`) and a TLS Secret per meshed workload
    /// (`<name>-<kind>-tls-linkerd-io`), renewed before expiry.
    Identity(Box<identity_cmd::IdentityArgs>),
    /// Serve the APIs the proxy calls once it has its identity: Destination
    /// (Get, GetProfile), InboundServerPolicies and OutboundPolicies, from one
    /// watch per kind (pods, Services, EndpointSlices, namespaces).
    Destination(Box<destination_cmd::DestinationArgs>),
}

/// Linkerd's Go binaries take single-dash long flags (`-log-level`); accept
/// those spellings too.
fn normalize_args() -> Vec<std::ffi::OsString> {
    const LONG: &[&str] = &["log-level", "log-format", "addr", "metrics-addr"];
    std::env::args_os()
        .map(|a| match a.to_str() {
            Some(s) if s.starts_with('-') && !s.starts_with("--") => {
                let name = s[1..].split('=').next().unwrap_or("");
                if LONG.contains(&name) {
                    format!("-{s}").into()
                } else {
                    a
                }
            }
            _ => a,
        })
        .collect()
}

fn main() {
    let cli = Cli::parse_from(normalize_args());
    kinject_runtime::client::set_access(kinject_runtime::client::Access {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    });
    let result = match &cli.command {
        Command::Inject(args) => inject_cmd::inject(args),
        Command::Uninject(args) => inject_cmd::uninject(args),
        Command::Values(args) => values_cmd::run(args),
        Command::Install(args) => install::install(args),
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Stat(args) => stat::run(args),
        Command::Uninstall(args) => install::uninstall(args),
        Command::ProxyInjector(args) => proxy_injector_cmd::run(args),
        Command::Identity(args) => identity_cmd::run(args),
        Command::Destination(args) => destination_cmd::run(args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
