//! The binary as a user meets it: help, version, refusals at start-up, and
//! the demo trainer's output layout.

#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::fs;
use std::net::TcpListener;
use std::process::Command;

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
        line.contains("/nonexistent/trainbox-root") && line.contains("not a directory"),
        "{line}"
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
