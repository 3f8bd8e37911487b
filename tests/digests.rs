//! The digest index over a real server: the files of a finished job are
//! hashed in the background; `/files` lists their SHA-256 and gives a
//! `SHA256SUMS` that `sha256sum -c` accepts after `unzip`; once every CRC
//! is known, archives carry CRCs and sizes up front and a strict streaming
//! reader (stream-unzip) reads them; an archive served before that keeps
//! its layout, so a bare Range resume never mixes the two.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Records job `id` as completed.
fn finished_job(root: &std::path::Path, id: &str) {
    write(
        root,
        &format!("jobs/{id}/job.json"),
        format!(
            r#"{{"id":"{id}","recipe":"demo","status":"completed","created_at":"2026-01-01T00:00:00.000Z"}}"#
        ),
    );
}

/// A python that can `import stream_unzip` (./run-tests makes one), if any.
fn stream_unzip_python() -> Option<String> {
    let candidates = [
        std::env::var("TRAINBOX_TEST_PYTHON").ok(),
        Some("python3".into()),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import stream_unzip"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Reads `archive` with stream-unzip, front to back; the members' SHA-256.
fn stream_unzip(
    python: &str,
    archive: &std::path::Path,
) -> Result<BTreeMap<String, String>, String> {
    let script = r#"
import hashlib, json, sys
from stream_unzip import stream_unzip
def chunks():
    with open(sys.argv[1], "rb") as f:
        while True:
            block = f.read(65536)
            if not block:
                return
            yield block
out = {}
for name, size, data in stream_unzip(chunks()):
    h = hashlib.sha256()
    for block in data:
        h.update(block)
    out[name.decode()] = h.hexdigest()
print(json.dumps(out))
"#;
    let run = Command::new(python)
        .args(["-c", script])
        .arg(archive)
        .output()
        .unwrap();
    if !run.status.success() {
        return Err(String::from_utf8_lossy(&run.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&run.stdout).unwrap())
}

#[test]
fn finished_jobs_are_hashed_verified_and_streamable() {
    let root = TempDir::new("digests");
    // Running at first (no record, files written just now): only its
    // complete checkpoints are hashed, not the model's own files.
    make_job(root.path(), "done");
    let model = root.path().join("jobs/done/model");
    let on_disk = tree_hashes(&model);
    let server = Server::start(root.path(), &[]);
    let files_url = server.url("/api/training/done/files");

    // A stored archive planned before the digests are known: descriptors.
    let stored_url = server.url("/api/training/done/download/model?compression=stored");
    let early = get(&stored_url);
    let early_etag = early.header("etag").unwrap().to_owned();
    assert_eq!(get(&files_url).json()["hashed"], false);

    // It finishes: now every file is hashed.
    finished_job(root.path(), "done");

    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || get(&files_url).json()["hashed"]
            == true),
        "hashed in the background"
    );
    let total: u64 = on_disk.keys().map(|p| fs_len(&model.join(p))).sum();
    eprintln!(
        "digest worker: {} files, {:.1} MB hashed within {:?}",
        on_disk.len(),
        total as f64 / 1e6,
        started.elapsed()
    );
    let listed = get(&files_url).json();
    let hashes: BTreeMap<String, String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(hashes, on_disk, "/files says what sha256 of the files says");

    // SHA256SUMS verifies the unzipped download with sha256sum -c.
    let sums = get(&format!("{files_url}?format=sha256sum"));
    assert_eq!(sums.status, 200);
    assert_eq!(
        sums.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let work = TempDir::new("digests-unzip");
    let zip_path = work.path().join("model.zip");
    std::fs::write(
        &zip_path,
        get(&server.url("/api/training/done/download/model")).body,
    )
    .unwrap();
    let unzipped = work.path().join("out");
    let unzip = Command::new("unzip")
        .args(["-qq", "-d"])
        .arg(&unzipped)
        .arg(&zip_path)
        .status()
        .unwrap();
    assert!(unzip.success());
    std::fs::write(unzipped.join("SHA256SUMS"), &sums.body).unwrap();
    let check = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&unzipped)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // The stored archive was served with descriptors before the digests
    // were known: it keeps that layout (pinned), so a bare Range resume,
    // as curl -C - and wget -c send, gets the very bytes it started with.
    let resumed = get_with(&stored_url, &[("Range", "bytes=100-")]);
    assert_eq!(resumed.status, 206);
    assert_eq!(resumed.body, early.body[100..]);
    assert_eq!(get(&stored_url).header("etag"), Some(early_etag.as_str()));

    // An archive not served before has every CRC up front: no data
    // descriptors, and a comment naming the job and its manifest, with the
    // manifest's own SHA-256 (a checksum file that checks the checksums).
    let final_url =
        server.url("/api/training/done/download/model?compression=stored&exclude=checkpoints");
    let late = get(&final_url);
    let final_model: BTreeMap<String, String> = on_disk
        .iter()
        .filter(|(path, _)| !path.starts_with("checkpoint") && !path.ends_with(".ckpt"))
        .map(|(p, h)| (p.clone(), h.clone()))
        .collect();
    assert_eq!(zip_hashes(&late.body), final_model);
    assert_ne!(late.header("etag"), Some(early_etag.as_str()));
    let final_sums = get(&format!("{files_url}?exclude=checkpoints&format=sha256sum")).body;
    let zip = zip::ZipArchive::new(std::io::Cursor::new(&late.body)).unwrap();
    let comment = String::from_utf8(zip.comment().to_vec()).unwrap();
    assert_eq!(
        comment,
        format!(
            "trainbox job done, model without checkpoints; manifest: \
             /api/training/done/files?exclude=checkpoints&format=sha256sum, SHA-256 {}",
            sha256(&final_sums)
        )
    );

    match stream_unzip_python() {
        Some(python) => {
            let auto = get(&server.url("/api/training/done/download/model")).body;
            for (mode, body, expected) in [
                ("stored", late.body.clone(), &final_model),
                ("auto", auto, &on_disk),
            ] {
                let path = work.path().join(format!("{mode}.zip"));
                std::fs::write(&path, body).unwrap();
                let read = stream_unzip(&python, &path)
                    .unwrap_or_else(|e| panic!("stream-unzip rejects {mode}: {e}"));
                assert_eq!(&read, expected, "stream-unzip reads {mode}");
                eprintln!("stream-unzip: {mode} archive read, {} members", read.len());
            }
            // Before the digests, the stored layout is what it rejected.
            let path = work.path().join("early.zip");
            std::fs::write(&path, &early.body).unwrap();
            assert!(
                stream_unzip(&python, &path).is_err(),
                "descriptors after stored data"
            );
        }
        None => eprintln!("stream-unzip is not installed here: skipped (./run-tests installs it)"),
    }
}

#[test]
fn a_manifest_waits_for_every_digest_and_names_are_checked() {
    let root = TempDir::new("digests-running");
    make_job(root.path(), "run");
    // Running (no record, written just now), with one checkpoint still
    // being written: only complete checkpoints are hashed.
    write(
        root.path(),
        "jobs/run/model/checkpoint-300/model.safetensors",
        floats(1000, 9),
    );
    let server = Server::start(root.path(), &[]);
    let url = server.url("/api/training/run/files");
    let done = format!("{url}?checkpoint=checkpoint-100");
    assert!(eventually(
        Duration::from_secs(30),
        || get(&done).json()["hashed"] == true
    ));
    let sums = get(&format!("{done}&format=sha256sum"));
    assert_eq!(sums.status, 200);
    let text = String::from_utf8(sums.body).unwrap();
    assert!(
        text.lines()
            .all(|l| l.len() > 66 && l.as_bytes()[64..66] == *b"  "),
        "{text}"
    );
    assert!(
        text.contains("  model.safetensors\n"),
        "names as in the checkpoint's archive: {text}"
    );

    let writing = get(&format!("{url}?checkpoint=checkpoint-300&format=sha256sum"));
    assert_eq!(writing.status, 409);
    assert_eq!(writing.header("retry-after"), Some("5"));
    assert_eq!(
        get(&format!("{url}?checkpoint=checkpoint-300")).json()["hashed"],
        false
    );

    assert_eq!(get(&format!("{url}?checkpoint=nope")).status, 404);
    assert_eq!(get(&format!("{url}?format=md5")).status, 400);
    assert_eq!(get(&server.url("/api/training/nope/files")).status, 404);
}

fn fs_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
