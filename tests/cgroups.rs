//! A job's whole process tree under control, even a grandchild that calls
//! `setsid()` (as launchers and data-loader workers may): paused, resumed,
//! cancelled and, after the server was killed, cleaned up — in cgroup mode
//! (as root, under a cgroup v2 directory this test makes and removes) and,
//! as far as process groups reach, in the fallback.
#![allow(clippy::disallowed_methods)] // fixtures live on the ambient filesystem

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The trainer: a child that forks a grandchild which leaves the process
/// group with setsid and ticks into `ticks.txt`; the trainer counts steps.
const ESCAPER: &str = r#"
( setsid sh -c 'echo $$ > escaped.pid; while :; do echo t >> ticks.txt; sleep 0.05; done' & )
i=0
while :; do
  i=$((i+1))
  echo "{\"step\": $i}" > p.tmp; mv p.tmp "$TRAINBOX_PROGRESS_FILE"
  sleep 0.05
done
"#;

fn escaper_root(tag: &str) -> TempDir {
    let root = TempDir::new(tag);
    write(root.path(), "escaper.sh", ESCAPER);
    let script = root.path().join("escaper.sh");
    write(
        root.path(),
        "recipes.json",
        json!({"recipes": {
            "escaper": {"command": ["/bin/sh", script]},
            "hog": {"command": ["/usr/bin/python3", "-c", "x = bytearray(512 << 20); import time; time.sleep(5)"],
                    "limits": {"memory_max": "64M"}}
        }})
        .to_string(),
    );
    root
}

/// True while `pid` runs (a zombie, dead but not yet reaped by whoever
/// inherited it, does not).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn escaped_pid(job_dir: &Path) -> i32 {
    assert!(eventually(Duration::from_secs(10), || job_dir
        .join("escaped.pid")
        .is_file()));
    let text = fs::read_to_string(job_dir.join("escaped.pid")).unwrap();
    text.trim().parse().unwrap()
}

/// Whether `ticks.txt` grows over a few hundred milliseconds.
fn ticking(job_dir: &Path) -> bool {
    let size = || fs::metadata(job_dir.join("ticks.txt")).map_or(0, |m| m.len());
    let before = size();
    std::thread::sleep(Duration::from_millis(400));
    size() > before
}

fn start(server: &Server, recipe: &str) -> String {
    start_recipe(server, recipe)
}

fn status(server: &Server, id: &str) -> String {
    get(&server.url(&format!("/api/training/jobs/{id}"))).json()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn control(server: &Server, id: &str, action: &str) -> u16 {
    post(&server.url(&format!("/api/training/{id}/{action}")), "").status
}

#[test]
fn in_cgroup_mode_an_escaped_grandchild_is_paused_resumed_cancelled_and_recovered() {
    let cgroup = match TestCgroup::new("tree") {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("SKIPPED: cgroup mode needs root and cgroup v2 ({why})");
            return;
        }
    };
    let root = escaper_root("cgroup-tree");
    let args = [
        "--cgroup",
        cgroup.0.to_str().unwrap(),
        "--cancel-grace",
        "2",
    ];
    let mut server = Server::start(root.path(), &args);
    assert_eq!(get(&server.url("/healthz")).json()["control"], "cgroup");
    let id = start(&server, "escaper");
    let job_dir = root.path().join("jobs").join(&id);
    let escaped = escaped_pid(&job_dir);
    let job_cgroup = cgroup.0.join("jobs").join(&id);
    let membership = fs::read_to_string(format!("/proc/{escaped}/cgroup")).unwrap();
    assert!(
        membership.contains(&format!("/jobs/{id}")),
        "the escaped process is in the job's cgroup: {membership}"
    );
    assert!(ticking(&job_dir));

    let asked = Instant::now();
    assert_eq!(control(&server, &id, "pause"), 200);
    let pause_to_frozen = asked.elapsed();
    let events = fs::read_to_string(job_cgroup.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    assert!(!ticking(&job_dir), "the escaped grandchild is paused too");
    assert_eq!(control(&server, &id, "resume"), 200);
    assert!(ticking(&job_dir), "and resumed");

    let asked = Instant::now();
    assert_eq!(control(&server, &id, "cancel"), 200);
    assert!(eventually(Duration::from_secs(10), || !alive(escaped)
        && !job_cgroup.exists()));
    let cancel_to_empty = asked.elapsed();
    assert!(eventually(Duration::from_secs(10), || status(&server, &id)
        == "cancelled"));
    eprintln!(
        "cgroup mode, 3-level tree with a setsid() grandchild: pause answered (frozen) in {pause_to_frozen:?}; cancel to an empty, removed cgroup in {cancel_to_empty:?}"
    );

    // A server killed outright leaves the tree behind; the next one takes it down.
    let id = start(&server, "escaper");
    let job_dir = root.path().join("jobs").join(&id);
    let escaped = escaped_pid(&job_dir);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(escaped),
        "the setsid() grandchild outlives a killed server"
    );
    let server = Server::start(root.path(), &args);
    // Recovery kills the tree, then removes the cgroup once the kernel has
    // emptied it: the process may be gone a moment before the directory is.
    let leftover = cgroup.0.join("jobs").join(&id);
    assert!(eventually(Duration::from_secs(5), || !alive(escaped)));
    assert!(
        eventually(Duration::from_secs(5), || !leftover.exists()),
        "its cgroup is removed"
    );
    assert_eq!(status(&server, &id), "interrupted");
    assert!(server.logged(&format!("job {id}: removed its leftover cgroup")));
}

#[test]
fn a_recipe_memory_limit_ends_a_job_with_an_out_of_memory_reason() {
    let cgroup = match TestCgroup::new("oom") {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("SKIPPED: cgroup mode needs root and cgroup v2 ({why})");
            return;
        }
    };
    let root = escaper_root("cgroup-oom");
    let server = Server::start(root.path(), &["--cgroup", cgroup.0.to_str().unwrap()]);
    if !server.log().contains("memory") {
        eprintln!("SKIPPED: the memory controller is not available in this cgroup v2 hierarchy");
        return;
    }
    let id = start(&server, "hog");
    assert!(eventually(Duration::from_secs(30), || status(&server, &id) == "failed"));
    let job = get(&server.url(&format!("/api/training/jobs/{id}"))).json();
    assert!(
        job["error"].as_str().unwrap().contains("out of memory"),
        "{job}"
    );
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("memory_max is 64 MiB"),
        "{job}"
    );
}

/// The fallback's known limit, kept true by this test: a process group
/// holds only the processes that stay in it.
#[test]
fn without_cgroups_process_groups_hold_what_stays_in_them() {
    let root = escaper_root("group-tree");
    let server = Server::start(root.path(), &["--cancel-grace", "2"]);
    assert_eq!(
        get(&server.url("/healthz")).json()["control"],
        "process-group"
    );
    assert!(server.logged("job control: process groups"));
    let id = start(&server, "escaper");
    let job_dir = root.path().join("jobs").join(&id);
    let escaped = escaped_pid(&job_dir);
    let step = || fs::read_to_string(job_dir.join("progress.json")).unwrap_or_default();
    let asked = Instant::now();
    assert_eq!(control(&server, &id, "pause"), 200);
    let pause_answered = asked.elapsed();
    let paused_at = step();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(step(), paused_at, "the trainer's group is paused");
    assert!(
        ticking(&job_dir),
        "the setsid() grandchild is not: the known limit"
    );
    let asked = Instant::now();
    assert_eq!(control(&server, &id, "cancel"), 200);
    assert!(eventually(Duration::from_secs(10), || status(&server, &id)
        == "cancelled"));
    let cancelled = asked.elapsed();
    assert!(alive(escaped), "and it outlives the cancel");
    eprintln!(
        "process-group mode, same tree: pause answered in {pause_answered:?} (the setsid() grandchild never stops); cancel to the trainer's group gone in {cancelled:?} (the grandchild lives on)"
    );
    // SAFETY: the escaped process this test's trainer started.
    unsafe { libc::kill(escaped, libc::SIGKILL) };
}
