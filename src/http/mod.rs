//! HTTP: the tiny_http server loop and everything between a request and a
//! handler: the pure router and Range parser, errors, handlers, downloads.

pub mod auth;
pub mod download;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod headers;
pub mod live;
pub mod openapi;
pub mod percent;
pub mod range;
pub mod request;
pub mod resolve;
pub mod respond;
pub mod router;
pub mod server;
pub mod sink;

use crate::app::App;
use crate::names::JobId;
use crate::store::JobDir;
use error::{ApiError, Context};

/// The job a route names, opened: 404 when there is none.
pub fn open_job(app: &App, id: &JobId) -> Result<JobDir, ApiError> {
    app.store
        .job(id)
        .context("opening a job")?
        .ok_or(ApiError::JobNotFound)
}
