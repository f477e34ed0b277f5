//! Returning freed memory to the OS while a server is idle.
//!
//! mimalloc purges freed memory lazily: a freed page is scheduled for purging
//! after `MIMALLOC_PURGE_DELAY` (10 ms for the servers), but the purge itself
//! runs only when the allocator is next used to free or take a page. A server
//! that goes quiet right after a burst of large reviews therefore kept its peak
//! (~28 MiB) until the next burst. A periodic [`collect`] lets due purges
//! happen: measured, the injector returns to ~16 MiB within a second of a
//! 100 KB-review burst ending. Under load it costs one heap walk a second.

use std::time::Duration;

/// How often a server lets mimalloc purge what is due.
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(1);

/// Frees what mimalloc can: the calling thread's empty pages, and (with
/// `force`) every purge scheduled in the process at once instead of when due.
#[allow(unsafe_code)]
pub fn collect(force: bool) {
    // SAFETY: `mi_collect` has no preconditions: it may be called from any
    // thread at any time, and only releases memory no live allocation uses.
    // The global allocator is mimalloc (main.rs), the library this links.
    unsafe { libmimalloc_sys::mi_collect(force) }
}

/// Runs [`collect`] (not forced) every [`COLLECT_INTERVAL`] on the current
/// tokio runtime, for as long as the runtime lives.
pub fn spawn_periodic_collect() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(COLLECT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            collect(false);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmRSS")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn collect_returns_freed_memory_to_the_os() {
        // 48 MiB in 64 KiB blocks, touched so it is resident, then freed on a
        // thread that then exits (its pages go back to the shared arena).
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..768).map(|i| vec![i as u8; 64 * 1024]).collect();
            std::hint::black_box(&blocks);
        })
        .join()
        .expect("allocating thread");
        let before = rss_kib();
        collect(true);
        let after = rss_kib();
        // Other tests run in this process too: ask for most, not all, of it.
        assert!(
            after + 24 * 1024 < before,
            "RSS {before} KiB -> {after} KiB after collect"
        );
    }
}
