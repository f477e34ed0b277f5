//! The cluster's policy objects, by namespace, as [`policy_model`] facts.
//! Plain data: the [`Index`](crate::index::Index) keeps one behind an `Arc`
//! and replaces it on every change (copy-on-write), so a stream holds a
//! consistent snapshot without a lock, and a snapshot is compared by
//! pointer.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::ObjKey;
use crate::policy_model::{
    AuthzPolicyFacts, MeshTlsFacts, NetworkMatch, Refused, RouteFacts, RouteGroup,
    ServerAuthzFacts, ServerFacts,
};

/// The policy kinds the controller reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    Server,
    ServerAuthorization,
    AuthorizationPolicy,
    MeshTlsAuthentication,
    NetworkAuthentication,
    HttpRoute(RouteGroup),
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Server,
        PolicyKind::ServerAuthorization,
        PolicyKind::AuthorizationPolicy,
        PolicyKind::MeshTlsAuthentication,
        PolicyKind::NetworkAuthentication,
        PolicyKind::HttpRoute(RouteGroup::Policy),
        PolicyKind::HttpRoute(RouteGroup::Gateway),
    ];

    /// The kind as `kubectl` names it (`servers.policy.linkerd.io`).
    pub fn resource(self) -> &'static str {
        match self {
            PolicyKind::Server => "servers.policy.linkerd.io",
            PolicyKind::ServerAuthorization => "serverauthorizations.policy.linkerd.io",
            PolicyKind::AuthorizationPolicy => "authorizationpolicies.policy.linkerd.io",
            PolicyKind::MeshTlsAuthentication => "meshtlsauthentications.policy.linkerd.io",
            PolicyKind::NetworkAuthentication => "networkauthentications.policy.linkerd.io",
            PolicyKind::HttpRoute(RouteGroup::Policy) => "httproutes.policy.linkerd.io",
            PolicyKind::HttpRoute(RouteGroup::Gateway) => "httproutes.gateway.networking.k8s.io",
        }
    }
}

/// One object's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyObject {
    Server(ServerFacts),
    ServerAuthorization(ServerAuthzFacts),
    AuthorizationPolicy(AuthzPolicyFacts),
    MeshTlsAuthentication(MeshTlsFacts),
    NetworkAuthentication(Vec<NetworkMatch>),
    HttpRoute(RouteFacts),
}

/// A namespace's policy objects, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub servers: BTreeMap<String, Arc<ServerFacts>>,
    pub server_authorizations: BTreeMap<String, Arc<ServerAuthzFacts>>,
    pub authorization_policies: BTreeMap<String, Arc<AuthzPolicyFacts>>,
    pub mesh_tls: BTreeMap<String, Arc<MeshTlsFacts>>,
    pub networks: BTreeMap<String, Arc<Vec<NetworkMatch>>>,
    pub routes: BTreeMap<(RouteGroup, String), Arc<RouteFacts>>,
}

impl NamespacePolicy {
    fn is_empty(&self) -> bool {
        *self == NamespacePolicy::default()
    }
}

/// Every namespace's policy objects, and the objects refused (with why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySet {
    namespaces: BTreeMap<String, Arc<NamespacePolicy>>,
    refused: BTreeMap<(PolicyKind, ObjKey), Refused>,
}

impl PolicySet {
    pub fn namespace(&self, ns: &str) -> Option<&NamespacePolicy> {
        self.namespaces.get(ns).map(|n| &**n)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &NamespacePolicy)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    pub fn mesh_tls(&self, key: &ObjKey) -> Option<&MeshTlsFacts> {
        self.namespace(&key.namespace)?
            .mesh_tls
            .get(&key.name)
            .map(|m| &**m)
    }

    pub fn network(&self, key: &ObjKey) -> Option<&[NetworkMatch]> {
        self.namespace(&key.namespace)?
            .networks
            .get(&key.name)
            .map(|n| n.as_slice())
    }

    /// The objects refused, with why: for logs, metrics and `check`.
    pub fn refused(&self) -> &BTreeMap<(PolicyKind, ObjKey), Refused> {
        &self.refused
    }

    /// Records an object's facts, or its refusal (which removes what the
    /// object said before). `false` if nothing changed.
    pub fn apply(
        &mut self,
        kind: PolicyKind,
        key: &ObjKey,
        facts: Result<PolicyObject, Refused>,
    ) -> bool {
        match facts {
            Ok(obj) => {
                let unrefused = self.refused.remove(&(kind, key.clone())).is_some();
                let ns = Arc::make_mut(self.namespaces.entry(key.namespace.clone()).or_default());
                let name = key.name.clone();
                let changed = match obj {
                    PolicyObject::Server(f) => put(&mut ns.servers, name, f),
                    PolicyObject::ServerAuthorization(f) => {
                        put(&mut ns.server_authorizations, name, f)
                    }
                    PolicyObject::AuthorizationPolicy(f) => {
                        put(&mut ns.authorization_policies, name, f)
                    }
                    PolicyObject::MeshTlsAuthentication(f) => put(&mut ns.mesh_tls, name, f),
                    PolicyObject::NetworkAuthentication(f) => put(&mut ns.networks, name, f),
                    PolicyObject::HttpRoute(f) => {
                        let PolicyKind::HttpRoute(g) = kind else {
                            return false;
                        };
                        put(&mut ns.routes, (g, name), f)
                    }
                };
                changed || unrefused
            }
            Err(why) => {
                let removed = self.delete(kind, key);
                let refused = self.refused.insert((kind, key.clone()), why.clone()) != Some(why);
                removed || refused
            }
        }
    }

    /// Forgets an object. `false` if it was not there.
    pub fn delete(&mut self, kind: PolicyKind, key: &ObjKey) -> bool {
        let unrefused = self.refused.remove(&(kind, key.clone())).is_some();
        let Some(ns) = self.namespaces.get_mut(&key.namespace) else {
            return unrefused;
        };
        let ns = Arc::make_mut(ns);
        let name = &key.name;
        let removed = match kind {
            PolicyKind::Server => ns.servers.remove(name).is_some(),
            PolicyKind::ServerAuthorization => ns.server_authorizations.remove(name).is_some(),
            PolicyKind::AuthorizationPolicy => ns.authorization_policies.remove(name).is_some(),
            PolicyKind::MeshTlsAuthentication => ns.mesh_tls.remove(name).is_some(),
            PolicyKind::NetworkAuthentication => ns.networks.remove(name).is_some(),
            PolicyKind::HttpRoute(g) => ns.routes.remove(&(g, name.clone())).is_some(),
        };
        if ns.is_empty() {
            self.namespaces.remove(&key.namespace);
        }
        removed || unrefused
    }

    /// Every key of one kind (refused ones included): what a relist keeps.
    pub fn keys(&self, kind: PolicyKind) -> Vec<ObjKey> {
        let mut out: Vec<ObjKey> = self
            .refused
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, key)| key.clone())
            .collect();
        for (ns, p) in &self.namespaces {
            let names: Vec<&String> = match kind {
                PolicyKind::Server => p.servers.keys().collect(),
                PolicyKind::ServerAuthorization => p.server_authorizations.keys().collect(),
                PolicyKind::AuthorizationPolicy => p.authorization_policies.keys().collect(),
                PolicyKind::MeshTlsAuthentication => p.mesh_tls.keys().collect(),
                PolicyKind::NetworkAuthentication => p.networks.keys().collect(),
                PolicyKind::HttpRoute(g) => p
                    .routes
                    .keys()
                    .filter(|(rg, _)| *rg == g)
                    .map(|(_, n)| n)
                    .collect(),
            };
            out.extend(names.into_iter().map(|n| ObjKey::new(ns, n)));
        }
        out
    }
}

impl PolicySet {
    /// What an operator should fix, one line each: refused objects (and
    /// why), Servers that select no pod, and references to objects that do
    /// not exist (which then grant nothing). `pods`: each meshed pod's
    /// namespace and labels.
    pub fn problems(&self, pods: &[(String, BTreeMap<String, String>)]) -> Vec<String> {
        use crate::policy_model::{AuthnRef, AuthzTarget, RouteParent, ServerSelector};
        let mut out: Vec<String> = self
            .refused
            .iter()
            .map(|((kind, key), why)| format!("{} {key} is refused: {why}", kind.resource()))
            .collect();
        let refused = |kind: PolicyKind, ns: &str, name: &str| {
            self.refused.contains_key(&(kind, ObjKey::new(ns, name)))
        };
        for (ns, p) in self.namespaces() {
            for (name, s) in &p.servers {
                let selects = s.pods.as_ref().is_some_and(|sel| {
                    pods.iter()
                        .any(|(pns, labels)| pns == ns && sel.matches(labels))
                });
                if !selects {
                    out.push(format!(
                        "Server {ns}/{name}: its podSelector matches no meshed pod"
                    ));
                }
            }
            let server_missing = |name: &str| {
                !p.servers.contains_key(name) && !refused(PolicyKind::Server, ns, name)
            };
            for (name, a) in &p.authorization_policies {
                let what = format!("AuthorizationPolicy {ns}/{name}");
                match &a.target {
                    AuthzTarget::Server(s) if server_missing(s) => {
                        out.push(format!("{what}: targets Server {s}, which does not exist"))
                    }
                    AuthzTarget::Route(g, r)
                        if !p.routes.contains_key(&(*g, r.clone()))
                            && !refused(PolicyKind::HttpRoute(*g), ns, r) =>
                    {
                        out.push(format!(
                            "{what}: targets HTTPRoute {r}, which does not exist"
                        ))
                    }
                    _ => {}
                }
                for r in &a.authns {
                    let (kind, key, found) = match r {
                        AuthnRef::MeshTls(k) => {
                            ("MeshTLSAuthentication", k, self.mesh_tls(k).is_some())
                        }
                        AuthnRef::Network(k) => {
                            ("NetworkAuthentication", k, self.network(k).is_some())
                        }
                        AuthnRef::ServiceAccount(_) => continue,
                    };
                    if !found {
                        out.push(format!(
                            "{what}: requires {kind} {key}, which does not exist or is refused: it grants nothing"
                        ));
                    }
                }
            }
            for (name, saz) in &p.server_authorizations {
                if let ServerSelector::Name(s) = &saz.server
                    && server_missing(s)
                {
                    out.push(format!(
                        "ServerAuthorization {ns}/{name}: names Server {s}, which does not exist"
                    ));
                }
            }
            for ((_, name), r) in &p.routes {
                for parent in &r.parents {
                    if let RouteParent::Server(s) = parent
                        && server_missing(s)
                    {
                        out.push(format!(
                            "HTTPRoute {ns}/{name}: its parent Server {s} does not exist"
                        ));
                    }
                }
            }
        }
        out
    }
}

fn put<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, Arc<V>>, key: K, value: V) -> bool {
    if map.get(&key).is_some_and(|v| **v == value) {
        return false;
    }
    map.insert(key, Arc::new(value));
    true
}

/// A snapshot of the policy set, as views carry it: equal when it is the
/// same snapshot (a pointer compare, not a walk of every object).
#[derive(Clone, Debug, Default)]
pub struct PolicySnapshot(pub Arc<PolicySet>);

impl PartialEq for PolicySnapshot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for PolicySnapshot {
    type Target = PolicySet;
    fn deref(&self) -> &PolicySet {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_model::NetworkMatch;

    fn net(s: &str) -> PolicyObject {
        PolicyObject::NetworkAuthentication(vec![NetworkMatch {
            net: s.parse().expect("net"),
            except: vec![],
        }])
    }

    #[test]
    fn problems_name_what_to_fix() {
        use crate::policy_model::{AuthnRef, AuthzPolicyFacts, AuthzTarget};
        let mut set = PolicySet::default();
        set.apply(
            PolicyKind::AuthorizationPolicy,
            &ObjKey::new("apps", "p"),
            Ok(PolicyObject::AuthorizationPolicy(AuthzPolicyFacts {
                target: AuthzTarget::Server("gone".into()),
                authns: vec![AuthnRef::Network(ObjKey::new("apps", "lan"))],
            })),
        );
        set.apply(
            PolicyKind::NetworkAuthentication,
            &ObjKey::new("apps", "lan"),
            Err(Refused("\"10.0.0.0/33\" is not a CIDR".into())),
        );
        let p = set.problems(&[]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("networkauthentications.policy.linkerd.io apps/lan is refused"));
        assert!(p[1].contains("targets Server gone, which does not exist"));
        assert!(p[2].contains("requires NetworkAuthentication apps/lan"));
    }

    #[test]
    fn apply_refuse_and_delete() {
        let mut set = PolicySet::default();
        let key = ObjKey::new("apps", "lan");
        let k = PolicyKind::NetworkAuthentication;
        assert!(set.apply(k, &key, Ok(net("10.0.0.0/8"))));
        assert!(!set.apply(k, &key, Ok(net("10.0.0.0/8"))), "no change");
        assert!(set.network(&key).is_some());
        assert!(set.apply(k, &key, Err(Refused("bad".into()))));
        assert!(
            set.network(&key).is_none(),
            "a refused object grants nothing"
        );
        assert_eq!(set.keys(k), vec![key.clone()]);
        assert!(set.delete(k, &key));
        assert!(set.keys(k).is_empty());
        assert!(set.namespace("apps").is_none(), "empty namespaces go");
    }
}
