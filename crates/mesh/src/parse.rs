//! Parsers for the value syntaxes Linkerd annotations use: Go durations,
//! Kubernetes quantities, ports and port ranges, CIDRs and booleans.
//!
//! Each parser returns a message suitable for a user-facing warning on failure.

use std::net::IpAddr;

/// Parses a Go `time.ParseDuration` string (`300ms`, `1.5h`, `1h2m3s`) into
/// nanoseconds. Negative durations are rejected: no Linkerd setting accepts them.
pub fn go_duration_nanos(s: &str) -> Result<u128, String> {
    let err = || format!("{s:?} is not a duration (expected e.g. 300ms, 10s, 1h30m)");
    let mut rest = s.trim();
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += num * scale;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(total as u128)
}

/// Renders a duration as whole milliseconds (`<n>ms`), as Linkerd does for
/// connect timeouts and the shutdown grace period.
pub fn duration_as_millis(s: &str) -> Result<String, String> {
    Ok(format!("{}ms", go_duration_nanos(s)? / 1_000_000))
}

/// Renders a duration as whole seconds (`<n>s`), as Linkerd does for the
/// discovery cache timeouts.
pub fn duration_as_secs(s: &str) -> Result<String, String> {
    Ok(format!("{}s", go_duration_nanos(s)? / 1_000_000_000))
}

/// Parses a Kubernetes resource quantity (`100m`, `1.5`, `64Mi`, `1e3`) and returns
/// its value in base units (cores for CPU, bytes for memory).
pub fn quantity(s: &str) -> Result<f64, String> {
    let err = || format!("{s:?} is not a Kubernetes quantity (expected e.g. 100m, 0.5, 64Mi)");
    let t = s.trim();
    if t.is_empty() || t != s {
        return Err(err());
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'+' => (1.0, &t[1..]),
        b'-' => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| err())?;
            if !(-30..=30).contains(&e) {
                return Err(err());
            }
            10f64.powi(e)
        }
        _ => return Err(err()),
    };
    let v = sign * n * mult;
    if v < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok(v)
}

/// Whole CPU cores for a CPU quantity, rounded up (`1.5` → 2, `100m` → 1).
pub fn whole_cpu_cores(s: &str) -> Result<u32, String> {
    let v = quantity(s)?;
    let cores = v.ceil();
    if cores > u32::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(cores as u32)
}

/// Parses a TCP port (1..=65535).
pub fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

/// A port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Parses `80` or `8000-8100`.
pub fn port_range(s: &str) -> Result<PortRange, String> {
    let s = s.trim();
    match s.split_once('-') {
        None => port(s).map(|p| PortRange { lo: p, hi: p }),
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err(format!("{s:?} is an empty range"));
            }
            Ok(PortRange { lo, hi })
        }
    }
}

/// Parses a comma-separated list of ports and ranges. Empty entries are ignored.
pub fn port_ranges(s: &str) -> Result<Vec<PortRange>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(port_range)
        .collect()
}

/// Parses a comma-separated list of CIDRs (`10.0.0.0/8,fd00::/8`).
pub fn cidrs(s: &str) -> Result<(), String> {
    for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (addr, len) = c
            .split_once('/')
            .ok_or_else(|| format!("{c:?} is not a CIDR (expected e.g. 10.0.0.0/8)"))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{c:?} is not a CIDR: bad address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(l) if l <= max => {}
            _ => return Err(format!("{c:?} is not a CIDR: bad prefix length")),
        }
    }
    Ok(())
}

/// Parses a boolean the way Go's `strconv.ParseBool` does.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Parses `enabled`/`disabled`.
pub fn enabled_disabled(s: &str) -> Result<bool, String> {
    match s {
        "enabled" => Ok(true),
        "disabled" => Ok(false),
        _ => Err(format!("{s:?} is not one of enabled, disabled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_nanos("300ms").unwrap(), 300_000_000);
        assert_eq!(go_duration_nanos("1h2m3s").unwrap(), 3_723_000_000_000);
        assert_eq!(go_duration_nanos("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(go_duration_nanos("0").unwrap(), 0);
        for bad in ["", "10", "s", "1x", "-1s", "1.2.3s", "ms10"] {
            assert!(go_duration_nanos(bad).is_err(), "{bad}");
        }
        // Linkerd's own conversions (pkg/inject TestGetOverriddenValues).
        assert_eq!(duration_as_millis("30s").unwrap(), "30000ms");
        assert_eq!(duration_as_secs("50000ms").unwrap(), "50s");
        assert_eq!(duration_as_secs("6000ms").unwrap(), "6s");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("100m").unwrap(), 0.1);
        assert_eq!(quantity("64Mi").unwrap(), 64.0 * 1024.0 * 1024.0);
        assert_eq!(quantity("1e3").unwrap(), 1000.0);
        assert_eq!(quantity("3").unwrap(), 3.0);
        assert_eq!(quantity(".5").unwrap(), 0.5);
        for bad in ["", "abc", "1.2.3", "10Xi", " 1", "-1", "1e999", "."] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
        assert_eq!(whole_cpu_cores("1.5").unwrap(), 2);
        assert_eq!(whole_cpu_cores("100m").unwrap(), 1);
        assert_eq!(whole_cpu_cores("3").unwrap(), 3);
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(port("80").unwrap(), 80);
        assert!(port("0").is_err());
        assert!(port("65536").is_err());
        assert!(port("http").is_err());
        assert_eq!(
            port_ranges("22, 8100-8102,").unwrap(),
            vec![
                PortRange { lo: 22, hi: 22 },
                PortRange { lo: 8100, hi: 8102 }
            ]
        );
        assert!(port_ranges("9-1").is_err());
        assert_eq!(PortRange { lo: 5, hi: 7 }.to_string(), "5-7");
    }

    #[test]
    fn cidr_lists() {
        assert!(cidrs("10.0.0.0/8,fd00::/8").is_ok());
        assert!(cidrs("10.0.0.0/33").is_err());
        assert!(cidrs("10.0.0.0").is_err());
        assert!(cidrs("nope/8").is_err());
    }

    #[test]
    fn booleans() {
        assert!(go_bool("true").unwrap());
        assert!(!go_bool("F").unwrap());
        assert!(go_bool("yes").is_err());
        assert!(enabled_disabled("enabled").unwrap());
        assert!(enabled_disabled("on").is_err());
    }
}
