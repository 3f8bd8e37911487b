//! The router: any method and target bytes give a `Route` or an error,
//! never a panic; every accepted `Route` holds only parsed names (job ids,
//! checkpoints, Hub revisions and paths), and renders to a request that
//! routes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::archive::ArchiveSource;
use trainbox::http::router::{route, Cursor, Route};
use trainbox::hub::{RepoPath, Revision};
use trainbox::names::{CheckpointName, JobId};

fn job_ok(id: &JobId) {
    assert_eq!(JobId::parse(id.as_str()).as_ref(), Ok(id));
}

fuzz_target!(|data: &[u8]| {
    // First line: the method; the rest: the target.
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once('\n').unwrap_or(("GET", &text));
    let Ok(matched) = route(method, target) else {
        return;
    };
    match &matched.route {
        Route::Job(id)
        | Route::Checkpoints(id)
        | Route::Progress(id)
        | Route::History(id)
        | Route::Events(id)
        | Route::WebSocket(id)
        | Route::DownloadLogs(id)
        | Route::Resources(id)
        | Route::HubRefs(id)
        | Route::Control(id, _)
        | Route::DeleteJob(id) => job_ok(id),
        Route::DeleteCheckpoint(job, c) => {
            job_ok(job);
            assert_eq!(CheckpointName::parse(c.as_str()).as_ref(), Ok(c));
        }
        Route::DownloadModel { job, source, .. } | Route::Files { job, source, .. } => {
            job_ok(job);
            match source {
                ArchiveSource::Checkpoint(c) => {
                    assert_eq!(CheckpointName::parse(c.as_str()).as_ref(), Ok(c));
                }
                ArchiveSource::Model { .. } => {}
                ArchiveSource::Logs => panic!("the model routes never cover the logs"),
            }
        }
        Route::Index
        | Route::Health
        | Route::Metrics
        | Route::OpenApi
        | Route::Login
        | Route::Logout
        | Route::Asset(_)
        | Route::StartJob
        | Route::Recipes
        | Route::Disk => {}
        Route::Compare(asked) => {
            assert!((1..=trainbox::compare::COMPARE_JOBS_MAX).contains(&asked.jobs.len()));
            asked.jobs.iter().for_each(job_ok);
            assert!(trainbox::compare::valid_metric(&asked.metric));
        }
        Route::HubRepo { job, revision, .. }
        | Route::HubTree { job, revision, .. }
        | Route::HubResolve { job, revision, .. } => {
            job_ok(job);
            assert_eq!(Revision::parse(&revision.to_string()).as_ref(), Some(revision));
            let path = match &matched.route {
                Route::HubTree { path, .. } => path.clone(),
                Route::HubResolve { path, .. } => Some(path.clone()),
                _ => None,
            };
            if let Some(path) = path {
                assert_eq!(RepoPath::parse(path.as_str()).as_ref(), Some(&path));
            }
        }
        Route::Downloads(asked) => {
            if let Some(job) = &asked.job {
                job_ok(job);
            }
            assert!((1..=trainbox::http::router::PAGE_MAX).contains(&asked.limit));
        }
        Route::ListJobs(paging) => {
            if let Some(limit) = paging.limit {
                assert!((1..=trainbox::http::router::PAGE_MAX).contains(&limit));
            }
            if let Some(cursor) = &paging.after {
                // The cursor a page renders is read back as itself.
                assert_eq!(Cursor::parse(&cursor.render()).as_ref(), Some(cursor));
            }
        }
    }
    assert!(matched.head == (method == "HEAD"));
    let (method, target) = matched.route.to_request();
    assert_eq!(route(method, &target).map(|m| m.route).as_ref(), Ok(&matched.route));
});
