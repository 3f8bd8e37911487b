//! Connections where users live: downloads slower than every timeout (a
//! slow reader, curl's rate limit, a link shaped with `tc` in a network
//! namespace), servers left idle, clients that trickle, downloads cut off
//! while short requests run, and requests framed to smuggle another.
#![allow(clippy::disallowed_methods)] // fixtures live on the ambient filesystem

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A job whose archives are large enough to take seconds at a few MB/s:
/// a 12 MB model, a 12 MB checkpoint and a 12 MB log of hex text.
fn big_job(root: &Path, id: &str) {
    let job = make_job(root, id);
    write(&job, "model/model.safetensors", floats(12 << 20, 11));
    write(
        &job,
        "model/checkpoint-100/model.safetensors",
        floats(12 << 20, 12),
    );
    let log: String = floats(6 << 20, 13)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .chunks(40)
        .map(|line| line.concat() + "\n")
        .collect();
    write(&job, "training.log", log);
}

/// The four kinds of download and the files each must hold.
fn downloads(root: &Path, id: &str) -> Vec<(&'static str, String, BTreeMap<String, String>)> {
    let job = root.join("jobs").join(id);
    let model = tree_hashes(&job.join("model"));
    let checkpoint = tree_hashes(&job.join("model/checkpoint-100"));
    let logs: BTreeMap<String, String> = ["training.log", "progress.json", "metrics.jsonl"]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                sha256(&std::fs::read(job.join(name)).unwrap()),
            )
        })
        .collect();
    let base = format!("/api/training/{id}/download");
    vec![
        (
            "stored",
            format!("{base}/model?compression=stored"),
            model.clone(),
        ),
        ("auto", format!("{base}/model"), model),
        (
            "checkpoint",
            format!("{base}/model?checkpoint=checkpoint-100"),
            checkpoint,
        ),
        ("logs", format!("{base}/logs"), logs),
    ]
}

/// `curl` at `rate` bytes a second into `out`; its exit status and time.
fn curl(prefix: &[&str], url: &str, out: &Path, rate: u64) -> (i32, Duration) {
    let started = Instant::now();
    let (program, args) = match prefix.split_first() {
        Some((program, args)) => (*program, args.to_vec()),
        None => ("curl", Vec::new()),
    };
    let mut command = Command::new(program);
    command.args(args);
    if !prefix.is_empty() {
        command.arg("curl");
    }
    let status = command
        .args(["-sS", "--fail", "--limit-rate", &rate.to_string(), "-o"])
        .arg(out)
        .arg(url)
        .status()
        .expect("curl installed");
    (status.code().unwrap_or(-1), started.elapsed())
}

/// Lines of the server's log at ERROR level.
fn errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" ERROR ")).collect()
}

fn accept_restarts(server: &Server) -> String {
    let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("trainbox_accept_loop_restarts_total "))
        .expect("the restarts counter")
        .to_owned()
}

/// Downloads `path` over a keep-alive connection, reading at about
/// `bytes_per_sec`; then asks for `/healthz` on the same connection.
/// Returns the body and the second response.
fn slow_read(addr: SocketAddr, path: &str, bytes_per_sec: usize) -> (Vec<u8>, Reply) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length = content_length(&head);
    let started = Instant::now();
    let mut body = vec![0u8; length];
    let mut got = 0;
    while got < length {
        let want = (length - got).min(bytes_per_sec / 20);
        stream.read_exact(&mut body[got..got + want]).unwrap();
        got += want;
        let due = Duration::from_secs_f64(got as f64 / bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
    }
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    (body, parse_response(&rest))
}

#[test]
fn downloads_slower_than_the_read_timeout_arrive_whole_on_an_idle_server() {
    let root = TempDir::new("slow-downloads");
    big_job(root.path(), "big");
    let server = Server::start(
        root.path(),
        &["--read-timeout", "1", "--header-timeout", "1"],
    );
    // Idle first, for three read timeouts.
    thread::sleep(Duration::from_secs(3));

    // curl at a rate that makes each take about three read timeouts.
    let kinds = downloads(root.path(), "big");
    let handles: Vec<_> = kinds
        .iter()
        .map(|(kind, path, _)| {
            let url = server.url(path);
            let out = root.path().join(format!("{kind}.zip"));
            let size = match *kind {
                "stored" | "auto" => 25 << 20,
                "checkpoint" => 12 << 20,
                _ => 6 << 20, // the log deflates to about half of its 12 MB
            };
            thread::spawn(move || curl(&[], &url, &out, size / 3))
        })
        .collect();
    for ((kind, _, expected), handle) in kinds.iter().zip(handles) {
        let (status, took) = handle.join().unwrap();
        assert_eq!(status, 0, "{kind}: curl exit status");
        eprintln!("{kind}: {took:.1?} at the limited rate (read timeout 1 s)");
        let archive = std::fs::read(root.path().join(format!("{kind}.zip"))).unwrap();
        assert_archive_matches(&archive, expected, root.path());
    }

    // A client of its own that reads slowly, then asks again on the same
    // connection: the keep-alive connection outlives the long response.
    let (body, next) = slow_read(server.addr, &kinds[0].1, 10 << 20);
    assert_archive_matches(&body, &kinds[0].2, root.path());
    assert_eq!(next.status, 200, "the connection goes on");

    let log = server.log();
    assert!(errors(&log).is_empty(), "{log}");
    assert!(!log.contains("Bad file descriptor"), "{log}");
    assert_eq!(
        accept_restarts(&server),
        "trainbox_accept_loop_restarts_total 0"
    );
}

/// A Hub file (`resolve`, what `hf_hub_download` fetches) slower than the
/// read timeout, after the server sat idle longer than it, arrives whole;
/// so does a resume from its middle at the same rate.
#[test]
fn hub_files_slower_than_the_read_timeout_arrive_whole() {
    let root = TempDir::new("slow-hub");
    let job = make_job(root.path(), "hf");
    write(
        root.path(),
        "jobs/hf/job.json",
        r#"{"id":"hf","recipe":"demo","status":"completed","created_at":"2026-11-29T00:00:00.000Z"}"#,
    );
    write(&job, "model/model.safetensors", floats(12 << 20, 21));
    let server = Server::start(
        root.path(),
        &["--read-timeout", "1", "--header-timeout", "1"],
    );
    thread::sleep(Duration::from_secs(3));
    let url = server.url("/trainbox/hf/resolve/main/model.safetensors");
    let out = root.path().join("model.safetensors");
    // About three read timeouts at this rate.
    let (status, took) = curl(&[], &url, &out, 4 << 20);
    assert_eq!(status, 0, "curl exit status");
    assert!(
        took > Duration::from_secs(2),
        "{took:?}: the rate limit held"
    );
    let on_disk = std::fs::read(job.join("model/model.safetensors")).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == on_disk,
        "the file arrived whole"
    );
    // A cut download resumed with a bare `Range`, as the client does.
    let half = on_disk.len() / 2;
    std::fs::write(&out, &on_disk[..half]).unwrap();
    let resumed = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--limit-rate",
            &(2u64 << 20).to_string(),
            "-C",
            "-",
            "-o",
        ])
        .arg(&out)
        .arg(&url)
        .status()
        .unwrap();
    assert!(resumed.success());
    assert!(
        std::fs::read(&out).unwrap() == on_disk,
        "the resume completed it"
    );
    let log = server.log();
    assert!(errors(&log).is_empty(), "{log}");
}

/// A network namespace of our own, removed on drop.
struct Namespace(String);

impl Namespace {
    /// A namespace whose loopback runs at `rate` through tbf, or `None`
    /// (with the reason) where namespaces or tc are unavailable.
    fn shaped(rate: &str) -> Result<Namespace, String> {
        let name = format!("tbx{}", std::process::id());
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|e| format!("{}: {e}", args[0]))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(&["ip", "netns", "add", &name])?;
        let ns = Namespace(name);
        // tbf drops 64 KiB loopback frames: a normal MTU, and a burst that
        // holds a few of them.
        run(&["ip", "-n", &ns.0, "link", "set", "lo", "mtu", "1500", "up"])?;
        run(&[
            "tc", "-n", &ns.0, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst",
            "256kb", "latency", "50ms",
        ])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn downloads_over_a_shaped_link_outlast_every_timeout() {
    let ns = match Namespace::shaped("100mbit") {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: no network namespace with tc here ({why})");
            return;
        }
    };
    let root = TempDir::new("tbf");
    big_job(root.path(), "big");
    let server = Server::start_prefixed(
        &["ip", "netns", "exec", &ns.0],
        root.path(),
        &[
            "--read-timeout",
            "1",
            "--header-timeout",
            "1",
            "--write-timeout",
            "5",
        ],
    );
    thread::sleep(Duration::from_secs(3)); // idle first
    let prefix = ["ip", "netns", "exec", ns.0.as_str()];
    let kinds = downloads(root.path(), "big");
    // All four at once share 100 Mbit/s (12.5 MB/s): about 5 s in all.
    let handles: Vec<_> = kinds
        .iter()
        .map(|(kind, path, _)| {
            let url = server.url(path);
            let out = root.path().join(format!("{kind}.zip"));
            let prefix = prefix.map(str::to_owned);
            thread::spawn(move || {
                let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
                curl(&prefix, &url, &out, 1 << 30)
            })
        })
        .collect();
    for ((kind, _, expected), handle) in kinds.iter().zip(handles) {
        let (status, took) = handle.join().unwrap();
        assert_eq!(status, 0, "{kind}: curl exit status; {}", server.log());
        eprintln!("{kind}: {took:.1?} over the shaped link (read timeout 1 s)");
        let archive = std::fs::read(root.path().join(format!("{kind}.zip"))).unwrap();
        assert_archive_matches(&archive, expected, root.path());
    }
    let log = server.log();
    assert!(errors(&log).is_empty(), "{log}");
    drop(server);
}

/// Reads one response by its framing (a `Content-Length` body).
fn read_response(stream: &mut TcpStream) -> Result<Reply, String> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
        head.push(byte[0]);
        if head.len() > 16 << 10 {
            return Err(format!("no head: {:?}", String::from_utf8_lossy(&head)));
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 ") {
        return Err(format!("not a status line: {text:?}"));
    }
    let mut body = vec![0u8; content_length(&text)];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    let mut reply = parse_response(&head);
    reply.body = body;
    Ok(reply)
}

#[test]
fn downloads_cut_by_the_write_timeout_never_mix_with_other_responses() {
    let root = TempDir::new("mixing");
    big_job(root.path(), "big");
    let server = Server::start(
        root.path(),
        &[
            "--write-timeout",
            "1",
            "--max-downloads",
            "64",
            "--max-connections",
            "4096",
        ],
    );
    let path = "/api/training/big/download/model?compression=stored";
    let full = get(&server.url(path)).body;
    assert!(full.len() > 20 << 20);
    let expected_job = get(&server.url("/api/training/jobs/big")).body;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // Short requests on keep-alive connections, checked byte for byte.
    let short: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop, failures) = (server.addr, Arc::clone(&stop), Arc::clone(&failures));
            let expected_job = expected_job.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut answered = 0;
                while !stop.load(Ordering::Acquire) {
                    stream
                        .write_all(
                            b"GET /api/training/jobs/big HTTP/1.1\r\nHost: localhost\r\n\r\n",
                        )
                        .unwrap();
                    match read_response(&mut stream) {
                        Ok(reply) if reply.status == 200 && reply.body == expected_job => {
                            answered += 1
                        }
                        Ok(reply) => failures.lock().unwrap().push(format!(
                            "{}: {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        )),
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    // Busy, but leaving the machine's two cores some air.
                    thread::sleep(Duration::from_millis(2));
                }
                answered
            })
        })
        .collect();
    // Downloads that read a little, then stop reading for three write
    // timeouts (with a receive buffer small enough that the server's writes
    // stall), then read for a second more: only a prefix of the archive may
    // arrive. (The rest of a cut download drains only by the kernel's
    // window probes, over minutes, so it is not waited for.)
    let cut: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                small_receive_buffer(&stream, 4096);
                write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                let mut received = vec![0u8; (1 + i) << 12];
                stream.read_exact(&mut received).unwrap();
                thread::sleep(Duration::from_secs(3));
                let resumed = Instant::now();
                let mut buf = [0u8; 4096];
                while let Some(left) = Duration::from_secs(1).checked_sub(resumed.elapsed()) {
                    stream
                        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .unwrap();
                    match stream.read(&mut buf) {
                        Ok(n @ 1..) => received.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                received
            })
        })
        .collect();
    let mut short_cut = 0;
    for handle in cut {
        let received = handle.join().unwrap();
        let body_start = received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        let body = &received[body_start..];
        assert!(body.len() <= full.len());
        assert!(body == &full[..body.len()], "only the archive's own bytes");
        short_cut += usize::from(body.len() < full.len());
    }
    stop.store(true, Ordering::Release);
    let answered: usize = short.into_iter().map(|h| h.join().unwrap()).sum();
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:?}\n{}", server.log());
    // The server's log is read by a thread of ours: give it a moment.
    let cut = || {
        server
            .log()
            .matches("ClientGone; connection closed")
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || cut() == 8),
        "the write timeout cut every stalled download: {}",
        server.log()
    );
    let cut_off = cut();
    eprintln!(
        "{answered} short responses whole while {cut_off} downloads were cut ({short_cut} read short)"
    );
    assert!(answered > 100);
}

#[test]
fn an_idle_server_answers_at_once_and_stops_at_once() {
    let root = TempDir::new("idle-server");
    make_job(root.path(), "j1");
    let mut server = Server::start(root.path(), &["--read-timeout", "1"]);
    // A keep-alive connection left open, and the server idle for three
    // read timeouts.
    let mut kept = TcpStream::connect(server.addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(3500));
    let started = Instant::now();
    let reply = get(&server.url("/api/training/jobs"));
    let first = started.elapsed();
    assert_eq!(reply.status, 200);
    eprintln!("first request after 3.5 s idle: {first:?}");
    assert!(first < Duration::from_secs(1), "{first:?}");
    let log = server.log();
    assert!(errors(&log).is_empty(), "{log}");
    assert_eq!(
        accept_restarts(&server),
        "trainbox_accept_loop_restarts_total 0"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit");
        thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    eprintln!("SIGTERM to exit on an idle server: {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn trickling_clients_hold_no_worker_and_the_watchdog_stays_fed() {
    let root = TempDir::new("trickle");
    let notify_path = root.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let server = Server::start_with(
        root.path(),
        &["--header-timeout", "4"],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    // 64 bodies and 64 heads, one byte every 300 ms; each returns what
    // the server answered it.
    let tricklers: Vec<_> = (0..128)
        .map(|i| {
            let (addr, stop) = (server.addr, Arc::clone(&stop));
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let (start, byte): (&[u8], &[u8]) = if i % 2 == 0 {
                    (
                        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000\r\n\r\n",
                        b"t",
                    )
                } else {
                    (b"GET /api/training/jobs HTTP/1.1\r\n", b"X")
                };
                stream.write_all(start).unwrap();
                stream.set_nonblocking(true).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(300));
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                    if !answer.is_empty() || (&stream).write_all(byte).is_err() {
                        break;
                    }
                }
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    let flood = Instant::now();
    while flood.elapsed() < Duration::from_secs(6) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "healthz answered during the flood: {:?}",
            String::from_utf8_lossy(&reply)
        );
        latencies.push(started.elapsed());
        thread::sleep(Duration::from_millis(20));
    }
    let mut texts = Vec::new();
    let mut buf = [0u8; 512];
    notify.set_nonblocking(true).unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        texts.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    stop.store(true, Ordering::Release);
    let answers: Vec<String> = tricklers.into_iter().map(|t| t.join().unwrap()).collect();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "/healthz under 64 trickling bodies and 64 trickling heads: {} requests, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies.last().unwrap()
    );
    let watchdogs = texts.iter().filter(|t| t.starts_with("WATCHDOG=1")).count();
    assert!(
        watchdogs >= 8,
        "WATCHDOG=1 about every 0.5 s over 6.5 s: {texts:?}"
    );
    // Every trickler got 408 once its head or body was overdue.
    for (i, answer) in answers.iter().enumerate() {
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "trickler {i}: {answer:?}"
        );
        let kind = if i % 2 == 0 { "body" } else { "head" };
        assert!(
            answer.contains(&format!("\"Request {kind} not received in time\"")),
            "{answer}"
        );
    }
}

#[test]
fn requests_framed_to_smuggle_another_get_one_answer_and_a_close() {
    let root = TempDir::new("smuggle");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let smuggled = "GET /api/training/jobs/smuggled-marker HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let cases = [
        ("Content-Length: 5\r\nContent-Length: 7\r\n", 400),
        ("Content-Length: +5\r\n", 400),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: identity\r\n", 400),
        ("Transfer-Encoding: chunked, gzip\r\n", 400),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
    ];
    let mut table = Vec::new();
    for (headers, status) in cases {
        let request = format!(
            "POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{headers}\r\n{{}}\r\n{smuggled}"
        );
        let reply = raw(server.addr, &request);
        assert_eq!(reply.status, status, "{headers:?}");
        assert!(!reply.detail().is_empty(), "{headers:?}");
        assert_eq!(reply.header("connection"), Some("close"), "{headers:?}");
        table.push(format!(
            "{:<55} {} {}",
            headers.replace("\r\n", " "),
            reply.status,
            reply.detail()
        ));
    }
    // A malformed chunk size after a good chunk.
    let reply = raw(
        server.addr,
        &format!(
            "POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\nzz\r\n{smuggled}"
        ),
    );
    assert_eq!(reply.status, 400);
    table.push(format!(
        "{:<55} {} {}",
        "malformed chunk size",
        reply.status,
        reply.detail()
    ));
    eprintln!("{}", table.join("\n"));
    thread::sleep(Duration::from_millis(200));
    let log = server.log();
    assert!(
        !log.contains("smuggled-marker"),
        "no smuggled request ran: {log}"
    );
    assert!(
        !log.contains("POST /api/training/jobs 201"),
        "no job started: {log}"
    );
}

#[test]
fn upgrade_headers_mean_nothing_outside_the_websocket_route() {
    let root = TempDir::new("upgrade");
    let server = Server::start(root.path(), &[]);
    // A body is framed as any body, and the server answers as for any POST.
    let body = r#"{"recipe": "none"}"#;
    let reply = raw(
        server.addr,
        &format!(
            "POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.detail().contains("none"), "{}", reply.detail());
    // Without a body: an ordinary answer, and the connection ends.
    let reply = raw(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn login_bodies_are_at_most_a_kibibyte() {
    let root = TempDir::new("login-body");
    let server = Server::start(root.path(), &[]);
    let token = "a".repeat(2000);
    let reply = raw(
        server.addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\ntoken={token}",
            token.len() + 6
        ),
    );
    assert_eq!(reply.status, 413);
    assert_eq!(reply.detail(), "Request body too large");
}
