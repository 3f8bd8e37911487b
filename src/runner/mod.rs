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
//! Not here: parsing recipes and checking params (`recipes`), spawning and
//! signalling processes (`process`), files (the store).

pub mod cgroup;
pub mod process;
pub mod recipes;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::doorbell::Doorbell;
use crate::names::JobId;
use crate::store::Store;
use crate::store::records::{JobRecord, JobStatus};
use crate::timefmt;
use cgroup::{Cgroups, JobCgroup};
use recipes::{Recipes, check_params};

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
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            max_jobs: 1,
            cancel_grace: Duration::from_secs(30),
            changes: Doorbell::default(),
            max_queued: 100,
            cgroup: None,
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

/// What holds a trainer's processes.
enum Hold {
    /// The job's own cgroup.
    Cgroup(JobCgroup),
    /// The trainer's process group (`pgid` in `Active`).
    Group,
}

/// How long a freeze or a thaw may take before pause or resume gives up.
const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// A trainer that is running or paused.
struct Active {
    pgid: i32,
    hold: Hold,
    /// The recipe's `memory_max`, to explain an OOM kill.
    memory_max: Option<u64>,
    paused: bool,
    cancel_requested: bool,
    /// The last signal sent to stop it (SIGTERM, then SIGKILL).
    stop_signal: Option<i32>,
    record: JobRecord,
}

impl Active {
    /// Stops (`true`) or continues every process of the job: the cgroup
    /// frozen or thawed (and waited for), or SIGSTOP/SIGCONT to the group.
    fn set_paused(&mut self, paused: bool) -> io::Result<()> {
        match &self.hold {
            Hold::Cgroup(cgroup) => {
                if !cgroup.freeze(paused, FREEZE_WAIT)? {
                    if paused {
                        let _ = cgroup.freeze(false, FREEZE_WAIT);
                    }
                    return Err(io::Error::other(format!(
                        "the job's processes did not {} within {FREEZE_WAIT:?}",
                        if paused { "freeze" } else { "thaw" }
                    )));
                }
            }
            Hold::Group => {
                let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
                process::signal_group(self.pgid, signal)?;
            }
        }
        self.paused = paused;
        Ok(())
    }

    /// Asks every process of the job to stop: continued first if it is
    /// paused (a stopped process acts on nothing else), then SIGTERM.
    fn ask_to_stop(&mut self) -> io::Result<()> {
        self.cancel_requested = true;
        if self.paused {
            self.set_paused(false)?;
        }
        match &self.hold {
            Hold::Cgroup(cgroup) => cgroup.signal_all(libc::SIGTERM),
            Hold::Group => process::signal_group(self.pgid, libc::SIGTERM)?,
        }
        self.stop_signal = Some(libc::SIGTERM);
        Ok(())
    }

    /// Kills every process of the job at once.
    fn kill(&mut self) {
        match &self.hold {
            Hold::Cgroup(cgroup) => cgroup.kill(),
            Hold::Group => {
                let _ = process::signal_group(self.pgid, libc::SIGKILL);
            }
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<JobId>,
    active: HashMap<JobId, Active>,
    stopping: bool,
}

struct Shared {
    store: Arc<Store>,
    config: RunnerConfig,
    /// The cgroup jobs get theirs under; `None`: process groups.
    cgroups: Option<Cgroups>,
    state: Mutex<State>,
    /// Signalled when the queue, the active set or `stopping` changes.
    changed: Condvar,
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
        });
        let queue = recover(&shared.store, shared.cgroups.as_ref())?;
        shared.lock().queue.extend(queue);
        let scheduler = Arc::clone(&shared);
        thread::Builder::new()
            .name("runner".into())
            .spawn(move || schedule(&scheduler))?;
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
        let record = JobRecord {
            id: id.to_string(),
            name,
            recipe: recipe.to_owned(),
            params,
            status: JobStatus::Queued,
            created_at: timefmt::now_rfc3339(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            signal: None,
            stop_signal: None,
            error: None,
            pid: None,
        };
        dir.write_record(&record)?;
        let mut state = self.shared.lock();
        state.queue.push_back(id);
        self.shared.changed.notify_all();
        self.shared.config.changes.ring();
        Ok(record)
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

    /// Stops every process of the job (answered once they are stopped).
    pub fn pause(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        self.set_paused(id, "pause", true, |active| {
            if active.paused {
                return Err("Job is already paused".to_owned());
            }
            if active.cancel_requested {
                return Err("Job is being cancelled".to_owned());
            }
            Ok(())
        })
    }

    /// Continues every process of a paused job.
    pub fn resume(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        self.set_paused(id, "resume", false, |active| {
            if !active.paused {
                return Err("Job is not paused".to_owned());
            }
            Ok(())
        })
    }

    /// A queued job is dropped from the queue; a running or paused one gets
    /// SIGTERM (after SIGCONT, so a stopped group can act on it), then
    /// SIGKILL after the grace period.
    pub fn cancel(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        let mut state = self.shared.lock();
        if let Some(pos) = state.queue.iter().position(|q| q == id) {
            state.queue.remove(pos);
            drop(state);
            let dir = self.job_dir(id)?;
            let mut record = dir.record().ok_or(ControlError::Io)?;
            record.status = JobStatus::Cancelled;
            record.finished_at = Some(timefmt::now_rfc3339());
            dir.write_record(&record)
                .map_err(log_io("recording a cancel"))?;
            self.shared.config.changes.ring();
            return Ok(record);
        }
        let Some(active) = state.active.get_mut(id) else {
            drop(state);
            return Err(self.refusal(id, "cancel"));
        };
        if active.cancel_requested {
            return Ok(active.record.clone());
        }
        active.ask_to_stop().map_err(log_io("sending SIGTERM"))?;
        let pgid = active.pgid;
        let record = active.record.clone();
        drop(state);
        self.kill_after_grace(id.clone(), pgid);
        Ok(record)
    }

    /// Stops the runner for a server shutdown: nothing new starts; running
    /// and paused trainers get SIGTERM, SIGKILL after the grace period, and
    /// are recorded `interrupted`; queued jobs stay queued. Returns once
    /// every trainer has been reaped (or `deadline` passed).
    pub fn shutdown(&self, deadline: Duration) {
        let started = Instant::now();
        let mut state = self.shared.lock();
        state.stopping = true;
        self.shared.changed.notify_all();
        let mut groups = Vec::new();
        for (id, active) in state.active.iter_mut() {
            log::info!("stopping job {id} for shutdown (SIGTERM)");
            if let Err(e) = active.ask_to_stop() {
                log::error!("job {id}: cannot send SIGTERM: {e}");
            }
            groups.push((id.clone(), active.pgid));
        }
        drop(state);
        for (id, pgid) in groups {
            self.kill_after_grace(id, pgid);
        }
        let mut state = self.shared.lock();
        while !state.active.is_empty() {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                log::warn!(
                    "{} trainer(s) still running at shutdown",
                    state.active.len()
                );
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn job_dir(&self, id: &JobId) -> Result<crate::store::JobDir, ControlError> {
        self.shared
            .store
            .job(id)
            .map_err(log_io("opening a job"))?
            .ok_or(ControlError::NotFound)
    }

    /// Pauses or resumes an active job after `check` approves, and records
    /// the new status.
    fn set_paused(
        &self,
        id: &JobId,
        action: &str,
        paused: bool,
        check: impl FnOnce(&Active) -> Result<(), String>,
    ) -> Result<JobRecord, ControlError> {
        let mut state = self.shared.lock();
        let Some(active) = state.active.get_mut(id) else {
            drop(state);
            return Err(self.refusal(id, action));
        };
        check(active).map_err(ControlError::Conflict)?;
        active
            .set_paused(paused)
            .map_err(log_io("pausing or resuming a trainer"))?;
        active.record.status = if paused {
            JobStatus::Paused
        } else {
            JobStatus::Running
        };
        let record = active.record.clone();
        // Recorded under the lock, so records are written in the order the
        // actions happened.
        let dir = self.job_dir(id)?;
        dir.write_record(&record)
            .map_err(log_io("recording a status"))?;
        self.shared.config.changes.ring();
        Ok(record)
    }

    /// Why `action` does not apply to a job that is not active.
    fn refusal(&self, id: &JobId, action: &str) -> ControlError {
        let dir = match self.job_dir(id) {
            Ok(dir) => dir,
            Err(e) => return e,
        };
        match dir.record() {
            None => ControlError::Conflict(
                "Job was not started by trainbox and cannot be controlled".to_owned(),
            ),
            Some(record) if record.status == JobStatus::Queued => {
                ControlError::Conflict(format!("Job is queued; only a running job can {action}"))
            }
            Some(record) => ControlError::Conflict(format!(
                "Job is {}; it cannot {action}",
                record.status.as_str()
            )),
        }
    }

    fn kill_after_grace(&self, id: JobId, pgid: i32) {
        let shared = Arc::clone(&self.shared);
        let grace = shared.config.cancel_grace;
        let _ = thread::Builder::new().name("cancel".into()).spawn(move || {
            thread::sleep(grace);
            let mut state = shared.lock();
            if let Some(active) = state.active.get_mut(&id).filter(|a| a.pgid == pgid) {
                log::warn!("job {id}: still running {grace:?} after SIGTERM; killing it");
                active.kill();
                active.stop_signal = Some(libc::SIGKILL);
            }
        });
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn log_io(context: &'static str) -> impl Fn(io::Error) -> ControlError {
    move |e| {
        log::error!("{context}: {e}");
        ControlError::Io
    }
}

/// A new job id: the creation time (sortable, readable) and random bits.
fn new_job_id() -> JobId {
    let mut random = [0u8; 3];
    // SAFETY: getrandom fills at most `len` bytes of the buffer.
    let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if n != random.len() as isize {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        random.copy_from_slice(&nanos.to_le_bytes()[..3]);
    }
    let stamp = timefmt::now_rfc3339();
    // 2026-11-27T13:05:12.345Z -> 20261127-130512
    let digits: String = stamp
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let id = format!(
        "{}-{}-{:02x}{:02x}{:02x}",
        &digits[..8],
        &digits[8..],
        random[0],
        random[1],
        random[2]
    );
    JobId::parse(&id).expect("digits, dashes and hex make a valid job id")
}

/// Reads the records of all managed jobs: running or paused ones become
/// `interrupted` (their leftover processes killed); queued ones are returned
/// in creation order.
fn recover(store: &Store, cgroups: Option<&Cgroups>) -> io::Result<Vec<JobId>> {
    // With a cgroup per job, whatever a killed server left is in one of
    // them: killed and removed whole, no pid guessing.
    if let Some(cgroups) = cgroups {
        for (name, cgroup) in cgroups.leftovers() {
            let left = cgroup.pids().len();
            cgroup.kill();
            if cgroup.remove(Duration::from_secs(5)) {
                log::warn!("job {name}: removed its leftover cgroup ({left} process(es) killed)");
            }
        }
    }
    let mut queued = Vec::new();
    for id in store.job_ids()? {
        let Ok(Some(dir)) = store.job(&id) else {
            continue;
        };
        let Some(mut record) = dir.record() else {
            continue;
        };
        match record.status {
            JobStatus::Running | JobStatus::Paused => {
                if let Some(pgid) = record.pid.filter(|_| cgroups.is_none()) {
                    let killed = process::sweep_leftovers(pgid, &id);
                    if killed > 0 {
                        log::warn!("job {id}: killed {killed} leftover process(es)");
                    }
                }
                log::warn!(
                    "job {id} was {} when the server stopped: now interrupted",
                    record.status.as_str()
                );
                record.status = JobStatus::Interrupted;
                record.finished_at = Some(timefmt::now_rfc3339());
                dir.write_record(&record)?;
            }
            JobStatus::Queued => queued.push((record.created_at.clone(), id)),
            _ => {}
        }
    }
    queued.sort();
    Ok(queued.into_iter().map(|(_, id)| id).collect())
}

/// The scheduler: starts queued jobs while fewer than `max_jobs` run.
///
/// Trainers are forked from this thread only, and it never returns: each
/// trainer's parent-death signal (`process`) fires when the thread that
/// forked it ends, so this thread must live as long as the process. Once
/// the server stops, it starts nothing more and waits for the exit, while
/// `shutdown` stops the trainers gracefully.
fn schedule(shared: &Arc<Shared>) {
    loop {
        let mut state = shared.lock();
        while state.stopping
            || state.queue.is_empty()
            || state.active.len() >= shared.config.max_jobs.max(1)
        {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        let Some(id) = state.queue.pop_front() else {
            continue;
        };
        // Started under the lock: a cancel cannot slip between the queue
        // and the active set.
        match launch(shared, &id) {
            Ok((child, active)) => {
                log::info!("job {id}: started trainer (pid {})", active.pgid);
                state.active.insert(id.clone(), active);
                shared.config.changes.ring();
                let waiter = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("reaper".into())
                    .spawn(move || reap(&waiter, id, child));
                if let Err(e) = spawned {
                    log::error!("cannot start a reaper thread: {e}");
                }
            }
            Err(e) => log::error!("job {id}: cannot start: {e}"),
        }
    }
}

/// Starts one queued job's trainer and records it running. On failure the
/// job is recorded `failed` with the reason.
fn launch(shared: &Shared, id: &JobId) -> io::Result<(Child, Active)> {
    let store = &shared.store;
    let dir = store
        .job(id)?
        .ok_or_else(|| io::Error::other("the job directory is gone"))?;
    let mut record = dir
        .record()
        .ok_or_else(|| io::Error::other("the job record is gone"))?;
    let started = (|| -> Result<(Child, Hold, Option<u64>), String> {
        let recipes = match store.recipes() {
            Ok(Some(bytes)) => Recipes::parse(&bytes).map_err(|e| e.to_string())?,
            Ok(None) => return Err("recipes.json is missing".into()),
            Err(e) => return Err(format!("cannot read recipes.json: {e}")),
        };
        let recipe = recipes
            .get(&record.recipe)
            .ok_or_else(|| format!("recipe '{}' no longer exists", record.recipe))?;
        let params = check_params(recipe, &record.params)?;
        let log = dir
            .open_log_for_append()
            .map_err(|e| format!("cannot open training.log: {e}"))?;
        let cgroup = match &shared.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(id, &recipe.limits)
                    .map_err(|e| format!("cannot make the job's cgroup: {e}"))?,
            ),
            None => {
                if recipe.limits != cgroup::Limits::default() {
                    log::warn!("job {id}: the recipe's limits are not applied without cgroups");
                }
                None
            }
        };
        let child = process::spawn(process::Launch {
            command: &recipe.command,
            job: id,
            job_path: &store.job_path(id),
            job_dir_fd: dir.raw_fd(),
            params: &params,
            log,
            cgroup_procs: cgroup.as_ref().map(JobCgroup::procs_fd),
        })
        .map_err(|e| format!("cannot start '{}': {e}", recipe.command[0]));
        let hold = match cgroup {
            Some(cgroup) => {
                if child.is_err() {
                    cgroup.remove(Duration::from_secs(1));
                }
                Hold::Cgroup(cgroup)
            }
            None => Hold::Group,
        };
        Ok((child?, hold, recipe.limits.memory_max))
    })();
    match started {
        Ok((child, hold, memory_max)) => {
            record.status = JobStatus::Running;
            record.started_at = Some(timefmt::now_rfc3339());
            record.pid = Some(child.id() as i32);
            if let Err(e) = dir.write_record(&record) {
                log::error!("job {id}: cannot record the start: {e}");
            }
            let active = Active {
                pgid: child.id() as i32,
                hold,
                memory_max,
                paused: false,
                cancel_requested: false,
                stop_signal: None,
                record,
            };
            Ok((child, active))
        }
        Err(reason) => {
            record.status = JobStatus::Failed;
            record.finished_at = Some(timefmt::now_rfc3339());
            record.error = Some(reason.clone());
            dir.write_record(&record)?;
            Err(io::Error::other(reason))
        }
    }
}

/// Waits for a trainer, records how it ended, clears what is left of its
/// process group, and lets the scheduler start the next job.
fn reap(shared: &Shared, id: JobId, mut child: Child) {
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("job {id}: cannot wait for the trainer: {e}");
                return;
            }
        }
    };
    let mut state = shared.lock();
    let Some(active) = state.active.remove(&id) else {
        return;
    };
    // Data-loader children and the like must not outlive their trainer.
    let mut active = active;
    active.kill();
    let oom_kills = match &active.hold {
        Hold::Cgroup(cgroup) => {
            let kills = cgroup.oom_kills();
            cgroup.remove(Duration::from_secs(5));
            kills
        }
        Hold::Group => 0,
    };
    let mut record = active.record;
    record.status = final_status(status, active.cancel_requested, state.stopping);
    record.exit_code = status.code();
    record.signal = status.signal();
    if oom_kills > 0 && !active.cancel_requested {
        let limit = active.memory_max.map_or_else(String::new, |m| {
            format!(" (the recipe's memory_max is {} MiB)", m >> 20)
        });
        record.status = JobStatus::Failed;
        record.error = Some(format!(
            "out of memory: the kernel's OOM killer ended {oom_kills} process(es) of the job{limit}"
        ));
    }
    record.stop_signal = active.stop_signal;
    record.finished_at = Some(timefmt::now_rfc3339());
    match active.stop_signal {
        Some(sent) => log::info!(
            "job {id}: {} ({status}, after {})",
            record.status.as_str(),
            crate::signals::name(sent)
        ),
        None => log::info!("job {id}: {} ({status})", record.status.as_str()),
    }
    match shared.store.job(&id) {
        Ok(Some(dir)) => {
            if let Err(e) = dir.write_record(&record) {
                log::error!("job {id}: cannot record the end: {e}");
            }
        }
        _ => log::error!("job {id}: its directory is gone; the end is not recorded"),
    }
    shared.changed.notify_all();
    shared.config.changes.ring();
}

/// How a trainer's end is recorded.
fn final_status(status: ExitStatus, cancel_requested: bool, stopping: bool) -> JobStatus {
    match (stopping, cancel_requested, status.success()) {
        (true, _, _) => JobStatus::Interrupted,
        (false, true, _) => JobStatus::Cancelled,
        (false, false, true) => JobStatus::Completed,
        (false, false, false) => JobStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_valid_sortable_and_distinct() {
        let a = new_job_id();
        let b = new_job_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "20261127-130512-a1b2c3".len());
        assert!(a.as_str().starts_with("20"));
    }

    #[test]
    fn final_statuses() {
        let ok = ExitStatus::from_raw(0);
        let failed = ExitStatus::from_raw(1 << 8);
        let killed = ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(final_status(ok, false, false), JobStatus::Completed);
        assert_eq!(final_status(failed, false, false), JobStatus::Failed);
        assert_eq!(final_status(killed, false, false), JobStatus::Failed);
        assert_eq!(final_status(ok, true, false), JobStatus::Cancelled);
        assert_eq!(final_status(killed, true, false), JobStatus::Cancelled);
        assert_eq!(final_status(ok, true, true), JobStatus::Interrupted);
    }
}
