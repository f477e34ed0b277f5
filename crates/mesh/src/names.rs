//! The names of the mesh contract. A proxy dials the control plane at
//! Service addresses the injector writes into its environment, and checks
//! the servers' certificates against identity names the injector also
//! writes; identity issues exactly those names, destination announces them
//! for endpoints, and install creates the Services. Every one of those
//! strings is formatted here.

/// The mesh identity of a ServiceAccount, as Certify issues it, as the proxy
/// names itself (`LINKERD2_PROXY_IDENTITY_LOCAL_NAME`), and as destination
/// announces an endpoint's: `SA.NS.serviceaccount.identity.CONTROL_NS.TD`.
pub fn identity(
    service_account: &str,
    namespace: &str,
    control_namespace: &str,
    trust_domain: &str,
) -> String {
    format!(
        "{service_account}.{namespace}.serviceaccount.identity.{control_namespace}.{trust_domain}"
    )
}

/// The trust domain: the configured one, or the cluster domain when none is
/// configured (Linkerd's rule).
pub fn trust_domain<'a>(configured: &'a str, cluster_domain: &'a str) -> &'a str {
    if configured.is_empty() {
        cluster_domain
    } else {
        configured
    }
}

/// A control-plane component: its Deployment, ServiceAccount and (for the
/// servers proxies talk to) the identity its certificate carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: &'static str,
}

impl Component {
    /// Its identity: the name of its ServiceAccount in the control plane's
    /// namespace.
    pub fn identity(self, control_namespace: &str, trust_domain: &str) -> String {
        identity(
            self.name,
            control_namespace,
            control_namespace,
            trust_domain,
        )
    }
}

pub const IDENTITY: Component = Component {
    name: "linkerd-identity",
};
pub const DESTINATION: Component = Component {
    name: "linkerd-destination",
};
pub const PROXY_INJECTOR: Component = Component {
    name: "linkerd-proxy-injector",
};

/// A Service of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    /// The container port it targets, by name (the Service's own port is
    /// named `grpc`).
    pub target_port: &'static str,
    /// Headless: its DNS name answers with the ready pods, which the proxy
    /// balances over itself.
    pub headless: bool,
    /// The component whose pods it selects.
    pub component: Component,
}

impl Service {
    /// The address a proxy dials: `NAME.NS.svc.CLUSTER_DOMAIN.:PORT` (fully
    /// qualified, so no search domain is tried).
    pub fn address(self, control_namespace: &str, cluster_domain: &str) -> String {
        format!(
            "{}.{control_namespace}.svc.{cluster_domain}.:{}",
            self.name, self.port
        )
    }
}

/// Certify (`Identity/Certify`), gRPC over TLS.
pub const IDENTITY_SERVICE: Service = Service {
    name: "linkerd-identity",
    port: 8080,
    target_port: "grpc",
    headless: false,
    component: IDENTITY,
};
/// What proxies dial for Certify.
pub const IDENTITY_HEADLESS: Service = Service {
    name: "linkerd-identity-headless",
    port: 8080,
    target_port: "grpc",
    headless: true,
    component: IDENTITY,
};
/// `Destination` (Get, GetProfile).
pub const DESTINATION_SERVICE: Service = Service {
    name: "linkerd-dst",
    port: 8086,
    target_port: "grpc-dst",
    headless: false,
    component: DESTINATION,
};
/// What proxies dial for `Destination`.
pub const DESTINATION_HEADLESS: Service = Service {
    name: "linkerd-dst-headless",
    port: 8086,
    target_port: "grpc-dst",
    headless: true,
    component: DESTINATION,
};
/// `InboundServerPolicies` and `OutboundPolicies`.
pub const POLICY: Service = Service {
    name: "linkerd-policy",
    port: 8090,
    target_port: "grpc-policy",
    headless: true,
    component: DESTINATION,
};

/// The Services proxies dial (each must have ready endpoints for a new
/// proxy to start).
pub const PROXY_FACING: [Service; 3] = [IDENTITY_HEADLESS, DESTINATION_HEADLESS, POLICY];

/// The ConfigMap of the mesh's values (what install renders, the injector
/// and identity read, and `check`, `explain` and `values` show), and its key.
pub const VALUES_CONFIG_MAP: &str = "linkerd-config";
pub const VALUES_KEY: &str = "values";

/// The Secret holding the issuer identity signs with (Linkerd's name; kinject's
/// own CA, the operator's, or cert-manager's `kubernetes.io/tls`).
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";
/// The ConfigMap of the trust roots proxies verify with, and its key.
pub const TRUST_ROOTS_CONFIG_MAP: &str = "linkerd-identity-trust-roots";
pub const TRUST_ROOTS_KEY: &str = "ca-bundle.crt";
/// The serving certificates identity writes for the injector (the API server
/// verifies it) and for destination (proxies verify it).
pub const WEBHOOK_SECRET: &str = "linkerd-proxy-injector-k8s-tls";
pub const DESTINATION_SECRET: &str = "linkerd-destination-k8s-tls";

/// The Leases: one replica of each server writes shared state (identity its
/// Secrets, the injector the webhook configuration, destination route status).
pub const IDENTITY_LEASE: &str = "kinject-identity";
pub const PROXY_INJECTOR_LEASE: &str = "kinject-proxy-injector";
pub const DESTINATION_LEASE: &str = "kinject-destination";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_follow_linkerd() {
        assert_eq!(
            identity("web", "apps", "linkerd", "cluster.local"),
            "web.apps.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(
            DESTINATION.identity("mesh", "example.org"),
            "linkerd-destination.mesh.serviceaccount.identity.mesh.example.org"
        );
    }

    #[test]
    fn an_empty_trust_domain_is_the_cluster_domain() {
        assert_eq!(trust_domain("", "cluster.local"), "cluster.local");
        assert_eq!(
            trust_domain("mesh.example", "cluster.local"),
            "mesh.example"
        );
    }

    #[test]
    fn addresses_are_fully_qualified() {
        assert_eq!(
            DESTINATION_HEADLESS.address("linkerd", "cluster.local"),
            "linkerd-dst-headless.linkerd.svc.cluster.local.:8086"
        );
        assert_eq!(
            POLICY.address("l5d", "example.org"),
            "linkerd-policy.l5d.svc.example.org.:8090"
        );
    }
}
