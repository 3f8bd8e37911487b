//! Authorization: the role each route needs, and the credentials a request
//! presents, checked before any handler runs (the tokens, sessions and
//! roles themselves are `access`'s).
//!
//! Tokens come from `--token-file` (one a line, `read:` or `control:` in
//! front; systemd's `LoadCredential=` puts the file in
//! `$CREDENTIALS_DIRECTORY`). A request presents one as
//! `Authorization: Bearer <token>`; a browser presents the session cookie
//! that `POST /login` sets in exchange for a token (`access::session`: the
//! token itself never lives in a cookie). Tokens never travel in URLs,
//! where logs, history and Referer headers would keep them. Presented
//! tokens are compared with every configured one in constant time. Which
//! origins may send what is `http::guard`'s business, in every mode.
//!
//! `read` may list, read status, progress, checkpoints and metrics, and
//! download; `control` may also start, pause, resume and cancel. Only
//! `/healthz` is open (and the login form, which answers 401 unless it is
//! given a valid token).

use super::error::ApiError;
use super::router::Route;
use crate::access::session::{self, Sessions};
use crate::access::tokens::{Role, Tokens};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone (`/healthz`, the login form).
    Nothing,
    Role(Role),
}

/// The access a route needs: a pure function of the route.
pub fn need(route: &Route) -> Need {
    match route {
        // The login form checks the token it is given itself.
        Route::Health | Route::Login | Route::Asset(_) => Need::Nothing,
        // Who downloaded what is for those who run the box.
        Route::StartJob
        | Route::Control(..)
        | Route::DeleteJob(_)
        | Route::DeleteCheckpoint(..)
        | Route::Downloads(_) => Need::Role(Role::Control),
        Route::Index
        | Route::Logout
        | Route::Metrics
        | Route::OpenApi
        | Route::ListJobs(_)
        | Route::Recipes
        | Route::Compare(_)
        | Route::Disk
        | Route::Job(_)
        | Route::Checkpoints(_)
        | Route::Progress(_)
        | Route::History(_)
        | Route::Resources(_)
        | Route::Events(_)
        | Route::WebSocket(_)
        | Route::DownloadModel { .. }
        | Route::DownloadLogs(_)
        | Route::Files { .. }
        | Route::HubRepo { .. }
        | Route::HubTree { .. }
        | Route::HubResolve { .. }
        | Route::HubRefs(_) => Need::Role(Role::Read),
    }
}

/// The credentials a request carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// From `Authorization: Bearer ...`.
    pub bearer: Option<&'a str>,
    /// From the session cookie.
    pub session: Option<&'a str>,
}

/// Reads the credentials from the request headers (pure).
pub fn presented<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Presented<'a> {
    let mut out = Presented::default();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            // `get`, not slicing: a value need not be ASCII here (the fuzz
            // target found `Bearer\u{df}...`), and byte 7 may split a char.
            let value = value.trim();
            let scheme = value.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer "));
            if let (Some(_), Some(token)) = (scheme, value.get(7..)) {
                out.bearer = Some(token.trim()).filter(|t| !t.is_empty());
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            out.session = out.session.or_else(|| cookie(value, session::COOKIE));
        }
    }
    out
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Decides whether a request may reach `route`. `tokens` is `None` when
/// the server runs without access control.
pub fn check(
    tokens: Option<&Tokens>,
    sessions: &Sessions,
    route: &Route,
    presented: &Presented<'_>,
) -> Result<(), ApiError> {
    let (Some(tokens), Need::Role(needed)) = (tokens, need(route)) else {
        return Ok(());
    };
    // A header wins over the cookie.
    let role = match (presented.bearer, presented.session) {
        (Some(token), _) => tokens.role_of(token.as_bytes()),
        (None, Some(id)) => sessions.role_of(id),
        (None, None) => None,
    };
    match role {
        None => Err(ApiError::Unauthorized),
        Some(role) if role < needed => Err(ApiError::Forbidden),
        Some(_) => Ok(()),
    }
}

/// The label of whoever `presented` credentials (a header wins over the
/// cookie, as in [`check`]); `None` without tokens or without credentials.
pub fn who(
    tokens: Option<&Tokens>,
    sessions: &Sessions,
    presented: &Presented<'_>,
) -> Option<String> {
    let tokens = tokens?;
    match (presented.bearer, presented.session) {
        (Some(token), _) => tokens.identify(token.as_bytes()).map(|(_, l)| l.to_owned()),
        (None, Some(id)) => sessions.identify(id).map(|(_, label)| label),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::Paging;
    use crate::names::JobId;

    const FILE: &str =
        "# tokens\nread:reader-token-0123456789\n\ncontrol:controller-token-0123456789\n";

    fn tokens() -> Tokens {
        Tokens::parse(FILE).unwrap()
    }

    fn bearer(token: &str) -> Presented<'_> {
        Presented {
            bearer: Some(token),
            ..Presented::default()
        }
    }

    #[test]
    fn roles_by_route() {
        let t = tokens();
        let none = Sessions::default();
        let job = JobId::parse("j1").unwrap();
        let pause = Route::Control(job.clone(), super::super::router::Action::Pause);
        let list = Route::ListJobs(Paging::default());
        let check =
            |route, presented: &Presented<'_>| super::check(Some(&t), &none, route, presented);
        assert_eq!(check(&Route::Health, &Presented::default()), Ok(()));
        assert_eq!(
            check(&list, &Presented::default()),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            check(&list, &bearer("wrong-token-000000000")),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(check(&list, &bearer("reader-token-0123456789")), Ok(()));
        assert_eq!(
            check(&pause, &bearer("reader-token-0123456789")),
            Err(ApiError::Forbidden)
        );
        assert_eq!(
            check(&pause, &bearer("controller-token-0123456789")),
            Ok(())
        );
        assert_eq!(
            super::check(None, &none, &pause, &Presented::default()),
            Ok(()),
            "no tokens: open"
        );
    }

    #[test]
    fn headers_sessions_and_cookies() {
        let headers = [
            ("Authorization", "Bearer abc"),
            ("Cookie", "a=1; trainbox_session=xyz; b=2"),
        ];
        let p = presented(headers.iter().copied());
        assert_eq!((p.bearer, p.session), (Some("abc"), Some("xyz")));
        // Found by the `headers` fuzz target: a multi-byte char at byte 7.
        let odd = [
            ("Authorization", "Bearer\u{df}abc"),
            ("Authorization", "Bearer  "),
        ];
        assert_eq!(presented(odd.iter().copied()).bearer, None);
        let t = tokens();
        let sessions = Sessions::default();
        let id = sessions.open(Role::Read, "r").unwrap();
        let pause = Route::Control(
            JobId::parse("j1").unwrap(),
            super::super::router::Action::Pause,
        );
        let by_session = Presented {
            session: Some(&id),
            ..Presented::default()
        };
        assert_eq!(
            check(
                Some(&t),
                &sessions,
                &Route::ListJobs(Paging::default()),
                &by_session
            ),
            Ok(())
        );
        assert_eq!(
            check(Some(&t), &sessions, &pause, &by_session),
            Err(ApiError::Forbidden)
        );
        // A token in the cookie is no session.
        let token_cookie = Presented {
            session: Some("controller-token-0123456789"),
            ..Presented::default()
        };
        assert_eq!(
            check(Some(&t), &sessions, &pause, &token_cookie),
            Err(ApiError::Unauthorized)
        );
        sessions.close(&id);
        assert_eq!(
            check(
                Some(&t),
                &sessions,
                &Route::ListJobs(Paging::default()),
                &by_session
            ),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            cookie("x=1; trainbox_session=abc", "trainbox_session"),
            Some("abc")
        );
        assert_eq!(cookie("x=1", "trainbox_session"), None);
    }
}
