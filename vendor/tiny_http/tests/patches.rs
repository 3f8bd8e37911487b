//! The trainbox patches (PATCHES.md), each tested over real loopback
//! sockets against a server in this process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{ConnectionConfig, Request, Response, Server, StatusCode};

/// A server on an ephemeral port with `config`; each request goes to
/// `handle` on a thread of its own.
fn serve(
    config: ConnectionConfig,
    handle: impl Fn(Request) + Send + Sync + 'static,
) -> (std::net::SocketAddr, std::sync::Arc<Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        std::sync::Arc::new(Server::from_listener_with_config(listener, None, config).unwrap());
    let handle = std::sync::Arc::new(handle);
    let inner = std::sync::Arc::clone(&server);
    thread::spawn(move || loop {
        match inner.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => {
                let handle = std::sync::Arc::clone(&handle);
                thread::spawn(move || handle(request));
            }
            Ok(None) => {}
            Err(e) => panic!("the accept loop ended: {}", e),
        }
        if std::sync::Arc::strong_count(&inner) == 1 {
            return;
        }
    });
    (addr, server)
}

fn hello(request: Request) {
    let body = format!("{} {}", request.method(), request.url());
    request.respond(Response::from_string(body)).unwrap();
}

fn json_errors() -> ConnectionConfig {
    ConnectionConfig {
        error_response: |status, reason| {
            Response::from_data(format!("{{\"detail\": \"{reason}\"}}").into_bytes())
                .with_status_code(status)
        },
        ..ConnectionConfig::default()
    }
}

/// Sends `bytes`, then reads until the server closes (or 10 s pass).
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// The statuses of the responses in `replies`, read one after the other by
/// their framing (`Content-Length`; a 1xx or a body-less answer has none).
fn statuses(replies: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = replies;
    while !rest.is_empty() {
        let head_end = rest
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("a head in {:?}", rest));
        let head = &rest[..head_end];
        assert!(head.starts_with("HTTP/1.1 "), "a status line: {:?}", rest);
        out.push(head[9..12].parse().unwrap());
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        rest = &rest[(head_end + 4 + length).min(rest.len())..];
    }
    out
}

// Patch 5: the accept loop.

#[test]
fn an_idle_server_keeps_accepting_and_drops_at_once() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        ..ConnectionConfig::default()
    };
    let (addr, server) = serve(config, hello);
    thread::sleep(Duration::from_millis(600));
    let reply = exchange(
        addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.ends_with("GET /a"), "{}", reply);
    // Dropping the server must not block on anything (the original
    // connected to itself, which hangs where a firewall drops the SYN).
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        drop(server);
        done_tx.send(()).unwrap();
    });
    done.recv_timeout(Duration::from_secs(5))
        .expect("drop returned");
}

// Patch 6: deadlines.

#[test]
fn a_trickled_head_gets_408_at_its_deadline() {
    let config = ConnectionConfig {
        header_timeout: Some(Duration::from_millis(500)),
        ..json_errors()
    };
    let (addr, _server) = serve(config, hello);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    // One byte every 100 ms: each read is quick, the head never completes.
    let writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(100));
            if writer.write_all(b"X").is_err() {
                return;
            }
        }
    });
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{}", reply);
    assert!(reply.contains("Connection: close"), "{}", reply);
    assert!(
        reply.ends_with("{\"detail\": \"request head not received in time\"}"),
        "{}",
        reply
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_connection_is_closed_without_an_answer() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..ConnectionConfig::default()
    };
    let (addr, _server) = serve(config, hello);
    // After one request, nothing: closed once the idle timeout passes.
    let reply = exchange(addr, b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&reply), [200]);
    assert!(reply.ends_with("GET /once"), "{}", reply);
}

#[test]
fn a_slow_body_is_refused_before_the_application_sees_it() {
    let config = ConnectionConfig {
        header_timeout: Some(Duration::from_millis(300)),
        body_min_rate: Some(100),
        buffered_body_limit: 1000,
        ..json_errors()
    };
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = std::sync::Mutex::new(seen_tx);
    let (addr, _server) = serve(config, move |request: Request| {
        seen_tx
            .lock()
            .unwrap()
            .send(request.url().to_owned())
            .unwrap();
        hello(request)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    let writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(200));
            if writer.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{}", reply);
    assert!(
        reply.contains("request body not received in time"),
        "{}",
        reply
    );
    assert!(seen.try_recv().is_err(), "the application never saw it");
}

#[test]
fn a_small_body_is_read_before_the_request_is_handed_out() {
    let (addr, _server) = serve(json_errors(), |mut request: Request| {
        let mut body = String::new();
        request.as_reader().read_to_string(&mut body).unwrap();
        request.respond(Response::from_string(body)).unwrap();
    });
    // Expect: 100-continue is answered before the body is read.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 25];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("hello"),
        "{}",
        reply
    );
}

// Patch 7: strict framing.

#[test]
fn ambiguous_framing_gets_one_answer_and_the_connection_closes() {
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = std::sync::Mutex::new(seen_tx);
    let (addr, _server) = serve(json_errors(), move |request: Request| {
        seen_tx
            .lock()
            .unwrap()
            .send(request.url().to_owned())
            .unwrap();
        hello(request)
    });
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: &[(&str, u16)] = &[
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: 5, 6\r\n", 400),
        ("Content-Length: +5\r\n", 400),
        ("Content-Length: 0x5\r\n", 400),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: gzip\r\n", 400),
        ("Transfer-Encoding: chunked, identity\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        ("Content-Length : 5\r\n", 400),
        ("X-Folded: a\r\n b\r\n", 400),
        ("X-Bare: a\nContent-Length: 5\r\n", 400),
        ("Host: y\r\n", 400),
    ];
    for (headers, status) in cases {
        let request = format!("POST /a HTTP/1.1\r\nHost: x\r\n{headers}\r\nhello{smuggled}");
        let reply = exchange(addr, request.as_bytes());
        assert_eq!(statuses(&reply), [*status], "{headers:?}: {reply}");
        assert!(reply.contains("Connection: close"), "{:?}: {}", headers, reply);
        assert!(reply.contains("\"detail\""), "{:?}: {}", headers, reply);
    }
    // A malformed chunk size: the rest is never read as a request.
    let reply = exchange(
        addr,
        format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"
        )
        .as_bytes(),
    );
    assert_eq!(statuses(&reply), [400], "{reply}");
    // HTTP/1.0 with Transfer-Encoding, and no Host in HTTP/1.1.
    let reply = exchange(
        addr,
        b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(statuses(&reply), [400], "{reply}");
    let reply = exchange(addr, b"GET /a HTTP/1.1\r\n\r\n");
    assert_eq!(statuses(&reply), [400], "{reply}");
    // Versions other than 1.0 and 1.1.
    let reply = exchange(addr, b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&reply), [505], "{reply}");
    thread::sleep(Duration::from_millis(100));
    assert!(
        seen.try_recv().is_err(),
        "no refused request reached the application"
    );
}

#[test]
fn chunked_bodies_are_decoded_and_requests_after_them_answered() {
    let (addr, _server) = serve(json_errors(), |mut request: Request| {
        let mut body = String::new();
        request.as_reader().read_to_string(&mut body).unwrap();
        let url = request.url().to_owned();
        request
            .respond(Response::from_string(format!("{url}:{body}")))
            .unwrap();
    });
    let reply = exchange(
        addr,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&reply), [200, 200], "{reply}");
    assert!(
        reply.contains("/a:abcde") && reply.ends_with("/b:"),
        "{}",
        reply
    );
}

#[test]
fn an_unread_body_is_never_read_as_the_next_request() {
    let config = ConnectionConfig {
        buffered_body_limit: 8,
        ..json_errors()
    };
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = std::sync::Mutex::new(seen_tx);
    let (addr, _server) = serve(config, move |request: Request| {
        seen_tx
            .lock()
            .unwrap()
            .send(request.url().to_owned())
            .unwrap();
        hello(request) // without reading the body
    });
    let inner = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let reply = exchange(addr, request.as_bytes());
    assert_eq!(statuses(&reply), [200], "{reply}");
    assert!(reply.contains("Connection: close"), "{}", reply);
    assert_eq!(seen.recv_timeout(Duration::from_secs(5)).unwrap(), "/a");
    assert!(
        seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing smuggled"
    );
}

// Patch 8: one request at a time.

#[test]
fn a_response_longer_than_the_idle_timeout_completes_and_the_connection_goes_on() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..ConnectionConfig::default()
    };
    let (addr, _server) = serve(config, |request: Request| {
        if request.url() == "/slow" {
            let mut writer = request.into_writer();
            writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                .unwrap();
            for digit in b"0123456789" {
                writer.write_all(&[*digit]).unwrap();
                writer.flush().unwrap();
                thread::sleep(Duration::from_millis(100));
            }
        } else {
            hello(request);
        }
    });
    // Both requests at once (pipelined): answered in order, the second only
    // after the first's second-long body.
    let reply = exchange(
        addr,
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&reply), [200, 200], "{reply}");
    assert!(
        reply.contains("\r\n\r\n0123456789HTTP/1.1 200"),
        "{}",
        reply
    );
    assert!(reply.ends_with("GET /after"), "{}", reply);
}

// Patch 9: the writer owns its socket.

#[test]
fn the_writers_socket_can_be_written_directly_and_shut_down() {
    let (addr, _server) = serve(ConnectionConfig::default(), |request: Request| {
        let mut writer = request.into_writer();
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        writer.flush().unwrap();
        // As sendfile(2) would: straight to the descriptor the writer holds.
        let fd = writer.socket_fd().expect("a plain TCP socket");
        let mut direct = std::fs::File::from(fd.try_clone_to_owned().unwrap());
        direct.write_all(b"direct").unwrap();
        // Then the response is cut short: the client sees the end.
        writer.shutdown(Shutdown::Both).unwrap();
    });
    let reply = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.ends_with("\r\n\r\ndirect"), "{}", reply);
}

#[test]
fn an_upgraded_stream_bounds_its_reads() {
    let (addr, _server) = serve(ConnectionConfig::default(), |request: Request| {
        let mut stream = request.upgrade("echo", Response::empty(101));
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        stream.write_all(b"timed out; ").unwrap();
        stream.flush().unwrap();
        stream.set_read_timeout(None).unwrap();
        let n = stream.read(&mut buf).unwrap();
        stream.write_all(&buf[..n]).unwrap();
        stream.flush().unwrap();
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("timed out; ") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    client.write_all(b"ping").unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&seen).into_owned() + &String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 101"), "{}", text);
    assert!(text.ends_with("timed out; ping"), "{}", text);
}

// Patch 11: connections accepted together each get a thread.

#[test]
fn connections_accepted_in_a_burst_do_not_wait_for_each_other() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_secs(30)),
        ..ConnectionConfig::default()
    };
    let (addr, _server) = serve(config, hello);
    // Bursts of connections, each kept open after its answer (for up to
    // 30 s): every one is answered, none waits for another to end. (Without
    // the patch, most bursts leave some connection unanswered.)
    for _ in 0..10 {
        let mut burst: Vec<TcpStream> =
            (0..32).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for (i, stream) in burst.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            write!(stream, "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", i).unwrap();
        }
        for (i, stream) in burst.iter_mut().enumerate() {
            let expected = format!("GET /{}", i);
            let mut reply = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&reply).ends_with(&expected) {
                match stream.read(&mut buf) {
                    Ok(n) if n > 0 => reply.extend_from_slice(&buf[..n]),
                    other => panic!("connection {} not answered: {:?}", i, other),
                }
            }
        }
    }
}

// Patches 2 and 10: refusals with the application's body.

#[test]
fn oversized_targets_and_heads_are_refused_with_the_applications_body() {
    let (addr, _server) = serve(json_errors(), hello);
    let target = "a".repeat(10_000);
    let reply = exchange(
        addr,
        format!("GET /{target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(statuses(&reply), [414], "{reply}");
    assert!(
        reply.ends_with("{\"detail\": \"request target too long\"}"),
        "{}",
        reply
    );
    let headers: String = (0..2000)
        .map(|i| format!("X-{i}: {}\r\n", "v".repeat(20)))
        .collect();
    let reply = exchange(
        addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(),
    );
    assert_eq!(statuses(&reply), [431], "{reply}");
    assert!(reply.contains("Connection: close"), "{}", reply);
    // A response the application marks `Connection: close` closes it.
    let (addr, _server) = serve(ConnectionConfig::default(), |request: Request| {
        let response = Response::empty(StatusCode(413))
            .with_header(tiny_http::Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap());
        request.respond(response).unwrap();
    });
    let reply = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(statuses(&reply), [413], "{reply}");
}

/// Patch 12: the inline handler answers some requests on the connection's
/// thread; the rest reach `recv` as before, and a connection's answers
/// stay in order either way.
#[test]
fn an_inline_handler_answers_some_requests_and_queues_the_rest() {
    let queued = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = ConnectionConfig {
        inline_handler: Some(std::sync::Arc::new(|request: Request| {
            if request.url() != "/inline" {
                return Some(request);
            }
            let on = thread::current().name().unwrap_or("").to_owned();
            request
                .respond(Response::from_string(format!("inline on [{on}]")))
                .unwrap();
            None
        })),
        ..ConnectionConfig::default()
    };
    let seen = std::sync::Arc::clone(&queued);
    let (addr, _server) = serve(config, move |request| {
        seen.lock().unwrap().push(request.url().to_owned());
        hello(request);
    });
    let replies = exchange(
        addr,
        b"GET /inline HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /queued HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /inline HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&replies), [200, 200, 200], "{replies}");
    let first = replies.find("inline on").unwrap();
    let middle = replies.find("GET /queued").unwrap();
    let last = replies.rfind("inline on").unwrap();
    assert!(
        first < middle && middle < last,
        "answers in order: {}",
        replies
    );
    assert_eq!(
        *queued.lock().unwrap(),
        ["/queued"],
        "only the declined one was queued"
    );
}
