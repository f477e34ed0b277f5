//! Logging for every server: to stderr, plain or JSON lines, colour only on
//! a terminal, with rustls held to errors unless the filter names it.

use anyhow::Result;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

impl LogFormat {
    /// The spelling of the servers' `--log-format`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not a log format: use plain or json")),
        }
    }
}

/// A server's logging: the filter (`info`, `kinject_webhook=debug,info`, …)
/// and the format.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

impl LogSettings {
    /// Installs the tracing subscriber for the process.
    pub fn init(&self) -> Result<()> {
        let filter = filter(&self.filter)?;
        // Colour only on a terminal: in a pod stderr is a pipe that
        // `kubectl logs` and log collectors read.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        match self.format {
            LogFormat::Plain => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        }
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
    }
}

/// The filter. rustls warns per connection about what clients send (an IP
/// address as SNI, as curl and wrk do, one line per handshake), so it is
/// held to errors unless the operator's filter mentions it.
pub fn filter(level: &str) -> Result<tracing_subscriber::EnvFilter> {
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
            .with_env_filter(filter(level).expect("valid filter"))
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
        assert!(filter("info,=[").is_err());
    }
}
