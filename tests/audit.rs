//! The download audit over a real server: who took what off the box,
//! recorded for complete, ranged and abandoned downloads, by token label
//! (never the token), and read back by the control role only.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ALICE: &str = "alice-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn audit(server: &Server, query: &str) -> Value {
    let bearer = format!("Bearer {ADMIN}");
    let reply = get_with(
        &server.url(&format!("/api/training/downloads{query}")),
        &[("Authorization", &bearer)],
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

#[test]
fn every_download_is_recorded_with_who_what_and_how_it_ended() {
    let root = TempDir::new("audit");
    write(
        root.path(),
        "tokens",
        format!("read:alice:{ALICE}\ncontrol:admin:{ADMIN}\n"),
    );
    for id in ["j", "big"] {
        make_job(root.path(), id);
        write(
            root.path(),
            &format!("jobs/{id}/job.json"),
            format!(
                r#"{{"id":"{id}","recipe":"demo","status":"completed","created_at":"2026-01-01T00:00:00.000Z"}}"#
            ),
        );
    }
    write(
        &root.path().join("jobs/big"),
        "model/weights.bin",
        floats(24 << 20, 3),
    );
    let tokens = root.path().join("tokens");
    let server = Server::start(root.path(), &["--token-file", tokens.to_str().unwrap()]);
    let alice = format!("Bearer {ALICE}");
    let as_alice = [("Authorization", alice.as_str())];
    let model = server.url("/api/training/j/download/model");

    let whole = get_with(&model, &as_alice);
    assert_eq!(whole.status, 200);
    let part = get_with(
        &format!("{model}?compression=stored"),
        &[as_alice[0], ("Range", "bytes=0-99")],
    );
    assert_eq!(part.status, 206);
    let logs = get_with(&server.url("/api/training/j/download/logs"), &as_alice);
    assert_eq!(logs.status, 200);
    let probe = head(&format!("{model}?compression=stored"));
    assert_eq!(
        probe.status, 401,
        "HEAD without a token: refused, not recorded"
    );

    // One that stops reading after a little.
    let mut abandoned = TcpStream::connect(server.addr).unwrap();
    small_receive_buffer(&abandoned, 4096);
    write!(
        abandoned,
        "GET /api/training/big/download/model?compression=stored HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\r\n"
    )
    .unwrap();
    let mut some = [0u8; 4096];
    abandoned.read_exact(&mut some).unwrap();
    drop(abandoned);

    assert!(
        eventually(Duration::from_secs(30), || audit(&server, "")["downloads"]
            .as_array()
            .unwrap()
            .len()
            == 4),
        "{}",
        audit(&server, "")
    );
    let all = audit(&server, "");
    let entries = all["downloads"].as_array().unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let find = |what: &str, status: u64| {
        entries
            .iter()
            .find(|e| e["job"] == "j" && e["what"] == what && e["status"] == status)
            .unwrap_or_else(|| panic!("{what} {status} in {all}"))
    };
    let complete = find("model", 200);
    assert_eq!(complete["job"], "j");
    assert_eq!(complete["who"], "alice");
    assert_eq!(complete["client"], "127.0.0.1");
    assert_eq!(complete["mode"], "auto");
    assert_eq!(complete["outcome"], "completed");
    // On the wire: the body and the response head.
    let sent = complete["bytes"].as_u64().unwrap();
    let body = whole.body.len() as u64;
    assert!(
        sent > body && sent < body + 1024,
        "{sent} for a body of {body}"
    );
    let ranged = find("model", 206);
    assert_eq!(ranged["range"], "bytes=0-99");
    assert!((100..1124).contains(&ranged["bytes"].as_u64().unwrap()));
    assert_eq!(find("logs", 200)["mode"], "deflate");
    let cut = entries.iter().find(|e| e["job"] == "big").unwrap();
    assert_eq!(cut["outcome"], "client_gone", "{cut}");
    assert!(cut["bytes"].as_u64().unwrap() < 24 << 20);

    // Filtered by job, a page at a time.
    let first = audit(&server, "?job=j&limit=2");
    assert_eq!(first["downloads"].as_array().unwrap().len(), 2);
    let next = first["next"].as_u64().expect("a next page");
    let second = audit(&server, &format!("?job=j&limit=2&before={next}"));
    assert_eq!(second["downloads"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], Value::Null);

    // For the control role only; and the tokens are nowhere in the file.
    assert_eq!(
        get_with(&server.url("/api/training/downloads"), &as_alice).status,
        403
    );
    let file = std::fs::read_to_string(root.path().join("downloads.jsonl")).unwrap();
    assert!(!file.contains(ALICE) && !file.contains(ADMIN));
    assert_eq!(file.lines().count(), 4);
}
