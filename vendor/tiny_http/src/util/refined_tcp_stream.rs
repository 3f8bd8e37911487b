use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => match tcp_stream {
                Connection::Tcp(s) => s.peer_addr().map(Some),
                #[cfg(unix)]
                Connection::Unix(_) => Ok(None),
            },
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.clone().peer_addr(),
        }
    }

    fn shutdown(&self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.clone().shutdown(how),
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(timeout),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.set_read_timeout(timeout),
        }
    }

    fn read(&self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => { tcp_stream }.read(buf),
            // The TLS streams lock their state internally; a clone is an `Arc`.
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.clone().read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => { tcp_stream }.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.clone().write(buf),
        }
    }

    fn flush(&self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => { tcp_stream }.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.clone().flush(),
        }
    }
}

/// trainbox patch 6: how long the next read from a connection may take.
///
/// A socket timeout alone (`SO_RCVTIMEO`) bounds each `read(2)`, so a client
/// sending one byte just before every timeout holds the connection forever.
/// These limits are deadlines: each read gets only the time that is left.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadLimit {
    /// Reads may block for ever (an upgraded stream that set no timeout).
    Unbounded,
    /// Each read may block this long (an upgraded stream's own choice).
    EachRead(Duration),
    /// Every read must end by this instant (a request head, an idle
    /// keep-alive connection).
    Until(Instant),
    /// A body arriving at no less than `bytes_per_sec` after `grace`: the
    /// deadline moves forward with every byte received.
    Rate {
        since: Instant,
        grace: Duration,
        bytes_per_sec: u64,
        received: u64,
    },
}

impl ReadLimit {
    /// The time the next read may take; `Err` once the deadline passed.
    fn next_timeout(&self, now: Instant) -> IoResult<Option<Duration>> {
        let deadline = match *self {
            ReadLimit::Unbounded => return Ok(None),
            ReadLimit::EachRead(d) => return Ok(Some(d)),
            ReadLimit::Until(deadline) => deadline,
            ReadLimit::Rate {
                since,
                grace,
                bytes_per_sec,
                received,
            } => {
                let earned = Duration::from_secs_f64(received as f64 / bytes_per_sec.max(1) as f64);
                since + grace + earned
            }
        };
        match deadline.checked_duration_since(now) {
            // A zero timeout means "no timeout" to setsockopt: never pass one.
            Some(left) if left >= Duration::from_millis(1) => Ok(Some(left)),
            _ => Err(IoError::new(ErrorKind::TimedOut, "read deadline passed")),
        }
    }
}

/// One client connection: the stream, the limit on its reads, and whether
/// it may carry another request. Shared by the thread reading requests,
/// each request's body reader and response writer, and upgraded streams;
/// the descriptor is closed when the last of them lets go, so a writer can
/// never reach a descriptor that was closed and reused.
pub(crate) struct Socket {
    stream: Stream,
    read_limit: Mutex<ReadLimit>,
    keep_alive: AtomicBool,
}

impl Socket {
    pub(crate) fn new<S: Into<Stream>>(stream: S) -> Arc<Socket> {
        Arc::new(Socket {
            stream: stream.into(),
            read_limit: Mutex::new(ReadLimit::Unbounded),
            keep_alive: AtomicBool::new(true),
        })
    }

    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> IoResult<()> {
        self.stream.shutdown(how)
    }

    pub(crate) fn set_read_limit(&self, limit: ReadLimit) {
        *self.read_limit.lock().unwrap_or_else(|e| e.into_inner()) = limit;
    }

    /// Marks the connection to be closed once the current response is out.
    pub(crate) fn close_after_response(&self) {
        self.keep_alive.store(false, Ordering::Release);
    }

    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive.load(Ordering::Acquire)
    }

    /// The plain socket, when bytes written to it reach the client as
    /// they are (not over TLS).
    #[cfg(unix)]
    pub(crate) fn plain_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match &self.stream {
            Stream::Http(connection) => Some(connection.as_fd()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }

    fn read(&self, buf: &mut [u8]) -> IoResult<usize> {
        let limit = *self.read_limit.lock().unwrap_or_else(|e| e.into_inner());
        self.stream
            .set_read_timeout(limit.next_timeout(Instant::now())?)?;
        let n = match self.stream.read(buf) {
            // A socket timeout shows as EAGAIN; it is a timeout here.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(IoError::new(ErrorKind::TimedOut, e))
            }
            other => other?,
        };
        if let ReadLimit::Rate { received, .. } =
            &mut *self.read_limit.lock().unwrap_or_else(|e| e.into_inner())
        {
            *received += n as u64;
        }
        Ok(n)
    }
}

/// One direction of a [`Socket`]: dropping the read half shuts down reading,
/// dropping the write half shuts down writing (so the client sees the end of
/// the response even while other holders keep the descriptor open).
pub struct RefinedTcpStream {
    socket: Arc<Socket>,
    close_read: bool,
    close_write: bool,
}

impl RefinedTcpStream {
    /// trainbox patch 9: both halves share one descriptor. The original
    /// `dup`ed the socket, which failed when descriptors ran out and left
    /// two numbers per connection for a caller to confuse.
    pub(crate) fn new(socket: &Arc<Socket>) -> (RefinedTcpStream, RefinedTcpStream) {
        let read = RefinedTcpStream {
            socket: Arc::clone(socket),
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            socket: Arc::clone(socket),
            close_read: false,
            close_write: true,
        };

        (read, write)
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.socket.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.socket.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.socket.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.socket.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.socket.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::ReadLimit;
    use std::time::{Duration, Instant};

    #[test]
    fn deadlines_shrink_and_expire() {
        let now = Instant::now();
        let until = ReadLimit::Until(now + Duration::from_secs(2));
        assert_eq!(
            until.next_timeout(now).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert!(until.next_timeout(now + Duration::from_secs(2)).is_err());
        assert_eq!(ReadLimit::Unbounded.next_timeout(now).unwrap(), None);
    }

    #[test]
    fn a_rate_limit_moves_with_the_bytes_received() {
        let now = Instant::now();
        let mut limit = ReadLimit::Rate {
            since: now,
            grace: Duration::from_secs(1),
            bytes_per_sec: 1000,
            received: 0,
        };
        let later = now + Duration::from_secs(3);
        assert!(limit.next_timeout(later).is_err(), "nothing arrived in 3 s");
        if let ReadLimit::Rate { received, .. } = &mut limit {
            *received = 5000; // five seconds' worth
        }
        assert_eq!(
            limit.next_timeout(later).unwrap(),
            Some(Duration::from_secs(3))
        );
    }
}
