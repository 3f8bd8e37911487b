//! Request header values the handlers act on, parsed by pure functions
//! (fuzzed in `fuzz/fuzz_targets/headers.rs`): the conditional headers of
//! downloads, the login form's field, the WebSocket handshake.

use super::percent::form_decode;

/// A request's headers as (name, value) pairs.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// The first value of header `name` (names compare case-insensitively).
pub fn get<'a>(headers: Headers<'a>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// `If-None-Match: "a", W/"b"` or `*` names `etag` (compared weakly, as
/// RFC 9110 §13.1.2 says for this header).
pub fn none_match(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5):
/// only when it names exactly the current strong `etag`. A date, a weak or
/// another tag means the client's partial copy is of another archive, and
/// the whole one is sent instead.
pub fn range_allowed(if_range: Option<&str>, etag: &str) -> bool {
    match if_range {
        None => true,
        Some(value) => value.trim() == etag && !etag.starts_with("W/"),
    }
}

/// One field of an `application/x-www-form-urlencoded` body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (key == name.as_bytes())
            .then(|| form_decode(value))
            .flatten()
    })
}

/// The `Sec-WebSocket-Key` of a well-formed version-13 WebSocket handshake
/// (`Upgrade: websocket`, `Connection` listing `upgrade`), or `None`.
pub fn websocket_key<'a>(headers: Headers<'a>) -> Option<&'a str> {
    let upgrade =
        get(headers, "Upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let connection = get(headers, "Connection").is_some_and(|v| {
        v.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    });
    let version = get(headers, "Sec-WebSocket-Version").is_some_and(|v| v.trim() == "13");
    let key = get(headers, "Sec-WebSocket-Key")?.trim();
    // 16 random bytes in base64: 24 characters.
    let shaped = key.len() == 24
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (upgrade && connection && version && shaped).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_headers() {
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"a\"", "\"b\""));
        assert!(range_allowed(None, "\"x\""));
        assert!(range_allowed(Some(" \"x\" "), "\"x\""));
        assert!(!range_allowed(Some("\"y\""), "\"x\""));
        assert!(!range_allowed(
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
            "\"x\""
        ));
    }

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field(b"a=1&token=ab%2Bc+d&x", "token").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field(b"token", "token").as_deref(), Some(""));
        assert_eq!(form_field(b"tokens=1", "token"), None);
        assert_eq!(form_field(b"token=%zz", "token"), None);
    }

    #[test]
    fn websocket_handshakes() {
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(websocket_key(&good), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        for broken in 0..good.len() {
            let mut headers = good.to_vec();
            headers[broken].1 = "x";
            assert_eq!(websocket_key(&headers), None, "{:?}", headers[broken]);
        }
        let mut upgrades = good.to_vec();
        upgrades[1].1 = "upgrades";
        assert_eq!(websocket_key(&upgrades), None, "a token, not a substring");
    }
}
