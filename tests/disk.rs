//! Disk space and cleanup over a real server: job sizes measured in the
//! background against what the files take, the root's file system against
//! `statvfs`, the warning line, the gauges, and `--keep-checkpoints`
//! deleting the oldest complete checkpoints of finished jobs only.
#![allow(clippy::disallowed_methods)] // the test measures the fixtures itself

mod common;

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

/// Allocated bytes under `dir`, each inode once, links not followed (`du`).
fn du(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

fn statvfs(path: &Path) -> (u64, u64) {
    let path = CString::new(path.to_str().unwrap()).unwrap();
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a struct for the kernel to fill.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    let unit = stat.f_frsize as u64;
    (stat.f_blocks as u64 * unit, stat.f_bavail as u64 * unit)
}

fn set_mtime(path: &Path, ago: u64) {
    let then = SystemTime::now() - Duration::from_secs(ago);
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap().flatten() {
            set_mtime(&entry.path(), ago);
        }
    }
    fs::File::open(path).unwrap().set_modified(then).unwrap();
}

fn completed(root: &Path, id: &str) {
    write(
        root,
        &format!("jobs/{id}/job.json"),
        format!(
            r#"{{"id":"{id}","recipe":"demo","status":"completed","created_at":"2026-11-29T00:00:00.000Z"}}"#
        ),
    );
}

#[test]
fn sizes_and_the_file_system_are_reported_and_warned_about() {
    let root = TempDir::new("disk");
    let job = make_job(root.path(), "j1");
    completed(root.path(), "j1");
    // Every share of the disk is "filling up" at 0%.
    let server = Server::start(root.path(), &["--disk-warn-percent", "0"]);
    let expected = du(&job);
    let mut listed = Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            listed = get(&server.url("/api/training/jobs/j1")).json()["size_bytes"].clone();
            listed.as_u64() == Some(expected)
        }),
        "listed {listed}, du {expected}"
    );
    let disk = get(&server.url("/api/training/disk")).json();
    let (total, free) = statvfs(root.path());
    assert_eq!(disk["total_bytes"].as_u64(), Some(total));
    // Other tests write meanwhile: free space moves a little.
    let reported_free = disk["free_bytes"].as_u64().unwrap() as f64;
    assert!(
        (reported_free - free as f64).abs() < 0.02 * total as f64,
        "{disk} vs {free}"
    );
    assert_eq!(disk["jobs_bytes"].as_u64(), Some(expected));
    assert_eq!(disk["warning"], true);
    assert!(server.logged("disk: "), "{}", server.log());
    let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    assert!(
        metrics.contains(&format!("trainbox_disk_bytes{{kind=\"total\"}} {total}")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("trainbox_disk_bytes{{kind=\"jobs\"}} {expected}")));

    // A bigger model: measured again.
    write(&job, "model/extra.bin", floats(1 << 20, 9));
    let grown = du(&job);
    assert!(eventually(Duration::from_secs(20), || {
        get(&server.url("/api/training/jobs/j1")).json()["size_bytes"].as_u64() == Some(grown)
    }));

    // Out of range is refused at start.
    let refused = std::process::Command::new(BIN)
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--disk-warn-percent", "140"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--disk-warn-percent"));
}

#[test]
fn keep_checkpoints_prunes_the_oldest_of_finished_jobs_only() {
    let root = TempDir::new("prune");
    let done = make_job(root.path(), "done");
    completed(root.path(), "done");
    // Written in this order: checkpoint-100, the .ckpt, checkpoint-200.
    set_mtime(&done.join("model/checkpoint-100"), 300);
    set_mtime(&done.join("model/epoch=1-step=150.ckpt"), 200);
    set_mtime(&done.join("model/checkpoint-200"), 100);
    // Still being written by its trainer: nothing of it is touched.
    let running = make_job(root.path(), "running");
    let server = Server::start(root.path(), &["--keep-checkpoints", "1"]);
    assert!(eventually(Duration::from_secs(20), || {
        !done.join("model/checkpoint-100").exists()
            && !done.join("model/epoch=1-step=150.ckpt").exists()
    }));
    assert!(done.join("model/checkpoint-200").is_dir());
    assert!(done.join("model/config.json").is_file());
    // The one being written (tmp-) is not a complete checkpoint.
    assert!(done.join("model/tmp-checkpoint-300").is_dir());
    for name in ["checkpoint-100", "epoch=1-step=150.ckpt"] {
        assert!(
            server.logged(&format!("job done: deleted checkpoint {name}")),
            "{}",
            server.log()
        );
    }
    let listed = get(&server.url("/api/training/done/checkpoints")).json();
    let names: Vec<&str> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["checkpoint-200"]);
    assert_eq!(
        get(&server.url("/api/training/jobs/running")).json()["status"],
        "running"
    );
    for name in ["checkpoint-100", "checkpoint-200", "epoch=1-step=150.ckpt"] {
        assert!(running.join("model").join(name).exists(), "{name}");
    }
}
