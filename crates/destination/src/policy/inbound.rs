//! Inbound policy for a port that a `Server` selects: the Server's protocol,
//! the authorizations that apply to it (ServerAuthorizations,
//! AuthorizationPolicies targeting the Server or its namespace, then its
//! `accessPolicy`), and its HTTPRoutes with their own authorizations.
//!
//! Fail closed: an AuthorizationPolicy whose authentications are refused or
//! missing grants nothing (and is logged by whoever refused them); the
//! Server then applies with what remains.

use std::collections::HashMap;

use linkerd2_proxy_api::inbound as ib;
use linkerd2_proxy_api::meta;

use super::{PolicyConfig, all_networks, authorizations, http, networks, unauthenticated};
use crate::index::PodView;
use crate::model::{ObjKey, PodInfo};
use crate::policy_index::{NamespacePolicy, PolicySet};
use crate::policy_model::{
    AuthnRef, AuthzPolicyFacts, AuthzTarget, ClientAuthn, IdentityMatch, MeshTlsFacts,
    NetworkMatch, PortRef, RouteFacts, RouteGroup, RouteParent, ServerFacts, ServerSelector,
};
use kinject_k8s::policy::server::ProxyProtocol;

/// The Server that claims `port` of the pod: the oldest of those that
/// select it (then by name), as Linkerd decides.
pub fn selecting_server<'a>(
    ns: &'a NamespacePolicy,
    pod: &PodInfo,
    port: u16,
) -> Option<(&'a str, &'a ServerFacts)> {
    ns.servers
        .iter()
        .filter(|(_, s)| s.pods.as_ref().is_some_and(|sel| sel.matches(&pod.labels)))
        .filter(|(_, s)| match &s.port {
            PortRef::Number(n) => *n == port,
            PortRef::Name(name) => pod.named_ports.iter().any(|(n, p)| n == name && *p == port),
        })
        .min_by(|(an, a), (bn, b)| a.created.cmp(&b.created).then(an.cmp(bn)))
        .map(|(n, s)| (n.as_str(), &**s))
}

fn resource_meta(kind: &str, name: &str) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: kinject_k8s::policy::POLICY_GROUP.into(),
            kind: kind.into(),
            name: name.into(),
            ..Default::default()
        })),
    })
}

fn ib_networks(nets: &[NetworkMatch]) -> Vec<ib::Network> {
    nets.iter()
        .map(|n| ib::Network {
            net: Some(n.net.into()),
            except: n.except.iter().map(|e| (*e).into()).collect(),
        })
        .collect()
}

fn mesh_tls(ids: &MeshTlsFacts, cfg: &PolicyConfig) -> ib::Authn {
    use ib::authn::permit_mesh_tls::{Clients, PermitClientIdentities};
    let mut identities = Vec::new();
    let mut suffixes = Vec::new();
    for m in &ids.identities {
        match m {
            IdentityMatch::Exact(name) => identities.push(ib::Identity { name: name.clone() }),
            IdentityMatch::Suffix(parts) => suffixes.push(ib::IdentitySuffix {
                parts: parts.clone(),
            }),
        }
    }
    identities.extend(ids.service_accounts.iter().map(|sa| ib::Identity {
        name: kinject_mesh::names::identity(
            &sa.name,
            &sa.namespace,
            &cfg.control_namespace,
            &cfg.trust_domain,
        ),
    }));
    ib::Authn {
        permit: Some(ib::authn::Permit::MeshTls(ib::authn::PermitMeshTls {
            clients: Some(Clients::Identities(PermitClientIdentities {
                identities,
                suffixes,
            })),
        })),
    }
}

/// An AuthorizationPolicy as the proxy's authorization, or `None` when an
/// authentication it requires is missing or was refused.
fn policy_authz(
    name: &str,
    p: &AuthzPolicyFacts,
    set: &PolicySet,
    cfg: &PolicyConfig,
) -> Option<ib::Authz> {
    let mut authn = None;
    let mut nets = None;
    for r in &p.authns {
        match r {
            AuthnRef::MeshTls(key) => authn = Some(mesh_tls(set.mesh_tls(key)?, cfg)),
            AuthnRef::ServiceAccount(sa) => {
                authn = Some(mesh_tls(
                    &MeshTlsFacts {
                        identities: Vec::new(),
                        service_accounts: vec![sa.clone()],
                    },
                    cfg,
                ))
            }
            AuthnRef::Network(key) => nets = Some(set.network(key)?),
        }
    }
    Some(ib::Authz {
        networks: match nets {
            Some(n) => ib_networks(n),
            None => networks(&all_networks()),
        },
        authentication: Some(authn.unwrap_or_else(unauthenticated)),
        labels: HashMap::from([
            (
                "group".to_string(),
                kinject_k8s::policy::POLICY_GROUP.to_string(),
            ),
            ("kind".to_string(), "authorizationpolicy".to_string()),
            ("name".to_string(), name.to_string()),
        ]),
        metadata: resource_meta("authorizationpolicy", name),
    })
}

fn server_authz(
    name: &str,
    saz: &crate::policy_model::ServerAuthzFacts,
    cfg: &PolicyConfig,
) -> ib::Authz {
    use ib::authn::permit_mesh_tls::Clients;
    let authentication = match &saz.authn {
        ClientAuthn::Unauthenticated => unauthenticated(),
        ClientAuthn::TlsUnauthenticated => ib::Authn {
            permit: Some(ib::authn::Permit::MeshTls(ib::authn::PermitMeshTls {
                clients: Some(Clients::Unauthenticated(
                    ib::authn::PermitUnauthenticated {},
                )),
            })),
        },
        ClientAuthn::TlsAuthenticated(ids) => mesh_tls(ids, cfg),
    };
    ib::Authz {
        networks: match &saz.networks {
            Some(n) => ib_networks(n),
            None => networks(&cfg.cluster_networks),
        },
        authentication: Some(authentication),
        labels: HashMap::from([
            (
                "group".to_string(),
                kinject_k8s::policy::POLICY_GROUP.to_string(),
            ),
            ("kind".to_string(), "serverauthorization".to_string()),
            ("name".to_string(), name.to_string()),
        ]),
        metadata: resource_meta("serverauthorization", name),
    }
}

/// The authorizations of the Server itself, in a stable order.
fn server_authorizations(
    name: &str,
    server: &ServerFacts,
    ns: &NamespacePolicy,
    set: &PolicySet,
    cfg: &PolicyConfig,
) -> Vec<ib::Authz> {
    let mut out: Vec<ib::Authz> = ns
        .server_authorizations
        .iter()
        .filter(|(_, saz)| match &saz.server {
            ServerSelector::Name(n) => n == name,
            ServerSelector::Labels(sel) => sel.matches(&server.labels),
        })
        .map(|(n, saz)| server_authz(n, saz, cfg))
        .collect();
    out.extend(
        ns.authorization_policies
            .iter()
            .filter(|(_, p)| match &p.target {
                AuthzTarget::Server(s) => s == name,
                AuthzTarget::Namespace => true,
                AuthzTarget::Route(..) => false,
            })
            .filter_map(|(n, p)| policy_authz(n, p, set, cfg)),
    );
    out.extend(authorizations(server.access, cfg));
    out
}

fn inbound_route(
    group: RouteGroup,
    namespace: &str,
    name: &str,
    route: &RouteFacts,
    ns: &NamespacePolicy,
    set: &PolicySet,
    cfg: &PolicyConfig,
) -> ib::HttpRoute {
    ib::HttpRoute {
        metadata: http::route_meta(group, namespace, name),
        hosts: http::hosts(&route.hostnames),
        authorizations: ns
            .authorization_policies
            .iter()
            .filter(|(_, p)| p.target == AuthzTarget::Route(group, name.to_string()))
            .filter_map(|(n, p)| policy_authz(n, p, set, cfg))
            .collect(),
        rules: route
            .rules
            .iter()
            .map(|r| ib::http_route::Rule {
                matches: http::matches(&r.matches),
                filters: http::inbound_filters(&r.filters),
            })
            .collect(),
    }
}

/// The HTTP routes of a Server: its HTTPRoutes, else the default route;
/// then the pod's probe route (unauthenticated, exact probe paths, GET), so
/// that a Server never fails its pod's probes.
fn server_routes(
    pod_key: &ObjKey,
    name: &str,
    ns: &NamespacePolicy,
    set: &PolicySet,
    probe: Option<ib::HttpRoute>,
    cfg: &PolicyConfig,
) -> Vec<ib::HttpRoute> {
    let mut routes: Vec<ib::HttpRoute> = ns
        .routes
        .iter()
        .filter(|(_, r)| {
            r.parents
                .iter()
                .any(|p| matches!(p, RouteParent::Server(s) if s == name))
        })
        .map(|((g, n), r)| inbound_route(*g, &pod_key.namespace, n, r, ns, set, cfg))
        .collect();
    if routes.is_empty() {
        routes.push(super::default_http_route());
    }
    routes.extend(probe);
    routes
}

/// The inbound server for a port a Server claims.
pub fn explicit_server(
    view: &PodView,
    pod: &PodInfo,
    port: u16,
    name: &str,
    server: &ServerFacts,
    cfg: &PolicyConfig,
) -> ib::Server {
    let pod_key = ObjKey::new(&view.namespace, "");
    let set = &view.policy;
    let empty = NamespacePolicy::default();
    let ns = set.namespace(&view.namespace).unwrap_or(&empty);
    let probe = super::probe_route(pod, port);
    let http_routes = || server_routes(&pod_key, name, ns, set, probe.clone(), cfg);
    use ib::proxy_protocol::{Detect, Grpc, Http1, Http2, Kind, Opaque, Tls};
    let kind = match server.protocol {
        ProxyProtocol::Unknown => Kind::Detect(Detect {
            timeout: super::duration(cfg.detect_timeout),
            http_routes: http_routes(),
            http_local_rate_limit: None,
        }),
        ProxyProtocol::Http1 => Kind::Http1(Http1 {
            routes: http_routes(),
            local_rate_limit: None,
        }),
        ProxyProtocol::Http2 => Kind::Http2(Http2 {
            routes: http_routes(),
            local_rate_limit: None,
        }),
        ProxyProtocol::Grpc => Kind::Grpc(Grpc {
            routes: vec![ib::GrpcRoute {
                metadata: super::default_meta("default"),
                hosts: Vec::new(),
                authorizations: Vec::new(),
                rules: vec![ib::grpc_route::Rule::default()],
            }],
        }),
        ProxyProtocol::Opaque => Kind::Opaque(Opaque {}),
        ProxyProtocol::Tls => Kind::Tls(Tls {}),
    };
    ib::Server {
        protocol: Some(ib::ProxyProtocol { kind: Some(kind) }),
        server_ips: Vec::new(),
        authorizations: server_authorizations(name, server, ns, set, cfg),
        labels: HashMap::from([
            (
                "group".to_string(),
                kinject_k8s::policy::POLICY_GROUP.to_string(),
            ),
            ("kind".to_string(), "server".to_string()),
            ("name".to_string(), name.to_string()),
        ]),
    }
}
