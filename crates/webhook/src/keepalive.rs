//! HTTP/1 keep-alive without the idle-close race.
//!
//! hyper has one HTTP/1 timer, `header_read_timeout`, and runs it from the end
//! of one response to the end of the next request's head: it is both the
//! slow-header (slowloris) limit and the keep-alive idle limit. A short value
//! closes idle connections early, and a client that reuses a pooled connection
//! just as the server closes it sees `EOF`. The API server talks HTTP/1.1 to
//! webhooks (observed with 1.20; ALPN `http/1.1`) and keeps idle connections
//! for 90 s (client-go's transport default), and a POST is never retried: the
//! review fails, and the pod is created without its proxy (`failurePolicy:
//! Ignore`) or not at all (`Fail`). Linkerd's own webhooks hit exactly this
//! (linkerd/linkerd2#14096, hyperium/hyper#3828).
//!
//! So the two limits are split here: hyper's timer is set to
//! [`KEEP_ALIVE_IDLE`] (longer than the client's 90 s, so the client always
//! closes first), and [`HeadTimed`] enforces the short head limit itself: the
//! clock starts at the first byte of a request head and stops when hyper
//! hands the request to the service ([`HeadClock::request_started`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long an HTTP/1 connection may stay idle between requests: longer than
/// client-go's 90 s `IdleConnTimeout`, so the client closes first.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(120);

/// Where an HTTP/1 connection is, as far as the head deadline is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: bytes that arrive start a request head.
    Idle,
    /// A request head has started arriving at this instant.
    Head(Instant),
    /// This many requests are with the service (their bodies are bounded
    /// elsewhere).
    Serving(usize),
}

/// Shared between a connection's I/O wrapper and its service.
#[derive(Debug)]
pub struct HeadClock {
    phase: Mutex<Phase>,
    limit: Duration,
}

impl HeadClock {
    /// A clock whose request heads must arrive in full within `limit`.
    pub fn new(limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Idle),
            limit,
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // A poisoned phase is still a phase (nothing panics holding it).
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived at `now`; the deadline of the head they start, if any.
    fn bytes_arrived(&self, now: Instant) -> Option<Instant> {
        let mut phase = self.phase();
        match *phase {
            Phase::Idle => {
                *phase = Phase::Head(now);
                Some(now + self.limit)
            }
            Phase::Head(start) => Some(start + self.limit),
            Phase::Serving(_) => None,
        }
    }

    /// The deadline of a head being read, if one is.
    fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(start) => Some(start + self.limit),
            _ => None,
        }
    }

    /// hyper parsed a request head and calls the service: the head is
    /// complete. The returned guard marks the request done when dropped.
    pub fn request_started(self: &Arc<Self>) -> Serving {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Serving(n) => Phase::Serving(n + 1),
            Phase::Idle | Phase::Head(_) => Phase::Serving(1),
        };
        Serving(self.clone())
    }
}

/// A request with the service; dropping it (answered or cancelled) returns
/// the connection to idle once no other request is being served.
#[derive(Debug)]
pub struct Serving(Arc<HeadClock>);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Serving(n) if n > 1 => Phase::Serving(n - 1),
            _ => Phase::Idle,
        };
    }
}

/// An HTTP/1 connection's I/O that fails reads once a request head has taken
/// longer than the clock's limit (hyper then closes the connection).
pub struct HeadTimed<IO> {
    inner: IO,
    clock: Arc<HeadClock>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl<IO> HeadTimed<IO> {
    pub fn new(inner: IO, clock: Arc<HeadClock>) -> Self {
        Self {
            inner,
            clock,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed_for: None,
        }
    }

    /// Polls the head deadline; `Ready` once it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.armed_for != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed_for = Some(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

fn head_timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("request head not complete within {}s", limit.as_secs()),
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadTimed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let now = Instant::now();
                match this.clock.bytes_arrived(now) {
                    Some(deadline) if now >= deadline => {
                        Poll::Ready(Err(head_timed_out(this.clock.limit)))
                    }
                    _ => Poll::Ready(Ok(())),
                }
            }
            Poll::Pending => match this.clock.deadline() {
                Some(deadline) => {
                    ready!(this.poll_deadline(cx, deadline));
                    Poll::Ready(Err(head_timed_out(this.clock.limit)))
                }
                None => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadTimed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_starts_with_its_first_byte_and_ends_at_the_service() {
        let clock = HeadClock::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(clock.deadline(), None, "idle: no deadline");
        assert_eq!(clock.bytes_arrived(t0), Some(t0 + Duration::from_secs(5)));
        // Later bytes of the same head keep its deadline.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(clock.bytes_arrived(t1), Some(t0 + Duration::from_secs(5)));
        let serving = clock.request_started();
        // Body bytes while serving start nothing.
        assert_eq!(clock.bytes_arrived(t1), None);
        assert_eq!(clock.deadline(), None);
        drop(serving);
        // Idle again: the next request's head gets a fresh deadline.
        let t2 = t0 + Duration::from_secs(100);
        assert_eq!(clock.bytes_arrived(t2), Some(t2 + Duration::from_secs(5)));
    }

    #[test]
    fn pipelined_requests_keep_the_connection_serving() {
        let clock = HeadClock::new(Duration::from_secs(5));
        let a = clock.request_started();
        let b = clock.request_started();
        drop(a);
        assert_eq!(
            clock.bytes_arrived(Instant::now()),
            None,
            "b is still served"
        );
        drop(b);
        assert!(clock.bytes_arrived(Instant::now()).is_some());
    }
}
