//! The request-head parsers of the patched tiny_http (request line, header
//! lines, body length, Host): never panic, and what they accept is what a
//! strict peer would read the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiny_http::HTTPVersion;
use tiny_http::framing::{self, BodyLength};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(request_line) = lines.next() else { return };
    let version = match framing::parse_request_line(request_line) {
        Ok((_, target, version)) => {
            assert!(!target.is_empty() && target.bytes().all(|b| b.is_ascii_graphic()));
            version
        }
        Err(e) => {
            assert!([400, 505].contains(&e.status));
            HTTPVersion(1, 1)
        }
    };
    let mut headers = Vec::new();
    for line in lines {
        if let Ok(header) = framing::parse_header_line(line) {
            let name = header.field.as_str().as_str();
            let value = header.value.as_str();
            assert!(!name.is_empty() && !name.contains([':', ' ', '\t']));
            assert!(!value.contains(['\r', '\n', '\0']));
            assert_eq!(value, value.trim_matches([' ', '\t']));
            headers.push(header);
        }
    }
    let _ = framing::check_host(&version, &headers);
    let has = |name: &'static str| headers.iter().any(|h| h.field.equiv(name));
    match framing::body_length(&version, &headers) {
        Ok(BodyLength::Chunked) => assert!(has("Transfer-Encoding") && !has("Content-Length")),
        Ok(BodyLength::Length(n)) => {
            assert!(n > 0 && has("Content-Length") && !has("Transfer-Encoding"));
            // Every listed value is exactly `n`.
            for h in headers.iter().filter(|h| h.field.equiv("Content-Length")) {
                for element in h.value.as_str().split(',').map(|e| e.trim_matches([' ', '\t'])) {
                    assert!(element.is_empty() || element.parse::<u64>() == Ok(n));
                }
            }
        }
        Ok(BodyLength::Empty) => assert!(!has("Transfer-Encoding")),
        Err(e) => assert!([400, 501].contains(&e.status)),
    }
});
