//! The strict chunked-body decoder of the patched tiny_http: never panics,
//! never reads past the end of the body, and a body it accepts decodes the
//! same after being chunked again.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use tiny_http::framing::ChunkedDecoder;

fuzz_target!(|data: &[u8]| {
    let mut source = data;
    let mut decoder = ChunkedDecoder::new(&mut source);
    let mut body = Vec::new();
    let result = decoder.read_to_end(&mut body);
    let done = decoder.is_done();
    assert!(body.len() <= data.len());
    if result.is_err() {
        assert!(!done);
        return;
    }
    assert!(done, "end of body only after the last chunk and trailers");
    // Nothing after the terminating CRLF was consumed.
    let consumed = data.len() - source.len();
    assert!(data[..consumed].ends_with(b"\r\n"));
    // The body, chunked again in pieces of 7, decodes to itself.
    let mut again = Vec::new();
    for piece in body.chunks(7) {
        again.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        again.extend_from_slice(piece);
        again.extend_from_slice(b"\r\n");
    }
    again.extend_from_slice(b"0\r\n\r\n");
    let mut decoded = Vec::new();
    ChunkedDecoder::new(&again[..]).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, body);
});
