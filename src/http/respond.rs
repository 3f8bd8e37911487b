//! Writing responses: small ones through tiny_http, and the status line and
//! headers of streamed ones straight onto the connection.
//!
//! Downloads bypass tiny_http's `Response` for speed: its copy loop moves
//! 8 KiB at a time, while writing 1 MiB blocks to the raw writer runs at
//! the socket's speed. The cost is that we write the head ourselves, so it
//! lives here, next to the small-response path, with the same headers.

use std::io::{self, Write};
use std::time::SystemTime;

use tiny_http::{Header, Request, Response};

use super::error::ApiError;

/// How the length of a streamed body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The Content-Security-Policy of the web page: its own script, style and
/// requests, nothing inline, no frames around it, forms only to itself.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";
/// The policy of everything else (JSON, archives, event streams): a browser
/// that opens one directly runs and embeds nothing from it.
pub const INERT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// What every response tells a browser, whatever it holds: never guess a
/// type other than the one declared, never tell another site the address
/// the user came from, and the content policy for `content_type`.
///
/// Pages say `Referrer-Policy: same-origin` rather than `no-referrer`:
/// under `no-referrer` a browser sends `Origin: null` with the page's own
/// form posts (Fetch, "append a request Origin header"), which
/// `http::guard` cannot tell from a sandboxed frame on another site.
/// `same-origin` still sends no referrer to any other site.
pub fn browser_headers(content_type: &str) -> [(&'static str, &'static str); 3] {
    let (referrer, policy) = if content_type.starts_with("text/html") {
        ("same-origin", PAGE_POLICY)
    } else {
        ("no-referrer", INERT_POLICY)
    };
    [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", referrer),
        ("Content-Security-Policy", policy),
    ]
}

/// Writes a status line and headers; returns the number of bytes written.
pub fn write_head(
    out: &mut dyn Write,
    status: u16,
    headers: &[(&str, String)],
    framing: Option<Framing>,
) -> io::Result<u64> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: trainbox\r\nDate: {}\r\n",
        reason(status),
        httpdate::fmt_http_date(SystemTime::now())
    );
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Content-Type"))
        .map_or("", |(_, value)| value.as_str());
    for (name, value) in browser_headers(content_type) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match framing {
        Some(Framing::Length(n)) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Some(Framing::Chunked) => head.push_str("Transfer-Encoding: chunked\r\n"),
        None => {}
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    Ok(head.len() as u64)
}

pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and ASCII values")
}

/// Sends a small body with tiny_http; returns the body length for the log.
pub fn send(
    request: Request,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: impl AsRef<[u8]>,
) -> u64 {
    let len = body.as_ref().len();
    // A length for every small body, however long (tiny_http would switch
    // to chunked above 32 KiB).
    let mut response = Response::new(
        status.into(),
        vec![header("Content-Type", content_type)],
        io::Cursor::new(body),
        Some(len),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    for (name, value) in browser_headers(content_type) {
        response.add_header(header(name, value));
    }
    // Answers about jobs change from one moment to the next, and carry
    // what a shared machine's browser cache should not keep.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("Cache-Control"))
    {
        response.add_header(header("Cache-Control", "no-store"));
    }
    for (name, value) in headers {
        response.add_header(header(name, value));
    }
    if let Err(e) = request.respond(response) {
        log::debug!("response not delivered: {e}");
    }
    len as u64
}

pub fn send_json(request: Request, status: u16, body: &serde_json::Value) -> u64 {
    send(
        request,
        status,
        "application/json",
        &[],
        body.to_string().into_bytes(),
    )
}

pub fn send_error(request: Request, error: &ApiError) -> u64 {
    let mut headers = error.headers();
    if *error == ApiError::PayloadTooLarge {
        headers.push(("Connection", "close".to_owned()));
    }
    send(
        request,
        error.status(),
        "application/json",
        &headers,
        error.body().into_bytes(),
    )
}

/// Writes each `write` as one HTTP/1.1 chunk; `finish` writes the last chunk.
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(inner: W) -> ChunkedWriter<W> {
        ChunkedWriter { inner }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_framing() {
        let mut w = ChunkedWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        w.write_all(b"").unwrap();
        w.write_all(&[b'x'; 17]).unwrap();
        let out = w.finish().unwrap();
        let expected = [&b"5\r\nhello\r\n11\r\n"[..], &[b'x'; 17], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn heads_carry_the_framing() {
        let mut out = Vec::new();
        let n = write_head(
            &mut out,
            206,
            &[("ETag", "\"x\"".into())],
            Some(Framing::Length(5)),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n as usize, text.len());
        assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"));
        assert!(text.contains("\r\nETag: \"x\"\r\n"));
        assert!(text.ends_with("Content-Length: 5\r\n\r\n"));
    }
}
