//! Hardening over a real server: tokens and roles on every route, the login
//! cookie, refusing an open non-loopback address, timeouts, idle floods,
//! descriptor exhaustion, oversized heads and bodies.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use trainbox::http::router::ENDPOINTS;

const READ: &str = "reader-token-0123456789abcdef";
const CONTROL: &str = "controller-token-0123456789abcdef";

fn token_root(tag: &str) -> TempDir {
    let root = TempDir::new(tag);
    write(
        root.path(),
        "tokens",
        format!("# test tokens\nread:{READ}\ncontrol:{CONTROL}\n"),
    );
    make_job(root.path(), "j1");
    write(
        root.path(),
        "recipes.json",
        r#"{"recipes": {"noop": {"command": ["/bin/true"]}}}"#,
    );
    root
}

fn with_tokens(root: &TempDir) -> Server {
    let file = root.path().join("tokens");
    Server::start(root.path(), &["--token-file", file.to_str().unwrap()])
}

/// Sends one request with optional extra header lines, returns the reply.
fn request(server: &Server, method: &str, path: &str, extra: &str) -> Reply {
    let (body, content_type) = match (method, path) {
        ("POST", "/login") => (
            "token=",
            "Content-Type: application/x-www-form-urlencoded\r\n",
        ),
        ("POST", _) => ("{}", "Content-Type: application/json\r\n"),
        _ => ("", ""),
    };
    raw(
        server.addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        ),
    )
}

/// Every endpoint of the router's table, with its names (and the
/// comparison's required query) filled in.
fn endpoints() -> Vec<(&'static str, String)> {
    ENDPOINTS
        .iter()
        .flat_map(|(methods, template)| {
            let mut path = template
                .replace("{job_id}", "j1")
                .replace("{name}", "checkpoint-1")
                .replace("{revision}", "main")
                .replace("{path}", "config.json");
            if path.ends_with("/compare") {
                path.push_str("?jobs=j1");
            }
            methods
                .split(", ")
                .map(move |m| (m, path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn no_route_but_healthz_answers_without_a_token() {
    let root = token_root("auth-walk");
    let server = with_tokens(&root);
    let mut walked = 0;
    for (method, path) in endpoints() {
        let reply = request(&server, method, &path, "");
        walked += 1;
        // Liveness, and the page's script and style (the login form needs
        // the style), are open.
        if path == "/healthz" || path.starts_with("/ui/") {
            assert_eq!(reply.status, 200, "{method} {path}");
            continue;
        }
        assert_eq!(reply.status, 401, "{method} {path} must need a token");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer"),
            "{method} {path}"
        );
        if method == "HEAD" {
            assert!(reply.body.is_empty());
        } else if path == "/" || path == "/login" {
            // Browsers get the login form, not the page.
            assert!(
                String::from_utf8_lossy(&reply.body).contains("<form"),
                "{method} {path}"
            );
            assert!(!String::from_utf8_lossy(&reply.body).contains("Start a job"));
        } else {
            assert_eq!(reply.detail(), "Not authenticated", "{method} {path}");
        }
        // A wrong token is no better.
        let wrong = request(
            &server,
            method,
            &path,
            "Authorization: Bearer not-a-real-token-000000\r\n",
        );
        assert!(wrong.status == 401, "{method} {path}: {}", wrong.status);
    }
    assert_eq!(walked, endpoints().len());
    assert!(walked >= 20, "every method of every route: {walked}");
}

#[test]
fn roles_decide_what_a_token_may_do() {
    let root = token_root("auth-roles");
    let server = with_tokens(&root);
    let read = format!("Authorization: Bearer {READ}\r\n");
    let control = format!("Authorization: Bearer {CONTROL}\r\n");
    for (method, path) in endpoints() {
        if matches!(path.as_str(), "/login" | "/logout" | "/healthz") || path.starts_with("/ui/") {
            continue;
        }
        // An event stream of a running job never ends: its head is enough.
        let method = if path.ends_with("/events") {
            "HEAD"
        } else {
            method
        };
        let as_reader = request(&server, method, &path, &read);
        let as_controller = request(&server, method, &path, &control);
        // Changing things, and the download audit, are for control.
        if method == "POST" || method == "DELETE" || path == "/api/training/downloads" {
            assert_eq!(
                as_reader.status, 403,
                "{method} {path}: read may not control"
            );
            if method != "HEAD" {
                assert_eq!(
                    as_reader.detail(),
                    "Not permitted for this token",
                    "{method} {path}"
                );
            }
        } else {
            assert!(
                ![401, 403].contains(&as_reader.status),
                "{method} {path}: {}",
                as_reader.status
            );
        }
        assert!(
            ![401, 403].contains(&as_controller.status),
            "{method} {path}: {}",
            as_controller.status
        );
    }
    let list = request(&server, "GET", "/api/training/jobs", &read);
    assert_eq!(list.json()["jobs"][0]["id"], "j1");
    let started = request(&server, "POST", "/api/training/jobs", &control);
    assert_eq!(started.status, 400, "past auth, the body is checked");
    assert_eq!(started.detail(), "'recipe' is required");
}

#[test]
fn the_web_page_works_through_a_session_cookie() {
    let root = token_root("auth-cookie");
    let server = with_tokens(&root);
    // A wrong token gets the form again.
    let form = |token: &str| {
        raw(
            server.addr,
            &format!(
                "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\ntoken={token}",
                server.addr,
                token.len() + 6
            ),
        )
    };
    let failed = form("wrong-token-0000000000");
    assert_eq!(failed.status, 401);
    assert!(String::from_utf8_lossy(&failed.body).contains("not valid"));
    let ok = form(CONTROL);
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/"));
    let set_cookie = ok.header("set-cookie").unwrap().to_owned();
    assert!(
        set_cookie.starts_with("trainbox_session=")
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && set_cookie.contains("Path=/")
            && set_cookie.contains("Max-Age=43200"),
        "{set_cookie}"
    );
    // The cookie holds a session id, never the token.
    assert!(!set_cookie.contains(CONTROL), "{set_cookie}");
    let cookie = format!("Cookie: {}\r\n", set_cookie.split(';').next().unwrap());
    // A token in a cookie is no session.
    let token_cookie = format!("Cookie: trainbox_session={CONTROL}\r\n");
    assert_eq!(
        request(&server, "GET", "/api/training/jobs", &token_cookie).status,
        401
    );

    let page = request(&server, "GET", "/", &cookie);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("Start a job"));
    // Browser downloads carry the cookie.
    let download = request(&server, "GET", "/api/training/j1/download/model", &cookie);
    assert_eq!(download.status, 200);
    assert_eq!(download.header("content-type"), Some("application/zip"));
    // The page's own POSTs carry a same-origin Origin; a foreign one is refused.
    let same = format!("{cookie}Origin: http://{}\r\n", server.addr);
    assert_eq!(
        request(&server, "POST", "/api/training/j1/pause", &same).status,
        409,
        "past auth: external job"
    );
    let foreign = format!("{cookie}Origin: https://evil.example\r\n");
    assert_eq!(
        request(&server, "POST", "/api/training/j1/pause", &foreign).status,
        403
    );
    // Logging out ends the session on the server, not just in the browser.
    let out = request(&server, "POST", "/logout", &cookie);
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        request(&server, "GET", "/api/training/jobs", &cookie).status,
        401
    );
}

#[test]
fn tokens_come_from_the_credentials_directory() {
    let root = token_root("auth-creds");
    let creds = root.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::copy(root.path().join("tokens"), creds.join("trainbox-tokens")).unwrap();
    let server = Server::start_with(
        root.path(),
        &["--token-file", "trainbox-tokens"],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
    );
    assert_eq!(
        request(&server, "GET", "/api/training/jobs", "").status,
        401
    );
    let read = format!("Authorization: Bearer {READ}\r\n");
    assert_eq!(
        request(&server, "GET", "/api/training/jobs", &read).status,
        200
    );
}

#[test]
fn an_open_non_loopback_address_is_refused() {
    let root = TempDir::new("open");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--root",
            root.path().to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without --token-file") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    // Said out loud, it starts.
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--root",
            root.path().to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let serving = std::io::BufRead::lines(stderr)
        .take(10)
        .any(|line| line.is_ok_and(|l| l.contains("serving")));
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving);
}

#[test]
fn idle_connections_do_not_stop_new_clients() {
    let root = TempDir::new("idle");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Some idle clients have sent half a request line, some nothing at all.
    for stream in idle.iter().step_by(2) {
        (&*stream).write_all(b"GET /api/tra").unwrap();
    }
    let started = Instant::now();
    let reply = get(&server.url("/api/training/jobs"));
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    eprintln!("served a new client in {took:?} with 500 idle connections open");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(idle);
}

#[test]
fn silent_clients_are_dropped_after_their_timeouts() {
    let root = TempDir::new("read-timeout");
    let server = Server::start(
        root.path(),
        &["--read-timeout", "1", "--header-timeout", "1"],
    );
    let wait_for_close = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = Instant::now();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "closed by the server"
        );
        reply
    };
    // Half a request head and then nothing: 408 once the head is overdue.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let reply = parse_response(&wait_for_close(&mut stream));
    assert_eq!(reply.status, 408);
    assert_eq!(reply.detail(), "Request head not received in time");
    // Nothing at all: closed after the read timeout without a word.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    assert!(wait_for_close(&mut stream).is_empty());
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_frees_its_slot() {
    let root = TempDir::new("write-timeout");
    let job = root.path().join("jobs/big/model");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::File::create(job.join("model.safetensors"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let server = Server::start(
        root.path(),
        &["--write-timeout", "1", "--max-downloads", "1"],
    );
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    small_receive_buffer(&stalled, 4096);
    stalled
        .write_all(b"GET /api/training/big/download/model HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    stalled.read_exact(&mut first).unwrap();
    // The slot is taken while the client does not read...
    assert_eq!(
        get(&server.url("/api/training/big/download/model")).status,
        503
    );
    // ...and freed once the write timeout drops it.
    let freed = eventually(Duration::from_secs(30), || {
        raw(server.addr, "HEAD /api/training/big/download/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").status == 200
    });
    assert!(freed, "{}", server.log());
    assert!(server.logged("ClientGone"), "{}", server.log());
    assert!(
        server.logged("connection closed"),
        "the server cut it: {}",
        server.log()
    );
    drop(stalled);
}

/// With every descriptor taken, accept(2) fails (EMFILE): tiny_http
/// backs off briefly and keeps its accept loop, and the server answers
/// again as soon as a descriptor frees up, with nothing rebuilt.
#[test]
fn the_server_survives_running_out_of_descriptors() {
    let limit = 64u64;
    let root = TempDir::new("emfile");
    let server = Server::start_custom(root.path(), &["--max-connections", "100000"], &[], |cmd| {
        // SAFETY: setrlimit in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let mut held = Vec::new();
    for _ in 0..limit {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    assert!(
        eventually(Duration::from_secs(10), || server
            .log()
            .contains("cannot accept clients for now")),
        "descriptors ran out: {}",
        server.log()
    );
    drop(held);
    let answered = eventually(Duration::from_secs(30), || {
        let Ok(mut s) = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ =
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        reply.starts_with(b"HTTP/1.1 200")
    });
    assert!(answered, "{}", server.log());
    assert!(server.logged("accepting clients again"), "{}", server.log());
    let log = server.log();
    assert!(!log.contains("accept loop stopped"), "{log}");
    let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    assert!(
        metrics.contains("trainbox_accept_loop_restarts_total 0"),
        "{metrics}"
    );
}

#[test]
fn oversized_heads_are_refused_with_431() {
    let root = TempDir::new("head");
    let server = Server::start(root.path(), &[]);
    // An endless header line: refused once it passes 8 KiB.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ")
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    for _ in 0..256 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = parse_response(&reply);
    assert_eq!(reply.status, 431, "after {sent} bytes");
    assert_eq!(reply.detail(), "Request header fields too large");
    // Many headers, each short: the head is bounded as a whole.
    let many: String = (0..2000)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(20)))
        .collect();
    let reply = raw(
        server.addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n"),
    );
    assert_eq!(reply.status, 431);
    // A request line that never ends.
    let long_target = format!("/{}", "a".repeat(20_000));
    let reply = raw_get(server.addr, &long_target);
    assert_eq!(reply.status, 414);
    assert_eq!(reply.detail(), "Request target too long");
    assert_eq!(get(&server.url("/healthz")).status, 200, "still serving");
}

#[test]
fn a_declared_petabyte_body_is_harmless() {
    let root = TempDir::new("petabyte");
    let server = Server::start(root.path(), &[]);
    for path in ["/healthz", "/api/training/jobs"] {
        let reply = raw(
            server.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000000\r\n\r\nabc"
            ),
        );
        assert_eq!(reply.status, 413, "{path}");
    }
    assert_eq!(get(&server.url("/healthz")).status, 200, "alive");
}
