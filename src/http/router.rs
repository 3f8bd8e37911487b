//! The router: a pure function from (method, request target) to a [`Route`].
//!
//! Percent-decoding happens here and only here. A path segment that decodes
//! to `/`, `\`, NUL or invalid UTF-8 never matches anything; names are handed
//! to their parsers, so every `Route` holds parsed `JobId`s and
//! `CheckpointName`s, never raw strings. Unknown or repeated query parameters
//! are refused rather than ignored. The whole API is the `match` in
//! [`route`]; the handler for each variant is one hop away in `http::handlers`.

use super::error::printable;
use crate::names::{CheckpointName, JobId};

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
    /// `GET /api/training/jobs/{job_id}`
    Job(JobId),
    /// `GET /api/training/{job_id}/checkpoints`
    Checkpoints(JobId),
    /// `GET /api/training/{job_id}/progress`
    Progress(JobId),
    /// `GET /api/training/{job_id}/metrics`
    History(JobId),
    /// `GET /api/training/{job_id}/events`: Server-Sent Events.
    Events(JobId),
    /// `GET /ws/training/{job_id}`: WebSocket.
    WebSocket(JobId),
    /// `POST /api/training/{job_id}/{pause,resume,cancel}`
    Control(JobId, Action),
    /// `GET /api/training/{job_id}/download/model?checkpoint=&compression=`
    DownloadModel {
        job: JobId,
        checkpoint: Option<CheckpointName>,
        compression: Compression,
    },
    /// `GET /api/training/{job_id}/download/logs`
    DownloadLogs(JobId),
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
            Route::Job(_) => "Job",
            Route::Checkpoints(_) => "Checkpoints",
            Route::Progress(_) => "Progress",
            Route::History(_) => "History",
            Route::Events(_) => "Events",
            Route::WebSocket(_) => "WebSocket",
            Route::Control(..) => "Control",
            Route::DownloadModel { .. } => "DownloadModel",
            Route::DownloadLogs(_) => "DownloadLogs",
        }
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

/// How model archive members are compressed (`?compression=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Tensors stored, text deflated; exact length, resumable.
    #[default]
    Auto,
    /// Everything stored; exact length, resumable.
    Stored,
    /// Everything deflated, streamed without a length.
    Deflate,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Auto => "auto",
            Compression::Stored => "stored",
            Compression::Deflate => "deflate",
        }
    }
}

/// Which part of the job list to send (newest first): all of it, or a page
/// of at most `limit` jobs after the job `after` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub limit: Option<usize>,
    pub after: Option<Cursor>,
}

/// The most jobs a page holds.
pub const PAGE_MAX: usize = 1000;

/// Where a page of the job list ends: its last job's creation time and id
/// (the list's sort key), as `{created_at}_{id}`. A cursor stays valid when
/// its job is deleted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: String,
    pub id: JobId,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (created_at, id) = text.split_once('_')?;
        let stamp = |c: char| c.is_ascii_digit() || "TZ:.-+".contains(c);
        if created_at.len() > 40 || !created_at.chars().all(stamp) {
            return None;
        }
        Some(Cursor {
            created_at: created_at.to_owned(),
            id: JobId::parse(id).ok()?,
        })
    }

    /// The text `parse` reads back.
    pub fn render(&self) -> String {
        format!("{}_{}", self.created_at, self.id)
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
    (GET, "/api/training/jobs/{job_id}"),
    (GET, "/api/training/{job_id}/checkpoints"),
    (GET, "/api/training/{job_id}/progress"),
    (GET, "/api/training/{job_id}/metrics"),
    (GET, "/api/training/{job_id}/events"),
    (POST, "/api/training/{job_id}/pause"),
    (POST, "/api/training/{job_id}/resume"),
    (POST, "/api/training/{job_id}/cancel"),
    (GET, "/api/training/{job_id}/download/model"),
    (GET, "/api/training/{job_id}/download/logs"),
    (GET, "/ws/training/{job_id}"),
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
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_POST: &str = "GET, HEAD, POST";

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
        [Some("api"), Some("training"), Some("jobs"), id] => (GET, Shape::Job(Route::Job, *id)),
        [Some("api"), Some("training"), id, Some(leaf)] => match *leaf {
            "checkpoints" => (GET, Shape::Job(Route::Checkpoints, *id)),
            "progress" => (GET, Shape::Job(Route::Progress, *id)),
            "metrics" => (GET, Shape::Job(Route::History, *id)),
            "events" => (GET, Shape::Job(Route::Events, *id)),
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
    let method_ok = match allow {
        GET => is_get,
        POST => is_post,
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
        Shape::Control(action, id) => Route::Control(job_id(id)?, action),
        Shape::DownloadModel(id) => {
            let job = job_id(id)?;
            let checkpoint = match query.take("checkpoint") {
                Some(name) => Some(
                    CheckpointName::parse(&name).map_err(|_| RouteError::InvalidCheckpointName)?,
                ),
                None => None,
            };
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
            Route::DownloadModel {
                job,
                checkpoint,
                compression,
            }
        }
    };
    query.finish()?;
    Ok(Matched { route, head })
}

/// What the path matched, before the names in it are parsed.
enum Shape<'a> {
    Fixed(Route),
    Jobs,
    Job(fn(JobId) -> Route, Option<&'a str>),
    Control(Action, Option<&'a str>),
    DownloadModel(Option<&'a str>),
}

fn job_id(segment: Option<&str>) -> Result<JobId, RouteError> {
    segment
        .and_then(|s| JobId::parse(s).ok())
        .ok_or(RouteError::InvalidJobId)
}

/// Percent-decodes one path segment. `None` when an escape is malformed or
/// the result holds `/`, `\`, NUL or invalid UTF-8.
fn decode_segment(raw: &str) -> Option<String> {
    let decoded = percent_decode(raw.as_bytes(), false)?;
    let text = String::from_utf8(decoded).ok()?;
    (!text.contains(['/', '\\', '\0'])).then_some(text)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in form
/// queries). `None` on a malformed escape.
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_value(*bytes.next()?)?;
                let lo = hex_value(*bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    Some(out)
}

/// Decodes a form or query value (`%XX`, `+` as space) to UTF-8 text.
pub fn form_decode(raw: &[u8]) -> Option<String> {
    String::from_utf8(percent_decode(raw, true)?).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decoded query string; each parameter is taken once by the route that
/// knows it, and whatever is left over is an error.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Result<Query, RouteError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent_decode(s.as_bytes(), true)
                    .and_then(|v| String::from_utf8(v).ok())
                    .ok_or_else(|| RouteError::BadQuery("Invalid query string".into()))
            };
            let (key, value) = (decode(key)?, decode(value)?);
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(RouteError::BadQuery(format!(
                    "Repeated query parameter '{}'",
                    printable(&key)
                )));
            }
            pairs.push((key, value));
        }
        Ok(Query(pairs))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(index).1)
    }

    fn finish(self) -> Result<(), RouteError> {
        match self.0.first() {
            None => Ok(()),
            Some((key, _)) => Err(RouteError::BadQuery(format!(
                "Unknown query parameter '{}'",
                printable(key)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(method: &str, target: &str) -> Route {
        route(method, target)
            .unwrap_or_else(|e| panic!("{method} {target}: {e:?}"))
            .route
    }

    fn id(s: &str) -> JobId {
        JobId::parse(s).unwrap()
    }

    #[test]
    fn every_route_parses() {
        assert_eq!(ok("GET", "/"), Route::Index);
        assert_eq!(ok("GET", "/healthz"), Route::Health);
        assert_eq!(ok("GET", "/metrics"), Route::Metrics);
        assert_eq!(ok("GET", "/openapi.json"), Route::OpenApi);
        assert_eq!(ok("POST", "/login"), Route::Login);
        assert_eq!(ok("POST", "/logout"), Route::Logout);
        assert_eq!(
            ok("GET", "/api/training/jobs"),
            Route::ListJobs(Paging::default())
        );
        let paged = ok(
            "GET",
            "/api/training/jobs?limit=50&after=2026-11-28T23%3A24%3A02.711Z_j-1",
        );
        assert_eq!(
            paged,
            Route::ListJobs(Paging {
                limit: Some(50),
                after: Some(Cursor {
                    created_at: "2026-11-28T23:24:02.711Z".into(),
                    id: JobId::parse("j-1").unwrap(),
                }),
            })
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=nounderscore",
            "after=2026_..",
            "after=<script>_j1",
        ] {
            assert!(
                matches!(
                    route("GET", &format!("/api/training/jobs?{bad}")),
                    Err(RouteError::BadQuery(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(ok("POST", "/api/training/jobs"), Route::StartJob);
        assert_eq!(ok("GET", "/api/training/jobs/a1"), Route::Job(id("a1")));
        assert_eq!(
            ok("GET", "/api/training/a1/checkpoints"),
            Route::Checkpoints(id("a1"))
        );
        assert_eq!(
            ok("GET", "/api/training/a1/progress"),
            Route::Progress(id("a1"))
        );
        assert_eq!(
            ok("GET", "/api/training/a1/metrics"),
            Route::History(id("a1"))
        );
        assert_eq!(
            ok("GET", "/api/training/a1/events"),
            Route::Events(id("a1"))
        );
        assert_eq!(ok("GET", "/ws/training/a1"), Route::WebSocket(id("a1")));
        for (verb, action) in [
            ("pause", Action::Pause),
            ("resume", Action::Resume),
            ("cancel", Action::Cancel),
        ] {
            assert_eq!(
                ok("POST", &format!("/api/training/a1/{verb}")),
                Route::Control(id("a1"), action)
            );
        }
        assert_eq!(
            ok("GET", "/api/training/a1/download/logs"),
            Route::DownloadLogs(id("a1"))
        );
        assert_eq!(
            ok(
                "GET",
                "/api/training/a1/download/model?checkpoint=epoch%3D3-step%3D1200.ckpt&compression=stored"
            ),
            Route::DownloadModel {
                job: id("a1"),
                checkpoint: Some(CheckpointName::parse("epoch=3-step=1200.ckpt").unwrap()),
                compression: Compression::Stored,
            }
        );
    }

    const ALL_VARIANTS: &[&str] = &[
        "Index",
        "Asset",
        "Health",
        "Metrics",
        "OpenApi",
        "Login",
        "Logout",
        "ListJobs",
        "StartJob",
        "Job",
        "Checkpoints",
        "Progress",
        "History",
        "Events",
        "WebSocket",
        "Control",
        "DownloadModel",
        "DownloadLogs",
    ];

    /// `ENDPOINTS` (which the OpenAPI test and the auth walk use) routes,
    /// method by method, and reaches every `Route` variant (`Route::name`
    /// has no wildcard, so a new variant must be named, then listed here).
    #[test]
    fn the_endpoint_table_covers_every_route() {
        let mut seen = std::collections::BTreeSet::new();
        for (methods, template) in ENDPOINTS {
            let target = template.replace("{job_id}", "j1");
            for method in methods.split(", ") {
                let m =
                    route(method, &target).unwrap_or_else(|e| panic!("{method} {target}: {e:?}"));
                seen.insert(m.route.name());
            }
            assert!(
                matches!(route("DELETE", &target), Err(RouteError::MethodNotAllowed { allow }) if allow == *methods),
                "{target}"
            );
        }
        let all: std::collections::BTreeSet<&str> = ALL_VARIANTS.iter().copied().collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn head_is_get_without_a_body() {
        let m = route("HEAD", "/api/training/a1/download/model").unwrap();
        assert!(m.head);
        assert!(matches!(
            m.route,
            Route::DownloadModel {
                compression: Compression::Auto,
                ..
            }
        ));
        assert!(!route("GET", "/healthz").unwrap().head);
    }

    #[test]
    fn wrong_method_names_the_allowed_ones() {
        assert_eq!(
            route("DELETE", "/api/training/jobs"),
            Err(RouteError::MethodNotAllowed { allow: GET_POST })
        );
        assert_eq!(
            route("GET", "/api/training/a1/pause"),
            Err(RouteError::MethodNotAllowed { allow: POST })
        );
        assert_eq!(
            route("POST", "/api/training/a1/download/model"),
            Err(RouteError::MethodNotAllowed { allow: GET })
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for target in [
            "",
            "*",
            "http://example.com/",
            "/api",
            "/api/training",
            "/api/training/jobs/",
            "/api/training/a1/download",
            "/api/training/a1/download/other",
            "/api/training/a1/nothing",
            "/healthz/",
            "//healthz",
            "/api/%74raining/jobs/x/y",
        ] {
            assert_eq!(
                route("GET", target),
                Err(RouteError::NotFound),
                "{target:?}"
            );
        }
    }

    #[test]
    fn literal_segments_may_be_percent_encoded() {
        assert_eq!(
            ok("GET", "/api/%74raining/jobs"),
            Route::ListJobs(Paging::default())
        );
    }

    #[test]
    fn jobs_is_the_list_never_a_job_id() {
        // Without the reservation this path would mean two things.
        assert_eq!(
            ok("GET", "/api/training/jobs/checkpoints"),
            Route::Job(id("checkpoints"))
        );
        assert_eq!(
            route("GET", "/api/training/jobs/jobs"),
            Err(RouteError::InvalidJobId)
        );
    }

    #[test]
    fn hostile_job_ids_are_invalid() {
        for raw in [
            "..", ".", "%2e%2e", ".env", "a%2Fb", "a%5Cb", "a%00b", "%ff", "%C3%A9", "a%2", "%zz",
            "a%20b", "-x",
        ] {
            assert_eq!(
                route("GET", &format!("/api/training/{raw}/progress")),
                Err(RouteError::InvalidJobId),
                "{raw}"
            );
        }
        let long = "a".repeat(65);
        assert_eq!(
            route("GET", &format!("/api/training/jobs/{long}")),
            Err(RouteError::InvalidJobId)
        );
    }

    #[test]
    fn hostile_checkpoint_names_are_invalid() {
        for raw in [
            "",
            "..%2F..%2F..%2Fetc%2Fpasswd",
            "../../../etc/passwd",
            "%2Fetc%2Fshadow",
            "/etc/shadow",
            "checkpoint%5C..%5C..%5Csecret",
            "checkpoint\\..\\..\\secret",
            "%00",
            ".hidden",
            "a%2Fb",
            "%C3%A9",
        ] {
            assert_eq!(
                route(
                    "GET",
                    &format!("/api/training/a1/download/model?checkpoint={raw}")
                ),
                Err(RouteError::InvalidCheckpointName),
                "{raw}"
            );
        }
    }

    #[test]
    fn queries_are_strict() {
        let bad = |target: &str| match route("GET", target) {
            Err(RouteError::BadQuery(detail)) => detail,
            other => panic!("{target}: {other:?}"),
        };
        assert_eq!(
            bad("/api/training/a1/download/model?checkpoint=c1&checkpoint=c2"),
            "Repeated query parameter 'checkpoint'"
        );
        assert_eq!(
            bad("/api/training/jobs?page=5"),
            "Unknown query parameter 'page'"
        );
        assert_eq!(
            bad("/api/training/a1/download/model?compression=zstd"),
            "Invalid compression: expected auto, stored or deflate"
        );
        assert_eq!(bad("/healthz?x=%zz"), "Invalid query string");
        assert_eq!(bad("/healthz?%C3%28=1"), "Invalid query string");
        // An empty query or empty pairs are harmless.
        assert_eq!(ok("GET", "/healthz?"), Route::Health);
        assert_eq!(ok("GET", "/healthz?&&"), Route::Health);
    }

    #[test]
    fn tokens_never_travel_in_urls() {
        assert!(matches!(
            route("GET", "/api/training/a1/download/model?token=abc"),
            Err(RouteError::BadQuery(_))
        ));
    }

    #[test]
    fn method_is_checked_before_names() {
        assert_eq!(
            route("PUT", "/api/training/..%2F/progress"),
            Err(RouteError::MethodNotAllowed { allow: GET })
        );
    }

    proptest! {
        /// Any method and target: a route or an error, never a panic, and
        /// every accepted route holds names that re-parse to themselves.
        #[test]
        fn any_target_routes_or_errs(method in "GET|HEAD|POST|PUT|[A-Z]{1,8}", target in "\\PC{0,120}") {
            if let Ok(m) = route(&method, &target) {
                assert_route_names_parse(&m.route);
            }
        }

        #[test]
        fn api_shaped_targets_route_or_err(
            id in "[a-z.%/\\\\0-9-]{0,12}",
            leaf in "checkpoints|progress|metrics|events|download/model|download/logs|pause",
            query in "[a-z=&%0-9.]{0,20}",
        ) {
            let target = format!("/api/training/{id}/{leaf}?{query}");
            for method in ["GET", "POST", "HEAD"] {
                if let Ok(m) = route(method, &target) {
                    assert_route_names_parse(&m.route);
                }
            }
        }
    }

    pub(crate) fn assert_route_names_parse(route: &Route) {
        let job = match route {
            Route::Job(j)
            | Route::Checkpoints(j)
            | Route::Progress(j)
            | Route::History(j)
            | Route::Events(j)
            | Route::WebSocket(j)
            | Route::DownloadLogs(j)
            | Route::Control(j, _) => Some(j),
            Route::DownloadModel {
                job, checkpoint, ..
            } => {
                if let Some(c) = checkpoint {
                    assert_eq!(CheckpointName::parse(c.as_str()).as_ref(), Ok(c));
                }
                Some(job)
            }
            _ => None,
        };
        if let Some(j) = job {
            assert_eq!(JobId::parse(j.as_str()).as_ref(), Ok(j));
        }
    }
}
