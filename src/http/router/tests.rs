//! The router's tests: every route, strict names and queries, and the
//! properties (any target routes or errs; rendered routes route back).

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
            source: ArchiveSource::Checkpoint(
                CheckpointName::parse("epoch=3-step=1200.ckpt").unwrap()
            ),
            compression: Compression::Stored,
            allow_incomplete: false,
        }
    );
    assert_eq!(
        ok("GET", "/api/training/a1/download/model?exclude=checkpoints"),
        Route::DownloadModel {
            job: id("a1"),
            source: ArchiveSource::Model {
                exclude_checkpoints: true
            },
            compression: Compression::Auto,
            allow_incomplete: false,
        }
    );
    assert_eq!(
        ok(
            "GET",
            "/api/training/a1/download/model?checkpoint=checkpoint-5&allow_incomplete=1"
        ),
        Route::DownloadModel {
            job: id("a1"),
            source: ArchiveSource::Checkpoint(CheckpointName::parse("checkpoint-5").unwrap()),
            compression: Compression::Auto,
            allow_incomplete: true,
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
    "Recipes",
    "Downloads",
    "Compare",
    "Disk",
    "DeleteJob",
    "DeleteCheckpoint",
    "Job",
    "Checkpoints",
    "Progress",
    "History",
    "Resources",
    "Events",
    "WebSocket",
    "Control",
    "DownloadModel",
    "DownloadLogs",
    "Files",
    "HubRepo",
    "HubTree",
    "HubResolve",
    "HubRefs",
];

/// `ENDPOINTS` (which the OpenAPI test and the auth walk use) routes,
/// method by method, and reaches every `Route` variant (`Route::name`
/// has no wildcard, so a new variant must be named, then listed here).
#[test]
fn the_endpoint_table_covers_every_route() {
    let mut seen = std::collections::BTreeSet::new();
    for (methods, template) in ENDPOINTS {
        let target = template
            .replace("{job_id}", "j1")
            .replace("{name}", "checkpoint-1")
            .replace("{revision}", "main")
            .replace("{path}", "config.json")
            + if template.ends_with("/compare") {
                "?jobs=j1"
            } else {
                ""
            };
        for method in methods.split(", ") {
            let m = route(method, &target).unwrap_or_else(|e| panic!("{method} {target}: {e:?}"));
            seen.insert(m.route.name());
        }
        assert!(
            matches!(route("PUT", &target), Err(RouteError::MethodNotAllowed { allow }) if allow == *methods),
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
    assert_eq!(
        bad("/api/training/a1/download/model?exclude=logs"),
        "Invalid exclude: expected checkpoints"
    );
    assert_eq!(
        bad("/api/training/a1/download/model?exclude=checkpoints&checkpoint=c1"),
        "A checkpoint cannot be downloaded with exclude=checkpoints"
    );
    assert_eq!(
        bad("/api/training/a1/download/model?checkpoint=c1&allow_incomplete=yes"),
        "Invalid allow_incomplete: expected 1 or 0"
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

fn any_job_id() -> impl Strategy<Value = JobId> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}".prop_filter_map("reserved", |s| JobId::parse(&s).ok())
}

fn any_checkpoint_name() -> impl Strategy<Value = CheckpointName> {
    "[A-Za-z0-9][A-Za-z0-9._=+-]{0,40}".prop_map(|s| CheckpointName::parse(&s).unwrap())
}

fn any_route() -> impl Strategy<Value = Route> {
    let checkpoint = any_checkpoint_name();
    let source = prop_oneof![
        any::<bool>().prop_map(|exclude_checkpoints| ArchiveSource::Model {
            exclude_checkpoints
        }),
        checkpoint.prop_map(ArchiveSource::Checkpoint),
    ];
    let compression = prop_oneof![
        Just(Compression::Auto),
        Just(Compression::Stored),
        Just(Compression::Deflate),
    ];
    let cursor =
        ("[0-9TZ:.+-]{1,40}", any_job_id()).prop_map(|(created_at, id)| Cursor { created_at, id });
    let paging = (
        proptest::option::of(1..=PAGE_MAX),
        proptest::option::of(cursor),
    )
        .prop_map(|(limit, after)| Paging { limit, after });
    let action = prop_oneof![
        Just(Action::Pause),
        Just(Action::Resume),
        Just(Action::Cancel)
    ];
    let asset = prop_oneof![Just(Asset::Script), Just(Asset::Style), Just(Asset::Icon)];
    prop_oneof![
        prop_oneof![
            Just(Route::Index),
            Just(Route::Health),
            Just(Route::Metrics),
            Just(Route::OpenApi),
            Just(Route::Login),
            Just(Route::Logout),
            Just(Route::StartJob),
            Just(Route::Recipes),
            Just(Route::Disk),
        ],
        asset.prop_map(Route::Asset),
        paging.prop_map(Route::ListJobs),
        (any_job_id(), 0..8u8).prop_map(|(id, which)| match which {
            0 => Route::Job(id),
            1 => Route::Checkpoints(id),
            2 => Route::Progress(id),
            3 => Route::History(id),
            4 => Route::Events(id),
            5 => Route::WebSocket(id),
            6 => Route::Resources(id),
            _ => Route::DownloadLogs(id),
        }),
        (any_job_id(), action).prop_map(|(id, action)| Route::Control(id, action)),
        any_job_id().prop_map(Route::DeleteJob),
        (
            proptest::option::of(any_job_id()),
            1..=PAGE_MAX,
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(job, limit, before)| Route::Downloads(AuditQuery {
                job,
                limit,
                before
            })),
        (any_job_id(), any_checkpoint_name())
            .prop_map(|(id, name)| Route::DeleteCheckpoint(id, name)),
        (
            proptest::collection::btree_set(any_job_id(), 1..=8),
            "[A-Za-z0-9_./:-]{1,64}",
            proptest::option::of(prop_oneof![Just(Better::Lower), Just(Better::Higher)])
        )
            .prop_map(|(jobs, metric, better)| Route::Compare(CompareQuery {
                jobs: jobs.into_iter().collect(),
                metric,
                better
            })),
        (any_job_id(), source.clone(), any::<bool>()).prop_map(|(job, source, sha256sum)| {
            Route::Files {
                job,
                source,
                sha256sum,
            }
        }),
        (any_job_id(), any_revision(), any::<bool>()).prop_map(|(job, revision, blobs)| {
            Route::HubRepo {
                job,
                revision,
                blobs,
            }
        }),
        (
            any_job_id(),
            any_revision(),
            proptest::option::of(any_repo_path()),
            any::<bool>()
        )
            .prop_map(|(job, revision, path, recursive)| Route::HubTree {
                job,
                revision,
                path,
                recursive,
            }),
        any_job_id().prop_map(Route::HubRefs),
        (any_job_id(), any_revision(), any_repo_path()).prop_map(|(job, revision, path)| {
            Route::HubResolve {
                job,
                revision,
                path,
            }
        }),
        (any_job_id(), source, compression, any::<bool>()).prop_map(
            |(job, source, compression, allow_incomplete)| Route::DownloadModel {
                job,
                source,
                compression,
                allow_incomplete,
            }
        ),
    ]
}

fn any_revision() -> impl Strategy<Value = Revision> {
    prop_oneof![
        Just(Revision::Main),
        any_checkpoint_name()
            .prop_filter("not in progress", |n| !n.is_in_progress())
            .prop_map(Revision::Checkpoint),
        "[0-9a-f]{40}".prop_map(Revision::Commit),
    ]
}

/// Paths with spaces, unicode, dots and percent signs in them.
fn any_repo_path() -> impl Strategy<Value = RepoPath> {
    proptest::collection::vec("[a-zA-Z0-9 ._%+éü-]{1,12}", 1..4)
        .prop_filter_map("a valid path", |parts| RepoPath::parse(&parts.join("/")))
}

proptest! {
    /// Every route renders to a request that routes back to it.
    #[test]
    fn rendered_routes_route_back(route in any_route()) {
        let (method, target) = route.to_request();
        prop_assert_eq!(super::route(method, &target).map(|m| m.route), Ok(route));
    }
}

pub(crate) fn assert_route_names_parse(route: &Route) {
    let job = match route {
        Route::Job(j)
        | Route::Checkpoints(j)
        | Route::Progress(j)
        | Route::History(j)
        | Route::Resources(j)
        | Route::Events(j)
        | Route::WebSocket(j)
        | Route::DownloadLogs(j)
        | Route::Control(j, _)
        | Route::DeleteJob(j) => Some(j),
        Route::DeleteCheckpoint(j, c) => {
            assert_eq!(CheckpointName::parse(c.as_str()).as_ref(), Ok(c));
            Some(j)
        }
        Route::HubRepo { job, .. }
        | Route::HubTree { job, .. }
        | Route::HubResolve { job, .. }
        | Route::HubRefs(job) => Some(job),
        Route::DownloadModel { job, source, .. } | Route::Files { job, source, .. } => {
            if let ArchiveSource::Checkpoint(c) = source {
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
