//! Flags and helpers shared by the long-running servers (`proxy-injector`,
//! `identity`, `destination`), and how each of their processes starts
//! ([`serve`]).

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use kinject_mesh::parse;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// `--log-level` (also `-log-level`) and `--log-format`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log filter (`info`, `debug`, `kinject_webhook=debug,info`, …). rustls
    /// logs only errors unless the filter names it (`info,rustls=debug`): it
    /// warns once per connection about client quirks, which any client could
    /// use to flood the log.
    #[arg(long, env = "KINJECT_LOG", default_value = "info")]
    pub log_level: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// How every server process runs, after its flags were read: logging, the
/// crypto provider, a multi-threaded runtime with the allocator's periodic
/// collect, then the server. (Each `run` first applies the allocator's
/// options, which may re-execute the process.)
pub fn serve<Fut>(log: &LogArgs, server: impl FnOnce() -> Fut) -> Result<i32>
where
    Fut: std::future::Future<Output = Result<()>>,
{
    log.init()?;
    kinject_runtime::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        crate::allocator::spawn_periodic_collect();
        server().await
    })?;
    Ok(0)
}

/// The cluster a server works on, or what to do when there is none.
pub async fn cluster(server: &str) -> Result<kube::Client> {
    kinject_k8s::client::client().await.map_err(|e| {
        anyhow::anyhow!(
            "{server} needs a cluster: set KUBECONFIG (or --kubeconfig) or run in a pod ({e})"
        )
    })
}

impl LogArgs {
    /// Installs the tracing subscriber (stderr, plain or JSON lines).
    pub fn init(&self) -> Result<()> {
        let filter = log_filter(&self.log_level)?;
        // Colour only on a terminal: in a pod stderr is a pipe that
        // `kubectl logs` and log collectors read.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Plain => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        }
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
    }
}

/// The `--log-level` filter. rustls warns per connection about what clients
/// send (an IP address as SNI, as curl and wrk do, one line per handshake),
/// so it is held to errors unless the operator's filter mentions it.
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))?;
    if level.contains("rustls") {
        return Ok(filter);
    }
    let quiet = "rustls=error"
        .parse()
        .map_err(|e| anyhow::anyhow!("built-in log directive: {e}"))?;
    Ok(filter.add_directive(quiet))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a subscriber with `--log-level level` writes for a rustls warning,
    /// a rustls error and a kinject warning.
    fn logged(level: &str) -> String {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(level).expect("valid filter"))
            .with_ansi(false)
            .with_writer(move || SharedBuf(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rustls::msgs::handshake", "rustls-warning");
            tracing::error!(target: "rustls::conn", "rustls-error");
            tracing::warn!(target: "kinject_webhook::server", "kinject-warning");
        });
        let bytes = out.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rustls_is_held_to_errors_unless_named() {
        for level in ["info", "debug", "warn"] {
            let out = logged(level);
            assert!(!out.contains("rustls-warning"), "{level}: {out}");
            assert!(out.contains("rustls-error"), "{level}: {out}");
            assert!(out.contains("kinject-warning"), "{level}: {out}");
        }
        let out = logged("info,rustls=warn");
        assert!(out.contains("rustls-warning"), "{out}");
        assert!(log_filter("info,=[").is_err());
    }
}
