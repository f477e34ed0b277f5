//! `kinject install` and `kinject uninstall`: the control plane as manifests.
//!
//! Rendering is a pure function of the flags: the same flags give the same
//! bytes (no certificates, no random names, no timestamps), so the output can
//! live in Git (pain point P5). Certificates are made at run time by
//! `kinject identity`; the webhook configuration is registered and kept true
//! by the injector itself, so neither is in the manifest.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kinject_mesh::names;
use kinject_mesh::settings::{DefaultPolicy, FailurePolicy};
use kinject_runtime::log::LogFormat;
use serde_json::{Value, json};

use crate::values_cmd::{self, ValuesArgs};

/// kinject's own image, without a tag; `--registry` replaces the registry part.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/kinject";
pub const IMAGE_NAME: &str = "kinject";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The non-root user every kinject container runs as (the image's passwd entry).
pub const RUN_AS_USER: i64 = 65532;

pub const INJECTOR: &str = names::PROXY_INJECTOR.name;
pub const IDENTITY: &str = names::IDENTITY.name;
pub const DESTINATION: &str = names::DESTINATION.name;
/// Where the injector's serving certificate (written by identity) is mounted.
const TLS_DIR: &str = "/var/run/linkerd/tls";
const WEBHOOK_PORT: i32 = 8443;
const INJECTOR_ADMIN_PORT: i32 = 9995;
const IDENTITY_ADMIN_PORT: i32 = 9990;
/// The proxy's `Identity/Certify` (what `LINKERD2_PROXY_IDENTITY_SVC_ADDR` names).
const IDENTITY_GRPC_PORT: i32 = names::IDENTITY_HEADLESS.port as i32;
/// Destination and policy (what `LINKERD2_PROXY_DESTINATION_SVC_ADDR` and
/// `LINKERD2_PROXY_POLICY_SVC_ADDR` name); each port serves all three APIs.
const DST_GRPC_PORT: i32 = names::DESTINATION_HEADLESS.port as i32;
const POLICY_GRPC_PORT: i32 = names::POLICY.port as i32;
const DESTINATION_ADMIN_PORT: i32 = 9996;

mod rbac;
pub use rbac::cluster_role_names;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tls {
    /// The seed's `--tls=optional`: the mesh CA runs and proxies get identity.
    Optional,
}

#[derive(Args, Clone, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
    /// The seed's flag; the mesh CA always runs (`optional` is the only value).
    #[arg(long, value_enum)]
    pub tls: Option<Tls>,
    /// Install the proxy injector (the seed's flag; on by default,
    /// `--proxy-auto-inject=false` installs the CA alone).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub proxy_auto_inject: bool,
    /// Log level of kinject's own servers.
    #[arg(long, default_value = "info")]
    pub controller_log_level: String,
    /// Registry of kinject's image (the image is `<registry>/kinject:<version>`).
    #[arg(long, default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// kinject's whole image reference; overrides --registry.
    #[arg(long)]
    pub image: Option<String>,
    /// Proxy image name (without tag), written into the values.
    #[arg(long)]
    pub proxy_image: Option<String>,
    /// Proxy image tag, written into the values.
    #[arg(long, visible_alias = "linkerd-version")]
    pub proxy_version: Option<String>,
    /// Image (without tag) for linkerd-init, written into the values.
    #[arg(long)]
    pub init_image: Option<String>,
    /// High availability: 3 replicas (or --replicas), PodDisruptionBudgets,
    /// anti-affinity across nodes. PodDisruptionBudget `policy/v1` needs
    /// Kubernetes 1.21 or later.
    #[arg(long)]
    pub ha: bool,
    /// Replicas of each server (default 1, or 3 with --ha).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// What the API server does when the injector cannot be reached: Ignore
    /// or Fail.
    #[arg(long, default_value = "Ignore", value_parser = str::parse::<FailurePolicy>)]
    pub failure_policy: FailurePolicy,
    /// Pods with no injection label or annotation anywhere: `enabled` (the
    /// seed's opt-out model) or `disabled` (opt-in, as modern Linkerd).
    #[arg(long, default_value = "enabled", value_parser = str::parse::<DefaultPolicy>)]
    pub default_inject: DefaultPolicy,
    /// Your trust anchors: a PEM bundle of ECDSA P-256 roots, what proxies
    /// verify with (`identityTrustAnchorsPEM`). Needs your issuer, or
    /// --identity-external-issuer. Without any PKI flag kinject runs its own CA.
    #[arg(long, value_name = "FILE")]
    pub identity_trust_anchors_file: Option<std::path::PathBuf>,
    /// Your issuer's certificate (PEM, a P-256 CA signed by one of the
    /// anchors; `identity.issuer.tls.crtPEM`), stored in Secret linkerd-identity-issuer.
    #[arg(long, value_name = "FILE")]
    pub identity_issuer_certificate_file: Option<std::path::PathBuf>,
    /// Your issuer's private key (PEM, SEC1 or PKCS#8; `identity.issuer.tls.keyPEM`).
    #[arg(long, value_name = "FILE")]
    pub identity_issuer_key_file: Option<std::path::PathBuf>,
    /// The issuer is Secret linkerd-identity-issuer (tls.crt, tls.key,
    /// ca.crt) kept by something else, e.g. cert-manager
    /// (`identity.issuer.scheme: kubernetes.io/tls`); renewals are applied
    /// without a restart.
    #[arg(long)]
    pub identity_external_issuer: bool,
    /// ConfigMap linkerd-identity-trust-roots is managed outside kinject
    /// (`identity.externalCA`): install does not render it.
    #[arg(long)]
    pub identity_external_ca: bool,
    /// The injector evicts running pods that should be meshed but have no
    /// proxy, when a controller recreates them (`proxyInjector.repairMissed`;
    /// grants it pods/eviction). Off by default: see the README.
    #[arg(long)]
    pub repair_missed: bool,
    /// Print only the CRDs of Linkerd's policy resources (Server,
    /// AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication,
    /// ServerAuthorization, HTTPRoute), as `linkerd install --crds` does.
    /// Apply them once per cluster, before or after the control plane;
    /// they are safe to apply over Linkerd's own.
    #[arg(long)]
    pub crds: bool,
    #[command(flatten)]
    pub values: ValuesArgs,
}

/// Where identity's issuer comes from, decided at install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPki {
    /// Rendered as ConfigMap linkerd-identity-trust-roots (None: kinject's
    /// own CA, or `identity.externalCA`).
    pub trust_roots_pem: Option<String>,
    /// Rendered as Secret linkerd-identity-issuer (`crt.pem`, `key.pem`).
    pub issuer: Option<(String, String)>,
    /// identity's `--issuer-scheme` (None: kinject's own CA, the default).
    pub scheme: Option<&'static str>,
}

/// Reads the operator's PKI from the values (the flags set them first),
/// checked as identity will check it: an install that renders is an install
/// whose identity starts.
pub fn identity_pki(v: &kinject_mesh::values::Values, sources: &PkiSources) -> Result<IdentityPki> {
    use kinject_identity::{ca, pki};
    use kinject_mesh::values::ISSUER_SCHEME_EXTERNAL;
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
    let anchors = some(&v.identity_trust_anchors_pem);
    let crt = some(&v.identity.issuer.tls.crt_pem);
    let key = some(&v.identity.issuer.tls.key_pem);
    let external = v.identity.issuer.scheme == ISSUER_SCHEME_EXTERNAL;
    let external_ca = v.identity.external_ca;
    let (a, c, k) = (&sources.anchors, &sources.crt, &sources.key);
    if external && (crt.is_some() || key.is_some()) {
        bail!(
            "--identity-external-issuer (identity.issuer.scheme: kubernetes.io/tls) reads the issuer from Secret linkerd-identity-issuer: drop {c} and {k}"
        );
    }
    match (&crt, &key) {
        (Some(_), None) => bail!("{c} needs {k} too"),
        (None, Some(_)) => bail!("{k} needs {c} too"),
        _ => {}
    }
    let operator_issuer = crt.is_some() || external;
    if !operator_issuer {
        if anchors.is_some() {
            bail!(
                "{a} needs the issuer it signs: {c} and {k}, or --identity-external-issuer (without any of them kinject runs its own CA)"
            );
        }
        if external_ca {
            bail!(
                "--identity-external-ca (identity.externalCA) needs your issuer: {c} and {k}, or --identity-external-issuer"
            );
        }
        return Ok(IdentityPki {
            trust_roots_pem: None,
            issuer: None,
            scheme: None,
        });
    }
    if anchors.is_none() && !external_ca {
        bail!(
            "your issuer needs the trust anchors proxies verify it with: {a}, or --identity-external-ca when ConfigMap linkerd-identity-trust-roots is managed elsewhere"
        );
    }
    if let Some(anchors) = &anchors {
        pki::parse_trust_anchors(anchors).map_err(|e| anyhow::anyhow!("{a}: {e}"))?;
    }
    if let (Some(crt), Some(key)) = (&crt, &key) {
        pki::parse_certificates("issuer", crt, true).map_err(|e| anyhow::anyhow!("{c}: {e}"))?;
        pki::parse_private_key("issuer key", key).map_err(|e| anyhow::anyhow!("{k}: {e}"))?;
        if let Some(anchors) = &anchors {
            let issuer = ca::CertAndKey {
                cert_pem: crt.clone(),
                key_pem: key.clone(),
            };
            ca::Ca::load(anchors, &issuer, time::OffsetDateTime::now_utc())
                .map_err(|e| anyhow::anyhow!("{a}, {c}, {k}: {e}"))?;
        }
    }
    Ok(IdentityPki {
        trust_roots_pem: anchors.filter(|_| !external_ca),
        issuer: crt.zip(key),
        scheme: Some(if external {
            ISSUER_SCHEME_EXTERNAL
        } else {
            kinject_mesh::values::ISSUER_SCHEME_LINKERD
        }),
    })
}

/// How each PKI input is named in messages: its flag and file, or its value key.
#[derive(Clone, Debug)]
pub struct PkiSources {
    pub anchors: String,
    pub crt: String,
    pub key: String,
}

/// Everything rendering needs, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub namespace: String,
    pub image: String,
    pub log_level: String,
    pub replicas: u32,
    pub ha: bool,
    pub injector: bool,
    pub failure_policy: FailurePolicy,
    pub default_inject: DefaultPolicy,
    /// The `values` key of `linkerd-config`: the effective values, as YAML.
    pub values_yaml: String,
    pub pki: IdentityPki,
    /// The injector evicts pods that slipped through (`--repair-missed`).
    pub repair_missed: bool,
}

impl InstallArgs {
    pub fn plan(&self) -> Result<Plan> {
        let ns = &self.namespace.name;
        check_dns_label("--linkerd-namespace", ns)?;
        let replicas = match (self.ha, self.replicas) {
            (true, Some(n)) if n < 2 => bail!(
                "--ha with --replicas {n} is contradictory: high availability needs at least 2 replicas (omit --replicas for 3)"
            ),
            (_, Some(0)) => bail!("--replicas must be at least 1"),
            (_, Some(n)) => n,
            (true, None) => 3,
            (false, None) => 1,
        };
        let image = match &self.image {
            Some(i) => {
                check_image_reference("--image", i)?;
                i.clone()
            }
            None => {
                let r = self.registry.trim_end_matches('/');
                let i = format!("{r}/{IMAGE_NAME}:{VERSION}");
                check_image_reference("--registry", &i)?;
                i
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.controller_log_level).map_err(|e| {
            anyhow::anyhow!(
                "--controller-log-level {:?}: {e}",
                self.controller_log_level
            )
        })?;
        let mut loaded = values_cmd::load(&self.values, None, ns)?;
        values_cmd::warn_unknown(&loaded)?;
        let v = &mut loaded.values;
        let sources = self.apply_flags(v)?;
        v.webhook_failure_policy = self.failure_policy.as_str().into();
        v.validate()?;
        let pki = identity_pki(v, &sources)?;
        // Unset settings (`null`) are left out, as Helm leaves them out of
        // rendered values: both mean "the default".
        let mut tree = serde_json::to_value(&loaded.values)?;
        drop_nulls(&mut tree);
        // linkerd-config is readable by every server: the issuer's key (and
        // its certificate, which goes with it) live only in their Secret.
        if let Some(issuer) = tree
            .pointer_mut("/identity/issuer")
            .and_then(Value::as_object_mut)
        {
            issuer.remove("tls");
        }
        let values_yaml = serde_saphyr::to_string(&tree)
            .map_err(|e| anyhow::anyhow!("cannot write the values: {e}"))?;
        Ok(Plan {
            namespace: ns.clone(),
            image,
            log_level: self.controller_log_level.clone(),
            replicas,
            ha: self.ha,
            injector: self.proxy_auto_inject,
            failure_policy: self.failure_policy,
            default_inject: self.default_inject,
            values_yaml,
            pki,
            repair_missed: loaded.values.proxy_injector.repair_missed,
        })
    }

    /// The flags that set values (the PKI files, the issuer scheme, images),
    /// applied after every values source; where the PKI came from, for
    /// errors that name it.
    fn apply_flags(&self, v: &mut kinject_mesh::values::Values) -> Result<PkiSources> {
        // The PKI flags are the same values, set after every values source.
        let file_source = |flag: &str, f: &Option<std::path::PathBuf>, key: &str| match f {
            Some(p) => format!("{flag} {}", p.display()),
            None => format!("{flag} (or {key})"),
        };
        let sources = PkiSources {
            anchors: file_source(
                "--identity-trust-anchors-file",
                &self.identity_trust_anchors_file,
                "identityTrustAnchorsPEM",
            ),
            crt: file_source(
                "--identity-issuer-certificate-file",
                &self.identity_issuer_certificate_file,
                "identity.issuer.tls.crtPEM",
            ),
            key: file_source(
                "--identity-issuer-key-file",
                &self.identity_issuer_key_file,
                "identity.issuer.tls.keyPEM",
            ),
        };
        for (file, slot) in [
            (
                &self.identity_trust_anchors_file,
                &mut v.identity_trust_anchors_pem,
            ),
            (
                &self.identity_issuer_certificate_file,
                &mut v.identity.issuer.tls.crt_pem,
            ),
            (
                &self.identity_issuer_key_file,
                &mut v.identity.issuer.tls.key_pem,
            ),
        ] {
            if let Some(path) = file {
                *slot = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            }
        }
        if self.identity_external_issuer {
            v.identity.issuer.scheme = kinject_mesh::values::ISSUER_SCHEME_EXTERNAL.into();
        }
        if self.identity_external_ca {
            v.identity.external_ca = true;
        }
        if self.repair_missed {
            v.proxy_injector.repair_missed = true;
        }
        for (flag, value, slot) in [
            ("--proxy-image", &self.proxy_image, &mut v.proxy.image.name),
            (
                "--proxy-version",
                &self.proxy_version,
                &mut v.proxy.image.version,
            ),
            (
                "--init-image",
                &self.init_image,
                &mut v.proxy_init.image.name,
            ),
        ] {
            if let Some(value) = value {
                check_image_reference(flag, value)?;
                *slot = value.clone();
            }
        }
        Ok(sources)
    }
}

fn drop_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        m.values_mut().for_each(drop_nulls);
    }
}

fn check_dns_label(flag: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!(
            "{flag} {s:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
        );
    }
    Ok(())
}

/// A container image reference as Kubernetes and containerd accept it:
/// `[registry[:port]/]path[:tag][@digest]`, lowercase path components.
pub fn check_image_reference(flag: &str, s: &str) -> Result<()> {
    let bad = |why: &str| anyhow::anyhow!("{flag} {s:?} is not an image reference: {why}");
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace"));
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return Err(bad("a digest is algorithm:hex"));
        };
        if algo.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not algorithm:hex"));
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(bad(
                "the tag may hold letters, digits, '_', '.' and '-' (at most 128)",
            ));
        }
    }
    let mut parts = path.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let is_registry = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        if is_registry {
            let (host, port) = part
                .split_once(':')
                .map_or((part, None), |(h, p)| (h, Some(p)));
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad("the registry is not host[:port]"));
            }
            continue;
        }
        let ok = !part.is_empty()
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(
                "path components are lowercase letters, digits and separators ('.', '_', '-')",
            ));
        }
    }
    Ok(())
}

fn labels(component: &str) -> Value {
    json!({
        "linkerd.io/control-plane-component": component,
        "linkerd.io/control-plane-ns": "NS",
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "kinject",
        "app.kubernetes.io/version": VERSION,
    })
}

/// Replaces the "NS" placeholder in label values (keeps `labels()` static).
fn with_ns(mut v: Value, ns: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        for val in m.values_mut() {
            if val == "NS" {
                *val = Value::String(ns.to_string());
            }
        }
    }
    v
}

fn selector(component: &str) -> Value {
    json!({"linkerd.io/control-plane-component": component})
}

fn security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn probe(path: &str, port: i32, period: i32, failures: i32) -> Value {
    json!({
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    })
}

fn deployment(p: &Plan, name: &str, component: &str, container: Value, volumes: Value) -> Value {
    let ns = &p.namespace;
    let mut spec = json!({
        "serviceAccountName": name,
        "automountServiceAccountToken": true,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "containers": [container],
        "volumes": volumes,
    });
    if p.ha {
        spec["affinity"] = json!({"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": selector(component)},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }],
        }});
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": with_ns(labels(component), ns)},
        "spec": {
            "replicas": p.replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector(component)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": with_ns(labels(component), ns),
                    "annotations": {"linkerd.io/inject": "disabled"},
                },
                "spec": spec,
            },
        },
    })
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Value {
    json!({"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}})
}

/// Where the injector and destination keep their serving certificate: an
/// emptyDir the server fills from the Secret identity writes (`--cert-secret`,
/// a watch), so it is ready seconds after identity issues the certificate;
/// a Secret volume would wait for the kubelet's refresh (about a minute).
fn cert_volume() -> Value {
    json!([{"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}])
}

fn injector_deployment(p: &Plan) -> Value {
    let ns = &p.namespace;
    let tls = |f: &str| format!("{TLS_DIR}/{f}");
    let container = json!({
        "name": "proxy-injector",
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "proxy-injector",
            "--linkerd-namespace", ns,
            "--addr", format!("0.0.0.0:{WEBHOOK_PORT}"),
            "--admin-addr", format!("0.0.0.0:{INJECTOR_ADMIN_PORT}"),
            "--tls-cert", tls("tls.crt"),
            "--tls-key", tls("tls.key"),
            "--ca-bundle", tls("ca.crt"),
            "--trust-anchors", tls("ca.crt"),
            "--values-from-cluster",
            "--cert-secret", format!("{INJECTOR}-k8s-tls"),
            "--service-name", INJECTOR,
            "--service-port", "443",
            "--failure-policy", p.failure_policy.as_str(),
            "--default-policy", p.default_inject.as_str(),
            "--log-level", p.log_level,
            "--log-format", LogFormat::Json.as_str(),
        ],
        "ports": [
            {"name": "webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": INJECTOR_ADMIN_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": probe("/live", INJECTOR_ADMIN_PORT, 10, 3),
        "readinessProbe": probe("/ready", INJECTOR_ADMIN_PORT, 2, 3),
        "resources": resources("10m", "32Mi", "256Mi"),
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR}],
    });
    let mut container = container;
    if let (true, Some(args)) = (p.repair_missed, container["args"].as_array_mut()) {
        args.push(json!("--repair-missed"));
    }
    deployment(p, INJECTOR, "proxy-injector", container, cert_volume())
}

fn identity_deployment(p: &Plan) -> Value {
    let ns = &p.namespace;
    let container = json!({
        "name": "identity",
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "identity",
            "--linkerd-namespace", ns,
            "--webhook-service", INJECTOR,
            "--admin-addr", format!("0.0.0.0:{IDENTITY_ADMIN_PORT}"),
            "--grpc-addr", format!("0.0.0.0:{IDENTITY_GRPC_PORT}"),
            "--log-level", p.log_level,
            "--log-format", LogFormat::Json.as_str(),
        ],
        "ports": [
            {"name": "grpc", "containerPort": IDENTITY_GRPC_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": IDENTITY_ADMIN_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": probe("/live", IDENTITY_ADMIN_PORT, 10, 3),
        "readinessProbe": probe("/ready", IDENTITY_ADMIN_PORT, 2, 3),
        "resources": resources("10m", "32Mi", "256Mi"),
        "securityContext": security_context(),
    });
    let mut container = container;
    if let (Some(scheme), Some(args)) = (p.pki.scheme, container["args"].as_array_mut()) {
        args.extend([json!("--issuer-scheme"), json!(scheme)]);
    }
    deployment(p, IDENTITY, "identity", container, json!([]))
}

fn destination_deployment(p: &Plan) -> Value {
    let ns = &p.namespace;
    let container = json!({
        "name": "destination",
        "image": p.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "destination",
            "--linkerd-namespace", ns,
            "--grpc-addr", format!("0.0.0.0:{DST_GRPC_PORT}"),
            "--grpc-addr", format!("0.0.0.0:{POLICY_GRPC_PORT}"),
            "--admin-addr", format!("0.0.0.0:{DESTINATION_ADMIN_PORT}"),
            "--cert-dir", TLS_DIR,
            "--cert-secret", format!("{DESTINATION}-k8s-tls"),
            "--values-from-cluster",
            "--log-level", p.log_level,
            "--log-format", LogFormat::Json.as_str(),
        ],
        "ports": [
            {"name": "grpc-dst", "containerPort": DST_GRPC_PORT, "protocol": "TCP"},
            {"name": "grpc-policy", "containerPort": POLICY_GRPC_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": DESTINATION_ADMIN_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": probe("/live", DESTINATION_ADMIN_PORT, 10, 3),
        "readinessProbe": probe("/ready", DESTINATION_ADMIN_PORT, 2, 3),
        "resources": resources("10m", "32Mi", "256Mi"),
        "securityContext": security_context(),
        "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR}],
    });
    deployment(p, DESTINATION, "destination", container, cert_volume())
}

fn pdb(p: &Plan, name: &str, component: &str) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": p.namespace, "labels": with_ns(labels(component), &p.namespace)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(component)}},
    })
}

/// Every object of the control plane, in apply order.
pub fn render(p: &Plan) -> Vec<Value> {
    let ns = p.namespace.as_str();
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {
            "linkerd.io/auto-inject": "disabled",
            "linkerd.io/is-control-plane": "true",
            "config.linkerd.io/admission-webhooks": "disabled",
            "app.kubernetes.io/part-of": "kinject",
        }},
    })];
    out.extend(rbac::objects(p));
    out.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names::VALUES_CONFIG_MAP, "namespace": ns,
                     "labels": {"app.kubernetes.io/part-of": "kinject"}},
        "data": {names::VALUES_KEY: p.values_yaml},
    }));
    if p.injector {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": INJECTOR, "namespace": ns,
                         "labels": with_ns(labels("proxy-injector"), ns)},
            "spec": {
                "type": "ClusterIP",
                "selector": selector("proxy-injector"),
                "ports": [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}],
            },
        }));
    }
    // The Services the injected proxy env dials (and their non-headless
    // twins), from the mesh contract.
    for svc in [
        names::IDENTITY_SERVICE,
        names::IDENTITY_HEADLESS,
        names::DESTINATION_SERVICE,
        names::DESTINATION_HEADLESS,
        names::POLICY,
    ] {
        let component = match svc.component {
            c if c == names::IDENTITY => "identity",
            _ => "destination",
        };
        let mut spec = json!({
            "type": "ClusterIP",
            "selector": selector(component),
            "ports": [{"name": "grpc", "port": svc.port, "targetPort": svc.target_port, "protocol": "TCP"}],
        });
        if svc.headless {
            spec["clusterIP"] = json!("None");
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc.name, "namespace": ns, "labels": with_ns(labels(component), ns)},
            "spec": spec,
        }));
    }
    if let Some(roots) = &p.pki.trust_roots_pem {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": kinject_mesh::names::TRUST_ROOTS_CONFIG_MAP, "namespace": ns,
                         "labels": {"app.kubernetes.io/part-of": "kinject"}},
            "data": {kinject_mesh::names::TRUST_ROOTS_KEY: roots},
        }));
    }
    if let Some((crt, key)) = &p.pki.issuer {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": kinject_mesh::names::ISSUER_SECRET, "namespace": ns,
                         "labels": {"app.kubernetes.io/part-of": "kinject"}},
            "data": {"crt.pem": b64(crt), "key.pem": b64(key)},
        }));
    }
    out.push(identity_deployment(p));
    out.push(destination_deployment(p));
    if p.injector {
        out.push(injector_deployment(p));
    }
    if p.ha {
        out.push(pdb(p, IDENTITY, "identity"));
        out.push(pdb(p, DESTINATION, "destination"));
        if p.injector {
            out.push(pdb(p, INJECTOR, "proxy-injector"));
        }
    }
    out
}

/// The objects as one YAML stream, each document ending with `---`.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str(
            &serde_saphyr::to_string(o).map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?,
        );
        out.push_str("---\n");
    }
    Ok(out)
}

/// The policy CRDs as objects, in `kinject_k8s::policy::crds`' order.
pub fn crd_objects() -> Result<Vec<Value>> {
    kinject_k8s::policy::crds()
        .iter()
        .map(|crd| serde_json::to_value(crd).context("cannot write a CRD"))
        .collect()
}

pub fn install(args: &InstallArgs) -> Result<i32> {
    if args.crds {
        print!("{}", to_yaml(&crd_objects()?)?);
        return Ok(0);
    }
    let plan = args.plan()?;
    print!("{}", to_yaml(&render(&plan))?);
    Ok(0)
}

#[derive(Args, Clone, Debug)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub namespace: crate::namespace_arg::NamespaceArg,
}

/// What `uninstall` prints: every cluster-scoped object kinject creates
/// (including the webhook configuration the injector registered at run time),
/// then the namespace, which takes everything in it along.
pub fn uninstall_objects(ns: &str) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "linkerd-proxy-injector-webhook-config"},
    })];
    for name in cluster_role_names(ns) {
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name}}));
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}}));
    }
    out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    out
}

pub fn uninstall(args: &UninstallArgs) -> Result<i32> {
    check_dns_label("--linkerd-namespace", &args.namespace.name)?;
    print!("{}", to_yaml(&uninstall_objects(&args.namespace.name))?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "ghcr.io/kinject/kinject:0.1.0",
            "localhost/kinject:0.1.0",
            "localhost:5000/a/b:1",
            "kinject",
            "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_image_reference("--image", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("ghcr.io/Kinject/kinject:1", "lowercase"),
            ("a b", "whitespace"),
            ("kinject:", "the tag"),
            ("kinject:bad tag", "whitespace"),
            ("reg:port/x:1", "the registry"),
            ("x@sha256:zz", "digest"),
            ("a//b", "path components"),
        ] {
            let e = check_image_reference("--image", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(
                e.starts_with(&format!("--image {bad:?} is not an image reference")),
                "{e}"
            );
        }
    }
}
