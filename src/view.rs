//! What the API shows of a job: a [`JobSnapshot`] read once from the store
//! (record, progress, last write, creation time, model, status), and the
//! JSON documents built from it — the job as listed, and its progress as
//! `GET .../progress` and every live event carry it.
//!
//! Handlers and the live streams both build from here, so a job reads the
//! same everywhere. Reading is the store's; this module only decides what
//! the files mean (the status of a run without a record) and how it looks.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::names::JobId;
use crate::store::progress::Progress;
use crate::store::records::{EXTERNAL_IDLE_SECS, JobRecord, JobStatus, derive_status};
use crate::store::{JobDir, ProgressRead};
use crate::timefmt;

/// One job as read at one moment.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub id: JobId,
    /// `job.json`, for jobs trainbox started.
    pub record: Option<JobRecord>,
    /// The latest progress and the file it came from.
    pub progress: Option<Sourced>,
    /// When a file of the job last changed.
    pub last_write: Option<SystemTime>,
    /// The record's creation time, else the directory's.
    pub created_at: Option<String>,
    pub has_model: bool,
    pub status: JobStatus,
    /// The newest resource sample (`resources.jsonl`), if it was sampled.
    pub resources: Option<Value>,
    /// What the job's directory takes on disk, once measured (the index
    /// sets it; reading a snapshot never walks the job).
    pub size_bytes: Option<u64>,
}

impl JobSnapshot {
    /// Reads what the views need of `dir`, once. `last_progress` is the
    /// progress last read of the same job: it stands in while the progress
    /// file is momentarily unreadable (half-written).
    pub fn read(dir: &JobDir, last_progress: Option<&Sourced>) -> JobSnapshot {
        let record = dir.record();
        let progress = match dir.progress() {
            ProgressRead::Found(progress, source) => Some((progress, source)),
            ProgressRead::Unreadable => last_progress.cloned(),
            ProgressRead::Absent => None,
        };
        let last_write = dir.last_write();
        let (step, total) = progress
            .as_ref()
            .map_or((None, None), |(p, _)| (p.step, p.total_steps));
        let status = status_of(record.as_ref().map(|r| r.status), step, total, last_write);
        let created_at = record
            .as_ref()
            .map(|r| r.created_at.clone())
            .or_else(|| dir.created().map(timefmt::rfc3339));
        JobSnapshot {
            id: dir.id().clone(),
            record,
            progress,
            last_write,
            created_at,
            has_model: dir.model_has_files(),
            status,
            resources: dir.latest_resources(),
            size_bytes: None,
        }
    }

    /// When this snapshot's status stops being true with no file changing:
    /// a run without a record is "running" only until it has been silent
    /// for `EXTERNAL_IDLE_SECS`.
    pub fn stale_after(&self) -> Option<SystemTime> {
        let derived_running = self.record.is_none() && self.status == JobStatus::Running;
        let idle = Duration::from_secs(EXTERNAL_IDLE_SECS as u64);
        derived_running
            .then(|| self.last_write.map(|t| t + idle))
            .flatten()
    }

    /// The job as `GET /api/training/jobs/{id}` and the list show it.
    pub fn job_json(&self) -> Value {
        let record = self.record.as_ref();
        let summary = self.progress.as_ref().map(|(p, _)| {
            json!({
                "step": p.step,
                "total_steps": p.total_steps,
                "percent": p.percent(),
                "epoch": p.epoch,
                "loss": p.loss,
                "learning_rate": p.learning_rate,
                "updated_at": p.updated_at,
            })
        });
        json!({
            "id": self.id.as_str(),
            "name": record.and_then(|r| r.name.clone()),
            "status": self.status,
            "managed": record.is_some(),
            "recipe": record.map(|r| r.recipe.clone()),
            "params": record.map(|r| Value::Object(r.params.clone())),
            "created_at": self.created_at,
            "started_at": record.and_then(|r| r.started_at.clone()),
            "finished_at": record.and_then(|r| r.finished_at.clone()),
            "exit_code": record.and_then(|r| r.exit_code),
            "signal": record.and_then(|r| r.signal),
            "stop_signal": record.and_then(|r| r.stop_signal),
            "error": record.and_then(|r| r.error.clone()),
            "updated_at": self.last_write.map(timefmt::rfc3339),
            "has_model": self.has_model,
            "progress": summary,
            "resources": self.resources,
            "size_bytes": self.size_bytes,
        })
    }

    /// The progress document (`GET .../progress`, and each live event).
    pub fn progress_json(&self) -> Value {
        progress_json(&self.id, self.status, self.progress.as_ref())
    }
}

/// A progress sample and the file it came from.
pub type Sourced = (Progress, &'static str);

/// The progress document of job `id`: the sample's fields, the status, the
/// percentage and the file it was read from.
pub fn progress_json(id: &JobId, status: JobStatus, progress: Option<&Sourced>) -> Value {
    let mut body = match progress {
        Some((p, _)) => serde_json::to_value(p).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    body["job_id"] = json!(id.as_str());
    body["status"] = json!(status);
    body["percent"] = json!(progress.and_then(|(p, _)| p.percent()));
    body["source"] = json!(progress.map(|(_, source)| *source));
    body
}

/// The status of a job: its record's, or derived from its files.
fn status_of(
    record_status: Option<JobStatus>,
    step: Option<u64>,
    total: Option<u64>,
    last_write: Option<SystemTime>,
) -> JobStatus {
    record_status.unwrap_or_else(|| {
        let idle = last_write.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .map_or(0, |d| d.as_secs() as i64)
        });
        derive_status(step, total, idle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_a_record_is_running_only_until_it_falls_silent() {
        let written = SystemTime::now() - Duration::from_secs(60);
        let snapshot = JobSnapshot {
            id: JobId::parse("ext").unwrap(),
            record: None,
            progress: None,
            last_write: Some(written),
            created_at: None,
            has_model: false,
            status: JobStatus::Running,
            resources: None,
            size_bytes: None,
        };
        assert_eq!(
            snapshot.stale_after(),
            Some(written + Duration::from_secs(EXTERNAL_IDLE_SECS as u64))
        );
        let finished = JobSnapshot {
            status: JobStatus::Completed,
            ..snapshot.clone()
        };
        assert_eq!(finished.stale_after(), None, "a final status holds");
        let managed = JobSnapshot {
            record: Some(JobRecord::queued(
                "ext",
                "r",
                None,
                serde_json::Map::new(),
                String::new(),
            )),
            ..snapshot
        };
        assert_eq!(managed.stale_after(), None, "a record's status holds");
    }

    #[test]
    fn a_record_decides_the_status_and_files_decide_it_without_one() {
        let now = Some(SystemTime::now());
        assert_eq!(
            status_of(Some(JobStatus::Paused), Some(5), Some(5), now),
            JobStatus::Paused
        );
        assert_eq!(
            status_of(None, Some(5), Some(5), None),
            JobStatus::Completed
        );
        assert_eq!(status_of(None, Some(1), Some(5), now), JobStatus::Running);
        let long_ago = Some(SystemTime::UNIX_EPOCH);
        assert_eq!(
            status_of(None, Some(1), Some(5), long_ago),
            JobStatus::Interrupted
        );
    }
}
