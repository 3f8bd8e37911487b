//! The listening socket and process limits: timeouts that every accepted
//! connection inherits, and the open-file limit raised to its hard cap.
//!
//! tiny_http sets no timeouts on the connections it accepts. On Linux an
//! accepted TCP socket inherits SO_RCVTIMEO and SO_SNDTIMEO from the
//! listening socket, so setting them here bounds every read (a slow or idle
//! client is answered 408 and dropped) and every write (a client that stops
//! reading a download is dropped and its download slot freed).

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Sets SO_RCVTIMEO or SO_SNDTIMEO on a socket.
pub fn set_socket_timeout(fd: RawFd, option: libc::c_int, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads exactly size_of::<timeval>() bytes from `tv`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the read and write timeouts accepted connections inherit.
pub fn set_timeouts(listener: &TcpListener, read: Duration, write: Duration) -> io::Result<()> {
    set_socket_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, read)?;
    set_socket_timeout(listener.as_raw_fd(), libc::SO_SNDTIMEO, write)
}

/// Raises the soft limit on open files to the hard limit; returns the new
/// soft limit. Each connection costs two descriptors (tiny_http splits it
/// into a read and a write half), each download one or two more.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    #[test]
    fn accepted_sockets_inherit_the_timeouts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_timeouts(
            &listener,
            Duration::from_millis(1500),
            Duration::from_secs(7),
        )
        .unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        assert_eq!(
            accepted.read_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            accepted.write_timeout().unwrap(),
            Some(Duration::from_secs(7))
        );
        let err = accepted.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
