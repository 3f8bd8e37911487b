//! The binary as a user meets it: help, version, refusals at start-up, and
//! the demo trainer's output layout.

#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn help_and_version() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["serve", "demo", "demo-trainer"] {
        assert!(text.contains(command), "{text}");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("trainbox {}", env!("CARGO_PKG_VERSION"))
    );
    let serve_help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&serve_help.stdout);
    assert!(
        text.contains("--root") && text.contains("--listen") && text.contains("--max-downloads")
    );
}

/// Runs the binary expecting a refusal; returns its one-line message.
fn refusal(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} must fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("trainbox:"))
        .collect();
    assert_eq!(lines.len(), 1, "one line of reason: {stderr}");
    lines[0].to_owned()
}

#[test]
fn refuses_a_missing_root() {
    let line = refusal(&[
        "serve",
        "--root",
        "/nonexistent/trainbox-root",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        line.contains("/nonexistent/trainbox-root") && line.contains("does not exist"),
        "{line}"
    );
    let root = TempDir::new("file-root");
    let file = root.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let line = refusal(&[
        "serve",
        "--root",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(line.contains("is not a directory"), "{line}");
}

#[test]
fn refuses_zero_workers_jobs_and_connections() {
    let root = TempDir::new("zeros");
    for flag in [
        "--workers",
        "--max-jobs",
        "--max-connections",
        "--max-downloads",
        "--max-streams",
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--root", root.path().to_str().unwrap(), flag, "0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} 0 must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains("must be at least 1"),
            "{stderr}"
        );
    }
}

#[test]
fn listens_on_a_host_name() {
    let root = TempDir::new("hostname");
    let server = Server::start(root.path(), &["--listen", "localhost:0"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_eq!(get(&server.url("/healthz")).status, 200);
}

#[test]
fn a_second_server_on_the_same_root_is_refused() {
    let root = TempDir::new("second");
    make_job(root.path(), "j1");
    let first = Server::start(root.path(), &[]);
    let line = refusal(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        line.contains(&format!(
            "already served by trainbox (pid {})",
            first.child.id()
        )),
        "{line}"
    );
    eprintln!("{line}");
    assert_eq!(
        get(&first.url("/healthz")).status,
        200,
        "the first serves on"
    );
}

#[test]
fn refuses_an_address_in_use() {
    let root = TempDir::new("inuse");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = refusal(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert!(line.contains(&addr) && line.contains("in use"), "{line}");
}

#[test]
fn the_demo_trainer_writes_the_layout_and_learns() {
    let dir = TempDir::new("trainer");
    let job = dir.path();
    let out = Command::new(BIN)
        .arg("demo-trainer")
        .current_dir(job)
        .env("TRAINBOX_JOB_DIR", job)
        .env("TRAINBOX_OUTPUT_DIR", job.join("model"))
        .env("TRAINBOX_PROGRESS_FILE", job.join("progress.json"))
        .env("TRAINBOX_PARAM_STEPS", "90")
        .env("TRAINBOX_PARAM_SAVE_EVERY", "30")
        .env("TRAINBOX_PARAM_STEP_DELAY_MS", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("step 90/90"), "{stdout}");
    for step in [30, 60, 90] {
        let checkpoint = job.join(format!("model/checkpoint-{step}"));
        assert!(checkpoint.join("model.safetensors").is_file());
        let state: serde_json::Value =
            serde_json::from_slice(&fs::read(checkpoint.join("trainer_state.json")).unwrap())
                .unwrap();
        assert_eq!(state["global_step"], step);
        assert_eq!(state["max_steps"], 90);
    }
    assert!(job.join("model/model.safetensors").is_file());
    assert!(
        !fs::read_dir(job.join("model")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("tmp-"))
    );
    let progress: serde_json::Value =
        serde_json::from_slice(&fs::read(job.join("progress.json")).unwrap()).unwrap();
    assert_eq!(progress["step"], 90);
    assert_eq!(progress["total_steps"], 90);
    // Real gradient steps: the loss falls over the run.
    let losses: Vec<f64> = fs::read_to_string(job.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 90);
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[80..].iter().sum::<f64>() / 10.0;
    assert!(last < first * 0.8, "loss {first:.3} -> {last:.3}");
}

/// Runs one line the demo printed, as printed but for curl's quiet,
/// fail-on-error flags; true when it worked. (A resume of a file already
/// complete is answered 416, which curl takes as done: the archive is
/// checked afterwards instead.)
fn run_printed(line: &str, cwd: &std::path::Path) -> bool {
    let flags = if line.contains(" -C - ") {
        "curl -sS "
    } else {
        "curl -sS --fail-with-body "
    };
    let line = line.trim().replacen("curl ", flags, 1);
    let out = Command::new("sh")
        .args(["-c", &line])
        .current_dir(cwd)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "{line}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Every line `trainbox demo` prints works, in the order printed, and the
/// demo removes its temporary root when it stops.
#[test]
fn the_demo_prints_lines_that_work_in_order_and_cleans_up() {
    let mut demo = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--steps", "400"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    for line in BufReader::new(demo.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("press Ctrl-C to stop");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    let root: PathBuf = text
        .split("serving ")
        .nth(1)
        .and_then(|rest| rest.split(" at ").next())
        .expect("the root in the banner")
        .into();
    assert!(root.join("recipes.json").is_file(), "{text}");
    // Lines ending in a backslash continue on the next one.
    let mut blocks: Vec<Vec<String>> = vec![Vec::new()];
    let mut pending = String::new();
    for line in &banner {
        if line.starts_with("once ") {
            blocks.push(Vec::new());
        }
        let trimmed = line.trim();
        if trimmed.starts_with("curl") || !pending.is_empty() {
            pending.push_str(trimmed.trim_end_matches('\\'));
            pending.push(' ');
            if !trimmed.ends_with('\\') {
                blocks
                    .last_mut()
                    .unwrap()
                    .push(std::mem::take(&mut pending));
            }
        }
    }
    assert_eq!(blocks.len(), 2, "{text}");
    let base = text
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let job = text
        .split("job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let status = || get(&format!("{base}/api/training/jobs/{job}")).json()["status"].clone();
    let cwd = TempDir::new("demo-lines");
    // The first block while the job trains, once checkpoint-100 is
    // complete (written and settled for a few seconds), as it is by the
    // time a person has read this far.
    let checkpoint_complete = || {
        get(&format!("{base}/api/training/{job}/checkpoints")).json()["checkpoints"]
            .as_array()
            .is_some_and(|all| {
                all.iter()
                    .any(|c| c["name"] == "checkpoint-100" && c["complete"] == true)
            })
    };
    assert!(eventually(Duration::from_secs(30), checkpoint_complete));
    for line in &blocks[0] {
        assert!(run_printed(line, cwd.path()), "{line}");
    }
    assert!(eventually(Duration::from_secs(60), || status() == "completed"));
    for line in &blocks[1] {
        assert!(run_printed(line, cwd.path()), "{line}");
    }
    assert!(unzip_test(&cwd.path().join(format!("model_{job}.zip"))));
    // Ctrl-C: the demo stops and takes its root with it.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(demo.id() as i32, libc::SIGINT) };
    let exit = demo.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!root.exists(), "{} removed", root.display());
}
