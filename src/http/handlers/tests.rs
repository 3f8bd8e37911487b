//! Every handler's status and body, from request values to a reply, over a
//! store in a temporary directory and a runner that runs nothing: no
//! socket, no thread, milliseconds each. The integration tests in `tests/`
//! cover the same routes over real connections.
//!
//! The fixture writes the files a trainer would, as a trainer does: with
//! `std::fs`, outside the server's request path.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{Reply, dispatch};
use crate::access::Access;
use crate::access::tokens::Tokens;
use crate::app::{App, Limits};
use crate::doorbell::Doorbell;
use crate::http::error::ApiError;
use crate::http::request::HttpRequest;
use crate::http::router::route;
use crate::index::JobIndex;
use crate::names::JobId;
use crate::runner::{ControlError, Jobs, SubmitError};
use crate::store::Store;
use crate::store::records::{JobRecord, JobStatus};

/// A root directory that removes itself.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> TempRoot {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "trainbox-handlers-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(path.join("jobs")).unwrap();
        TempRoot(path)
    }

    fn job(&self, id: &str) -> PathBuf {
        self.0.join("jobs").join(id)
    }

    /// Writes `text` to `rel` under the root, making directories.
    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A job trainbox started, with a record.
    fn managed_job(&self, id: &str, status: JobStatus, created_at: &str) {
        fs::create_dir_all(self.job(id).join("model")).unwrap();
        let record = record(id, status, created_at);
        self.write(
            &format!("jobs/{id}/job.json"),
            &serde_json::to_string(&record).unwrap(),
        );
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn record(id: &str, status: JobStatus, created_at: &str) -> JobRecord {
    let mut record = JobRecord::queued(id, "demo", None, Map::new(), created_at.to_owned());
    record.status = status;
    record
}

/// A runner that writes the record a real one would and starts nothing;
/// it refuses what it is told to refuse, and remembers what it was asked.
struct FakeJobs {
    store: Arc<Store>,
    queue_full: bool,
    conflict: Option<&'static str>,
    asked: Mutex<Vec<String>>,
    /// Jobs the fake runner says it holds (queued or running).
    held: Mutex<Vec<JobId>>,
}

impl Jobs for FakeJobs {
    fn submit(
        &self,
        recipe: &str,
        name: Option<String>,
        params: Map<String, Value>,
    ) -> Result<JobRecord, SubmitError> {
        if self.queue_full {
            return Err(SubmitError::QueueFull(1));
        }
        let id = JobId::parse("submitted").unwrap();
        let dir = self.store.create_job(&id).map_err(SubmitError::Io)?;
        let record = JobRecord::queued(
            id.as_str(),
            recipe,
            name,
            params,
            "2026-11-28T10:00:00Z".to_owned(),
        );
        dir.write_record(&record).map_err(SubmitError::Io)?;
        self.asked.lock().unwrap().push(format!("submit {recipe}"));
        Ok(record)
    }

    fn pause(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        self.control("pause", id)
    }

    fn resume(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        self.control("resume", id)
    }

    fn cancel(&self, id: &JobId) -> Result<JobRecord, ControlError> {
        self.control("cancel", id)
    }

    fn active_count(&self) -> usize {
        0
    }

    fn queued_count(&self) -> usize {
        0
    }

    fn holds(&self, id: &JobId) -> bool {
        self.held.lock().unwrap().iter().any(|h| h == id)
    }

    fn control_mode(&self) -> &'static str {
        "process-group"
    }
}

impl FakeJobs {
    fn control(&self, verb: &str, id: &JobId) -> Result<JobRecord, ControlError> {
        if self.store.job(id).map_err(|_| ControlError::Io)?.is_none() {
            return Err(ControlError::NotFound);
        }
        self.asked.lock().unwrap().push(format!("{verb} {id}"));
        match self.conflict {
            Some(why) => Err(ControlError::Conflict(why.to_owned())),
            None => Ok(record(
                id.as_str(),
                JobStatus::Paused,
                "2026-11-28T10:00:00Z",
            )),
        }
    }
}

struct Fixture {
    root: TempRoot,
    app: App,
    jobs: Arc<FakeJobs>,
}

fn fixture() -> Fixture {
    fixture_with(|_| {}, |_| {})
}

/// A fixture whose runner and app are adjusted before use.
fn fixture_with(runner: impl FnOnce(&mut FakeJobs), app: impl FnOnce(&mut App)) -> Fixture {
    let root = TempRoot::new();
    let store = Arc::new(Store::open(&root.0).unwrap());
    let mut fake = FakeJobs {
        store: Arc::clone(&store),
        queue_full: false,
        conflict: None,
        asked: Mutex::new(Vec::new()),
        held: Mutex::new(Vec::new()),
    };
    runner(&mut fake);
    let jobs = Arc::new(fake);
    let index = JobIndex::open(Arc::clone(&store)).unwrap();
    let mut built = App::new(
        store,
        index,
        Arc::clone(&jobs) as Arc<dyn Jobs>,
        Access::default(),
        Limits::default(),
        Doorbell::default(),
    );
    app(&mut built);
    Fixture {
        root,
        app: built,
        jobs,
    }
}

impl Fixture {
    /// Routes and dispatches `request` as the server would after its checks,
    /// once the index has read what the test wrote (the server's watcher
    /// would within `index::FRESHNESS`).
    fn call(&self, request: HttpRequest) -> Result<Reply, ApiError> {
        self.app.index.rescan().unwrap();
        let matched = route(&request.method, &request.target)
            .unwrap_or_else(|e| panic!("{} {}: {e:?}", request.method, request.target));
        dispatch(&self.app, &request, matched)
    }

    /// A JSON reply's status and document; panics on anything else.
    fn json(&self, request: HttpRequest) -> (u16, Value) {
        match self.call(request) {
            Ok(Reply::Json(status, body)) => (status, body),
            Ok(Reply::JsonBytes(status, body)) => (status, serde_json::from_slice(&body).unwrap()),
            Ok(_) => panic!("not a JSON reply"),
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    fn get(&self, target: &str) -> Value {
        let (status, body) = self.json(HttpRequest::new("GET", target));
        assert_eq!(status, 200, "{target}: {body}");
        body
    }

    fn refused(&self, request: HttpRequest) -> ApiError {
        match self.call(request) {
            Ok(_) => panic!("answered where it should refuse"),
            Err(e) => e,
        }
    }

    fn refused_get(&self, target: &str) -> ApiError {
        self.refused(HttpRequest::new("GET", target))
    }
}

fn post_json(target: &str, body: &str) -> HttpRequest {
    HttpRequest::new("POST", target)
        .with_header("Content-Type", "application/json")
        .with_body(body.as_bytes())
}

fn page_of(
    reply: Result<Reply, ApiError>,
) -> (u16, &'static str, Vec<u8>, Vec<(&'static str, String)>) {
    match reply {
        Ok(Reply::Page {
            status,
            content_type,
            body,
            headers,
        }) => (status, content_type, body, headers),
        Ok(_) => panic!("not a page"),
        Err(e) => panic!("refused: {e:?}"),
    }
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn health_names_the_control_mode() {
    let f = fixture();
    assert_eq!(
        f.get("/healthz"),
        json!({"status": "ok", "control": "process-group", "index": "inotify"})
    );
}

#[test]
fn the_list_is_newest_first_and_pages_by_cursor() {
    let f = fixture();
    assert_eq!(f.get("/api/training/jobs"), json!({"jobs": []}));
    f.root
        .managed_job("a", JobStatus::Completed, "2026-11-28T10:00:01Z");
    f.root
        .managed_job("b", JobStatus::Failed, "2026-11-28T10:00:03Z");
    f.root
        .managed_job("c", JobStatus::Queued, "2026-11-28T10:00:02Z");
    // Not a job id: not a job.
    fs::create_dir_all(f.root.job(".hidden")).unwrap();
    let ids = |doc: &Value| -> Vec<String> {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = f.get("/api/training/jobs");
    assert_eq!(ids(&all), ["b", "c", "a"]);
    assert_eq!(all["jobs"][0]["status"], "failed");
    assert_eq!(all["jobs"][0]["managed"], true);

    let first = f.get("/api/training/jobs?limit=2");
    assert_eq!(ids(&first), ["b", "c"]);
    let next = first["next"].as_str().unwrap();
    assert_eq!(next, "2026-11-28T10:00:02Z_c");
    let rest = f.get(&format!("/api/training/jobs?limit=2&after={next}"));
    assert_eq!(ids(&rest), ["a"]);
    assert_eq!(rest["next"], Value::Null);
    // A cursor whose job was deleted still places the page.
    fs::remove_dir_all(f.root.job("c")).unwrap();
    let rest = f.get(&format!("/api/training/jobs?limit=2&after={next}"));
    assert_eq!(ids(&rest), ["a"]);
}

#[test]
fn one_job_and_a_missing_one() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Running, "2026-11-28T10:00:00Z");
    let job = f.get("/api/training/jobs/j1");
    assert_eq!(
        (job["id"].as_str(), job["status"].as_str()),
        (Some("j1"), Some("running"))
    );
    // The runner's empty model/ is no model yet; a file in a checkpoint is.
    assert_eq!(job["has_model"], false);
    f.root
        .write("jobs/j1/model/checkpoint-1/model.safetensors", "w");
    assert_eq!(f.get("/api/training/jobs/j1")["has_model"], true);
    assert_eq!(job["recipe"], "demo");
    for target in [
        "/api/training/jobs/nope",
        "/api/training/nope/progress",
        "/api/training/nope/checkpoints",
        "/api/training/nope/metrics",
        "/api/training/nope/events",
        "/api/training/nope/download/model",
        "/api/training/nope/download/logs",
    ] {
        assert_eq!(f.refused_get(target), ApiError::JobNotFound, "{target}");
    }
}

#[test]
fn checkpoints_are_listed_by_step_with_their_kind() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Completed, "2026-11-28T10:00:00Z");
    f.root
        .write("jobs/j1/model/checkpoint-500/model.safetensors", "12345");
    f.root
        .write("jobs/j1/model/checkpoint-100/model.safetensors", "1");
    f.root.write("jobs/j1/model/epoch=0-step=50.ckpt", "123");
    f.root
        .write("jobs/j1/model/tmp-checkpoint-900/x", "being written");
    f.root.write("jobs/j1/model/config.json", "{}");
    let doc = f.get("/api/training/j1/checkpoints");
    assert_eq!(doc["job_id"], "j1");
    let listed: Vec<(String, String, u64, u64)> = doc["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["kind"].as_str().unwrap().to_owned(),
                c["step"].as_u64().unwrap(),
                c["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("epoch=0-step=50.ckpt".into(), "lightning".into(), 50, 3),
            ("checkpoint-100".into(), "hf".into(), 100, 1),
            ("checkpoint-500".into(), "hf".into(), 500, 5),
        ]
    );
}

#[test]
fn progress_and_history_come_from_the_files() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Running, "2026-11-28T10:00:00Z");
    assert_eq!(
        f.get("/api/training/j1/progress"),
        json!({"job_id": "j1", "status": "running", "percent": null, "source": null})
    );
    f.root.write(
        "jobs/j1/metrics.jsonl",
        "{\"step\": 1, \"loss\": 2.0}\n{\"step\": 2, \"loss\": 1.5, \"total_steps\": 8}\n",
    );
    let progress = f.get("/api/training/j1/progress");
    assert_eq!(progress["step"], 2);
    assert_eq!(progress["percent"], 25.0);
    assert_eq!(progress["source"], "metrics.jsonl");
    f.root.write(
        "jobs/j1/progress.json",
        "{\"step\": 4, \"total_steps\": 8, \"loss\": 1.0}",
    );
    let progress = f.get("/api/training/j1/progress");
    assert_eq!(
        (progress["step"].as_u64(), progress["source"].as_str()),
        (Some(4), Some("progress.json"))
    );
    let history = f.get("/api/training/j1/metrics");
    assert_eq!(history["samples"], 2);
    assert_eq!(history["history"][1]["loss"], 1.5);
}

#[test]
fn starting_a_job_checks_the_body_recipe_and_params() {
    let f = fixture();
    f.root.write(
        "recipes.json",
        r#"{"recipes": {"demo": {"command": ["true"],
             "params": {"steps": {"type": "int", "min": 1, "max": 100, "default": 10}}}}}"#,
    );
    let start = |body: &str| post_json("/api/training/jobs", body);
    let bad = |body: &str| match f.refused(start(body)) {
        ApiError::BadRequest(detail) => detail,
        other => panic!("{body}: {other:?}"),
    };
    assert!(bad("{").starts_with("Malformed JSON body"));
    assert_eq!(bad("[1]"), "The body must be a JSON object");
    assert_eq!(bad("{}"), "'recipe' is required");
    assert_eq!(bad(r#"{"recipe": 3}"#), "'recipe' must be a string");
    assert_eq!(bad(r#"{"recipe": "demo", "x": 1}"#), "Unknown field 'x'");
    assert_eq!(bad(r#"{"recipe": "nope"}"#), "Unknown recipe 'nope'");
    assert_eq!(
        bad(r#"{"recipe": "demo", "params": {"steps": 0}}"#),
        "Param 'steps' must be at least 1"
    );
    assert!(bad(r#"{"recipe": "demo", "name": "a\u0007b"}"#).starts_with("'name' must be"));
    assert_eq!(
        bad(r#"{"recipe": "demo", "params": 5}"#),
        "'params' must be an object"
    );
    assert!(
        f.jobs.asked.lock().unwrap().is_empty(),
        "nothing reached the runner"
    );

    let (status, job) = f.json(start(
        r#"{"recipe": "demo", "name": "first", "params": {"steps": 5}}"#,
    ));
    assert_eq!(status, 201);
    assert_eq!(
        (
            job["id"].as_str(),
            job["status"].as_str(),
            job["name"].as_str()
        ),
        (Some("submitted"), Some("queued"), Some("first"))
    );
    assert_eq!(job["params"], json!({"steps": 5}));
}

#[test]
fn a_full_queue_and_broken_recipes_are_refused() {
    let f = fixture_with(|jobs| jobs.queue_full = true, |_| {});
    f.root.write(
        "recipes.json",
        r#"{"recipes": {"demo": {"command": ["true"]}}}"#,
    );
    let error = f.refused(post_json("/api/training/jobs", r#"{"recipe": "demo"}"#));
    assert_eq!(error.status(), 429);
    assert!(error.headers().iter().any(|(n, _)| *n == "Retry-After"));

    f.root
        .write("recipes.json", "{\"recipes\": {\n  \"demo\": \n}");
    let error = f.refused(post_json("/api/training/jobs", r#"{"recipe": "demo"}"#));
    assert_eq!(error.status(), 503);
    assert!(error.to_string().contains("line 3"), "{error}");
}

#[test]
fn control_reaches_the_runner_and_answers_with_the_job() {
    let f = fixture();
    assert_eq!(
        f.refused(HttpRequest::new("POST", "/api/training/nope/pause")),
        ApiError::JobNotFound
    );
    f.root
        .managed_job("j1", JobStatus::Running, "2026-11-28T10:00:00Z");
    for verb in ["pause", "resume", "cancel"] {
        let (status, job) = f.json(HttpRequest::new(
            "POST",
            &format!("/api/training/j1/{verb}"),
        ));
        assert_eq!((status, job["id"].as_str()), (200, Some("j1")));
    }
    assert_eq!(
        *f.jobs.asked.lock().unwrap(),
        ["pause j1", "resume j1", "cancel j1"]
    );

    let f = fixture_with(|jobs| jobs.conflict = Some("Job is not running"), |_| {});
    f.root
        .managed_job("j1", JobStatus::Completed, "2026-11-28T10:00:00Z");
    assert_eq!(
        f.refused(HttpRequest::new("POST", "/api/training/j1/pause")),
        ApiError::Conflict("Job is not running".into())
    );
}

#[test]
fn downloads_are_admitted_only_for_what_exists() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Completed, "2026-11-28T10:00:00Z");
    let admitted = |target: &str| {
        matches!(
            f.call(HttpRequest::new("GET", target)),
            Ok(Reply::Download(_))
        )
    };
    assert!(
        admitted("/api/training/j1/download/model"),
        "an empty model is a model"
    );
    assert_eq!(
        f.refused_get("/api/training/j1/download/model?checkpoint=checkpoint-5"),
        ApiError::CheckpointNotFound(crate::names::CheckpointName::parse("checkpoint-5").unwrap())
    );
    assert_eq!(
        f.refused_get("/api/training/j1/download/logs"),
        ApiError::LogNotFound(JobId::parse("j1").unwrap())
    );
    f.root.write("jobs/j1/model/checkpoint-5/weights.bin", "w");
    f.root
        .write("jobs/j1/model/tmp-checkpoint-6/weights.bin", "w");
    f.root.write("jobs/j1/training.log", "step 1\n");
    // Without its trainer_state.json (written last), and just written:
    // refused unless asked for as it is.
    assert!(matches!(
        f.refused_get("/api/training/j1/download/model?checkpoint=checkpoint-5"),
        ApiError::Conflict(detail) if detail.contains("still being written")
    ));
    assert!(admitted(
        "/api/training/j1/download/model?checkpoint=checkpoint-5&allow_incomplete=1"
    ));
    f.root
        .write("jobs/j1/model/checkpoint-5/trainer_state.json", "{}");
    assert!(
        matches!(
            f.refused_get("/api/training/j1/download/model?checkpoint=checkpoint-5"),
            ApiError::Conflict(_)
        ),
        "not settled yet"
    );
    age(&f.root.job("j1").join("model/checkpoint-5"));
    assert!(admitted(
        "/api/training/j1/download/model?checkpoint=checkpoint-5"
    ));
    assert!(admitted(
        "/api/training/j1/download/model?exclude=checkpoints&compression=deflate"
    ));
    assert!(admitted("/api/training/j1/download/logs"));
    assert!(matches!(
        f.refused_get("/api/training/j1/download/model?checkpoint=tmp-checkpoint-6"),
        ApiError::CheckpointNotFound(_)
    ));

    fs::remove_dir_all(f.root.job("j1").join("model")).unwrap();
    assert_eq!(
        f.refused_get("/api/training/j1/download/model?checkpoint=checkpoint-5"),
        ApiError::ModelNotFound(JobId::parse("j1").unwrap())
    );

    let busy = fixture_with(|_| {}, |app| app.limits.max_downloads = 0);
    busy.root
        .managed_job("j1", JobStatus::Completed, "2026-11-28T10:00:00Z");
    assert_eq!(
        busy.refused_get("/api/training/j1/download/model").status(),
        503
    );
}

#[test]
fn live_streams_need_a_handshake_and_a_free_slot() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Running, "2026-11-28T10:00:00Z");
    let (status, content_type, body, _) =
        page_of(f.call(HttpRequest::new("HEAD", "/api/training/j1/events")));
    assert_eq!(
        (status, content_type, body.len()),
        (200, "text/event-stream", 0)
    );
    assert!(matches!(
        f.call(HttpRequest::new("GET", "/api/training/j1/events")),
        Ok(Reply::Live(_))
    ));
    for method in ["GET", "HEAD"] {
        assert_eq!(
            f.refused(HttpRequest::new(method, "/ws/training/j1")),
            ApiError::BadRequest("Expected a WebSocket handshake".into()),
            "{method}"
        );
    }
    let handshake = HttpRequest::new("GET", "/ws/training/j1")
        .with_header("Connection", "Upgrade")
        .with_header("Upgrade", "websocket")
        .with_header("Sec-WebSocket-Version", "13")
        .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(matches!(f.call(handshake), Ok(Reply::Live(_))));

    let busy = fixture_with(|_| {}, |app| app.limits.max_streams = 0);
    busy.root
        .managed_job("j1", JobStatus::Running, "2026-11-28T10:00:00Z");
    assert_eq!(busy.refused_get("/api/training/j1/events").status(), 503);
}

const TOKENS: &str = "read:reader-token-0123456789\ncontrol:controller-token-0123456789\n";

fn with_tokens(app: &mut App) {
    app.access.tokens = Some(Tokens::parse(TOKENS).unwrap());
}

fn login(token: &str) -> HttpRequest {
    let mut request = HttpRequest::new("POST", "/login")
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_body(format!("token={token}").as_bytes());
    request.peer = Some("192.0.2.7:5000".parse().unwrap());
    request
}

#[test]
fn login_opens_a_session_and_logout_ends_it() {
    let f = fixture_with(|_| {}, with_tokens);
    let (status, _, body, _) = page_of(f.call(login("wrong-token-0000000000")));
    assert_eq!(status, 401);
    assert!(String::from_utf8(body).unwrap().contains("<form"));

    let (status, _, _, headers) = page_of(f.call(login("reader-token-0123456789")));
    assert_eq!((status, header(&headers, "Location")), (303, Some("/")));
    let cookie = header(&headers, "Set-Cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("reader-token"),
        "the token never becomes the cookie"
    );
    let session = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, id)| id.to_owned())
        .unwrap();
    assert!(f.app.access.sessions.role_of(&session).is_some());

    let logout = HttpRequest::new("POST", "/logout")
        .with_header("Cookie", &format!("other=1; trainbox_session={session}"));
    let (status, _, _, headers) = page_of(f.call(logout));
    assert_eq!(status, 303);
    assert!(
        header(&headers, "Set-Cookie")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(f.app.access.sessions.role_of(&session), None);
}

#[test]
fn logins_are_rate_limited_and_bounded() {
    let f = fixture_with(|_| {}, with_tokens);
    let too_long = login(&"x".repeat(2000));
    assert_eq!(f.refused(too_long), ApiError::PayloadTooLarge);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(match f.call(login("wrong-token-0000000000")) {
            Ok(Reply::Page { status, .. }) => status,
            Ok(_) => panic!("not a page"),
            Err(e) => e.status(),
        });
    }
    // The oversized attempt counted too: ten a minute in all.
    assert_eq!(answers[..9], [401; 9]);
    assert_eq!(answers[9..], [429; 3]);
}

#[test]
fn without_tokens_login_just_goes_to_the_page() {
    let f = fixture();
    let (status, _, _, headers) = page_of(f.call(login("anything")));
    assert_eq!((status, header(&headers, "Location")), (303, Some("/")));
    assert_eq!(header(&headers, "Set-Cookie"), None);
}

#[test]
fn pages_assets_spec_and_metrics() {
    let f = fixture();
    let (status, content_type, body, _) = page_of(f.call(HttpRequest::new("GET", "/")));
    assert_eq!((status, content_type), (200, "text/html; charset=utf-8"));
    assert!(String::from_utf8(body).unwrap().contains("/ui/app.js"));
    for (target, wanted) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
        ("/openapi.json", "application/json"),
    ] {
        let (status, content_type, body, _) = page_of(f.call(HttpRequest::new("GET", target)));
        assert_eq!((status, content_type), (200, wanted), "{target}");
        assert!(!body.is_empty(), "{target}");
    }
    let (_, _, spec, _) = page_of(f.call(HttpRequest::new("GET", "/openapi.json")));
    let spec: Value = serde_json::from_slice(&spec).unwrap();
    assert!(spec["paths"]["/api/training/jobs"].is_object());

    f.root
        .managed_job("a", JobStatus::Completed, "2026-11-28T10:00:00Z");
    f.root
        .managed_job("b", JobStatus::Completed, "2026-11-28T10:00:01Z");
    f.root
        .managed_job("c", JobStatus::Failed, "2026-11-28T10:00:02Z");
    let (status, _, text, _) = page_of(f.call(HttpRequest::new("GET", "/metrics")));
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("trainbox_jobs{status=\"completed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("trainbox_jobs{status=\"failed\"} 1"),
        "{text}"
    );
}

#[test]
fn a_job_without_a_record_is_read_from_its_files() {
    let f = fixture();
    f.root.write(
        "jobs/ext/progress.json",
        "{\"step\": 10, \"total_steps\": 10}",
    );
    let job = f.get("/api/training/jobs/ext");
    assert_eq!(
        (
            job["managed"].as_bool(),
            job["status"].as_str(),
            job["has_model"].as_bool()
        ),
        (Some(false), Some("completed"), Some(false))
    );
    assert_eq!(
        f.refused_get("/api/training/ext/download/model"),
        ApiError::ModelNotFound(JobId::parse("ext").unwrap())
    );
}

/// Moves the modification time of `dir` and everything in it a minute
/// back, as if a trainer had finished writing it then.
fn age(dir: &std::path::Path) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age(&path);
        } else {
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(then)
                .unwrap();
        }
    }
    fs::File::open(dir).unwrap().set_modified(then).unwrap();
}

#[test]
fn recipes_are_listed_for_a_form_without_their_commands() {
    let f = fixture();
    assert_eq!(f.get("/api/training/recipes"), json!({ "recipes": [] }));
    f.root.write(
        "recipes.json",
        r#"{"recipes": {"finetune": {"command": ["/opt/secret/train.py"],
             "params": {"steps": {"type": "int", "min": 1, "max": 100, "default": 10},
                        "lr": {"type": "float", "min": 0},
                        "base": {"type": "string", "enum": ["tiny", "small"], "default": "tiny"},
                        "run": {"type": "string", "pattern": "[a-z]{1,8}"},
                        "fast": {"type": "bool", "default": true}}}}}"#,
    );
    let listed = f.get("/api/training/recipes");
    assert_eq!(
        listed,
        json!({ "recipes": [{ "name": "finetune", "params": [
            { "name": "base", "type": "string", "enum": ["tiny", "small"], "default": "tiny" },
            { "name": "fast", "type": "bool", "default": true },
            { "name": "lr", "type": "float", "min": 0.0 },
            { "name": "run", "type": "string", "pattern": "[a-z]{1,8}" },
            { "name": "steps", "type": "int", "min": 1, "max": 100, "default": 10 },
        ]}]})
    );
    assert!(!listed.to_string().contains("secret"), "no command");
}

#[test]
fn deleting_waits_for_the_job_to_end_and_its_downloads_to_finish() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Completed, "2026-11-28T10:00:00Z");
    f.root.write("jobs/j1/model/config.json", "{}");
    f.root.write("jobs/j1/model/checkpoint-5/weights.bin", "w");
    f.root.write("jobs/j1/model/epoch=1-step=5.ckpt", "c");
    let delete = |target: &str| HttpRequest::new("DELETE", target);

    // Held by the runner (queued or running): refused.
    f.jobs
        .held
        .lock()
        .unwrap()
        .push(JobId::parse("j1").unwrap());
    assert!(matches!(
        f.refused(delete("/api/training/jobs/j1")),
        ApiError::Conflict(detail) if detail.contains("cancel it")
    ));
    f.jobs.held.lock().unwrap().clear();

    // A download in flight: refused until it ends.
    let download = f.app.job_downloads.enter(&JobId::parse("j1").unwrap());
    assert!(matches!(
        f.refused(delete("/api/training/j1/checkpoints/checkpoint-5")),
        ApiError::Conflict(detail) if detail.contains("download")
    ));
    drop(download);

    let (status, body) = f.json(delete("/api/training/j1/checkpoints/checkpoint-5"));
    assert_eq!((status, body["deleted"].as_bool()), (200, Some(true)));
    assert!(!f.root.job("j1").join("model/checkpoint-5").exists());
    let (status, _) = f.json(delete("/api/training/j1/checkpoints/epoch=1-step=5.ckpt"));
    assert_eq!(status, 200);
    assert_eq!(
        f.refused(delete("/api/training/j1/checkpoints/checkpoint-5")),
        ApiError::CheckpointNotFound(crate::names::CheckpointName::parse("checkpoint-5").unwrap())
    );

    let (status, _) = f.json(delete("/api/training/jobs/j1"));
    assert_eq!(status, 200);
    assert!(!f.root.job("j1").exists());
    assert_eq!(
        f.refused(delete("/api/training/jobs/j1")),
        ApiError::JobNotFound
    );
    assert_eq!(
        f.refused(HttpRequest::new("GET", "/api/training/jobs/j1")),
        ApiError::JobNotFound
    );
}

#[test]
fn a_run_written_by_another_trainer_is_not_deleted_under_it() {
    let f = fixture();
    // No record, written just now: running, as far as anyone can tell.
    f.root
        .write("jobs/ext/progress.json", r#"{"step": 1, "total_steps": 9}"#);
    assert!(matches!(
        f.refused(HttpRequest::new("DELETE", "/api/training/jobs/ext")),
        ApiError::Conflict(detail) if detail.contains("running")
    ));
}

#[test]
fn deleting_removes_links_never_what_they_point_to() {
    let f = fixture();
    f.root
        .managed_job("j1", JobStatus::Failed, "2026-11-28T10:00:00Z");
    f.root.write("outside/keep.bin", "precious");
    let outside = f.root.0.join("outside");
    std::os::unix::fs::symlink(&outside, f.root.job("j1").join("model/linked")).unwrap();
    std::os::unix::fs::symlink(&outside, f.root.job("j1").join("model/checkpoint-9")).unwrap();
    let (status, _) = f.json(HttpRequest::new("DELETE", "/api/training/jobs/j1"));
    assert_eq!(status, 200);
    assert_eq!(
        fs::read_to_string(outside.join("keep.bin")).unwrap(),
        "precious"
    );
}

/// A finished job with a model and two checkpoints, one still being
/// written, as the Hub routes see it.
fn hub_fixture() -> Fixture {
    let f = fixture();
    f.root
        .managed_job("hf", JobStatus::Completed, "2026-11-28T10:00:00Z");
    f.root
        .write("jobs/hf/model/config.json", "{\"model_type\": \"gpt2\"}");
    f.root
        .write("jobs/hf/model/sub/deeper/note.txt", "nested\n");
    for step in [50, 100] {
        f.root.write(
            &format!("jobs/hf/model/checkpoint-{step}/weights.bin"),
            &step.to_string(),
        );
    }
    // checkpoint-100 is caught before the Trainer wrote its state, near
    // the end of a save: still being written, however long the test takes.
    f.root
        .write("jobs/hf/model/checkpoint-50/trainer_state.json", "{}");
    age(&f.root.job("hf").join("model/checkpoint-50"));
    f
}

#[test]
fn hub_revisions_are_main_complete_checkpoints_and_their_commits() {
    let f = hub_fixture();
    let main = f.get("/api/models/trainbox/hf");
    let commit = main["sha"].as_str().unwrap().to_owned();
    assert!(crate::hub::is_commit_id(&commit));
    let names: Vec<&str> = main["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    // main is the model without its checkpoints.
    assert_eq!(names, ["config.json", "sub/deeper/note.txt"]);
    // The commit names the same revision, and is stable.
    let pinned = f.get(&format!("/api/models/trainbox/hf/revision/{commit}"));
    assert_eq!(pinned["sha"], main["sha"]);
    let checkpoint = f.get("/api/models/trainbox/hf/revision/checkpoint-50?blobs=true");
    let sibling = &checkpoint["siblings"][1];
    assert_eq!(sibling["rfilename"], "weights.bin");
    assert_eq!(
        sibling["lfs"]["sha256"],
        crate::store::digests::sha256_hex(b"50")
    );
    assert_ne!(checkpoint["sha"], main["sha"]);
    // Still being written: not a revision yet; and nothing that is none.
    for (revision, says) in [
        ("checkpoint-100", "still being written"),
        (
            "checkpoint-7",
            "Complete checkpoints are revisions: checkpoint-50",
        ),
        ("0123456789abcdef0123456789abcdef01234567", "No revision"),
    ] {
        let refused = f.refused_get(&format!("/api/models/trainbox/hf/revision/{revision}"));
        assert!(
            matches!(&refused, ApiError::RevisionNotFound(why) if why.contains(says)),
            "{revision}: {refused:?}"
        );
    }
    assert!(matches!(
        f.refused_get("/api/models/trainbox/nope"),
        ApiError::RepoNotFound
    ));
    // A changed file is a new commit; the old one is gone with it.
    f.root
        .write("jobs/hf/model/config.json", "{\"model_type\": \"llama\"}");
    let changed = f.get("/api/models/trainbox/hf");
    assert_ne!(changed["sha"], main["sha"]);
    assert!(matches!(
        f.refused_get(&format!("/trainbox/hf/resolve/{commit}/config.json")),
        ApiError::RevisionNotFound(_)
    ));
}

#[test]
fn hub_refs_name_main_and_the_complete_checkpoints_with_their_commits() {
    let f = hub_fixture();
    let refs = f.get("/api/models/trainbox/hf/refs");
    let main = f.get("/api/models/trainbox/hf");
    let checkpoint = f.get("/api/models/trainbox/hf/revision/checkpoint-50");
    assert_eq!(
        refs,
        json!({
            "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": main["sha"]}],
            "converts": [],
            // checkpoint-100 is still being written: not a revision yet.
            "tags": [{"name": "checkpoint-50", "ref": "refs/tags/checkpoint-50", "targetCommit": checkpoint["sha"]}],
            "pullRequests": [],
        })
    );
}

#[test]
fn hub_main_waits_for_the_job_to_finish() {
    let f = fixture();
    f.root
        .managed_job("run", JobStatus::Running, "2026-11-28T10:00:00Z");
    f.root.write("jobs/run/model/config.json", "{}");
    f.root
        .write("jobs/run/model/checkpoint-5/trainer_state.json", "{}");
    age(&f.root.job("run").join("model/checkpoint-5"));
    let refused = f.refused_get("/api/models/trainbox/run");
    assert!(
        matches!(&refused, ApiError::RevisionNotFound(why)
            if why.contains("has not finished") && why.contains("checkpoint-5")),
        "{refused:?}"
    );
    assert_eq!(
        refused.headers()[0],
        ("X-Error-Code", "RevisionNotFound".into())
    );
    f.get("/api/models/trainbox/run/revision/checkpoint-5");
    let refs = f.get("/api/models/trainbox/run/refs");
    assert_eq!(refs["branches"], json!([]));
    assert_eq!(refs["tags"][0]["name"], "checkpoint-5");
}

#[test]
fn hub_trees_list_levels_and_refuse_what_is_not_a_directory() {
    let f = hub_fixture();
    let top = f.get("/api/models/trainbox/hf/tree/main");
    let paths: Vec<(&str, &str)> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(paths, [("file", "config.json"), ("directory", "sub")]);
    let deep = f.get("/api/models/trainbox/hf/tree/main/sub%2Fdeeper?recursive=TRUE");
    assert_eq!(deep[0]["path"], "sub/deeper/note.txt");
    assert_eq!(
        deep[0]["lfs"]["oid"],
        crate::store::digests::sha256_hex(b"nested\n")
    );
    for missing in ["config.json", "nope", "su"] {
        let refused = f.refused_get(&format!("/api/models/trainbox/hf/tree/main/{missing}"));
        let ApiError::EntryNotFound { commit, .. } = &refused else {
            panic!("{missing}: {refused:?}")
        };
        assert!(
            refused
                .headers()
                .contains(&("X-Repo-Commit", commit.clone()))
        );
    }
}

#[test]
fn hub_files_not_hashed_yet_are_hashed_on_the_spot_up_to_a_bound() {
    let f = hub_fixture();
    // No digest worker runs here: the small files were hashed by the request.
    f.get("/api/models/trainbox/hf");
    let big = fs::File::create(f.root.job("hf").join("model/big.bin")).unwrap();
    big.set_len(super::hub::HASH_ON_THE_SPOT_MAX + 1).unwrap();
    drop(big);
    let refused = f.refused_get("/trainbox/hf/resolve/main/config.json");
    assert!(matches!(refused, ApiError::Unavailable(_)), "{refused:?}");
    assert!(
        refused
            .headers()
            .iter()
            .any(|(name, _)| *name == "Retry-After")
    );
}

#[test]
fn compare_puts_three_jobs_curves_side_by_side() {
    let f = fixture();
    for (id, losses) in [
        ("a", [0.9, 0.5, 0.6]),
        ("b", [0.8, 0.4, 0.3]),
        ("c", [1.0, 0.7, 0.65]),
    ] {
        let mut record = record(id, JobStatus::Completed, "2026-11-28T10:00:00.000Z");
        record.started_at = Some("2026-11-28T10:00:00.000Z".into());
        record.finished_at = Some("2026-11-28T10:01:30.500Z".into());
        f.root.write(
            &format!("jobs/{id}/job.json"),
            &serde_json::to_string(&record).unwrap(),
        );
        let lines: String = losses
            .iter()
            .enumerate()
            .map(|(i, loss)| {
                format!(
                    "{{\"step\": {}, \"loss\": {loss}, \"metrics\": {{\"eval_accuracy\": {}}}}}\n",
                    (i + 1) * 100,
                    0.5 + i as f64 / 10.0
                )
            })
            .collect();
        f.root.write(&format!("jobs/{id}/metrics.jsonl"), &lines);
    }
    let compared = f.get("/api/training/compare?jobs=a,b,c&metric=loss");
    assert_eq!(compared["better"], "lower");
    assert_eq!(compared["shared_metrics"], json!(["eval_accuracy", "loss"]));
    let jobs = compared["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[1]["id"], "b");
    assert_eq!(jobs[1]["best"], json!({"step": 300, "value": 0.3}));
    assert_eq!(jobs[0]["best"], json!({"step": 200, "value": 0.5}));
    assert_eq!(jobs[0]["last"], json!({"step": 300, "value": 0.6}));
    assert_eq!(jobs[2]["points"].as_array().unwrap().len(), 3);
    assert_eq!(jobs[0]["duration_seconds"], 90.5);
    assert_eq!(jobs[0]["recipe"], "demo");
    let accuracy = f.get("/api/training/compare?jobs=a&metric=eval_accuracy");
    assert_eq!(accuracy["better"], "higher");
    assert_eq!(accuracy["jobs"][0]["best"]["step"], 300);
    let overridden = f.get("/api/training/compare?jobs=a&metric=loss&better=higher");
    assert_eq!(overridden["jobs"][0]["best"]["value"], 0.9);
    assert_eq!(
        f.refused_get("/api/training/compare?jobs=a,nope"),
        ApiError::JobNotFound
    );
}
