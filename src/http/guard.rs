//! What a browser may send: the checks that keep other web pages from
//! driving the box, in every mode (with or without tokens).
//!
//! A page on another site can make a victim's browser send requests here:
//! a "simple" cross-site POST (`text/plain`, no preflight), a WebSocket or
//! an EventSource, and, through DNS rebinding (a name of the attacker's
//! that resolves to this box), even same-origin reads. So, before routing
//! reaches a handler:
//!
//! - `Host` must name this server: an IP address (rebinding needs a name),
//!   `localhost`, this machine's host name, or a name given with
//!   `--allowed-host`; else 421.
//! - a state-changing request (POST, PUT, PATCH, DELETE) and a live stream
//!   (WebSocket, SSE) that carry an `Origin` (browsers always send one on
//!   these) must come from this server's own origin: `http://` plus the
//!   `Host` it asked for, or an origin given with `--allowed-origin` (a TLS
//!   proxy in front); else 403. `Origin: null` is never ours.
//! - a request with a body must say `Content-Type: application/json` (the
//!   login form: `application/x-www-form-urlencoded`); else 415. A cross-site
//!   form cannot send JSON without a preflight, which this server never
//!   answers.
//!
//! Pure: the caller passes the request's method, route and headers.

use super::error::ApiError;
use super::router::Route;
pub use crate::access::BrowserPolicy;

/// The parts of a request the guard looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub route: &'a Route,
    /// `Host` (tiny_http refuses a request with more than one).
    pub host: Option<&'a str>,
    /// Every `Origin` header.
    pub origins: &'a [&'a str],
    pub content_type: Option<&'a str>,
    /// The request declares a body (`Content-Length` > 0, or chunked).
    pub has_body: bool,
}

impl BrowserPolicy {
    /// Checks a request; the error is what to answer.
    pub fn check(&self, request: &Request<'_>) -> Result<(), ApiError> {
        let host = request.host.unwrap_or("");
        if request.host.is_some() && !self.host_allowed(host) {
            return Err(ApiError::MisdirectedRequest);
        }
        let origin = match request.origins {
            [] => None,
            [one] => Some(one.trim()),
            _ => return Err(ApiError::BadRequest("More than one Origin header".into())),
        };
        let state_changing = matches!(request.method, "POST" | "PUT" | "PATCH" | "DELETE");
        let live = matches!(request.route, Route::WebSocket(_) | Route::Events(_));
        if let Some(origin) = origin.filter(|_| state_changing || live) {
            if !self.origin_allowed(origin, host) {
                return Err(ApiError::CrossOrigin);
            }
        }
        if request.has_body {
            let wanted = if *request.route == Route::Login {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            if media_type(request.content_type) != Some(wanted) {
                return Err(ApiError::UnsupportedMediaType(wanted));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
    }

    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = normal_origin(origin);
        origin != "null"
            && (origin == normal_origin(&format!("http://{}", host.trim()))
                || self
                    .origins
                    .iter()
                    .any(|allowed| normal_origin(allowed) == origin))
    }
}

/// An origin in lower case without its scheme's default port, so that
/// `http://box` and `http://box:80` compare equal.
fn normal_origin(origin: &str) -> String {
    let origin = origin.trim().to_ascii_lowercase();
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    match origin.strip_suffix(default_port) {
        Some(bare) => bare.to_owned(),
        None => origin,
    }
}

/// The host part of a `Host` value: `name`, `1.2.3.4` or `::1` (brackets
/// removed), without the port.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or("", |(address, _)| address);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `type/subtype` of a `Content-Type`, lower case, parameters dropped.
fn media_type(value: Option<&str>) -> Option<&'static str> {
    let value = value?.split(';').next()?.trim().to_ascii_lowercase();
    ["application/json", "application/x-www-form-urlencoded"]
        .into_iter()
        .find(|known| *known == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::Paging;
    use crate::names::JobId;

    fn request<'a>(
        method: &'a str,
        route: &'a Route,
        host: &'a str,
        origins: &'a [&'a str],
    ) -> Request<'a> {
        Request {
            method,
            route,
            host: Some(host),
            origins,
            content_type: None,
            has_body: false,
        }
    }

    fn policy() -> BrowserPolicy {
        BrowserPolicy {
            hosts: vec!["trainbox-box".into()],
            origins: vec!["https://train.example.org".into()],
        }
    }

    #[test]
    fn hosts_must_name_this_server() {
        let list = Route::ListJobs(Paging::default());
        for host in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "10.1.2.3",
            "trainbox-box:8000",
        ] {
            assert_eq!(
                policy().check(&request("GET", &list, host, &[])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8000",
            "evil.example",
            "localhost.evil.example",
            "",
            "[::1",
        ] {
            assert_eq!(
                policy().check(&request("GET", &list, host, &[])),
                Err(ApiError::MisdirectedRequest),
                "{host:?}"
            );
        }
    }

    #[test]
    fn state_changes_and_streams_come_from_our_own_origin() {
        let job = JobId::parse("j1").unwrap();
        let start = Route::StartJob;
        let socket = Route::WebSocket(job);
        let ok = |method, route, origin: &'static str| {
            policy().check(&request(method, route, "127.0.0.1:8000", &[origin]))
        };
        assert_eq!(ok("POST", &start, "http://127.0.0.1:8000"), Ok(()));
        assert_eq!(ok("POST", &start, "https://train.example.org"), Ok(()));
        for origin in [
            "https://evil.example",
            "https://127.0.0.1:8000",
            "http://127.0.0.1:8001",
            "null",
        ] {
            assert_eq!(
                ok("POST", &start, origin),
                Err(ApiError::CrossOrigin),
                "{origin}"
            );
            assert_eq!(
                ok("GET", &socket, origin),
                Err(ApiError::CrossOrigin),
                "{origin}"
            );
        }
        // Plain reads may be linked from anywhere; curl sends no Origin.
        assert_eq!(
            ok(
                "GET",
                &Route::ListJobs(Paging::default()),
                "https://evil.example"
            ),
            Ok(())
        );
        assert_eq!(
            policy().check(&request("POST", &start, "127.0.0.1:8000", &[])),
            Ok(())
        );
        // The default port may be written or not.
        let named = BrowserPolicy {
            hosts: vec!["box.local".into()],
            ..BrowserPolicy::default()
        };
        assert_eq!(
            named.check(&request(
                "POST",
                &start,
                "box.local",
                &["http://box.local:80"]
            )),
            Ok(())
        );
        assert_eq!(
            named.check(&request(
                "POST",
                &start,
                "box.local:80",
                &["http://box.local"]
            )),
            Ok(())
        );
        let two = ["http://127.0.0.1:8000", "http://127.0.0.1:8000"];
        assert!(matches!(
            policy().check(&request("POST", &start, "127.0.0.1:8000", &two)),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn bodies_must_be_json_or_the_login_form() {
        let check = |route: &Route, content_type: Option<&str>| {
            policy().check(&Request {
                method: "POST",
                route,
                host: Some("localhost"),
                origins: &[],
                content_type,
                has_body: true,
            })
        };
        assert_eq!(
            check(&Route::StartJob, Some("application/json; charset=utf-8")),
            Ok(())
        );
        assert_eq!(
            check(&Route::StartJob, Some("text/plain")),
            Err(ApiError::UnsupportedMediaType("application/json"))
        );
        assert!(check(&Route::StartJob, None).is_err());
        assert_eq!(
            check(&Route::Login, Some("application/x-www-form-urlencoded")),
            Ok(())
        );
        assert!(check(&Route::Login, Some("application/json")).is_err());
    }
}
