//! Hostile or huge files in a job directory cost bounded memory and time:
//! a 2-million-line history read by 8 clients at once, a FIFO where a file
//! should be, NaN from a diverged run.
#![allow(clippy::disallowed_methods)] // fixtures live on the ambient filesystem

mod common;

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

/// Peak and current resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[test]
fn a_two_million_line_history_costs_bounded_memory_and_is_cached() {
    let root = TempDir::new("huge-history");
    let job = root.path().join("jobs/long");
    fs::create_dir_all(job.join("model")).unwrap();
    let mut file = std::io::BufWriter::new(fs::File::create(job.join("metrics.jsonl")).unwrap());
    let lines = 2_000_000u64;
    for step in 0..lines {
        let loss = if step == 1_234_567 {
            99.0
        } else {
            5.0 / (1.0 + step as f64 / 1e4)
        };
        writeln!(
            file,
            r#"{{"step": {step}, "total_steps": {lines}, "loss": {loss:.6}, "learning_rate": 0.0003, "epoch": {:.4}}}"#,
            step as f64 / 1e5
        )
        .unwrap();
    }
    drop(file);
    let size = fs::metadata(job.join("metrics.jsonl")).unwrap().len();
    let server = Server::start(root.path(), &[]);
    let pid = server.child.id();
    let (_, before) = rss_kib(pid);
    let url = server.url("/api/training/long/metrics");
    let started = Instant::now();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for reader in readers {
        let reply = reader.join().unwrap();
        assert_eq!(reply.status, 200);
        let body = reply.json();
        let history = body["history"].as_array().unwrap();
        assert!(
            history.len() <= 1024 && history.len() >= 256,
            "{}",
            history.len()
        );
        assert_eq!(body["samples"], lines);
        assert_eq!(history.first().unwrap()["step"], 0);
        assert_eq!(history.last().unwrap()["step"], lines - 1);
        assert!(
            history.iter().any(|p| p["loss"] == 99.0),
            "the spike survives"
        );
    }
    let cold = started.elapsed();
    let (peak, after) = rss_kib(pid);
    eprintln!(
        "{} MB history, 8 readers at once: {cold:?}; server RSS {before} KiB before, peak {peak} KiB, {after} KiB after",
        size / 1_000_000
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    // Asked again: nothing new to read.
    let started = Instant::now();
    assert_eq!(get(&url).status, 200);
    eprintln!("repeat request: {:?}", started.elapsed());
    // The trainer appends: only the new lines are read, and they show.
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(job.join("metrics.jsonl"))
        .unwrap();
    writeln!(file, r#"{{"step": {lines}, "loss": 0.001}}"#).unwrap();
    let body = get(&url).json();
    assert_eq!(body["samples"], lines + 1);
    assert_eq!(
        body["history"].as_array().unwrap().last().unwrap()["step"],
        lines
    );
}

#[test]
fn special_files_and_nan_are_skipped_not_errors() {
    let root = TempDir::new("special-history");
    let job = root.path().join("jobs/odd");
    fs::create_dir_all(job.join("model/checkpoint-20")).unwrap();
    // A FIFO where the history should be: opening it must not block, and
    // the checkpoints' log_history stands in.
    let fifo = job.join("metrics.jsonl");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    // A diverged run, as Python's json writes it.
    write(
        &job,
        "model/checkpoint-20/trainer_state.json",
        r#"{"global_step": 20, "max_steps": 100, "log_history": [
            {"loss": 2.5, "step": 10, "learning_rate": 0.1}, {"loss": NaN, "step": 20}]}"#,
    );
    let server = Server::start(root.path(), &[]);
    let started = Instant::now();
    let history = get(&server.url("/api/training/odd/metrics"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        history.status,
        200,
        "{}",
        String::from_utf8_lossy(&history.body)
    );
    assert_eq!(history.json()["history"][0]["loss"], 2.5);
    let progress = get(&server.url("/api/training/odd/progress")).json();
    assert_eq!(progress["step"], 20, "{progress}");
    assert_eq!(progress["loss"], 2.5, "the last finite loss: {progress}");
    assert!(server.logged("skipping metrics.jsonl"));
}

#[test]
fn a_fan_of_symlinks_costs_one_walk() {
    let root = TempDir::new("symlink-fan");
    let job = root.path().join("jobs/fan");
    let mut dir = job.join("model/checkpoint-1");
    write(&dir, "model.safetensors", floats(1000, 1));
    // 24 levels, each a real `d` and two links to it: 3^24 paths to a naive
    // walk, 25 directories to this one.
    for level in 0..24 {
        fs::create_dir_all(dir.join("d")).unwrap();
        std::os::unix::fs::symlink("d", dir.join("a")).unwrap();
        std::os::unix::fs::symlink("d", dir.join("b")).unwrap();
        write(&dir.join("d"), &format!("w{level}.bin"), floats(10, level));
        dir = dir.join("d");
    }
    let server = Server::start(root.path(), &[]);
    let started = Instant::now();
    let checkpoints = get(&server.url("/api/training/fan/checkpoints"));
    let took = started.elapsed();
    eprintln!("/checkpoints on a 24-level symlink fan: {took:?}");
    assert_eq!(checkpoints.status, 200);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Just written (no trainer_state.json): taken as it is.
    let zip =
        get(&server
            .url("/api/training/fan/download/model?checkpoint=checkpoint-1&allow_incomplete=1"));
    assert_eq!(zip.status, 200);
    let names = zip_hashes(&zip.body);
    assert_eq!(
        names.len(),
        25,
        "each file once, under its real path: {:?}",
        names.keys()
    );
    assert!(names.keys().all(|n| !n.contains("a/") && !n.contains("b/")));
}

#[test]
fn a_hard_link_to_another_owners_file_is_not_archived() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: needs root to make files of two owners");
        return;
    }
    let root = TempDir::new("hardlink");
    let job = root.path().join("jobs/shared");
    write(&job, "model/model.safetensors", floats(1000, 1));
    // The job belongs to a user (nobody); a root-only file elsewhere...
    let nobody = 65534;
    for dir in [job.clone(), job.join("model")] {
        std::os::unix::fs::chown(&dir, Some(nobody), Some(nobody)).unwrap();
    }
    std::os::unix::fs::chown(
        job.join("model/model.safetensors"),
        Some(nobody),
        Some(nobody),
    )
    .unwrap();
    let secret = root.path().join("secret");
    fs::write(&secret, "root only").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // ...hard-linked into the model by that user.
    fs::hard_link(&secret, job.join("model/stolen.txt")).unwrap();
    let server = Server::start(root.path(), &[]);
    let zip = get(&server.url("/api/training/shared/download/model"));
    assert_eq!(zip.status, 200);
    let names = zip_hashes(&zip.body);
    assert_eq!(names.keys().collect::<Vec<_>>(), ["model.safetensors"]);
    assert!(server.logged("stolen.txt: a hard link to another owner's file"));
}

#[test]
fn names_cannot_forge_log_lines() {
    let root = TempDir::new("log-forgery");
    let job = root.path().join("jobs/forge");
    write(&job, "model/model.safetensors", floats(1000, 1));
    // A dangling link, whose name the server logs when it skips it.
    let forged = "evil\n2026-01-01T00:00:00.000Z INFO  access: GET forged 200";
    std::os::unix::fs::symlink("/nonexistent", job.join("model").join(forged)).unwrap();
    let server = Server::start(root.path(), &[]);
    assert_eq!(
        get(&server.url("/api/training/forge/download/model")).status,
        200
    );
    assert!(server.logged("evil\\n2026-01-01T00:00:00.000Z INFO  access: GET forged 200"));
    assert!(
        !server
            .log()
            .lines()
            .any(|l| l.contains("INFO  access: GET forged") && !l.contains("skipping symlink")),
        "{}",
        server.log()
    );
}

#[test]
fn the_queue_is_capped_and_a_broken_recipes_file_is_a_503() {
    let root = TempDir::new("queue-cap");
    write(
        root.path(),
        "recipes.json",
        r#"{"recipes": {"nap": {"command": ["/bin/sleep", "30"]}}}"#,
    );
    let server = Server::start(root.path(), &["--max-queued", "3"]);
    let submit = || post(&server.url("/api/training/jobs"), r#"{"recipe": "nap"}"#);
    // One runs, three wait, the next is refused before anything is written.
    let statuses: Vec<u16> = (0..6).map(|_| submit().status).collect();
    assert_eq!(statuses, [201, 201, 201, 201, 429, 429], "{statuses:?}");
    let refused = submit();
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert!(refused.detail().contains("queue is full"));
    assert_eq!(fs::read_dir(root.path().join("jobs")).unwrap().count(), 4);
    // The admin breaks recipes.json: starting says where; all else serves.
    write(
        root.path(),
        "recipes.json",
        "{\"recipes\": {\n  \"nap\": {\"command\": [\"/bin/sleep\" \"30\"]}}}",
    );
    let broken = submit();
    assert_eq!(
        broken.status,
        503,
        "{}",
        String::from_utf8_lossy(&broken.body)
    );
    assert!(broken.detail().contains("line 2"), "{}", broken.detail());
    assert_eq!(get(&server.url("/api/training/jobs")).status, 200);
    assert_eq!(get(&server.url("/healthz")).status, 200);
}

#[test]
fn ten_thousand_jobs_come_in_pages() {
    let root = TempDir::new("many-jobs");
    let total = 10_000;
    for i in 0..total {
        let id = format!("job-{i:05}");
        // Creation times a second apart (some equal, to test the id tiebreak).
        let created = format!(
            "2026-01-01T{:02}:{:02}:{:02}.000Z",
            (i / 2) / 3600,
            (i / 2) / 60 % 60,
            (i / 2) % 60
        );
        write(
            &root.path().join("jobs").join(&id),
            "job.json",
            format!(
                r#"{{"id": "{id}", "recipe": "r", "status": "completed", "created_at": "{created}"}}"#
            ),
        );
    }
    let server = Server::start(root.path(), &[]);
    let mut seen = Vec::new();
    let mut url = server.url("/api/training/jobs?limit=50");
    let started = Instant::now();
    // The first pages, then a jump deep into the list by cursor.
    for _ in 0..3 {
        let page = get(&url).json();
        let jobs = page["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 50);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        let next = page["next"].as_str().unwrap();
        url = server.url(&format!("/api/training/jobs?limit=50&after={next}"));
    }
    eprintln!("three 50-job pages of {total}: {:?}", started.elapsed());
    let expected: Vec<String> = (0..150)
        .map(|i| format!("job-{:05}", total - 1 - i))
        .collect();
    assert_eq!(
        seen, expected,
        "newest first, ties by id, no gaps or repeats"
    );
    let last =
        get(&server.url("/api/training/jobs?limit=50&after=2026-01-01T00:00:01.000Z_job-00002"))
            .json();
    let ids: Vec<&str> = last["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["job-00001", "job-00000"]);
    assert!(last["next"].is_null(), "the last page");
    // The unpaged form is unchanged.
    let all = get(&server.url("/api/training/jobs")).json();
    assert_eq!(all["jobs"].as_array().unwrap().len(), total);
    assert!(all.get("next").is_none());
}
