//! Which values keys exist: kinject's own (derived from `Values`) and the
//! ones Linkerd's chart has but the injector does not use (accepted without a
//! warning, so a whole `linkerd-config` loads cleanly). Anything else is an
//! unknown key: most likely a typo, reported with the nearest known key.

use std::collections::BTreeMap;

use serde_json::Value;

/// Free-form maps in kinject's own schema: any key below them is accepted.
const OPEN_MAPS: &[&str] = &[
    "proxy.securityContext",
    "proxy.inbound",
    "proxy.outbound",
    "proxy.tracing.labels",
    "networkValidator.securityContext",
];

/// Keys of Linkerd's chart (edge-26.8.3 `values.yaml`, including its
/// commented-out options, and the fields its Go `Values` type writes into
/// `linkerd-config`) that the injector does not read. Each entry accepts
/// anything below it.
const LINKERD_ONLY: &[&str] = &[
    "revisionHistoryLimit",
    "controllerLogLevel",
    "controllerLogFormat",
    "deploymentStrategy",
    "enableEndpointSlices",
    "enablePodAntiAffinity",
    "enablePprof",
    "enablePodDisruptionBudget",
    "enableH2Upgrade",
    "enablePSP",
    "controller",
    "kubeAPI",
    "podAnnotations",
    "podLabels",
    "commonLabels",
    "priorityClassName",
    "runtimeClassName",
    "policyController",
    "imagePullSecrets",
    "controllerImage",
    "controllerImageVersion",
    "controllerReplicas",
    "controllerUID",
    "controllerGID",
    "destinationController",
    "disableHeartBeat",
    "heartbeatSchedule",
    "profileValidator",
    "policyValidator",
    "nodeSelector",
    "nodeAffinity",
    "tolerations",
    "spValidator",
    "prometheusUrl",
    "podMonitor",
    "egress",
    "configReaders",
    "cliVersion",
    "proxyContainerName",
    "highAvailability",
    "controlPlaneTracing",
    "controlPlaneTracingNamespace",
    "installNamespace",
    "namespace",
    "stage",
    "global",
    "destinationResources",
    "destinationProxyResources",
    "identityResources",
    "identityProxyResources",
    "proxyInjectorResources",
    "proxyInjectorProxyResources",
    "heartbeatResources",
    "spValidatorResources",
    "identity.externalCA",
    "identity.issuer",
    "identity.kubeAPI",
    "identity.podAnnotations",
    "identity.livenessProbe",
    "identity.readinessProbe",
    "proxyInjector.externalSecret",
    "proxyInjector.namespaceSelector",
    "proxyInjector.objectSelector",
    "proxyInjector.crtPEM",
    "proxyInjector.keyPEM",
    "proxyInjector.caBundle",
    "proxyInjector.injectCaFrom",
    "proxyInjector.injectCaFromSecret",
    "proxyInjector.podAnnotations",
    "proxyInjector.livenessProbe",
    "proxyInjector.readinessProbe",
    "proxy.outboundTransportMode",
    "proxy.capabilities",
    "proxy.saMountPath",
    "proxy.component",
    "proxyInit.capabilities",
    "proxyInit.saMountPath",
    "proxyInit.resources",
];

/// A node of the known-keys tree.
#[derive(Debug)]
enum Node {
    /// Anything below is accepted (scalars, lists, free-form maps).
    Any,
    /// A map with these keys.
    Map(BTreeMap<String, Node>),
}

impl Node {
    fn child_mut(&mut self, key: &str) -> &mut Node {
        if let Node::Any = self {
            *self = Node::Map(BTreeMap::new());
        }
        let Node::Map(m) = self else {
            unreachable!("made a map above")
        };
        m.entry(key.to_string())
            .or_insert_with(|| Node::Map(BTreeMap::new()))
    }
}

fn from_value(v: &Value) -> Node {
    match v {
        Value::Object(m) => Node::Map(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()),
        _ => Node::Any,
    }
}

/// Which keys a values tree may have: those of the defaults, with the open
/// maps and Linkerd-only settings open to any key.
pub struct Schema {
    root: Node,
}

impl Schema {
    /// The schema of `defaults` (every field a values type writes).
    pub fn from_defaults(defaults: &Value) -> Self {
        let mut root = from_value(defaults);
        for path in OPEN_MAPS.iter().chain(LINKERD_ONLY) {
            let mut node = &mut root;
            for seg in path.split('.') {
                node = node.child_mut(seg);
            }
            *node = Node::Any;
        }
        Self { root }
    }

    /// Every key in `tree` (a user values layer) that the schema does not
    /// know, in document order.
    pub fn unknown_keys(&self, tree: &Value) -> Vec<UnknownKey> {
        let mut out = Vec::new();
        walk(&self.root, tree, "", &mut out);
        out
    }
}

/// A key no schema knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    /// Dotted path (`proxy.logLevl`); list items appear as `[n]`.
    pub path: String,
    /// The nearest known key at the same place, as a full path.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: unknown key", self.path)?;
        if let Some(s) = &self.suggestion {
            write!(f, ", did you mean {s}?")?;
        }
        Ok(())
    }
}

fn join(prefix: &str, key: &str) -> String {
    let key = key.replace('.', "\\.");
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(node: &Node, v: &Value, prefix: &str, out: &mut Vec<UnknownKey>) {
    let (Node::Map(known), Value::Object(m)) = (node, v) else {
        // A scalar or list where a map belongs is a type error, reported when
        // the values are read; below `Any` nothing is checked.
        return;
    };
    for (k, child) in m {
        match known.get(k) {
            Some(n) => walk(n, child, &join(prefix, k), out),
            None => out.push(UnknownKey {
                path: join(prefix, k),
                suggestion: nearest(known.keys(), k).map(|s| join(prefix, s)),
            }),
        }
    }
}

/// The known key closest to `typo`: same spelling ignoring case, or within
/// a third of its length in edits (at least one, at most three).
fn nearest<'a>(known: impl Iterator<Item = &'a String>, typo: &str) -> Option<&'a str> {
    let lower = typo.to_lowercase();
    let limit = (typo.chars().count() / 3).clamp(1, 3);
    known
        .map(|k| {
            let d = if k.to_lowercase() == lower {
                0
            } else {
                strsim::damerau_levenshtein(&k.to_lowercase(), &lower)
            };
            (d, k.as_str())
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}
