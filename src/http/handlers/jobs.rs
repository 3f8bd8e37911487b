//! The job routes: the list and one job, checkpoints, progress, history,
//! starting a job from a recipe, and pause, resume and cancel.

use serde_json::{Map, Value, json};

use super::Reply;
use crate::app::{App, BODY_MAX};
use crate::http::error::{ApiError, Context};
use crate::http::open_job;
use crate::http::request::HttpRequest;
use crate::http::router::{Action, Cursor, Paging};
use crate::names::JobId;
use crate::runner::recipes::{Recipes, check_params};
use crate::text::printable;
use crate::view::JobSnapshot;

/// Longest job name accepted.
const NAME_MAX: usize = 200;

fn job_json(app: &App, id: &JobId) -> Result<Value, ApiError> {
    Ok(JobSnapshot::read(app, &open_job(app, id)?).job_json())
}

/// The list's sort key: creation time, then id (newest first).
fn key(job: &Value) -> (String, String) {
    let text = |field: &str| job[field].as_str().unwrap_or("").to_owned();
    (text("created_at"), text("id"))
}

/// `GET /api/training/jobs`: every job, newest first; with `limit`, a page
/// of them after the `after` cursor, and the cursor of the next page.
pub fn list(app: &App, paging: &Paging) -> Result<Reply, ApiError> {
    let ids = app.store.job_ids().context("listing jobs")?;
    let mut jobs: Vec<Value> = Vec::with_capacity(ids.len());
    for id in ids {
        // A job removed while listing is simply not listed.
        if let Ok(Some(dir)) = app.store.job(&id) {
            jobs.push(JobSnapshot::read(app, &dir).job_json());
        }
    }
    jobs.sort_by_key(|job| std::cmp::Reverse(key(job)));
    let Some(limit) = paging.limit else {
        return Ok(Reply::Json(200, json!({ "jobs": jobs })));
    };
    let start = match &paging.after {
        None => 0,
        Some(after) => {
            let after = (after.created_at.clone(), after.id.as_str().to_owned());
            jobs.partition_point(|job| key(job) >= after)
        }
    };
    let page: Vec<Value> = jobs.iter().skip(start).take(limit).cloned().collect();
    let next = (start + page.len() < jobs.len())
        .then(|| page.last())
        .flatten()
        .and_then(|last| {
            let (created_at, id) = key(last);
            let id = JobId::parse(&id).ok()?;
            Some(Cursor { created_at, id }.render())
        });
    Ok(Reply::Json(200, json!({ "jobs": page, "next": next })))
}

/// `GET /api/training/jobs/{job_id}`.
pub fn one(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    Ok(Reply::Json(200, job_json(app, id)?))
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

/// `GET /api/training/{job_id}/progress`.
pub fn progress(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    Ok(Reply::Json(
        200,
        JobSnapshot::read(app, &dir).progress_json(),
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
    Ok(Reply::Json(201, job_json(app, &id)?))
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
    Ok(Reply::Json(200, job_json(app, id)?))
}
