//! Outbound HTTP routes from the HTTPRoutes whose parent is a Service, on
//! its port or all ports: the producer routes of the Service's namespace and
//! the consumer routes of the client's. Matches, filters, weighted backends
//! (a traffic split), timeouts and retries, with the Service's own retry and
//! timeout annotations for rules that set none. A backend Service that does
//! not exist is answered with a 500 on its share of the traffic, as Linkerd
//! does, never by silently sending it elsewhere.

use linkerd2_proxy_api::http_route as hr;
use linkerd2_proxy_api::outbound as ob;

use super::{PolicyConfig, backend, duration, http, service_meta};
use crate::index::ServiceView;
use crate::model::ObjKey;
use crate::policy_model::{RouteFacts, RouteGroup, RouteParent, RouteRule};
use crate::route_annotations::{Retry, RouteAnnotations};

fn missing_backend(
    svc: &ObjKey,
    port: u16,
    weight: u32,
    cfg: &PolicyConfig,
) -> ob::http_route::WeightedRouteBackend {
    use ob::http_route::{Filter, RouteBackend, WeightedRouteBackend, filter::Kind};
    WeightedRouteBackend {
        weight,
        backend: Some(RouteBackend {
            backend: Some(ob::Backend {
                metadata: service_meta(svc, port),
                queue: Some(ob::Queue {
                    capacity: cfg.queue_capacity,
                    failfast_timeout: duration(cfg.failfast_timeout),
                }),
                kind: None,
            }),
            filters: vec![Filter {
                kind: Some(Kind::FailureInjector(hr::HttpFailureInjector {
                    status: 500,
                    message: format!("Service not found {}", svc.name),
                    ratio: None,
                })),
            }],
            ..Default::default()
        }),
    }
}

fn distribution(
    rule: &RouteRule,
    parent: &ObjKey,
    port: u16,
    view: &ServiceView,
    cfg: &PolicyConfig,
) -> ob::http_route::Distribution {
    use ob::http_route::{RouteBackend, WeightedRouteBackend, distribution};
    let backends: Vec<WeightedRouteBackend> = if rule.backends.is_empty() {
        // No backendRefs: the parent Service itself.
        vec![WeightedRouteBackend {
            weight: 1,
            backend: Some(RouteBackend {
                backend: Some(backend(parent, port, cfg)),
                ..Default::default()
            }),
        }]
    } else {
        rule.backends
            .iter()
            .map(|b| {
                let port = b.port.unwrap_or(port);
                if view.missing_backends.contains(&b.service) {
                    return missing_backend(&b.service, port, b.weight, cfg);
                }
                WeightedRouteBackend {
                    weight: b.weight,
                    backend: Some(RouteBackend {
                        backend: Some(backend(&b.service, port, cfg)),
                        ..Default::default()
                    }),
                }
            })
            .collect()
    };
    ob::http_route::Distribution {
        kind: Some(distribution::Kind::RandomAvailable(
            distribution::RandomAvailable { backends },
        )),
    }
}

/// The rule's Gateway API `timeouts` (`request` bounds the whole request,
/// `backendRequest` each attempt's wait for a response), else the route's
/// `timeout.linkerd.io/*` annotations, else the Service's (Linkerd's order).
fn timeouts(
    rule: &RouteRule,
    route: &RouteAnnotations,
    service: &RouteAnnotations,
) -> Option<hr::Timeouts> {
    if rule.request_timeout.is_some() || rule.backend_timeout.is_some() {
        return Some(hr::Timeouts {
            request: rule.request_timeout.and_then(duration),
            response: rule.backend_timeout.and_then(duration),
            idle: None,
        });
    }
    [route, service]
        .into_iter()
        .find(|a| a.has_timeouts())
        .map(annotated_timeouts)
}

/// `timeout.linkerd.io/*` as the proxy's timeouts.
pub(super) fn annotated_timeouts(a: &RouteAnnotations) -> hr::Timeouts {
    hr::Timeouts {
        request: a.request_timeout.and_then(duration),
        response: a.response_timeout.and_then(duration),
        idle: a.idle_timeout.and_then(duration),
    }
}

/// Linkerd's retry annotations as the proxy's retry policy (Linkerd's
/// request buffer and backoff).
pub(super) fn retry(r: &Retry) -> ob::http_route::Retry {
    use ob::http_route::retry::{Conditions, conditions::StatusRange};
    ob::http_route::Retry {
        max_retries: r.limit,
        max_request_bytes: 64 * 1024,
        conditions: Some(Conditions {
            status_ranges: r
                .statuses
                .iter()
                .map(|(start, end)| StatusRange {
                    start: *start,
                    end: *end,
                })
                .collect(),
        }),
        timeout: r.timeout.and_then(duration),
        backoff: Some(ob::ExponentialBackoff {
            min_backoff: duration(std::time::Duration::from_millis(25)),
            max_backoff: duration(std::time::Duration::from_millis(250)),
            jitter_ratio: 1.0,
            respect_retry_after_hint: false,
        }),
    }
}

/// A route's group, namespace and name.
type RouteId<'a> = (RouteGroup, &'a str, &'a str);

/// One HTTPRoute as the proxy's route; `service` holds the parent Service's
/// own retry and timeout annotations, for rules that set none.
fn route(
    (group, ns, name): RouteId<'_>,
    r: &RouteFacts,
    (parent, port): (&ObjKey, u16),
    view: &ServiceView,
    service: &RouteAnnotations,
    cfg: &PolicyConfig,
) -> ob::HttpRoute {
    ob::HttpRoute {
        metadata: http::route_meta(group, ns, name),
        hosts: http::hosts(&r.hostnames),
        rules: r
            .rules
            .iter()
            .map(|rule| ob::http_route::Rule {
                matches: http::matches(&rule.matches),
                filters: http::outbound_filters(&rule.filters),
                backends: Some(distribution(rule, parent, port, view, cfg)),
                timeouts: timeouts(rule, &r.linkerd, service),
                retry: r
                    .linkerd
                    .retry
                    .as_ref()
                    .or(service.retry.as_ref())
                    .map(retry),
                ..Default::default()
            })
            .collect(),
    }
}

/// The HTTPRoutes of the Service port a client in `client_ns` sees, oldest
/// first; `None` when none attaches (the default route applies). As in
/// Linkerd, producer routes (in the Service's namespace) apply to every
/// client, and consumer routes (in another namespace, naming the Service in
/// theirs) to clients of that namespace only; the proxy then picks among
/// them by the Gateway API's match precedence. `service` is the Service's
/// own retry and timeout annotations.
pub fn routes(
    svc: &ObjKey,
    view: &ServiceView,
    port: u16,
    client_ns: Option<&str>,
    service: &RouteAnnotations,
    cfg: &PolicyConfig,
) -> Option<Vec<ob::HttpRoute>> {
    let namespaces =
        std::iter::once(svc.namespace.as_str()).chain(client_ns.filter(|ns| *ns != svc.namespace));
    let mut attached: Vec<(RouteId<'_>, &RouteFacts)> = namespaces
        .filter_map(|ns| Some((ns, view.policy.namespace(ns)?)))
        .flat_map(|(ns, policy)| {
            policy
                .routes
                .iter()
                .map(move |((g, name), r)| ((*g, ns, name.as_str()), &**r))
        })
        .filter(|(_, r)| {
            r.parents.iter().any(|p| {
                matches!(p, RouteParent::Service(s, p) if s == svc && p.is_none_or(|p| p == port))
            })
        })
        .collect();
    if attached.is_empty() {
        return None;
    }
    attached.sort_by(|(ka, a), (kb, b)| a.created.cmp(&b.created).then(ka.cmp(kb)));
    Some(
        attached
            .into_iter()
            .map(|(id, r)| route(id, r, (svc, port), view, service, cfg))
            .collect(),
    )
}
