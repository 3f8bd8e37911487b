//! trainbox patches 5 and 6: waiting for clients, telling passing accept
//! errors from a broken listener, and setting up each accepted socket.
//!
//! The original ended its accept loop on the first error of any kind, so
//! an aborted handshake, a signal or a moment without free descriptors
//! stopped the server from taking clients for good.

use std::io::{Error as IoError, ErrorKind};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::ConnectionConfig;

/// Errors after which the next `accept` may well succeed (accept(2):
/// "Linux accept() passes already-pending network errors on the new socket
/// as an error code from accept() ... should be treated like EAGAIN").
pub(crate) fn is_transient(e: &IoError) -> bool {
    if matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
    ) {
        return true;
    }
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        const PASSING: [Errno; 9] = [
            Errno::NETDOWN,
            Errno::PROTO,
            Errno::NOPROTOOPT,
            Errno::HOSTDOWN,
            Errno::HOSTUNREACH,
            Errno::OPNOTSUPP,
            Errno::NETUNREACH,
            Errno::CONNRESET,
            Errno::TIMEDOUT,
        ];
        return is_one_of(e, &PASSING);
    }
    #[allow(unreachable_code)]
    false
}

/// Errors that mean the process or the system is out of something
/// (descriptors, socket buffers, memory) that frees up again.
pub(crate) fn is_exhaustion(e: &IoError) -> bool {
    if e.kind() == ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        return is_one_of(
            e,
            &[Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM],
        );
    }
    #[allow(unreachable_code)]
    false
}

#[cfg(unix)]
fn is_one_of(e: &IoError, codes: &[rustix::io::Errno]) -> bool {
    e.raw_os_error().map_or(false, |raw| {
        codes.iter().any(|code| code.raw_os_error() == raw)
    })
}

/// The pause after an accept that failed for want of resources: doubling
/// from 10 ms to 1 s, and back to nothing after a success.
#[derive(Default)]
pub(crate) struct Backoff {
    pause: Option<Duration>,
    since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn failed(&mut self, e: &IoError) {
        let pause = match self.pause {
            None => {
                log::warn!("cannot accept clients for now ({}); retrying", e);
                self.since = Some(Instant::now());
                Duration::from_millis(10)
            }
            Some(pause) => (pause * 2).min(Duration::from_secs(1)),
        };
        self.pause = Some(pause);
        thread::sleep(pause);
    }

    pub(crate) fn succeeded(&mut self) {
        if self.pause.take().is_some() {
            let waited = self
                .since
                .take()
                .map_or(Duration::ZERO, |since| since.elapsed());
            log::warn!("accepting clients again after {:?}", waited);
        }
    }
}

/// What woke the accept thread.
#[cfg(unix)]
pub(crate) enum Woken {
    /// A client is waiting (or the listener has an error to report).
    Client,
    /// The server was dropped.
    Stop,
}

/// Blocks until `listener` has a client or `stop` becomes readable (its
/// peer, held by the `Server`, was closed).
#[cfg(unix)]
pub(crate) fn wait(
    listener: &crate::Listener,
    stop: &std::os::unix::net::UnixStream,
) -> Result<Woken, IoError> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [
        PollFd::new(listener, PollFlags::IN),
        PollFd::new(stop, PollFlags::IN),
    ];
    poll(&mut fds, None)?;
    if !fds[1].revents().is_empty() {
        return Ok(Woken::Stop);
    }
    Ok(Woken::Client)
}

/// Sets up an accepted socket: blocking (a listener's non-blocking flag is
/// inherited on some systems), the write timeout, no Nagle delay.
pub(crate) fn configure(connection: &Connection, config: &ConnectionConfig) -> Result<(), IoError> {
    match connection {
        Connection::Tcp(s) => s.set_nonblocking(false)?,
        #[cfg(unix)]
        Connection::Unix(s) => s.set_nonblocking(false)?,
    }
    connection.set_write_timeout(config.write_timeout.filter(|t| !t.is_zero()))?;
    connection.set_nodelay()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn accept_errors_are_sorted() {
        use rustix::io::Errno;
        let error = |code: Errno| IoError::from_raw_os_error(code.raw_os_error());
        for code in [
            Errno::AGAIN,
            Errno::INTR,
            Errno::CONNABORTED,
            Errno::PROTO,
            Errno::CONNRESET,
        ] {
            assert!(is_transient(&error(code)), "{:?}", code);
        }
        for code in [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM] {
            assert!(is_exhaustion(&error(code)), "{:?}", code);
            assert!(!is_transient(&error(code)), "{:?}", code);
        }
        // The listener itself is broken.
        for code in [Errno::BADF, Errno::INVAL, Errno::NOTSOCK] {
            assert!(
                !is_transient(&error(code)) && !is_exhaustion(&error(code)),
                "{:?}", code
            );
        }
    }
}
