//! Downloads that resume: Range, If-Range, ETag, HEAD, curl -C - and wget -c,
//! per-file compression modes, zip64 for a 5 GiB member, and a file that
//! changes mid-stream.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const MODEL: &str = "/api/training/j1/download/model";

#[test]
fn ranges_are_exact_slices_of_the_whole() {
    let root = TempDir::new("ranges");
    make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let full = get(&server.url(MODEL));
    let len = full.body.len();
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let etag = full.header("etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );

    for (range, start, end) in [
        ("bytes=0-0".to_owned(), 0, 1),
        ("bytes=100-199".to_owned(), 100, 200),
        (format!("bytes={}-", len - 5000), len - 5000, len),
        ("bytes=-22".to_owned(), len - 22, len),
        (format!("bytes=10-{}", len + 1000), 10, len),
        (
            format!("bytes={}-{}", len / 2, len / 2),
            len / 2,
            len / 2 + 1,
        ),
    ] {
        let part = get_with(&server.url(MODEL), &[("Range", &range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, full.body[start..end], "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {start}-{}/{len}", end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            part.header("content-length"),
            Some((end - start).to_string().as_str())
        );
        assert_eq!(part.header("etag"), Some(etag.as_str()));
    }

    // Unsatisfiable: 416 with the length.
    for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
        let reply = get_with(&server.url(MODEL), &[("Range", &range)]);
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
    // Several ranges, or nonsense: the whole archive.
    for range in ["bytes=0-1,5-6", "bytes=abc", "lines=1-2"] {
        let reply = get_with(&server.url(MODEL), &[("Range", range)]);
        assert_eq!((reply.status, reply.body.len()), (200, len), "{range}");
    }
    // If-Range: a matching ETag honours the range, a stale one sends it all.
    let matching = get_with(
        &server.url(MODEL),
        &[("Range", "bytes=10-19"), ("If-Range", &etag)],
    );
    assert_eq!((matching.status, matching.body.len()), (206, 10));
    let stale = get_with(
        &server.url(MODEL),
        &[("Range", "bytes=10-19"), ("If-Range", "\"z1-0\"")],
    );
    assert_eq!((stale.status, stale.body.len()), (200, len));
    let dated = get_with(
        &server.url(MODEL),
        &[
            ("Range", "bytes=10-19"),
            ("If-Range", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ],
    );
    assert_eq!(dated.status, 200, "a date cannot be compared strongly");
    // If-None-Match: 304 without a body.
    let not_modified = get_with(&server.url(MODEL), &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
}

#[test]
fn archives_are_deterministic_and_the_etag_follows_the_files() {
    let root = TempDir::new("etag");
    let job = make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let a = get(&server.url(MODEL));
    let b = get(&server.url(MODEL));
    assert_eq!(a.body, b.body, "byte-identical");
    assert_eq!(a.header("etag"), b.header("etag"));
    for mode in ["stored", "auto"] {
        let url = server.url(&format!("{MODEL}?compression={mode}"));
        assert_eq!(get(&url).body, get(&url).body, "{mode}");
    }
    // A touched file (new mtime, same bytes) is a new archive version.
    let file = fs::File::options()
        .append(true)
        .open(job.join("model/config.json"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let c = get(&server.url(MODEL));
    assert_ne!(a.header("etag"), c.header("etag"));
    // A resume against the old ETag now gets the whole new archive.
    let resumed = get_with(
        &server.url(MODEL),
        &[
            ("Range", "bytes=100-"),
            ("If-Range", a.header("etag").unwrap()),
        ],
    );
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.body, c.body);
}

#[test]
fn compression_modes() {
    let root = TempDir::new("modes");
    let job = make_job(root.path(), "j1");
    let server = Server::start(root.path(), &[]);
    let expected = tree_hashes(&job.join("model"));
    let methods = |body: &[u8]| {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).unwrap();
        (0..zip.len())
            .map(|i| {
                let f = zip.by_index(i).unwrap();
                (f.name().unwrap().into_owned(), f.compression())
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let stored = get(&server.url(&format!("{MODEL}?compression=stored")));
    assert_archive_matches(&stored.body, &expected, root.path());
    assert!(
        methods(&stored.body)
            .values()
            .all(|m| *m == zip::CompressionMethod::Stored)
    );
    assert!(stored.header("content-length").is_some());

    let auto = get(&server.url(&format!("{MODEL}?compression=auto")));
    assert_archive_matches(&auto.body, &expected, root.path());
    let auto_methods = methods(&auto.body);
    assert_eq!(
        auto_methods["tokenizer.json"],
        zip::CompressionMethod::Deflated
    );
    assert_eq!(
        auto_methods["model.safetensors"],
        zip::CompressionMethod::Stored
    );
    assert_eq!(
        auto.header("content-length"),
        Some(auto.body.len().to_string().as_str())
    );
    assert!(auto.body.len() < stored.body.len());
    let head = raw(
        server.addr,
        &format!(
            "HEAD {MODEL}?compression=auto HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(head.header("content-length"), auto.header("content-length"));
    assert!(head.body.is_empty());

    // `deflate`: everything deflated, streamed chunked, no ranges.
    let deflate = raw_get(server.addr, &format!("{MODEL}?compression=deflate"));
    assert_eq!(deflate.status, 200);
    assert_eq!(deflate.header("transfer-encoding"), Some("chunked"));
    assert_eq!(deflate.header("content-length"), None);
    assert_eq!(deflate.header("accept-ranges"), None);
    assert_archive_matches(&deflate.body, &expected, root.path());
    assert!(
        methods(&deflate.body)
            .values()
            .all(|m| *m == zip::CompressionMethod::Deflated)
    );
    let ranged = get_with(
        &server.url(&format!("{MODEL}?compression=deflate")),
        &[("Range", "bytes=0-9")],
    );
    assert_eq!(ranged.status, 200, "deflate mode sends the whole archive");

    let bad = get(&server.url(&format!("{MODEL}?compression=gzip")));
    assert_eq!(bad.status, 400);
}

/// Starts a download, reads `keep` bytes of body, and drops the connection:
/// a partial file as an interrupted transfer leaves it.
fn interrupted_download(server: &Server, path: &Path, keep: usize) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(format!("GET {MODEL} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_none_or(|end| got.len() < end + 4 + keep)
    {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let body_start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    fs::write(path, &got[body_start..body_start + keep]).unwrap();
}

#[test]
fn curl_and_wget_resume_to_the_same_bytes() {
    let root = TempDir::new("resume");
    let job = make_job(root.path(), "j1");
    write(&job, "model/shard-2.safetensors", floats(3_000_000, 7));
    let server = Server::start(root.path(), &[]);
    let full = get(&server.url(MODEL)).body;
    let url = server.url(MODEL);

    for keep in [1, 4096, full.len() / 2, full.len() - 1] {
        let partial = root.path().join(format!("curl-{keep}.zip"));
        interrupted_download(&server, &partial, keep);
        let status = Command::new("curl")
            .args(["-sS", "-f", "-C", "-", "-o"])
            .arg(&partial)
            .arg(&url)
            .status()
            .expect("curl installed");
        assert!(status.success());
        assert_eq!(
            sha256(&fs::read(&partial).unwrap()),
            sha256(&full),
            "curl -C - from {keep}"
        );

        let partial = root.path().join(format!("wget-{keep}.zip"));
        interrupted_download(&server, &partial, keep);
        let out = Command::new("wget")
            .args(["-q", "-c", "-O"])
            .arg(&partial)
            .arg(&url)
            .output()
            .expect("wget installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            sha256(&fs::read(&partial).unwrap()),
            sha256(&full),
            "wget -c from {keep}"
        );
    }
    assert_archive_matches(&full, &tree_hashes(&job.join("model")), root.path());
}

/// Bytes read and written by a process, from /proc/PID/io (sendfile counts
/// in both).
fn io_counters(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap()
    };
    (field("rchar:"), field("wchar:"))
}

/// A range deep into the archive reads and sends only what lies after its
/// start (plus, with a cold cache, a read pass for the CRCs of what lies
/// before, which sends nothing).
#[test]
fn a_late_range_costs_only_its_own_bytes() {
    let root = TempDir::new("late");
    let job = root.path().join("jobs/j1");
    write(
        &job,
        "model/a-tokenizer.json",
        "{\"vocab\": {\"w\": 1}}".repeat(100_000),
    );
    write(&job, "model/b.safetensors", floats(40 << 20, 1));
    write(&job, "model/c.safetensors", floats(10 << 20, 2));
    let server = Server::start(root.path(), &[]);
    let pid = server.child.id();
    let len: u64 = get(&server.url(MODEL)).body.len() as u64; // warms the caches
    let start = len - len / 10;
    let tail = len - start;

    let (r0, w0) = io_counters(pid);
    let reply = get_with(&server.url(MODEL), &[("Range", &format!("bytes={start}-"))]);
    assert_eq!((reply.status, reply.body.len() as u64), (206, tail));
    let (r1, w1) = io_counters(pid);
    let slack = 1 << 20;
    assert!(
        r1 - r0 < tail + slack,
        "read {} for a {tail}-byte range",
        r1 - r0
    );
    assert!(
        w1 - w0 < tail + slack,
        "wrote {} for a {tail}-byte range",
        w1 - w0
    );

    // After a restart the CRCs of the earlier members are read again, but
    // still never sent.
    drop(server);
    let server = Server::start(root.path(), &[]);
    let pid = server.child.id();
    let (r0, w0) = io_counters(pid);
    let cold = get_with(&server.url(MODEL), &[("Range", &format!("bytes={start}-"))]);
    assert_eq!(cold.body, reply.body);
    let (r1, w1) = io_counters(pid);
    assert!(
        w1 - w0 < tail + slack,
        "wrote {} for a {tail}-byte range",
        w1 - w0
    );
    assert!(r1 - r0 > start / 2, "the read pass for the CRCs happened");
}

/// A file that changes while it streams cuts the response short of its
/// Content-Length; the connection closes right after the last byte sent.
#[test]
fn a_file_changing_mid_stream_aborts_the_response() {
    let root = TempDir::new("change");
    let job = root.path().join("jobs/j1");
    fs::create_dir_all(job.join("model")).unwrap();
    let big = job.join("model/big.safetensors");
    fs::File::create(&big).unwrap().set_len(256 << 20).unwrap();
    write(&job, "model/z-config.json", "{}");
    let server = Server::start(root.path(), &[]);

    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(
            format!("GET {MODEL}?compression=stored HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = stream.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]).into_owned();
    let length = content_length(&head) as u64;
    // The client has stopped reading; the file changes under the server.
    let mut f = fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"changed").unwrap();
    drop(f);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest); // ends at EOF (or a reset), not a timeout
    let body = (n + rest.len()) as u64 - head.find("\r\n\r\n").unwrap() as u64 - 4;
    assert!(body < length, "short body: {body} of {length}");
    assert!(
        eventually(Duration::from_secs(10), || server.log().contains("Changed")),
        "logged: {}",
        server.log()
    );
}

/// Python's zipfile and unzip -t over a 5 GiB member: zip64 exactly where
/// needed. The source is a sparse file and the download is written sparse,
/// so no disk space is used.
#[test]
fn a_five_gib_member_needs_and_gets_zip64() {
    let root = TempDir::new("zip64");
    let job = root.path().join("jobs/j1");
    fs::create_dir_all(job.join("model")).unwrap();
    let huge = job.join("model/huge.safetensors");
    let f = fs::File::create(&huge).unwrap();
    f.set_len(5 << 30).unwrap();
    f.write_all_at_end(b"end of the tensor");
    write(&job, "model/config.json", "{\"big\": true}");
    let server = Server::start(root.path(), &[]);

    let out = root.path().join("huge.zip");
    let len = sparse_download(&server.url(MODEL), &out);
    assert!(len > 5 << 30);
    assert!(unzip_test(&out), "unzip -t");
    let script = r#"
import sys, zipfile, zlib
z = zipfile.ZipFile(sys.argv[1])
info = z.getinfo("huge.safetensors")
assert info.file_size == 5 << 30, info.file_size
crc = 0
with z.open(info) as f:
    for block in iter(lambda: f.read(8 << 20), b""):
        crc = zlib.crc32(block, crc)
        tail = block
assert crc == info.CRC and tail.endswith(b"end of the tensor")
assert z.read("config.json") == b'{"big": true}'
print("ok")
"#;
    let py = Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    fs::remove_file(&out).unwrap();

    // A small archive carries no zip64 records at all.
    write(root.path(), "jobs/small/model/a.bin", floats(1000, 1));
    let small = get(&server.url("/api/training/small/download/model")).body;
    assert!(
        !small.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]),
        "no zip64 end record"
    );
    assert!(
        !small.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x07]),
        "no zip64 locator"
    );
}

trait WriteAtEnd {
    fn write_all_at_end(&self, bytes: &[u8]);
}

impl WriteAtEnd for fs::File {
    fn write_all_at_end(&self, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let len = self.metadata().unwrap().len();
        self.write_all_at(bytes, len - bytes.len() as u64).unwrap();
    }
}

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Downloads `url` to `path`, seeking over all-zero blocks so the file is
/// sparse; returns the body length.
fn sparse_download(url: &str, path: &Path) -> u64 {
    let mut response = agent().get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut file = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = reader.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled] == ZEROS[..filled] {
            file.seek(SeekFrom::Current(filled as i64)).unwrap();
        } else {
            file.write_all(&buf[..filled]).unwrap();
        }
        len += filled as u64;
    }
    file.set_len(len).unwrap();
    len
}
