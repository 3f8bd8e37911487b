//! The server loop: tiny_http accepts and parses on a thread per
//! connection, a fixed pool of workers takes requests straight from
//! tiny_http's queue, and downloads and live streams move to threads of
//! their own so they never hold a worker. Requests answered from memory
//! (the job index) are answered on the connection's own thread, without
//! a hand-over (tiny_http patch 12).
//!
//! ```text
//! accept thread ─▶ connection threads ─▶ tiny_http queue ─▶ N workers ─▶ handlers
//!                        └─▶ index-served GETs                  └─▶ download / live thread
//! ```
//!
//! Each connection is bounded inside (vendored, patched) tiny_http: the
//! idle, head and body deadlines, the write timeout, strict framing, and
//! bodies up to [`BODY_MAX`] read on the connection's own thread before a
//! worker sees the request (`vendor/tiny_http/PATCHES.md`).
//!
//! tiny_http's accept loop survives passing errors (EMFILE, aborted
//! handshakes) by itself and ends only when the listener itself is broken
//! or its thread panicked. Should that happen, the supervisor (the thread
//! that called [`serve`]) builds a new tiny_http server on a clone of the
//! same listening socket, backing off while it fails, and drains the old
//! one until its connections are gone.

use std::io::{self, Cursor};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::auth;
use super::download;
use super::error::ApiError;
use super::guard;
use super::handlers::{self, Reply};
use super::live;
use super::request::HttpRequest;
use super::resolve;
use super::respond;
use super::router::{self, Route};
use crate::app::{App, BODY_MAX};

/// How often workers and the supervisor look at the stop flag, probes and
/// retired servers.
const POLL: Duration = Duration::from_millis(100);
/// A retired tiny_http server is dropped after this long without a request.
const RETIRE_AFTER: Duration = Duration::from_secs(600);

/// What the watchdog sends to prove the server answers: a channel on which
/// a worker reports whether a request went through the router and a
/// handler (which reads the job index).
pub type Probe = std::sync::mpsc::Sender<bool>;

/// The tiny_http server the workers take requests from, replaced by the
/// supervisor when its accept loop dies.
struct Accepting {
    current: RwLock<Arc<tiny_http::Server>>,
    /// Set by a worker that found the accept loop dead.
    broken: AtomicBool,
}

impl Accepting {
    fn current(&self) -> Arc<tiny_http::Server> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Serves `listener` until `stop` is set. Returns once the workers have
/// stopped; downloads in flight keep their own threads.
pub fn serve(
    app: Arc<App>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    probes: Receiver<Probe>,
) -> io::Result<()> {
    let accepting = Arc::new(Accepting {
        current: RwLock::new(Arc::new(new_http_server(&app, &listener)?)),
        broken: AtomicBool::new(false),
    });
    let probes = Arc::new(Mutex::new(probes));
    let mut workers = Vec::with_capacity(app.limits.workers);
    for index in 0..app.limits.workers.max(1) {
        let (app, accepting, stop, probes) = (
            Arc::clone(&app),
            Arc::clone(&accepting),
            Arc::clone(&stop),
            Arc::clone(&probes),
        );
        workers.push(
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || work(&app, &accepting, &stop, &probes))?,
        );
    }
    supervise(&app, &listener, &accepting, &stop);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn new_http_server(app: &Arc<App>, listener: &TcpListener) -> io::Result<tiny_http::Server> {
    let limits = &app.limits;
    let inline_app = Arc::clone(app);
    let connections = tiny_http::ConnectionConfig {
        max_connections: limits.max_connections,
        idle_timeout: Some(limits.read_timeout),
        header_timeout: Some(limits.header_timeout),
        body_min_rate: Some(BODY_MIN_RATE),
        buffered_body_limit: BODY_MAX,
        write_timeout: Some(limits.write_timeout),
        error_response: protocol_error,
        inline_handler: Some(Arc::new(move |request| answer_inline(&inline_app, request))),
    };
    tiny_http::Server::from_listener_with_config(listener.try_clone()?, None, connections)
        .map_err(io::Error::other)
}

/// Answers on the connection's own thread the requests served from memory
/// (the job index): the list, a job, its progress, `/healthz`. Everything
/// else, and anything with a body, goes to the workers.
fn answer_inline(app: &Arc<App>, request: Request) -> Option<Request> {
    let method = request.method().as_str();
    let bodiless = request.body_length().is_none_or(|n| n == 0)
        && !request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"));
    let from_memory = (method == "GET" || method == "HEAD")
        && bodiless
        && router::route(method, request.url()).is_ok_and(|m| {
            matches!(
                m.route,
                Route::Health | Route::ListJobs(_) | Route::Job(_) | Route::Progress(_)
            )
        });
    if !from_memory {
        return Some(request);
    }
    handle(app, request);
    None
}

/// The slowest a request body may arrive (after `--header-timeout`):
/// bodies are at most [`BODY_MAX`], so this leaves a legitimate client
/// seconds to spare and a trickling one no way to hold a connection long.
const BODY_MIN_RATE: u64 = 4096;

/// tiny_http's own refusals (malformed, oversized or too slow requests) as
/// JSON, like every other error.
fn protocol_error(
    status: tiny_http::StatusCode,
    reason: &str,
) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let mut detail = reason.to_owned();
    if let Some(first) = detail.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = tiny_http::Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(respond::header("Content-Type", "application/json"));
    for (name, value) in respond::browser_headers("application/json") {
        response.add_header(respond::header(name, value));
    }
    response
}

/// Until `stop`: replaces the tiny_http server when a worker finds its
/// accept loop dead (backing off while that fails), and answers what the
/// retired ones still deliver.
fn supervise(app: &Arc<App>, listener: &TcpListener, accepting: &Accepting, stop: &AtomicBool) {
    // Servers whose accept loop died, still delivering requests from the
    // connections they accepted, with the time of their last request.
    let mut retired: Vec<(Arc<tiny_http::Server>, Instant)> = Vec::new();
    let mut failures = 0u32;
    while !stop.load(Ordering::Acquire) {
        thread::sleep(POLL);
        if accepting.broken.load(Ordering::Acquire) {
            // Back off while the cause lasts, but answer a stop at once.
            let resume = Instant::now() + POLL * 2u32.pow(failures.min(6));
            while Instant::now() < resume && !stop.load(Ordering::Acquire) {
                thread::sleep(POLL.min(resume - Instant::now()));
            }
            match new_http_server(app, listener) {
                Ok(fresh) => {
                    log::info!("accept loop restarted");
                    app.metrics.accept_restarted();
                    let old = std::mem::replace(
                        &mut *accepting.current.write().unwrap_or_else(|e| e.into_inner()),
                        Arc::new(fresh),
                    );
                    retired.push((old, Instant::now()));
                    accepting.broken.store(false, Ordering::Release);
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    log::error!("cannot restart the accept loop yet: {e}");
                }
            }
        }
        retired.retain_mut(|(server, last)| {
            // Dropping a tiny_http server never blocks (patch 5).
            while let Ok(Some(request)) = server.try_recv() {
                *last = Instant::now();
                handle(app, request);
            }
            // Kept while its connections may still send requests.
            server.num_connections() > 0 && last.elapsed() < RETIRE_AFTER
        });
    }
}

/// A worker: takes requests from the current tiny_http server, and
/// answers the watchdog's probes between them.
fn work(app: &Arc<App>, accepting: &Accepting, stop: &AtomicBool, probes: &Mutex<Receiver<Probe>>) {
    while !stop.load(Ordering::Acquire) {
        let server = accepting.current();
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(app, request),
            Ok(None) => {}
            Err(e) => {
                if !accepting.broken.swap(true, Ordering::AcqRel) {
                    log::error!(
                        "the accept loop stopped ({e}); starting a new one on the same socket"
                    );
                }
                thread::sleep(POLL);
            }
        }
        // Answered by whichever worker is free: an answer proves one is.
        let probe = probes.try_lock().ok().and_then(|p| p.try_recv().ok());
        if let Some(reply) = probe {
            let _ = reply.send(self::probe(app));
        }
    }
}

/// A synthetic `GET /api/training/jobs` through the handler (which reads
/// the job index), answered into nowhere: true when it succeeded.
fn probe(app: &App) -> bool {
    let matched = router::Matched {
        route: Route::ListJobs(Default::default()),
        head: false,
    };
    let asked = HttpRequest::new("GET", "/api/training/jobs");
    matches!(
        handlers::dispatch(app, &asked, matched),
        Ok(Reply::JsonBytes(200, _))
    )
}

/// Answers one request; downloads and live streams continue on threads of
/// their own.
pub fn handle(app: &Arc<App>, mut request: Request) {
    let started = Instant::now();
    let mut asked = HttpRequest::head(&request);
    let (route, result) = answer(app, &mut asked, &mut request);
    let exchange = Exchange {
        asked,
        route,
        started,
    };
    match result {
        Ok(Reply::Json(status, body)) => {
            let bytes = respond::send_json(request, status, &body);
            exchange.finish(app, status, bytes);
        }
        Ok(Reply::JsonBytes(status, body)) => {
            let bytes = respond::send(request, status, "application/json", &[], body);
            exchange.finish(app, status, bytes);
        }
        Ok(Reply::Page {
            status,
            content_type,
            body,
            headers,
        }) => {
            let bytes = respond::send(request, status, content_type, &headers, body);
            exchange.finish(app, status, bytes);
        }
        Ok(Reply::Download(download)) => {
            spawn_download(app, exchange, request, move |app, asked, request| {
                download::serve(app, asked, request, download)
            })
        }
        Ok(Reply::File(file)) => {
            spawn_download(app, exchange, request, move |app, asked, request| {
                resolve::serve(app, asked, request, file)
            })
        }
        Ok(Reply::Live(live)) => spawn(app, "live", move |app| {
            let (status, bytes) = live::serve(app, request, live);
            exchange.finish(app, status, bytes);
        }),
        Err(error) => {
            let bytes = respond::send_error(request, &error);
            exchange.finish(app, error.status(), bytes);
        }
    }
}

/// Routes, checks and dispatches a request, reading its body for the
/// routes that take one: the route's name (for the metrics) and the reply
/// or the error to answer.
fn answer(
    app: &App,
    asked: &mut HttpRequest,
    request: &mut Request,
) -> (&'static str, Result<Reply, ApiError>) {
    // A declared body too large for any route is refused before anything.
    if request.body_length().is_some_and(|n| n > BODY_MAX) {
        return ("none", Err(ApiError::PayloadTooLarge));
    }
    let matched = match router::route(&asked.method, &asked.target) {
        Ok(matched) => matched,
        Err(e) => return ("none", Err(e.into())),
    };
    let name = matched.route.name();
    let checked = guard(app, asked, &matched.route).and_then(|()| authorize(app, asked, &matched));
    let result = match checked {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) if matched.route.takes_body() => asked
            .read_body(request, BODY_MAX)
            .and_then(|()| handlers::dispatch(app, asked, matched)),
        Ok(None) => handlers::dispatch(app, asked, matched),
        Err(e) => Err(e),
    };
    (name, result)
}

/// Checks the request's credentials against what the route needs. A
/// browser without them asking for the page gets the login form instead
/// (`Some`).
fn authorize(
    app: &App,
    asked: &mut HttpRequest,
    matched: &router::Matched,
) -> Result<Option<Reply>, ApiError> {
    let presented = auth::presented(asked.header_pairs().into_iter());
    let access = &app.access;
    let who = auth::who(access.tokens.as_ref(), &access.sessions, &presented);
    match auth::check(
        access.tokens.as_ref(),
        &access.sessions,
        &matched.route,
        &presented,
    ) {
        Err(ApiError::Unauthorized) if matched.route == Route::Index => {
            Ok(Some(handlers::login_page(false)))
        }
        Err(e) => Err(e),
        Ok(()) => {
            asked.who = who;
            Ok(None)
        }
    }
}

/// Runs `work` on a thread of its own. Should the thread not start, the
/// request goes down with the closure and tiny_http answers 500.
fn spawn(app: &Arc<App>, name: &str, work: impl FnOnce(&App) + Send + 'static) {
    let app = Arc::clone(app);
    if let Err(e) = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || work(&app))
    {
        log::error!("cannot start a {name} thread: {e}");
    }
}

/// The browser checks of `http::guard`, on the request's headers.
fn guard(app: &App, asked: &HttpRequest, route: &Route) -> Result<(), ApiError> {
    app.access.browser.check(&guard::Request {
        method: &asked.method,
        route,
        host: asked.header("Host"),
        origins: &asked.header_all("Origin"),
        content_type: asked.header("Content-Type"),
        has_body: asked.declares_body,
    })
}

/// Streams a download on a thread of its own, then counts it, records it
/// in the audit and logs it.
fn spawn_download(
    app: &Arc<App>,
    exchange: Exchange,
    request: Request,
    serve: impl FnOnce(&App, &HttpRequest, Request) -> download::Sent + Send + 'static,
) {
    spawn(app, "download", move |app| {
        app.changes.ring();
        let sent = serve(app, &exchange.asked, request);
        app.changes.ring();
        app.metrics.download(sent.outcome.label(), sent.bytes);
        download::audit(
            app,
            &exchange.asked,
            &sent,
            exchange.started.elapsed().as_secs_f64(),
        );
        exchange.finish(app, sent.status, sent.bytes);
    });
}

/// A request on its way to the access log and the metrics.
struct Exchange {
    asked: HttpRequest,
    /// The route's name, the metrics' `route` label.
    route: &'static str,
    started: Instant,
}

impl Exchange {
    fn finish(&self, app: &App, status: u16, bytes: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        app.metrics.request(self.route, status, seconds);
        access_log(&self.asked, status, bytes, self.started);
    }
}

/// One line per request: method, target (token redacted), status, bytes,
/// duration, client.
fn access_log(asked: &HttpRequest, status: u16, bytes: u64, started: Instant) {
    // Formatting costs more than the rest of a small request: only when kept.
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let client = asked.peer.map_or_else(|| "-".to_owned(), |c| c.to_string());
    log::info!(
        target: "access",
        "{} {} {status} {bytes}B {:.1}ms {client}",
        crate::text::escape_controls(&asked.method),
        crate::text::escape_controls(&redact_token(&asked.target)),
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// The target with any `token=` query value replaced, so secrets never
/// reach the log.
fn redact_token(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    if !query.split('&').any(|p| p.starts_with("token=")) {
        return target.into();
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=REDACTED"
            } else {
                p
            }
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(
            redact_token("/a?token=read:s3cret&x=1"),
            "/a?token=REDACTED&x=1"
        );
        assert_eq!(redact_token("/a?x=1"), "/a?x=1");
        assert_eq!(redact_token("/a"), "/a");
    }
}
