//! Disk and cleanup, in the background: each job's size on disk measured
//! by one thread (a request never walks a job), the root's file system
//! held against `--disk-warn-percent`, and with `--keep-checkpoints N` the
//! oldest complete checkpoints of finished jobs deleted, never under a
//! download or a running trainer, each deletion logged.
//!
//! A finished job is measured again when its files change (by the index's
//! stamp) or every [`FINISHED_REMEASURE`]; a running one every
//! [`RUNNING_REMEASURE`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::app::App;
use crate::names::{CheckpointName, JobId};
use crate::store::Stamp;

/// How often a running job's size is measured.
pub const RUNNING_REMEASURE: Duration = Duration::from_secs(30);
/// How often a finished, unchanged job's size is measured anyway.
const FINISHED_REMEASURE: Duration = Duration::from_secs(600);
/// A pass also starts this long after the last when nothing changed.
const RESCAN: Duration = Duration::from_secs(30);
/// At least this long between two passes (a running job changes often).
const PASS_GAP: Duration = Duration::from_secs(2);

/// The root's file system and what the jobs take of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// The jobs' sizes as last measured.
    pub jobs_bytes: u64,
    pub warn_percent: f64,
}

impl Disk {
    /// Now: statvfs of the root (one syscall) and the cached job sizes.
    pub fn now(app: &App) -> Option<Disk> {
        let (total_bytes, free_bytes) = app
            .store
            .filesystem()
            .inspect_err(|e| log::debug!("statvfs of the root: {e}"))
            .ok()?;
        Some(Disk {
            total_bytes,
            free_bytes,
            jobs_bytes: app.index.total_size(),
            warn_percent: app.limits.disk_warn_percent,
        })
    }

    /// The share used, in percent (of what unprivileged users may use).
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = self.total_bytes.saturating_sub(self.free_bytes);
        (used as f64 / self.total_bytes as f64 * 1000.0).round() / 10.0
    }

    pub fn warning(&self) -> bool {
        self.used_percent() >= self.warn_percent
    }

    /// `GET /api/training/disk`.
    pub fn json(&self) -> Value {
        json!({
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "used_percent": self.used_percent(),
            "jobs_bytes": self.jobs_bytes,
            "warn_percent": self.warn_percent,
            "warning": self.warning(),
        })
    }
}

/// Starts the housekeeper; it ends when the app is dropped.
pub fn start(app: &Arc<App>) -> std::io::Result<()> {
    let app = Arc::downgrade(app);
    thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || {
            let mut keeper = Housekeeper {
                app,
                measured: HashMap::new(),
                warned: false,
            };
            while let Some(app) = Weak::upgrade(&keeper.app) {
                let seen = app.index.generation();
                keeper.pass(&app);
                let index = Arc::clone(&app.index);
                drop(app);
                index.wait_for_change(seen, RESCAN);
                thread::sleep(PASS_GAP);
            }
        })?;
    Ok(())
}

struct Housekeeper {
    app: Weak<App>,
    /// When each job was last measured, and its stamp then.
    measured: HashMap<JobId, (Stamp, Instant)>,
    /// Whether the disk warning was logged (once a crossing).
    warned: bool,
}

impl Housekeeper {
    fn pass(&mut self, app: &App) {
        let ids = app.index.ids();
        self.measured.retain(|id, _| ids.contains(id));
        for id in &ids {
            let Some(entry) = app.index.job(id) else {
                continue;
            };
            let finished = entry.status.is_final();
            if let (true, Some(keep)) = (finished, app.limits.keep_checkpoints) {
                prune(app, id, keep);
            }
            let due = match self.measured.get(id) {
                None => true,
                Some((stamp, at)) if finished => {
                    *stamp != entry.stamp() || at.elapsed() >= FINISHED_REMEASURE
                }
                Some((_, at)) => at.elapsed() >= RUNNING_REMEASURE,
            };
            if !due {
                continue;
            }
            let Ok(Some(dir)) = app.store.job(id) else {
                continue;
            };
            match dir.disk_usage() {
                Ok(bytes) => {
                    app.index.set_size(id, bytes);
                    self.measured
                        .insert(id.clone(), (entry.stamp(), Instant::now()));
                }
                Err(e) => log::debug!("job {id}: cannot measure its size: {e}"),
            }
        }
        self.check_disk(app);
    }

    /// Logs once when the root's file system crosses the warning line
    /// (and once when it is back under).
    fn check_disk(&mut self, app: &App) {
        let Some(disk) = Disk::now(app) else {
            return;
        };
        match (disk.warning(), self.warned) {
            (true, false) => log::warn!(
                "disk: {:.1}% of the root's file system is used ({} MB free; jobs take {} MB); \
                 the warning line is {}%",
                disk.used_percent(),
                disk.free_bytes >> 20,
                disk.jobs_bytes >> 20,
                disk.warn_percent
            ),
            (false, true) => log::info!(
                "disk: {:.1}% used, under the warning line again",
                disk.used_percent()
            ),
            _ => {}
        }
        self.warned = disk.warning();
    }
}

/// Deletes the oldest complete checkpoints of finished job `id` until
/// `keep` are left; stops at a download in flight or a trainer.
fn prune(app: &App, id: &JobId, keep: usize) {
    let Ok(Some(dir)) = app.store.job(id) else {
        return;
    };
    let Ok(checkpoints) = dir.checkpoints() else {
        return;
    };
    let mut complete: Vec<_> = checkpoints.into_iter().filter(|c| c.complete).collect();
    if complete.len() <= keep {
        return;
    }
    // Oldest by when they were written (a `last.ckpt` has no step but is
    // the newest).
    complete.sort_by(|a, b| (&a.modified_at, &a.name).cmp(&(&b.modified_at, &b.name)));
    let excess = complete.len() - keep;
    let mut pruned = false;
    for checkpoint in complete.into_iter().take(excess) {
        let Ok(name) = CheckpointName::parse(&checkpoint.name) else {
            continue;
        };
        if app.runner.holds(id) {
            break;
        }
        match app
            .job_downloads
            .unless_downloading(id, || dir.remove_checkpoint(&name))
        {
            None => {
                log::info!("job {id}: pruning waits for its downloads to finish");
                break;
            }
            Some(Ok(true)) => {
                pruned = true;
                log::info!(
                    "job {id}: deleted checkpoint {name} ({} MB), keeping the newest {keep} \
                     (--keep-checkpoints)",
                    checkpoint.size_bytes >> 20
                );
            }
            Some(Ok(false)) => {}
            Some(Err(e)) => {
                log::warn!("job {id}: cannot delete checkpoint {name}: {e}");
                break;
            }
        }
    }
    if pruned {
        app.index.refresh(id);
    }
}
