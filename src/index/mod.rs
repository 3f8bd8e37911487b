//! The job index: every job's view held in memory, with its JSON already
//! serialized, so the list, a page of it and one job are answered without
//! touching the disk.
//!
//! It is built from the store once at start-up and kept fresh by `watch`:
//! inotify on the root's `jobs/` tree where the kernel gives it, and a
//! bounded revalidation by stamp (inode, size, mtime) as the fallback, for
//! jobs beyond the watch limit and after an event overflow. A change on
//! disk is visible within [`FRESHNESS`]. Handlers that change a job
//! themselves (start, pause, resume, cancel) refresh it before they answer,
//! so a client reads its own writes. Live streams wait on the index's
//! changes instead of polling files.
//!
//! Not here: reading files (the store) and what a view means (`view`).

pub mod digester;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::names::{Cursor, JobId};
use crate::store::records::JobStatus;
use crate::store::{Stamp, Store};
use crate::view::{JobSnapshot, Sourced, progress_json};
use serde_json::Value;

pub use watch::Mode;

/// The longest a change on disk takes to show.
pub const FRESHNESS: Duration = Duration::from_millis(250);

/// One job as the index holds it: what the API serves of it, and no more
/// (the record is not kept: its JSON is).
pub struct Entry {
    pub id: JobId,
    pub status: JobStatus,
    /// The latest progress (kept across a half-written file).
    pub progress: Option<Sourced>,
    /// The job as `GET /api/training/jobs/{id}` shows it, serialized once.
    pub json: Arc<[u8]>,
    /// The list's sort key.
    key: SortKey,
    /// What the files looked like when the job was read.
    stamp: Stamp,
    /// When the status may stop holding though no file changes.
    stale_after: Option<SystemTime>,
}

impl Entry {
    /// What the job's files looked like when it was read.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The progress document (`GET .../progress`, and each live event).
    pub fn progress_json(&self) -> Value {
        progress_json(&self.id, self.status, self.progress.as_ref())
    }
}

/// The list's order: creation time, then id; the list is newest first.
type SortKey = (String, JobId);

#[derive(Default)]
struct Jobs {
    by_id: HashMap<JobId, Arc<Entry>>,
    order: BTreeSet<SortKey>,
}

/// The index; shared by the handlers and its watcher thread.
pub struct JobIndex {
    store: Arc<Store>,
    jobs: RwLock<Jobs>,
    /// The whole list's JSON, built on first request after a change.
    list: Mutex<Option<Arc<[u8]>>>,
    /// Counts changes; live streams wait on it.
    generation: Mutex<u64>,
    changed: Condvar,
    mode: Mutex<Mode>,
    /// Held through each refresh: a read of a job's files and the store
    /// of what was read happen as one, so a refresh that read a job just
    /// before it was deleted cannot put it back after the deleter's own
    /// refresh removed it.
    refreshing: Mutex<()>,
    /// Each job's size on disk, as the housekeeper last measured it.
    sizes: Mutex<HashMap<JobId, u64>>,
}

impl JobIndex {
    /// Reads every job of `store` and starts watching for changes.
    pub fn open(store: Arc<Store>) -> io::Result<Arc<JobIndex>> {
        JobIndex::open_with(store, true)
    }

    /// As [`JobIndex::open`]; without inotify when `inotify` is false (how
    /// the fallback is tested).
    pub fn open_with(store: Arc<Store>, inotify: bool) -> io::Result<Arc<JobIndex>> {
        let index = Arc::new(JobIndex {
            store,
            jobs: RwLock::new(Jobs::default()),
            list: Mutex::new(None),
            generation: Mutex::new(0),
            changed: Condvar::new(),
            mode: Mutex::new(Mode::Revalidating),
            refreshing: Mutex::new(()),
            sizes: Mutex::new(HashMap::new()),
        });
        // Watches first: a job that appears while the rest are read is
        // seen by an event or by the scan.
        let watcher = watch::Watcher::new(Arc::clone(&index), inotify);
        for id in index.store.job_ids()? {
            index.refresh(&id);
        }
        watcher.start()?;
        Ok(index)
    }

    /// How changes are noticed now.
    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job's entry: from memory, or from the disk for a job the index
    /// has not seen yet (just made) or whose status has aged.
    pub fn job(&self, id: &JobId) -> Option<Arc<Entry>> {
        let held = self.read().by_id.get(id).cloned();
        match held {
            Some(entry) if !is_aged(&entry) => Some(entry),
            _ => self.refresh(id),
        }
    }

    /// Reads a job from the disk again and replaces its entry (or drops it
    /// when the job is gone). Returns the new entry.
    pub fn refresh(&self, id: &JobId) -> Option<Arc<Entry>> {
        let _one_at_a_time = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let dir = match self.store.job(id) {
            Ok(dir) => dir,
            Err(e) => {
                log::warn!("job {id}: cannot open its directory: {e}");
                None
            }
        };
        let Some(dir) = dir else {
            self.remove(id);
            return None;
        };
        let previous = self.read().by_id.get(id).cloned();
        let stamp = dir.stamp();
        let mut snapshot =
            JobSnapshot::read(&dir, previous.as_ref().and_then(|e| e.progress.as_ref()));
        snapshot.size_bytes = self.sizes().get(id).copied();
        let entry = Arc::new(Entry {
            json: serde_json::to_vec(&snapshot.job_json())
                .expect("JSON values serialize")
                .into(),
            key: (snapshot.created_at.clone().unwrap_or_default(), id.clone()),
            stamp,
            stale_after: snapshot.stale_after(),
            id: snapshot.id,
            status: snapshot.status,
            progress: snapshot.progress,
        });
        if previous
            .as_ref()
            .is_some_and(|p| p.json == entry.json && p.progress == entry.progress)
        {
            // Nothing a client sees changed (a log line, say): keep the
            // list cache and do not wake the streams.
            self.write().by_id.insert(id.clone(), Arc::clone(&entry));
            return Some(entry);
        }
        {
            let mut jobs = self.write();
            if let Some(old) = jobs.by_id.insert(id.clone(), Arc::clone(&entry)) {
                jobs.order.remove(&old.key);
            }
            jobs.order.insert(entry.key.clone());
        }
        self.changed();
        Some(entry)
    }

    /// Records job `id`'s size on disk; its entry shows it from now on.
    pub fn set_size(&self, id: &JobId, bytes: u64) {
        if self.sizes().insert(id.clone(), bytes) != Some(bytes) {
            self.refresh(id);
        }
    }

    /// What the jobs take on disk together, as last measured.
    pub fn total_size(&self) -> u64 {
        self.sizes().values().sum()
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, u64>> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refreshes `id` if its files changed since it was read (by stamp).
    fn revalidate(&self, id: &JobId) {
        let held = self.read().by_id.get(id).cloned();
        let current = match self.store.job(id) {
            Ok(Some(dir)) => Some(dir.stamp()),
            Ok(None) => None,
            Err(_) => return,
        };
        match (held, current) {
            (Some(entry), Some(stamp)) if entry.stamp == stamp && !is_aged(&entry) => {}
            (None, None) => {}
            _ => {
                self.refresh(id);
            }
        }
    }

    fn remove(&self, id: &JobId) {
        self.sizes().remove(id);
        let removed = {
            let mut jobs = self.write();
            let old = jobs.by_id.remove(id);
            if let Some(old) = &old {
                jobs.order.remove(&old.key);
            }
            old.is_some()
        };
        if removed {
            self.changed();
        }
    }

    /// Reads every job on disk again now and drops those gone: what the
    /// watcher does over time, at once (tests, and whoever cannot wait).
    pub fn rescan(&self) -> io::Result<()> {
        let mut ids: std::collections::HashSet<JobId> = self.ids().into_iter().collect();
        ids.extend(self.store.job_ids()?);
        for id in ids {
            self.refresh(&id);
        }
        Ok(())
    }

    /// The ids the index holds now.
    pub fn ids(&self) -> Vec<JobId> {
        self.read().by_id.keys().cloned().collect()
    }

    /// `{"jobs": [...]}`: every job, newest first.
    pub fn list_json(&self) -> Arc<[u8]> {
        let mut cached = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = cached.as_ref() {
            return Arc::clone(list);
        }
        let jobs = self.read();
        let entries = jobs.order.iter().rev().map(|key| &jobs.by_id[&key.1]);
        let mut out = Vec::with_capacity(64 + jobs.by_id.len() * 512);
        out.extend_from_slice(b"{\"jobs\":");
        write_array(&mut out, entries);
        out.push(b'}');
        let list: Arc<[u8]> = out.into();
        *cached = Some(Arc::clone(&list));
        list
    }

    /// `{"jobs": [...], "next": cursor|null}`: at most `limit` jobs after
    /// the cursor, newest first; O(page).
    pub fn page_json(&self, limit: usize, after: Option<&Cursor>) -> Vec<u8> {
        let jobs = self.read();
        let before: Box<dyn DoubleEndedIterator<Item = &SortKey>> = match after {
            Some(cursor) => Box::new(
                jobs.order
                    .range(..(cursor.created_at.clone(), cursor.id.clone())),
            ),
            None => Box::new(jobs.order.iter()),
        };
        let mut keys = before.rev();
        let page: Vec<&SortKey> = keys.by_ref().take(limit).collect();
        let next = match (page.last(), keys.next()) {
            (Some((created_at, id)), Some(_)) => Some(
                Cursor {
                    created_at: created_at.clone(),
                    id: id.clone(),
                }
                .render(),
            ),
            _ => None,
        };
        let mut out = Vec::with_capacity(64 + page.len() * 512);
        out.extend_from_slice(b"{\"jobs\":");
        write_array(&mut out, page.iter().map(|key| &jobs.by_id[&key.1]));
        out.extend_from_slice(b",\"next\":");
        serde_json::to_writer(&mut out, &next).expect("a string serializes");
        out.push(b'}');
        out
    }

    /// How many jobs have each status now.
    pub fn counts(&self) -> Vec<(JobStatus, usize)> {
        let mut counts: Vec<(JobStatus, usize)> = Vec::new();
        for entry in self.read().by_id.values() {
            let status = entry.status;
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
        }
        counts
    }

    /// The number of changes so far; pass it to [`JobIndex::wait_for_change`].
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a change after `seen`, or `timeout`; returns the
    /// generation now.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, _) = self
            .changed
            .wait_timeout_while(generation, timeout, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
        *generation
    }

    fn changed(&self) {
        *self.list.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Jobs> {
        self.jobs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Jobs> {
        self.jobs.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// True once an entry's status may no longer hold though no file changed.
fn is_aged(entry: &Entry) -> bool {
    entry.stale_after.is_some_and(|at| SystemTime::now() >= at)
}

/// `[a,b,...]` from entries' serialized JSON.
fn write_array<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = &'a Arc<Entry>>) {
    out.push(b'[');
    for (i, entry) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&entry.json);
    }
    out.push(b']');
}
