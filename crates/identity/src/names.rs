//! Names the seed's CA used, which Linkerd tooling of that era relies on.

/// The workload identity DNS name:
/// `<name>.<kind>.<ns>.linkerd-managed.<controlNs>.svc.cluster.local`.
pub fn workload_dns_name(name: &str, kind: &str, ns: &str, control_ns: &str) -> String {
    format!("{name}.{kind}.{ns}.linkerd-managed.{control_ns}.svc.cluster.local")
}

/// The workload's TLS Secret: `<name>-<kind>-tls-linkerd-io`. Workload names
/// may contain dots (the seed's CA keyed its queue on `name.kind.ns` and lost
/// them); they are kept: dots are valid in Secret names.
pub fn secret_name(name: &str, kind: &str) -> String {
    format!("{name}-{kind}-tls-linkerd-io")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names() {
        assert_eq!(
            workload_dns_name("nginx", "deployment", "default", "linkerd"),
            "nginx.deployment.default.linkerd-managed.linkerd.svc.cluster.local"
        );
        assert_eq!(
            secret_name("nginx", "deployment"),
            "nginx-deployment-tls-linkerd-io"
        );
        assert_eq!(
            secret_name("web.v2", "statefulset"),
            "web.v2-statefulset-tls-linkerd-io"
        );
    }
}
