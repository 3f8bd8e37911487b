//! The web page in headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser/`), with and without tokens: it
//! must work under its own Content-Security-Policy. `./run-tests` installs
//! both; without them the test says so and skips.
#![allow(clippy::disallowed_methods)] // fixtures live on the ambient filesystem

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// The page script and its tools, or why they are missing.
fn browser_tools() -> Result<(), String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !here.join("node_modules/playwright-core").is_dir() {
        return Err("no tests/browser/node_modules (npm ci there)".into());
    }
    for tool in ["node", "chromium"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("no {tool}"));
        }
    }
    Ok(())
}

fn run_page(base: &str, job: &str, token: Option<&str>, tag: &str) {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/page-screenshots")
        .join(tag);
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = Command::new("node");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page.mjs"))
        .args([base, job, shots.to_str().unwrap()]);
    if let Some(token) = token {
        command.arg(token);
    }
    let out = command.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !report.contains("FAIL"), "{report}");
}

/// A root with a trainer that counts steps for a long while (progress
/// and a falling loss in its history), a recipe with typed params for the
/// start form, and a run trainbox did not start (shown as external).
fn counting_root(tag: &str) -> TempDir {
    let root = TempDir::new(tag);
    write(
        root.path(),
        "count.sh",
        "i=0; while :; do i=$((i+1)); l=$((1000 / i)); \
         echo \"{\\\"step\\\": $i, \\\"total_steps\\\": 100000, \\\"loss\\\": $l}\" > p.tmp; \
         cat p.tmp >> metrics.jsonl; mv p.tmp \"$TRAINBOX_PROGRESS_FILE\"; sleep 0.2; done\n",
    );
    let script = root.path().join("count.sh");
    write(
        root.path(),
        "recipes.json",
        json!({"recipes": {"count": {"command": ["/bin/sh", script],
            "params": {"steps": {"type": "int", "min": 1, "max": 1000, "default": 100},
                       "note": {"type": "string", "pattern": "[a-z]{1,8}", "default": "run"}}}}})
        .to_string(),
    );
    write(
        root.path(),
        "jobs/someone-else/progress.json",
        r#"{"step": 3, "total_steps": 10}"#,
    );
    root
}

fn start_counting(server: &Server, auth: &[(&str, &str)]) -> String {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(auth);
    let reply = post_with(
        &server.url("/api/training/jobs"),
        r#"{"recipe": "count"}"#,
        auth,
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn the_page_works_in_chromium_under_its_csp() {
    if let Err(why) = browser_tools() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let root = counting_root("page-open");
    let server = Server::start(
        root.path(),
        &["--sample-interval", "0.5", "--max-jobs", "2"],
    );
    let job = start_counting(&server, &[]);
    run_page(&format!("http://{}", server.addr), &job, None, "open");
}

#[test]
fn the_page_signs_in_with_a_token_in_chromium() {
    if let Err(why) = browser_tools() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let root = counting_root("page-tokens");
    let control = "control-token-0123456789abcdef";
    write(root.path(), "tokens", format!("control:{control}\n"));
    let tokens = root.path().join("tokens");
    let server = Server::start(
        root.path(),
        &[
            "--token-file",
            tokens.to_str().unwrap(),
            "--sample-interval",
            "0.5",
            "--max-jobs",
            "2",
        ],
    );
    let bearer = format!("Bearer {control}");
    let job = start_counting(&server, &[("Authorization", &bearer)]);
    run_page(
        &format!("http://{}", server.addr),
        &job,
        Some(control),
        "tokens",
    );
}
