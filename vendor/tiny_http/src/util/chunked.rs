//! trainbox patch 7: a strict, bounded decoder of the chunked transfer
//! coding (RFC 9112 §7.1).
//!
//! The `chunked_transfer` decoder the original used accepted a size of
//! `+5` or ` 5 `, read size lines and extensions without bound, returned
//! end-of-body when the connection closed in the middle of a chunk (a
//! truncated body looked complete) and refused trailer fields. This one
//! accepts exactly `1*HEXDIG [ext] CRLF data CRLF ... 0 [ext] CRLF
//! *(field-line CRLF) CRLF`, with every line bounded, and fails for good on
//! the first error: the caller must then close the connection.

use std::convert::TryFrom;
use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

/// The longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4096;
/// The most bytes of trailer fields.
const MAX_TRAILERS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data: a CRLF must follow.
    DataEnd,
    /// After the last chunk, reading trailer fields; bytes of them so far.
    Trailers(usize),
    /// The body ended properly.
    Done,
    /// The body was malformed or cut short; nothing more is read.
    Failed,
}

/// Decodes a chunked body from `source`, reading nothing past its end.
pub struct ChunkedDecoder<R> {
    source: R,
    state: State,
}

fn invalid(what: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, what)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(source: R) -> ChunkedDecoder<R> {
        ChunkedDecoder {
            source,
            state: State::Size,
        }
    }

    /// True once the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn byte(&mut self) -> IoResult<u8> {
        let mut byte = [0u8];
        loop {
            match self.source.read(&mut byte) {
                Ok(0) => {
                    return Err(IoError::new(
                        ErrorKind::UnexpectedEof,
                        "chunked body cut short",
                    ))
                }
                Ok(_) => return Ok(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A line ending in CRLF, without it; a bare CR or LF is an error.
    fn line(&mut self, max: usize) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' if self.byte()? == b'\n' => return Ok(line),
                b'\r' | b'\n' => return Err(invalid("bare CR or LF in chunked framing")),
                byte if line.len() < max => line.push(byte),
                _ => return Err(invalid("chunked framing line too long")),
            }
        }
    }

    fn step(&mut self, buf: &mut [u8]) -> IoResult<Option<usize>> {
        match self.state {
            State::Size => {
                let line = self.line(MAX_SIZE_LINE)?;
                let size = parse_chunk_size_line(&line)?;
                self.state = if size == 0 {
                    State::Trailers(0)
                } else {
                    State::Data(size)
                };
                Ok(None)
            }
            State::Data(left) => {
                if buf.is_empty() {
                    return Ok(Some(0));
                }
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.source.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(IoError::new(
                        ErrorKind::UnexpectedEof,
                        "chunked body cut short",
                    ));
                }
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                Ok(Some(n))
            }
            State::DataEnd => {
                if self.byte()? != b'\r' || self.byte()? != b'\n' {
                    return Err(invalid("chunk data longer than its size"));
                }
                self.state = State::Size;
                Ok(None)
            }
            State::Trailers(seen) => {
                let line = self.line(MAX_TRAILERS - seen)?;
                if line.is_empty() {
                    self.state = State::Done;
                    return Ok(Some(0));
                }
                // Trailer fields are read and dropped; they must still be fields.
                crate::framing::parse_header_line(&line).map_err(|e| invalid(e.reason))?;
                self.state = State::Trailers(seen + line.len() + 2);
                Ok(None)
            }
            State::Done => Ok(Some(0)),
            State::Failed => Err(invalid("malformed chunked body")),
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.step(buf) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => continue,
                // A timeout may be retried by the caller only if nothing was
                // consumed; the framing position is lost otherwise.
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
    }
}

/// Parses `1*HEXDIG *( BWS ";" ... )`: the size, ignoring extensions (whose
/// bytes must be visible ASCII, spaces or tabs).
pub fn parse_chunk_size_line(line: &[u8]) -> IoResult<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid("chunk size is not hexadecimal"));
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16)? as u64;
        n.checked_mul(16)?.checked_add(digit)
    });
    let size = size.ok_or_else(|| invalid("chunk size too large"))?;
    let rest = &line[digits..];
    let ext = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|i| &rest[i..]);
    match ext {
        None if rest.is_empty() => Ok(size),
        Some([b';', ext @ ..])
            if ext
                .iter()
                .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) =>
        {
            Ok(size)
        }
        _ => Err(invalid("malformed chunk size line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> IoResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut decoder = ChunkedDecoder::new(input);
        decoder.read_to_end(&mut out)?;
        assert!(decoder.is_done());
        Ok(out)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        assert_eq!(decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        assert_eq!(
            decode(b"A;x=y\r\n0123456789\r\n2 ; q\r\nab\r\n000\r\n\r\n").unwrap(),
            b"0123456789ab"
        );
        assert_eq!(
            decode(b"1\r\na\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n").unwrap(),
            b"a"
        );
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn reads_nothing_past_the_end() {
        let input = b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut source = &input[..];
        let mut out = Vec::new();
        ChunkedDecoder::new(&mut source)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(source, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn refuses_what_is_not_exactly_chunked() {
        for input in [
            &b"+3\r\nabc\r\n0\r\n\r\n"[..],
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nab",
            b"3\r\nabc\r\n",
            b"3\r\nabc\r\n0\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"3;\x01\r\nabc\r\n0\r\n\r\n",
            b"0\r\nnot a field\r\n\r\n",
            b"10000000000000000\r\n",
            b"g\r\n",
            b"",
        ] {
            assert!(
                decode(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn lines_are_bounded() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat(b'x').take(MAX_SIZE_LINE));
        long.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert!(decode(&long).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..1000 {
            trailers.extend_from_slice(b"X-Long-Trailer: 0123456789\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(decode(&trailers).is_err());
    }

    #[test]
    fn round_trips_any_chunking() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for size in [1usize, 2, 7, 100, 4096, 5000] {
            let mut encoded = Vec::new();
            for chunk in data.chunks(size) {
                encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
            }
            encoded.extend_from_slice(b"0\r\n\r\n");
            assert_eq!(decode(&encoded).unwrap(), data, "chunks of {size}");
        }
    }
}
