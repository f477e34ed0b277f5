//! The stand-in's counters, exposed in linkerd2-proxy's own text format
//! (`../shared/reference/proxy-metrics/`: the same family names, label names
//! and order, and latency buckets). Written out by hand because the real
//! proxy writes Prometheus' text format, not the OpenMetrics that
//! prometheus-client produces (`_total` on the TYPE line, `# EOF`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The real proxy's `response_latency_ms` bucket bounds (ms); `+Inf` follows.
const BUCKETS: [u64; 25] = [
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
    10000, 20000, 30000, 40000, 50000,
];

/// Where a connection was accepted for: the real proxy's `target_*` labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub addr: String,
    pub ip: String,
    pub port: u16,
}

#[derive(Default)]
struct Latencies {
    count: u64,
    sum_ms: u64,
    /// Per bucket of `BUCKETS`, then `+Inf`; not cumulative.
    buckets: [u64; BUCKETS.len() + 1],
}

/// One target's TCP counters, shared with its connections.
#[derive(Default)]
pub struct Tcp {
    open: AtomicU64,
    read: AtomicU64,
    write: AtomicU64,
}

#[derive(Default)]
struct Http {
    requests: BTreeMap<Target, u64>,
    responses: BTreeMap<(Target, u16), Latencies>,
    tcp: BTreeMap<Target, Arc<Tcp>>,
}

pub struct Metrics {
    http: Mutex<Http>,
    started: f64,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            http: Mutex::new(Http::default()),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Http> {
        // A panic elsewhere cannot leave the counters half-written.
        self.http.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection for `target`: open until the returned guard drops.
    pub fn connection(&self, target: &Target) -> Arc<Tcp> {
        let tcp = self.lock().tcp.entry(target.clone()).or_default().clone();
        tcp.open.fetch_add(1, Ordering::Relaxed);
        tcp
    }

    pub fn request(&self, target: &Target) {
        *self.lock().requests.entry(target.clone()).or_default() += 1;
    }

    pub fn response(&self, target: &Target, status: u16, took: Duration) {
        let ms = took.as_millis().min(u128::from(u64::MAX)) as u64;
        let mut http = self.lock();
        let l = http.responses.entry((target.clone(), status)).or_default();
        l.count += 1;
        l.sum_ms += ms;
        let i = BUCKETS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS.len());
        l.buckets[i] += 1;
    }

    pub fn render(&self) -> String {
        let http = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP request_total Total count of HTTP requests.\n# TYPE request_total counter"
        );
        for (t, n) in &http.requests {
            let _ = writeln!(out, "request_total{{{}{}}} {n}", server(t), route());
        }
        let mut family_text = String::new();
        let _ = writeln!(
            family_text,
            "# HELP response_latency_ms Elapsed times between a request's headers being received and its response stream completing\n# TYPE response_latency_ms histogram"
        );
        for ((t, status), l) in &http.responses {
            let labels = format!("{}{},status_code=\"{status}\"", server(t), route());
            let mut cumulative = 0;
            for (i, n) in l.buckets.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    family_text,
                    "response_latency_ms_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                family_text,
                "response_latency_ms_count{{{labels}}} {}",
                l.count
            );
            let _ = writeln!(
                family_text,
                "response_latency_ms_sum{{{labels}}} {}",
                l.sum_ms
            );
        }
        let _ = writeln!(
            family_text,
            "# HELP response_total Total count of HTTP responses.\n# TYPE response_total counter"
        );
        for ((t, status), l) in &http.responses {
            // The real proxy's classification: a 5xx is a failure.
            let class = if *status >= 500 { "failure" } else { "success" };
            let _ = writeln!(
                family_text,
                "response_total{{{}{},status_code=\"{status}\",classification=\"{class}\",grpc_status=\"\",error=\"\"}} {}",
                server(t),
                route(),
                l.count
            );
        }
        out.push_str(&family_text);
        for (name, help, kind, get) in [
            (
                "tcp_open_connections",
                "Number of currently-open connections.",
                "gauge",
                (|t: &Tcp| t.open.load(Ordering::Relaxed)) as fn(&Tcp) -> u64,
            ),
            (
                "tcp_read_bytes_total",
                "Total count of bytes read from peers.",
                "counter",
                |t: &Tcp| t.read.load(Ordering::Relaxed),
            ),
            (
                "tcp_write_bytes_total",
                "Total count of bytes written to peers.",
                "counter",
                |t: &Tcp| t.write.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (t, tcp) in &http.tcp {
                let _ = writeln!(
                    out,
                    "{name}{{direction=\"inbound\",peer=\"src\",{}}} {}",
                    target(t),
                    get(tcp)
                );
            }
        }
        // Not linkerd2-proxy, and says so where `kinject check --proxy` reads
        // the proxy's version.
        let _ = writeln!(
            out,
            "# HELP proxy_build_info Proxy build info\n# TYPE proxy_build_info gauge\nproxy_build_info{{date=\"\",git_sha=\"\",profile=\"debug\",vendor=\"kinject\",version=\"0.0.0-standin\"}} 1"
        );
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Time that the process started (in seconds since the UNIX epoch)\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
            self.started
        );
        out
    }
}

fn target(t: &Target) -> String {
    format!(
        "target_addr=\"{}\",target_ip=\"{}\",target_port=\"{}\",tls=\"no_identity\",no_tls_reason=\"no_tls_from_remote\",srv_group=\"policy.linkerd.io\",srv_kind=\"default\",srv_name=\"all-unauthenticated\",srv_port=\"{}\"",
        t.addr, t.ip, t.port, t.port
    )
}

fn server(t: &Target) -> String {
    format!("direction=\"inbound\",{}", target(t))
}

fn route() -> &'static str {
    ",route_group=\"\",route_kind=\"default\",route_name=\"default\",authz_group=\"\",authz_kind=\"default\",authz_name=\"all-unauthenticated\""
}

/// A connection that counts its bytes into its target's counters, and
/// closes (for `tcp_open_connections`) when dropped.
pub struct CountingIo<T> {
    inner: T,
    tcp: Arc<Tcp>,
}

impl<T> CountingIo<T> {
    pub fn new(inner: T, tcp: Arc<Tcp>) -> Self {
        CountingIo { inner, tcp }
    }
}

impl<T> Drop for CountingIo<T> {
    fn drop(&mut self) {
        self.tcp.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        self.tcp.read.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.tcp.write.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            addr: "10.0.0.1:8080".into(),
            ip: "10.0.0.1".into(),
            port: 8080,
        }
    }

    fn value(text: &str, prefix: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counters_move_with_responses_and_buckets_are_cumulative() {
        let m = Metrics::new();
        let t = target();
        for (status, ms) in [(200, 0), (200, 7), (200, 60_000), (503, 2)] {
            m.request(&t);
            m.response(&t, status, Duration::from_millis(ms));
        }
        let text = m.render();
        assert_eq!(value(&text, "request_total{direction=\"inbound\""), Some(4));
        let ok = "response_total{direction=\"inbound\",target_addr=\"10.0.0.1:8080\"";
        let lines: Vec<_> = text.lines().filter(|l| l.starts_with(ok)).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("status_code=\"200\",classification=\"success\""));
        assert!(lines[0].ends_with(" 3"));
        assert!(lines[1].contains("status_code=\"503\",classification=\"failure\""));
        assert!(lines[1].ends_with(" 1"));
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.contains("status_code=\"200\",le=\"") && l.contains(&format!("le=\"{le}\"}}"))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        assert_eq!(bucket("1"), Some(1));
        assert_eq!(bucket("10"), Some(2));
        assert_eq!(bucket("50000"), Some(2));
        assert_eq!(bucket("+Inf"), Some(3));
    }

    #[test]
    fn connections_count_open_and_bytes() {
        let m = Metrics::new();
        let tcp = m.connection(&target());
        tcp.read.fetch_add(10, Ordering::Relaxed);
        let text = m.render();
        assert_eq!(value(&text, "tcp_open_connections{"), Some(1));
        assert_eq!(value(&text, "tcp_read_bytes_total{"), Some(10));
        drop(CountingIo::new((), tcp));
        assert_eq!(value(&m.render(), "tcp_open_connections{"), Some(0));
    }
}
