//! Model, checkpoint and log downloads over a real server, read back by the
//! zip crate, `unzip -t` and Python's zipfile and compared file by file;
//! and the thread model: slow downloads never hold the workers.

#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn the_model_archive_holds_the_model_directory_file_by_file() {
    let root = TempDir::new("model");
    let job = make_job(root.path(), "abc123");
    write(&job, "model/nested/deeper/weights.bin", floats(70_000, 9));
    write(&job, "model/empty.txt", "");
    write(&job, "model/naïve-名前.json", "{\"unicode\": true}");
    let server = Server::start(root.path(), &[]);

    let reply = get(&server.url("/api/training/abc123/download/model"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/zip"));
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"model_abc123.zip\"")
    );
    // An exact length, not chunked.
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_archive_matches(&reply.body, &tree_hashes(&job.join("model")), root.path());

    // Tensors stored, text deflated (the default `auto`).
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&reply.body)).unwrap();
    assert_eq!(
        zip.by_name("model.safetensors").unwrap().compression(),
        zip::CompressionMethod::Stored
    );
    let tokenizer = zip.by_name("tokenizer.json").unwrap();
    assert_eq!(tokenizer.compression(), zip::CompressionMethod::Deflated);
    assert!(tokenizer.compressed_size() * 5 < tokenizer.size());
}

#[test]
fn checkpoint_downloads_hold_one_checkpoint() {
    let root = TempDir::new("checkpoint");
    let job = make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);

    let reply = get(&server.url("/api/training/j1/download/model?checkpoint=checkpoint-200"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"model_j1_checkpoint-200.zip\"")
    );
    assert_archive_matches(
        &reply.body,
        &tree_hashes(&job.join("model/checkpoint-200")),
        root.path(),
    );

    // A Lightning checkpoint is a file: the archive holds it under its name.
    let reply =
        get(&server.url("/api/training/j1/download/model?checkpoint=epoch%3D1-step%3D150.ckpt"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"model_j1_epoch=1-step=150.ckpt.zip\"")
    );
    let expected = [(
        "epoch=1-step=150.ckpt".to_owned(),
        sha256(&fs::read(job.join("model/epoch=1-step=150.ckpt")).unwrap()),
    )]
    .into_iter()
    .collect();
    assert_archive_matches(&reply.body, &expected, root.path());
}

#[test]
fn the_model_without_checkpoints_is_the_final_model_alone() {
    let root = TempDir::new("exclude");
    let job = make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let mut expected = tree_hashes(&job.join("model"));
    // Left out: checkpoint directories, `.ckpt` files, and (always)
    // checkpoints still being written.
    expected.retain(|name, _| {
        let in_checkpoint = name
            .split_once('/')
            .is_some_and(|(top, _)| top.starts_with("checkpoint") || top.starts_with("tmp-"));
        !in_checkpoint && !name.ends_with(".ckpt")
    });
    assert!(expected.contains_key("model.safetensors"));
    for compression in ["auto", "deflate"] {
        let reply = get(&server.url(&format!(
            "/api/training/j1/download/model?exclude=checkpoints&compression={compression}"
        )));
        assert_eq!(reply.status, 200, "{compression}");
        assert_eq!(
            reply.header("content-disposition"),
            Some("attachment; filename=\"model_j1.zip\"")
        );
        assert_archive_matches(&reply.body, &expected, root.path());
    }
    let both = get(&server
        .url("/api/training/j1/download/model?exclude=checkpoints&checkpoint=checkpoint-100"));
    assert_eq!(both.status, 400);
    assert_eq!(
        both.detail(),
        "A checkpoint cannot be downloaded with exclude=checkpoints"
    );
}

#[test]
fn tmp_checkpoints_are_never_in_an_archive() {
    let root = TempDir::new("tmp");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let names = zip_hashes(&get(&server.url("/api/training/j1/download/model")).body);
    assert!(names.keys().all(|n| !n.starts_with("tmp-")), "{names:?}");
    assert!(names.contains_key("checkpoint-100/model.safetensors"));
}

#[test]
fn the_logs_archive_is_deflated() {
    let root = TempDir::new("logs");
    let job = make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let reply = get(&server.url("/api/training/j1/download/logs"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"logs_j1.zip\"")
    );
    let expected = ["training.log", "progress.json", "metrics.jsonl"]
        .iter()
        .map(|n| (n.to_string(), sha256(&fs::read(job.join(n)).unwrap())))
        .collect();
    assert_archive_matches(&reply.body, &expected, root.path());
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&reply.body)).unwrap();
    let log = zip.by_name("training.log").unwrap();
    assert_eq!(log.compression(), zip::CompressionMethod::Deflated);
    assert!(
        log.compressed_size() * 5 < log.size(),
        "text compresses well"
    );
}

#[test]
fn the_logs_archive_without_the_optional_files() {
    let root = TempDir::new("logsonly");
    write(root.path(), "jobs/j2/training.log", "just a log\n");
    let server = Server::start(root.path(), &[]);
    let reply = get(&server.url("/api/training/j2/download/logs"));
    assert_eq!(
        zip_hashes(&reply.body).keys().collect::<Vec<_>>(),
        ["training.log"]
    );
}

/// A job whose model is large enough that a client that stops reading
/// keeps its download in flight (the socket buffers fill).
fn big_job(root: &std::path::Path) {
    let job = root.join("jobs/big");
    fs::create_dir_all(job.join("model")).unwrap();
    let f = fs::File::create(job.join("model/model.safetensors")).unwrap();
    f.set_len(64 << 20).unwrap(); // sparse: reads as zeros, costs no disk
    write(root, "jobs/small/training.log", "x\n");
}

/// Starts a download and stops reading after its first bytes.
fn stalled_download(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(
            b"GET /api/training/big/download/model?compression=stored HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .unwrap();
    let mut first = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    stream
}

#[test]
fn slow_downloads_never_hold_the_workers() {
    let root = TempDir::new("slow");
    big_job(root.path());
    let server = Server::start(root.path(), &["--workers", "2"]);
    let stalled: Vec<TcpStream> = (0..8).map(|_| stalled_download(&server)).collect();
    // Eight downloads in flight on two workers, and the API still answers.
    for _ in 0..5 {
        let reply = get(&server.url("/api/training/jobs"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["jobs"].as_array().unwrap().len(), 2);
    }
    drop(stalled);
}

#[test]
fn downloads_over_the_limit_get_503_with_retry_after() {
    let root = TempDir::new("limit");
    big_job(root.path());
    let server = Server::start(root.path(), &["--max-downloads", "2"]);
    let first = stalled_download(&server);
    let _second = stalled_download(&server);
    let reply = get(&server.url("/api/training/big/download/model"));
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert!(reply.detail().contains("Too many downloads"));
    // Logs count against the same limit.
    assert_eq!(
        get(&server.url("/api/training/small/download/logs")).status,
        503
    );
    // A finished (here: abandoned) download frees its slot.
    drop(first);
    assert!(eventually(Duration::from_secs(30), || {
        get(&server.url("/api/training/small/download/logs")).status == 200
    }));
}

#[test]
fn head_answers_the_same_headers_without_a_body() {
    let root = TempDir::new("head");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let full = get(&server.url("/api/training/j1/download/model"));
    let head = raw(
        server.addr,
        "HEAD /api/training/j1/download/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in [
        "content-length",
        "etag",
        "content-disposition",
        "accept-ranges",
        "content-type",
    ] {
        assert_eq!(head.header(name), full.header(name), "{name}");
    }
}
