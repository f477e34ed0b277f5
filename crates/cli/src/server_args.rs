//! Flags shared by the long-running servers (`proxy-injector`, `identity`,
//! `destination`), and the runtime each of their processes runs on
//! ([`runtime`]).

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use kinject_mesh::parse;
use kinject_runtime::Builder;
use kinject_runtime::log::{LogFormat, LogSettings};

/// `--log-level` (also `-log-level`) and `--log-format`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log filter (`info`, `debug`, `kinject_webhook=debug,info`, …). rustls
    /// logs only errors unless the filter names it (`info,rustls=debug`): it
    /// warns once per connection about client quirks, which any client could
    /// use to flood the log.
    #[arg(long, env = "KINJECT_LOG", default_value = "info")]
    pub log_level: String,
    /// `plain` or `json` (one object a line).
    #[arg(long, default_value = "plain", value_parser = str::parse::<LogFormat>)]
    pub log_format: LogFormat,
}

impl LogArgs {
    pub fn settings(&self) -> LogSettings {
        LogSettings {
            filter: self.log_level.clone(),
            format: self.log_format,
        }
    }
}

/// The runtime a server process runs on (`kinject_runtime::Builder`), with
/// the allocator's periodic collect. (Each command first applies the
/// allocator's options, which may re-execute the process.)
pub fn runtime(name: &'static str, log: &LogArgs, drain: Duration) -> Builder {
    Builder::new(name)
        .log(log.settings())
        .drain(drain)
        .on_start(crate::allocator::spawn_periodic_collect)
}

/// A Go duration flag (zero allowed; negative durations are refused).
pub fn duration(flag: &str, v: &str) -> Result<Duration> {
    let n = parse::go_duration_nanos(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    u64::try_from(n)
        .map(Duration::from_nanos)
        .map_err(|_| anyhow::anyhow!("{flag} must not be negative"))
}

/// A strictly positive Go duration flag.
pub fn positive_duration(flag: &str, v: &str) -> Result<Duration> {
    let n = parse::go_duration_nanos(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if n == 0 {
        bail!("{flag} must be positive");
    }
    Ok(Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX)))
}
