//! `App`: what every handler shares — the store, the caches, the limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::Access;
use crate::archive::cache::Caches;
use crate::doorbell::Doorbell;
use crate::hub::Commits;
use crate::index::JobIndex;
use crate::metrics::Metrics;
use crate::names::JobId;
use crate::runner::Jobs;
use crate::store::Store;
use crate::store::audit::Audit;
use crate::store::digests::Digests;
use crate::store::history::Histories;

/// Limits and knobs fixed at start-up.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request worker threads.
    pub workers: usize,
    /// Downloads streaming at once; more get 503.
    pub max_downloads: usize,
    /// Send stored file data with sendfile(2) rather than read and write.
    pub sendfile: bool,
    /// Client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Live event streams (SSE and WebSocket) at once; more get 503.
    pub max_streams: usize,
    /// How long a connection may be silent waiting for its next request.
    pub read_timeout: Duration,
    /// How long a client has for a whole request head, however it trickles.
    pub header_timeout: Duration,
    /// How long a client may stop reading a response before it is dropped.
    pub write_timeout: Duration,
    /// `--keep-checkpoints`: finished jobs keep this many complete
    /// checkpoints, the newest; older ones are deleted.
    pub keep_checkpoints: Option<usize>,
    /// `--disk-warn-percent`: the root's file system counts as filling up
    /// from this share used.
    pub disk_warn_percent: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 8,
            max_downloads: 16,
            sendfile: true,
            max_connections: 1024,
            max_streams: 64,
            read_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            keep_checkpoints: None,
            disk_warn_percent: 90.0,
        }
    }
}

/// Largest request body read (job submissions are a few hundred bytes).
pub const BODY_MAX: usize = 64 * 1024;

pub struct App {
    pub store: Arc<Store>,
    /// The job runner, as the handlers use it (a trait, so tests can give
    /// one that runs nothing).
    pub runner: Arc<dyn Jobs>,
    /// Tokens, sessions, login attempts, the hosts and origins browsers may use.
    pub access: Access,
    pub limits: Limits,
    /// CRCs, deflated sizes and deflated bytes of files already read, for
    /// exact lengths, cheap resumes and no repeated deflating.
    pub caches: Arc<Caches>,
    pub downloads: Counter,
    /// Downloads in flight by job (deletion waits for none).
    pub job_downloads: JobDownloads,
    pub streams: Counter,
    /// Rung when a download starts or ends (for `STATUS=`).
    pub changes: Doorbell,
    /// Set when the server starts to stop: live streams end.
    pub stopping: std::sync::atomic::AtomicBool,
    /// What has been read of each job's `metrics.jsonl` (`store::history`).
    pub histories: Histories,
    /// Every job's view, in memory and kept fresh.
    pub index: Arc<JobIndex>,
    /// CRC-32 and SHA-256 of files, persisted under the root; filled in
    /// the background (`index::digester`).
    pub digests: Arc<Digests>,
    /// Every download, appended to `downloads.jsonl` (`store::audit`).
    pub audit: Option<Audit>,
    pub metrics: Metrics,
    /// Commit ids the Hub routes gave out, and what each was.
    pub hub_commits: Commits,
}

impl App {
    pub fn new(
        store: Arc<Store>,
        index: Arc<JobIndex>,
        runner: Arc<dyn Jobs>,
        access: Access,
        limits: Limits,
        changes: Doorbell,
    ) -> App {
        App {
            digests: Arc::new(store.digests()),
            audit: store
                .audit()
                .inspect_err(|e| log::warn!("download audit: cannot open ({e}); not recorded"))
                .ok(),
            store,
            runner,
            access,
            limits,
            caches: Arc::new(Caches::default()),
            downloads: Counter::default(),
            job_downloads: JobDownloads::default(),
            streams: Counter::default(),
            changes,
            stopping: std::sync::atomic::AtomicBool::new(false),
            histories: Histories::default(),
            index,
            metrics: Metrics::default(),
            hub_commits: Commits::default(),
        }
    }
}

/// A count of things in flight with an upper bound; a [`Slot`] holds one.
#[derive(Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// Takes a slot unless `max` are taken.
    pub fn try_acquire(&self, max: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.0)))
    }

    pub fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Downloads in flight by job, so a job is not deleted under one.
#[derive(Default)]
pub struct JobDownloads(Arc<Mutex<HashMap<JobId, usize>>>);

impl JobDownloads {
    /// Counts a download of `id` until the guard is dropped.
    pub fn enter(&self, id: &JobId) -> JobDownload {
        *self.lock().entry(id.clone()).or_default() += 1;
        JobDownload(Arc::clone(&self.0), id.clone())
    }

    /// Runs `remove` unless a download of `id` is in flight (then `None`);
    /// no download of it is admitted meanwhile.
    pub fn unless_downloading<T>(&self, id: &JobId, remove: impl FnOnce() -> T) -> Option<T> {
        let held = self.lock();
        (held.get(id).copied().unwrap_or(0) == 0).then(remove)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One download of a job in flight (see [`JobDownloads`]).
pub struct JobDownload(Arc<Mutex<HashMap<JobId, usize>>>, JobId);

impl Drop for JobDownload {
    fn drop(&mut self) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

/// One taken place in a [`Counter`], given back on drop.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_bounds_and_releases() {
        let counter = Counter::default();
        let a = counter.try_acquire(2).unwrap();
        let _b = counter.try_acquire(2).unwrap();
        assert!(counter.try_acquire(2).is_none());
        drop(a);
        assert_eq!(counter.current(), 1);
        assert!(counter.try_acquire(2).is_some());
    }
}
