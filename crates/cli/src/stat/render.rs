//! `stat`'s table (the seed's columns and formats) and its JSON.

use serde::Serialize;

use super::traffic::Stats;

/// One row as shown.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    /// `meshed/running`.
    pub meshed: String,
    #[serde(flatten)]
    pub numbers: Numbers,
}

/// The traffic columns; all `null` in JSON when the row saw no request.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Numbers {
    pub success: Option<f64>,
    pub rps: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub tls: Option<f64>,
    pub tcp_conn: Option<f64>,
    pub read_bytes_per_sec: Option<f64>,
    pub write_bytes_per_sec: Option<f64>,
}

impl From<Option<Stats>> for Numbers {
    fn from(s: Option<Stats>) -> Numbers {
        let Some(s) = s else {
            return Numbers::default();
        };
        Numbers {
            success: Some(s.success),
            rps: Some(s.rps),
            latency_ms_p50: s.latency_ms_p50,
            latency_ms_p95: s.latency_ms_p95,
            latency_ms_p99: s.latency_ms_p99,
            tls: Some(s.tls),
            tcp_conn: Some(s.tcp_conn),
            read_bytes_per_sec: Some(s.read_bytes_per_sec),
            write_bytes_per_sec: Some(s.write_bytes_per_sec),
        }
    }
}

/// Linkerd's formats: `%.2f%%`, `%.1frps`, `%dms` (truncated), `%.f%%`.
fn cells(n: &Numbers, wide: bool) -> Vec<String> {
    let dash = || "-".to_string();
    let pct = |v: Option<f64>, places: usize| {
        v.map_or_else(dash, |v| format!("{:.*}%", places, v * 100.0))
    };
    let ms = |v: Option<f64>| v.map_or_else(dash, |v| format!("{}ms", v.max(0.0) as u64));
    let mut out = vec![
        pct(n.success, 2),
        n.rps.map_or_else(dash, |v| format!("{v:.1}rps")),
        ms(n.latency_ms_p50),
        ms(n.latency_ms_p95),
        ms(n.latency_ms_p99),
        pct(n.tls, 0),
    ];
    if wide {
        out.push(
            n.tcp_conn
                .map_or_else(dash, |v| format!("{}", v.max(0.0) as u64)),
        );
        out.push(
            n.read_bytes_per_sec
                .map_or_else(dash, |v| format!("{v:.1}B/s")),
        );
        out.push(
            n.write_bytes_per_sec
                .map_or_else(dash, |v| format!("{v:.1}B/s")),
        );
    }
    out
}

/// The table: names left-aligned, numbers right-aligned, three spaces
/// between columns (Linkerd's tabwriter padding).
pub fn table(rows: &[Row], with_namespace: bool, wide: bool) -> String {
    let mut header: Vec<&str> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TLS",
    ]);
    if wide {
        header.extend(["TCP_CONN", "READ_BYTES/SEC", "WRITE_BYTES/SEC"]);
    }
    let left = if with_namespace { 2 } else { 1 };
    let mut grid: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let mut line = Vec::new();
        if with_namespace {
            line.push(r.namespace.clone());
        }
        line.push(r.name.clone());
        line.push(r.meshed.clone());
        line.extend(cells(&r.numbers, wide));
        grid.push(line);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| grid.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in grid {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c > 0 {
                text.push_str("   ");
            }
            if c < left {
                text.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                text.push_str(&format!("{cell:>w$}", w = widths[c]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, meshed: &str, stats: Option<Stats>) -> Row {
        Row {
            namespace: "unlabeled".into(),
            kind: "deployment",
            name: name.into(),
            meshed: meshed.into(),
            numbers: stats.into(),
        }
    }

    fn traffic() -> Stats {
        Stats {
            success: 1.0,
            rps: 2.0,
            latency_ms_p50: Some(1.7),
            latency_ms_p95: Some(4.75),
            latency_ms_p99: Some(9.9),
            tls: 1.0,
            tcp_conn: 1.0,
            read_bytes_per_sec: 120.0,
            write_bytes_per_sec: 340.5,
        }
    }

    #[test]
    fn the_seeds_table() {
        let t = table(
            &[
                row("nginx-completed", "0/1", None),
                row("nginx-enabled", "1/1", Some(traffic())),
            ],
            false,
            false,
        );
        assert_eq!(
            t,
            "NAME              MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99    TLS\n\
             nginx-completed      0/1         -        -             -             -             -      -\n\
             nginx-enabled        1/1   100.00%   2.0rps           1ms           4ms           9ms   100%\n"
        );
    }

    #[test]
    fn wide_adds_tcp_and_all_namespaces_adds_the_namespace() {
        let t = table(&[row("web", "1/1", Some(traffic()))], true, true);
        let mut lines = t.lines();
        let header = lines.next().unwrap_or_default();
        assert!(header.starts_with("NAMESPACE   NAME"), "{header}");
        assert!(
            header.ends_with("TCP_CONN   READ_BYTES/SEC   WRITE_BYTES/SEC"),
            "{header}"
        );
        let line = lines.next().unwrap_or_default();
        assert!(line.starts_with("unlabeled   web "), "{line}");
        assert!(
            line.ends_with("1         120.0B/s          340.5B/s"),
            "{line}"
        );
    }

    #[test]
    fn json_has_nulls_without_traffic() {
        let v = serde_json::to_value(row("idle", "1/1", None)).unwrap_or_default();
        assert_eq!(v["name"], "idle");
        assert_eq!(v["kind"], "deployment");
        assert_eq!(v["meshed"], "1/1");
        assert!(v["success"].is_null() && v["rps"].is_null() && v["tls"].is_null());
        let v = serde_json::to_value(row("web", "1/1", Some(traffic()))).unwrap_or_default();
        assert_eq!(v["rps"], 2.0);
        assert_eq!(v["latency_ms_p95"], 4.75);
    }
}
