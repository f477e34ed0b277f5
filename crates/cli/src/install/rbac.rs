//! The control plane's ServiceAccounts, roles and bindings: each server
//! gets exactly what it reads and writes (`docs/ARCHITECTURE.md`,
//! least privilege; the chart's `rbac.yaml` renders the same objects).

use serde_json::{Value, json};

use super::{DESTINATION, IDENTITY, INJECTOR, Plan};

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named_rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

fn binding(kind: &str, name: &str, ns: &str, sa: &str, namespaced: bool) -> Value {
    let role_kind = kind.trim_end_matches("Binding");
    let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/part-of": "kinject"}});
    if namespaced {
        meta["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    })
}

fn role(kind: &str, name: &str, ns: &str, rules: Vec<Value>) -> Value {
    let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/part-of": "kinject"}});
    if kind == "Role" {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules})
}

fn service_account(name: &str, ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "kinject"}}})
}

/// The cluster-scoped ClusterRole names, shared with `uninstall`.
pub fn cluster_role_names(ns: &str) -> [String; 3] {
    [
        format!("linkerd-{ns}-proxy-injector"),
        format!("linkerd-{ns}-identity"),
        format!("linkerd-{ns}-destination"),
    ]
}

/// The ServiceAccounts, then each server's roles and bindings.
pub(super) fn objects(p: &Plan) -> Vec<Value> {
    let ns = p.namespace.as_str();
    let mut out = Vec::new();
    out.push(service_account(IDENTITY, ns));
    out.push(service_account(DESTINATION, ns));
    if p.injector {
        out.push(service_account(INJECTOR, ns));
    }
    out.extend(identity_rbac(ns));
    if p.injector {
        out.extend(injector_rbac(ns, p.repair_missed));
    }
    out.extend(destination_rbac(ns));
    out
}

/// Identity: workload Secrets and trust bundles across namespaces, the control plane's serving certificates, owners' UIDs; its Lease and trust roots in its namespace.
fn identity_rbac(ns: &str) -> Vec<Value> {
    let [_, identity_role, _] = cluster_role_names(ns);
    vec![
        role(
            "ClusterRole",
            &identity_role,
            ns,
            vec![
                rule(&[""], &["pods"], &["get", "list", "watch"]),
                rule(
                    &[""],
                    &["secrets"],
                    &["get", "list", "watch", "create", "patch"],
                ),
                rule(&[""], &["configmaps"], &["get", "create", "patch"]),
                rule(
                    &["apps"],
                    &["deployments", "statefulsets", "daemonsets", "replicasets"],
                    &["get"],
                ),
                rule(&["batch"], &["jobs", "cronjobs"], &["get"]),
                rule(&[""], &["replicationcontrollers"], &["get"]),
                // Certify: who a proxy's token belongs to.
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            ],
        ),
        binding("ClusterRoleBinding", &identity_role, ns, IDENTITY, false),
        role(
            "Role",
            "linkerd-identity-lease",
            ns,
            vec![
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "create", "update"],
                ),
                // The trust-roots ConfigMap, watched for rotations.
                rule(&[""], &["configmaps"], &["get", "list", "watch"]),
            ],
        ),
        binding("RoleBinding", "linkerd-identity-lease", ns, IDENTITY, true),
    ]
}

/// The injector: its own webhook configuration, what it decides with, Events; its values, Lease and certificate in its namespace.
fn injector_rbac(ns: &str, repair_missed: bool) -> Vec<Value> {
    let [injector_role, _, _] = cluster_role_names(ns);
    vec![
        // The injector: its own webhook configuration (server-side apply and
        // a watch), the namespaces and owners it decides with (metadata
        // watches), and Events on owners.
        role(
            "ClusterRole",
            &injector_role,
            ns,
            vec![
                rule(
                    &["admissionregistration.k8s.io"],
                    &["mutatingwebhookconfigurations"],
                    &["get", "list", "watch", "create", "patch"],
                ),
                rule(&[""], &["namespaces"], &["get", "list", "watch"]),
                rule(&["apps"], &["replicasets"], &["get", "list", "watch"]),
                rule(&["batch"], &["jobs"], &["get", "list", "watch"]),
                rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
                // Pods that slipped through (a watch on unmeshed pods).
                rule(&[""], &["pods"], &["get", "list", "watch"]),
            ]
            .into_iter()
            .chain(repair_missed.then(|| rule(&[""], &["pods/eviction"], &["create"])))
            .collect(),
        ),
        binding("ClusterRoleBinding", &injector_role, ns, INJECTOR, false),
        // In its namespace only: its values (`linkerd-config`, watched) and
        // the Lease that picks the one replica writing the webhook configuration.
        role(
            "Role",
            INJECTOR,
            ns,
            vec![
                rule(&[""], &["configmaps"], &["get", "list", "watch"]),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "create", "update"],
                ),
                // Its serving certificate, and no other Secret.
                named_rule(
                    &[""],
                    &["secrets"],
                    &[&format!("{INJECTOR}-k8s-tls")],
                    &["get", "list", "watch"],
                ),
            ],
        ),
        binding("RoleBinding", INJECTOR, ns, INJECTOR, true),
    ]
}

/// Destination: read-only watches of what it answers from, route status, and its values, Lease and certificate in its namespace.
fn destination_rbac(ns: &str) -> Vec<Value> {
    let [_, _, destination_role] = cluster_role_names(ns);
    vec![
        // destination: read-only watches of what it answers from (pods, Services,
        // EndpointSlices, namespaces, Linkerd's policy resources), and its values
        // in its own namespace.
        role(
            "ClusterRole",
            &destination_role,
            ns,
            vec![
                rule(
                    &[""],
                    &["pods", "services", "namespaces"],
                    &["list", "watch"],
                ),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["list", "watch"],
                ),
                rule(
                    &["policy.linkerd.io"],
                    &[
                        "servers",
                        "serverauthorizations",
                        "authorizationpolicies",
                        "meshtlsauthentications",
                        "networkauthentications",
                        "httproutes",
                    ],
                    &["list", "watch"],
                ),
                rule(
                    &["gateway.networking.k8s.io"],
                    &["httproutes"],
                    &["list", "watch"],
                ),
                // To start reading a policy kind as soon as its CRD is applied.
                rule(
                    &["apiextensions.k8s.io"],
                    &["customresourcedefinitions"],
                    &["list", "watch"],
                ),
                // HTTPRoute status (Accepted, ResolvedRefs), from the leader.
                rule(
                    &["policy.linkerd.io", "gateway.networking.k8s.io"],
                    &["httproutes/status"],
                    &["patch"],
                ),
            ],
        ),
        binding(
            "ClusterRoleBinding",
            &destination_role,
            ns,
            DESTINATION,
            false,
        ),
        role(
            "Role",
            DESTINATION,
            ns,
            vec![
                rule(&[""], &["configmaps"], &["get"]),
                // The Lease of the replica that writes route status.
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "create", "update"],
                ),
                // Its serving certificate, and no other Secret.
                named_rule(
                    &[""],
                    &["secrets"],
                    &[&format!("{DESTINATION}-k8s-tls")],
                    &["get", "list", "watch"],
                ),
            ],
        ),
        binding("RoleBinding", DESTINATION, ns, DESTINATION, true),
    ]
}
