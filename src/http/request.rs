//! A request as the handlers see it: a plain value read once from the
//! connection (method, target, headers, body, peer), so a handler is a
//! function of values and can be tested without a socket.

use std::io::Read;
use std::net::SocketAddr;

use super::error::ApiError;

/// One request, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body, for the routes that take one (see
    /// [`HttpRequest::read_body`]); empty otherwise.
    pub body: Vec<u8>,
    /// The request declares a body: a `Content-Length` above zero, or
    /// `Transfer-Encoding`.
    pub declares_body: bool,
    pub peer: Option<SocketAddr>,
    /// An HTTP/1.0 request (no chunked responses).
    pub http10: bool,
    /// Who asked: the label of the token presented (or of the session's),
    /// once access was checked; `None` without access control.
    pub who: Option<String>,
}

impl HttpRequest {
    /// A request value for tests and probes.
    pub fn new(method: &str, target: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            ..HttpRequest::default()
        }
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (builder style, for tests).
    pub fn with_body(mut self, body: &[u8]) -> HttpRequest {
        self.body = body.to_vec();
        self.declares_body = !body.is_empty();
        self
    }

    /// Reads `request`'s head; the body is read by [`HttpRequest::read_body`].
    pub fn head(request: &tiny_http::Request) -> HttpRequest {
        HttpRequest {
            method: request.method().as_str().to_owned(),
            target: request.url().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    let name = h.field.as_str().as_str().to_owned();
                    (name, h.value.as_str().to_owned())
                })
                .collect(),
            body: Vec::new(),
            declares_body: request.body_length().is_some_and(|n| n > 0)
                || request
                    .headers()
                    .iter()
                    .any(|h| h.field.equiv("Transfer-Encoding")),
            peer: request.remote_addr().copied(),
            http10: request.http_version() == &tiny_http::HTTPVersion(1, 0),
            who: None,
        }
    }

    /// Reads `request`'s body when it is at most `body_max` bytes (tiny_http
    /// has buffered such bodies already, so this never waits on the
    /// client: its patch 8). A larger declared body is refused unread.
    /// Only for routes that take a body: an upgrade request's "body" is
    /// the connection itself.
    pub fn read_body(
        &mut self,
        request: &mut tiny_http::Request,
        body_max: usize,
    ) -> Result<(), ApiError> {
        if request.body_length().is_some_and(|n| n > body_max) {
            return Err(ApiError::PayloadTooLarge);
        }
        request
            .as_reader()
            .take(body_max as u64 + 1)
            .read_to_end(&mut self.body)
            .map_err(|_| ApiError::BadRequest("The request body could not be read".into()))?;
        if self.body.len() > body_max {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(())
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The headers as borrowed pairs, for `http::headers`.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// The body as at most `max` bytes: 413 beyond.
    pub fn body(&self, max: usize) -> Result<&[u8], ApiError> {
        if self.body.len() > max {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(&self.body)
    }
}
