//! `kinject inject` and `kinject uninject`: the offline front end of the engine.
//!
//! All input is read, parsed and transformed before anything is written: on any
//! error nothing reaches stdout (a half-written manifest piped into
//! `kubectl apply` would lose objects), every error is printed with its file
//! and line, and the exit code is 1.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use kinject_inject::{DocumentOutcome, Injector, InjectorConfig};
use kinject_mesh::parse;
use rayon::prelude::*;
use serde_json::Value;

use crate::manifest::{self, Source};
use crate::report;
use crate::values_cmd::{self, ValuesArgs};

use crate::values_cmd::Output;

/// Flags shared by `inject` and `uninject`.
#[derive(Args, Debug)]
pub struct InputArgs {
    /// Manifest files, directories (walked recursively for .yaml, .yml and
    /// .json files, in lexical order), or `-` for stdin.
    #[arg(value_name = "PATH|-")]
    pub paths: Vec<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub values: ValuesArgs,

    /// Start from the values and trust roots of the Linkerd running in the
    /// -l namespace (ConfigMaps `linkerd-config` and
    /// `linkerd-identity-trust-roots`), so the output matches what that
    /// cluster's injector would produce. Files and sets apply on top.
    #[arg(long)]
    pub values_from_cluster: bool,

    /// Inject ingress-mode proxies (`proxy.isIngress`): the templates are
    /// marked `linkerd.io/inject: ingress`.
    #[arg(long)]
    pub ingress: bool,

    /// PEM file with the identity trust anchors (overrides identityTrustAnchorsPEM).
    #[arg(long, value_name = "FILE")]
    pub trust_anchors: Option<PathBuf>,

    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,

    /// Proxy image name (without tag).
    #[arg(long)]
    pub proxy_image: Option<String>,

    /// Proxy image tag.
    #[arg(long, visible_alias = "linkerd-version")]
    pub proxy_version: Option<String>,

    /// Image (without tag) for linkerd-init; defaults to the proxy image.
    #[arg(long)]
    pub init_image: Option<String>,

    /// User id the proxy runs as (iptables exempts its traffic).
    #[arg(long)]
    pub proxy_uid: Option<u32>,

    /// Proxy log level, e.g. `warn,linkerd=info`.
    #[arg(long)]
    pub proxy_log_level: Option<String>,

    /// Inbound ports and ranges the proxy does not intercept (e.g. `22,8000-8100`).
    #[arg(long)]
    pub skip_inbound_ports: Option<String>,

    /// Outbound ports and ranges the proxy does not intercept.
    #[arg(long)]
    pub skip_outbound_ports: Option<String>,

    /// Proxy CPU request (Kubernetes quantity, e.g. `100m`).
    #[arg(long)]
    pub proxy_cpu: Option<String>,

    /// Proxy memory request (Kubernetes quantity, e.g. `64Mi`).
    #[arg(long)]
    pub proxy_memory: Option<String>,

    /// Run the proxy as a native sidecar (an init container with
    /// `restartPolicy: Always`; Kubernetes 1.29+). `--native-sidecar=false`
    /// gives a classic sidecar.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub native_sidecar: Option<bool>,
}

#[derive(Args, Debug)]
pub struct UninjectArgs {
    #[command(flatten)]
    pub input: InputArgs,
}

impl InjectArgs {
    /// Builds the engine from the values file and flags, validating every flag.
    pub fn injector(&self) -> Result<Injector> {
        let cluster = if self.values_from_cluster {
            Some(values_cmd::fetch_cluster_config(&self.namespace.name)?)
        } else {
            None
        };
        let loaded = values_cmd::load(&self.values, cluster.as_ref(), &self.namespace.name)?;
        values_cmd::warn_unknown(&loaded)?;
        let mut values = loaded.values;
        if self.ingress {
            values.proxy.is_ingress = true;
        }
        let p = &mut values.proxy;
        if let Some(v) = &self.proxy_image {
            p.image.name = non_empty("--proxy-image", v)?;
        }
        if let Some(v) = &self.proxy_version {
            p.image.version = non_empty("--proxy-version", v)?;
        }
        if let Some(v) = self.proxy_uid {
            p.uid = i64::from(v);
        }
        if let Some(v) = &self.proxy_log_level {
            p.log_level = non_empty("--proxy-log-level", v)?;
        }
        if let Some(v) = &self.proxy_cpu {
            parse::quantity(v).map_err(|e| anyhow::anyhow!("--proxy-cpu: {e}"))?;
            p.resources.cpu.request = v.clone();
        }
        if let Some(v) = &self.proxy_memory {
            parse::quantity(v).map_err(|e| anyhow::anyhow!("--proxy-memory: {e}"))?;
            p.resources.memory.request = v.clone();
        }
        if let Some(v) = self.native_sidecar {
            p.native_sidecar = v;
        }
        if let Some(v) = &self.init_image {
            values.proxy_init.image.name = non_empty("--init-image", v)?;
        }
        if let Some(v) = &self.skip_inbound_ports {
            parse::port_ranges(v).map_err(|e| anyhow::anyhow!("--skip-inbound-ports: {e}"))?;
            values.proxy_init.ignore_inbound_ports = v.clone();
        }
        if let Some(v) = &self.skip_outbound_ports {
            parse::port_ranges(v).map_err(|e| anyhow::anyhow!("--skip-outbound-ports: {e}"))?;
            values.proxy_init.ignore_outbound_ports = v.clone();
        }
        let explicit = match &self.trust_anchors {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read trust anchors {}", path.display()))?,
            ),
            None => None,
        };
        let trust_anchors_pem = kinject_k8s::linkerd_config::LinkerdConfig::trust_anchors(
            explicit,
            cluster.as_ref(),
            &values.identity_trust_anchors_pem,
        );
        let injector = Injector::new(InjectorConfig {
            values,
            linkerd_namespace: self.namespace.name.clone(),
            trust_anchors_pem,
            ..InjectorConfig::default()
        })?;
        Ok(injector)
    }
}

fn non_empty(flag: &str, v: &str) -> Result<String> {
    if v.trim().is_empty() {
        bail!("{flag}: must not be empty");
    }
    Ok(v.to_string())
}

/// One transformed source, ready to print.
struct Transformed {
    /// Rendered documents, in order (kept apart: joining them would copy
    /// the whole output once more).
    output: Vec<String>,
    report: String,
}

/// Runs `transform` over every document of every source. Returns the exit code.
fn run(
    input: &InputArgs,
    transform: impl Fn(&Value) -> DocumentOutcome + Sync,
    render_report: fn(&[kinject_inject::ObjectReport]) -> String,
) -> Result<i32> {
    let sources = manifest::read_sources(&input.paths)?;
    let mut results = Vec::with_capacity(sources.len());
    let mut errors = Vec::new();
    for source in &sources {
        match transform_source(source, input.output, &transform) {
            Ok((output, reports)) => results.push(Transformed {
                output,
                report: render_report(&reports),
            }),
            Err(e) => errors.push(e),
        }
    }
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    if !errors.is_empty() {
        writeln!(err, "Error transforming resources:")?;
        for e in errors {
            writeln!(err, "{e}")?;
        }
        return Ok(1);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for doc in results.iter().flat_map(|r| &r.output) {
        out.write_all(doc.as_bytes())?;
    }
    out.flush()?;
    for r in &results {
        err.write_all(r.report.as_bytes())?;
    }
    Ok(0)
}

/// Parses, transforms and renders every document of one source. Documents are
/// independent, so they are processed in parallel; output keeps their order.
fn transform_source(
    source: &Source,
    format: Output,
    transform: &(impl Fn(&Value) -> DocumentOutcome + Sync),
) -> Result<(Vec<String>, Vec<kinject_inject::ObjectReport>), String> {
    let chunks = manifest::split_chunks(&source.text);
    let rendered: Vec<Result<(String, Vec<_>), String>> = chunks
        .par_iter()
        .map(|chunk| {
            let doc = chunk
                .parse()
                .map_err(|e| format!("{}:{}: {}", source.name, e.line, e.message))?;
            transform_document(&doc, format, transform)
                .map_err(|e| format!("{}:{}: {e}", source.name, doc.line))
        })
        .collect();
    let mut output = Vec::with_capacity(rendered.len());
    let mut reports = Vec::new();
    for r in rendered {
        let (text, doc_reports) = r?;
        output.push(text);
        reports.extend(doc_reports);
    }
    Ok((output, reports))
}

fn transform_document(
    doc: &manifest::Document<'_>,
    format: Output,
    transform: &impl Fn(&Value) -> DocumentOutcome,
) -> Result<(String, Vec<kinject_inject::ObjectReport>), String> {
    let mut output = String::new();
    let verbatim = |output: &mut String| {
        output.push_str(doc.text);
        if !doc.text.ends_with('\n') {
            output.push('\n');
        }
    };
    if doc.value.is_null() {
        // Empty or comment-only documents pass through as written.
        if format == Output::Yaml && !doc.text.trim().is_empty() {
            verbatim(&mut output);
            output.push_str("---\n");
        }
        return Ok((output, Vec::new()));
    }
    let outcome = transform(&doc.value);
    let render = |v: &Value| -> Result<String, String> {
        match format {
            Output::Yaml => {
                serde_saphyr::to_string(v).map_err(|e| format!("cannot write YAML: {e}"))
            }
            Output::Json => serde_json::to_string_pretty(v)
                .map(|s| s + "\n")
                .map_err(|e| format!("cannot write JSON: {e}")),
        }
    };
    match (&outcome.changed, format) {
        (Some(v), _) => output.push_str(&render(v)?),
        (None, Output::Yaml) => verbatim(&mut output),
        (None, Output::Json) => output.push_str(&render(&doc.value)?),
    }
    if format == Output::Yaml {
        output.push_str("---\n");
    }
    Ok((output, outcome.reports))
}

pub fn inject(args: &InjectArgs) -> Result<i32> {
    let injector = args.injector()?;
    run(
        &args.input,
        |doc| injector.inject_document(doc),
        report::inject_report,
    )
}

pub fn uninject(args: &UninjectArgs) -> Result<i32> {
    let injector = Injector::new(InjectorConfig::default())?;
    run(
        &args.input,
        |doc| injector.uninject_document(doc),
        report::uninject_report,
    )
}
