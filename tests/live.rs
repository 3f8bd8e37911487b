//! Live progress over Server-Sent Events and a WebSocket: an event at the
//! start, one per change, and an end event when the job finishes.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn progress(root: &std::path::Path, step: u64) {
    write(
        root,
        "jobs/j1/progress.json",
        format!("{{\"step\": {step}, \"total_steps\": 100, \"loss\": 0.5}}"),
    );
}

/// Reads SSE events (event name, data) until `count` have arrived.
fn sse_events(reader: &mut impl BufRead, count: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut event = String::new();
    let mut line = String::new();
    while out.len() < count {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            out.push((event.clone(), serde_json::from_str(data).unwrap()));
        }
    }
    out
}

#[test]
fn server_sent_events_follow_the_job_to_its_end() {
    let root = TempDir::new("sse");
    progress(root.path(), 1);
    let server = Server::start(root.path(), &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            b"GET /api/training/j1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    // The body is chunked; event lines arrive inside the chunks, so reading
    // lines and skipping the chunk-size lines is enough here.
    let first = sse_events(&mut reader, 1);
    assert_eq!(first[0].0, "progress");
    assert_eq!(first[0].1["step"], 1);
    assert_eq!(first[0].1["status"], "running");
    progress(root.path(), 2);
    let second = sse_events(&mut reader, 1);
    assert_eq!(
        (second[0].0.as_str(), second[0].1["step"].as_u64()),
        ("progress", Some(2))
    );
    write(
        root.path(),
        "jobs/j1/job.json",
        r#"{"id":"j1","recipe":"x","status":"completed","created_at":"2026-01-01T00:00:00.000Z"}"#,
    );
    let end = sse_events(&mut reader, 1);
    assert_eq!(end[0].0, "end");
    assert_eq!(end[0].1["status"], "completed");
    // And the chunked body ends (the connection itself stays open).
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed before the last chunk"
        );
        if line == "0\r\n" {
            break;
        }
    }
}

#[test]
fn a_websocket_gets_the_same_events() {
    let root = TempDir::new("ws");
    progress(root.path(), 5);
    let server = Server::start(root.path(), &[]);
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, response) =
        tungstenite::client(format!("ws://{}/ws/training/j1", server.addr), stream).unwrap();
    assert_eq!(response.status().as_u16(), 101);
    let next = |ws: &mut tungstenite::WebSocket<TcpStream>| -> Value {
        loop {
            match ws.read().unwrap() {
                tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                _ => continue, // pings
            }
        }
    };
    let first = next(&mut ws);
    assert_eq!(
        (first["type"].as_str(), first["step"].as_u64()),
        (Some("progress"), Some(5))
    );
    progress(root.path(), 6);
    let second = next(&mut ws);
    assert_eq!(second["step"], 6);
    ws.close(None).unwrap();
    // A plain GET is not a handshake.
    let reply = raw_get(server.addr, "/ws/training/j1");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.detail(), "Expected a WebSocket handshake");
    assert_eq!(raw_get(server.addr, "/ws/training/nope").status, 404);
}

#[test]
fn live_streams_are_bounded() {
    let root = TempDir::new("streams");
    progress(root.path(), 1);
    let server = Server::start(root.path(), &["--max-streams", "1"]);
    let mut open = TcpStream::connect(server.addr).unwrap();
    open.write_all(b"GET /api/training/j1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(open.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"));
    let reply = get(&server.url("/api/training/j1/events"));
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(get(&server.url("/api/training/nope/events")).status, 404);
}
