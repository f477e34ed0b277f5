//! Linkerd's policy resources against a real Kubernetes 1.20 API server with
//! kinject's CRDs applied (`kinject install --crds`), asked through the
//! published `linkerd2-proxy-api` clients as a proxy asks: every kind, each
//! selector form, updates reaching an open stream (and how fast), deletion
//! falling back to the default, and bad objects failing closed.
//! Run by `scripts/test.sh` (KINJECT_E2E=1), one test at a time.

mod support;

use std::time::{Duration, Instant};

use linkerd2_proxy_api::inbound as ib;
use linkerd2_proxy_api::meta;
use linkerd2_proxy_api::outbound as ob;
use serde_json::json;
use support::{Cluster, Destination, enabled, kinject_cli, wait_for};

const CLIENT_ID: &str = "client.apps.serviceaccount.identity.linkerd.cluster.local";

fn meta_name(m: &Option<meta::Metadata>) -> String {
    match m.as_ref().and_then(|m| m.kind.as_ref()) {
        Some(meta::metadata::Kind::Default(n)) => format!("default:{n}"),
        Some(meta::metadata::Kind::Resource(r)) => format!("{}:{}", r.kind, r.name),
        None => "-".into(),
    }
}

fn describe_authz(a: &ib::Authz) -> String {
    use ib::authn::Permit;
    use ib::authn::permit_mesh_tls::Clients;
    let who = match a.authentication.as_ref().and_then(|a| a.permit.as_ref()) {
        Some(Permit::Unauthenticated(_)) => "unauthenticated".to_string(),
        Some(Permit::MeshTls(m)) => match m.clients.as_ref() {
            Some(Clients::Unauthenticated(_)) => "tls".to_string(),
            Some(Clients::Identities(ids)) => {
                let mut v: Vec<String> = ids.identities.iter().map(|i| i.name.clone()).collect();
                v.extend(
                    ids.suffixes
                        .iter()
                        .map(|s| format!("*{}", s.parts.join("."))),
                );
                format!("mtls({})", v.join(","))
            }
            None => "mtls(?)".into(),
        },
        None => "none".into(),
    };
    let mut nets: Vec<String> = a
        .networks
        .iter()
        .map(|n| {
            let net: ipnet::IpNet = n.net.and_then(|n| n.try_into().ok()).expect("a network");
            if n.except.is_empty() {
                net.to_string()
            } else {
                format!("{net}-{}", n.except.len())
            }
        })
        .collect();
    nets.sort();
    format!("{} {who} {}", meta_name(&a.metadata), nets.join(","))
}

/// A server as a sorted, comparable description: labels, protocol,
/// authorizations, routes (with their authorizations).
fn describe(s: &ib::Server) -> String {
    use ib::proxy_protocol::Kind;
    let (protocol, routes) = match s.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
        Some(Kind::Detect(d)) => ("detect", d.http_routes.clone()),
        Some(Kind::Http1(h)) => ("http1", h.routes.clone()),
        Some(Kind::Http2(h)) => ("http2", h.routes.clone()),
        Some(Kind::Grpc(_)) => ("grpc", vec![]),
        Some(Kind::Opaque(_)) => ("opaque", vec![]),
        Some(Kind::Tls(_)) => ("tls", vec![]),
        None => ("none", vec![]),
    };
    let mut authz: Vec<String> = s.authorizations.iter().map(describe_authz).collect();
    authz.sort();
    let mut routes: Vec<String> = routes
        .iter()
        .map(|r| {
            let mut a: Vec<String> = r.authorizations.iter().map(describe_authz).collect();
            a.sort();
            if a.is_empty() {
                meta_name(&r.metadata)
            } else {
                format!("{}[{}]", meta_name(&r.metadata), a.join("; "))
            }
        })
        .collect();
    routes.sort();
    format!(
        "{}:{} {protocol} authz=[{}] routes=[{}]",
        s.labels.get("kind").map(String::as_str).unwrap_or("?"),
        s.labels.get("name").map(String::as_str).unwrap_or("?"),
        authz.join("; "),
        routes.join(", ")
    )
}

fn server(name: &str, port: serde_json::Value, extra: serde_json::Value) -> String {
    let mut spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": port});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
           "metadata": {"name": name, "namespace": "apps"}, "spec": spec})
    .to_string()
}

fn authz_policy(name: &str, target: serde_json::Value, authns: serde_json::Value) -> String {
    json!({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "apps"},
           "spec": {"targetRef": target, "requiredAuthenticationRefs": authns}})
    .to_string()
}

fn policy_ref(kind: &str, name: &str) -> serde_json::Value {
    json!({"group": "policy.linkerd.io", "kind": kind, "name": name})
}

/// kinject's status conditions on a route, as `Type=Status Reason`.
fn route_conditions(k: &Cluster, ns: &str, resource: &str) -> Vec<String> {
    let r = k.json(&["get", "-n", ns, resource]);
    r["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["controllerName"] == "linkerd.io/policy-controller")
        .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            format!(
                "{}={} {}",
                c["type"].as_str().unwrap_or(""),
                c["status"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn wait_for_conditions(k: &Cluster, ns: &str, resource: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
    let mut last = Vec::new();
    let got = support::wait_for_opt(Duration::from_secs(10), || {
        last = route_conditions(k, ns, resource);
        (last == want).then_some(())
    });
    assert!(got.is_some(), "{resource}: {last:?}, expected {want:?}");
}

#[test]
fn policy_resources_from_the_cluster() {
    if !enabled("policy_resources_from_the_cluster") {
        return;
    }
    let k = Cluster::start();
    support::install_and_apply(&k, &[]);
    let (code, crds, err) = kinject_cli(&k, &["install", "--crds"], None);
    assert_eq!(code, 0, "{err}");
    k.apply(&crds);
    // Applying them again changes nothing and is accepted.
    k.apply(&crds);
    k.namespace("apps", &[]);
    for sa in ["web", "client"] {
        k.ok(&["create", "serviceaccount", "-n", "apps", sa]);
    }
    support::meshed_pod(&k, "apps", "web-1", "10.1.0.1", json!({}));

    let restricted = k.service_account_kubeconfig("linkerd", "linkerd-destination");
    let dst = Destination::start_as(&restricted, None, &[]);
    wait_for("destination ready", Duration::from_secs(30), || {
        (support::admin_get(dst.admin, "/ready").0 == 200).then_some(())
    });
    let url = format!("http://127.0.0.1:{}", dst.grpc);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut ic = ib::inbound_server_policies_client::InboundServerPoliciesClient::connect(
            url.clone(),
        )
        .await
        .expect("connect");
        let spec = |port: u32| ib::PortSpec {
            workload: "{\"ns\":\"apps\",\"pod\":\"web-1\"}".into(),
            port,
        };
        let mut watch = ic
            .watch_port(spec(8080))
            .await
            .expect("watch")
            .into_inner();
        async fn next(s: &mut tonic::Streaming<ib::Server>) -> (String, Duration) {
            let t = Instant::now();
            let m = kinject_test_support::next_message(s, Duration::from_secs(10)).await;
            (describe(&m), t.elapsed())
        }
        async fn quiet(s: &mut tonic::Streaming<ib::Server>) {
            kinject_test_support::no_message_within(s, Duration::from_millis(1500)).await;
        }
        let default = "default:all-unauthenticated detect authz=[default:all-unauthenticated \
                       unauthenticated 0.0.0.0/0,::/0] routes=[default:default]";
        assert_eq!(next(&mut watch).await.0, default);

        // A Server selecting the port by name: deny by default, the probe
        // route kept.
        k.apply(&server("web-http", json!("http"), json!({"proxyProtocol": "HTTP/1"})));
        let (got, took) = next(&mut watch).await;
        assert_eq!(
            got,
            "server:web-http http1 authz=[] routes=[default:default, default:probe[default:probe unauthenticated 0.0.0.0/0,::/0]]"
        );
        eprintln!("a Server reached the open stream {took:?} after kubectl apply returned");
        assert!(took < Duration::from_secs(1), "{took:?}");

        // MeshTLSAuthentication by ServiceAccount, required by an
        // AuthorizationPolicy on the Server: that identity, from anywhere.
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "MeshTLSAuthentication",
                    "metadata": {"name": "clients", "namespace": "apps"},
                    "spec": {"identityRefs": [{"kind": "ServiceAccount", "name": "client"}]}})
            .to_string(),
        );
        k.apply(&authz_policy(
            "web-clients",
            policy_ref("Server", "web-http"),
            json!([policy_ref("MeshTLSAuthentication", "clients")]),
        ));
        let (got, took) = next(&mut watch).await;
        assert_eq!(
            got,
            format!(
                "server:web-http http1 authz=[authorizationpolicy:web-clients mtls({CLIENT_ID}) 0.0.0.0/0,::/0] \
                 routes=[default:default, default:probe[default:probe unauthenticated 0.0.0.0/0,::/0]]"
            )
        );
        assert!(took < Duration::from_secs(1), "{took:?}");

        // A NetworkAuthentication: unauthenticated from exactly its networks.
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "NetworkAuthentication",
                    "metadata": {"name": "lan", "namespace": "apps"},
                    "spec": {"networks": [{"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}]}})
            .to_string(),
        );
        k.apply(&authz_policy(
            "lan",
            json!({"kind": "Namespace", "name": "apps"}),
            json!([policy_ref("NetworkAuthentication", "lan")]),
        ));
        let got = next(&mut watch).await.0;
        assert!(
            got.contains("authorizationpolicy:lan unauthenticated 10.0.0.0/8-1"),
            "a namespace-wide policy applies to the Server: {got}"
        );

        // A malformed CIDR is admitted by the API server (no webhook): the
        // policy requiring it grants nothing, and the rest stays.
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "NetworkAuthentication",
                    "metadata": {"name": "broken", "namespace": "apps"},
                    "spec": {"networks": [{"cidr": "10.0.0.0/33"}]}})
            .to_string(),
        );
        k.apply(&authz_policy(
            "broken",
            policy_ref("Server", "web-http"),
            json!([policy_ref("NetworkAuthentication", "broken")]),
        ));
        quiet(&mut watch).await;
        assert!(
            dst.log().contains("networkauthentications.policy.linkerd.io")
                && dst.log().contains("is not a CIDR"),
            "the refusal is logged: {}",
            dst.log()
        );
        assert_eq!(
            support::metric(dst.admin, "kinject_destination_policy_objects_refused "),
            Some(1.0),
            "and counted"
        );

        // The legacy ServerAuthorization, selecting the Server by label.
        k.ok(&["label", "server.policy.linkerd.io/web-http", "-n", "apps", "tier=front"]);
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1beta1", "kind": "ServerAuthorization",
                    "metadata": {"name": "legacy", "namespace": "apps"},
                    "spec": {"server": {"selector": {"matchLabels": {"tier": "front"}}},
                             "client": {"meshTLS": {"serviceAccounts": [{"name": "web"}]}}}})
            .to_string(),
        );
        let got = next(&mut watch).await.0;
        assert!(
            got.contains(
                "serverauthorization:legacy mtls(web.apps.serviceaccount.identity.linkerd.cluster.local) 10.0.0.0/8,100.64.0.0/10"
            ),
            "the cluster networks by default: {got}"
        );

        // An HTTPRoute whose parent is the Server replaces the default
        // route; an AuthorizationPolicy on the route authorizes it alone.
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1beta3", "kind": "HTTPRoute",
                    "metadata": {"name": "api", "namespace": "apps"},
                    "spec": {"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "web-http"}],
                             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]}]}})
            .to_string(),
        );
        k.apply(&authz_policy(
            "api-callers",
            policy_ref("HTTPRoute", "api"),
            json!([{"kind": "ServiceAccount", "name": "web"}]),
        ));
        let mut got = next(&mut watch).await.0;
        if !got.contains("HTTPRoute:api[") {
            got = next(&mut watch).await.0;
        }
        assert!(
            got.contains(
                "routes=[HTTPRoute:api[authorizationpolicy:api-callers mtls(web.apps.serviceaccount.identity.linkerd.cluster.local) 0.0.0.0/0,::/0], default:probe"
            ),
            "{got}"
        );

        // The leader writes the route's status, as Linkerd's controller.
        wait_for_conditions(&k, "apps",
            "httproute.policy.linkerd.io/api",
            &["Accepted=True Accepted", "ResolvedRefs=True ResolvedRefs"],
        );

        // explain shows the port's Server, authorizations and routes, from
        // destination's own answer.
        let (code, json, err) =
            kinject_cli(&k, &["explain", "pod/web-1", "-n", "apps", "-o", "json"], None);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("explain's JSON");
        let port = &v[0]["ports"][0];
        assert_eq!(port["port"], 8080, "{json}");
        assert_eq!(port["server"], "Server web-http", "{json}");
        assert_eq!(port["protocol"], "HTTP/1", "{json}");
        let said = port.to_string();
        assert!(
            said.contains(&format!("authorizationpolicy/web-clients: mTLS {CLIENT_ID} from 0.0.0.0/0, ::/0"))
                && said.contains("HTTPRoute/api [authorizationpolicy/api-callers: mTLS web.apps"),
            "{json}"
        );
        let (_, text, _) = kinject_cli(&k, &["explain", "pod/web-1", "-n", "apps"], None);
        assert!(
            text.contains("inbound port 8080: Server web-http, HTTP/1"),
            "{text}"
        );

        // A Server on a port name no container has changes nothing.
        k.apply(&server("nothing", json!("grpc"), json!({})));
        quiet(&mut watch).await;

        // A second Server on the same port, by number and with
        // matchExpressions: the older one keeps it (Linkerd's rule), so
        // nothing changes yet. A ServerAuthorization names it.
        k.apply(&server(
            "web-num",
            json!(8080),
            json!({"podSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]}}),
        ));
        k.apply(
            &json!({"apiVersion": "policy.linkerd.io/v1beta1", "kind": "ServerAuthorization",
                    "metadata": {"name": "by-name", "namespace": "apps"},
                    "spec": {"server": {"name": "web-num"},
                             "client": {"unauthenticated": true, "networks": [{"cidr": "192.0.2.0/24"}]}}})
            .to_string(),
        );
        quiet(&mut watch).await;

        // Deleting the older Server hands the port to the other one.
        let t = Instant::now();
        k.ok(&["delete", "server.policy.linkerd.io", "-n", "apps", "web-http"]);
        let (got, took) = next(&mut watch).await;
        assert_eq!(
            got,
            "server:web-num detect authz=[authorizationpolicy:lan unauthenticated 10.0.0.0/8-1; \
             serverauthorization:by-name unauthenticated 192.0.2.0/24] \
             routes=[default:default, default:probe[default:probe unauthenticated 0.0.0.0/0,::/0]]"
        );
        eprintln!(
            "a deleted Server reached the open stream {took:?} after kubectl returned ({:?} in all)",
            t.elapsed()
        );
        // And deleting that one: back to the default.
        k.ok(&["delete", "server.policy.linkerd.io", "-n", "apps", "web-num"]);
        assert_eq!(next(&mut watch).await.0, default);
        wait_for_conditions(&k, "apps",
            "httproute.policy.linkerd.io/api",
            &["Accepted=False NoMatchingParent"],
        );

        // `kinject check` names what now refers to nothing, and the
        // refused object.
        let (_, json, _) = kinject_cli(&k, &["check", "--wait", "0s", "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&json).expect("check's JSON");
        let policy: Vec<&serde_json::Value> = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["category"] == "kinject-policy")
            .collect();
        assert_eq!(policy.len(), 3, "{json}");
        assert_eq!(policy[0]["result"], "ok", "the CRDs are installed: {json}");
        assert_eq!(policy[2]["result"], "ok", "no Service annotation is bad yet: {json}");
        let problems = policy[1]["error"].as_str().unwrap_or_default();
        assert_eq!(policy[1]["result"], "warning", "{json}");
        for said in [
            "networkauthentications.policy.linkerd.io apps/broken is refused",
            "AuthorizationPolicy apps/web-clients: targets Server web-http, which does not exist",
            "HTTPRoute apps/api: its parent Server web-http does not exist",
        ] {
            assert!(problems.contains(said), "{said:?} in {problems}");
        }

        // Outbound: a Gateway API HTTPRoute splitting a Service's traffic
        // 90/10, with a header match and a timeout.
        for svc in ["web", "web-v2"] {
            k.apply(
                &json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": svc, "namespace": "apps"},
                        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
                .to_string(),
            );
        }
        let cluster_ip = k.ok(&[
            "get", "service", "-n", "apps", "web", "-o", "jsonpath={.spec.clusterIP}",
        ]);
        let mut oc = ob::outbound_policies_client::OutboundPoliciesClient::connect(url.clone())
            .await
            .expect("connect");
        let mut out = oc
            .watch(ob::TrafficSpec {
                source_workload: "{\"ns\":\"apps\",\"pod\":\"web-1\"}".into(),
                target: Some(ob::traffic_spec::Target::Addr(
                    linkerd2_proxy_api::net::TcpAddress {
                        ip: Some(cluster_ip.parse::<std::net::IpAddr>().expect("ip").into()),
                        port: 80,
                    },
                )),
            })
            .await
            .expect("watch")
            .into_inner();
        async fn next_out(s: &mut tonic::Streaming<ob::OutboundPolicy>) -> Vec<ob::HttpRoute> {
            let p = kinject_test_support::next_message(s, Duration::from_secs(10)).await;
            match p.protocol.and_then(|p| p.kind) {
                Some(ob::proxy_protocol::Kind::Detect(d)) => d.http1.expect("http1").routes,
                other => panic!("detect expected: {other:?}"),
            }
        }
        let routes = next_out(&mut out).await;
        assert_eq!(meta_name(&routes[0].metadata), "default:http");
        k.apply(
            &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": "split", "namespace": "apps"},
                    "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": "web", "port": 80}],
                             "rules": [{
                                "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                                "backendRefs": [{"name": "web", "port": 80, "weight": 90},
                                                {"name": "web-v2", "port": 80, "weight": 10}],
                                "timeouts": {"request": "2s"}}]}})
            .to_string(),
        );
        let routes = next_out(&mut out).await;
        assert_eq!(routes.len(), 1);
        assert_eq!(meta_name(&routes[0].metadata), "HTTPRoute:split");
        let rule = &routes[0].rules[0];
        assert_eq!(rule.matches[0].headers[0].name, "x-canary");
        let path = rule.matches[0].path.as_ref().and_then(|p| p.kind.clone());
        assert_eq!(
            path,
            Some(linkerd2_proxy_api::http_route::path_match::Kind::Prefix("/".into())),
            "a header-only match also carries prefix /"
        );
        assert_eq!(
            rule.timeouts.as_ref().and_then(|t| t.request),
            Some(prost_types::Duration { seconds: 2, nanos: 0 })
        );
        let weights = |rule: &ob::http_route::Rule| -> Vec<(String, u32, bool)> {
            let Some(ob::http_route::distribution::Kind::RandomAvailable(r)) =
                rule.backends.as_ref().and_then(|b| b.kind.clone())
            else {
                panic!("a weighted distribution")
            };
            r.backends
                .iter()
                .map(|w| {
                    let b = w.backend.as_ref().expect("backend");
                    let inner = b.backend.as_ref().expect("backend");
                    let failing = !b.filters.is_empty();
                    let dst = match inner.kind.as_ref() {
                        Some(ob::backend::Kind::Balancer(bal)) => {
                            match bal.discovery.as_ref().and_then(|d| d.kind.as_ref()) {
                                Some(ob::backend::endpoint_discovery::Kind::Dst(d)) => {
                                    d.path.clone()
                                }
                                _ => "?".into(),
                            }
                        }
                        _ => meta_name(&inner.metadata),
                    };
                    (dst, w.weight, failing)
                })
                .collect()
        };
        assert_eq!(
            weights(rule),
            vec![
                ("web.apps.svc.cluster.local:80".to_string(), 90, false),
                ("web-v2.apps.svc.cluster.local:80".to_string(), 10, false),
            ]
        );
        let ranges = |rule: &ob::http_route::Rule| {
            rule.retry.as_ref().and_then(|r| r.conditions.as_ref()).map(|c| {
                c.status_ranges.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>()
            })
        };
        // The Service's own retry and timeout annotations reach the rules
        // that set none; the rule's Gateway API timeouts win over them.
        k.ok(&[
            "annotate", "-n", "apps", "service/web",
            "retry.linkerd.io/http=gateway-error", "timeout.linkerd.io/response=7s",
        ]);
        let routes = next_out(&mut out).await;
        assert_eq!(ranges(&routes[0].rules[0]), Some(vec![(502, 504)]), "the Service's retry");
        assert_eq!(
            routes[0].rules[0].timeouts.as_ref().map(|t| (t.request, t.response)),
            Some((Some(prost_types::Duration { seconds: 2, nanos: 0 }), None)),
            "the rule's own timeouts, not the Service's"
        );
        // Linkerd's retry annotations on the route win over the Service's.
        k.ok(&[
            "annotate", "-n", "apps", "httproute.gateway.networking.k8s.io/split",
            "retry.linkerd.io/http=5xx", "retry.linkerd.io/limit=2", "retry.linkerd.io/timeout=300ms",
        ]);
        let routes = next_out(&mut out).await;
        assert_eq!(ranges(&routes[0].rules[0]), Some(vec![(500, 599)]));
        let retry = routes[0].rules[0].retry.clone().expect("a retry policy");
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.timeout, Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 }));

        // A backend that does not exist: a 500 on its share, never a
        // silent re-route; when it appears, it is used.
        k.ok(&["delete", "service", "-n", "apps", "web-v2"]);
        let routes = next_out(&mut out).await;
        assert_eq!(
            weights(&routes[0].rules[0]),
            vec![
                ("web.apps.svc.cluster.local:80".to_string(), 90, false),
                ("Service:web-v2".to_string(), 10, true),
            ]
        );
        wait_for_conditions(&k, "apps",
            "httproute.gateway.networking.k8s.io/split",
            &["Accepted=True Accepted", "ResolvedRefs=False BackendNotFound"],
        );
        k.ok(&["delete", "httproute.gateway.networking.k8s.io", "-n", "apps", "split"]);
        let routes = next_out(&mut out).await;
        assert_eq!(meta_name(&routes[0].metadata), "default:http", "back to the default");
        // The default route carries the Service's annotations too.
        assert_eq!(ranges(&routes[0].rules[0]), Some(vec![(502, 504)]));
        assert_eq!(
            routes[0].rules[0].timeouts.as_ref().and_then(|t| t.response),
            Some(prost_types::Duration { seconds: 7, nanos: 0 })
        );
        // A value that does not parse: none of them applies (Linkerd's
        // answer), never a guess at what was meant.
        k.ok(&["annotate", "--overwrite", "-n", "apps", "service/web", "timeout.linkerd.io/idle=soon"]);
        let routes = next_out(&mut out).await;
        assert_eq!(meta_name(&routes[0].metadata), "default:http");
        assert_eq!(routes[0].rules[0].retry, None);
        assert_eq!(routes[0].rules[0].timeouts, None);
        // ... logged and counted ...
        assert!(
            dst.log().contains("timeout.linkerd.io/idle") && dst.log().contains("annotations not applied"),
            "{}",
            dst.log()
        );
        assert_eq!(
            support::metric(dst.admin, "kinject_destination_service_annotations_refused "),
            Some(1.0)
        );
        // ... and `kinject check` names it, in its table as in JSON.
        let (code, table, err) = kinject_cli(&k, &["check", "--wait", "0s"], None);
        assert!(
            table.contains("kinject-policy: Services' outbound annotations are valid...")
                && table.contains("[warning]"),
            "exit {code}: {table}\n{err}"
        );
        let (_, json, _) = kinject_cli(&k, &["check", "--wait", "0s", "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&json).expect("check's JSON");
        let line = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| {
                c["description"] == "Services' outbound annotations are valid"
            })
            .unwrap_or_else(|| panic!("no such check line: {json}"));
        assert_eq!(line["result"], "warning", "{json}");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or_default()
                .contains("Service apps/web: timeout.linkerd.io/idle: \"soon\" is not a duration"),
            "{line}"
        );

        // A consumer route: in the client's namespace, naming the Service in
        // another. It applies to that namespace's clients only.
        k.namespace("shop", &[]);
        let mut shop = oc
            .watch(ob::TrafficSpec {
                source_workload: "{\"ns\":\"shop\",\"pod\":\"cart-1\"}".into(),
                target: Some(ob::traffic_spec::Target::Authority(
                    "web.apps.svc.cluster.local:80".into(),
                )),
            })
            .await
            .expect("watch")
            .into_inner();
        assert_eq!(meta_name(&next_out(&mut shop).await[0].metadata), "default:http");
        k.apply(
            &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": "slow-for-shop", "namespace": "shop"},
                    "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": "web",
                                             "namespace": "apps", "port": 80}],
                             "rules": [{"timeouts": {"request": "9s"},
                                        "backendRefs": [{"name": "ghost", "port": 80}]}]}})
            .to_string(),
        );
        let routes = next_out(&mut shop).await;
        assert_eq!(meta_name(&routes[0].metadata), "HTTPRoute:slow-for-shop");
        assert_eq!(
            routes[0].rules[0].timeouts.as_ref().and_then(|t| t.request),
            Some(prost_types::Duration { seconds: 9, nanos: 0 })
        );
        let Some(meta::metadata::Kind::Resource(r)) =
            routes[0].metadata.as_ref().and_then(|m| m.kind.as_ref())
        else {
            panic!("a resource")
        };
        assert_eq!(r.namespace, "shop", "the route's own namespace");
        assert_eq!(
            weights(&routes[0].rules[0]),
            vec![("Service:ghost".to_string(), 1, true)],
            "a consumer route's missing backend fails, as a producer route's"
        );
        kinject_test_support::no_message_within(&mut out, Duration::from_millis(1500)).await;
        wait_for_conditions(
            &k,
            "shop",
            "httproute.gateway.networking.k8s.io/slow-for-shop",
            &["Accepted=True Accepted", "ResolvedRefs=False BackendNotFound"],
        );
        k.ok(&["delete", "httproute.gateway.networking.k8s.io", "-n", "shop", "slow-for-shop"]);
        assert_eq!(meta_name(&next_out(&mut shop).await[0].metadata), "default:http");

        // Linkerd's circuit breaker on the Service reaches HTTP/1 and HTTP/2.
        k.ok(&[
            "annotate", "--overwrite", "-n", "apps", "service/web", "timeout.linkerd.io/idle-",
            "balancer.linkerd.io/failure-accrual=consecutive",
            "balancer.linkerd.io/failure-accrual-consecutive-max-failures=3",
        ]);
        let p = kinject_test_support::next_message(&mut out, Duration::from_secs(10)).await;
        assert_eq!(
            support::metric(dst.admin, "kinject_destination_service_annotations_refused "),
            Some(0.0),
            "the fixed Service is no longer counted"
        );
        let Some(ob::proxy_protocol::Kind::Detect(d)) = p.protocol.and_then(|p| p.kind) else {
            panic!("detect expected")
        };
        for accrual in [
            d.http1.and_then(|h| h.failure_accrual),
            d.http2.and_then(|h| h.failure_accrual),
        ] {
            match accrual.and_then(|a| a.kind) {
                Some(ob::failure_accrual::Kind::ConsecutiveFailures(c)) => {
                    assert_eq!(c.max_failures, 3);
                    let b = c.backoff.expect("backoff");
                    assert_eq!(b.max_backoff, Some(prost_types::Duration { seconds: 60, nanos: 0 }));
                }
                other => panic!("consecutive failures expected: {other:?}"),
            }
        }

        // A source workload that does not parse is refused, not guessed at.
        let refused = oc
            .get(ob::TrafficSpec {
                source_workload: "{\"pod\":\"cart-1\"}".into(),
                target: Some(ob::traffic_spec::Target::Authority(
                    "web.apps.svc.cluster.local:80".into(),
                )),
            })
            .await
            .expect_err("a source workload without a namespace");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    });
}
