//! The index over a real directory: what a trainer writes after the index
//! was built shows up (by inotify, and by revalidation without it), jobs
//! come and go, and pages follow the list's order.
#![allow(clippy::disallowed_methods)] // the test plays the trainer: std::fs

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

struct Root(PathBuf);

impl Root {
    fn new() -> Root {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "trainbox-index-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        Root(path)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn job(&self, id: &str, created_at: &str) {
        self.write(
            &format!("jobs/{id}/job.json"),
            &format!(
                r#"{{"id": "{id}", "recipe": "r", "status": "running", "created_at": "{created_at}"}}"#
            ),
        );
    }

    fn index(&self, inotify: bool) -> Arc<JobIndex> {
        JobIndex::open_with(Arc::new(Store::open(&self.0).unwrap()), inotify).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn id(text: &str) -> JobId {
    JobId::parse(text).unwrap()
}

fn job_json(entry: &Entry) -> Value {
    serde_json::from_slice(&entry.json).unwrap()
}

fn listed(index: &JobIndex) -> Vec<String> {
    let list: Value = serde_json::from_slice(&index.list_json()).unwrap();
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits (up to 10 s) for `check`; returns how long it took.
fn within(mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// What a trainer does after the index is built: a new job, progress, a
/// model directory, a checkpoint, and a job removed.
fn follows_the_disk(inotify: bool) {
    let root = Root::new();
    root.job("a", "2026-11-28T10:00:00Z");
    let index = root.index(inotify);
    assert_eq!(
        index.mode(),
        if inotify {
            Mode::Inotify
        } else {
            Mode::Revalidating
        }
    );
    assert_eq!(listed(&index), ["a"]);

    root.job("b", "2026-11-28T11:00:00Z");
    let took = within(|| listed(&index) == ["b", "a"]).expect("a new job is listed");
    eprintln!("inotify {inotify}: a new job listed after {took:?}");

    let generation = index.generation();
    root.write("jobs/b/progress.json", r#"{"step": 5, "total_steps": 10}"#);
    let took = within(|| {
        index
            .job(&id("b"))
            .is_some_and(|e| e.progress.as_ref().and_then(|p| p.0.step) == Some(5))
    })
    .expect("new progress is seen");
    eprintln!("inotify {inotify}: progress seen after {took:?}");
    // The entry is in place a moment before the streams are woken.
    within(|| index.generation() > generation).expect("the streams were woken");
    let listed_json: Value = serde_json::from_slice(&index.list_json()).unwrap();
    assert_eq!(
        listed_json["jobs"][0]["progress"]["step"], 5,
        "the list follows"
    );

    fs::create_dir_all(root.0.join("jobs/a/model")).unwrap();
    root.write("jobs/a/model/config.json", "{}");
    within(|| {
        index
            .job(&id("a"))
            .is_some_and(|e| job_json(&e)["has_model"] == true)
    })
    .expect("a model appearing is seen");

    fs::remove_dir_all(root.0.join("jobs/a")).unwrap();
    within(|| listed(&index) == ["b"]).expect("a removed job leaves the list");
    assert!(index.job(&id("a")).is_none());
}

#[test]
fn inotify_follows_the_disk() {
    follows_the_disk(true);
}

#[test]
fn revalidation_follows_the_disk() {
    follows_the_disk(false);
}

/// A root without `jobs/` yet: the first job's directory is made right
/// after `jobs/` itself, before a watch on `jobs/` can exist. It must be
/// watched all the same: its later changes show.
#[test]
fn the_first_job_of_an_empty_root_is_watched() {
    let root = Root::new();
    let index = root.index(true);
    root.job("first", "2026-11-28T10:00:00Z");
    within(|| listed(&index) == ["first"]).expect("listed");
    for step in 1..=3 {
        root.write("jobs/first/p.tmp", &format!(r#"{{"step": {step}}}"#));
        fs::rename(
            root.0.join("jobs/first/p.tmp"),
            root.0.join("jobs/first/progress.json"),
        )
        .unwrap();
        // Within `within`'s 10 s: by a watch, since only the minute's
        // safety sweep would find it otherwise.
        within(|| {
            index
                .job(&id("first"))
                .is_some_and(|e| e.progress.as_ref().and_then(|p| p.0.step) == Some(step))
        })
        .expect("each step is seen");
    }
}

#[test]
fn a_job_not_seen_yet_is_read_on_request() {
    let root = Root::new();
    let index = root.index(false);
    root.job("fresh", "2026-11-28T10:00:00Z");
    // Before any revalidation: the request reads it.
    let entry = index.job(&id("fresh")).expect("read from the disk");
    assert_eq!(entry.status, JobStatus::Running);
    assert!(index.job(&id("missing")).is_none());
}

#[test]
fn pages_follow_the_list_order_and_cursors() {
    let root = Root::new();
    for i in 0..25 {
        root.job(&format!("j{i:02}"), &format!("2026-11-28T10:00:{i:02}Z"));
    }
    // Same creation time: the id breaks the tie.
    root.job("tie-a", "2026-11-28T10:00:07Z");
    let index = root.index(false);
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page: Value = serde_json::from_slice(&index.page_json(4, after.as_ref())).unwrap();
        for job in page["jobs"].as_array().unwrap() {
            seen.push(job["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(Cursor::parse(next).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, listed(&index), "pages put together are the list");
    assert_eq!(seen.len(), 26);
    assert_eq!(seen[0], "j24");
    let tie = seen.iter().position(|s| s == "tie-a").unwrap();
    assert_eq!(seen[tie + 1], "j07");
}

#[test]
fn the_list_matches_what_serde_json_writes() {
    let root = Root::new();
    root.job("a", "2026-11-28T10:00:00Z");
    root.job("b", "2026-11-28T10:00:01Z");
    let index = root.index(false);
    let jobs: Vec<Value> = ["b", "a"]
        .iter()
        .map(|i| job_json(&index.job(&id(i)).unwrap()))
        .collect();
    assert_eq!(
        &*index.list_json(),
        serde_json::to_vec(&serde_json::json!({ "jobs": jobs }))
            .unwrap()
            .as_slice()
    );
    let page = index.page_json(1, None);
    let expected = serde_json::json!({ "jobs": [jobs[0]], "next": "2026-11-28T10:00:01Z_b" });
    assert_eq!(page, serde_json::to_vec(&expected).unwrap());
}

#[test]
fn counts_by_status() {
    let root = Root::new();
    root.job("a", "2026-11-28T10:00:00Z");
    root.job("b", "2026-11-28T10:00:01Z");
    root.write("jobs/ext/progress.json", r#"{"step": 3, "total_steps": 3}"#);
    let index = root.index(false);
    let mut counts = index.counts();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, [(JobStatus::Completed, 1), (JobStatus::Running, 2)]);
}

/// What unmodified trainers write, followed as it is written: a Hugging
/// Face checkpoint made in place and the final `trainer_state.json` of
/// `save_state()`; a Lightning `CSVLogger` file appearing in a new
/// `version_N/` and growing.
fn follows_framework_files(inotify: bool) {
    let root = Root::new();
    root.job("hf", "2026-11-28T10:00:00Z");
    root.job("pl", "2026-11-28T11:00:00Z");
    fs::create_dir_all(root.0.join("jobs/hf/model")).unwrap();
    let index = root.index(inotify);
    let step_of = |job: &str| {
        index
            .job(&id(job))
            .and_then(|e| e.progress.clone())
            .map(|(p, source)| (p.step, source))
    };

    // transformers 5.x: checkpoint-50/ in place, trainer_state.json last.
    root.write("jobs/hf/model/checkpoint-50/model.safetensors", "weights");
    root.write(
        "jobs/hf/model/checkpoint-50/trainer_state.json",
        r#"{"global_step": 50, "max_steps": 200, "log_history": [{"loss": 2.5, "step": 50}]}"#,
    );
    let took = within(|| step_of("hf") == Some((Some(50), "trainer_state.json")))
        .expect("a checkpoint's state is seen");
    eprintln!("inotify {inotify}: checkpoint state seen after {took:?}");
    root.write(
        "jobs/hf/model/trainer_state.json",
        r#"{"global_step": 200, "max_steps": 200, "log_history": [{"loss": 1.5, "step": 200}]}"#,
    );
    within(|| step_of("hf") == Some((Some(200), "trainer_state.json")))
        .expect("the final state of save_state() is seen");

    let csv = "jobs/pl/lightning_logs/version_0/metrics.csv";
    let mut text = String::from("epoch,step,train_loss\n0,9,0.9\n");
    root.write(csv, &text);
    let took = within(|| step_of("pl") == Some((Some(9), "metrics.csv")))
        .expect("Lightning's metrics.csv is seen");
    eprintln!("inotify {inotify}: Lightning metrics seen after {took:?}");
    text.push_str("0,19,0.8\n");
    root.write(csv, &text);
    within(|| step_of("pl") == Some((Some(19), "metrics.csv"))).expect("new rows are seen");
    let entry = index.job(&id("pl")).unwrap();
    assert_eq!(entry.progress.as_ref().unwrap().0.loss, Some(0.8));
}

#[test]
fn inotify_follows_framework_files() {
    follows_framework_files(true);
}

#[test]
fn revalidation_follows_framework_files() {
    follows_framework_files(false);
}
