//! The Hugging Face Hub routes: `/api/models/trainbox/{job_id}[/refs|
//! /revision/{rev}|/tree/{rev}[/{path}]]` and
//! `/trainbox/{job_id}/resolve/{rev}/{path}`.
//!
//! Their paths are not split like the rest of the API: the client encodes
//! `/` inside a revision and inside a tree's sub-path (`%2F`), and sends a
//! file's path as several segments, so these routes decode segments
//! themselves (after splitting) and hand the result to the `hub` parsers.
//! Unknown query parameters are ignored, as the Hub itself does: the
//! client adds ones of its own across versions (`expand`, `securityStatus`).

use super::{GET, Matched, Route, RouteError, percent};
use crate::hub::{NAMESPACE, RepoPath, Revision};
use crate::names::JobId;

/// The Hub route `raw` (the path's segments, still encoded) names, or
/// `None` when it is not a Hub path.
pub(super) fn route(
    method: &str,
    raw: &[&str],
    query: &str,
) -> Option<Result<Matched, RouteError>> {
    let shape = match raw {
        ["api", "models", namespace, repo, rest @ ..] => Shape::Api(namespace, repo, rest),
        // `api/training/{id}/checkpoints/{name}` has `resolve` nowhere near
        // the third place, but a job called `resolve` would put it there.
        [namespace, repo, "resolve", revision, path @ ..]
            if *namespace != "api" && !path.is_empty() =>
        {
            Shape::Resolve(namespace, repo, revision, path)
        }
        _ => return None,
    };
    Some(parse(method, shape, query))
}

enum Shape<'a> {
    Api(&'a str, &'a str, &'a [&'a str]),
    Resolve(&'a str, &'a str, &'a str, &'a [&'a str]),
}

fn parse(method: &str, shape: Shape<'_>, query: &str) -> Result<Matched, RouteError> {
    let head = method == "HEAD";
    if method != "GET" && !head {
        return Err(RouteError::MethodNotAllowed { allow: GET });
    }
    let route = match shape {
        Shape::Resolve(namespace, repo, revision, path) => Route::HubResolve {
            job: repository(namespace, repo)?,
            revision: revision_of(revision)?,
            path: repo_path(path)?,
        },
        Shape::Api(namespace, repo, rest) => {
            let job = repository(namespace, repo)?;
            match rest {
                [] => Route::HubRepo {
                    job,
                    revision: Revision::Main,
                    blobs: flag(query, "blobs"),
                },
                ["refs"] => Route::HubRefs(job),
                ["revision", revision] => Route::HubRepo {
                    job,
                    revision: revision_of(revision)?,
                    blobs: flag(query, "blobs"),
                },
                ["tree", revision, path @ ..] => Route::HubTree {
                    job,
                    revision: revision_of(revision)?,
                    path: match path {
                        [] => None,
                        path => Some(repo_path(path)?),
                    },
                    recursive: flag(query, "recursive"),
                },
                _ => return Err(RouteError::NotFound),
            }
        }
    };
    Ok(Matched { route, head })
}

/// `trainbox/<job_id>`; any other repository does not exist here.
fn repository(namespace: &str, repo: &str) -> Result<JobId, RouteError> {
    let job = decode(repo).and_then(|r| JobId::parse(&r).ok());
    match (decode(namespace).as_deref(), job) {
        (Some(NAMESPACE), Some(job)) => Ok(job),
        _ => Err(RouteError::RepoNotFound),
    }
}

fn revision_of(raw: &str) -> Result<Revision, RouteError> {
    let text = decode(raw).ok_or(RouteError::RevisionNotFound)?;
    Revision::parse(&text).ok_or(RouteError::RevisionNotFound)
}

/// A path from one or more segments, each of which may hold an encoded `/`.
fn repo_path(segments: &[&str]) -> Result<RepoPath, RouteError> {
    let decoded: Option<Vec<String>> = segments.iter().map(|s| decode(s)).collect();
    decoded
        .and_then(|parts| RepoPath::parse(&parts.join("/")))
        .ok_or(RouteError::InvalidRepoPath)
}

fn decode(raw: &str) -> Option<String> {
    String::from_utf8(percent::decode(raw.as_bytes(), false)?).ok()
}

/// A boolean query parameter the way the client sends it (`True`,
/// `true`, `1`); anything else, or none, is false. Repeats and
/// parameters of no meaning here are ignored, as the Hub does.
fn flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| percent::form_decode(value.as_bytes()))
        .is_some_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

#[cfg(test)]
mod tests {
    use super::super::route as route_target;
    use super::*;

    fn ok(method: &str, target: &str) -> Route {
        route_target(method, target)
            .unwrap_or_else(|e| panic!("{method} {target}: {e:?}"))
            .route
    }

    fn job() -> JobId {
        JobId::parse("j1").unwrap()
    }

    #[test]
    fn hub_paths_route() {
        assert_eq!(
            ok("GET", "/api/models/trainbox/j1"),
            Route::HubRepo {
                job: job(),
                revision: Revision::Main,
                blobs: false
            }
        );
        assert_eq!(
            ok(
                "GET",
                "/api/models/trainbox/j1/revision/checkpoint-50?blobs=True&expand=a&expand=b"
            ),
            Route::HubRepo {
                job: job(),
                revision: Revision::parse("checkpoint-50").unwrap(),
                blobs: true
            }
        );
        // The sub-path as the client sends it (one segment, `/` encoded)
        // and as a browser would (several segments).
        for target in [
            "/api/models/trainbox/j1/tree/main/sub%2Fdeeper?recursive=True&expand=False",
            "/api/models/trainbox/j1/tree/main/sub/deeper?recursive=true",
        ] {
            assert_eq!(
                ok("GET", target),
                Route::HubTree {
                    job: job(),
                    revision: Revision::Main,
                    path: RepoPath::parse("sub/deeper"),
                    recursive: true
                }
            );
        }
        assert_eq!(
            ok("HEAD", "/trainbox/j1/resolve/main/sub/a%20b.json"),
            Route::HubResolve {
                job: job(),
                revision: Revision::Main,
                path: RepoPath::parse("sub/a b.json").unwrap()
            }
        );
        assert!(
            route_target("HEAD", "/trainbox/j1/resolve/main/x")
                .unwrap()
                .head
        );
    }

    #[test]
    fn hub_misses_say_what_is_missing() {
        let cases = [
            ("/api/models/gpt2/x", RouteError::RepoNotFound),
            ("/api/models/trainbox/..", RouteError::RepoNotFound),
            (
                "/other/j1/resolve/main/config.json",
                RouteError::RepoNotFound,
            ),
            (
                "/trainbox/j1/resolve/refs%2Fpr%2F1/a",
                RouteError::RevisionNotFound,
            ),
            (
                "/api/models/trainbox/j1/revision/v1%20x",
                RouteError::RevisionNotFound,
            ),
            (
                "/trainbox/j1/resolve/main/..%2Fsecret",
                RouteError::InvalidRepoPath,
            ),
            (
                "/trainbox/j1/resolve/main/a%00b",
                RouteError::InvalidRepoPath,
            ),
            ("/api/models/trainbox/j1/commits/main", RouteError::NotFound),
        ];
        for (target, expected) in cases {
            assert_eq!(route_target("GET", target), Err(expected), "{target}");
        }
        assert_eq!(
            route_target("POST", "/api/models/trainbox/j1"),
            Err(RouteError::MethodNotAllowed { allow: GET })
        );
        // A job called `resolve` keeps its own routes.
        assert!(matches!(
            route_target("DELETE", "/api/training/resolve/checkpoints/checkpoint-1")
                .unwrap()
                .route,
            Route::DeleteCheckpoint(..)
        ));
    }
}
