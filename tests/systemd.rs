//! The real binary under `systemd-socket-activate` with a fake
//! `NOTIFY_SOCKET`: it serves the inherited socket, says READY=1, proves
//! liveness with WATCHDOG=1, finishes an in-flight download after SIGTERM,
//! says STOPPING=1 and exits 0. Also: journald-style log lines, and the
//! Prometheus exposition.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn messages(notify: &UnixDatagram, until: Duration) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while started.elapsed() < until {
        notify
            .set_read_timeout(Some(
                until
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        match notify.recv(&mut buf) {
            Ok(n) => out.push((
                started.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn socket_activation_notify_watchdog_and_a_graceful_stop() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-socket-activate is needed (Debian: systemd)");
    }
    let root = TempDir::new("systemd");
    let job = root.path().join("jobs/big/model");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::File::create(job.join("model.safetensors"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let notify_path = root.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string()])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args([
            "-E",
            "WATCHDOG_USEC=1000000",
            "-E",
            "RUST_LOG=info",
            "-E",
            "JOURNAL_STREAM=8:1234",
        ])
        .arg(BIN)
        .args(["serve", "--root"])
        .arg(root.path())
        // --listen is ignored: the socket comes from systemd.
        .args(["--listen", "127.0.0.1:1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // systemd-socket-activate starts the server on the first connection.
    let mut first = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr) {
            first = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = first.expect("systemd-socket-activate listens");
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    first.read_to_end(&mut reply).unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "served on the inherited socket"
    );

    let early = messages(&notify, Duration::from_millis(2600));
    let texts: Vec<&str> = early.iter().map(|(_, m)| m.as_str()).collect();
    assert!(texts[0].starts_with("READY=1\nSTATUS=serving"), "{texts:?}");
    let watchdogs = early
        .iter()
        .filter(|(_, m)| m.starts_with("WATCHDOG=1"))
        .count();
    assert!(watchdogs >= 3, "WATCHDOG=1 about every 0.5 s: {texts:?}");

    // A download in flight when SIGTERM arrives...
    let mut download = TcpStream::connect(addr).unwrap();
    download
        .write_all(
            b"GET /api/training/big/download/model?compression=stored HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = download.read(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    let length = content_length(&text);
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopping = messages(&notify, Duration::from_secs(2));
    assert!(
        stopping.iter().any(|(_, m)| m == "STOPPING=1"),
        "{stopping:?}"
    );
    // ...still finishes, byte for byte.
    let mut rest = Vec::new();
    download
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    download.read_to_end(&mut rest).unwrap();
    assert_eq!(
        n - body_start + rest.len(),
        length,
        "the whole archive arrived"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "exit 0 after a graceful stop: {status:?}");

    // journald gets priority prefixes and no timestamps.
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let ours: Vec<&str> = log.lines().filter(|l| l.starts_with('<')).collect();
    assert!(
        ours.iter()
            .any(|l| l.starts_with("<6>access: GET /healthz 200")),
        "{log}"
    );
    assert!(
        ours.iter().any(|l| l.starts_with("<6>service: serving")),
        "{log}"
    );
    assert!(
        !ours.iter().any(|l| l.contains("Z INFO")),
        "no timestamps: {log}"
    );
}

#[test]
fn without_systemd_all_of_it_is_silent() {
    let root = TempDir::new("no-systemd");
    let server = Server::start(root.path(), &[]);
    assert_eq!(get(&server.url("/healthz")).status, 200);
    assert!(!server.log().contains("watchdog") && !server.log().contains("sd_notify"));
}

/// The exposition has the families the issue names, moving as requests and
/// downloads happen (`.ci/run` also checks it with `promtool check metrics`).
#[test]
fn metrics_count_requests_downloads_and_jobs() {
    let root = TempDir::new("metrics");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    assert_eq!(get(&server.url("/api/training/jobs")).status, 200);
    assert_eq!(get(&server.url("/api/training/nope/progress")).status, 404);
    assert_eq!(
        get(&server.url("/api/training/j1/download/model")).status,
        200
    );
    // The download thread counts itself once its last byte is out: the
    // outcome first, then the audit line, then the request counter, so wait
    // for the last of them.
    let mut text = String::new();
    eventually(Duration::from_secs(10), || {
        let reply = get(&server.url("/metrics"));
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        text = String::from_utf8(reply.body).unwrap();
        text.contains("route=\"DownloadModel\"")
    });
    for needle in [
        "trainbox_http_requests_total{route=\"ListJobs\",status=\"200\"} 1",
        "trainbox_http_requests_total{route=\"Progress\",status=\"404\"} 1",
        "trainbox_http_requests_total{route=\"DownloadModel\",status=\"200\"} 1",
        "trainbox_downloads_total{outcome=\"completed\"} 1",
        "trainbox_downloads_in_flight 0",
        "trainbox_jobs{status=\"running\"} 1",
        "# TYPE trainbox_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
}

/// `STATUS=` follows job changes at once, not at the next periodic update.
#[test]
fn status_follows_jobs_as_they_change() {
    let root = TempDir::new("status");
    write(
        root.path(),
        "recipes.json",
        r#"{"recipes": {"nap": {"command": ["/bin/sleep", "2"]}}}"#,
    );
    let notify_path = root.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let server = Server::start_with(
        root.path(),
        &[],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let ready = messages(&notify, Duration::from_millis(500));
    assert!(
        ready.iter().any(|(_, m)| m.starts_with("READY=1")),
        "{ready:?}"
    );
    let reply = post(&server.url("/api/training/jobs"), r#"{"recipe": "nap"}"#);
    assert_eq!(reply.status, 201);
    let seen = messages(&notify, Duration::from_secs(4));
    let when = |text: &str| {
        seen.iter()
            .find(|(_, m)| m.contains(text))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("{text:?} in {seen:?}"))
    };
    let running = when("1 trainer(s) running");
    let ended = when("0 trainer(s) running, 0 queued");
    eprintln!("STATUS= after the start: {running:?}; after the end: {ended:?}");
    assert!(running < Duration::from_secs(1), "{running:?}");
    assert!(
        ended > running && ended < Duration::from_secs(4),
        "{ended:?}"
    );
}
