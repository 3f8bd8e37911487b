//! Signing in from a browser: the login form, sessions opened for a valid
//! token (rate-limited per address), and signing out.

use std::time::Instant;

use super::{Reply, page};
use crate::access::session;
use crate::app::App;
use crate::http::auth;
use crate::http::error::{ApiError, Context};
use crate::http::headers::form_field;
use crate::http::request::HttpRequest;

/// The login form carries one token: a larger body is no login.
const LOGIN_BODY_MAX: usize = 1024;

/// The login form, for a browser that has no (valid) session yet.
pub fn login_page(failed: bool) -> Reply {
    page(
        401,
        &crate::ui::login_html(failed),
        vec![("WWW-Authenticate", "Bearer".to_owned())],
    )
}

fn see_other(location: &str, mut headers: Vec<(&'static str, String)>) -> Reply {
    headers.push(("Location", location.to_owned()));
    Reply::Page {
        status: 303,
        content_type: "text/plain; charset=utf-8",
        body: Vec::new(),
        headers,
    }
}

/// The `Set-Cookie` value carrying a session id: HttpOnly (no script reads
/// it), SameSite=Strict (no other site sends it), for the session's
/// lifetime; `None` clears it.
fn session_cookie(id: Option<&str>) -> String {
    let (value, age) = match id {
        Some(id) => (id, session::LIFETIME.as_secs()),
        None => ("", 0),
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}",
        session::COOKIE
    )
}

/// `POST /login`: a form (`token=...`); a valid token opens a session, whose
/// id becomes the cookie, and the browser goes to the page; anything else
/// gets the form again. At most `ratelimit::ATTEMPTS` a minute per address.
pub fn login(app: &App, request: &HttpRequest) -> Result<Reply, ApiError> {
    if let Some(client) = request.peer {
        if let Err(wait) = app.access.logins.attempt(client.ip(), Instant::now()) {
            return Err(ApiError::TooManyRequests {
                detail: "Too many login attempts; try again later",
                retry_after: wait.as_secs().max(1),
            });
        }
    }
    let body = request.body(LOGIN_BODY_MAX)?;
    let Some(tokens) = app.access.tokens.as_ref() else {
        return Ok(see_other("/", Vec::new()));
    };
    let token = form_field(body, "token").unwrap_or_default();
    match tokens.identify(token.as_bytes()) {
        Some((role, label)) => {
            let id = app
                .access
                .sessions
                .open(role, label)
                .context("opening a session")?;
            Ok(see_other(
                "/",
                vec![("Set-Cookie", session_cookie(Some(&id)))],
            ))
        }
        None => Ok(login_page(true)),
    }
}

/// `POST /logout`: the session ends here, not only in the browser.
pub fn logout(app: &App, request: &HttpRequest) -> Reply {
    for cookies in request.header_all("Cookie") {
        if let Some(id) = auth::cookie(cookies, session::COOKIE) {
            app.access.sessions.close(id);
        }
    }
    see_other("/", vec![("Set-Cookie", session_cookie(None))])
}
