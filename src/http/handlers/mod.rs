//! Handlers: one function per `Route`, from values (the parsed route, the
//! [`HttpRequest`]) to a [`Reply`]; no socket, so each is unit-tested in
//! `tests.rs` in milliseconds.
//!
//! [`dispatch`] is the one `match` over the API. Handlers touch files only
//! through the store and never see a raw path or name. Downloads and live
//! streams are admitted here and streamed by their own modules
//! (`http::download`, `http::live`) on threads of their own.

pub mod hub;
mod jobs;
mod signin;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::{Value, json};

use super::download::{self, Download};
use super::error::ApiError;
use super::live::{self, Admitted, Live};
use super::request::HttpRequest;
use super::resolve::{self, FileDownload};
use super::router::{Asset, Matched, Route};
use crate::app::App;
use crate::archive::{ArchiveSource, Compression};

pub use signin::login_page;

/// What a handler produced.
pub enum Reply {
    /// A JSON document with a status.
    Json(u16, Value),
    /// A JSON document already serialized (the job index keeps them so).
    JsonBytes(u16, Arc<[u8]>),
    /// A page or document, with any extra headers.
    Page {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// A download, streamed on its own thread.
    Download(Download),
    /// One file of a Hub revision, streamed on its own thread.
    File(FileDownload),
    /// A live event stream, on its own thread.
    Live(Live),
}

pub fn dispatch(app: &App, request: &HttpRequest, matched: Matched) -> Result<Reply, ApiError> {
    let head = matched.head;
    match matched.route {
        Route::Index => Ok(page(
            200,
            &crate::ui::index_html(app.access.tokens.is_some()),
            Vec::new(),
        )),
        Route::Asset(asset) => Ok(self::asset(asset)),
        Route::Login => signin::login(app, request),
        Route::Logout => Ok(signin::logout(app, request)),
        Route::Health => Ok(Reply::Json(
            200,
            json!({
                "status": "ok",
                "control": app.runner.control_mode(),
                "index": app.index.mode().to_string(),
            }),
        )),
        Route::ListJobs(paging) => Ok(jobs::list(app, &paging)),
        Route::Job(id) => jobs::one(app, &id),
        Route::Checkpoints(id) => jobs::checkpoints(app, &id),
        Route::Progress(id) => jobs::progress(app, &id),
        Route::History(id) => jobs::history(app, &id),
        Route::Resources(id) => jobs::resources(app, &id),
        Route::Compare(asked) => jobs::compare(app, &asked),
        Route::Disk => crate::housekeeping::Disk::now(app)
            .map(|disk| Reply::Json(200, disk.json()))
            .ok_or(ApiError::Internal),
        Route::StartJob => jobs::start(app, request),
        Route::Recipes => jobs::recipes(app),
        Route::Downloads(asked) => Ok(downloads(app, &asked)),
        Route::DeleteJob(id) => jobs::delete_job(app, &id),
        Route::DeleteCheckpoint(id, name) => jobs::delete_checkpoint(app, &id, &name),
        Route::Control(id, action) => jobs::control(app, &id, action),
        Route::DownloadModel {
            job,
            source,
            compression,
            allow_incomplete,
        } => download::admit(app, &job, &source, compression, allow_incomplete, head)
            .map(Reply::Download),
        Route::DownloadLogs(id) => download::admit(
            app,
            &id,
            &ArchiveSource::Logs,
            Compression::Deflate,
            false,
            head,
        )
        .map(Reply::Download),
        Route::Files {
            job,
            source,
            sha256sum,
        } => jobs::files(app, &job, &source, sha256sum),
        Route::Events(id) => stream(app, request, &id, false, head),
        Route::WebSocket(id) => stream(app, request, &id, true, head),
        Route::OpenApi => Ok(Reply::Page {
            status: 200,
            content_type: "application/json",
            body: super::openapi::SPEC.as_bytes().to_vec(),
            headers: Vec::new(),
        }),
        Route::Metrics => metrics(app),
        Route::HubRepo {
            job,
            revision,
            blobs,
        } => hub::repo(app, &job, &revision, blobs),
        Route::HubTree {
            job,
            revision,
            path,
            recursive,
        } => hub::tree(app, &job, &revision, path.as_ref(), recursive),
        Route::HubRefs(job) => hub::refs(app, &job),
        Route::HubResolve {
            job,
            revision,
            path,
        } => resolve::admit(app, &job, &revision, &path, head).map(Reply::File),
    }
}

fn asset(asset: Asset) -> Reply {
    let (content_type, body) = match asset {
        Asset::Script => ("text/javascript; charset=utf-8", crate::ui::APP_JS),
        Asset::Style => ("text/css; charset=utf-8", crate::ui::APP_CSS),
        Asset::Icon => ("image/svg+xml", crate::ui::ICON_SVG),
    };
    Reply::Page {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn page(status: u16, html: &str, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Page {
        status,
        content_type: "text/html; charset=utf-8",
        body: html.as_bytes().to_vec(),
        headers,
    }
}

/// A live stream: admitted here, or only its headers for `HEAD`.
fn stream(
    app: &App,
    request: &HttpRequest,
    id: &crate::names::JobId,
    websocket: bool,
    head: bool,
) -> Result<Reply, ApiError> {
    match live::admit(app, request, id, websocket, head)? {
        Admitted::Stream(live) => Ok(Reply::Live(live)),
        Admitted::HeadOnly => Ok(Reply::Page {
            status: 200,
            content_type: "text/event-stream",
            body: Vec::new(),
            headers: vec![("Cache-Control", "no-cache".to_owned())],
        }),
    }
}

/// `GET /metrics`: the Prometheus text exposition, with the jobs counted
/// by status now.
fn metrics(app: &App) -> Result<Reply, ApiError> {
    let running = app.runner.resources();
    let text = app.metrics.render(&crate::metrics::Now {
        downloads_in_flight: app.downloads.current(),
        trainers: app.runner.active_count(),
        jobs: &app.index.counts(),
        running: &running,
        disk: crate::housekeeping::Disk::now(app).map(|disk| crate::metrics::DiskNow {
            total_bytes: disk.total_bytes,
            free_bytes: disk.free_bytes,
            jobs_bytes: disk.jobs_bytes,
        }),
    });
    Ok(Reply::Page {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: text.into_bytes(),
        headers: Vec::new(),
    })
}

/// `GET /api/training/downloads`: the audit, newest first, a page at a
/// time (`next` is the `before` of the next page).
fn downloads(app: &App, asked: &crate::http::router::AuditQuery) -> Reply {
    let (entries, next) = match app.audit.as_ref() {
        Some(audit) => audit.page(
            asked.job.as_ref().map(|j| j.as_str()),
            asked.limit,
            asked.before,
        ),
        None => (Vec::new(), None),
    };
    Reply::Json(
        200,
        serde_json::json!({ "downloads": entries, "next": next }),
    )
}
