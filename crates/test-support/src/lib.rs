//! What the test suites of several crates share (destination's gRPC tests
//! and the CLI's cluster and policy tests read the same streams the same
//! way). A dev-dependency only: no shipped crate depends on it.
#![forbid(unsafe_code)]

use std::time::Duration;

/// The stream's next message within `within`; panics if none comes, the
/// stream fails or it ends.
pub async fn next_message<T>(s: &mut tonic::Streaming<T>, within: Duration) -> T {
    tokio::time::timeout(within, s.message())
        .await
        .unwrap_or_else(|_| panic!("an update within {within:?}"))
        .expect("no error")
        .expect("the stream stays open")
}

/// No message for `within`: the change did not concern this stream.
pub async fn no_message_within<T: std::fmt::Debug>(s: &mut tonic::Streaming<T>, within: Duration) {
    if let Ok(m) = tokio::time::timeout(within, s.message()).await {
        panic!("no update expected, got {m:?}");
    }
}
