//! The Hugging Face Hub–compatible routes against the real client: the
//! `huggingface_hub` package from PyPI (the newest major version and the
//! 0.36 line, each in a virtualenv `./run-tests` makes), `hf download`,
//! and `transformers`' `AutoConfig` and `AutoTokenizer`, pulling a job's
//! model and checkpoints file by file; then the same files again from the
//! client's cache with the server gone.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hub/client.py");
/// A tiny GPT-2 config and a word-level tokenizer, as transformers 5.24's
/// `save_pretrained` wrote them.
const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hub/tiny-gpt2");
const READER: &str = "reader-token-0123456789";

/// The pythons with `huggingface_hub` installed: the newest release (with
/// transformers), then the 0.36 line. `./run-tests` makes both.
fn pythons() -> Vec<(String, &'static str)> {
    let newest = std::env::var("TRAINBOX_TEST_PYTHON").expect(
        "TRAINBOX_TEST_PYTHON: run the tests with ./run-tests, which makes the virtualenvs",
    );
    let legacy = std::env::var("TRAINBOX_TEST_HUB_LEGACY_PYTHON").expect(
        "TRAINBOX_TEST_HUB_LEGACY_PYTHON: run the tests with ./run-tests, which makes the virtualenvs",
    );
    vec![(newest, "newest"), (legacy, "0.36")]
}

/// A finished Hugging Face job: the final model, two complete checkpoints
/// (nested files too), one still being written and one under a `tmp-` name.
fn hub_job(root: &Path, id: &str) -> PathBuf {
    let job = root.join("jobs").join(id);
    write(
        root,
        &format!("jobs/{id}/job.json"),
        format!(
            r#"{{"id":"{id}","recipe":"hf","status":"completed","created_at":"2026-11-29T00:00:00.000Z"}}"#
        ),
    );
    write(&job, "training.log", "done\n");
    let tiny = |dir: &str| {
        for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            write(
                &job,
                &format!("{dir}/{name}"),
                fs::read(Path::new(TINY).join(name)).unwrap(),
            );
        }
    };
    tiny("model");
    write(&job, "model/model.safetensors", floats(300_000, 1));
    for (step, seed) in [(50, 2), (100, 3), (150, 4)] {
        let dir = format!("model/checkpoint-{step}");
        tiny(&dir);
        write(
            &job,
            &format!("{dir}/model.safetensors"),
            floats(100_000, seed),
        );
        write(
            &job,
            &format!("{dir}/optimizer.pt"),
            floats(50_000, seed + 10),
        );
        // The Trainer writes trainer_state.json near the end of a save:
        // checkpoint-150 is caught before it, still being written.
        if step != 150 {
            write(
                &job,
                &format!("{dir}/trainer_state.json"),
                format!(r#"{{"global_step": {step}, "max_steps": 150, "log_history": []}}"#),
            );
        }
        write(
            &job,
            &format!("{dir}/sub/deeper/note.txt"),
            format!("step {step}\n"),
        );
    }
    write(
        &job,
        "model/tmp-checkpoint-200/model.safetensors",
        floats(10, 5),
    );
    // 50 and 100 finished writing a while ago.
    age(&job.join("model/checkpoint-50"));
    age(&job.join("model/checkpoint-100"));
    job
}

/// What revision `main` holds: the model without its checkpoints.
fn main_files(job: &Path) -> BTreeMap<String, String> {
    tree_hashes(&job.join("model"))
        .into_iter()
        .filter(|(path, _)| !path.starts_with("checkpoint-"))
        .collect()
}

/// Runs the client's `command` through `python` with a cache under
/// `scratch`; `env` adds (or, with an empty value, removes) variables.
fn client(
    python: &str,
    endpoint: &str,
    scratch: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(CLIENT)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", scratch.join("hf-home"))
        .env("HF_HUB_CACHE", scratch.join("cache"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    for (key, value) in env {
        match value.is_empty() {
            true => cmd.env_remove(key),
            false => cmd.env(key, value),
        };
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn hashes(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).expect("files by path")
}

fn no_error(value: &Value, what: &str) {
    assert!(value.get("error").is_none(), "{what}: {value}");
}

#[test]
fn the_hub_client_pulls_revisions_file_by_file_and_keeps_them_offline() {
    for (python, version) in pythons() {
        let root = TempDir::new("hub-pull");
        let job = hub_job(root.path(), "hf1");
        let server = Server::start(root.path(), &[]);
        let endpoint = server.url("");
        let scratch = root.path().join("client");
        let run =
            |env: &[(&str, &str)], args: &[&str]| client(&python, &endpoint, &scratch, env, args);
        let main = main_files(&job);
        let checkpoint = |n: u32| tree_hashes(&job.join(format!("model/checkpoint-{n}")));

        // The repository's files and their SHA-256 as the client reads them.
        let info = run(&[], &["info", "trainbox/hf1", "main"]);
        no_error(&info, version);
        assert_eq!(hashes(&info["siblings"]), main, "{version}");
        let info_100 = run(&[], &["info", "trainbox/hf1", "checkpoint-100"]);
        let commit_100 = info_100["sha"].as_str().unwrap().to_owned();
        assert_eq!(hashes(&info_100["siblings"]), checkpoint(100));
        // The revisions there are: main, and the complete checkpoints as
        // tags (checkpoint-150 is still being written).
        let refs = run(&[], &["refs", "trainbox/hf1", "main"]);
        no_error(&refs, version);
        assert_eq!(refs["branches"]["main"], info["sha"], "{version}");
        assert_eq!(
            refs["tags"]["checkpoint-100"],
            commit_100.as_str(),
            "{version}"
        );
        let tags: Vec<&String> = refs["tags"].as_object().unwrap().keys().collect();
        assert_eq!(tags, ["checkpoint-100", "checkpoint-50"], "{version}");

        // Single files at main, at a checkpoint (nested), at a commit id.
        for (revision, path, expected) in [
            ("main", "config.json", &main),
            ("checkpoint-50", "sub/deeper/note.txt", &checkpoint(50)),
            (commit_100.as_str(), "model.safetensors", &checkpoint(100)),
        ] {
            let file = run(&[], &["file", "trainbox/hf1", revision, path]);
            no_error(&file, version);
            assert_eq!(
                file["sha256"], expected[path],
                "{version} {revision} {path}"
            );
        }

        // Whole revisions, byte-identical to the disk.
        for (revision, expected) in [("main", &main), ("checkpoint-100", &checkpoint(100))] {
            let snapshot = run(&[], &["snapshot", "trainbox/hf1", revision]);
            no_error(&snapshot, version);
            assert_eq!(
                hashes(&snapshot["files"]),
                *expected,
                "{version} {revision}"
            );
        }

        // The `hf` command line, into a directory of the user's.
        let hf = Path::new(&python).with_file_name("hf");
        let into = root.path().join("hf-download");
        let out = Command::new(&hf)
            .args(["download", "trainbox/hf1", "--revision", "checkpoint-50"])
            .arg("--local-dir")
            .arg(&into)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HOME", scratch.join("hf-home"))
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env_remove("HF_TOKEN")
            .output()
            .expect("run hf");
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let downloaded: BTreeMap<String, String> = tree_hashes(&into)
            .into_iter()
            .filter(|(path, _)| !path.starts_with(".cache/"))
            .collect();
        assert_eq!(downloaded, checkpoint(50), "{version}");

        // The box is gone: the cache still serves both revisions.
        drop(server);
        let offline = [("HF_HUB_OFFLINE", "1")];
        for (revision, expected) in [("main", &main), ("checkpoint-100", &checkpoint(100))] {
            let snapshot = run(&offline, &["snapshot", "trainbox/hf1", revision]);
            no_error(&snapshot, version);
            assert_eq!(
                hashes(&snapshot["files"]),
                *expected,
                "{version} offline {revision}"
            );
        }
    }
}

#[test]
fn missing_repositories_revisions_and_files_raise_the_clients_own_errors() {
    for (python, version) in pythons() {
        let root = TempDir::new("hub-errors");
        hub_job(root.path(), "hf1");
        // A run another trainer is writing: no final model yet.
        write(
            &root.path().join("jobs/ext"),
            "progress.json",
            r#"{"step": 10, "total_steps": 100}"#,
        );
        write(&root.path().join("jobs/ext"), "model/config.json", "{}");
        let server = Server::start(root.path(), &[]);
        let endpoint = server.url("");
        let scratch = root.path().join("client");
        let unknown_commit = "0123456789abcdef0123456789abcdef01234567";
        let cases = [
            (
                "trainbox/nope",
                "main",
                "RepositoryNotFoundError",
                "Repository not found",
            ),
            (
                "someone/hf1",
                "main",
                "RepositoryNotFoundError",
                "Repository not found",
            ),
            (
                "trainbox/hf1",
                "checkpoint-9",
                "RevisionNotFoundError",
                "checkpoint-50, checkpoint-100",
            ),
            (
                "trainbox/hf1",
                "checkpoint-150",
                "RevisionNotFoundError",
                "still being written",
            ),
            (
                "trainbox/hf1",
                unknown_commit,
                "RevisionNotFoundError",
                "No revision",
            ),
            (
                "trainbox/ext",
                "main",
                "RevisionNotFoundError",
                "has not finished",
            ),
        ];
        for (repo, revision, error, says) in cases {
            let got = client(
                &python,
                &endpoint,
                &scratch,
                &[],
                &["file", repo, revision, "config.json"],
            );
            assert_eq!(got["error"], error, "{version} {repo}@{revision}: {got}");
            assert!(
                got["message"].as_str().unwrap().contains(says),
                "{version} {repo}@{revision}: {got}"
            );
        }
        let missing = client(
            &python,
            &endpoint,
            &scratch,
            &[],
            &["file", "trainbox/hf1", "main", "generation_config.json"],
        );
        let classes = missing["classes"].as_array().expect("an error");
        assert!(
            classes.iter().any(|c| c == "EntryNotFoundError"),
            "{version}: {missing}"
        );
    }
}

#[test]
fn a_read_token_in_hf_token_is_how_the_client_gets_in() {
    let (python, _) = pythons().remove(0);
    let root = TempDir::new("hub-token");
    let job = hub_job(root.path(), "hf1");
    write(root.path(), "tokens", format!("read:{READER}\n"));
    let tokens = root.path().join("tokens");
    let server = Server::start(root.path(), &["--token-file", tokens.to_str().unwrap()]);
    let endpoint = server.url("");
    let scratch = root.path().join("client");
    let args = ["snapshot", "trainbox/hf1", "main"];
    let with_token = client(&python, &endpoint, &scratch, &[("HF_TOKEN", READER)], &args);
    no_error(&with_token, "with the token");
    assert_eq!(hashes(&with_token["files"]), main_files(&job));
    // A fresh cache each time: the client would otherwise fall back to it.
    for (tag, env) in [("none", ""), ("wrong", "not-the-token-0123456789")] {
        let got = client(
            &python,
            &endpoint,
            &root.path().join(tag),
            &[("HF_TOKEN", env)],
            &args,
        );
        assert!(
            got["message"].as_str().unwrap_or_default().contains("401"),
            "{tag}: {got}"
        );
    }
}

#[test]
fn transformers_loads_a_config_and_tokenizer_from_the_box() {
    let (python, _) = pythons().remove(0);
    let root = TempDir::new("hub-transformers");
    hub_job(root.path(), "hf1");
    let server = Server::start(root.path(), &[]);
    let scratch = root.path().join("client");
    for revision in ["main", "checkpoint-50"] {
        let got = client(
            &python,
            &server.url(""),
            &scratch,
            &[],
            &[
                "transformers",
                "trainbox/hf1",
                revision,
                "hello world edge box",
            ],
        );
        no_error(&got, revision);
        assert_eq!(got["model_type"], "gpt2");
        assert_eq!(got["n_embd"], 8);
        assert_eq!(got["ids"], serde_json::json!([2, 3, 4, 5]));
    }
}

/// The headers the client relies on, checked directly: HEAD and GET agree,
/// the ETag is the file's SHA-256, ranges resume, the commit is in each.
#[test]
fn resolve_answers_as_the_hub_does() {
    let root = TempDir::new("hub-resolve");
    let job = hub_job(root.path(), "hf1");
    let server = Server::start(root.path(), &[]);
    let info = get(&server.url("/api/models/trainbox/hf1")).json();
    let commit = info["sha"].as_str().unwrap().to_owned();
    let url = server.url("/trainbox/hf1/resolve/main/model.safetensors");
    let on_disk = fs::read(job.join("model/model.safetensors")).unwrap();
    let etag = format!("\"{}\"", sha256(&on_disk));

    let metadata = head(&url);
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.header("content-length"),
        Some(on_disk.len().to_string().as_str())
    );
    assert_eq!(metadata.header("etag"), Some(etag.as_str()));
    assert_eq!(metadata.header("x-repo-commit"), Some(commit.as_str()));
    assert!(metadata.header("location").is_none() && metadata.header("x-xet-hash").is_none());

    let whole = get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, on_disk);
    assert_eq!(whole.header("etag"), Some(etag.as_str()));

    // A resume from byte N, as the client sends it.
    let from = on_disk.len() / 3;
    let part = get_with(&url, &[("Range", format!("bytes={from}-").as_str())]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, on_disk[from..]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes {from}-{}/{}", on_disk.len() - 1, on_disk.len()).as_str())
    );
    assert_eq!(part.header("x-repo-commit"), Some(commit.as_str()));
    let same = get_with(&url, &[("If-None-Match", etag.as_str())]);
    assert_eq!(same.status, 304);

    // At the commit id, and the absence of a file, with the commit.
    let pinned = head(&server.url(&format!("/trainbox/hf1/resolve/{commit}/config.json")));
    assert_eq!(pinned.status, 200);
    let missing = head(&server.url("/trainbox/hf1/resolve/main/nope.json"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-error-code"), Some("EntryNotFound"));
    assert_eq!(missing.header("x-repo-commit"), Some(commit.as_str()));

    // A file of main changes: a new commit; the old one is gone.
    write(&job, "model/config.json", "{\"model_type\": \"llama\"}");
    let again = get(&server.url("/api/models/trainbox/hf1")).json();
    assert_ne!(again["sha"], info["sha"]);
    let stale = get(&server.url(&format!("/trainbox/hf1/resolve/{commit}/config.json")));
    assert_eq!(stale.status, 404);
    assert_eq!(stale.header("x-error-code"), Some("RevisionNotFound"));

    // Each file fetched is in the download audit, as a file of a revision.
    let audit = get(&server.url("/api/training/downloads?job=hf1")).json();
    let files: Vec<&str> = audit["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["what"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"file model.safetensors at main"), "{audit}");
    assert_eq!(audit["downloads"][0]["mode"], "hub");
}
