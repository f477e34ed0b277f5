//! Graceful shutdown on SIGINT or SIGTERM (what the kubelet sends).

use tracing::warn;

/// Resolves at the first SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The stop sequence every server follows on SIGTERM, as Kubernetes expects
/// of an endpoint behind a Service: first not ready (endpoint removal
/// spreads to kube-proxy and the API server asynchronously), still serving
/// for `drain`; then stop accepting and finish in-flight calls.
#[derive(Clone, Debug)]
pub struct Stopping {
    draining: tokio::sync::watch::Receiver<bool>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

/// What sets a [`Stopping`]'s phases: the signal handler, or a test.
#[derive(Debug)]
pub struct StopSender {
    draining: tokio::sync::watch::Sender<bool>,
    stopped: tokio::sync::watch::Sender<bool>,
}

impl StopSender {
    /// Not ready from now on; keep serving.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }
    /// Stop accepting; finish what is in flight.
    pub fn stop(&self) {
        self.draining.send_replace(true);
        self.stopped.send_replace(true);
    }
}

impl Stopping {
    pub fn new() -> (StopSender, Stopping) {
        let (draining_tx, draining) = tokio::sync::watch::channel(false);
        let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
        (
            StopSender {
                draining: draining_tx,
                stopped: stopped_tx,
            },
            Stopping { draining, stopped },
        )
    }

    /// Drains on the first SIGTERM or SIGINT, and stops `drain` later (a
    /// second signal stops at once).
    pub fn on_signal(drain: std::time::Duration) -> Stopping {
        let (tx, stopping) = Self::new();
        tokio::spawn(async move {
            signal().await;
            tracing::info!(
                drain_seconds = drain.as_secs_f64(),
                "stop requested: not ready, still serving while endpoints are removed"
            );
            tx.drain();
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = signal() => tracing::info!("second stop signal: stopping now"),
            }
            tracing::info!("drain period over: finishing in-flight calls");
            tx.stop();
            // Keep the senders alive: receivers see the phases, not a close.
            std::future::pending::<()>().await;
        });
        stopping
    }

    /// True once the stop sequence has begun (readiness turns false).
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves when the stop sequence begins.
    pub async fn draining(&self) {
        let mut rx = self.draining.clone();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Resolves when servers must stop accepting and finish in-flight calls.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// A `watch` that turns true at [`Self::stopped`], for servers that take one.
    pub fn stopped_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopped.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_are_seen_in_order() {
        let (tx, s) = Stopping::new();
        assert!(!s.is_draining());
        tx.drain();
        assert!(s.is_draining());
        s.draining().await;
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.stopped().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "not stopped while draining");
        tx.stop();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("stopped")
            .expect("task");
    }
}
