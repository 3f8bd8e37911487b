//! The job record (`job.json`) and the job statuses.
//!
//! Jobs started by trainbox have a record written by the runner; jobs written
//! by another trainer into the same layout have none, and their status is
//! derived from their files by [`derive_status`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Paused,
    /// Asked to cancel: SIGTERM sent, the trainer not gone yet.
    Cancelling,
    Completed,
    Failed,
    Cancelled,
    /// Was running or paused when the server stopped.
    Interrupted,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Paused,
        JobStatus::Cancelling,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// True once the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::Interrupted
        )
    }
}

/// `job.json`: what a user asks about a job later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub recipe: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    pub status: JobStatus,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Exit code of a trainer that exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal that ended a trainer.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The signal trainbox sent that ended the trainer, at a cancel or a
    /// server stop: SIGTERM (15) when it stopped within the grace period,
    /// SIGKILL (9) when it had to be killed after it.
    #[serde(default)]
    pub stop_signal: Option<i32>,
    /// Why a job failed without an exit code (e.g. the command was not found).
    #[serde(default)]
    pub error: Option<String>,
    /// The trainer's pid, which is also its process group id.
    #[serde(default)]
    pub pid: Option<i32>,
}

impl JobRecord {
    /// The record of a job just queued: nothing has happened to it yet.
    pub fn queued(
        id: &str,
        recipe: &str,
        name: Option<String>,
        params: Map<String, Value>,
        created_at: String,
    ) -> JobRecord {
        JobRecord {
            id: id.to_owned(),
            name,
            recipe: recipe.to_owned(),
            params,
            status: JobStatus::Queued,
            created_at,
            started_at: None,
            finished_at: None,
            exit_code: None,
            signal: None,
            stop_signal: None,
            error: None,
            pid: None,
        }
    }
}

/// Seconds without a write after which an external run is taken as no
/// longer running.
pub const EXTERNAL_IDLE_SECS: i64 = 600;

/// The status of a job that has no record, from what its files say: done
/// when its progress reached its total, running while it wrote recently,
/// otherwise interrupted (it stopped before reaching its total).
pub fn derive_status(
    step: Option<u64>,
    total_steps: Option<u64>,
    secs_since_last_write: Option<i64>,
) -> JobStatus {
    match (step, total_steps) {
        (Some(step), Some(total)) if total > 0 && step >= total => JobStatus::Completed,
        _ => match secs_since_last_write {
            Some(idle) if idle < EXTERNAL_IDLE_SECS => JobStatus::Running,
            _ => JobStatus::Interrupted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_lowercase() {
        for status in JobStatus::ALL {
            let text = serde_json::to_string(&status).unwrap();
            assert_eq!(text, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<JobStatus>(&text).unwrap(), status);
        }
    }

    #[test]
    fn external_status() {
        assert_eq!(
            derive_status(Some(10), Some(10), Some(9999)),
            JobStatus::Completed
        );
        assert_eq!(
            derive_status(Some(5), Some(10), Some(3)),
            JobStatus::Running
        );
        assert_eq!(derive_status(None, None, Some(3)), JobStatus::Running);
        assert_eq!(
            derive_status(Some(5), Some(10), Some(9999)),
            JobStatus::Interrupted
        );
        assert_eq!(derive_status(None, None, None), JobStatus::Interrupted);
    }

    #[test]
    fn a_minimal_record_parses() {
        let record: JobRecord = serde_json::from_str(
            r#"{"id":"a","recipe":"demo","status":"queued","created_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(record.status, JobStatus::Queued);
        assert!(record.params.is_empty());
    }
}
