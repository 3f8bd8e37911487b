//! The job routes: the list and one job, checkpoints, progress, history,
//! starting a job from a recipe, and pause, resume and cancel.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Reply;
use crate::app::{App, BODY_MAX};
use crate::archive::ArchiveSource;
use crate::compare;
use crate::http::error::{ApiError, Context};
use crate::http::open_job;
use crate::http::request::HttpRequest;
use crate::http::router::{Action, CompareQuery, Paging};
use crate::names::{CheckpointName, JobId};
use crate::runner::recipes::{Recipes, check_params};
use crate::text::printable;
use crate::timefmt;

/// Longest job name accepted.
const NAME_MAX: usize = 200;

/// A job's JSON as the index holds it; `fresh` reads it from the disk
/// first (after this request changed it).
fn job_reply(app: &App, status: u16, id: &JobId, fresh: bool) -> Result<Reply, ApiError> {
    let entry = if fresh {
        app.index.refresh(id)
    } else {
        app.index.job(id)
    };
    let entry = entry.ok_or(ApiError::JobNotFound)?;
    Ok(Reply::JsonBytes(status, Arc::clone(&entry.json)))
}

/// `GET /api/training/jobs`: every job, newest first; with `limit`, a page
/// of them after the `after` cursor, and the cursor of the next page.
/// Served from the job index: O(page) for a page.
pub fn list(app: &App, paging: &Paging) -> Reply {
    let body = match paging.limit {
        None => app.index.list_json(),
        Some(limit) => app.index.page_json(limit, paging.after.as_ref()).into(),
    };
    Reply::JsonBytes(200, body)
}

/// `GET /api/training/jobs/{job_id}`.
pub fn one(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    job_reply(app, 200, id, false)
}

/// `GET /api/training/{job_id}/checkpoints`.
pub fn checkpoints(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let checkpoints = open_job(app, id)?
        .checkpoints()
        .context("listing checkpoints")?;
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "checkpoints": checkpoints }),
    ))
}

/// `GET /api/training/{job_id}/files`: the files a model download of
/// `source` holds (under their names in the archive), each with its size,
/// time and, once the digest worker has hashed it, SHA-256; as a
/// `SHA256SUMS` text (`sha256sum -c` checks an unzipped download) once
/// every file is hashed.
pub fn files(
    app: &App,
    id: &JobId,
    source: &ArchiveSource,
    sha256sum: bool,
) -> Result<Reply, ApiError> {
    let job = open_job(app, id)?;
    if !job.has_model().context("looking for the model")? {
        return Err(ApiError::ModelNotFound(id.clone()));
    }
    let files = job
        .archive(source)
        .context("listing the files")?
        .ok_or_else(|| match source {
            ArchiveSource::Checkpoint(name) => ApiError::CheckpointNotFound(name.clone()),
            _ => ApiError::ModelNotFound(id.clone()),
        })?
        .entries();
    let digests: Vec<Option<String>> = files
        .iter()
        .map(|f| app.digests.get(&f.fingerprint).map(|d| d.sha256_hex()))
        .collect();
    if sha256sum {
        let manifest = app.digests.sha256sums(&files).ok_or(ApiError::NotReady(
            "The SHA-256 of some files is still being computed; try again shortly",
        ))?;
        return Ok(Reply::Page {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: manifest.into_bytes(),
            headers: Vec::new(),
        });
    }
    let listed: Vec<Value> = files
        .iter()
        .zip(&digests)
        .map(|(f, sha256)| {
            json!({
                "path": f.name,
                "size": f.fingerprint.size,
                "modified_at": timefmt::rfc3339_from_nanos(f.fingerprint.mtime_ns),
                "sha256": sha256,
            })
        })
        .collect();
    let checkpoint = match source {
        ArchiveSource::Checkpoint(name) => Some(name.as_str()),
        _ => None,
    };
    Ok(Reply::Json(
        200,
        json!({
            "job_id": id.as_str(),
            "checkpoint": checkpoint,
            "hashed": digests.iter().all(Option::is_some),
            "files": listed,
        }),
    ))
}

/// `GET /api/training/{job_id}/progress`.
pub fn progress(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let entry = app.index.job(id).ok_or(ApiError::JobNotFound)?;
    Ok(Reply::Json(200, entry.progress_json()))
}

/// `GET /api/training/{job_id}/resources`: what the job used while it
/// ran, one sample every `--sample-interval`, thinned to at most
/// `RESOURCES_POINTS_MAX` (oldest first).
pub fn resources(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let samples = open_job(app, id)?
        .resources()
        .context("reading resource samples")?;
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "samples": samples }),
    ))
}

/// `GET /api/training/compare?jobs=a,b,c&metric=loss[&better=]`: each
/// job's curve of the metric by step (its bounded history), its last and
/// best values, and what it ran (recipe, params, duration); with the
/// scalars every job has, for choosing another.
pub fn compare(app: &App, asked: &CompareQuery) -> Result<Reply, ApiError> {
    let better = asked
        .better
        .unwrap_or_else(|| compare::Better::guess(&asked.metric));
    let mut shared: Option<BTreeSet<String>> = None;
    let mut jobs = Vec::with_capacity(asked.jobs.len());
    for id in &asked.jobs {
        let entry = app.index.job(id).ok_or(ApiError::JobNotFound)?;
        let job: Value = serde_json::from_slice(&entry.json).unwrap_or(Value::Null);
        let history = open_job(app, id)?.history(&app.histories);
        let scalars: BTreeSet<String> = history.points.iter().flat_map(compare::scalars).collect();
        shared = Some(match shared {
            None => scalars,
            Some(before) => before.intersection(&scalars).cloned().collect(),
        });
        let curve = compare::curve(&history.points, &asked.metric, better);
        let point =
            |p: Option<(u64, f64)>| p.map(|(step, value)| json!({ "step": step, "value": value }));
        let started = job["started_at"].as_str().and_then(timefmt::parse_rfc3339);
        let ended = match job["finished_at"].as_str() {
            Some(at) => timefmt::parse_rfc3339(at),
            None => timefmt::parse_rfc3339(&timefmt::now_rfc3339()),
        };
        let duration = started
            .zip(ended)
            .map(|(start, end)| ((end - start).max(0.0) * 10.0).round() / 10.0);
        jobs.push(json!({
            "id": id.as_str(),
            "name": job["name"],
            "status": job["status"],
            "recipe": job["recipe"],
            "params": job["params"],
            "started_at": job["started_at"],
            "finished_at": job["finished_at"],
            "duration_seconds": duration,
            "last": point(curve.last),
            "best": point(curve.best),
            "points": curve.points,
        }));
    }
    Ok(Reply::Json(
        200,
        json!({
            "metric": asked.metric,
            "better": better.as_str(),
            "shared_metrics": shared.unwrap_or_default(),
            "jobs": jobs,
        }),
    ))
}

/// `GET /api/training/{job_id}/metrics`.
pub fn history(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let history = open_job(app, id)?.history(&app.histories);
    Ok(Reply::Json(
        200,
        json!({
            "job_id": id.as_str(),
            "history": history.points,
            "samples": history.samples,
        }),
    ))
}

/// `POST /api/training/jobs`: `{"recipe", "name"?, "params"?}` → 201 and the job.
pub fn start(app: &App, request: &HttpRequest) -> Result<Reply, ApiError> {
    let body: Value = serde_json::from_slice(request.body(BODY_MAX)?)
        .map_err(|e| ApiError::BadRequest(format!("Malformed JSON body: {e}")))?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::BadRequest(
            "The body must be a JSON object".into(),
        ));
    };
    let recipe = match body.remove("recipe") {
        Some(Value::String(recipe)) => recipe,
        Some(_) => return Err(ApiError::BadRequest("'recipe' must be a string".into())),
        None => return Err(ApiError::BadRequest("'recipe' is required".into())),
    };
    let name = match body.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name))
            if name.chars().count() <= NAME_MAX && !name.contains(char::is_control) =>
        {
            Some(name)
        }
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "'name' must be a string of at most {NAME_MAX} printable characters"
            )));
        }
    };
    let params = match body.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(ApiError::BadRequest("'params' must be an object".into())),
    };
    if let Some(key) = body.keys().next() {
        return Err(ApiError::BadRequest(format!(
            "Unknown field '{}'",
            printable(key)
        )));
    }
    let recipes = match app.store.recipes().context("reading recipes.json")? {
        Some(bytes) => Recipes::parse(&bytes)?,
        None => Recipes::default(),
    };
    let spec = recipes
        .get(&recipe)
        .ok_or_else(|| ApiError::BadRequest(format!("Unknown recipe '{}'", printable(&recipe))))?;
    check_params(spec, &params)?;
    let record = app.runner.submit(&recipe, name, params)?;
    let id = JobId::parse(&record.id).map_err(|_| ApiError::Internal)?;
    log::info!("job {id} queued: recipe {recipe}");
    job_reply(app, 201, &id, true)
}

/// `GET /api/training/recipes`: each recipe's name and params (type,
/// bounds, choices, pattern, default), for a start form; never the
/// command, which is the admin's business.
pub fn recipes(app: &App) -> Result<Reply, ApiError> {
    let recipes = match app.store.recipes().context("reading recipes.json")? {
        Some(bytes) => Recipes::parse(&bytes)?,
        None => Recipes::default(),
    };
    let listed: Vec<Value> = recipes
        .0
        .iter()
        .map(|(name, recipe)| {
            let params: Vec<Value> = recipe
                .params
                .iter()
                .map(|(param, spec)| {
                    let mut described = spec.describe();
                    described["name"] = json!(param);
                    described
                })
                .collect();
            json!({ "name": name, "params": params })
        })
        .collect();
    Ok(Reply::Json(200, json!({ "recipes": listed })))
}

/// Refuses (409) to delete from a job that runs (queued, running,
/// paused, being cancelled, or written to by a trainer trainbox did not
/// start).
fn refuse_while_running(app: &App, id: &JobId) -> Result<(), ApiError> {
    let entry = app.index.refresh(id).ok_or(ApiError::JobNotFound)?;
    if app.runner.holds(id) || !entry.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "Job is {}; cancel it (or wait for it to end) first",
            entry.status.as_str()
        )));
    }
    Ok(())
}

const DOWNLOADING: &str = "A download of this job is in progress; try again once it ends";

/// `DELETE /api/training/jobs/{job_id}`: the job's directory and all in
/// it, unless it runs or is being downloaded (409).
pub fn delete_job(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    refuse_while_running(app, id)?;
    app.job_downloads
        .unless_downloading(id, || app.store.remove_job(id))
        .ok_or_else(|| ApiError::Conflict(DOWNLOADING.into()))?
        .context("deleting a job")?;
    app.index.refresh(id);
    log::info!("job {id}: deleted");
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "deleted": true }),
    ))
}

/// `DELETE /api/training/{job_id}/checkpoints/{name}`: one checkpoint, on
/// the same terms as deleting the job.
pub fn delete_checkpoint(app: &App, id: &JobId, name: &CheckpointName) -> Result<Reply, ApiError> {
    refuse_while_running(app, id)?;
    let job = open_job(app, id)?;
    let removed = app
        .job_downloads
        .unless_downloading(id, || job.remove_checkpoint(name))
        .ok_or_else(|| ApiError::Conflict(DOWNLOADING.into()))?
        .context("deleting a checkpoint")?;
    if !removed {
        return Err(ApiError::CheckpointNotFound(name.clone()));
    }
    app.index.refresh(id);
    log::info!("job {id}: checkpoint {name} deleted");
    Ok(Reply::Json(
        200,
        json!({ "job_id": id.as_str(), "checkpoint": name.as_str(), "deleted": true }),
    ))
}

/// `POST /api/training/{job_id}/{pause,resume,cancel}` → 200 and the job.
pub fn control(app: &App, id: &JobId, action: Action) -> Result<Reply, ApiError> {
    // The runner answers for a missing job (404) or one it does not hold
    // (409); the job is read once, for the answer.
    match action {
        Action::Pause => app.runner.pause(id),
        Action::Resume => app.runner.resume(id),
        Action::Cancel => app.runner.cancel(id),
    }?;
    log::info!("job {id}: {}", action.as_str());
    job_reply(app, 200, id, true)
}
