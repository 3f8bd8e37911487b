//! The Range header parser: accepted ranges lie within the body and are
//! not empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::http::range::{parse_range, RangeRequest};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    let Ok(header) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    if let RangeRequest::Partial { start, end } = parse_range(header, len) {
        assert!(start < end, "not empty");
        assert!(end <= len, "within the body");
    }
});
