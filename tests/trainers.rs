//! Trainers as real processes, reporting the ways real ones do: through
//! the callback in `examples/`, and through the files Hugging Face and
//! Lightning write unmodified. Each step a trainer logs must reach a live
//! event stream; the time from the log step to the event is printed.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Starts `recipe`, follows its events to the end; returns (step, time
/// the event arrived) for each progress event.
fn follow(server: &Server, recipe: &str) -> (String, Vec<(u64, f64)>) {
    let id = start_recipe(server, recipe);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET /api/training/{id}/events HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(data).unwrap();
            if event == "end" {
                assert_eq!(data["status"], "completed", "{data}");
                break;
            }
            if let Some(step) = data["step"].as_u64() {
                seen.push((step, now()));
            }
        }
    }
    (id, seen)
}

/// The trainer's `logged <step> <time>` lines from its log.
fn logged(root: &Path, id: &str) -> Vec<(u64, f64)> {
    let log = std::fs::read_to_string(root.join(format!("jobs/{id}/training.log"))).unwrap();
    log.lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("logged ")?.split(' ');
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

/// For each logged step, how long until an event showed it (or a later
/// step); checks every step arrived and prints the median and maximum.
fn latencies(what: &str, logged: &[(u64, f64)], seen: &[(u64, f64)]) {
    assert!(!logged.is_empty(), "{what}: the trainer logged nothing");
    let mut delays: Vec<f64> = logged
        .iter()
        .map(|&(step, at)| {
            let (_, arrived) = seen
                .iter()
                .find(|&&(s, _)| s >= step)
                .unwrap_or_else(|| panic!("{what}: step {step} never reached the stream"));
            arrived - at
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let (median, max) = (delays[delays.len() / 2], delays[delays.len() - 1]);
    eprintln!(
        "{what}: log step → SSE event: median {:.1} ms, max {:.1} ms over {} steps",
        median * 1e3,
        max * 1e3,
        delays.len()
    );
    assert!(max < 5.0, "{what}: {max:.2} s");
    let distinct = logged
        .iter()
        .filter(|(step, _)| seen.iter().any(|(s, _)| s == step))
        .count();
    assert!(
        distinct * 2 >= logged.len(),
        "{what}: most steps have an event of their own ({distinct} of {})",
        logged.len()
    );
}

#[test]
fn every_way_a_trainer_reports_reaches_the_live_stream() {
    let root = TempDir::new("trainers");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = |name: &str| here.join("tests/trainers").join(name);
    let doc = json!({ "recipes": {
        "callback": { "command": ["python3", script("callback_trainer.py"), here.join("examples")] },
        "hf-files": { "command": ["python3", script("hf_files_trainer.py")] },
        "lightning-files": { "command": ["python3", script("lightning_files_trainer.py")] },
    }});
    write(root.path(), "recipes.json", doc.to_string());
    let server = Server::start(root.path(), &[]);
    for (recipe, source) in [
        ("callback", "progress.json"),
        ("hf-files", "trainer_state.json"),
        ("lightning-files", "metrics.csv"),
    ] {
        let (id, seen) = follow(&server, recipe);
        latencies(recipe, &logged(root.path(), &id), &seen);
        let progress = get(&server.url(&format!("/api/training/{id}/progress"))).json();
        assert_eq!(progress["source"], source, "{progress}");
        assert!(progress["loss"].is_number(), "{progress}");
        let history = get(&server.url(&format!("/api/training/{id}/metrics"))).json();
        assert!(
            history["history"].as_array().unwrap().len() >= 5,
            "{recipe}: {history}"
        );
    }
}
