//! The header values handlers act on: conditional download headers, the
//! login form, the WebSocket handshake and the credentials a request
//! presents. Any bytes: an answer or nothing, never a panic, and what is
//! found is really in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::http::auth::{cookie, presented};
use trainbox::http::headers::{form_field, none_match, range_allowed, websocket_key};
use trainbox::http::percent::{encode, form_decode};

const ETAG: &str = "\"3f2a-1c\"";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Each line "Name: value" is a header.
    let headers: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();

    if let Some(key) = websocket_key(&headers) {
        assert_eq!(key.len(), 24);
        assert!(headers.iter().any(|(_, v)| v.contains(key)));
    }
    for (_, value) in &headers {
        if none_match(value, ETAG) {
            assert!(value.contains(ETAG) || value.contains('*'));
        }
        if range_allowed(Some(value), ETAG) {
            assert_eq!(value.trim(), ETAG);
        }
        if let Some(found) = cookie(value, "trainbox_session") {
            assert!(value.contains(found));
        }
    }
    let who = presented(headers.iter().copied());
    if let Some(bearer) = who.bearer {
        assert!(headers.iter().any(|(_, v)| v.contains(bearer)));
    }

    // The whole input as a login form body.
    if let Some(token) = form_field(data, "token") {
        assert_eq!(form_decode(encode(&token).as_bytes()), Some(token));
    }
});
