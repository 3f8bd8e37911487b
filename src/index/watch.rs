//! How the index notices changes on disk: inotify on `jobs/`, each job's
//! directory, its `model/` and the directories frameworks write progress
//! into (checkpoints, `lightning_logs/`), where the kernel gives it; revalidation by
//! stamp otherwise, in bounded batches (for jobs past the watch limit, when
//! inotify is missing, and after an event overflow), plus a slow sweep of
//! every job as a safety net.
//!
//! Watches are added by path (inotify takes nothing else) with
//! `IN_DONT_FOLLOW | IN_ONLYDIR`, so a symlinked job is revalidated rather
//! than watched. A watch only says "look again": what is read afterwards
//! is read through the store's cap-std root, like everything else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::{FRESHNESS, JobIndex};
use crate::names::JobId;
use crate::store::{JOBS_DIR, LIGHTNING_LOGS, MODEL_DIR};

/// How often events are gathered and dirty jobs refreshed.
const TICK: Duration = Duration::from_millis(100);
/// Jobs revalidated by stamp per tick when they cannot be watched: all of
/// them within `FRESHNESS` up to this many, proportionally longer beyond.
const REVALIDATE_PER_TICK: usize = 200;
/// Every job is revalidated this often even when watched (an event can be
/// lost to an overflow or a directory swapped under a watch).
const SAFETY_SWEEP: Duration = Duration::from_secs(60);
/// Jobs revalidated per tick by the safety sweep.
const SWEEP_PER_TICK: usize = 20;
/// The most watches this server adds (two per job, and a few more for the
/// directories frameworks write into); the kernel's per-user limit is
/// shared with every other process of the user.
const MAX_WATCHES: usize = 16_384;

/// How the index notices changes now (shown by `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// inotify events, within `TICK`.
    Inotify,
    /// Revalidation by stamp only (no inotify).
    Revalidating,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Inotify => "inotify",
            Mode::Revalidating => "revalidating",
        })
    }
}

/// What a watch descriptor watches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watched {
    /// The root, until `jobs/` exists.
    Root,
    /// `jobs/`: jobs appearing and going.
    Jobs,
    /// A job's directory.
    Job(JobId),
    /// A job's `model/`.
    Model(JobId),
    /// A directory inside the job where a framework writes progress: a
    /// checkpoint being written, `lightning_logs/` or its `version_N/`.
    Inner(JobId, PathBuf),
}

/// The watcher's state, owned by its thread.
pub struct Watcher {
    index: Arc<JobIndex>,
    root: PathBuf,
    inotify: Option<OwnedFd>,
    watches: HashMap<i32, Watched>,
    /// Jobs whose directory has a watch.
    watched: HashSet<JobId>,
    /// Jobs whose directory could not be watched: revalidated each pass.
    unwatched: HashSet<JobId>,
    /// The framework directories watched (or tried once).
    inner: HashSet<PathBuf>,
    dirty: HashSet<JobId>,
    fast: VecDeque<JobId>,
    fast_started: Instant,
    slow: VecDeque<JobId>,
    slow_started: Instant,
}

impl Watcher {
    /// Sets up inotify and the watch on `jobs/` (or the root, until
    /// `jobs/` exists); without inotify, the index revalidates.
    pub fn new(index: Arc<JobIndex>, use_inotify: bool) -> Watcher {
        let root = index.store.path().to_owned();
        let inotify = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
            Ok(_) if !use_inotify => None,
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!("job index: no inotify ({e}); changes are found by revalidation");
                None
            }
        };
        let mut watcher = Watcher {
            index,
            root,
            inotify,
            watches: HashMap::new(),
            watched: HashSet::new(),
            unwatched: HashSet::new(),
            inner: HashSet::new(),
            dirty: HashSet::new(),
            fast: VecDeque::new(),
            fast_started: Instant::now(),
            slow: VecDeque::new(),
            slow_started: Instant::now(),
        };
        watcher.watch_jobs_dir();
        watcher
    }

    /// Watches every job the index holds, then runs on a thread of its own
    /// for the life of the process.
    pub fn start(mut self) -> io::Result<()> {
        for id in self.index.ids() {
            self.watch_job(&id);
        }
        self.index.set_mode(if self.inotify.is_some() {
            Mode::Inotify
        } else {
            Mode::Revalidating
        });
        thread::Builder::new()
            .name("job-index".into())
            .spawn(move || {
                // Until the index is dropped: then only this thread holds it.
                while Arc::strong_count(&self.index) > 1 {
                    self.tick();
                }
            })?;
        Ok(())
    }

    fn tick(&mut self) {
        self.gather(TICK);
        for id in std::mem::take(&mut self.dirty) {
            self.index.refresh(&id);
            self.ensure_watched(&id);
            // A directory made and written into before its parent's event
            // was read has no watch yet: look for it after each change.
            if self.watched.contains(&id) {
                self.watch_framework_dirs(&id);
            }
        }
        self.revalidate();
    }

    /// Waits up to `timeout` for events and handles every one that came.
    fn gather(&mut self, timeout: Duration) {
        let Some(fd) = self.inotify.as_ref() else {
            thread::sleep(timeout);
            return;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a descriptor we own.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
        if ready <= 0 {
            return;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let mut events = Vec::new();
        let mut reader = inotify::Reader::new(fd, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => events.push((
                    event.wd(),
                    event.events(),
                    event
                        .file_name()
                        .and_then(|n| n.to_str().ok())
                        .map(str::to_owned),
                )),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => {
                    log::warn!("job index: reading inotify events failed ({e}); revalidating");
                    self.overflowed();
                    break;
                }
            }
        }
        for (wd, flags, name) in events {
            self.handle(wd, flags, name.as_deref());
        }
    }

    fn handle(&mut self, wd: i32, flags: ReadFlags, name: Option<&str>) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            log::warn!("job index: inotify queue overflowed; revalidating every job");
            self.overflowed();
            return;
        }
        let Some(watched) = self.watches.get(&wd).cloned() else {
            return;
        };
        if flags.contains(ReadFlags::IGNORED) {
            // The watched directory is gone (or was replaced).
            self.watches.remove(&wd);
            match watched {
                Watched::Job(id) => {
                    self.watched.remove(&id);
                    self.dirty.insert(id);
                }
                Watched::Model(id) => {
                    self.dirty.insert(id);
                }
                Watched::Inner(id, path) => {
                    self.inner.remove(&path);
                    self.dirty.insert(id);
                }
                Watched::Jobs | Watched::Root => {
                    self.watch_jobs_dir();
                    self.overflowed();
                }
            }
            return;
        }
        match watched {
            Watched::Root if name == Some(JOBS_DIR) => {
                self.watch_jobs_dir();
                self.overflowed();
            }
            Watched::Root => {}
            Watched::Jobs => {
                if let Some(id) = name.and_then(|n| JobId::parse(n).ok()) {
                    self.dirty.insert(id);
                }
            }
            Watched::Job(id) => {
                let appeared = flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
                if appeared && name == Some(MODEL_DIR) {
                    self.watch_model(&id);
                }
                if appeared && name.is_some_and(|n| LIGHTNING_LOGS.contains(&n)) {
                    let path = self
                        .index
                        .store
                        .job_path(&id)
                        .join(name.unwrap_or_default());
                    self.watch_inner(&id, path);
                }
                self.dirty.insert(id);
            }
            Watched::Model(id) => {
                // A checkpoint written in place, or Lightning's logs under
                // `model/`: what is written inside them matters too.
                let inner = name.is_some_and(|n| {
                    n.starts_with("checkpoint") || format!("{MODEL_DIR}/{n}") == LIGHTNING_LOGS[1]
                });
                if inner && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    let path = self.index.store.job_path(&id).join(MODEL_DIR);
                    self.watch_inner(&id, path.join(name.unwrap_or_default()));
                }
                self.dirty.insert(id);
            }
            Watched::Inner(id, path) => {
                // `lightning_logs/version_N/` appearing.
                let version = name.is_some_and(|n| n.starts_with("version_"));
                if version && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    self.watch_inner(&id, path.join(name.unwrap_or_default()));
                }
                self.dirty.insert(id);
            }
        }
    }

    /// Events were lost: every job is looked at again, new ones found by
    /// listing `jobs/`.
    fn overflowed(&mut self) {
        self.fast = self.every_job().into();
        self.fast_started = Instant::now();
    }

    /// The revalidation passes: a fast one over the jobs no watch covers
    /// (all of them without inotify), and the slow safety sweep.
    fn revalidate(&mut self) {
        // A pass starts every FRESHNESS - TICK, so a change is seen within
        // FRESHNESS (for up to REVALIDATE_PER_TICK unwatched jobs).
        if self.fast.is_empty() && self.fast_started.elapsed() >= FRESHNESS - TICK {
            self.fast = if self.inotify.is_some() {
                let held = self.index.read();
                self.unwatched.retain(|id| held.by_id.contains_key(id));
                self.unwatched.iter().cloned().collect()
            } else {
                self.every_job().into()
            };
            self.fast_started = Instant::now();
        }
        let batch = take(&mut self.fast, REVALIDATE_PER_TICK);
        self.revalidate_batch(batch);
        if self.inotify.is_none() {
            return;
        }
        if self.slow.is_empty() && self.slow_started.elapsed() >= SAFETY_SWEEP {
            self.slow = self.every_job().into();
            self.slow_started = Instant::now();
        }
        let batch = take(&mut self.slow, SWEEP_PER_TICK);
        self.revalidate_batch(batch);
    }

    fn revalidate_batch(&mut self, batch: Vec<JobId>) {
        for id in batch {
            self.index.revalidate(&id);
            self.ensure_watched(&id);
        }
    }

    /// The jobs on disk and in the index (so that removed ones go too).
    fn every_job(&self) -> Vec<JobId> {
        let mut ids: HashSet<JobId> = self.index.ids().into_iter().collect();
        match self.index.store.job_ids() {
            Ok(listed) => ids.extend(listed),
            Err(e) => log::warn!("job index: cannot list jobs: {e}"),
        }
        ids.into_iter().collect()
    }

    fn add_watch(&mut self, path: PathBuf, flags: WatchFlags, what: Watched) -> bool {
        let Some(fd) = self.inotify.as_ref() else {
            return false;
        };
        if self.watches.len() >= MAX_WATCHES {
            return false;
        }
        let flags = flags | WatchFlags::ONLYDIR | WatchFlags::DONT_FOLLOW;
        match inotify::add_watch(fd, &path, flags) {
            Ok(wd) => {
                self.watches.insert(wd, what);
                true
            }
            Err(rustix::io::Errno::NOSPC) => {
                log::warn!("job index: the inotify watch limit is reached; revalidating the rest");
                false
            }
            Err(_) => false,
        }
    }

    fn watch_jobs_dir(&mut self) {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF;
        let jobs = self.root.join(JOBS_DIR);
        if !self.add_watch(jobs, flags, Watched::Jobs) {
            // No jobs/ yet: wait for it to appear.
            let root = self.root.clone();
            self.add_watch(
                root,
                WatchFlags::CREATE | WatchFlags::MOVED_TO,
                Watched::Root,
            );
        }
    }

    /// Watches a job the index holds that has no watch yet (nor failed to
    /// get one): jobs reach the index by events, by revalidation and by
    /// requests, and each path ends here.
    fn ensure_watched(&mut self, id: &JobId) {
        if self.inotify.is_none() || self.watched.contains(id) || self.unwatched.contains(id) {
            return;
        }
        if self.index.read().by_id.contains_key(id) {
            self.watch_job(id);
        }
    }

    /// Watches a job's directory and its `model/`; a job that cannot be
    /// watched joins the revalidated ones.
    fn watch_job(&mut self, id: &JobId) {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::ATTRIB
            | WatchFlags::EXCL_UNLINK;
        let path = self.index.store.job_path(id);
        if self.add_watch(path, flags, Watched::Job(id.clone())) {
            self.watched.insert(id.clone());
            self.unwatched.remove(id);
            self.watch_model(id);
            self.watch_framework_dirs(id);
            // A change between the read and the watch is caught here.
            self.index.revalidate(id);
        } else {
            self.unwatched.insert(id.clone());
        }
    }

    /// `model/`: checkpoints appearing and going, and files written there
    /// (the final `trainer_state.json` of `save_state()`).
    fn watch_model(&mut self, id: &JobId) {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::EXCL_UNLINK;
        let path = self.index.store.job_path(id).join(MODEL_DIR);
        self.add_watch(path, flags, Watched::Model(id.clone()));
    }

    /// Watches the directories a framework writes progress into now
    /// (those not watched yet).
    fn watch_framework_dirs(&mut self, id: &JobId) {
        let Ok(Some(dir)) = self.index.store.job(id) else {
            return;
        };
        let job = self.index.store.job_path(id);
        for inner in dir.framework_dirs() {
            self.watch_inner(id, job.join(inner));
        }
    }

    /// A directory where a framework writes progress files: each file
    /// written (closed), moved in or removed makes the job dirty.
    fn watch_inner(&mut self, id: &JobId, path: PathBuf) {
        if self.inner.contains(&path) {
            return;
        }
        self.inner.insert(path.clone());
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::EXCL_UNLINK;
        self.add_watch(path.clone(), flags, Watched::Inner(id.clone(), path));
    }
}

/// The first `n` jobs of a revalidation queue.
fn take(queue: &mut VecDeque<JobId>, n: usize) -> Vec<JobId> {
    queue.drain(..n.min(queue.len())).collect()
}
