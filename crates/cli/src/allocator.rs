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

/// mimalloc's defaults suit the batch CLI, not a long-running server: arenas
/// are committed eagerly (~9 MiB of idle RSS), and freed memory is kept for a
/// second before it is returned (mimalloc 3's `purge_delay` of 1000 ms: under
/// 64 connections of 100 KB reviews, peaks of 35-47 MiB instead of ~28).
/// mimalloc reads its options from the environment once, before `main`, so
/// the server re-executes itself with lazy commit and a 10 ms purge delay
/// (mimalloc 2's default), leaving alone any setting the operator chose.
/// Purging at once (`0`) was measured too: a third less throughput on 100 KB
/// reviews, spent in page faults.
const SERVER_ALLOCATOR_OPTIONS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "10"),
];

#[cfg(unix)]
pub fn ensure_server_allocator_options() -> anyhow::Result<()> {
    let missing: Vec<_> = SERVER_ALLOCATOR_OPTIONS
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (var, value) in &missing {
        cmd.env(var, value);
    }
    let err = cmd.exec();
    // exec only returns on failure; carry on with the defaults.
    eprintln!("warning: could not re-execute with server allocator options: {err}");
    Ok(())
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
