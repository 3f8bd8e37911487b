//! Routes back to requests: the method and target of a [`Route`], the
//! inverse of `route` (links, tests and the router's fuzz target use it).

use super::{AUDIT_PAGE_DEFAULT, Asset, Route, percent};
use crate::archive::{ArchiveSource, Compression};
use crate::names::JobId;

impl Route {
    /// The method and request target that route back to this route: the
    /// inverse of [`route`] (a property test holds them to it), for links
    /// and tests.
    pub fn to_request(&self) -> (&'static str, String) {
        let job = |id: &JobId, leaf: &str| {
            format!("/api/training/{}/{leaf}", percent::encode(id.as_str()))
        };
        match self {
            Route::Index => ("GET", "/".to_owned()),
            Route::Asset(Asset::Script) => ("GET", "/ui/app.js".to_owned()),
            Route::Asset(Asset::Style) => ("GET", "/ui/app.css".to_owned()),
            Route::Asset(Asset::Icon) => ("GET", "/ui/icon.svg".to_owned()),
            Route::Health => ("GET", "/healthz".to_owned()),
            Route::Metrics => ("GET", "/metrics".to_owned()),
            Route::OpenApi => ("GET", "/openapi.json".to_owned()),
            Route::Login => ("POST", "/login".to_owned()),
            Route::Logout => ("POST", "/logout".to_owned()),
            Route::ListJobs(paging) => {
                let mut query = Vec::new();
                if let Some(limit) = paging.limit {
                    query.push(format!("limit={limit}"));
                }
                if let Some(after) = &paging.after {
                    query.push(format!("after={}", percent::encode(&after.render())));
                }
                ("GET", with_query("/api/training/jobs".to_owned(), &query))
            }
            Route::StartJob => ("POST", "/api/training/jobs".to_owned()),
            Route::Recipes => ("GET", "/api/training/recipes".to_owned()),
            Route::Disk => ("GET", "/api/training/disk".to_owned()),
            Route::Downloads(asked) => {
                let mut query = Vec::new();
                if let Some(job) = &asked.job {
                    query.push(format!("job={}", percent::encode(job.as_str())));
                }
                if asked.limit != AUDIT_PAGE_DEFAULT {
                    query.push(format!("limit={}", asked.limit));
                }
                if let Some(before) = asked.before {
                    query.push(format!("before={before}"));
                }
                (
                    "GET",
                    with_query("/api/training/downloads".to_owned(), &query),
                )
            }
            Route::Compare(asked) => {
                let jobs: Vec<String> = asked
                    .jobs
                    .iter()
                    .map(|j| percent::encode(j.as_str()))
                    .collect();
                let mut query = vec![
                    format!("jobs={}", jobs.join(",")),
                    format!("metric={}", percent::encode(&asked.metric)),
                ];
                if let Some(better) = asked.better {
                    query.push(format!("better={}", better.as_str()));
                }
                (
                    "GET",
                    with_query("/api/training/compare".to_owned(), &query),
                )
            }
            Route::DeleteJob(id) => (
                "DELETE",
                format!("/api/training/jobs/{}", percent::encode(id.as_str())),
            ),
            Route::DeleteCheckpoint(id, name) => (
                "DELETE",
                job(
                    id,
                    &format!("checkpoints/{}", percent::encode(name.as_str())),
                ),
            ),
            Route::Job(id) => (
                "GET",
                format!("/api/training/jobs/{}", percent::encode(id.as_str())),
            ),
            Route::Checkpoints(id) => ("GET", job(id, "checkpoints")),
            Route::Progress(id) => ("GET", job(id, "progress")),
            Route::History(id) => ("GET", job(id, "metrics")),
            Route::Resources(id) => ("GET", job(id, "resources")),
            Route::Events(id) => ("GET", job(id, "events")),
            Route::WebSocket(id) => (
                "GET",
                format!("/ws/training/{}", percent::encode(id.as_str())),
            ),
            Route::Control(id, action) => ("POST", job(id, action.as_str())),
            Route::DownloadModel {
                job: id,
                source,
                compression,
                allow_incomplete,
            } => {
                let mut query = source_query(source);
                if *compression != Compression::Auto {
                    query.push(format!("compression={}", compression.as_str()));
                }
                if *allow_incomplete {
                    query.push("allow_incomplete=1".to_owned());
                }
                ("GET", with_query(job(id, "download/model"), &query))
            }
            Route::DownloadLogs(id) => ("GET", job(id, "download/logs")),
            Route::Files {
                job: id,
                source,
                sha256sum,
            } => {
                let mut query = source_query(source);
                if *sha256sum {
                    query.push("format=sha256sum".to_owned());
                }
                ("GET", with_query(job(id, "files"), &query))
            }
            Route::HubRepo {
                job,
                revision,
                blobs,
            } => {
                let path = format!(
                    "/api/models/{}/revision/{}",
                    hub_repo(job),
                    percent::encode(&revision.to_string())
                );
                let query = if *blobs {
                    vec!["blobs=true".to_owned()]
                } else {
                    Vec::new()
                };
                ("GET", with_query(path, &query))
            }
            Route::HubRefs(job) => ("GET", format!("/api/models/{}/refs", hub_repo(job))),
            Route::HubTree {
                job,
                revision,
                path,
                recursive,
            } => {
                // As the client sends it: the sub-path as one segment.
                let sub = path
                    .as_ref()
                    .map_or_else(String::new, |p| format!("/{}", percent::encode(p.as_str())));
                let path = format!(
                    "/api/models/{}/tree/{}{sub}",
                    hub_repo(job),
                    percent::encode(&revision.to_string())
                );
                let query = if *recursive {
                    vec!["recursive=true".to_owned()]
                } else {
                    Vec::new()
                };
                ("GET", with_query(path, &query))
            }
            Route::HubResolve {
                job,
                revision,
                path,
            } => {
                let segments: Vec<String> = path.as_str().split('/').map(percent::encode).collect();
                (
                    "GET",
                    format!(
                        "/{}/resolve/{}/{}",
                        hub_repo(job),
                        percent::encode(&revision.to_string()),
                        segments.join("/")
                    ),
                )
            }
        }
    }
}

/// `trainbox/<job_id>`, each part encoded.
fn hub_repo(job: &JobId) -> String {
    format!(
        "{}/{}",
        crate::hub::NAMESPACE,
        percent::encode(job.as_str())
    )
}

fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// The query naming which part of the model a route covers.
fn source_query(source: &ArchiveSource) -> Vec<String> {
    match source {
        ArchiveSource::Checkpoint(name) => {
            vec![format!("checkpoint={}", percent::encode(name.as_str()))]
        }
        ArchiveSource::Model {
            exclude_checkpoints: true,
        } => vec!["exclude=checkpoints".to_owned()],
        ArchiveSource::Model { .. } | ArchiveSource::Logs => Vec::new(),
    }
}
