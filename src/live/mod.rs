//! Live progress: the same events as Server-Sent Events and over a
//! WebSocket, each stream on its own thread (counted against
//! `--max-streams`).
//!
//! An event is the job's progress document (`GET .../progress`) with a
//! `type`; one is sent at the start and whenever the document changes (the
//! files are looked at every second). The stream ends with an `end` event
//! once the job reaches a final status, when the server stops, or after
//! [`MAX_STREAM`]; a dead client is noticed at the next write (a heartbeat
//! every 15 seconds makes sure there is one).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiny_http::{Header, Request, Response};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Message, handshake::derive_accept_key};

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::handlers::{Live, LiveKind, progress_body};
use crate::http::respond::{self, ChunkedWriter, Framing, write_head};
use crate::store::JobDir;

/// How often the job's files are looked at.
const POLL: Duration = Duration::from_secs(1);
/// How often something is sent even when nothing changed.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest a stream lives; clients reconnect (EventSource does so by itself).
pub const MAX_STREAM: Duration = Duration::from_secs(6 * 3600);

/// What a stream sends next.
enum Next {
    Event(Value),
    Heartbeat,
    End(Value),
}

/// Follows one job: yields an event when its progress document changes.
struct Follower {
    job: JobDir,
    last: Option<Value>,
    last_sent: Instant,
    started: Instant,
}

impl Follower {
    fn new(job: JobDir) -> Follower {
        Follower {
            job,
            last: None,
            last_sent: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Looks at the job once: what to send now, if anything.
    fn poll(&mut self, app: &App) -> Option<Next> {
        let (mut body, status) = progress_body(app, &self.job);
        if status.is_final()
            || app.stopping.load(Ordering::Acquire)
            || self.started.elapsed() > MAX_STREAM
        {
            body["type"] = json!("end");
            return Some(Next::End(body));
        }
        if self.last.as_ref() != Some(&body) {
            self.last = Some(body.clone());
            self.last_sent = Instant::now();
            body["type"] = json!("progress");
            return Some(Next::Event(body));
        }
        if self.last_sent.elapsed() >= HEARTBEAT {
            self.last_sent = Instant::now();
            return Some(Next::Heartbeat);
        }
        None
    }
}

/// Streams `live` to `request`; runs on the stream's own thread. Returns
/// the status and bytes for the access log.
pub fn serve(app: &App, request: Request, live: Live) -> (u16, u64) {
    let Live {
        job,
        kind,
        slot: _slot,
    } = live;
    match kind {
        LiveKind::Events => events(app, request, job),
        LiveKind::WebSocket => websocket(app, request, job),
    }
}

fn events(app: &App, request: Request, job: JobDir) -> (u16, u64) {
    let headers = [
        ("Content-Type", "text/event-stream".to_owned()),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let mut writer = request.into_writer();
    let Ok(head) = write_head(&mut writer, 200, &headers, Some(Framing::Chunked)) else {
        return (200, 0);
    };
    let mut out = ChunkedWriter::new(BufWriter::new(writer));
    let mut sent = head;
    let mut follower = Follower::new(job);
    let result: io::Result<()> = (|| loop {
        let text = match follower.poll(app) {
            None => {
                thread::sleep(POLL);
                continue;
            }
            Some(Next::Event(event)) => format!("event: progress\ndata: {event}\n\n"),
            Some(Next::Heartbeat) => ": heartbeat\n\n".to_owned(),
            Some(Next::End(event)) => {
                let text = format!("event: end\ndata: {event}\n\n");
                out.write_all(text.as_bytes())?;
                out.flush()?;
                sent += text.len() as u64;
                return Ok(());
            }
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
        sent += text.len() as u64;
    })();
    if result.is_ok() {
        let _ = out.finish();
    }
    (200, sent)
}

/// The handshake headers of a WebSocket request, checked.
fn websocket_key(request: &Request) -> Result<String, ApiError> {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let upgrade = header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection =
        header("Connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    let version = header("Sec-WebSocket-Version").is_some_and(|v| v.trim() == "13");
    match header("Sec-WebSocket-Key") {
        Some(key) if upgrade && connection && version && !key.trim().is_empty() => {
            Ok(key.trim().to_owned())
        }
        _ => Err(ApiError::BadRequest(
            "Expected a WebSocket handshake".into(),
        )),
    }
}

fn websocket(app: &App, request: Request, job: JobDir) -> (u16, u64) {
    let key = match websocket_key(&request) {
        Ok(key) => key,
        Err(error) => return (400, respond::send_error(request, &error)),
    };
    let accept = Header::from_bytes("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()))
        .expect("base64 is a valid header value");
    let stream = request.upgrade("websocket", Response::empty(101).with_header(accept));
    // Reads wake up every POLL, so the loop can both watch the job and
    // answer pings and closes.
    if let Err(e) = stream.set_read_timeout(Some(POLL)) {
        log::warn!("websocket: cannot bound reads ({e}); closing");
        return (101, 0);
    }
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
    let mut follower = Follower::new(job);
    let mut sent = 0u64;
    loop {
        // Take what the client sent (ping, close) without waiting long.
        match ws.read() {
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (101, sent),
        }
        let (message, end) = match follower.poll(app) {
            None => continue, // the read above waited up to POLL
            Some(Next::Event(event)) => (Message::text(event.to_string()), false),
            Some(Next::Heartbeat) => (Message::Ping(Vec::new().into()), false),
            Some(Next::End(event)) => (Message::text(event.to_string()), true),
        };
        sent += message.len() as u64;
        if ws.send(message).is_err() {
            return (101, sent);
        }
        if end {
            break;
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    (101, sent)
}
