//! The runner: a FIFO queue of jobs, at most `max_jobs` trainers at once,
//! pause/resume/cancel of a job's whole process tree, and the job records
//! that survive a crash.
//!
//! A job's processes are held by a cgroup of its own where the server can
//! manage one (`cgroup`: freeze, kill, account, whatever the processes
//! do), else by the trainer's process group (signals; a process that
//! calls `setsid()` leaves it, the known limit of that mode). The mode is
//! logged at start and shown by `/healthz`.
//!
//! Status moves `queued → running ⇄ paused → completed | failed | cancelled`,
//! and to `interrupted` for a job that was running or paused when the server
//! stopped. Every change is written to `job.json` (atomically) before it is
//! answered. One scheduler thread starts trainers, so the parent-death signal
//! of every trainer is tied to a thread that lives as long as the server;
//! one waiter thread per trainer reaps it.
//!
//! Here: the runner's face (config, errors, the [`Jobs`] trait, start and
//! submit). The state machine and client actions are in `state`; launching,
//! reaping and recovery in `lifecycle`; parsing recipes and checking params
//! in `recipes`; spawning and signalling processes in `process`; cgroups in
//! `cgroup`; sampling running jobs' resource use in `resources`; files in
//! the store.

pub mod cgroup;
mod lifecycle;
pub mod process;
pub mod recipes;
pub mod resources;
mod state;

use std::io;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::doorbell::Doorbell;
use crate::names::JobId;
use crate::store::Store;
use crate::store::records::{JobRecord, JobStatus};
use crate::timefmt;
use cgroup::Cgroups;
use lifecycle::{new_job_id, recover, schedule};
pub use state::Observer;
use state::{Shared, State};

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Trainers running at once (default 1: one GPU).
    pub max_jobs: usize,
    /// Between SIGTERM and SIGKILL on cancel.
    pub cancel_grace: Duration,
    /// Rung whenever a job is queued, starts, pauses, resumes or ends.
    pub changes: Doorbell,
    /// Jobs that may wait in the queue; more submissions are refused.
    pub max_queued: usize,
    /// `--cgroup`: the cgroup (v2) to give jobs theirs under, when not
    /// delegated by systemd.
    pub cgroup: Option<std::path::PathBuf>,
    /// How often each running job's resource use is sampled.
    pub sample_every: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            max_jobs: 1,
            cancel_grace: Duration::from_secs(30),
            changes: Doorbell::default(),
            max_queued: 100,
            cgroup: None,
            sample_every: resources::SAMPLE_EVERY,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug)]
pub enum SubmitError {
    /// `max_queued` jobs are waiting already.
    QueueFull(usize),
    /// Creating the job's directory or record failed.
    Io(io::Error),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::QueueFull(max) => write!(f, "{max} jobs are queued already"),
            SubmitError::Io(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for SubmitError {
    fn from(e: io::Error) -> SubmitError {
        SubmitError::Io(e)
    }
}

/// What the HTTP layer asks of the runner. A trait, so that handlers can
/// be tested with an in-memory one that starts no process.
pub trait Jobs: Send + Sync {
    /// Queues a job from a checked request (see [`Runner::submit`]).
    fn submit(
        &self,
        recipe: &str,
        name: Option<String>,
        params: Map<String, Value>,
    ) -> Result<JobRecord, SubmitError>;
    /// Pause, resume and cancel answer `NotFound` for a job that does not
    /// exist, `Conflict` for one whose state does not allow the action.
    fn pause(&self, id: &JobId) -> Result<JobRecord, ControlError>;
    fn resume(&self, id: &JobId) -> Result<JobRecord, ControlError>;
    fn cancel(&self, id: &JobId) -> Result<JobRecord, ControlError>;
    /// Jobs running or paused now.
    fn active_count(&self) -> usize;
    /// Jobs waiting now.
    fn queued_count(&self) -> usize;
    /// True while the job is queued or has a trainer (running, paused,
    /// being cancelled): it must not be deleted.
    fn holds(&self, id: &JobId) -> bool;
    /// `"cgroup"` or `"process-group"`.
    fn control_mode(&self) -> &'static str;
    /// The latest resource sample of each running job.
    fn resources(&self) -> Vec<(JobId, Value)> {
        Vec::new()
    }
}

impl Jobs for Runner {
    fn submit(
        &self,
        recipe: &str,
        name: Option<String>,
        params: Map<String, Value>,
    ) -> Result<JobRecord, SubmitError> {
        Runner::submit(self, recipe, name, params)
    }
    fn pause(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        Runner::pause(self, id)
    }
    fn resume(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        Runner::resume(self, id)
    }
    fn cancel(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        Runner::cancel(self, id)
    }
    fn active_count(&self) -> usize {
        Runner::active_count(self)
    }
    fn queued_count(&self) -> usize {
        Runner::queued_count(self)
    }
    fn holds(&self, id: &JobId) -> bool {
        let state = self.shared.lock();
        state.queue.contains(id) || state.active.contains_key(id)
    }
    fn control_mode(&self) -> &'static str {
        Runner::control_mode(self)
    }
    fn resources(&self) -> Vec<(JobId, Value)> {
        let latest = self
            .shared
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut running: Vec<(JobId, Value)> = latest
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        running.sort_by(|a, b| a.0.cmp(&b.0));
        running
    }
}

/// Why a control action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No such job.
    NotFound,
    /// The action does not fit the job's state; the text says why.
    Conflict(String),
    /// Writing the record or signalling failed (logged).
    Io,
}

/// The job runner; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    shared: Arc<Shared>,
}

impl Runner {
    /// Recovers the records left by the last server (running or paused
    /// become `interrupted`, their leftover processes are killed; queued
    /// jobs queue again in creation order) and starts the scheduler.
    pub fn start(store: Arc<Store>, config: RunnerConfig) -> io::Result<Runner> {
        let cgroups = Cgroups::setup(config.cgroup.as_deref())?;
        match &cgroups {
            Some(cgroups) => log::info!(
                "job control: a cgroup per job under {} (controllers: {})",
                cgroups.path().display(),
                if cgroups.controllers().is_empty() {
                    "none".to_owned()
                } else {
                    cgroups.controllers().join(", ")
                }
            ),
            None => log::info!(
                "job control: process groups (no delegated cgroup v2; a trainer's process \
                 that calls setsid() escapes pause and cancel)"
            ),
        }
        let shared = Arc::new(Shared {
            store,
            config,
            cgroups,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            observer: OnceLock::new(),
            resources: Mutex::new(std::collections::HashMap::new()),
        });
        let queue = recover(&shared.store, shared.cgroups.as_ref())?;
        shared.lock().queue.extend(queue);
        let scheduler = Arc::clone(&shared);
        thread::Builder::new()
            .name("runner".into())
            .spawn(move || schedule(&scheduler))?;
        resources::start(&shared, shared.config.sample_every)?;
        Ok(Runner { shared })
    }

    /// Creates a job from a checked request and queues it; returns its
    /// record. Refused while `max_queued` jobs wait (before anything is
    /// written; a race past the check can overshoot by the submissions in
    /// flight, which the worker pool bounds).
    pub fn submit(
        &self,
        recipe: &str,
        name: Option<String>,
        params: Map<String, Value>,
    ) -> Result<JobRecord, SubmitError> {
        let max = self.shared.config.max_queued;
        if self.shared.lock().queue.len() >= max {
            return Err(SubmitError::QueueFull(max));
        }
        let store = &self.shared.store;
        let (id, dir) = loop {
            let id = new_job_id();
            match store.create_job(&id) {
                Ok(dir) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let record = JobRecord::queued(id.as_str(), recipe, name, params, timefmt::now_rfc3339());
        dir.write_record(&record)?;
        let mut state = self.shared.lock();
        state.queue.push_back(id.clone());
        self.shared.changed.notify_all();
        drop(state);
        self.shared.recorded(&id);
        Ok(record)
    }

    /// Sets what is told of every record the runner writes from now on
    /// (the job index); only the first call counts.
    pub fn observe(&self, observer: Observer) {
        let _ = self.shared.observer.set(observer);
    }

    /// The live status of a job the runner manages, when it differs from
    /// nothing; the record on disk is always current too.
    pub fn status(&self, id: &JobId) -> Option<JobStatus> {
        let state = self.shared.lock();
        if let Some(active) = state.active.get(id) {
            return Some(active.record.status);
        }
        state.queue.contains(id).then_some(JobStatus::Queued)
    }

    /// Jobs running or paused now.
    pub fn active_count(&self) -> usize {
        self.shared.lock().active.len()
    }

    /// Jobs waiting in the queue now.
    pub fn queued_count(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// How jobs are held: `"cgroup"` or `"process-group"`.
    pub fn control_mode(&self) -> &'static str {
        if self.shared.cgroups.is_some() {
            "cgroup"
        } else {
            "process-group"
        }
    }
}
