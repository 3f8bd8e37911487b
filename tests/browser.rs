//! What a web page on another site, or behind a rebinding DNS name, can
//! make a browser do to the box: nothing. And the headers that keep the
//! page itself from being framed, sniffed or injected.
#![allow(clippy::disallowed_methods)] // fixtures live on the ambient filesystem

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn noop_root(tag: &str) -> TempDir {
    let root = TempDir::new(tag);
    make_job(root.path(), "j1");
    write(
        root.path(),
        "recipes.json",
        r#"{"recipes": {"noop": {"command": ["/bin/sleep", "30"]}}}"#,
    );
    root
}

/// One request as raw bytes: `extra` header lines, and a body.
fn send(server: &Server, head: &str, extra: &str, body: &str) -> Reply {
    raw(
        server.addr,
        &format!(
            "{head} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        ),
    )
}

fn jobs_started(root: &TempDir) -> usize {
    fs::read_dir(root.path().join("jobs")).unwrap().count() - 1 // j1 is a fixture
}

#[test]
fn another_site_cannot_start_or_control_jobs_without_tokens() {
    let root = noop_root("cross-site");
    let server = Server::start(root.path(), &[]);
    let job = r#"{"recipe": "noop"}"#;
    // The "simple request" a page on any site can send without a preflight.
    let forged = send(
        &server,
        "POST /api/training/jobs",
        "Origin: https://evil.example\r\nContent-Type: text/plain\r\n",
        job,
    );
    assert_eq!(
        forged.status,
        403,
        "{}",
        String::from_utf8_lossy(&forged.body)
    );
    assert_eq!(forged.detail(), "Cross-origin request refused");
    // Without an Origin (not a browser), text/plain is still not JSON.
    let typed = send(
        &server,
        "POST /api/training/jobs",
        "Content-Type: text/plain\r\n",
        job,
    );
    assert_eq!(typed.status, 415);
    assert_eq!(typed.detail(), "The request body must be application/json");
    // Bodiless control from another site, and another port of this host.
    for origin in [
        "https://evil.example",
        &format!("http://127.0.0.1:{}", server.addr.port() + 1),
    ] {
        let pause = send(
            &server,
            "POST /api/training/j1/cancel",
            &format!("Origin: {origin}\r\n"),
            "",
        );
        assert_eq!(pause.status, 403, "{origin}");
    }
    assert_eq!(jobs_started(&root), 0, "no job was created");
    // The page itself (same origin) and curl (no Origin) still work.
    let own = send(
        &server,
        "POST /api/training/jobs",
        &format!(
            "Origin: http://{}\r\nContent-Type: application/json\r\n",
            server.addr
        ),
        job,
    );
    assert_eq!(own.status, 201, "{}", String::from_utf8_lossy(&own.body));
    let id = own.json()["id"].as_str().unwrap().to_owned();
    let bodiless = send(&server, &format!("POST /api/training/{id}/cancel"), "", "");
    assert_eq!(
        bodiless.status, 200,
        "curl -X POST .../cancel keeps working"
    );
    // Two Origin headers are one too many.
    let two = send(
        &server,
        "POST /api/training/j1/pause",
        "Origin: https://evil.example\r\nOrigin: http://localhost\r\n",
        "",
    );
    assert_eq!(two.status, 400);
}

#[test]
fn dns_rebinding_gets_421_for_every_route() {
    let root = noop_root("rebinding");
    let server = Server::start(root.path(), &["--allowed-host", "box.example"]);
    for path in [
        "/",
        "/api/training/jobs",
        "/api/training/j1/download/model",
        "/api/training/j1/events",
        "/ws/training/j1",
    ] {
        let reply = raw(
            server.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: rebind.evil.example:8000\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(reply.status, 421, "{path}");
        assert!(reply.detail().contains("--allowed-host"), "{path}");
    }
    for host in ["localhost:8000", "box.example", "127.0.0.1", "[::1]:8000"] {
        let reply = raw(
            server.addr,
            &format!(
                "GET /api/training/jobs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(reply.status, 200, "{host}");
    }
}

/// Opens a WebSocket handshake with `origin`; returns the status line.
fn websocket_status(server: &Server, origin: &str) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /ws/training/j1 HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn live_streams_open_only_for_our_own_origin() {
    let root = noop_root("ws-origin");
    let server = Server::start(root.path(), &[]);
    assert!(websocket_status(&server, "https://evil.example").starts_with("HTTP/1.1 403"));
    assert!(
        websocket_status(
            &server,
            &format!("http://localhost:{}", server.addr.port() + 1)
        )
        .starts_with("HTTP/1.1 403")
    );
    assert!(
        websocket_status(&server, &format!("http://{}", server.addr)).starts_with("HTTP/1.1 101")
    );
    let sse = get_with(
        &server.url("/api/training/j1/events"),
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(sse.status, 403);
}

const CONTROL: &str = "control-token-0123456789abcdef";

fn login(server: &Server, origin: Option<&str>, token: &str) -> Reply {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    send(
        server,
        "POST /login",
        &format!("{origin}Content-Type: application/x-www-form-urlencoded\r\n"),
        &format!("token={token}"),
    )
}

#[test]
fn logins_are_rate_limited_and_same_origin() {
    let root = noop_root("login");
    write(root.path(), "tokens", format!("control:{CONTROL}\n"));
    let tokens = root.path().join("tokens");
    let server = Server::start(root.path(), &["--token-file", tokens.to_str().unwrap()]);
    // Login CSRF: another site cannot sign the browser in to its session.
    assert_eq!(
        login(&server, Some("https://evil.example"), CONTROL).status,
        403
    );
    let ours = format!("http://{}", server.addr);
    assert_eq!(login(&server, Some(&ours), CONTROL).status, 303);
    // Guessing: ten tries a minute per address, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(login(&server, Some(&ours), &format!("wrong-token-{i:012}")).status);
    }
    assert_eq!(&statuses[..9], &[401; 9], "{statuses:?}");
    assert_eq!(&statuses[9..], &[429; 3], "{statuses:?}");
    let limited = login(&server, Some(&ours), CONTROL);
    assert_eq!(limited.status, 429, "even the right token waits");
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(limited.detail().contains("Too many login attempts"));
}

#[test]
fn responses_carry_headers_that_keep_the_page_whole() {
    let root = noop_root("headers");
    let server = Server::start(root.path(), &[]);
    let page = get(&server.url("/"));
    let csp = page.header("content-security-policy").unwrap().to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(
        html.contains(r#"<script src="/ui/app.js" defer></script>"#),
        "{html}"
    );
    assert!(
        !html.contains("<style") && !html.contains("onclick") && !html.contains(" style="),
        "{html}"
    );
    // Every <script> has a src: nothing inline.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count()
    );
    let script = get(&server.url("/ui/app.js"));
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        !String::from_utf8_lossy(&script.body).contains("innerHTML"),
        "text goes in as text nodes"
    );
    // The page sends no referrer to other sites (and its own posts keep
    // their Origin); API answers send none at all.
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    for reply in [
        &page,
        &get(&server.url("/api/training/jobs")),
        &get(&server.url("/api/training/nope/progress")),
    ] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        if reply.header("content-type") == Some("application/json") {
            assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        }
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert!(
            reply
                .header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
    let download = head(&server.url("/api/training/j1/download/model"));
    assert_eq!(download.header("x-content-type-options"), Some("nosniff"));
    assert!(
        download
            .header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
}

#[test]
fn an_allowed_origin_is_a_proxys() {
    let root = noop_root("proxy-origin");
    let server = Server::start(
        root.path(),
        &[
            "--allowed-host",
            "train.example.org",
            "--allowed-origin",
            "https://train.example.org",
        ],
    );
    let reply = raw(
        server.addr,
        "POST /api/training/j1/pause HTTP/1.1\r\nHost: train.example.org\r\n\
         Origin: https://train.example.org\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        reply.status, 409,
        "past the guard: an external job cannot be paused"
    );
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--root",
            root.path().to_str().unwrap(),
            "--allowed-origin",
            "train.example.org",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected scheme://host[:port]"));
}
