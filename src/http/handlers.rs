//! Handlers: one function per `Route`, from parsed values to a [`Reply`].
//!
//! [`dispatch`] is the one `match` over the API. Handlers touch files only
//! through the store and never see a raw path or name.

use std::io;
use std::time::SystemTime;

use serde_json::{Value, json};
use tiny_http::Request;

use super::error::ApiError;
use super::router::{Compression, Matched, Route};
use crate::app::{App, Slot};
use crate::names::{CheckpointName, JobId};
use crate::store::records::{JobStatus, derive_status};
use crate::store::{JobDir, LOG_FILE};
use crate::timefmt;

/// What a handler produced.
pub enum Reply {
    /// A JSON document with a status.
    Json(u16, Value),
    /// A static page or document.
    Static {
        content_type: &'static str,
        body: &'static [u8],
    },
    /// A download, streamed on its own thread.
    Download(Download),
}

/// A download that passed every check and holds a download slot.
pub struct Download {
    pub job: JobDir,
    pub kind: DownloadKind,
    pub filename: String,
    pub head: bool,
    pub slot: Slot,
}

pub enum DownloadKind {
    /// `base` (a path in the job: `model` or `model/<checkpoint>`) as a ZIP.
    Model {
        base: String,
        compression: Compression,
    },
    /// `training.log`, `progress.json` and `metrics.jsonl`, deflated.
    Logs,
}

/// Logs an I/O failure with its context and answers a bare 500: the client
/// never sees paths or OS messages.
pub fn internal(context: &'static str) -> impl Fn(io::Error) -> ApiError {
    move |e| {
        log::error!("{context}: {e}");
        ApiError::Internal
    }
}

pub fn dispatch(app: &App, matched: Matched, _request: &mut Request) -> Result<Reply, ApiError> {
    let head = matched.head;
    match matched.route {
        Route::Index => Ok(Reply::Static {
            content_type: "text/html; charset=utf-8",
            body: crate::ui::INDEX_HTML.as_bytes(),
        }),
        Route::Health => Ok(Reply::Json(200, json!({ "status": "ok" }))),
        Route::ListJobs => list_jobs(app),
        Route::Job(id) => job(app, &id),
        Route::Checkpoints(id) => checkpoints(app, &id),
        Route::Progress(id) => progress(app, &id),
        Route::History(id) => history(app, &id),
        Route::DownloadModel {
            job,
            checkpoint,
            compression,
        } => download_model(app, &job, checkpoint.as_ref(), compression, head),
        Route::DownloadLogs(id) => download_logs(app, &id, head),
        Route::Metrics
        | Route::OpenApi
        | Route::StartJob
        | Route::Control(..)
        | Route::Events(_)
        | Route::WebSocket(_) => Err(ApiError::NotImplemented),
    }
}

fn open_job(app: &App, id: &JobId) -> Result<JobDir, ApiError> {
    app.store
        .job(id)
        .map_err(internal("opening a job"))?
        .ok_or(ApiError::JobNotFound)
}

fn list_jobs(app: &App) -> Result<Reply, ApiError> {
    let ids = app.store.job_ids().map_err(internal("listing jobs"))?;
    let mut jobs: Vec<Value> = Vec::with_capacity(ids.len());
    for id in ids {
        // A job removed while listing is simply not listed.
        if let Ok(Some(dir)) = app.store.job(&id) {
            jobs.push(job_view(app, &dir));
        }
    }
    // Newest first; ties by id so the order is stable.
    jobs.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["created_at"].as_str().unwrap_or("").to_owned(),
                v["id"].as_str().unwrap_or("").to_owned(),
            )
        };
        key(b).cmp(&key(a))
    });
    Ok(Reply::Json(200, json!({ "jobs": jobs })))
}

fn job(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    Ok(Reply::Json(200, job_view(app, &dir)))
}

/// The status of a job: its record's, or derived from its files.
fn status_of(
    dir: &JobDir,
    record_status: Option<JobStatus>,
    step: Option<u64>,
    total: Option<u64>,
) -> JobStatus {
    record_status.unwrap_or_else(|| {
        let idle = dir.last_write().and_then(|t| {
            SystemTime::now()
                .duration_since(t)
                .ok()
                .map(|d| d.as_secs() as i64)
                .or(Some(0))
        });
        derive_status(step, total, idle)
    })
}

/// One job as the API shows it.
pub fn job_view(app: &App, dir: &JobDir) -> Value {
    let record = dir.record();
    let progress = app.progress(dir);
    let (step, total) = progress
        .as_ref()
        .map_or((None, None), |(p, _)| (p.step, p.total_steps));
    let status = status_of(dir, record.as_ref().map(|r| r.status), step, total);
    let created_at = record.as_ref().map(|r| r.created_at.clone()).or_else(|| {
        let meta = dir.dir().dir_metadata().ok()?;
        let created = meta.created().or_else(|_| meta.modified()).ok()?;
        Some(timefmt::rfc3339(created.into_std()))
    });
    let summary = progress.as_ref().map(|(p, _)| {
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
        "id": dir.id().as_str(),
        "name": record.as_ref().and_then(|r| r.name.clone()),
        "status": status,
        "managed": record.is_some(),
        "recipe": record.as_ref().map(|r| r.recipe.clone()),
        "params": record.as_ref().map(|r| Value::Object(r.params.clone())),
        "created_at": created_at,
        "started_at": record.as_ref().and_then(|r| r.started_at.clone()),
        "finished_at": record.as_ref().and_then(|r| r.finished_at.clone()),
        "exit_code": record.as_ref().and_then(|r| r.exit_code),
        "signal": record.as_ref().and_then(|r| r.signal),
        "error": record.as_ref().and_then(|r| r.error.clone()),
        "updated_at": dir.last_write().map(timefmt::rfc3339),
        "has_model": dir.has_model().unwrap_or(false),
        "progress": summary,
    })
}

fn checkpoints(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let checkpoints = dir.checkpoints().map_err(internal("listing checkpoints"))?;
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "checkpoints": checkpoints }),
    ))
}

fn progress(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let record = dir.record();
    let progress = app.progress(&dir);
    let (step, total) = progress
        .as_ref()
        .map_or((None, None), |(p, _)| (p.step, p.total_steps));
    let status = status_of(&dir, record.map(|r| r.status), step, total);
    let mut body = match &progress {
        Some((p, _)) => serde_json::to_value(p).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    body["job_id"] = json!(id.as_str());
    body["status"] = json!(status);
    body["percent"] = json!(progress.as_ref().and_then(|(p, _)| p.percent()));
    body["source"] = json!(progress.as_ref().map(|(_, source)| *source));
    Ok(Reply::Json(200, body))
}

fn history(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let history = dir.history().map_err(internal("reading the history"))?;
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "history": history }),
    ))
}

fn download_slot(app: &App) -> Result<Slot, ApiError> {
    app.downloads
        .try_acquire(app.limits.max_downloads)
        .ok_or(ApiError::Unavailable(
            "Too many downloads in progress; try again shortly",
        ))
}

fn download_model(
    app: &App,
    id: &JobId,
    checkpoint: Option<&CheckpointName>,
    compression: Compression,
    head: bool,
) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    if !dir.has_model().map_err(internal("looking for the model"))? {
        return Err(ApiError::ModelNotFound(id.clone()));
    }
    let base = dir
        .download_base(checkpoint)
        .map_err(internal("looking for the checkpoint"))?;
    let (base, filename) = match (base, checkpoint) {
        (Some(base), None) => (base, format!("model_{id}.zip")),
        (Some(base), Some(name)) => (base, format!("model_{id}_{name}.zip")),
        (None, Some(name)) => return Err(ApiError::CheckpointNotFound(name.clone())),
        (None, None) => return Err(ApiError::ModelNotFound(id.clone())),
    };
    Ok(Reply::Download(Download {
        job: dir,
        kind: DownloadKind::Model { base, compression },
        filename,
        head,
        slot: download_slot(app)?,
    }))
}

fn download_logs(app: &App, id: &JobId, head: bool) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let has_log = dir
        .metadata(LOG_FILE)
        .map_err(internal("looking for the log"))?
        .is_some_and(|m| m.is_file());
    if !has_log {
        return Err(ApiError::LogNotFound(id.clone()));
    }
    Ok(Reply::Download(Download {
        job: dir,
        kind: DownloadKind::Logs,
        filename: format!("logs_{id}.zip"),
        head,
        slot: download_slot(app)?,
    }))
}
