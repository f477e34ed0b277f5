//! What the control plane keeps of Linkerd's policy resources: their facts,
//! checked once as they arrive. Pure: a typed object in, facts or a
//! [`Refused`] out. A refused object is left out of the index, and what
//! refers to it then grants nothing (fails closed), as Linkerd's controller
//! does.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinject_k8s::policy::{
    self, GATEWAY_GROUP, NamespacedTargetRef, POLICY_GROUP, authn, refers_to, route,
    server::{AccessPolicy, ProxyProtocol},
};
use kinject_mesh::settings::InboundPolicy;

use crate::model::ObjKey;
use crate::route_annotations::{BadAnnotation, NotADuration, RouteAnnotations};

/// Why an object cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

impl From<BadAnnotation> for Refused {
    fn from(e: BadAnnotation) -> Self {
        Refused(e.to_string())
    }
}

impl From<NotADuration> for Refused {
    fn from(e: NotADuration) -> Self {
        Refused(e.to_string())
    }
}

/// A label selector (`matchLabels` and `matchExpressions`, ANDed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    expressions: Vec<(String, Operator, Vec<String>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    pub fn from_k8s(s: &LabelSelector) -> Result<Self, Refused> {
        let mut expressions = Vec::new();
        for e in s.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return refuse(format!("unknown selector operator {other:?}")),
            };
            expressions.push((e.key.clone(), op, e.values.clone().unwrap_or_default()));
        }
        Ok(Self {
            labels: s.match_labels.clone().unwrap_or_default(),
            expressions,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, values)| {
                let v = labels.get(k);
                match op {
                    Operator::In => v.is_some_and(|v| values.contains(v)),
                    Operator::NotIn => v.is_none_or(|v| !values.contains(v)),
                    Operator::Exists => v.is_some(),
                    Operator::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// A Server's port: a number, or a container port's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A `Server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFacts {
    /// RFC 3339: when two Servers claim a port, the older wins (Linkerd's
    /// rule).
    pub created: String,
    /// The Server's own labels (ServerAuthorizations select by them).
    pub labels: BTreeMap<String, String>,
    /// `None` for an ExternalWorkload Server: no pod is selected.
    pub pods: Option<Selector>,
    pub port: PortRef,
    pub protocol: ProxyProtocol,
    pub access: InboundPolicy,
}

pub fn server(
    spec: &policy::server::ServerSpec,
    labels: BTreeMap<String, String>,
    created: String,
) -> Result<ServerFacts, Refused> {
    let port = match &spec.port {
        IntOrString::Int(n) => match u16::try_from(*n) {
            Ok(p) if p > 0 => PortRef::Number(p),
            _ => return refuse(format!("port {n} is not a port number (1-65535)")),
        },
        IntOrString::String(s) if s.is_empty() => return refuse("an empty port name"),
        IntOrString::String(s) => PortRef::Name(s.clone()),
    };
    let pods = match (&spec.pod_selector, &spec.external_workload_selector) {
        (Some(s), _) => Some(Selector::from_k8s(s)?),
        (None, Some(_)) => None,
        (None, None) => return refuse("neither podSelector nor externalWorkloadSelector"),
    };
    Ok(ServerFacts {
        created,
        labels,
        pods,
        port,
        protocol: spec.proxy_protocol,
        access: match spec.access_policy {
            AccessPolicy::Deny => InboundPolicy::Deny,
            AccessPolicy::Audit => InboundPolicy::Audit,
            AccessPolicy::AllAuthenticated => InboundPolicy::AllAuthenticated,
            AccessPolicy::AllUnauthenticated => InboundPolicy::AllUnauthenticated,
            AccessPolicy::ClusterAuthenticated => InboundPolicy::ClusterAuthenticated,
            AccessPolicy::ClusterUnauthenticated => InboundPolicy::ClusterUnauthenticated,
        },
    })
}

/// Which of the two HTTPRoute kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteGroup {
    Policy,
    Gateway,
}

impl RouteGroup {
    pub fn group(self) -> &'static str {
        match self {
            RouteGroup::Policy => POLICY_GROUP,
            RouteGroup::Gateway => GATEWAY_GROUP,
        }
    }
}

/// What an AuthorizationPolicy applies to (in its own namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthzTarget {
    Server(String),
    Namespace,
    Route(RouteGroup, String),
}

/// An authentication an AuthorizationPolicy requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthnRef {
    MeshTls(ObjKey),
    Network(ObjKey),
    ServiceAccount(ObjKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthzPolicyFacts {
    pub target: AuthzTarget,
    pub authns: Vec<AuthnRef>,
}

fn namespaced(r: &NamespacedTargetRef, ns: &str) -> ObjKey {
    ObjKey::new(r.namespace.as_deref().unwrap_or(ns), &r.name)
}

pub fn authorization_policy(
    spec: &authn::AuthorizationPolicySpec,
    ns: &str,
) -> Result<AuthzPolicyFacts, Refused> {
    let t = &spec.target_ref;
    let g = t.group.as_deref();
    let target = if refers_to(g, &t.kind, POLICY_GROUP, "Server") {
        AuthzTarget::Server(t.name.clone())
    } else if refers_to(g, &t.kind, "core", "Namespace") {
        if t.name != ns {
            return refuse(format!(
                "targets namespace {} from namespace {ns} (only its own)",
                t.name
            ));
        }
        AuthzTarget::Namespace
    } else if refers_to(g, &t.kind, POLICY_GROUP, "HTTPRoute") {
        AuthzTarget::Route(RouteGroup::Policy, t.name.clone())
    } else if refers_to(g, &t.kind, GATEWAY_GROUP, "HTTPRoute") {
        AuthzTarget::Route(RouteGroup::Gateway, t.name.clone())
    } else {
        return refuse(format!(
            "targetRef {}/{} is not a Server, an HTTPRoute or a Namespace",
            g.unwrap_or("core"),
            t.kind
        ));
    };
    let mut authns = Vec::new();
    for r in &spec.required_authentication_refs {
        let g = r.group.as_deref();
        authns.push(
            if refers_to(g, &r.kind, POLICY_GROUP, "MeshTLSAuthentication") {
                AuthnRef::MeshTls(namespaced(r, ns))
            } else if refers_to(g, &r.kind, POLICY_GROUP, "NetworkAuthentication") {
                AuthnRef::Network(namespaced(r, ns))
            } else if refers_to(g, &r.kind, "core", "ServiceAccount") {
                AuthnRef::ServiceAccount(namespaced(r, ns))
            } else {
                return refuse(format!(
                    "requiredAuthenticationRefs: {}/{} is not an authentication",
                    g.unwrap_or("core"),
                    r.kind
                ));
            },
        );
    }
    let count = |f: fn(&AuthnRef) -> bool| authns.iter().filter(|a| f(a)).count();
    if count(|a| !matches!(a, AuthnRef::Network(_))) > 1 {
        return refuse("more than one MeshTLSAuthentication or ServiceAccount");
    }
    if count(|a| matches!(a, AuthnRef::Network(_))) > 1 {
        return refuse("more than one NetworkAuthentication");
    }
    if authns.is_empty() {
        return refuse("no requiredAuthenticationRefs");
    }
    Ok(AuthzPolicyFacts { target, authns })
}

/// A client identity rule: one identity, or every identity ending in a
/// suffix (`*` is every identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMatch {
    Exact(String),
    Suffix(Vec<String>),
}

impl IdentityMatch {
    pub fn parse(s: &str) -> Result<Self, Refused> {
        if s == "*" {
            return Ok(Self::Suffix(Vec::new()));
        }
        if let Some(rest) = s.strip_prefix("*.") {
            return Ok(Self::Suffix(rest.split('.').map(str::to_string).collect()));
        }
        if s.is_empty() || s.contains('*') {
            return refuse(format!("identity {s:?} is not a name, `*` or `*.<suffix>`"));
        }
        Ok(Self::Exact(s.to_string()))
    }
}

/// A `MeshTLSAuthentication`: identities, and ServiceAccounts whose
/// identities the answer spells with the mesh's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshTlsFacts {
    pub identities: Vec<IdentityMatch>,
    pub service_accounts: Vec<ObjKey>,
}

pub fn mesh_tls_authentication(
    spec: &authn::MeshTLSAuthenticationSpec,
    ns: &str,
) -> Result<MeshTlsFacts, Refused> {
    let identities = spec
        .identities
        .iter()
        .flatten()
        .map(|i| IdentityMatch::parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut service_accounts = Vec::new();
    for r in spec.identity_refs.iter().flatten() {
        if !refers_to(r.group.as_deref(), &r.kind, "core", "ServiceAccount") {
            return refuse(format!("identityRefs: {} is not a ServiceAccount", r.kind));
        }
        service_accounts.push(namespaced(r, ns));
    }
    if identities.is_empty() && service_accounts.is_empty() {
        return refuse("neither identities nor identityRefs");
    }
    Ok(MeshTlsFacts {
        identities,
        service_accounts,
    })
}

/// A network and what is carved out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkMatch {
    pub net: IpNet,
    pub except: Vec<IpNet>,
}

/// A CIDR, or one address as its host network.
fn cidr(s: &str) -> Result<IpNet, Refused> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .or_else(|_| {
            refuse(format!(
                "{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"
            ))
        })
}

pub fn networks(nets: &[authn::Network]) -> Result<Vec<NetworkMatch>, Refused> {
    nets.iter()
        .map(|n| {
            Ok(NetworkMatch {
                net: cidr(&n.cidr)?,
                except: n
                    .except
                    .iter()
                    .flatten()
                    .map(|e| cidr(e))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

pub fn network_authentication(
    spec: &authn::NetworkAuthenticationSpec,
) -> Result<Vec<NetworkMatch>, Refused> {
    if spec.networks.is_empty() {
        return refuse("no networks");
    }
    networks(&spec.networks)
}

/// How a client must authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuthn {
    Unauthenticated,
    /// TLS, with or without a mesh identity.
    TlsUnauthenticated,
    TlsAuthenticated(MeshTlsFacts),
}

/// Which Servers a ServerAuthorization applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSelector {
    Name(String),
    Labels(Selector),
}

/// A `ServerAuthorization`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAuthzFacts {
    pub server: ServerSelector,
    /// `None`: the cluster's networks.
    pub networks: Option<Vec<NetworkMatch>>,
    pub authn: ClientAuthn,
}

pub fn server_authorization(
    spec: &authn::ServerAuthorizationSpec,
    ns: &str,
) -> Result<ServerAuthzFacts, Refused> {
    let server = match (&spec.server.name, &spec.server.selector) {
        (Some(n), None) => ServerSelector::Name(n.clone()),
        (None, Some(s)) => ServerSelector::Labels(Selector::from_k8s(s)?),
        _ => return refuse("server: exactly one of name and selector"),
    };
    let c = &spec.client;
    let authn = if c.unauthenticated {
        ClientAuthn::Unauthenticated
    } else if let Some(m) = &c.mesh_tls {
        if m.unauthenticated_tls {
            ClientAuthn::TlsUnauthenticated
        } else {
            let identities = m
                .identities
                .iter()
                .flatten()
                .map(|i| IdentityMatch::parse(i))
                .collect::<Result<Vec<_>, _>>()?;
            let service_accounts: Vec<ObjKey> = m
                .service_accounts
                .iter()
                .flatten()
                .map(|sa| ObjKey::new(sa.namespace.as_deref().unwrap_or(ns), &sa.name))
                .collect();
            if identities.is_empty() && service_accounts.is_empty() {
                return refuse("meshTLS authorizes no client");
            }
            ClientAuthn::TlsAuthenticated(MeshTlsFacts {
                identities,
                service_accounts,
            })
        }
    } else {
        return refuse("client: neither unauthenticated nor meshTLS");
    };
    Ok(ServerAuthzFacts {
        server,
        networks: c.networks.as_deref().map(networks).transpose()?,
        authn,
    })
}

/// What a route attaches to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteParent {
    /// A Server in the route's namespace (inbound).
    Server(String),
    /// A Service, on one port or all (outbound).
    Service(ObjKey, Option<u16>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<(String, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
    pub method: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMods {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    Full(String),
    Prefix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub path: Option<PathRewrite>,
    pub port: Option<u16>,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    RequestHeaders(HeaderMods),
    ResponseHeaders(HeaderMods),
    Redirect(Redirect),
}

/// A route's backend: a Service (the route's namespace when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub service: ObjKey,
    pub port: Option<u16>,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// Empty: every request.
    pub matches: Vec<RouteMatch>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    pub request_timeout: Option<Duration>,
    pub backend_timeout: Option<Duration>,
}

/// An `HTTPRoute` of either group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFacts {
    pub created: String,
    pub parents: Vec<RouteParent>,
    pub hostnames: Vec<String>,
    pub rules: Vec<RouteRule>,
    /// Linkerd's `retry.linkerd.io/*` and `timeout.linkerd.io/*`
    /// annotations on the route.
    pub linkerd: RouteAnnotations,
}

fn value_match(kind: Option<&str>, value: &str) -> Result<ValueMatch, Refused> {
    match kind.unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(value.to_string())),
        "RegularExpression" => Ok(ValueMatch::Regex(value.to_string())),
        other => refuse(format!("match type {other:?}")),
    }
}

fn route_match(m: &route::HttpRouteMatch) -> Result<RouteMatch, Refused> {
    let path = match &m.path {
        None => None,
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_string());
            Some(match p.kind.as_deref().unwrap_or("PathPrefix") {
                "Exact" => PathMatch::Exact(value),
                "PathPrefix" => PathMatch::Prefix(value),
                "RegularExpression" => PathMatch::Regex(value),
                other => return refuse(format!("path match type {other:?}")),
            })
        }
    };
    let pairs = |v: &Option<Vec<route::HttpValueMatch>>| {
        v.iter()
            .flatten()
            .map(|h| Ok((h.name.clone(), value_match(h.kind.as_deref(), &h.value)?)))
            .collect::<Result<Vec<_>, Refused>>()
    };
    Ok(RouteMatch {
        path,
        headers: pairs(&m.headers)?,
        query: pairs(&m.query_params)?,
        method: m.method.clone(),
    })
}

fn header_mods(m: &route::HeaderModifier) -> HeaderMods {
    let pairs = |v: &Option<Vec<route::HeaderValue>>| {
        v.iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    };
    HeaderMods {
        set: pairs(&m.set),
        add: pairs(&m.add),
        remove: m.remove.clone().unwrap_or_default(),
    }
}

fn filter(f: &route::HttpRouteFilter) -> Result<Filter, Refused> {
    let missing = || Refused(format!("filter {} without its settings", f.kind));
    Ok(match f.kind.as_str() {
        "RequestHeaderModifier" => Filter::RequestHeaders(header_mods(
            f.request_header_modifier.as_ref().ok_or_else(missing)?,
        )),
        "ResponseHeaderModifier" => Filter::ResponseHeaders(header_mods(
            f.response_header_modifier.as_ref().ok_or_else(missing)?,
        )),
        "RequestRedirect" => {
            let r = f.request_redirect.as_ref().ok_or_else(missing)?;
            let path = match &r.path {
                None => None,
                Some(p) => Some(
                    match (
                        p.kind.as_str(),
                        &p.replace_full_path,
                        &p.replace_prefix_match,
                    ) {
                        ("ReplaceFullPath", Some(v), _) => PathRewrite::Full(v.clone()),
                        ("ReplacePrefixMatch", _, Some(v)) => PathRewrite::Prefix(v.clone()),
                        (k, _, _) => {
                            return refuse(format!("redirect path {k:?} without its value"));
                        }
                    },
                ),
            };
            let status = r.status_code.unwrap_or(302);
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return refuse(format!("redirect status {status}"));
            }
            Filter::Redirect(Redirect {
                scheme: r.scheme.clone(),
                host: r.hostname.clone(),
                path,
                port: r.port,
                status,
            })
        }
        other => return refuse(format!("filter {other} is not supported by kinject")),
    })
}

fn backend(b: &route::HttpBackendRef, ns: &str) -> Result<Backend, Refused> {
    if !refers_to(
        b.group.as_deref(),
        b.kind.as_deref().unwrap_or("Service"),
        "core",
        "Service",
    ) {
        return refuse(format!(
            "backendRef {} is not a Service",
            b.kind.as_deref().unwrap_or("")
        ));
    }
    Ok(Backend {
        service: ObjKey::new(b.namespace.as_deref().unwrap_or(ns), &b.name),
        port: b.port,
        weight: b.weight.unwrap_or(1),
    })
}

fn parent(p: &route::ParentReference, ns: &str) -> Option<RouteParent> {
    let g = p.group.as_deref().or(Some(GATEWAY_GROUP));
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    if refers_to(g, kind, POLICY_GROUP, "Server") {
        // A Server parent is always in the route's namespace.
        (p.namespace.as_deref().is_none_or(|n| n == ns))
            .then(|| RouteParent::Server(p.name.clone()))
    } else if refers_to(g, kind, "core", "Service") {
        Some(RouteParent::Service(
            ObjKey::new(p.namespace.as_deref().unwrap_or(ns), &p.name),
            p.port,
        ))
    } else {
        // A Gateway's, or another controller's: not ours.
        None
    }
}

pub fn http_route(
    spec: &route::HttpRouteSpec,
    ns: &str,
    created: String,
) -> Result<RouteFacts, Refused> {
    let mut rules = Vec::new();
    for r in spec.rules.iter().flatten() {
        let timeout = |t: Option<&String>| {
            t.map(|t| crate::route_annotations::gateway_duration(t))
                .transpose()
        };
        rules.push(RouteRule {
            matches: r
                .matches
                .iter()
                .flatten()
                .map(route_match)
                .collect::<Result<_, _>>()?,
            filters: r
                .filters
                .iter()
                .flatten()
                .map(filter)
                .collect::<Result<_, _>>()?,
            backends: r
                .backend_refs
                .iter()
                .flatten()
                .map(|b| backend(b, ns))
                .collect::<Result<_, _>>()?,
            request_timeout: timeout(r.timeouts.as_ref().and_then(|t| t.request.as_ref()))?,
            backend_timeout: timeout(r.timeouts.as_ref().and_then(|t| t.backend_request.as_ref()))?,
        });
    }
    Ok(RouteFacts {
        created,
        parents: spec
            .parent_refs
            .iter()
            .flatten()
            .filter_map(|p| parent(p, ns))
            .collect(),
        hostnames: spec.hostnames.clone().unwrap_or_default(),
        rules,
        linkerd: RouteAnnotations::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_and_their_operators() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }))
        .expect("selector");
        let s = Selector::from_k8s(&s).expect("valid");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
        assert!(
            Selector::default().matches(&labels(&[])),
            "empty selects all"
        );
        let bad: LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "a", "operator": "Near"}],
        }))
        .expect("selector");
        assert!(Selector::from_k8s(&bad).is_err());
    }

    #[test]
    fn identities_and_suffixes() {
        assert_eq!(IdentityMatch::parse("*"), Ok(IdentityMatch::Suffix(vec![])));
        assert_eq!(
            IdentityMatch::parse("*.apps.serviceaccount.identity.linkerd.cluster.local")
                .map(|m| matches!(m, IdentityMatch::Suffix(p) if p.len() == 6)),
            Ok(true)
        );
        assert!(IdentityMatch::parse("web.*.svc").is_err());
        assert!(IdentityMatch::parse("").is_err());
    }

    #[test]
    fn every_other_bad_object_is_refused_with_why() {
        let srv = |v: serde_json::Value| {
            server(
                &serde_json::from_value(v).expect("spec"),
                BTreeMap::new(),
                String::new(),
            )
        };
        let why = |r: Result<ServerFacts, Refused>| r.err().map(|e| e.0).unwrap_or_default();
        assert!(why(srv(json!({"podSelector": {}, "port": 0}))).contains("not a port number"));
        assert!(why(srv(json!({"podSelector": {}, "port": 70000}))).contains("not a port number"));
        assert!(why(srv(json!({"podSelector": {}, "port": ""}))).contains("empty port name"));
        assert!(why(srv(json!({"port": 80}))).contains("neither podSelector"));
        assert!(
            srv(json!({"externalWorkloadSelector": {}, "port": 80}))
                .is_ok_and(|s| s.pods.is_none()),
            "an ExternalWorkload Server selects no pod"
        );

        let saz = |v: serde_json::Value| {
            server_authorization(&serde_json::from_value(v).expect("spec"), "apps")
        };
        let any = json!({"unauthenticated": true});
        assert!(saz(json!({"server": {}, "client": any})).is_err());
        assert!(
            saz(json!({"server": {"name": "a", "selector": {}}, "client": any})).is_err(),
            "name and selector"
        );
        assert!(saz(json!({"server": {"name": "a"}, "client": {}})).is_err());
        assert!(saz(json!({"server": {"name": "a"}, "client": {"meshTLS": {}}})).is_err());
        assert!(
            saz(json!({"server": {"name": "a"},
                       "client": {"unauthenticated": true, "networks": [{"cidr": "nope"}]}}))
            .is_err()
        );

        let mtls = |v: serde_json::Value| {
            mesh_tls_authentication(&serde_json::from_value(v).expect("spec"), "apps")
        };
        assert!(mtls(json!({})).is_err(), "no identities at all");
        assert!(mtls(json!({"identityRefs": [{"kind": "Deployment", "name": "web"}]})).is_err());
        assert!(
            network_authentication(&serde_json::from_value(json!({"networks": []})).expect("spec"))
                .is_err()
        );
        assert!(
            authorization_policy(
                &serde_json::from_value(json!({
                    "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"},
                    "requiredAuthenticationRefs": [],
                }))
                .expect("spec"),
                "apps"
            )
            .is_err(),
            "no authentication"
        );

        let route = |rule: serde_json::Value| {
            http_route(
                &serde_json::from_value(json!({"rules": [rule]})).expect("spec"),
                "apps",
                String::new(),
            )
        };
        for bad in [
            json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}]}),
            json!({"filters": [{"type": "RequestRedirect",
                                "requestRedirect": {"path": {"type": "ReplaceFullPath"}}}]}),
            json!({"filters": [{"type": "RequestHeaderModifier"}]}),
            json!({"matches": [{"path": {"type": "Glob", "value": "/a"}}]}),
            json!({"matches": [{"headers": [{"type": "Prefix", "name": "a", "value": "b"}]}]}),
            json!({"backendRefs": [{"group": "apps", "kind": "Deployment", "name": "web"}]}),
            json!({"timeouts": {"backendRequest": "fast"}}),
        ] {
            assert!(route(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_malformed_cidr_is_refused() {
        let spec: authn::NetworkAuthenticationSpec = serde_json::from_value(json!({
            "networks": [{"cidr": "10.0.0.0/33"}],
        }))
        .expect("spec");
        assert!(network_authentication(&spec).is_err());
        let spec: authn::NetworkAuthenticationSpec = serde_json::from_value(json!({
            "networks": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}, {"cidr": "192.0.2.1"}],
        }))
        .expect("spec");
        let nets = network_authentication(&spec).expect("valid");
        assert_eq!(nets[0].except.len(), 1);
        assert_eq!(nets[1].net.to_string(), "192.0.2.1/32");
    }

    #[test]
    fn authorization_policies_need_one_identity_rule_and_a_known_target() {
        let p = |v: serde_json::Value| {
            authorization_policy(&serde_json::from_value(v).expect("spec"), "apps")
        };
        let ok = p(json!({
            "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"},
            "requiredAuthenticationRefs": [
                {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "clients"},
                {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "lan", "namespace": "ops"},
            ],
        }))
        .expect("valid");
        assert_eq!(ok.target, AuthzTarget::Server("web".into()));
        assert_eq!(ok.authns[1], AuthnRef::Network(ObjKey::new("ops", "lan")));
        assert!(
            p(json!({
                "targetRef": {"kind": "Namespace", "name": "other"},
                "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "a"}],
            }))
            .is_err()
        );
        assert!(
            p(json!({
                "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "web"},
                "requiredAuthenticationRefs": [
                    {"kind": "ServiceAccount", "name": "a"},
                    {"kind": "ServiceAccount", "name": "b"},
                ],
            }))
            .is_err()
        );
        assert!(
            p(json!({
                "targetRef": {"group": "apps", "kind": "Deployment", "name": "web"},
                "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "a"}],
            }))
            .is_err()
        );
    }

    #[test]
    fn routes_default_and_refuse_what_they_cannot_do() {
        let spec: route::HttpRouteSpec = serde_json::from_value(json!({
            "parentRefs": [
                {"group": "core", "kind": "Service", "name": "web", "port": 80},
                {"name": "some-gateway"},
            ],
            "rules": [{
                "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                "backendRefs": [{"name": "web-v2", "port": 80, "weight": 10}],
                "timeouts": {"request": "2s"},
            }],
        }))
        .expect("spec");
        let r = http_route(&spec, "apps", String::new()).expect("valid");
        assert_eq!(
            r.parents,
            vec![RouteParent::Service(ObjKey::new("apps", "web"), Some(80))],
            "a Gateway parent is not kinject's"
        );
        assert_eq!(r.rules[0].backends[0].weight, 10);
        assert_eq!(r.rules[0].request_timeout, Some(Duration::from_secs(2)));
        let mirror: route::HttpRouteSpec = serde_json::from_value(json!({
            "rules": [{"filters": [{"type": "RequestMirror"}]}],
        }))
        .expect("spec");
        assert!(http_route(&mirror, "apps", String::new()).is_err());
    }

    mod fuzz {
        //! The decoders never panic, whatever the API server stores: any
        //! JSON is read into a spec or refused, and any spec is converted
        //! into facts or refused.
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9*./:_-]{0,24}",
                Just("10.0.0.0/33".to_string()),
                Just("*.apps.serviceaccount.identity.linkerd.cluster.local".to_string()),
                Just("1h30m10s500ms".to_string()),
                Just("PathPrefix".to_string()),
                Just("RegularExpression".to_string()),
                Just("ServiceAccount".to_string()),
                Just("policy.linkerd.io".to_string()),
            ]
        }

        fn json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                text().prop_map(serde_json::Value::from),
            ];
            let keys = prop_oneof![
                Just("port"),
                Just("podSelector"),
                Just("matchLabels"),
                Just("matchExpressions"),
                Just("key"),
                Just("operator"),
                Just("values"),
                Just("proxyProtocol"),
                Just("accessPolicy"),
                Just("targetRef"),
                Just("requiredAuthenticationRefs"),
                Just("group"),
                Just("kind"),
                Just("name"),
                Just("namespace"),
                Just("identities"),
                Just("identityRefs"),
                Just("networks"),
                Just("cidr"),
                Just("except"),
                Just("server"),
                Just("client"),
                Just("meshTLS"),
                Just("unauthenticated"),
                Just("serviceAccounts"),
                Just("parentRefs"),
                Just("rules"),
                Just("matches"),
                Just("path"),
                Just("type"),
                Just("value"),
                Just("headers"),
                Just("filters"),
                Just("backendRefs"),
                Just("weight"),
                Just("timeouts"),
                Just("request"),
                Just("requestRedirect"),
                Just("statusCode"),
                Just("selector"),
            ];
            leaf.prop_recursive(5, 64, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                        serde_json::Value::Object(
                            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                        )
                    }),
                ]
            })
        }

        fn decode<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
            serde_json::from_value(v.clone()).ok()
        }

        proptest! {
            #[test]
            fn any_object_is_facts_or_refused(v in json()) {
                if let Some(s) = decode::<policy::server::ServerSpec>(&v) {
                    let _ = server(&s, BTreeMap::new(), String::new());
                }
                if let Some(s) = decode::<authn::AuthorizationPolicySpec>(&v) {
                    let _ = authorization_policy(&s, "apps");
                }
                if let Some(s) = decode::<authn::MeshTLSAuthenticationSpec>(&v) {
                    let _ = mesh_tls_authentication(&s, "apps");
                }
                if let Some(s) = decode::<authn::NetworkAuthenticationSpec>(&v) {
                    let _ = network_authentication(&s);
                }
                if let Some(s) = decode::<authn::ServerAuthorizationSpec>(&v) {
                    let _ = server_authorization(&s, "apps");
                }
                if let Some(s) = decode::<route::HttpRouteSpec>(&v) {
                    let _ = http_route(&s, "apps", String::new());
                }
            }

            #[test]
            fn any_text_is_a_value_or_refused(t in text(), u in "\\PC{0,16}") {
                let _ = crate::route_annotations::gateway_duration(&t);
                let _ = crate::route_annotations::gateway_duration(&u);
                let _ = IdentityMatch::parse(&u);
                let _ = cidr(&t);
            }
        }
    }
}
