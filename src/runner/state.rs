//! The runner's state machine: the queue and the active trainers, and
//! the transitions a client asks for — pause, resume, cancel — and the
//! server's stop. Each change is written to `job.json` under the state's
//! lock, so records follow the order the actions happened in.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::cgroup::{Cgroups, JobCgroup};
use super::{ControlError, Runner, RunnerConfig, process};
use crate::names::JobId;
use crate::store::Store;
use crate::store::records::{JobRecord, JobStatus};
use crate::timefmt;

/// What holds a trainer's processes.
pub(super) enum Hold {
    /// The job's own cgroup.
    Cgroup(JobCgroup),
    /// The trainer's process group (`pgid` in `Active`).
    Group,
}

/// How long a freeze or a thaw may take before pause or resume gives up.
const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// A trainer that is running or paused.
pub(super) struct Active {
    pub(super) pgid: i32,
    pub(super) hold: Hold,
    /// The recipe's `memory_max`, to explain an OOM kill.
    pub(super) memory_max: Option<u64>,
    pub(super) paused: bool,
    pub(super) cancel_requested: bool,
    /// The last signal sent to stop it (SIGTERM, then SIGKILL).
    pub(super) stop_signal: Option<i32>,
    pub(super) record: JobRecord,
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
    pub(super) fn kill(&mut self) {
        match &self.hold {
            Hold::Cgroup(cgroup) => cgroup.kill(),
            Hold::Group => {
                let _ = process::signal_group(self.pgid, libc::SIGKILL);
            }
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<JobId>,
    pub(super) active: HashMap<JobId, Active>,
    pub(super) stopping: bool,
}

pub(super) struct Shared {
    pub(super) store: Arc<Store>,
    pub(super) config: RunnerConfig,
    /// The cgroup jobs get theirs under; `None`: process groups.
    pub(super) cgroups: Option<Cgroups>,
    pub(super) state: Mutex<State>,
    /// Signalled when the queue, the active set or `stopping` changes.
    pub(super) changed: Condvar,
    /// Told the id of every job whose record was written (the job index).
    pub(super) observer: OnceLock<Observer>,
    /// The latest resource sample of each running job (`resources`).
    pub(super) resources: Mutex<HashMap<JobId, serde_json::Value>>,
}

/// What is told of each record the runner writes.
pub type Observer = Box<dyn Fn(&JobId) + Send + Sync>;

impl Runner {
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
            self.shared.recorded(id);
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
        // What the job is now: cancelling, until its trainer is gone and
        // the reaper records it cancelled. Recorded under the lock, like
        // every status.
        active.record.status = JobStatus::Cancelling;
        let pgid = active.pgid;
        let record = active.record.clone();
        self.job_dir(id)?
            .write_record(&record)
            .map_err(log_io("recording a cancel"))?;
        self.shared.recorded(id);
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
        self.shared.recorded(id);
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
    /// A job's record was written: ring the doorbell, tell the observer.
    pub(super) fn recorded(&self, id: &JobId) {
        self.config.changes.ring();
        if let Some(observer) = self.observer.get() {
            observer(id);
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn log_io(context: &'static str) -> impl Fn(io::Error) -> ControlError {
    move |e| {
        log::error!("{context}: {e}");
        ControlError::Io
    }
}
