//! Cutting a client connection that tiny_http owns.
//!
//! tiny_http hands out a response writer but never the socket, and dropping
//! the writer does not close a keep-alive connection: the client would wait
//! for the rest of a body that will never come, and tiny_http would later
//! write its next response into the middle of it. When a download must stop
//! early (a file changed, a write timed out) we find the socket by its peer
//! address among our own descriptors and `shutdown(2)` it, so the client
//! sees the connection end right after the last byte sent and tiny_http's
//! reads and writes on it fail. The descriptor stays tiny_http's to close.
//!
//! The same lookup gives downloads the socket to `sendfile(2)` file ranges
//! into, which tiny_http's writer cannot do.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// The descriptor of the TCP connection whose peer is `peer` on local port
/// `local_port`, for writing to it directly (sendfile). tiny_http keeps it
/// open for as long as the request's writer lives.
pub fn find_socket(peer: SocketAddr, local_port: u16) -> Option<RawFd> {
    open_fds().into_iter().find(|&fd| {
        peer_addr(fd) == Some(peer) && local_addr(fd).map(|a| a.port()) == Some(local_port)
    })
}

/// Shuts down (both directions) the TCP connection whose peer is `peer` on
/// local port `local_port`. Returns how many descriptors matched (tiny_http
/// holds two per connection; either suffices).
pub fn shutdown_peer(peer: SocketAddr, local_port: u16) -> usize {
    shutdown(peer, local_port, Shutdown::Both)
}

/// Shuts down one or both directions of a connection (see [`shutdown_peer`]).
/// Shutting down reading first lets a response still go out while tiny_http
/// stops reading an unwanted body (it sees end of file).
pub fn shutdown(peer: SocketAddr, local_port: u16, how: Shutdown) -> usize {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    let mut matched = 0;
    for fd in open_fds() {
        if peer_addr(fd) == Some(peer) && local_addr(fd).map(|a| a.port()) == Some(local_port) {
            // SAFETY: shutdown on a descriptor we own; at worst EBADF/ENOTCONN.
            unsafe { libc::shutdown(fd, how) };
            matched += 1;
        }
    }
    matched
}

/// The descriptors open in this process, from `/proc/self/fd` (this is
/// the process's own table, not a file in the request path).
#[allow(clippy::disallowed_methods)]
fn open_fds() -> Vec<RawFd> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        // Without /proc, probe the low descriptors directly.
        Err(_) => (0..4096).collect(),
    }
}

fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getpeername writes at most `len` bytes into `storage`.
    sockaddr(|storage, len| unsafe { libc::getpeername(fd, storage, len) })
}

fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getsockname writes at most `len` bytes into `storage`.
    sockaddr(|storage, len| unsafe { libc::getsockname(fd, storage, len) })
}

fn sockaddr(
    call: impl FnOnce(*mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if call((&raw mut storage).cast(), &mut len) != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: libc::sockaddr_in = unsafe { *(&raw const storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: libc::sockaddr_in6 = unsafe { *(&raw const storage).cast() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn shutting_down_a_peer_ends_the_clients_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert!(find_socket(peer, port).is_some());
        assert!(shutdown_peer(peer, port) >= 1);
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the client sees EOF");
        // A peer that does not exist matches nothing.
        let nobody = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(shutdown_peer(nobody, port), 0);
    }
}
