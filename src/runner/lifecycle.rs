//! A trainer's life: the scheduler that launches queued jobs, the reaper
//! that records how each ended, and the recovery of what the last server
//! left behind.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::cgroup::{self, Cgroups, JobCgroup};
use super::process;
use super::recipes::{Recipes, check_params};
use super::state::{Active, Hold, Shared};
use crate::names::JobId;
use crate::store::Store;
use crate::store::records::JobStatus;
use crate::timefmt;

/// A new job id: the creation time (sortable, readable) and random bits.
pub(super) fn new_job_id() -> JobId {
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
pub(super) fn recover(store: &Store, cgroups: Option<&Cgroups>) -> io::Result<Vec<JobId>> {
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
            JobStatus::Running | JobStatus::Paused | JobStatus::Cancelling => {
                if let Some(pgid) = record.pid.filter(|_| cgroups.is_none()) {
                    let killed = process::sweep_leftovers(pgid, &id);
                    if killed > 0 {
                        log::warn!("job {id}: killed {killed} leftover process(es)");
                    }
                }
                // A cancel asked for is a cancel, whenever the trainer died.
                let now = if record.status == JobStatus::Cancelling {
                    JobStatus::Cancelled
                } else {
                    JobStatus::Interrupted
                };
                log::warn!(
                    "job {id} was {} when the server stopped: now {}",
                    record.status.as_str(),
                    now.as_str()
                );
                record.status = now;
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
pub(super) fn schedule(shared: &Arc<Shared>) {
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
                shared.recorded(&id);
                let waiter = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("reaper".into())
                    .spawn(move || reap(&waiter, id, child));
                if let Err(e) = spawned {
                    log::error!("cannot start a reaper thread: {e}");
                }
            }
            Err(e) => {
                log::error!("job {id}: cannot start: {e}");
                shared.recorded(&id);
            }
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
        let params = check_params(recipe, &record.params).map_err(|e| e.0)?;
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
    shared.recorded(&id);
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
