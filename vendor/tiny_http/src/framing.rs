//! trainbox patch 7: the request head parsed strictly (RFC 9112 §3, §5,
//! §6), as pure functions over bytes.
//!
//! When two HTTP implementations disagree on where a request ends, an
//! attacker can hide a second request inside the first's body (request
//! smuggling). The original accepted two different `Content-Length`s (the
//! first won), `Content-Length: +5`, `Content-Length` together with
//! `Transfer-Encoding`, and treated any `Transfer-Encoding` as chunked.
//! Here every ambiguous head is refused, and the caller closes the
//! connection, since where the next request would start is unknown.

use std::str::FromStr;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
pub use crate::util::chunked::{parse_chunk_size_line, ChunkedDecoder};

/// Why a request head was refused: the status to answer and a short
/// reason. The connection is closed after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> HeadError {
    HeadError {
        status: 400,
        reason,
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding, ending with a zero-size chunk.
    Chunked,
}

/// `tchar` of RFC 9110 §5.6.2: what a method or a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses `method SP request-target SP HTTP-version` (no CR or LF).
pub fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), HeadError> {
    const MALFORMED: HeadError = bad("malformed request line");
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(MALFORMED);
    }
    // Visible ASCII only: no controls, spaces or raw bytes above 0x7E.
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(bad("malformed request target"));
    }
    let version = match version {
        b"HTTP/1.1" => HTTPVersion(1, 1),
        b"HTTP/1.0" => HTTPVersion(1, 0),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HeadError {
                status: 505,
                reason: "only HTTP/1.0 and HTTP/1.1 are supported",
            })
        }
        _ => return Err(MALFORMED),
    };
    // Both are ASCII by the checks above.
    let method = Method::from_str(std::str::from_utf8(method).map_err(|_| MALFORMED)?)
        .map_err(|_| MALFORMED)?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| MALFORMED)?;
    Ok((method, target, version))
}

/// Parses `field-name ":" OWS field-value OWS` (no CR or LF). Refuses what
/// a lenient peer could read differently: whitespace before the colon, a
/// line starting with whitespace (obsolete folding), control characters
/// (a bare CR or LF among them) and bytes above 0x7E in the value.
pub fn parse_header_line(line: &[u8]) -> Result<Header, HeadError> {
    const MALFORMED: HeadError = bad("malformed header line");
    let colon = line.iter().position(|&b| b == b':').ok_or(MALFORMED)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(MALFORMED);
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let value = &value[start..end];
    if !value
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(MALFORMED);
    }
    Ok(Header {
        field: HeaderField::from_bytes(name.to_vec()).map_err(|_| MALFORMED)?,
        value: AsciiString::from_ascii(value.to_vec()).map_err(|_| MALFORMED)?,
    })
}

/// The elements of every `name` field, as the comma-separated list
/// syntax of RFC 9110 §5.6.1 (empty elements ignored).
fn list<'a>(headers: &'a [Header], name: &'static str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |h| h.field.equiv(name))
        .flat_map(|h| h.value.as_str().split(','))
        .map(|element| element.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|element| !element.is_empty())
}

/// True when a `name` field lists `token` (case-insensitively), as
/// `Connection: keep-alive, Upgrade` lists `upgrade`.
pub fn has_token(headers: &[Header], name: &'static str, token: &str) -> bool {
    list(headers, name).any(|element| element.eq_ignore_ascii_case(token))
}

/// How long the body of a request with these headers is (RFC 9112 §6.3).
pub fn body_length(version: &HTTPVersion, headers: &[Header]) -> Result<BodyLength, HeadError> {
    let has = |name: &'static str| headers.iter().any(|h| h.field.equiv(name));
    if has("Transfer-Encoding") {
        if *version < HTTPVersion(1, 1) {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if has("Content-Length") {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        let codings: Vec<&str> = list(headers, "Transfer-Encoding").collect();
        let Some((last, before)) = codings.split_last() else {
            return Err(bad("empty Transfer-Encoding"));
        };
        if !last.eq_ignore_ascii_case("chunked") {
            return Err(bad("the final transfer coding is not chunked"));
        }
        if before.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
            return Err(bad("chunked applied more than once"));
        }
        if !before.is_empty() {
            return Err(HeadError {
                status: 501,
                reason: "transfer codings other than chunked are not supported",
            });
        }
        return Ok(BodyLength::Chunked);
    }
    if !has("Content-Length") {
        return Ok(BodyLength::Empty);
    }
    // A list of identical values may be read as one (RFC 9112 §6.3, 5).
    let mut length = None;
    let mut elements = 0;
    for element in list(headers, "Content-Length") {
        elements += 1;
        let value = parse_decimal(element).ok_or(bad("malformed Content-Length"))?;
        if length.is_some_and(|known| known != value) {
            return Err(bad("differing Content-Length values"));
        }
        length = Some(value);
    }
    match length {
        Some(0) => Ok(BodyLength::Empty),
        Some(n) if elements > 0 => Ok(BodyLength::Length(n)),
        _ => Err(bad("malformed Content-Length")),
    }
}

/// `1*DIGIT` as a u64; `None` for signs, spaces, other bytes or overflow.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request names exactly one `Host`; an
/// HTTP/1.0 one at most one.
pub fn check_host(version: &HTTPVersion, headers: &[Header]) -> Result<(), HeadError> {
    match headers.iter().filter(|h| h.field.equiv("Host")).count() {
        0 if *version >= HTTPVersion(1, 1) => Err(bad("missing Host header")),
        0 | 1 => Ok(()),
        _ => Err(bad("more than one Host header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> Vec<Header> {
        lines
            .iter()
            .map(|l| parse_header_line(l.as_bytes()).unwrap())
            .collect()
    }

    fn length(lines: &[&str]) -> Result<BodyLength, u16> {
        body_length(&HTTPVersion(1, 1), &headers(lines)).map_err(|e| e.status)
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(length(&["Content-Length: 5"]), Ok(BodyLength::Length(5)));
        assert_eq!(length(&["Content-Length: 0"]), Ok(BodyLength::Empty));
        assert_eq!(length(&[]), Ok(BodyLength::Empty));
        assert_eq!(
            length(&["Content-Length: 5, 5", "Content-Length: 5"]),
            Ok(BodyLength::Length(5))
        );
        for bad in [
            "+5",
            "-5",
            "5 5",
            "0x5",
            "5.0",
            "",
            "18446744073709551616",
            " 5a",
        ] {
            assert_eq!(
                length(&[&format!("Content-Length: {bad}")]),
                Err(400),
                "{bad:?}"
            );
        }
        assert_eq!(
            length(&["Content-Length: 5", "Content-Length: 6"]),
            Err(400)
        );
        assert_eq!(length(&["Content-Length: 5, 6"]), Err(400));
    }

    #[test]
    fn transfer_encoding_must_end_in_chunked() {
        assert_eq!(
            length(&["Transfer-Encoding: chunked"]),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            length(&["Transfer-Encoding: CHUNKED"]),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            length(&["Transfer-Encoding: chunked, "]),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(length(&["Transfer-Encoding: gzip"]), Err(400));
        assert_eq!(length(&["Transfer-Encoding: chunked, gzip"]), Err(400));
        assert_eq!(
            length(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
            Err(400)
        );
        assert_eq!(length(&["Transfer-Encoding: gzip, chunked"]), Err(501));
        assert_eq!(
            length(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
            Err(400)
        );
        assert_eq!(length(&["Transfer-Encoding: ,"]), Err(400));
        let http10 = body_length(
            &HTTPVersion(1, 0),
            &headers(&["Transfer-Encoding: chunked"]),
        );
        assert_eq!(http10.map_err(|e| e.status), Err(400));
    }

    #[test]
    fn header_lines_that_peers_could_read_differently_are_refused() {
        let h = parse_header_line(b"X-Name:  a value\t").unwrap();
        assert_eq!(
            (h.field.as_str().as_str(), h.value.as_str()),
            ("X-Name", "a value")
        );
        assert!(parse_header_line(b"Empty:").unwrap().value.is_empty());
        for line in [
            &b"Content-Length : 5"[..],
            b" Content-Length: 5",
            b"\tfolded",
            b"X: a\rb",
            b"X: a\nContent-Length: 5",
            b"X: a\0",
            b"X: caf\xc3\xa9",
            b"no colon",
            b": no name",
            b"Bad(Name): x",
        ] {
            assert!(
                parse_header_line(line).is_err(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn request_lines() {
        let (method, target, version) = parse_request_line(b"GET /a?b=c HTTP/1.1").unwrap();
        assert_eq!(
            (method, target.as_str(), version),
            (Method::Get, "/a?b=c", HTTPVersion(1, 1))
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/2.0").unwrap_err().status,
            505
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/0.9").unwrap_err().status,
            505
        );
        for line in [
            &b"GET /hello"[..],
            b"GET  / HTTP/1.1",
            b"GET / HTTP/1.1 ",
            b"GET /a b HTTP/1.1",
            b"G(T / HTTP/1.1",
            b"GET /\x01 HTTP/1.1",
            b"GET /\xff HTTP/1.1",
            b"GET / HTTP/1.10",
            b"GET / http/1.1",
        ] {
            assert_eq!(
                parse_request_line(line).unwrap_err().status,
                400,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn host_is_required_once() {
        let v11 = HTTPVersion(1, 1);
        assert!(check_host(&v11, &headers(&["Host: a"])).is_ok());
        assert!(check_host(&v11, &headers(&[])).is_err());
        assert!(check_host(&v11, &headers(&["Host: a", "Host: b"])).is_err());
        assert!(check_host(&HTTPVersion(1, 0), &headers(&[])).is_ok());
    }
}
