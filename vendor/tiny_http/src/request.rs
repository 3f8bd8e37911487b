use std::io::Error as IoError;
use std::io::{self, ErrorKind, Read, Write};

use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::util::refined_tcp_stream::{ReadLimit, Socket};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<BodyReader>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<ResponseWriter>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // true if the client said this is its last request (`Connection: close`, HTTP/1.0)
    last_request: bool,
}

/// trainbox patch 7: the body of a request, as the application reads it.
///
/// A body the connection thread read ahead (small ones, see
/// `ConnectionConfig::buffered_body_limit`) is complete from the start. A
/// body still streaming from the socket that the application does not read
/// to its end, or that fails to decode, leaves the connection at an unknown
/// place in the byte stream: the connection is then closed after the
/// response instead of reading the rest as the next request.
pub(crate) struct BodyReader {
    inner: Box<dyn Read + Send + 'static>,
    complete: bool,
    socket: Option<Arc<Socket>>,
}

impl BodyReader {
    /// A body that is all here already (or none at all).
    pub(crate) fn complete<R: Read + Send + 'static>(inner: R) -> BodyReader {
        BodyReader {
            inner: Box::new(inner),
            complete: true,
            socket: None,
        }
    }

    /// A body still arriving on `socket`, ending where `inner` says.
    pub(crate) fn streaming<R: Read + Send + 'static>(inner: R, socket: Arc<Socket>) -> BodyReader {
        BodyReader {
            inner: Box::new(inner),
            complete: false,
            socket: Some(socket),
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    fn abandon(&mut self) {
        if !self.complete {
            if let Some(socket) = &self.socket {
                socket.close_after_response();
            }
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.complete = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// trainbox patch 9: the writer of one response, holding its connection.
///
/// Returned by [`Request::into_writer`] for applications that write the
/// response themselves (streamed downloads, event streams). It holds the
/// connection's socket for as long as it lives, so [`socket_fd`] can be
/// handed to `sendfile(2)` or `setsockopt(2)` without any chance that the
/// descriptor was closed and its number reused by another connection.
///
/// [`socket_fd`]: ResponseWriter::socket_fd
pub struct ResponseWriter {
    inner: Box<dyn Write + Send + 'static>,
    socket: Option<Arc<Socket>>,
}

impl ResponseWriter {
    pub(crate) fn new<W: Write + Send + 'static>(
        inner: W,
        socket: Option<Arc<Socket>>,
    ) -> ResponseWriter {
        ResponseWriter {
            inner: Box::new(inner),
            socket,
        }
    }

    /// The connection's socket, for writing to it directly; `None` over
    /// TLS (bytes must pass through the TLS layer) and for test requests.
    /// Call [`Write::flush`] first: bytes still buffered in this writer
    /// would otherwise reach the client after the ones written directly.
    #[cfg(unix)]
    pub fn socket_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.socket.as_ref()?.plain_fd()
    }

    /// Shuts down one or both directions of the connection: the way to end
    /// a response early, so that the client sees it cut short instead of
    /// waiting for the rest.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.socket {
            Some(socket) => socket.shutdown(how),
            None => Ok(()),
        }
    }

    /// Closes the connection once this response is written, instead of
    /// reading another request from it (say for a response whose end only
    /// the closing marks).
    pub fn close_after(&self) {
        if let Some(socket) = &self.socket {
            socket.close_after_response();
        }
    }

    fn closing(&self) -> bool {
        self.socket.as_ref().map_or(false, |s| !s.keep_alive())
    }
}

impl Write for ResponseWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl fmt::Debug for ResponseWriter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        formatter.write_str("ResponseWriter")
    }
}

/// trainbox patch 9: the connection after a protocol upgrade (WebSocket),
/// returned by [`Request::upgrade`].
pub struct Upgraded {
    reader: BodyReader,
    writer: ResponseWriter,
}

impl Upgraded {
    /// Bounds each read (`None`: reads wait for ever, the default), so a
    /// loop can both read from the client and do other work.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if let Some(socket) = &self.writer.socket {
            socket.set_read_limit(match timeout {
                Some(each) if !each.is_zero() => ReadLimit::EachRead(each),
                Some(_) => return Err(io::Error::new(ErrorKind::InvalidInput, "zero timeout")),
                None => ReadLimit::Unbounded,
            });
        }
        Ok(())
    }

    /// Shuts down one or both directions of the connection.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.writer.shutdown(how)
    }
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// What the connection thread read of a request before handing it over.
pub(crate) struct RequestHead {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub remote_addr: Option<SocketAddr>,
    pub secure: bool,
}

/// Builds a request from its head, its body (read or still to be read,
/// see `BodyReader`) and the writer of its response.
pub(crate) fn new_request(
    head: RequestHead,
    body: BodyReader,
    body_length: Option<usize>,
    must_send_continue: bool,
    last_request: bool,
    writer: ResponseWriter,
) -> Request {
    Request {
        data_reader: Some(body),
        response_writer: Some(writer),
        remote_addr: head.remote_addr,
        secure: head.secure,
        method: head.method,
        path: head.path,
        http_version: head.version,
        headers: head.headers,
        body_length,
        must_send_continue,
        last_request,
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a stream.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// trainbox patch 9: the stream is an [`Upgraded`], which can bound its
    /// reads with [`Upgraded::set_read_timeout`]. Only a request that asked
    /// for an upgrade (`Connection: upgrade`, an `Upgrade` header and no
    /// body) can read past its head; for any other request the stream
    /// reads end of file.
    pub fn upgrade<R: Read>(mut self, protocol: &str, response: Response<R>) -> Upgraded {
        let mut writer = self.extract_writer_impl();
        response
            .raw_print(
                &mut writer,
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // a failed write shows in the stream's next write

        writer.flush().ok();

        Upgraded {
            reader: self.extract_reader_impl(),
            writer,
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "text/plain" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    /// }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            let writer = self.response_writer.as_mut().unwrap();
            msg.raw_print(
                &mut *writer,
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            writer.flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// The next request on the connection is read only once the writer is
    /// dropped (trainbox patch 8), so drop it as soon as the response is
    /// complete. trainbox patch 9: the writer is a [`ResponseWriter`],
    /// which also gives the socket for `sendfile(2)` and a way to cut the
    /// response short.
    #[inline]
    pub fn into_writer(mut self) -> ResponseWriter {
        let writer = self.extract_writer_impl();
        if !self.body_complete() {
            writer.close_after();
        }
        writer
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> ResponseWriter {
        self.response_writer
            .take()
            .expect("the response writer is taken once")
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> BodyReader {
        self.data_reader
            .take()
            .expect("the body reader is taken once")
    }

    fn body_complete(&self) -> bool {
        self.data_reader
            .as_ref()
            .map_or(true, BodyReader::is_complete)
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, mut response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        // trainbox patch 7: say so when the connection ends after this
        // response, whoever decided it.
        if !self.body_complete() || response.closes_connection() {
            writer.close_after();
        }
        if self.last_request || writer.closing() {
            response = response.with_connection_close();
        }

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            &mut writer,
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
