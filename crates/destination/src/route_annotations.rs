//! Linkerd's outbound annotations: retries and timeouts (`retry.linkerd.io/*`,
//! `timeout.linkerd.io/*`), and a Service's circuit breaker
//! (`balancer.linkerd.io/failure-accrual*`), with the Gateway API duration
//! syntax they are written in. Retries and timeouts go on an HTTPRoute (for
//! its rules) or on a Service (for every route to it that sets none, and its
//! default route), so both `model.rs` and `policy_model.rs` read them from
//! here. Pure parsing: no Kubernetes object, no protobuf.

use std::collections::BTreeMap;
use std::time::Duration;

/// Retries of a route: up to `limit` more attempts for responses whose
/// status is in `statuses`, each attempt bounded by `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    pub limit: u32,
    pub statuses: Vec<(u32, u32)>,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAnnotations {
    pub retry: Option<Retry>,
    /// `timeout.linkerd.io/request`, `/response`, `/idle`: used where the
    /// rule has no Gateway API `timeouts`.
    pub request_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl RouteAnnotations {
    /// Whether any `timeout.linkerd.io/*` is set.
    pub fn has_timeouts(&self) -> bool {
        self.request_timeout.is_some()
            || self.response_timeout.is_some()
            || self.idle_timeout.is_some()
    }
}

/// An annotation whose value does not parse, named by its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct BadAnnotation {
    pub key: &'static str,
    pub why: String,
}

/// Text that is not a Gateway API duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (e.g. 10s, 1m30s, 500ms)")]
pub struct NotADuration(pub String);

const RETRY_LIMIT: &str = "retry.linkerd.io/limit";
const RETRY_HTTP: &str = "retry.linkerd.io/http";
const RETRY_TIMEOUT: &str = "retry.linkerd.io/timeout";
const TIMEOUT_REQUEST: &str = "timeout.linkerd.io/request";
const TIMEOUT_RESPONSE: &str = "timeout.linkerd.io/response";
const TIMEOUT_IDLE: &str = "timeout.linkerd.io/idle";

/// A status class or range of `retry.linkerd.io/http`: `5xx`,
/// `gateway-error` (502-504), `503`, `500-504`.
fn status_range(s: &str) -> Result<(u32, u32), BadAnnotation> {
    let code = |c: &str| {
        c.trim()
            .parse::<u32>()
            .ok()
            .filter(|c| (100..600).contains(c))
    };
    let s = s.trim();
    if s.eq_ignore_ascii_case("5xx") {
        return Ok((500, 599));
    }
    if s.eq_ignore_ascii_case("gateway-error") {
        return Ok((502, 504));
    }
    if let Some(c) = code(s) {
        return Ok((c, c));
    }
    match s.split_once('-').map(|(a, b)| (code(a), code(b))) {
        Some((Some(a), Some(b))) if a <= b => Ok((a, b)),
        _ => Err(BadAnnotation {
            key: RETRY_HTTP,
            why: format!("{s:?} is not 5xx, gateway-error, a status or a range (500-504)"),
        }),
    }
}

/// Linkerd's retry and timeout annotations of one object. A value that does
/// not parse is an error, not a guess: the caller refuses the route (its
/// status says why) or, for a Service, logs it and applies none.
pub fn route_annotations(a: &BTreeMap<String, String>) -> Result<RouteAnnotations, BadAnnotation> {
    let duration = |key: &'static str| {
        a.get(key)
            .map(|v| {
                gateway_duration(v).map_err(|e| BadAnnotation {
                    key,
                    why: e.to_string(),
                })
            })
            .transpose()
    };
    let limit = a
        .get(RETRY_LIMIT)
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| BadAnnotation {
                key: RETRY_LIMIT,
                why: format!("{v:?} is not a number"),
            })
        })
        .transpose()?;
    let statuses = a
        .get(RETRY_HTTP)
        .map(|v| {
            v.split(',')
                .map(status_range)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let timeout = duration(RETRY_TIMEOUT)?;
    let retry = (limit.is_some() || statuses.is_some() || timeout.is_some())
        .then(|| Retry {
            limit: limit.unwrap_or(1),
            statuses: statuses.unwrap_or_default(),
            timeout,
        })
        .filter(|r| r.limit > 0);
    Ok(RouteAnnotations {
        retry,
        request_timeout: duration(TIMEOUT_REQUEST)?,
        response_timeout: duration(TIMEOUT_RESPONSE)?,
        idle_timeout: duration(TIMEOUT_IDLE)?,
    })
}

/// Linkerd's consecutive-failures circuit breaker of a Service's endpoints:
/// after `max_failures` failures in a row an endpoint is left out for a
/// penalty growing from `min_penalty` to `max_penalty`, jittered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureAccrual {
    pub max_failures: u32,
    pub min_penalty: Duration,
    pub max_penalty: Duration,
    /// The jitter ratio in thousandths (0.5 is 500), so the facts stay `Eq`.
    pub jitter_millis: u32,
}

const ACCRUAL: &str = "balancer.linkerd.io/failure-accrual";
const ACCRUAL_MAX_FAILURES: &str = "balancer.linkerd.io/failure-accrual-consecutive-max-failures";
const ACCRUAL_MIN_PENALTY: &str = "balancer.linkerd.io/failure-accrual-consecutive-min-penalty";
const ACCRUAL_MAX_PENALTY: &str = "balancer.linkerd.io/failure-accrual-consecutive-max-penalty";
const ACCRUAL_JITTER: &str = "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio";

/// A Service's `balancer.linkerd.io/failure-accrual: consecutive` and its
/// parameters, with Linkerd's defaults (7 failures, 1 s to 1 m, jitter 0.5);
/// `None` without the annotation. Only the `consecutive` mode is known: any
/// other is an error rather than no breaker the operator did not ask for.
pub fn failure_accrual(
    a: &BTreeMap<String, String>,
) -> Result<Option<FailureAccrual>, BadAnnotation> {
    let Some(mode) = a.get(ACCRUAL) else {
        return Ok(None);
    };
    if mode.trim() != "consecutive" {
        return Err(BadAnnotation {
            key: ACCRUAL,
            why: format!("{mode:?} is not a mode kinject knows (consecutive)"),
        });
    }
    let bad = |key: &'static str, why: String| BadAnnotation { key, why };
    let max_failures = a
        .get(ACCRUAL_MAX_FAILURES)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| bad(ACCRUAL_MAX_FAILURES, format!("{v:?} is not a number")))
        })
        .transpose()?
        .unwrap_or(7);
    let penalty = |key: &'static str, default: Duration| {
        a.get(key)
            .map(|v| gateway_duration(v).map_err(|e| bad(key, e.to_string())))
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    let min_penalty = penalty(ACCRUAL_MIN_PENALTY, Duration::from_secs(1))?;
    let max_penalty = penalty(ACCRUAL_MAX_PENALTY, Duration::from_secs(60))?;
    if max_penalty.is_zero() || min_penalty > max_penalty {
        return Err(bad(
            ACCRUAL_MAX_PENALTY,
            format!(
                "{max_penalty:?} must be above zero and at least the min-penalty {min_penalty:?}"
            ),
        ));
    }
    let jitter = a
        .get(ACCRUAL_JITTER)
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|j| (0.0..=100.0).contains(j))
                .ok_or_else(|| {
                    bad(
                        ACCRUAL_JITTER,
                        format!("{v:?} is not a ratio from 0 to 100"),
                    )
                })
        })
        .transpose()?
        .unwrap_or(0.5);
    Ok(Some(FailureAccrual {
        max_failures,
        min_penalty,
        max_penalty,
        // In range by the check above: at most 100,000.
        jitter_millis: (jitter * 1000.0).round() as u32,
    }))
}

/// A Gateway API duration: up to four `<n><unit>` parts (`1h30m`, `500ms`).
pub fn gateway_duration(s: &str) -> Result<Duration, NotADuration> {
    let bad = || NotADuration(s.to_string());
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn linkerds_route_annotations() {
        let a = |pairs: &[(&str, &str)]| route_annotations(&map(pairs));
        let r = a(&[
            ("retry.linkerd.io/http", "5xx,gateway-error,429,500-504"),
            ("retry.linkerd.io/limit", "3"),
            ("retry.linkerd.io/timeout", "300ms"),
            ("timeout.linkerd.io/request", "2s"),
        ])
        .expect("valid");
        assert_eq!(
            r.retry,
            Some(Retry {
                limit: 3,
                statuses: vec![(500, 599), (502, 504), (429, 429), (500, 504)],
                timeout: Some(Duration::from_millis(300)),
            })
        );
        assert_eq!(r.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(a(&[]), Ok(RouteAnnotations::default()));
        assert_eq!(
            a(&[("retry.linkerd.io/http", "5xx")]).map(|r| r.retry.map(|r| r.limit)),
            Ok(Some(1)),
            "one retry by default"
        );
        assert_eq!(
            a(&[("retry.linkerd.io/limit", "0")]).map(|r| r.retry),
            Ok(None)
        );
        for bad in [
            ("retry.linkerd.io/http", "4xx"),
            ("retry.linkerd.io/http", "504-500"),
            ("retry.linkerd.io/limit", "-1"),
            ("timeout.linkerd.io/request", "soon"),
        ] {
            assert!(a(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gateway_durations() {
        assert_eq!(gateway_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(gateway_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(gateway_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "10", "s", "1x", "1h1m1s1ms1s", "-1s"] {
            assert!(gateway_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn linkerds_failure_accrual() {
        let a = |pairs: &[(&str, &str)]| failure_accrual(&map(pairs));
        assert_eq!(a(&[]), Ok(None));
        assert_eq!(
            a(&[(ACCRUAL, "consecutive")]),
            Ok(Some(FailureAccrual {
                max_failures: 7,
                min_penalty: Duration::from_secs(1),
                max_penalty: Duration::from_secs(60),
                jitter_millis: 500,
            })),
            "Linkerd's defaults"
        );
        assert_eq!(
            a(&[
                (ACCRUAL, "consecutive"),
                (ACCRUAL_MAX_FAILURES, "3"),
                (ACCRUAL_MIN_PENALTY, "250ms"),
                (ACCRUAL_MAX_PENALTY, "10s"),
                (ACCRUAL_JITTER, "0.25"),
            ]),
            Ok(Some(FailureAccrual {
                max_failures: 3,
                min_penalty: Duration::from_millis(250),
                max_penalty: Duration::from_secs(10),
                jitter_millis: 250,
            }))
        );
        for bad in [
            &[(ACCRUAL, "sometimes")][..],
            &[(ACCRUAL, "consecutive"), (ACCRUAL_MAX_FAILURES, "-1")],
            &[(ACCRUAL, "consecutive"), (ACCRUAL_MIN_PENALTY, "2m")],
            &[(ACCRUAL, "consecutive"), (ACCRUAL_MAX_PENALTY, "0s")],
            &[(ACCRUAL, "consecutive"), (ACCRUAL_JITTER, "-0.1")],
            &[(ACCRUAL, "consecutive"), (ACCRUAL_JITTER, "NaN")],
        ] {
            assert!(a(bad).is_err(), "{bad:?}");
        }
    }

    mod fuzz {
        //! Whatever text an annotation holds, the parsers answer a value or
        //! a refusal, never a panic.
        use super::*;
        use proptest::prelude::*;

        const KEYS: [&str; 11] = [
            RETRY_LIMIT,
            RETRY_HTTP,
            RETRY_TIMEOUT,
            TIMEOUT_REQUEST,
            TIMEOUT_RESPONSE,
            TIMEOUT_IDLE,
            ACCRUAL,
            ACCRUAL_MAX_FAILURES,
            ACCRUAL_MIN_PENALTY,
            ACCRUAL_MAX_PENALTY,
            ACCRUAL_JITTER,
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,24}",
                "[0-9.,eE+-]{0,12}",
                "[0-9]{1,22}(ms|s|m|h)",
                Just("consecutive".to_string()),
                Just("5xx,gateway-error,429,500-504".to_string()),
            ]
        }

        proptest! {
            #[test]
            fn any_annotations_are_values_or_refused(
                pairs in proptest::collection::vec((0..KEYS.len(), value()), 0..8)
            ) {
                let a: BTreeMap<String, String> =
                    pairs.into_iter().map(|(k, v)| (KEYS[k].to_string(), v)).collect();
                let _ = route_annotations(&a);
                if let Ok(Some(f)) = failure_accrual(&a) {
                    prop_assert!(f.min_penalty <= f.max_penalty);
                    prop_assert!(f.jitter_millis <= 100_000);
                }
            }
        }
    }

    #[test]
    fn a_bad_value_is_named_by_its_key() {
        let bad = route_annotations(&map(&[(TIMEOUT_IDLE, "soon")]));
        assert_eq!(
            bad.map_err(|e| e.to_string()),
            Err(
                "timeout.linkerd.io/idle: \"soon\" is not a duration (e.g. 10s, 1m30s, 500ms)"
                    .to_string()
            )
        );
    }
}
