//! `ApiError`: every error a client can see, with its status and `detail`.
//!
//! Handlers return `Result<_, ApiError>`; the conversion to the
//! `{"detail": "..."}` body the reference FastAPI server used lives here and
//! nowhere else. Texts are fixed or built from parsed names only, so no error
//! ever carries a filesystem path, an OS error string or a backtrace; those
//! go to the log.

use std::fmt;
use std::io;

use crate::http::router::RouteError;
use crate::names::{CheckpointName, JobId};
use crate::runner::recipes::{ParamError, RecipeError};
use crate::runner::{ControlError, SubmitError};

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed; the text says how.
    BadRequest(String),
    /// 400 `Invalid job id`: the `{job_id}` path segment did not parse.
    InvalidJobId,
    /// 400 `Invalid checkpoint name`: `?checkpoint=` did not parse.
    InvalidCheckpointName,
    /// 401: no token, or a token that is not on the list.
    Unauthorized,
    /// 403: the token is valid but its role may not do this.
    Forbidden,
    /// 403: a state-changing request or a live stream from another
    /// origin (`http::guard`).
    CrossOrigin,
    /// 404 `Not Found`: no route has this path.
    NoRoute,
    /// 404 `Job not found`.
    JobNotFound,
    /// 404 `Model directory not found for job {job_id}`.
    ModelNotFound(JobId),
    /// 404 `Checkpoint '{name}' not found`.
    CheckpointNotFound(CheckpointName),
    /// 404 `Training log not found for job {job_id}`.
    LogNotFound(JobId),
    /// 404 for the Hub client: no repository `trainbox/<job_id>` of that
    /// name (`X-Error-Code: RepoNotFound`).
    RepoNotFound,
    /// 404 for the Hub client: the repository has no such revision now
    /// (`X-Error-Code: RevisionNotFound`); the text says why.
    RevisionNotFound(String),
    /// 404 for the Hub client: the revision `commit` has no file or
    /// directory `path` (`X-Error-Code: EntryNotFound`, `X-Repo-Commit`,
    /// so the client remembers the absence for that commit).
    EntryNotFound { commit: String, path: String },
    /// 405 `Method Not Allowed`, with the `Allow` header.
    MethodNotAllowed { allow: &'static str },
    /// 409: the job's state does not allow the action; the text says why.
    Conflict(String),
    /// 409 with `Retry-After`: what was asked for is being prepared (a
    /// manifest whose files are still being hashed); the text says what.
    NotReady(&'static str),
    /// 413: the request body is larger than the limit.
    PayloadTooLarge,
    /// 416: a `Range` outside the archive of `len` bytes.
    RangeNotSatisfiable { len: u64 },
    /// 415: a body of another type than the route takes (named here).
    UnsupportedMediaType(&'static str),
    /// 421: the `Host` header names a server this is not.
    MisdirectedRequest,
    /// 429: too many of something; the text says what, `retry_after`
    /// (seconds) when to try again.
    TooManyRequests {
        detail: &'static str,
        retry_after: u64,
    },
    /// 503: too many downloads in flight, or the server is shutting down;
    /// sent with `Retry-After`.
    Unavailable(&'static str),
    /// 503: `recipes.json` cannot be used (the text says where it is
    /// wrong); nothing can start until the admin fixes it.
    RecipesBroken(String),
    /// 500: something failed on the server; the cause is logged, not sent.
    Internal,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJobId | ApiError::InvalidCheckpointName => {
                400
            }
            ApiError::Unauthorized => 401,
            ApiError::Forbidden | ApiError::CrossOrigin => 403,
            ApiError::NoRoute
            | ApiError::JobNotFound
            | ApiError::ModelNotFound(_)
            | ApiError::CheckpointNotFound(_)
            | ApiError::LogNotFound(_)
            | ApiError::RepoNotFound
            | ApiError::RevisionNotFound(_)
            | ApiError::EntryNotFound { .. } => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) | ApiError::NotReady(_) => 409,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RangeNotSatisfiable { .. } => 416,
            ApiError::MisdirectedRequest => 421,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Unavailable(_) | ApiError::RecipesBroken(_) => 503,
            ApiError::Internal => 500,
        }
    }

    /// Extra headers this error must carry.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed { allow } => vec![("Allow", (*allow).to_owned())],
            ApiError::Unauthorized => vec![("WWW-Authenticate", "Bearer".to_owned())],
            ApiError::Unavailable(_) | ApiError::NotReady(_) => {
                vec![("Retry-After", "5".to_owned())]
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                vec![("Retry-After", retry_after.to_string())]
            }
            ApiError::RangeNotSatisfiable { len } => {
                vec![("Content-Range", format!("bytes */{len}"))]
            }
            ApiError::RepoNotFound => hub_error("RepoNotFound", self),
            ApiError::RevisionNotFound(_) => hub_error("RevisionNotFound", self),
            ApiError::EntryNotFound { commit, .. } => {
                let mut headers = hub_error("EntryNotFound", self);
                headers.push(("X-Repo-Commit", commit.clone()));
                headers
            }
            _ => Vec::new(),
        }
    }

    /// The JSON body: `{"detail": "..."}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "detail": self.to_string() }).to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(detail) | ApiError::Conflict(detail) => f.write_str(detail),
            ApiError::InvalidJobId => f.write_str("Invalid job id"),
            ApiError::InvalidCheckpointName => f.write_str("Invalid checkpoint name"),
            ApiError::Unauthorized => f.write_str("Not authenticated"),
            ApiError::Forbidden => f.write_str("Not permitted for this token"),
            ApiError::CrossOrigin => f.write_str("Cross-origin request refused"),
            ApiError::RangeNotSatisfiable { .. } => f.write_str("Requested range not satisfiable"),
            ApiError::UnsupportedMediaType(wanted) => {
                write!(f, "The request body must be {wanted}")
            }
            ApiError::MisdirectedRequest => f.write_str(
                "This server does not answer to that host name (start it with --allowed-host NAME)",
            ),
            ApiError::TooManyRequests { detail, .. } => f.write_str(detail),
            ApiError::NoRoute => f.write_str("Not Found"),
            ApiError::JobNotFound => f.write_str("Job not found"),
            ApiError::ModelNotFound(job) => write!(f, "Model directory not found for job {job}"),
            ApiError::CheckpointNotFound(name) => write!(f, "Checkpoint '{name}' not found"),
            ApiError::LogNotFound(job) => write!(f, "Training log not found for job {job}"),
            ApiError::RepoNotFound => f.write_str(
                "Repository not found: repositories here are trainbox/<job_id> of an existing job",
            ),
            ApiError::RevisionNotFound(why) => f.write_str(why),
            ApiError::EntryNotFound { commit, path } => {
                write!(f, "No file or directory '{path}' at revision {commit}")
            }
            ApiError::MethodNotAllowed { .. } => f.write_str("Method Not Allowed"),
            ApiError::PayloadTooLarge => f.write_str("Request body too large"),
            ApiError::Unavailable(why) | ApiError::NotReady(why) => f.write_str(why),
            ApiError::RecipesBroken(why) => write!(f, "No job can start: {why}"),
            ApiError::Internal => f.write_str("Internal Server Error"),
        }
    }
}

impl std::error::Error for ApiError {}

/// The headers the Hub client reads an error from: its code, and the text
/// (printable ASCII only, as a header value must be).
fn hub_error(code: &'static str, error: &ApiError) -> Vec<(&'static str, String)> {
    let message: String = error
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    vec![
        ("X-Error-Code", code.to_owned()),
        ("X-Error-Message", message),
    ]
}

/// What the server was doing when an I/O call failed: the cause is
/// logged with it, and the client gets a bare 500 (never a path or an OS
/// message).
pub trait Context<T> {
    fn context(self, doing: &'static str) -> Result<T, ApiError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, doing: &'static str) -> Result<T, ApiError> {
        self.map_err(|e| {
            log::error!("{doing}: {e}");
            ApiError::Internal
        })
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::NotFound => ApiError::JobNotFound,
            ControlError::Conflict(detail) => ApiError::Conflict(detail),
            ControlError::Io => ApiError::Internal, // logged by the runner
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::QueueFull(_) => ApiError::TooManyRequests {
                detail: "The job queue is full; try again when a job has finished",
                retry_after: 30,
            },
            SubmitError::Io(e) => {
                log::error!("creating a job: {e}");
                ApiError::Internal
            }
        }
    }
}

impl From<RecipeError> for ApiError {
    fn from(e: RecipeError) -> ApiError {
        log::error!("{e}");
        ApiError::RecipesBroken(e.to_string())
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::NotFound => ApiError::NoRoute,
            RouteError::MethodNotAllowed { allow } => ApiError::MethodNotAllowed { allow },
            RouteError::InvalidJobId => ApiError::InvalidJobId,
            RouteError::InvalidCheckpointName => ApiError::InvalidCheckpointName,
            RouteError::BadQuery(detail) => ApiError::BadRequest(detail),
            RouteError::RepoNotFound => ApiError::RepoNotFound,
            RouteError::RevisionNotFound => {
                ApiError::RevisionNotFound("No such revision: revisions are main, a complete checkpoint's name, or a commit id".into())
            }
            RouteError::InvalidRepoPath => ApiError::BadRequest("Invalid path in the repository".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_match_the_reference_server() {
        let job = JobId::parse("abc").unwrap();
        let cases = [
            (ApiError::JobNotFound, 404, "Job not found"),
            (
                ApiError::ModelNotFound(job.clone()),
                404,
                "Model directory not found for job abc",
            ),
            (
                ApiError::InvalidCheckpointName,
                400,
                "Invalid checkpoint name",
            ),
            (
                ApiError::CheckpointNotFound(CheckpointName::parse("checkpoint-9").unwrap()),
                404,
                "Checkpoint 'checkpoint-9' not found",
            ),
            (
                ApiError::LogNotFound(job),
                404,
                "Training log not found for job abc",
            ),
            (ApiError::NoRoute, 404, "Not Found"),
        ];
        for (error, status, detail) in cases {
            assert_eq!(error.status(), status);
            let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap();
            assert_eq!(body, serde_json::json!({ "detail": detail }));
        }
    }

    #[test]
    fn protocol_headers_ride_along() {
        assert_eq!(
            ApiError::MethodNotAllowed { allow: "POST" }.headers(),
            vec![("Allow", "POST".to_owned())]
        );
        assert_eq!(ApiError::Unauthorized.headers()[0].0, "WWW-Authenticate");
        assert_eq!(ApiError::Unavailable("busy").headers()[0].0, "Retry-After");
    }
}
