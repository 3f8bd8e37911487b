use std::convert::TryFrom;
use std::io::Error as IoError;
use std::io::{BufReader, BufWriter, Cursor, ErrorKind, Read, Write};

use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, StatusCode};
use crate::framing::{self, BodyLength, HeadError};
use crate::request::{new_request, BodyReader, RequestHead, ResponseWriter};
use crate::util::refined_tcp_stream::{ReadLimit, Socket};
use crate::util::{ChunkedDecoder, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{ConnectionConfig, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
///
/// trainbox patch 8: requests are read one at a time. The next request
/// head is read only once the previous response is complete, so the idle
/// timeout between requests starts when the response ends (a download that
/// outlasts it is not cut), responses never interleave, and a request's
/// unread body is never parsed as the next request.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // the socket's read limits and keep-alive state
    socket: Arc<Socket>,

    config: Arc<ConnectionConfig>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,
}

/// trainbox patch 2: the longest request line and header line, and the
/// most bytes of request head, read before the request is refused (414 for
/// the request line, 431 for the headers) and the connection closed.
const MAX_REQUEST_LINE: usize = 8 * 1024;
const MAX_LINE: usize = 8 * 1024;
const MAX_HEAD: usize = 32 * 1024;
/// Empty lines skipped before a request line (RFC 9112 §2.2: some clients
/// send a CRLF after a body).
const MAX_LEADING_EMPTY_LINES: usize = 4;
/// After refusing a request, what the client still sends is read and
/// dropped for this long (at most `LINGER_BYTES`) before the socket is
/// closed: closing with unread data makes the kernel send a reset, which
/// can destroy the error response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

const URI_TOO_LONG: HeadError = HeadError {
    status: 414,
    reason: "request target too long",
};
const HEAD_TOO_LARGE: HeadError = HeadError {
    status: 431,
    reason: "request header fields too large",
};
const HEAD_TIMEOUT: HeadError = HeadError {
    status: 408,
    reason: "request head not received in time",
};
const BODY_TIMEOUT: HeadError = HeadError {
    status: 408,
    reason: "request body not received in time",
};

/// Error that can happen when reading a request.
enum ReadError {
    /// The connection closed, or stayed silent past the idle timeout,
    /// before a request began: it is closed without a word.
    Idle,
    /// The request is refused with this answer, then the connection closed.
    Refused(HeadError),
    /// The connection failed in the middle of a request: nothing to answer.
    Io(IoError),
}

impl From<HeadError> for ReadError {
    fn from(e: HeadError) -> ReadError {
        ReadError::Refused(e)
    }
}

/// A read limit of `timeout` from now, or none.
fn until(timeout: Option<Duration>) -> ReadLimit {
    match timeout {
        Some(timeout) => ReadLimit::Until(Instant::now() + timeout),
        None => ReadLimit::Unbounded,
    }
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the socket.
    pub(crate) fn new(socket: Arc<Socket>, config: Arc<ConnectionConfig>) -> ClientConnection {
        let remote_addr = socket.peer_addr().ok().flatten();
        let secure = socket.secure();
        let (read_socket, write_socket) = RefinedTcpStream::new(&socket);

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            socket,
            config,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    fn read_byte(&mut self) -> Result<u8, IoError> {
        let mut byte = [0u8];
        loop {
            match self.next_header_source.read(&mut byte) {
                Ok(0) => return Err(IoError::new(ErrorKind::UnexpectedEof, "connection closed")),
                Ok(_) => return Ok(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a line ending in CRLF (without it), starting with `first` if
    /// given. A bare CR or LF, or more than `max` bytes, refuse the request.
    fn read_line(
        &mut self,
        first: Option<u8>,
        max: usize,
        too_long: HeadError,
    ) -> Result<Vec<u8>, ReadError> {
        let mut line = Vec::new();
        let mut next = first;
        loop {
            let byte = match next.take() {
                Some(byte) => byte,
                None => self.read_head_byte()?,
            };
            match byte {
                b'\r' if self.read_head_byte()? == b'\n' => return Ok(line),
                b'\r' | b'\n' => {
                    return Err(ReadError::Refused(HeadError {
                        status: 400,
                        reason: "bare CR or LF in the request head",
                    }))
                }
                _ if line.len() >= max => return Err(ReadError::Refused(too_long)),
                byte => line.push(byte),
            }
        }
    }

    fn read_head_byte(&mut self) -> Result<u8, ReadError> {
        self.read_byte().map_err(|e| match e.kind() {
            ErrorKind::TimedOut => ReadError::Refused(HEAD_TIMEOUT),
            _ => ReadError::Io(e),
        })
    }

    /// Reads a request from the stream.
    /// Blocks until the header and a small body have been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let config = Arc::clone(&self.config);

        // trainbox patch 6: between requests the connection may be silent
        // for the idle timeout; from its first byte, the whole head must
        // arrive within the header timeout, however it trickles in.
        self.socket.set_read_limit(until(config.idle_timeout));
        let first = self.read_byte().map_err(|_| ReadError::Idle)?;
        self.socket.set_read_limit(until(config.header_timeout));

        let mut line = self.read_line(Some(first), MAX_REQUEST_LINE, URI_TOO_LONG)?;
        for _ in 0..MAX_LEADING_EMPTY_LINES {
            if !line.is_empty() {
                break;
            }
            line = self.read_line(None, MAX_REQUEST_LINE, URI_TOO_LONG)?;
        }
        let (method, path, version) = framing::parse_request_line(&line)?;

        let mut headers = Vec::new();
        let mut head_len = line.len();
        loop {
            let line = self.read_line(None, MAX_LINE, HEAD_TOO_LARGE)?;
            if line.is_empty() {
                break;
            }
            head_len += line.len() + 2;
            if head_len > MAX_HEAD {
                return Err(HEAD_TOO_LARGE.into());
            }
            headers.push(framing::parse_header_line(&line)?);
        }

        // trainbox patch 7: the body's length, decided strictly.
        framing::check_host(&version, &headers)?;
        let length = framing::body_length(&version, &headers)?;
        let expects_continue = match headers.iter().find(|h| h.field.equiv("Expect")) {
            None => false,
            Some(h) if h.value.as_str().eq_ignore_ascii_case("100-continue") => true,
            Some(_) => {
                return Err(ReadError::Refused(HeadError {
                    status: 417,
                    reason: "only Expect: 100-continue is supported",
                }))
            }
        };
        let upgrade = length == BodyLength::Empty
            && framing::has_token(&headers, "Connection", "upgrade")
            && headers.iter().any(|h| h.field.equiv("Upgrade"));
        let last_request = upgrade
            || framing::has_token(&headers, "Connection", "close")
            || (version == HTTPVersion(1, 0)
                && !framing::has_token(&headers, "Connection", "keep-alive"));
        self.no_more_requests = last_request;

        // building the writer for the request
        let mut writer =
            ResponseWriter::new(self.sink.next().unwrap(), Some(Arc::clone(&self.socket)));

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // trainbox patch 8: a body up to the buffered limit is read here,
        // before the request is handed out, so a client trickling its body
        // holds this connection's thread and not the application's.
        let limit = config.buffered_body_limit;
        let body_limit = ReadLimit::Rate {
            since: Instant::now(),
            grace: config
                .header_timeout
                .unwrap_or(Duration::from_secs(3600 * 24 * 365)),
            bytes_per_sec: config.body_min_rate.unwrap_or(1),
            received: 0,
        };
        let body_error = |e: IoError| match e.kind() {
            ErrorKind::TimedOut => ReadError::Refused(BODY_TIMEOUT),
            ErrorKind::InvalidData => ReadError::Refused(HeadError {
                status: 400,
                reason: "malformed chunked body",
            }),
            _ => ReadError::Io(e),
        };
        let (body, body_length, must_send_continue) = match length {
            BodyLength::Empty if upgrade => (BodyReader::complete(data_source), None, false),
            BodyLength::Empty => (BodyReader::complete(std::io::empty()), None, false),
            BodyLength::Length(n) if n <= limit as u64 => {
                if expects_continue {
                    send_continue(&mut writer).map_err(ReadError::Io)?;
                }
                self.socket.set_read_limit(body_limit);
                let mut body = vec![0; n as usize];
                data_source.read_exact(&mut body).map_err(body_error)?;
                (
                    BodyReader::complete(Cursor::new(body)),
                    Some(n as usize),
                    false,
                )
            }
            BodyLength::Length(n) => {
                self.socket.set_read_limit(body_limit);
                let body = data_source.take(n);
                let body = BodyReader::streaming(LengthReader(body), Arc::clone(&self.socket));
                (body, usize::try_from(n).ok(), expects_continue)
            }
            BodyLength::Chunked => {
                if expects_continue {
                    send_continue(&mut writer).map_err(ReadError::Io)?;
                }
                self.socket.set_read_limit(body_limit);
                let mut decoder = ChunkedDecoder::new(data_source);
                let mut body = Vec::new();
                (&mut decoder)
                    .take(limit as u64 + 1)
                    .read_to_end(&mut body)
                    .map_err(body_error)?;
                if decoder.is_done() {
                    let len = body.len();
                    (BodyReader::complete(Cursor::new(body)), Some(len), false)
                } else {
                    let rest = Cursor::new(body).chain(decoder);
                    (
                        BodyReader::streaming(rest, Arc::clone(&self.socket)),
                        None,
                        false,
                    )
                }
            }
        };
        if body.is_complete() {
            // Nothing reads the socket until the next head (or the upgraded
            // stream sets its own limit).
            self.socket.set_read_limit(ReadLimit::Unbounded);
        }

        let head = RequestHead {
            method,
            path,
            version,
            headers,
            remote_addr: self.remote_addr,
            secure: self.secure,
        };
        Ok(new_request(
            head,
            body,
            body_length,
            must_send_continue,
            last_request,
            writer,
        ))
    }

    /// Answers a refused request on tiny_http's own, with the application's
    /// error body, and says the connection closes.
    fn refuse(&mut self, error: HeadError) {
        let mut writer = self.sink.next().unwrap();
        let response = (self.config.error_response)(StatusCode(error.status), error.reason)
            .with_connection_close();
        response
            .raw_print(&mut writer, HTTPVersion(1, 1), &[], false, None)
            .ok();
        writer.flush().ok();
    }

    /// Ends the response stream, then reads and drops what the client
    /// still sends for a short while (see [`LINGER`]).
    fn linger(&mut self) {
        self.sink.wait_until_written();
        self.socket.shutdown(Shutdown::Write).ok();
        self.next_header_source.wait_turn();
        self.socket
            .set_read_limit(ReadLimit::Until(Instant::now() + LINGER));
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match self.next_header_source.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Writes `100 Continue` before the connection thread reads a body.
fn send_continue(writer: &mut ResponseWriter) -> Result<(), IoError> {
    writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    writer.flush()
}

/// A body of a declared length: end of file before that length is an
/// error, not the end of the body (the original returned a short body as if
/// it were whole).
struct LengthReader<R>(std::io::Take<R>);

impl<R: Read> Read for LengthReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.limit() > 0 {
            return Err(IoError::new(
                ErrorKind::UnexpectedEof,
                "request body cut short",
            ));
        }
        Ok(n)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // trainbox patch 8: one request at a time; the connection ends
        // (and its slot is freed) only once the last response is out.
        self.sink.wait_until_written();
        self.next_header_source.wait_turn();

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }
        // trainbox patch 7: a body left unread, or a response that said
        // `Connection: close`, ends the connection.
        if !self.socket.keep_alive() {
            self.linger();
            return None;
        }

        match self.read() {
            Ok(rq) => Some(rq),
            Err(ReadError::Idle) | Err(ReadError::Io(_)) => None,
            Err(ReadError::Refused(error)) => {
                // trainbox patch 7: after any framing error the connection
                // closes; no further byte is parsed as a request.
                self.next_header_source.wait_turn();
                self.refuse(error);
                self.linger();
                None
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::LengthReader;
    use std::io::Read;

    #[test]
    fn a_short_body_is_an_error() {
        let mut body = LengthReader((&b"abc"[..]).take(5));
        let mut out = Vec::new();
        assert!(body.read_to_end(&mut out).is_err());
        let mut body = LengthReader((&b"abcdef"[..]).take(5));
        out.clear();
        body.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcde");
    }
}
