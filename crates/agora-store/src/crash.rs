//! Crash points: a **test hook** that kills this process with SIGKILL at a named
//! place, so crash tests (`tests/tests/crash.rs`) can check what a real `kill -9`
//! there leaves on disk and that the node recovers from it.
//!
//! A point is one call, `agora_store::crash::point("publish.committed")`, at a
//! place where a crash leaves an interesting state. It does nothing unless the
//! process was started with [`ENV`] (`AGORA_CRASH_AT`) naming it:
//!
//! - `AGORA_CRASH_AT=publish.committed` kills the process the first time the
//!   point is reached;
//! - `AGORA_CRASH_AT=fetch.chunk_staged#3` kills it the third time;
//! - several points are separated by commas; whichever is reached first kills.
//!
//! The variable is read once, on the first call; unset, a point costs one
//! `OnceLock` read (and, in debug builds, a look-up of its name in [`POINTS`]). The kill is a real SIGKILL (on Unix; elsewhere an abort): no
//! destructor, no flush, no `Drop` of a transaction runs. Before it, one line
//! naming the point goes to stderr, so a test can tell which point fired.
//!
//! Every point is listed in [`POINTS`] with the state a crash there leaves; debug
//! builds panic at a point whose name is not listed, armed or not. Points live in this crate because it
//! is the lowest one that does I/O: the facade calls them too. This module is not
//! fault injection for errors (a point never returns an error) and not a way to
//! stop a node: it exists for tests only.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the points to crash at.
pub const ENV: &str = "AGORA_CRASH_AT";

/// Every crash point, with where it is and what a crash there leaves.
pub const POINTS: &[(&str, &str)] = &[
    ("publish.temp_written", "Artifacts::put: the bytes are in a temp file under artifacts/tmp, not verified or moved"),
    ("publish.file_written", "Store::publish: the artifact file is in place, its rows are not written"),
    ("publish.in_transaction", "Packages::publish: index and manifest written in the uncommitted transaction"),
    ("publish.committed", "Store::publish: the catalog rows are committed, the API has not answered"),
    ("ingest.verified", "IngestHandle::one: a record from a peer verified, not yet queued for the writer"),
    ("ingest.in_transaction", "Packages::ingest_packages: a package of a batch written, the batch not committed"),
    ("ingest.committed", "writer::run: a batch of records from peers committed, its senders not answered"),
    ("sync.page_stored", "network::sync: one catalog-sync page committed, the next not stored"),
    ("fetch.chunk_staged", "transfer::driver: a verified chunk written to tmp/downloads/<digest>.part"),
    ("fetch.staged", "transfer: every chunk staged, the file not yet moved into the store"),
    ("fetch.adopted", "transfer: the file moved into the store, its row not recorded"),
    ("fetch.recorded", "transfer: the artifact's row recorded, eviction and staging cleanup not run"),
    ("evict.row_forgotten", "Storage::evict: an evicted artifact's row deleted, its file not yet"),
];

/// Kills this process with SIGKILL if [`ENV`] names `name` and this is the hit
/// it names (see the module doc); otherwise returns at once.
pub fn point(name: &str) {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    debug_assert!(POINTS.iter().any(|(known, _)| *known == name), "unknown crash point `{name}`");
    let plan = PLAN.get_or_init(|| Plan::parse(std::env::var(ENV).as_deref().unwrap_or("")));
    if !plan.is_empty() && plan.hit(name) {
        kill(name);
    }
}

/// Which points crash, and on which hit.
#[derive(Debug, Default)]
struct Plan {
    armed: Vec<Armed>,
}

#[derive(Debug)]
struct Armed {
    name: String,
    /// The hit that kills, from 1.
    on_hit: u64,
    hits: AtomicU64,
}

impl Plan {
    /// `name[#N],…`; an entry with a bad count is reported on stderr and ignored.
    fn parse(value: &str) -> Self {
        let mut armed = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (name, on_hit) = match entry.split_once('#') {
                None => (entry, 1),
                Some((name, count)) => match count.parse::<u64>() {
                    Ok(count) if count > 0 => (name, count),
                    _ => {
                        eprintln!("agora: ignoring `{entry}` in {ENV}: expected POINT or POINT#N with N ≥ 1");
                        continue;
                    }
                },
            };
            armed.push(Armed { name: name.to_owned(), on_hit, hits: AtomicU64::new(0) });
        }
        Self { armed }
    }

    fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Counts a hit of `name`; true when it is the one that kills.
    fn hit(&self, name: &str) -> bool {
        self.armed
            .iter()
            .filter(|armed| armed.name == name)
            .any(|armed| armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.on_hit)
    }
}

fn kill(name: &str) -> ! {
    eprintln!("agora: crash point `{name}` reached ({ENV}); killing this process with SIGKILL");
    #[cfg(unix)]
    {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    // Not reached on Unix once the signal is delivered.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_counts_hits_per_point() {
        let plan = Plan::parse(" publish.committed , fetch.chunk_staged#3,bad#0,worse#x,");
        assert_eq!(plan.armed.len(), 2);
        assert!(plan.hit("publish.committed"));
        assert!(!plan.hit("publish.committed"), "only the named hit kills");
        assert!(!plan.hit("fetch.chunk_staged"));
        assert!(!plan.hit("fetch.chunk_staged"));
        assert!(plan.hit("fetch.chunk_staged"));
        assert!(!plan.hit("evict.row_forgotten"));
        assert!(Plan::parse("").is_empty());
    }

    #[test]
    fn points_are_unique_and_named_area_dot_step() {
        let mut names: Vec<&str> = POINTS.iter().map(|(name, _)| *name).collect();
        assert!(names.iter().all(|name| name.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
    }
}
