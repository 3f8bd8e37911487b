//! systemd integration: the listening socket passed by socket activation
//! (`LISTEN_FDS`), and `sd_notify` messages (`READY=1`, `STATUS=`,
//! `WATCHDOG=1`, `STOPPING=1`). Without systemd all of it is silent.
//!
//! Written against the documented protocols (sd_listen_fds(3),
//! sd_notify(3)) rather than linking libsystemd: both are a few lines.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// Takes the listening socket systemd passed, if it passed one to this
/// process. The variables are removed so nothing started later sees them.
pub fn listener_from_env() -> io::Result<Option<TcpListener>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // SAFETY: this runs at start-up, before the server starts any thread,
    // so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None); // meant for another process
    }
    let count: i32 = fds
        .parse()
        .map_err(|_| io::Error::other(format!("LISTEN_FDS={fds:?} is not a number")))?;
    if count != 1 {
        return Err(io::Error::other(format!(
            "expected one socket from systemd, got LISTEN_FDS={count}"
        )));
    }
    let fd = LISTEN_FDS_START;
    check_listening_stream(fd)?;
    // SAFETY: systemd passed this descriptor to us alone; it is a listening
    // stream socket (checked above) and nothing else owns it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // CLOEXEC, so trainers do not inherit it.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(listener))
}

fn check_listening_stream(fd: RawFd) -> io::Result<()> {
    let get = |option| -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one c_int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(value)
    };
    if get(libc::SO_TYPE)? != libc::SOCK_STREAM || get(libc::SO_ACCEPTCONN)? != 1 {
        return Err(io::Error::other(
            "the socket from systemd is not a listening stream socket (ListenStream=)",
        ));
    }
    let domain = get(libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(io::Error::other(
            "the socket from systemd is not a TCP socket",
        ));
    }
    Ok(())
}

/// Sends `sd_notify` messages to `NOTIFY_SOCKET`, if systemd set one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// `None` without `NOTIFY_SOCKET` (not started by systemd as
    /// Type=notify): every message is then skipped.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let path = path.into_encoded_bytes();
        let address = match path.strip_prefix(b"@") {
            // An abstract socket name.
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&path))?
            }
        };
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            address,
        }))
    }

    /// Sends one message (`KEY=value` lines). Errors are logged, not
    /// fatal: a missed notification must not stop the server.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            log::warn!("sd_notify failed: {e}");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when systemd
/// set it for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a socket file in the temp dir
    fn notifications_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("trainbox-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let receiver = UnixDatagram::bind(&dir).unwrap();
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            address: SocketAddr::from_pathname(&dir).unwrap(),
        };
        notifier.send("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_file(&dir);
    }
}
