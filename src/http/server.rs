//! The server loop: tiny_http accepts and parses, a dispatcher hands each
//! request to a fixed pool of workers, and downloads move to threads of
//! their own so they never hold a worker.
//!
//! ```text
//! tiny_http accept thread ─▶ dispatcher ─▶ bounded queue ─▶ N workers ─▶ handlers
//!                                                              └─▶ download thread (≤ --max-downloads)
//! ```
//!
//! Each connection is bounded inside (vendored, patched) tiny_http: the
//! idle, head and body deadlines, the write timeout, strict framing, and
//! bodies up to [`BODY_MAX`] read on the connection's own thread before a
//! worker sees the request (`vendor/tiny_http/PATCHES.md`).
//!
//! tiny_http's accept loop now survives passing errors (EMFILE, aborted
//! handshakes) by itself and ends only when the listener itself is broken
//! or its thread panicked. Should that happen, the dispatcher builds a new
//! tiny_http server on a clone of the same listening socket, backing off
//! while it fails, and keeps draining the old one until its connections
//! are gone.

use std::io::{self, Cursor};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
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
use super::respond;
use super::router::{self, Route};
use crate::app::{App, BODY_MAX, Limits};

/// Requests waiting for a worker; past this the dispatcher waits, and
/// tiny_http's own queue and the listen backlog absorb the burst.
const QUEUE_DEPTH: usize = 256;
/// How often the dispatcher looks at the stop flag and retired servers.
const POLL: Duration = Duration::from_millis(100);
/// A retired tiny_http server is dropped after this long without a request.
const RETIRE_AFTER: Duration = Duration::from_secs(600);

/// Serves `listener` until `stop` is set. Returns once the dispatcher and
/// workers have stopped; downloads in flight keep their own threads.
/// What the watchdog sends to prove the server answers: a channel on which
/// a worker reports whether a request went through the router and a
/// handler (which reads the store).
pub type Probe = std::sync::mpsc::Sender<bool>;

/// What the workers take from the queue.
enum Work {
    Request(Request),
    Probe(Probe),
}

/// Serves `listener` until `stop` is set. Returns once the dispatcher and
/// workers have stopped; downloads in flight keep their own threads.
pub fn serve(
    app: Arc<App>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    probes: Receiver<Probe>,
) -> io::Result<()> {
    let (queue, jobs) = sync_channel::<Work>(QUEUE_DEPTH);
    let jobs = Arc::new(Mutex::new(jobs));
    let mut workers = Vec::with_capacity(app.limits.workers);
    for index in 0..app.limits.workers.max(1) {
        let (app, jobs) = (Arc::clone(&app), Arc::clone(&jobs));
        workers.push(
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || work(&app, &jobs))?,
        );
    }
    dispatch(&app, &listener, &queue, &stop, &probes)?;
    drop(queue);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn new_http_server(listener: &TcpListener, limits: &Limits) -> io::Result<tiny_http::Server> {
    let connections = tiny_http::ConnectionConfig {
        max_connections: limits.max_connections,
        idle_timeout: Some(limits.read_timeout),
        header_timeout: Some(limits.header_timeout),
        body_min_rate: Some(BODY_MIN_RATE),
        buffered_body_limit: BODY_MAX,
        write_timeout: Some(limits.write_timeout),
        error_response: protocol_error,
    };
    tiny_http::Server::from_listener_with_config(listener.try_clone()?, None, connections)
        .map_err(io::Error::other)
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

/// Moves requests from tiny_http to the worker queue until `stop` is set.
fn dispatch(
    app: &App,
    listener: &TcpListener,
    queue: &SyncSender<Work>,
    stop: &AtomicBool,
    probes: &Receiver<Probe>,
) -> io::Result<()> {
    let mut current = new_http_server(listener, &app.limits)?;
    // Servers whose accept loop died, still delivering requests from the
    // connections they accepted, with the time of their last request.
    let mut retired: Vec<(tiny_http::Server, Instant)> = Vec::new();
    let mut failures = 0u32;
    // Set when `current`'s accept loop has died and a new one is due.
    let mut broken = false;
    while !stop.load(Ordering::Acquire) {
        if broken {
            // Back off while the cause lasts, but answer a stop at once.
            let pause = POLL * 2u32.pow(failures.min(6));
            let resume = Instant::now() + pause;
            while Instant::now() < resume && !stop.load(Ordering::Acquire) {
                thread::sleep(POLL.min(resume - Instant::now()));
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            match new_http_server(listener, &app.limits) {
                Ok(fresh) => {
                    log::info!("accept loop restarted");
                    app.metrics.accept_restarted();
                    // Dropping a tiny_http server never blocks (patch 5).
                    let old = std::mem::replace(&mut current, fresh);
                    retired.push((old, Instant::now()));
                    broken = false;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    log::error!("cannot restart the accept loop yet: {e}");
                }
            }
        }
        match current.recv_timeout(POLL) {
            Ok(Some(request)) => {
                if queue.send(Work::Request(request)).is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                failures += 1;
                broken = true;
                log::error!("the accept loop stopped ({e}); starting a new one on the same socket");
            }
        }
        // Probes take the path requests take, so an answer proves this
        // loop and the workers are alive.
        while let Ok(probe) = probes.try_recv() {
            let _ = queue.send(Work::Probe(probe));
        }
        retired.retain_mut(|(server, last)| {
            while let Ok(Some(request)) = server.try_recv() {
                *last = Instant::now();
                if queue.send(Work::Request(request)).is_err() {
                    return false;
                }
            }
            // Kept while its connections may still send requests.
            server.num_connections() > 0 && last.elapsed() < RETIRE_AFTER
        });
    }
    Ok(())
}

fn work(app: &Arc<App>, jobs: &Mutex<Receiver<Work>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match next {
            Ok(Work::Request(request)) => handle(app, request),
            Ok(Work::Probe(reply)) => {
                let _ = reply.send(probe(app));
            }
            Err(_) => return, // the dispatcher is gone
        }
    }
}

/// A synthetic `GET /api/training/jobs` through the handler (which lists
/// the store), answered into nowhere: true when it succeeded.
fn probe(app: &App) -> bool {
    let matched = router::Matched {
        route: Route::ListJobs(Default::default()),
        head: false,
    };
    let asked = HttpRequest::new("GET", "/api/training/jobs");
    matches!(
        handlers::dispatch(app, &asked, matched),
        Ok(Reply::Json(200, _))
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
        Ok(Reply::Page {
            status,
            content_type,
            body,
            headers,
        }) => {
            let bytes = respond::send(request, status, content_type, &headers, body);
            exchange.finish(app, status, bytes);
        }
        Ok(Reply::Download(download)) => spawn(app, "download", move |app| {
            app.changes.ring();
            let sent = download::serve(app, &exchange.asked, request, download);
            app.changes.ring();
            app.metrics.download(sent.outcome.label(), sent.bytes);
            exchange.finish(app, sent.status, sent.bytes);
        }),
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
    asked: &HttpRequest,
    matched: &router::Matched,
) -> Result<Option<Reply>, ApiError> {
    let presented = auth::presented(asked.header_pairs().into_iter());
    let access = &app.access;
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
        Ok(()) => Ok(None),
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
