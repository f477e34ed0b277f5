//! HTTPRoute facts as the proxy's protobuf: matches, hosts, filters and
//! metadata, shared by the inbound and outbound answers.

use linkerd2_proxy_api::http_route as hr;
use linkerd2_proxy_api::http_types;
use linkerd2_proxy_api::meta;

use crate::policy_model::{
    Filter, HeaderMods, PathMatch, PathRewrite, Redirect, RouteGroup, RouteMatch, ValueMatch,
};

/// A route's metadata: its group, kind and name.
pub fn route_meta(group: RouteGroup, namespace: &str, name: &str) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: group.group().to_string(),
            kind: "HTTPRoute".into(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            section: String::new(),
            port: 0,
        })),
    })
}

/// A route rule's matches; a rule without any matches every request (a
/// path prefix of `/`, the Gateway API's default).
pub fn matches(ms: &[RouteMatch]) -> Vec<hr::HttpRouteMatch> {
    if ms.is_empty() {
        return vec![super::path_prefix("/")];
    }
    ms.iter().map(route_match).collect()
}

fn route_match(m: &RouteMatch) -> hr::HttpRouteMatch {
    let path = match m.path.as_ref().unwrap_or(&PathMatch::Prefix("/".into())) {
        PathMatch::Exact(p) => hr::path_match::Kind::Exact(p.clone()),
        PathMatch::Prefix(p) => hr::path_match::Kind::Prefix(p.clone()),
        PathMatch::Regex(p) => hr::path_match::Kind::Regex(p.clone()),
    };
    hr::HttpRouteMatch {
        path: Some(hr::PathMatch { kind: Some(path) }),
        headers: m
            .headers
            .iter()
            .map(|(name, v)| hr::HeaderMatch {
                name: name.clone(),
                value: Some(match v {
                    ValueMatch::Exact(s) => hr::header_match::Value::Exact(s.as_bytes().to_vec()),
                    ValueMatch::Regex(s) => hr::header_match::Value::Regex(s.clone()),
                }),
            })
            .collect(),
        query_params: m
            .query
            .iter()
            .map(|(name, v)| hr::QueryParamMatch {
                name: name.clone(),
                value: Some(match v {
                    ValueMatch::Exact(s) => hr::query_param_match::Value::Exact(s.clone()),
                    ValueMatch::Regex(s) => hr::query_param_match::Value::Regex(s.clone()),
                }),
            })
            .collect(),
        method: m.method.as_deref().map(method),
    }
}

pub fn method(m: &str) -> http_types::HttpMethod {
    use http_types::http_method::{Registered, Type};
    http_types::HttpMethod {
        r#type: Some(match Registered::from_str_name(m) {
            Some(r) => Type::Registered(r as i32),
            None => Type::Unregistered(m.to_string()),
        }),
    }
}

/// Hostnames: exact, or `*.example.com` as a suffix.
pub fn hosts(names: &[String]) -> Vec<hr::HostMatch> {
    names
        .iter()
        .map(|h| hr::HostMatch {
            r#match: Some(match h.strip_prefix("*.") {
                Some(suffix) => hr::host_match::Match::Suffix(hr::host_match::Suffix {
                    reverse_labels: suffix.rsplit('.').map(str::to_string).collect(),
                }),
                None => hr::host_match::Match::Exact(h.clone()),
            }),
        })
        .collect()
}

fn headers(pairs: &[(String, String)]) -> Option<http_types::Headers> {
    (!pairs.is_empty()).then(|| http_types::Headers {
        headers: pairs
            .iter()
            .map(|(name, value)| http_types::headers::Header {
                name: name.clone(),
                value: value.as_bytes().to_vec(),
            })
            .collect(),
    })
}

pub fn request_headers(m: &HeaderMods) -> hr::RequestHeaderModifier {
    hr::RequestHeaderModifier {
        add: headers(&m.add),
        set: headers(&m.set),
        remove: m.remove.clone(),
    }
}

pub fn response_headers(m: &HeaderMods) -> hr::ResponseHeaderModifier {
    hr::ResponseHeaderModifier {
        add: headers(&m.add),
        set: headers(&m.set),
        remove: m.remove.clone(),
    }
}

pub fn redirect(r: &Redirect) -> hr::RequestRedirect {
    use http_types::scheme::{Registered, Type};
    hr::RequestRedirect {
        scheme: r.scheme.as_deref().map(|s| http_types::Scheme {
            r#type: Some(match s.to_ascii_lowercase().as_str() {
                "http" => Type::Registered(Registered::Http as i32),
                "https" => Type::Registered(Registered::Https as i32),
                other => Type::Unregistered(other.to_string()),
            }),
        }),
        host: r.host.clone().unwrap_or_default(),
        path: r.path.as_ref().map(|p| hr::PathModifier {
            replace: Some(match p {
                PathRewrite::Full(v) => hr::path_modifier::Replace::Full(v.clone()),
                PathRewrite::Prefix(v) => hr::path_modifier::Replace::Prefix(v.clone()),
            }),
        }),
        port: r.port.map(u32::from).unwrap_or(0),
        status: u32::from(r.status),
    }
}

/// The filters an inbound route can carry (the proxy's inbound API has no
/// response header modifier: such a route is answered with a 500 filter,
/// never silently without it).
pub fn inbound_filters(fs: &[Filter]) -> Vec<linkerd2_proxy_api::inbound::http_route::Filter> {
    use linkerd2_proxy_api::inbound::http_route::{Filter as F, filter::Kind};
    fs.iter()
        .map(|f| F {
            kind: Some(match f {
                Filter::RequestHeaders(m) => Kind::RequestHeaderModifier(request_headers(m)),
                Filter::Redirect(r) => Kind::Redirect(redirect(r)),
                Filter::ResponseHeaders(_) => Kind::FailureInjector(hr::HttpFailureInjector {
                    status: 500,
                    message: "ResponseHeaderModifier is not supported on inbound routes".into(),
                    ratio: None,
                }),
            }),
        })
        .collect()
}

pub fn outbound_filters(fs: &[Filter]) -> Vec<linkerd2_proxy_api::outbound::http_route::Filter> {
    use linkerd2_proxy_api::outbound::http_route::{Filter as F, filter::Kind};
    fs.iter()
        .map(|f| F {
            kind: Some(match f {
                Filter::RequestHeaders(m) => Kind::RequestHeaderModifier(request_headers(m)),
                Filter::ResponseHeaders(m) => Kind::ResponseHeaderModifier(response_headers(m)),
                Filter::Redirect(r) => Kind::Redirect(redirect(r)),
            }),
        })
        .collect()
}
