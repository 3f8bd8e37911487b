//! Handlers: one function per `Route`, from parsed values to a [`Reply`].
//!
//! [`dispatch`] is the one `match` over the API. Handlers touch files only
//! through the store and never see a raw path or name.

use std::io::{self, Read};
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use tiny_http::Request;

use super::auth;
use super::error::{ApiError, printable};
use super::router::{Action, Asset, Compression, Cursor, Matched, Paging, Route};
use super::session;
use crate::app::{App, BODY_MAX, Slot};
use crate::names::{CheckpointName, JobId};
use crate::runner::recipes::{Recipes, check_params};
use crate::runner::{ControlError, SubmitError};
use crate::store::records::{JobStatus, derive_status};
use crate::store::{JobDir, LOG_FILE};
use crate::timefmt;

/// Longest job name accepted.
const NAME_MAX: usize = 200;

/// What a handler produced.
pub enum Reply {
    /// A JSON document with a status.
    Json(u16, Value),
    /// A page or document, with any extra headers.
    Page {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// A download, streamed on its own thread.
    Download(Download),
    /// A live event stream, on its own thread.
    Live(Live),
}

/// A live stream that passed its checks and holds a stream slot.
pub struct Live {
    pub job: JobDir,
    pub kind: LiveKind,
    pub slot: Slot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    /// Server-Sent Events (`/api/training/{job_id}/events`).
    Events,
    /// A WebSocket (`/ws/training/{job_id}`).
    WebSocket,
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

pub fn dispatch(app: &App, matched: Matched, request: &mut Request) -> Result<Reply, ApiError> {
    let head = matched.head;
    match matched.route {
        Route::Index => Ok(html(
            200,
            &crate::ui::index_html(app.tokens.is_some()),
            Vec::new(),
        )),
        Route::Asset(asset) => Ok(match asset {
            Asset::Script => asset_reply("text/javascript; charset=utf-8", crate::ui::APP_JS),
            Asset::Style => asset_reply("text/css; charset=utf-8", crate::ui::APP_CSS),
            Asset::Icon => asset_reply("image/svg+xml", crate::ui::ICON_SVG),
        }),
        Route::Login => login(app, request),
        Route::Logout => Ok(logout(app, request)),
        Route::Health => Ok(Reply::Json(
            200,
            json!({ "status": "ok", "control": app.runner.control_mode() }),
        )),
        Route::ListJobs(paging) => list_jobs(app, &paging),
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
        Route::StartJob => start_job(app, request),
        Route::Control(id, action) => control(app, &id, action),
        Route::OpenApi => Ok(Reply::Page {
            status: 200,
            content_type: "application/json",
            body: super::openapi::SPEC.as_bytes().to_vec(),
            headers: Vec::new(),
        }),
        Route::Metrics => metrics(app),
        Route::Events(id) => live(app, &id, LiveKind::Events, head),
        Route::WebSocket(id) => live(app, &id, LiveKind::WebSocket, head),
    }
}

fn asset_reply(content_type: &'static str, body: &str) -> Reply {
    Reply::Page {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn html(status: u16, page: &str, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Page {
        status,
        content_type: "text/html; charset=utf-8",
        body: page.as_bytes().to_vec(),
        headers,
    }
}

/// The login form, for a browser that has no (valid) token yet.
pub fn login_page(failed: bool) -> Reply {
    let page = crate::ui::login_html(failed);
    html(401, &page, vec![("WWW-Authenticate", "Bearer".to_owned())])
}

fn see_other(location: &str, mut headers: Vec<(&'static str, String)>) -> Reply {
    headers.push(("Location", location.to_owned()));
    Reply::Page {
        status: 303,
        content_type: "text/plain; charset=utf-8",
        body: Vec::new(),
        headers,
    }
}

/// The `Set-Cookie` value carrying a session id: HttpOnly (no script reads
/// it), SameSite=Strict (no other site sends it), for the session's
/// lifetime; `None` clears it.
fn session_cookie(id: Option<&str>) -> String {
    let (value, age) = match id {
        Some(id) => (id, session::LIFETIME.as_secs()),
        None => ("", 0),
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}",
        session::COOKIE
    )
}

/// `POST /login`: a form (`token=...`); a valid token opens a session, whose
/// id becomes the cookie, and the browser goes to the page; anything else
/// gets the form again. At most `ratelimit::ATTEMPTS` a minute per address.
fn login(app: &App, request: &mut Request) -> Result<Reply, ApiError> {
    if let Some(client) = request.remote_addr() {
        if let Err(wait) = app.logins.attempt(client.ip(), std::time::Instant::now()) {
            return Err(ApiError::TooManyRequests {
                detail: "Too many login attempts; try again later",
                retry_after: wait.as_secs().max(1),
            });
        }
    }
    let body = body(request, LOGIN_BODY_MAX)?;
    let Some(tokens) = app.tokens.as_ref() else {
        return Ok(see_other("/", Vec::new()));
    };
    let token = form_field(&body, "token").unwrap_or_default();
    match tokens.role_of(token.as_bytes()) {
        Some(role) => {
            let id = app
                .sessions
                .open(role)
                .map_err(internal("opening a session"))?;
            Ok(see_other(
                "/",
                vec![("Set-Cookie", session_cookie(Some(&id)))],
            ))
        }
        None => Ok(login_page(true)),
    }
}

/// `POST /logout`: the session ends here, not only in the browser.
fn logout(app: &App, request: &Request) -> Reply {
    for header in request.headers().iter().filter(|h| h.field.equiv("Cookie")) {
        if let Some(id) = auth::cookie(header.value.as_str(), session::COOKIE) {
            app.sessions.close(id);
        }
    }
    see_other("/", vec![("Set-Cookie", session_cookie(None))])
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (key == name.as_bytes())
            .then(|| super::router::form_decode(value))
            .flatten()
    })
}

fn open_job(app: &App, id: &JobId) -> Result<JobDir, ApiError> {
    app.store
        .job(id)
        .map_err(internal("opening a job"))?
        .ok_or(ApiError::JobNotFound)
}

/// `GET /api/training/jobs`: every job, newest first; with `limit`, a page
/// of them after the `after` cursor, and the cursor of the next page.
fn list_jobs(app: &App, paging: &Paging) -> Result<Reply, ApiError> {
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
    let Some(limit) = paging.limit else {
        return Ok(Reply::Json(200, json!({ "jobs": jobs })));
    };
    let key = |v: &Value| {
        (
            v["created_at"].as_str().unwrap_or("").to_owned(),
            v["id"].as_str().unwrap_or("").to_owned(),
        )
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
            Some(
                Cursor {
                    created_at,
                    id: JobId::parse(&id).ok()?,
                }
                .render(),
            )
        });
    Ok(Reply::Json(200, json!({ "jobs": page, "next": next })))
}

fn job(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    Ok(Reply::Json(200, job_view(app, &dir)))
}

/// The status of a job: its record's, or derived from its files (the
/// time of their last write is looked up only then).
fn status_of(
    record_status: Option<JobStatus>,
    step: Option<u64>,
    total: Option<u64>,
    last_write: impl FnOnce() -> Option<SystemTime>,
) -> JobStatus {
    record_status.unwrap_or_else(|| {
        let idle = last_write().map(|t| {
            SystemTime::now()
                .duration_since(t)
                .map_or(0, |d| d.as_secs() as i64)
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
    let last_write = dir.last_write();
    let status = status_of(record.as_ref().map(|r| r.status), step, total, || {
        last_write
    });
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
        "stop_signal": record.as_ref().and_then(|r| r.stop_signal),
        "error": record.as_ref().and_then(|r| r.error.clone()),
        "updated_at": last_write.map(timefmt::rfc3339),
        "has_model": dir.has_model().unwrap_or(false),
        "progress": summary,
    })
}

/// `GET /metrics`: the Prometheus text exposition, with the jobs counted
/// by status now.
fn metrics(app: &App) -> Result<Reply, ApiError> {
    let mut counts: Vec<(JobStatus, usize)> = Vec::new();
    for id in app.store.job_ids().map_err(internal("listing jobs"))? {
        let Ok(Some(dir)) = app.store.job(&id) else {
            continue;
        };
        let (step, total) = app
            .progress(&dir)
            .map_or((None, None), |(p, _)| (p.step, p.total_steps));
        let status = status_of(dir.record().map(|r| r.status), step, total, || {
            dir.last_write()
        });
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    let text = app
        .metrics
        .render(app.downloads.current(), app.runner.active_count(), &counts);
    Ok(Reply::Page {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: text.into_bytes(),
        headers: Vec::new(),
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
    let (body, _) = progress_body(app, &dir);
    Ok(Reply::Json(200, body))
}

/// The progress document of a job (also the payload of live events), and
/// its status.
pub fn progress_body(app: &App, dir: &JobDir) -> (Value, JobStatus) {
    let record = dir.record();
    let progress = app.progress(dir);
    let (step, total) = progress
        .as_ref()
        .map_or((None, None), |(p, _)| (p.step, p.total_steps));
    let status = status_of(record.map(|r| r.status), step, total, || dir.last_write());
    let mut body = match &progress {
        Some((p, _)) => serde_json::to_value(p).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    body["job_id"] = json!(dir.id().as_str());
    body["status"] = json!(status);
    body["percent"] = json!(progress.as_ref().and_then(|(p, _)| p.percent()));
    body["source"] = json!(progress.as_ref().map(|(_, source)| *source));
    (body, status)
}

fn history(app: &App, id: &JobId) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let history = dir.history(&app.histories);
    Ok(Reply::Json(
        200,
        json!({
            "job_id": id.as_str(),
            "history": history.points,
            "samples": history.samples,
        }),
    ))
}

fn live(app: &App, id: &JobId, kind: LiveKind, head: bool) -> Result<Reply, ApiError> {
    let job = open_job(app, id)?;
    if head {
        // Headers only: what the stream would start with.
        let content_type = match kind {
            LiveKind::Events => "text/event-stream",
            LiveKind::WebSocket => {
                return Err(ApiError::BadRequest(
                    "Expected a WebSocket handshake".into(),
                ));
            }
        };
        return Ok(Reply::Page {
            status: 200,
            content_type,
            body: Vec::new(),
            headers: vec![("Cache-Control", "no-cache".to_owned())],
        });
    }
    let slot = app
        .streams
        .try_acquire(app.limits.max_streams)
        .ok_or(ApiError::Unavailable(
            "Too many live streams; try again shortly",
        ))?;
    Ok(Reply::Live(Live { job, kind, slot }))
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

/// Reads and parses a JSON request body (see [`body`]).
fn json_body(request: &mut Request) -> Result<Value, ApiError> {
    serde_json::from_slice(&body(request, BODY_MAX)?)
        .map_err(|e| ApiError::BadRequest(format!("Malformed JSON body: {e}")))
}

/// The login form carries one token: a larger body is no login.
const LOGIN_BODY_MAX: usize = 1024;

/// Reads a request body of at most `max` bytes. A larger declared length
/// is refused before a byte of it is read.
fn body(request: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    if request.body_length().is_some_and(|n| n > max) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| ApiError::BadRequest("The request body could not be read".into()))?;
    if body.len() > max {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(body)
}

/// `POST /api/training/jobs`: `{"recipe", "name"?, "params"?}` → 201 and the job.
fn start_job(app: &App, request: &mut Request) -> Result<Reply, ApiError> {
    let Value::Object(mut body) = json_body(request)? else {
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
    let recipes = match app
        .store
        .recipes()
        .map_err(internal("reading recipes.json"))?
    {
        Some(bytes) => Recipes::parse(&bytes).map_err(|e| {
            log::error!("{e}");
            ApiError::RecipesBroken(e.to_string())
        })?,
        None => Recipes::default(),
    };
    let spec = recipes
        .get(&recipe)
        .ok_or_else(|| ApiError::BadRequest(format!("Unknown recipe '{}'", printable(&recipe))))?;
    check_params(spec, &params).map_err(ApiError::BadRequest)?;
    let record = app
        .runner
        .submit(&recipe, name, params)
        .map_err(|e| match e {
            SubmitError::QueueFull(_) => ApiError::TooManyRequests {
                detail: "The job queue is full; try again when a job has finished",
                retry_after: 30,
            },
            SubmitError::Io(e) => internal("creating a job")(e),
        })?;
    let id = JobId::parse(&record.id).map_err(|_| ApiError::Internal)?;
    log::info!("job {id} queued: recipe {recipe}");
    let dir = open_job(app, &id)?;
    Ok(Reply::Json(201, job_view(app, &dir)))
}

/// `POST /api/training/{job_id}/{pause,resume,cancel}` → 200 and the job.
fn control(app: &App, id: &JobId, action: Action) -> Result<Reply, ApiError> {
    let dir = open_job(app, id)?;
    let result = match action {
        Action::Pause => app.runner.pause(id),
        Action::Resume => app.runner.resume(id),
        Action::Cancel => app.runner.cancel(id),
    };
    match result {
        Ok(_) => {
            log::info!("job {id}: {}", action.as_str());
            Ok(Reply::Json(200, job_view(app, &dir)))
        }
        Err(ControlError::NotFound) => Err(ApiError::JobNotFound),
        Err(ControlError::Conflict(detail)) => Err(ApiError::Conflict(detail)),
        Err(ControlError::Io) => Err(ApiError::Internal),
    }
}
