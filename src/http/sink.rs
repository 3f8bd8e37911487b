//! The connection as the place an archive is written to: bytes through the
//! response writer, stored file data by `sendfile(2)` from the page cache
//! straight to the writer's own socket (as fast as nginx on loopback, a
//! third of the CPU of read and write), and which failures were the
//! client's.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};

use tiny_http::ResponseWriter;

use crate::archive::digest::changed;
use crate::archive::stream::Sink;

/// Bytes per sendfile(2) call.
const SENDFILE_CHUNK: u64 = 8 << 20;

/// A response writer as an archive [`Sink`].
pub struct SocketSink<'a> {
    writer: &'a mut ResponseWriter,
    /// Stored data goes by sendfile(2) (the socket is plain, and allowed).
    zero_copy: bool,
    /// Body bytes written.
    pub sent: u64,
    /// Set when a failure was the client's (gone, or not reading).
    pub client_failed: bool,
}

impl<'a> SocketSink<'a> {
    /// `sendfile`: whether the server may use sendfile(2) at all.
    pub fn new(writer: &'a mut ResponseWriter, sendfile: bool) -> SocketSink<'a> {
        let zero_copy = sendfile && writer.socket_fd().is_some();
        SocketSink {
            writer,
            zero_copy,
            sent: 0,
            client_failed: false,
        }
    }

    /// Notes a write failure as the client's.
    pub fn client(&mut self, e: io::Error) -> io::Error {
        self.client_failed = true;
        e
    }

    /// Flushes what the writer still buffers.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(|e| self.client(e))
    }
}

impl Sink for SocketSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).map_err(|e| self.client(e))?;
        if self.zero_copy {
            // Nothing may wait in the writer's buffer when sendfile writes next.
            self.flush()?;
        }
        self.sent += bytes.len() as u64;
        Ok(())
    }

    fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    fn send_file(&mut self, fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
        // Borrowed from the writer, which holds the connection open: the
        // number cannot have been closed and given to anything else.
        let socket = match self.writer.socket_fd() {
            Some(socket) if self.zero_copy => socket.as_raw_fd(),
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let mut offset = offset as libc::off_t;
        let mut left = len;
        while left > 0 {
            let want = left.min(SENDFILE_CHUNK) as usize;
            // SAFETY: both descriptors are open for the duration of the call;
            // the kernel advances `offset`.
            let n = unsafe { libc::sendfile(socket, fd, &mut offset, want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // A filesystem that cannot sendfile: copy from now on.
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if left == len => {
                        log::info!("sendfile unsupported here ({e}); copying instead");
                        self.zero_copy = false;
                        return Err(io::ErrorKind::Unsupported.into());
                    }
                    _ if is_client_error(&e) => return Err(self.client(e)),
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(changed("a member")); // the file is shorter than planned
            }
            left -= n as u64;
            self.sent += n as u64;
        }
        Ok(())
    }
}

/// Failures that mean the client went away or stopped reading.
pub fn is_client_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}
