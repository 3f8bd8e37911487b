//! The router: a pure function from (method, request target) to a [`Route`].
//!
//! Percent-decoding happens here and only here. A path segment that decodes
//! to `/`, `\`, NUL or invalid UTF-8 never matches anything; names are handed
//! to their parsers, so every `Route` holds parsed `JobId`s and
//! `CheckpointName`s, never raw strings. Unknown or repeated query parameters
//! are refused rather than ignored. The whole API is the `match` in
//! [`route`]; the handler for each variant is one hop away in `http::handlers`.

mod hub;
mod query;
mod render;
#[cfg(test)]
mod tests;

pub use crate::names::Cursor;
pub use query::{AUDIT_PAGE_DEFAULT, AuditQuery, CompareQuery, PAGE_MAX, Paging};

use super::percent;
use crate::archive::{ArchiveSource, Compression};
use crate::compare::{Better, COMPARE_JOBS_MAX};
use crate::hub::{RepoPath, Revision};
use crate::names::{CheckpointName, JobId};
use query::Query;

/// Every endpoint trainbox serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the web page.
    Index,
    /// `GET /ui/app.js`, `/ui/app.css`, `/ui/icon.svg`: the page's script,
    /// style and icon, open
    /// (the login form uses the style), as files of their own so that the
    /// page needs no inline script or style (its CSP forbids them).
    Asset(Asset),
    /// `GET /healthz`: liveness, open without a token.
    Health,
    /// `GET /metrics`: Prometheus text format.
    Metrics,
    /// `GET /openapi.json`: the API's own spec.
    OpenApi,
    /// `POST /login`: a form with a token; sets the cookie the web page uses.
    Login,
    /// `POST /logout`: clears that cookie.
    Logout,
    /// `GET /api/training/jobs[?limit=&after=]`
    ListJobs(Paging),
    /// `POST /api/training/jobs`
    StartJob,
    /// `GET /api/training/recipes`: what jobs can be started with.
    Recipes,
    /// `GET /api/training/downloads[?job=&limit=&before=]`: the download
    /// audit, newest first.
    Downloads(AuditQuery),
    /// `GET /api/training/disk`: the root's file system and the jobs' sizes.
    Disk,
    /// `GET /api/training/compare?jobs=a,b&metric=loss[&better=lower]`:
    /// the jobs' curves of one metric side by side.
    Compare(CompareQuery),
    /// `DELETE /api/training/jobs/{job_id}`: the job and all its files.
    DeleteJob(JobId),
    /// `DELETE /api/training/{job_id}/checkpoints/{name}`.
    DeleteCheckpoint(JobId, CheckpointName),
    /// `GET /api/training/jobs/{job_id}`
    Job(JobId),
    /// `GET /api/training/{job_id}/checkpoints`
    Checkpoints(JobId),
    /// `GET /api/training/{job_id}/progress`
    Progress(JobId),
    /// `GET /api/training/{job_id}/metrics`
    History(JobId),
    /// `GET /api/training/{job_id}/resources`: the job's resource samples.
    Resources(JobId),
    /// `GET /api/training/{job_id}/events`: Server-Sent Events.
    Events(JobId),
    /// `GET /ws/training/{job_id}`: WebSocket.
    WebSocket(JobId),
    /// `POST /api/training/{job_id}/{pause,resume,cancel}`
    Control(JobId, Action),
    /// `GET /api/training/{job_id}/download/model[?checkpoint=|?exclude=checkpoints][&compression=][&allow_incomplete=1]`:
    /// `source` is the model (whole or without checkpoints) or one checkpoint;
    /// `allow_incomplete` lets a checkpoint still being written through.
    DownloadModel {
        job: JobId,
        source: ArchiveSource,
        compression: Compression,
        allow_incomplete: bool,
    },
    /// `GET /api/training/{job_id}/download/logs`
    DownloadLogs(JobId),
    /// `GET /api/training/{job_id}/files[?checkpoint=|?exclude=checkpoints][&format=sha256sum]`:
    /// the files a model download of `source` holds, with their SHA-256;
    /// as a `SHA256SUMS` text with `sha256sum`.
    Files {
        job: JobId,
        source: ArchiveSource,
        sha256sum: bool,
    },
    /// `GET /api/models/trainbox/{job_id}[/revision/{revision}]`: the job
    /// as a Hugging Face Hub repository at a revision (`main` when none is
    /// named); with `blobs`, each file's size and SHA-256.
    HubRepo {
        job: JobId,
        revision: Revision,
        blobs: bool,
    },
    /// `GET /api/models/trainbox/{job_id}/tree/{revision}[/{path}]`: the
    /// files and directories of a revision, at one level or all.
    HubTree {
        job: JobId,
        revision: Revision,
        path: Option<RepoPath>,
        recursive: bool,
    },
    /// `GET /api/models/trainbox/{job_id}/refs`: the revisions there are
    /// now, each with its commit (`main` a branch, checkpoints tags).
    HubRefs(JobId),
    /// `GET /trainbox/{job_id}/resolve/{revision}/{path}`: one file of a
    /// revision, as the Hub client fetches it.
    HubResolve {
        job: JobId,
        revision: Revision,
        path: RepoPath,
    },
}

impl Route {
    /// The variant's name: the `route` label of the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Index => "Index",
            Route::Asset(_) => "Asset",
            Route::Health => "Health",
            Route::Metrics => "Metrics",
            Route::OpenApi => "OpenApi",
            Route::Login => "Login",
            Route::Logout => "Logout",
            Route::ListJobs(_) => "ListJobs",
            Route::StartJob => "StartJob",
            Route::Recipes => "Recipes",
            Route::DeleteJob(_) => "DeleteJob",
            Route::Downloads(_) => "Downloads",
            Route::Compare(_) => "Compare",
            Route::Disk => "Disk",
            Route::DeleteCheckpoint(..) => "DeleteCheckpoint",
            Route::Job(_) => "Job",
            Route::Checkpoints(_) => "Checkpoints",
            Route::Progress(_) => "Progress",
            Route::History(_) => "History",
            Route::Resources(_) => "Resources",
            Route::Events(_) => "Events",
            Route::WebSocket(_) => "WebSocket",
            Route::Control(..) => "Control",
            Route::DownloadModel { .. } => "DownloadModel",
            Route::DownloadLogs(_) => "DownloadLogs",
            Route::Files { .. } => "Files",
            Route::HubRepo { .. } => "HubRepo",
            Route::HubTree { .. } => "HubTree",
            Route::HubResolve { .. } => "HubResolve",
            Route::HubRefs(_) => "HubRefs",
        }
    }
}

impl Route {
    /// Whether the handler reads a request body (the server reads it only
    /// for these routes).
    pub fn takes_body(&self) -> bool {
        matches!(self, Route::StartJob | Route::Login)
    }
}

/// A job-control verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// A file of the web page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Script,
    Style,
    Icon,
}

/// A matched request: the route, and whether it was a `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub route: Route,
    pub head: bool,
}

/// Every endpoint as (allowed methods, path template), in the order of the
/// `match` in [`route`]; the OpenAPI spec is checked against this list.
pub const ENDPOINTS: &[(&str, &str)] = &[
    (GET, "/"),
    (GET, "/ui/app.js"),
    (GET, "/ui/app.css"),
    (GET, "/ui/icon.svg"),
    (GET, "/healthz"),
    (GET, "/metrics"),
    (GET, "/openapi.json"),
    (POST, "/login"),
    (POST, "/logout"),
    (GET_POST, "/api/training/jobs"),
    (GET, "/api/training/recipes"),
    (GET, "/api/training/downloads"),
    (GET, "/api/training/compare"),
    (GET, "/api/training/disk"),
    (GET_DELETE, "/api/training/jobs/{job_id}"),
    (DELETE, "/api/training/{job_id}/checkpoints/{name}"),
    (GET, "/api/training/{job_id}/checkpoints"),
    (GET, "/api/training/{job_id}/progress"),
    (GET, "/api/training/{job_id}/metrics"),
    (GET, "/api/training/{job_id}/resources"),
    (GET, "/api/training/{job_id}/events"),
    (POST, "/api/training/{job_id}/pause"),
    (POST, "/api/training/{job_id}/resume"),
    (POST, "/api/training/{job_id}/cancel"),
    (GET, "/api/training/{job_id}/download/model"),
    (GET, "/api/training/{job_id}/download/logs"),
    (GET, "/api/training/{job_id}/files"),
    (GET, "/ws/training/{job_id}"),
    (GET, "/api/models/trainbox/{job_id}"),
    (GET, "/api/models/trainbox/{job_id}/revision/{revision}"),
    (GET, "/api/models/trainbox/{job_id}/refs"),
    (GET, "/api/models/trainbox/{job_id}/tree/{revision}"),
    (GET, "/api/models/trainbox/{job_id}/tree/{revision}/{path}"),
    (GET, "/trainbox/{job_id}/resolve/{revision}/{path}"),
];

/// Why a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this path.
    NotFound,
    /// The path exists but not for this method; `allow` lists the methods.
    MethodNotAllowed { allow: &'static str },
    /// The `{job_id}` segment is not a valid job id.
    InvalidJobId,
    /// `?checkpoint=` is not a valid checkpoint name (empty included).
    InvalidCheckpointName,
    /// The query string is malformed, repeats a parameter, names an unknown
    /// one, or has a bad value; the text says which.
    BadQuery(String),
    /// A Hub path names a repository that is not `trainbox/<job_id>`.
    RepoNotFound,
    /// A Hub path names a revision that cannot exist: not `main`, a
    /// checkpoint name or a commit id.
    RevisionNotFound,
    /// A Hub path names a file or directory with an empty, `.` or `..`
    /// component, or a control character.
    InvalidRepoPath,
}

pub(super) const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_POST: &str = "GET, HEAD, POST";
const DELETE: &str = "DELETE";
const GET_DELETE: &str = "GET, HEAD, DELETE";

/// Routes a request. `method` is the request method as sent, `target` the
/// request target (origin form: path and optional query).
///
/// ```
/// use trainbox::http::router::{route, Route};
/// let m = route("GET", "/api/training/abc/progress").unwrap();
/// assert!(matches!(m.route, Route::Progress(ref id) if id.as_str() == "abc"));
/// ```
pub fn route(method: &str, target: &str) -> Result<Matched, RouteError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let Some(path) = path.strip_prefix('/') else {
        return Err(RouteError::NotFound);
    };
    let raw: Vec<&str> = path.split('/').collect();
    if let Some(hub) = hub::route(method, &raw, query.unwrap_or("")) {
        return hub;
    }
    // A segment that does not decode to a clean string is kept as `None`:
    // it matches no literal and parses as no name.
    let segments: Vec<Option<String>> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').map(decode_segment).collect()
    };
    if segments.iter().any(|s| s.as_deref() == Some("")) {
        return Err(RouteError::NotFound);
    }
    let segs: Vec<Option<&str>> = segments.iter().map(Option::as_deref).collect();

    let (allow, shape) = match segs.as_slice() {
        [] => (GET, Shape::Fixed(Route::Index)),
        [Some("ui"), Some("app.js")] => (GET, Shape::Fixed(Route::Asset(Asset::Script))),
        [Some("ui"), Some("app.css")] => (GET, Shape::Fixed(Route::Asset(Asset::Style))),
        [Some("ui"), Some("icon.svg")] => (GET, Shape::Fixed(Route::Asset(Asset::Icon))),
        [Some("healthz")] => (GET, Shape::Fixed(Route::Health)),
        [Some("metrics")] => (GET, Shape::Fixed(Route::Metrics)),
        [Some("openapi.json")] => (GET, Shape::Fixed(Route::OpenApi)),
        [Some("login")] => (POST, Shape::Fixed(Route::Login)),
        [Some("logout")] => (POST, Shape::Fixed(Route::Logout)),
        [Some("api"), Some("training"), Some("jobs")] => (GET_POST, Shape::Jobs),
        [Some("api"), Some("training"), Some("recipes")] => (GET, Shape::Fixed(Route::Recipes)),
        [Some("api"), Some("training"), Some("downloads")] => (GET, Shape::Downloads),
        [Some("api"), Some("training"), Some("compare")] => (GET, Shape::Compare),
        [Some("api"), Some("training"), Some("disk")] => (GET, Shape::Fixed(Route::Disk)),
        [Some("api"), Some("training"), Some("jobs"), id] => (GET_DELETE, Shape::JobOrDelete(*id)),
        [Some("api"), Some("training"), id, Some("checkpoints"), name] => {
            (DELETE, Shape::DeleteCheckpoint(*id, *name))
        }
        [Some("api"), Some("training"), id, Some(leaf)] => match *leaf {
            "checkpoints" => (GET, Shape::Job(Route::Checkpoints, *id)),
            "progress" => (GET, Shape::Job(Route::Progress, *id)),
            "metrics" => (GET, Shape::Job(Route::History, *id)),
            "resources" => (GET, Shape::Job(Route::Resources, *id)),
            "events" => (GET, Shape::Job(Route::Events, *id)),
            "files" => (GET, Shape::Files(*id)),
            "pause" => (POST, Shape::Control(Action::Pause, *id)),
            "resume" => (POST, Shape::Control(Action::Resume, *id)),
            "cancel" => (POST, Shape::Control(Action::Cancel, *id)),
            _ => return Err(RouteError::NotFound),
        },
        [
            Some("api"),
            Some("training"),
            id,
            Some("download"),
            Some("model"),
        ] => (GET, Shape::DownloadModel(*id)),
        [
            Some("api"),
            Some("training"),
            id,
            Some("download"),
            Some("logs"),
        ] => (GET, Shape::Job(Route::DownloadLogs, *id)),
        [Some("ws"), Some("training"), id] => (GET, Shape::Job(Route::WebSocket, *id)),
        _ => return Err(RouteError::NotFound),
    };

    let head = method == "HEAD";
    let is_get = method == "GET" || head;
    let is_post = method == "POST";
    let is_delete = method == "DELETE";
    let method_ok = match allow {
        GET => is_get,
        POST => is_post,
        DELETE => is_delete,
        GET_DELETE => is_get || is_delete,
        _ => is_get || is_post,
    };
    if !method_ok {
        return Err(RouteError::MethodNotAllowed { allow });
    }

    let mut query = Query::parse(query.unwrap_or(""))?;

    let route = match shape {
        Shape::Fixed(route) => route,
        Shape::Jobs if is_post => Route::StartJob,
        Shape::Jobs => {
            let limit = match query.take("limit") {
                None => None,
                Some(text) => match text.parse::<usize>() {
                    Ok(n @ 1..=PAGE_MAX) => Some(n),
                    _ => {
                        return Err(RouteError::BadQuery(format!(
                            "Invalid limit: expected 1 to {PAGE_MAX}"
                        )));
                    }
                },
            };
            let after = match query.take("after") {
                None => None,
                Some(text) => Some(
                    Cursor::parse(&text)
                        .ok_or_else(|| RouteError::BadQuery("Invalid cursor in 'after'".into()))?,
                ),
            };
            Route::ListJobs(Paging { limit, after })
        }
        Shape::Job(make, id) => make(job_id(id)?),
        Shape::Downloads => {
            let job = match query.take("job") {
                None => None,
                Some(text) => Some(JobId::parse(&text).map_err(|_| RouteError::InvalidJobId)?),
            };
            let limit = match query.take("limit") {
                None => AUDIT_PAGE_DEFAULT,
                Some(text) => match text.parse::<usize>() {
                    Ok(n @ 1..=PAGE_MAX) => n,
                    _ => {
                        return Err(RouteError::BadQuery(format!(
                            "Invalid limit: expected 1 to {PAGE_MAX}"
                        )));
                    }
                },
            };
            let before = match query.take("before") {
                None => None,
                Some(text) => Some(text.parse::<u64>().map_err(|_| {
                    RouteError::BadQuery("Invalid before: expected a sequence number".into())
                })?),
            };
            Route::Downloads(AuditQuery { job, limit, before })
        }
        Shape::Compare => {
            let listed = query
                .take("jobs")
                .ok_or_else(|| RouteError::BadQuery("'jobs' is required: jobs=a,b,c".into()))?;
            let mut jobs: Vec<JobId> = Vec::new();
            for text in listed.split(',') {
                let id = JobId::parse(text).map_err(|_| RouteError::InvalidJobId)?;
                if !jobs.contains(&id) {
                    jobs.push(id);
                }
            }
            if jobs.len() > COMPARE_JOBS_MAX {
                return Err(RouteError::BadQuery(format!(
                    "At most {COMPARE_JOBS_MAX} jobs can be compared at once"
                )));
            }
            let metric = query.take("metric").unwrap_or_else(|| "loss".to_owned());
            if !crate::compare::valid_metric(&metric) {
                return Err(RouteError::BadQuery(
                    "Invalid metric: 1 to 64 of A-Z a-z 0-9 _ . / : -".into(),
                ));
            }
            let better = match query.take("better") {
                None => None,
                Some(text) => Some(Better::parse(&text).ok_or_else(|| {
                    RouteError::BadQuery("Invalid better: expected lower or higher".into())
                })?),
            };
            Route::Compare(CompareQuery {
                jobs,
                metric,
                better,
            })
        }
        Shape::JobOrDelete(id) if is_delete => Route::DeleteJob(job_id(id)?),
        Shape::JobOrDelete(id) => Route::Job(job_id(id)?),
        Shape::DeleteCheckpoint(id, name) => {
            let job = job_id(id)?;
            let name = name
                .and_then(|n| CheckpointName::parse(n).ok())
                .ok_or(RouteError::InvalidCheckpointName)?;
            Route::DeleteCheckpoint(job, name)
        }
        Shape::Control(action, id) => Route::Control(job_id(id)?, action),
        Shape::DownloadModel(id) => {
            let job = job_id(id)?;
            let source = model_source(&mut query)?;
            let compression = match query.take("compression").as_deref() {
                None | Some("auto") => Compression::Auto,
                Some("stored") => Compression::Stored,
                Some("deflate") => Compression::Deflate,
                Some(_) => {
                    return Err(RouteError::BadQuery(
                        "Invalid compression: expected auto, stored or deflate".into(),
                    ));
                }
            };
            let allow_incomplete = match query.take("allow_incomplete").as_deref() {
                None | Some("0") | Some("false") => false,
                Some("1") | Some("true") => true,
                Some(_) => {
                    return Err(RouteError::BadQuery(
                        "Invalid allow_incomplete: expected 1 or 0".into(),
                    ));
                }
            };
            Route::DownloadModel {
                job,
                source,
                compression,
                allow_incomplete,
            }
        }
        Shape::Files(id) => {
            let job = job_id(id)?;
            let source = model_source(&mut query)?;
            let sha256sum = match query.take("format").as_deref() {
                None | Some("json") => false,
                Some("sha256sum") => true,
                Some(_) => {
                    return Err(RouteError::BadQuery(
                        "Invalid format: expected json or sha256sum".into(),
                    ));
                }
            };
            Route::Files {
                job,
                source,
                sha256sum,
            }
        }
    };
    query.finish()?;
    Ok(Matched { route, head })
}

/// `?checkpoint=` or `?exclude=checkpoints` (or neither): which part of
/// `model/` a download or a file listing covers.
fn model_source(query: &mut Query) -> Result<ArchiveSource, RouteError> {
    let checkpoint = match query.take("checkpoint") {
        Some(name) => {
            Some(CheckpointName::parse(&name).map_err(|_| RouteError::InvalidCheckpointName)?)
        }
        None => None,
    };
    let exclude_checkpoints = match query.take("exclude").as_deref() {
        None => false,
        Some("checkpoints") => true,
        Some(_) => {
            return Err(RouteError::BadQuery(
                "Invalid exclude: expected checkpoints".into(),
            ));
        }
    };
    let source = match checkpoint {
        Some(_) if exclude_checkpoints => {
            return Err(RouteError::BadQuery(
                "A checkpoint cannot be downloaded with exclude=checkpoints".into(),
            ));
        }
        Some(name) => ArchiveSource::Checkpoint(name),
        None => ArchiveSource::Model {
            exclude_checkpoints,
        },
    };
    Ok(source)
}

/// What the path matched, before the names in it are parsed.
enum Shape<'a> {
    Fixed(Route),
    Jobs,
    Downloads,
    Compare,
    Job(fn(JobId) -> Route, Option<&'a str>),
    Control(Action, Option<&'a str>),
    DownloadModel(Option<&'a str>),
    Files(Option<&'a str>),
    JobOrDelete(Option<&'a str>),
    DeleteCheckpoint(Option<&'a str>, Option<&'a str>),
}

fn job_id(segment: Option<&str>) -> Result<JobId, RouteError> {
    segment
        .and_then(|s| JobId::parse(s).ok())
        .ok_or(RouteError::InvalidJobId)
}

/// Percent-decodes one path segment. `None` when an escape is malformed or
/// the result holds `/`, `\`, NUL or invalid UTF-8.
fn decode_segment(raw: &str) -> Option<String> {
    let decoded = percent::decode(raw.as_bytes(), false)?;
    let text = String::from_utf8(decoded).ok()?;
    (!text.contains(['/', '\\', '\0'])).then_some(text)
}
