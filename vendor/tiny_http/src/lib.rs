//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![allow(dead_code, unused_imports)] // trainbox: lints newer than this release
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use client::ClientConnection;
#[cfg(not(unix))]
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request, ResponseWriter, Upgraded};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod accept;
mod client;
mod common;
mod connection;
#[doc(hidden)]
pub mod framing;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // trainbox patch 4: open client connections, and a condvar signalled
    // when one closes
    open_connections: Arc<(Mutex<usize>, Condvar)>,

    // trainbox patch 5: dropped with the server, which wakes the accept
    // thread (its peer becomes readable) so that it ends
    #[cfg(unix)]
    _stop_waker: std::os::unix::net::UnixStream,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

/// One open client connection, counted against the limit until dropped.
struct ConnectionSlot(Arc<(Mutex<usize>, Condvar)>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let (count, freed) = &*self.0;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

/// trainbox patches 4–8: how each client connection is bounded.
///
/// The defaults keep a slow or silent client from holding a connection
/// for long; an application that knows its clients should set its own.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// Client connections open at once; at the limit new clients wait in
    /// the listen backlog (patch 4).
    pub max_connections: usize,
    /// How long a connection may stay silent waiting for its next request
    /// (counted from the end of the previous response); then it is closed
    /// without an answer. `None`: for ever.
    pub idle_timeout: Option<Duration>,
    /// How long a client has to send a whole request head, counted from
    /// its first byte, however slowly the bytes trickle; then 408 and the
    /// connection closes. Also the grace before `body_min_rate` applies.
    pub header_timeout: Option<Duration>,
    /// The slowest a request body may arrive, in bytes per second, after a
    /// grace of `header_timeout`; slower bodies get 408. `None`: no limit.
    pub body_min_rate: Option<u64>,
    /// Bodies up to this many bytes are read by the connection's thread
    /// before the request is handed out, so a slow body never holds a
    /// thread of the application. Larger bodies stream to the application.
    pub buffered_body_limit: usize,
    /// How long one write to the client may block (`SO_SNDTIMEO`): a
    /// client that stops reading is dropped after this. `None`: for ever.
    pub write_timeout: Option<Duration>,
    /// The response tiny_http sends on its own when it refuses a request
    /// (malformed, too large, too slow), given the status and a short
    /// reason in English. tiny_http adds `Connection: close`.
    pub error_response: fn(StatusCode, &str) -> Response<std::io::Cursor<Vec<u8>>>,
    /// trainbox patch 12: called on the connection's own thread with each
    /// request as soon as it is read. It answers the request itself and
    /// returns `None`, or returns it to be queued for `recv` as usual. For
    /// requests answered quickly from memory, this saves the hand-over to
    /// an application thread and back. `None`: every request is queued.
    pub inline_handler: Option<InlineHandler>,
}

/// A request handler run on a connection's own thread (see
/// [`ConnectionConfig::inline_handler`]).
pub type InlineHandler = Arc<dyn Fn(Request) -> Option<Request> + Send + Sync>;

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_connections: usize::MAX,
            idle_timeout: Some(Duration::from_secs(60)),
            header_timeout: Some(Duration::from_secs(30)),
            body_min_rate: Some(1024),
            buffered_body_limit: 1024,
            write_timeout: Some(Duration::from_secs(60)),
            error_response: |status, _reason| {
                Response::from_data(Vec::new()).with_status_code(status)
            },
            inline_handler: None,
        }
    }
}

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("body_min_rate", &self.body_min_rate)
            .field("buffered_body_limit", &self.buffered_body_limit)
            .field("write_timeout", &self.write_timeout)
            .field("inline_handler", &self.inline_handler.is_some())
            .finish()
    }
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_config(listener, ssl_config, ConnectionConfig::default())
    }

    /// trainbox patches 4–8: like `from_listener`, with each client
    /// connection bounded as `connections` says (how many at once, the
    /// timeouts, the bodies read ahead, the answer to refused requests).
    pub fn from_listener_with_config<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        connections: ConnectionConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let max_connections = connections.max_connections.max(1);
        let connections = Arc::new(connections);
        let open_connections = Arc::new((Mutex::new(0usize), Condvar::new()));
        let server_connections = open_connections.clone();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };
        // trainbox patch 5: the accept thread waits for a client or for
        // the server to be dropped, never inside `accept(2)`.
        #[cfg(unix)]
        let (stop_waker, stop_signal) = std::os::unix::net::UnixStream::pair()?;
        #[cfg(unix)]
        server.set_nonblocking()?;

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let messages_on_panic = messages.clone();
        // trainbox patch 3: whatever panics in the accept thread is reported
        // as an error, as an accept error is, so the application can start
        // a new server instead of waiting on a dead one forever.
        thread::spawn(move || {
            let accept_loop = std::panic::AssertUnwindSafe(move || {
                // a tasks pool is used to dispatch the connections into threads
                let tasks_pool = util::TaskPool::new();
                let mut backoff = accept::Backoff::default();

                log::debug!("Running accept thread");
                while !inside_close_trigger.load(Relaxed) {
                    {
                        let (count, freed) = &*open_connections;
                        let mut open = count.lock().unwrap_or_else(|e| e.into_inner());
                        while *open >= max_connections && !inside_close_trigger.load(Relaxed) {
                            open = freed
                                .wait_timeout(open, std::time::Duration::from_millis(100))
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                    #[cfg(unix)]
                    match accept::wait(&server, &stop_signal) {
                        Ok(accept::Woken::Client) => {}
                        Ok(accept::Woken::Stop) => break,
                        Err(e) if accept::is_transient(&e) => continue,
                        Err(e) => {
                            log::error!("Error waiting for new clients: {}", e);
                            inside_messages.push(e.into());
                            break;
                        }
                    }
                    let sock = match server.accept() {
                        Ok((sock, _)) => {
                            backoff.succeeded();
                            sock
                        }
                        // trainbox patch 5: only a broken listener ends the loop.
                        // Aborted handshakes and spurious wake-ups are routine;
                        // running out of descriptors or memory passes, so wait a
                        // little (clients stay in the backlog) and go on.
                        Err(e) if accept::is_transient(&e) => continue,
                        Err(e) if accept::is_exhaustion(&e) => {
                            backoff.failed(&e);
                            continue;
                        }
                        Err(e) => {
                            log::error!("Error accepting new client: {}", e);
                            inside_messages.push(e.into());
                            break;
                        }
                    };
                    // trainbox patch 6: timeouts belong on each accepted socket;
                    // on the listener they would also time out accept(2).
                    if let Err(e) = accept::configure(&sock, &connections) {
                        log::debug!("dropping a client whose socket cannot be set up: {}", e);
                        continue;
                    }
                    let stream = match ssl {
                        None => crate::util::refined_tcp_stream::Stream::from(sock),
                        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                        Some(ref ssl) => {
                            // trying to apply SSL over the connection
                            // if an error occurs, we just close the socket and resume listening
                            match ssl.accept(sock) {
                                Ok(s) => s.into(),
                                Err(_) => continue,
                            }
                        }
                        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                        Some(ref _ssl) => unreachable!(),
                    };
                    let client = ClientConnection::new(
                        crate::util::refined_tcp_stream::Socket::new(stream),
                        Arc::clone(&connections),
                    );
                    *open_connections.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    let slot = ConnectionSlot(open_connections.clone());

                    let messages = inside_messages.clone();
                    let inline_handler = connections.inline_handler.clone();
                    let mut client = Some(client);
                    let mut slot = Some(slot);
                    tasks_pool.spawn(Box::new(move || {
                        let _slot = slot.take();
                        if let Some(client) = client.take() {
                            // trainbox patch 8: the connection hands out one
                            // request at a time, waiting for each response, so
                            // TLS needs no synchronisation of its own here.
                            for rq in client {
                                // trainbox patch 12: answered here, or queued.
                                let rq = match &inline_handler {
                                    Some(handle) => match handle(rq) {
                                        Some(rq) => rq,
                                        None => continue,
                                    },
                                    None => rq,
                                };
                                messages.push(rq.into());
                            }
                        }
                    }));
                }
                log::debug!("Terminating accept thread");
            });
            if std::panic::catch_unwind(accept_loop).is_err() {
                messages_on_panic
                    .push(IoError::new(IoErrorKind::Other, "the accept thread panicked").into());
            }
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            open_connections: server_connections,
            #[cfg(unix)]
            _stop_waker: stop_waker,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    /// (trainbox patch 4: counted; the original was `unimplemented!()`.)
    pub fn num_connections(&self) -> usize {
        *self
            .open_connections
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // trainbox patch 5: on Unix, dropping `_stop_waker` wakes the
        // accept thread. The original connected to its own listening
        // address instead, which blocks for minutes where a firewall
        // (systemd's IPAddressDeny=) drops the connection attempt.
        #[cfg(not(unix))]
        {
            // Connect briefly to ourselves to unblock the accept thread
            let maybe_stream = match &self.listening_addr {
                ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            };
            if let Ok(stream) = maybe_stream {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
