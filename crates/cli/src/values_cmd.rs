//! The values flags every command that builds an engine shares (`inject`,
//! `values`, `proxy-injector`), and `kinject values`, which prints the values
//! the engine will use.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use kinject_k8s::ValuesSources;
use kinject_k8s::linkerd_config::{self, LinkerdConfig};
use kinject_mesh::values::{LoadedValues, Values};

/// `-o yaml|json` of the commands that print Kubernetes objects or values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Yaml,
    Json,
}

/// `--values`, `--set`, `--set-string`, `--set-file`, applied in Helm's
/// order: files in order, then every `--set`, then `--set-string`, then
/// `--set-file`; within each, the last one wins.
#[derive(Args, Clone, Debug, Default)]
pub struct ValuesArgs {
    /// Linkerd values file (chart schema; a `linkerd-config` values document
    /// works). Repeatable: later files win, merged key by key as Helm does.
    #[arg(long = "values", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Set a value with Helm's syntax (`proxy.logLevel=debug`, `a.b[0]=x`,
    /// `k\.with\.dots=v`, `list={a,b}`; `true`, `false`, `null` and integers
    /// are typed). Repeatable; commas separate several.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Like --set, but every value is a string.
    #[arg(long = "set-string", value_name = "PATH=VALUE")]
    pub set_strings: Vec<String>,
    /// Set a value to a file's contents (e.g. `identityTrustAnchorsPEM=ca.pem`).
    #[arg(long = "set-file", value_name = "PATH=FILE")]
    pub set_files: Vec<String>,
}

impl ValuesArgs {
    pub fn sources(&self) -> ValuesSources {
        ValuesSources {
            files: self.files.clone(),
            sets: self.sets.clone(),
            set_strings: self.set_strings.clone(),
            set_files: self.set_files.clone(),
        }
    }
}

/// A running Linkerd's values and trust roots, read once (`--values-from-cluster`).
pub fn fetch_cluster_config(namespace: &str) -> Result<LinkerdConfig> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = kinject_runtime::client::client()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "--values-from-cluster needs a cluster: set KUBECONFIG (or --kubeconfig) or run in a pod ({e})"
                )
            })?;
        let cfg = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            linkerd_config::fetch(&client, namespace),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("--values-from-cluster: the API server did not answer within 30 s")
        })??;
        Ok(cfg)
    })
}

/// The values a running control plane uses: ConfigMap `linkerd-config` in
/// `linkerd_ns` (Linkerd's defaults when it does not exist).
pub async fn from_cluster(client: &kube::Client, linkerd_ns: &str) -> Result<Values> {
    let cluster = linkerd_config::fetch(client, linkerd_ns).await?;
    Ok(load(&ValuesArgs::default(), Some(&cluster), linkerd_ns)?.values)
}

/// Loads the values: the cluster's `linkerd-config` first (when given), then
/// the files and sets.
pub fn load(
    args: &ValuesArgs,
    cluster: Option<&LinkerdConfig>,
    namespace: &str,
) -> Result<LoadedValues> {
    args.sources().load_over(cluster, namespace)
}

/// Prints each unknown key as a warning on stderr.
pub fn warn_unknown(loaded: &LoadedValues) -> Result<()> {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for key in &loaded.unknown_keys {
        writeln!(err, "Warning: {key}")?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ValuesCmdArgs {
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Start from the values of the Linkerd running in the -l namespace
    /// (ConfigMap `linkerd-config`, key `values`).
    #[arg(long)]
    pub values_from_cluster: bool,
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

/// `kinject values`: the effective values (defaults, then the cluster's, then
/// files, then sets), exactly as the engine will use them. Keys the engine
/// does not read are not printed; unknown keys are warned about on stderr.
pub fn run(args: &ValuesCmdArgs) -> Result<i32> {
    let cluster = if args.values_from_cluster {
        Some(fetch_cluster_config(&args.namespace.name)?)
    } else {
        None
    };
    let mut loaded = load(&args.values, cluster.as_ref(), &args.namespace.name)?;
    loaded.values.identity_trust_anchors_pem =
        kinject_k8s::linkerd_config::LinkerdConfig::trust_anchors(
            None,
            cluster.as_ref(),
            &loaded.values.identity_trust_anchors_pem,
        );
    warn_unknown(&loaded)?;
    let text = render(&loaded.values, args.output)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(0)
}

fn render(values: &Values, output: Output) -> Result<String> {
    Ok(match output {
        Output::Yaml => serde_saphyr::to_string(values).context("cannot write YAML")?,
        Output::Json => serde_json::to_string_pretty(values).context("cannot write JSON")? + "\n",
    })
}
