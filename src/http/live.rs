//! Live progress: the same events as Server-Sent Events and over a
//! WebSocket, each stream on its own thread (counted against
//! `--max-streams`).
//!
//! An event is the job's progress document (`GET .../progress`) with a
//! `type`; one is sent at the start and whenever the document changes (the
//! job index wakes the stream on a change; it looks at least every
//! [`POLL`] besides). The stream ends with an `end` event
//! once the job reaches a final status, when the server stops, or after
//! [`MAX_STREAM`]; a dead client is noticed at the next write (a heartbeat
//! every 15 seconds makes sure there is one).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiny_http::{Header, Request, Response};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Message, handshake::derive_accept_key};

use super::error::ApiError;
use super::headers;
use super::request::HttpRequest;
use super::respond::{ChunkedWriter, Framing, write_head};
use crate::app::{App, Slot};
use crate::names::JobId;

/// The longest a stream waits for a change before it looks again (for a
/// heartbeat, the server stopping); a WebSocket also reads its client's
/// frames this often.
const POLL: Duration = Duration::from_millis(250);
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

/// Follows one job through the index: yields an event when its progress
/// document changes.
struct Follower {
    job: JobId,
    /// The index generation last looked at.
    seen: u64,
    last: Option<Value>,
    last_sent: Instant,
    started: Instant,
}

impl Follower {
    fn new(job: JobId) -> Follower {
        Follower {
            job,
            seen: 0,
            last: None,
            last_sent: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Waits up to `timeout` for the index to change (returns at once if
    /// it changed since the last look).
    fn wait(&mut self, app: &App, timeout: Duration) {
        self.seen = app.index.wait_for_change(self.seen, timeout);
    }

    /// Looks at the job once: what to send now, if anything.
    fn poll(&mut self, app: &App) -> Option<Next> {
        self.seen = app.index.generation();
        // A job removed while followed ends its stream with what was last seen.
        let Some(entry) = app.index.job(&self.job) else {
            let mut body = self.last.clone().unwrap_or_else(|| json!({}));
            body["type"] = json!("end");
            return Some(Next::End(body));
        };
        let (mut body, status) = (entry.progress_json(), entry.status);
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

/// A live stream that passed its checks and holds a stream slot.
pub struct Live {
    job: JobId,
    kind: Kind,
    _slot: Slot,
}

enum Kind {
    /// Server-Sent Events (`/api/training/{job_id}/events`).
    Events,
    /// A WebSocket (`/ws/training/{job_id}`), with the client's key.
    WebSocket(String),
}

/// What admission gives: a stream to start, or (for `HEAD`) only the
/// headers a stream would start with.
pub enum Admitted {
    Stream(Live),
    HeadOnly,
}

/// `GET /api/training/{job_id}/events` and `GET /ws/training/{job_id}`:
/// the job must exist, a WebSocket must be a proper handshake (checked
/// before a slot is taken), and a stream slot must be free.
pub fn admit(
    app: &App,
    asked: &HttpRequest,
    id: &JobId,
    websocket: bool,
    head: bool,
) -> Result<Admitted, ApiError> {
    let job = app.index.job(id).ok_or(ApiError::JobNotFound)?.id.clone();
    let kind = if websocket {
        let pairs = asked.header_pairs();
        let key = headers::websocket_key(&pairs)
            .ok_or_else(|| ApiError::BadRequest("Expected a WebSocket handshake".into()))?;
        Kind::WebSocket(key.to_owned())
    } else {
        Kind::Events
    };
    if head {
        return Ok(Admitted::HeadOnly);
    }
    let slot = app
        .streams
        .try_acquire(app.limits.max_streams)
        .ok_or(ApiError::Unavailable(
            "Too many live streams; try again shortly",
        ))?;
    Ok(Admitted::Stream(Live {
        job,
        kind,
        _slot: slot,
    }))
}

/// Streams `live` to `request`; runs on the stream's own thread. Returns
/// the status and bytes for the access log.
pub fn serve(app: &App, request: Request, live: Live) -> (u16, u64) {
    match &live.kind {
        Kind::Events => events(app, request, live.job),
        Kind::WebSocket(key) => websocket(app, request, live.job, key),
    }
}

fn events(app: &App, request: Request, job: JobId) -> (u16, u64) {
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
                follower.wait(app, POLL);
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

fn websocket(app: &App, request: Request, job: JobId, key: &str) -> (u16, u64) {
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
    // A close frame with a status and a reason: clients see 1000, not 1005.
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "the job ended or the server is stopping".into(),
    }));
    let _ = ws.flush();
    (101, sent)
}
