//! What `stat` computes, with no I/O: a proxy's `/metrics` parsed, two
//! scrapes turned into what happened between them, and a row's numbers
//! (success rate, RPS, latency quantiles, TLS share, TCP) from what its pods'
//! proxies counted. Both sources (two scrapes through the pod proxy, or
//! Prometheus' `increase`) produce the same [`Observation`]s, so one
//! summariser serves both.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The families Linkerd viz's stat reads (`viz/metrics-api/stat_summary.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `response_total`, by `classification` and `tls`.
    Responses,
    /// `response_latency_ms_bucket`, by `le`.
    Latency,
    /// `tcp_open_connections` (a gauge: its value now, not a difference).
    TcpOpen,
    TcpRead,
    TcpWrite,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Responses,
        Family::Latency,
        Family::TcpOpen,
        Family::TcpRead,
        Family::TcpWrite,
    ];

    /// The series name, as the proxy writes it and Prometheus stores it.
    pub fn metric(self) -> &'static str {
        match self {
            Family::Responses => "response_total",
            Family::Latency => "response_latency_ms_bucket",
            Family::TcpOpen => "tcp_open_connections",
            Family::TcpRead => "tcp_read_bytes_total",
            Family::TcpWrite => "tcp_write_bytes_total",
        }
    }

    fn is_gauge(self) -> bool {
        self == Family::TcpOpen
    }
}

/// The labels the summariser reads; every other label is summed away.
pub const KEPT_LABELS: [&str; 8] = [
    "direction",
    "peer",
    "tls",
    "classification",
    "target_port",
    "dst_namespace",
    "dst_pod",
    "le",
];

pub type Labels = BTreeMap<String, String>;

/// What one pod's proxy counted over the window, series by series.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub family: Family,
    pub labels: Labels,
    pub value: f64,
}

/// One scrape of a proxy's `/metrics`, reduced to the families above.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// `process_start_time_seconds`: a different value means a restart.
    pub started: Option<f64>,
    /// Keyed by family and every label, so the same series is found in the
    /// next scrape.
    series: BTreeMap<(Family, String), (Labels, f64)>,
}

/// Why a pod's numbers are left out (never counted as zero).
#[derive(Clone, Debug, PartialEq)]
pub enum ScrapeError {
    /// Not Prometheus' text format, or not a proxy's metrics.
    NotMetrics(String),
    /// A series we read is NaN or infinite.
    NotANumber(String),
    /// A counter went down, or the process start time changed.
    Restarted,
}

impl fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScrapeError::NotMetrics(why) => write!(f, "its /metrics is not a proxy's: {why}"),
            ScrapeError::NotANumber(series) => write!(f, "{series} is not a number"),
            ScrapeError::Restarted => {
                write!(
                    f,
                    "its proxy restarted during the window (a counter went down)"
                )
            }
        }
    }
}

fn family_of(metric: &str) -> Option<Family> {
    Family::ALL.into_iter().find(|f| {
        f.metric() == metric || (*f == Family::Latency && metric == "response_latency_ms")
    })
}

fn le_text(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".into()
    } else {
        le.to_string()
    }
}

impl Scrape {
    /// Parses a proxy's `/metrics` text.
    pub fn parse(text: &str) -> Result<Scrape, ScrapeError> {
        use prometheus_parse::Value;
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .map_err(|e| ScrapeError::NotMetrics(e.to_string()))?;
        if parsed.samples.is_empty() {
            let start: String = text.trim_start().chars().take(40).collect();
            return Err(ScrapeError::NotMetrics(format!(
                "no series in it (it starts {start:?})"
            )));
        }
        let mut out = Scrape::default();
        for s in parsed.samples {
            if s.metric == "process_start_time_seconds" {
                if let Value::Gauge(v) | Value::Untyped(v) = s.value {
                    out.started = Some(v);
                }
                continue;
            }
            let Some(family) = family_of(&s.metric) else {
                continue;
            };
            let labels: Labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut add = |labels: Labels, v: f64| -> Result<(), ScrapeError> {
                if !v.is_finite() {
                    return Err(ScrapeError::NotANumber(format!("{}{labels:?}", s.metric)));
                }
                let key = format!("{labels:?}");
                out.series.insert((family, key), (labels, v));
                Ok(())
            };
            match (family, s.value) {
                (Family::Latency, Value::Histogram(buckets)) => {
                    for b in buckets {
                        let mut l = labels.clone();
                        l.insert("le".into(), le_text(b.less_than));
                        add(l, b.count)?;
                    }
                }
                (Family::Latency, _) => {}
                (_, Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => add(labels, v)?,
                _ => {}
            }
        }
        if out.started.is_none() && out.series.is_empty() {
            return Err(ScrapeError::NotMetrics(
                "none of response_total, response_latency_ms, tcp_* or process_start_time_seconds"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// What happened between `self` (earlier) and `later`: counters'
    /// differences and gauges' later values, with only [`KEPT_LABELS`].
    pub fn until(&self, later: &Scrape) -> Result<Vec<Observation>, ScrapeError> {
        if self.started.is_some() && later.started.is_some() && self.started != later.started {
            return Err(ScrapeError::Restarted);
        }
        let mut out = Vec::with_capacity(later.series.len());
        for (key, (labels, after)) in &later.series {
            let family = key.0;
            let value = if family.is_gauge() {
                *after
            } else {
                // A series first seen in the later scrape started at zero.
                let before = self.series.get(key).map_or(0.0, |(_, v)| *v);
                if *after < before {
                    return Err(ScrapeError::Restarted);
                }
                after - before
            };
            out.push(Observation {
                family,
                labels: kept(labels),
                value,
            });
        }
        Ok(out)
    }
}

/// Only the labels the summariser reads.
pub fn kept(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| KEPT_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Which of a pod's series belong to a row.
#[derive(Clone, Debug)]
pub enum Selection {
    /// What the pod served: inbound, except the proxy's own admin port (our
    /// own scrapes, the kubelet's probes and Prometheus would otherwise be
    /// counted as the application's traffic).
    Inbound { admin_port: u16 },
    /// What the pod sent to these destinations (`--to`, `--from`): outbound,
    /// by the `dst_namespace` and `dst_pod` labels the destination service
    /// gives the proxy. `pods: None` means the whole namespace.
    Outbound {
        namespace: String,
        pods: Option<BTreeSet<String>>,
    },
}

impl Selection {
    fn admits(&self, o: &Observation) -> bool {
        let get = |k: &str| o.labels.get(k).map(String::as_str);
        match self {
            Selection::Inbound { admin_port } => {
                get("direction") == Some("inbound")
                    && get("peer").is_none_or(|p| p == "src")
                    && get("target_port") != Some(admin_port.to_string().as_str())
            }
            Selection::Outbound { namespace, pods } => {
                get("direction") == Some("outbound")
                    && get("peer").is_none_or(|p| p == "dst")
                    && get("dst_namespace") == Some(namespace.as_str())
                    && pods
                        .as_ref()
                        .is_none_or(|set| get("dst_pod").is_some_and(|p| set.contains(p)))
            }
        }
    }
}

/// A row's sums, added pod by pod.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub success: f64,
    pub failure: f64,
    pub tls: f64,
    /// Latency buckets by upper bound (`le_key`): each pod's counts are
    /// cumulative, so their sum is too.
    buckets: BTreeMap<u64, f64>,
    pub tcp_open: f64,
    pub read_bytes: f64,
    pub write_bytes: f64,
}

/// `le` as an integer key: finite bounds in µs, `+Inf` last.
fn le_key(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(u64::MAX);
    }
    let v: f64 = le.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

impl Totals {
    pub fn add(&mut self, observations: &[Observation], sel: &Selection) {
        for o in observations.iter().filter(|o| sel.admits(o)) {
            match o.family {
                Family::Responses => {
                    match o.labels.get("classification").map(String::as_str) {
                        Some("success") => self.success += o.value,
                        Some("failure") => self.failure += o.value,
                        _ => continue,
                    }
                    if o.labels.get("tls").map(String::as_str) == Some("true") {
                        self.tls += o.value;
                    }
                }
                Family::Latency => {
                    if let Some(k) = o.labels.get("le").and_then(|le| le_key(le)) {
                        *self.buckets.entry(k).or_default() += o.value;
                    }
                }
                Family::TcpOpen => self.tcp_open += o.value,
                Family::TcpRead => self.read_bytes += o.value,
                Family::TcpWrite => self.write_bytes += o.value,
            }
        }
    }

    /// The row's numbers over `window_secs`; `None` when it saw no request.
    pub fn stats(&self, window_secs: f64) -> Option<Stats> {
        let requests = self.success + self.failure;
        if requests <= 0.0 || window_secs <= 0.0 {
            return None;
        }
        Some(Stats {
            success: self.success / requests,
            rps: requests / window_secs,
            latency_ms_p50: quantile(0.5, &self.buckets),
            latency_ms_p95: quantile(0.95, &self.buckets),
            latency_ms_p99: quantile(0.99, &self.buckets),
            tls: self.tls / requests,
            tcp_conn: self.tcp_open,
            read_bytes_per_sec: self.read_bytes / window_secs,
            write_bytes_per_sec: self.write_bytes / window_secs,
        })
    }
}

/// A row's traffic, as `stat` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    /// 0..=1.
    pub success: f64,
    pub rps: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    /// 0..=1.
    pub tls: f64,
    pub tcp_conn: f64,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
}

/// Prometheus' `histogram_quantile` over cumulative bucket counts by upper
/// bound: linear within the bucket the rank falls in, the first bucket
/// starting at 0, and the highest finite bound when the rank falls in
/// `+Inf`. `None` with no observations.
pub fn quantile(q: f64, cumulative: &BTreeMap<u64, f64>) -> Option<f64> {
    let total = *cumulative.get(&u64::MAX)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0); // (bound ms, cumulative count)
    for (&key, &count) in cumulative {
        if key == u64::MAX {
            break;
        }
        let bound = key as f64 / 1000.0;
        if count >= rank {
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = include_str!("testdata/server-inbound.txt");
    const CLIENT: &str = include_str!("testdata/client-outbound.txt");

    fn inbound() -> Selection {
        Selection::Inbound { admin_port: 4191 }
    }

    #[test]
    fn the_real_proxys_scrape_parses() {
        let s = Scrape::parse(SERVER).expect("parses");
        assert!(s.started.is_some());
        let zero = Scrape {
            started: s.started,
            ..Scrape::default()
        };
        let mut t = Totals::default();
        t.add(&zero.until(&s).expect("no restart"), &inbound());
        // The fixture's app-port responses: 80 plaintext and 120 over mTLS;
        // the admin port's 20 are not the application's.
        assert_eq!(t.success, 200.0);
        assert_eq!(t.failure, 0.0);
        assert_eq!(t.tls, 120.0);
        assert_eq!(t.tcp_open, 1.0);
        assert_eq!(t.read_bytes, 2221.0 + 8960.0);
        let stats = t.stats(100.0).expect("traffic");
        assert_eq!(stats.rps, 2.0);
        assert_eq!(stats.success, 1.0);
        assert_eq!(stats.tls, 0.6);
        let p50 = stats.latency_ms_p50.expect("latency");
        assert!(p50 > 0.0 && p50 <= 1.0, "{p50}");
    }

    #[test]
    fn outbound_to_a_destination_reads_the_clients_dst_labels() {
        let s = Scrape::parse(CLIENT).expect("parses");
        let obs = Scrape::default().until(&s).expect("no restart");
        let to = |ns: &str, pods: Option<&[&str]>| {
            let mut t = Totals::default();
            t.add(
                &obs,
                &Selection::Outbound {
                    namespace: ns.into(),
                    pods: pods.map(|p| p.iter().map(|s| s.to_string()).collect()),
                },
            );
            t
        };
        let web = to("unlabeled", None);
        assert_eq!((web.success, web.tls), (120.0, 120.0));
        let one = to("enabled", Some(&["web-5cc94c9bf9-p4wwx"]));
        assert_eq!(one.success, 5.0);
        assert_eq!(to("enabled", None).success, 6.0);
        assert_eq!(to("nowhere", None).stats(1.0), None);
    }

    fn scrape(lines: &[&str]) -> Scrape {
        Scrape::parse(&lines.join("\n")).expect("parses")
    }

    const START: &str = "process_start_time_seconds 100";

    #[test]
    fn differences_between_scrapes_are_the_window() {
        let ok = |n: u32, le1: u32| {
            [
                "# TYPE response_total counter".to_string(),
                format!(
                    "response_total{{direction=\"inbound\",target_port=\"8080\",tls=\"true\",classification=\"success\"}} {n}"
                ),
                "response_total{direction=\"inbound\",target_port=\"8080\",tls=\"no_identity\",classification=\"failure\"} 3".into(),
                "# TYPE response_latency_ms histogram".into(),
                format!("response_latency_ms_bucket{{direction=\"inbound\",target_port=\"8080\",le=\"10\"}} {le1}"),
                format!("response_latency_ms_bucket{{direction=\"inbound\",target_port=\"8080\",le=\"100\"}} {n}"),
                format!("response_latency_ms_bucket{{direction=\"inbound\",target_port=\"8080\",le=\"+Inf\"}} {n}"),
                START.into(),
            ]
            .join("\n")
        };
        let a = Scrape::parse(&ok(10, 10)).expect("a");
        let b = Scrape::parse(&ok(30, 20)).expect("b");
        let mut t = Totals::default();
        t.add(&a.until(&b).expect("no restart"), &inbound());
        let s = t.stats(10.0).expect("traffic");
        assert_eq!((t.success, t.failure, t.tls), (20.0, 0.0, 20.0));
        assert_eq!(s.rps, 2.0);
        // 10 of the window's 20 took ≤ 10 ms, 10 more ≤ 100 ms.
        assert_eq!(s.latency_ms_p50, Some(10.0));
        assert_eq!(s.latency_ms_p95, Some(10.0 + 90.0 * 9.0 / 10.0));
    }

    #[test]
    fn a_counter_that_went_down_or_a_new_start_time_is_a_restart() {
        let a = scrape(&["response_total{direction=\"inbound\"} 5", START]);
        let b = scrape(&["response_total{direction=\"inbound\"} 2", START]);
        assert_eq!(a.until(&b), Err(ScrapeError::Restarted));
        let c = scrape(&[
            "response_total{direction=\"inbound\"} 9",
            "process_start_time_seconds 200",
        ]);
        assert_eq!(a.until(&c), Err(ScrapeError::Restarted));
        assert!(a.until(&a).is_ok());
    }

    #[test]
    fn nan_and_text_that_is_not_metrics_are_refused() {
        assert!(matches!(
            Scrape::parse("response_total{direction=\"inbound\"} NaN\n"),
            Err(ScrapeError::NotANumber(_))
        ));
        assert!(matches!(
            Scrape::parse("<html>not found</html>"),
            Err(ScrapeError::NotMetrics(_))
        ));
        assert!(matches!(
            Scrape::parse("some_other_metric 1\n"),
            Err(ScrapeError::NotMetrics(_))
        ));
        // Missing families are no traffic, not an error.
        let empty = scrape(&[START]);
        let mut t = Totals::default();
        t.add(&empty.until(&empty).expect("same"), &inbound());
        assert_eq!(t.stats(60.0), None);
    }

    #[test]
    fn quantiles_follow_prometheus() {
        let b: BTreeMap<u64, f64> = [(1000, 0.0), (2000, 4.0), (5000, 8.0), (u64::MAX, 10.0)]
            .into_iter()
            .collect();
        assert_eq!(quantile(0.5, &b), Some(2.0 + 3.0 * 1.0 / 4.0));
        assert_eq!(quantile(0.2, &b), Some(1.5));
        // In +Inf: the highest finite bound.
        assert_eq!(quantile(0.99, &b), Some(5.0));
        assert_eq!(quantile(0.5, &BTreeMap::new()), None);
    }
}
