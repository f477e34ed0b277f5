//! Flags and helpers shared by the long-running servers (`proxy-injector`,
//! `identity`).

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use kinject_inject::parse;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// `--log-level` (also `-log-level`) and `--log-format`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log filter (`info`, `debug`, `kinject_webhook=debug,info`, …).
    #[arg(long, env = "KINJECT_LOG", default_value = "info")]
    pub log_level: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the tracing subscriber (stderr, plain or JSON lines).
    pub fn init(&self) -> Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| anyhow::anyhow!("--log-level {:?}: {e}", self.log_level))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Plain => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        }
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
    }
}

/// A strictly positive Go duration flag.
pub fn positive_duration(flag: &str, v: &str) -> Result<Duration> {
    let n = parse::go_duration_nanos(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if n == 0 {
        bail!("{flag} must be positive");
    }
    Ok(Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX)))
}
