//! Resource use per job, sampled from a real multi-process trainer (a
//! Python parent with two children that burn CPU and hold memory): the
//! samples in the job's status, its history and the Prometheus gauges,
//! checked against what `/proc` shows for the same processes; in process
//! group mode and, as root, in cgroup mode. There is no GPU here: the GPU
//! figures must be absent, never an error.
#![allow(clippy::disallowed_methods)] // the test reads /proc itself

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Two children, each holding 48 MiB it has written (resident) and
/// spinning; the parent waits for them.
const TRAINER: &str = r#"
import subprocess, sys
child = "x = b'x' * (48 << 20)\nwhile True:\n    pass\n"
kids = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(2)]
for kid in kids:
    kid.wait()
"#;

fn root_with_trainer(tag: &str) -> TempDir {
    let root = TempDir::new(tag);
    write(
        root.path(),
        "recipes.json",
        json!({"recipes": {"spin": {"command": ["/usr/bin/python3", "-c", TRAINER]}}}).to_string(),
    );
    root
}

/// Resident bytes and processes of process group `pgid`, from /proc.
fn group_rss(pgid: i32) -> (u64, u64) {
    // SAFETY: sysconf reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let (mut rss, mut processes) = (0, 0);
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = text.rfind(')').map(|at| &text[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|f| f.parse::<i32>().ok()) == Some(pgid) {
            processes += 1;
            rss += fields[21].parse::<u64>().unwrap() * page;
        }
    }
    (rss, processes)
}

fn job(server: &Server, id: &str) -> Value {
    get(&server.url(&format!("/api/training/jobs/{id}"))).json()
}

/// Runs the spinning trainer until its samples settle, then checks them
/// against /proc; returns the last sample. `source` is the mode expected.
fn check_sampled_job(server: &Server, root: &TempDir, source: &str) -> (String, Value) {
    let id = start_recipe(server, "spin");
    // Both children have written their memory and a few samples exist.
    let mut latest = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            latest = job(server, &id)["resources"].clone();
            latest["processes"] == 3 && latest["rss_bytes"].as_u64() > Some(96 << 20)
        }),
        "{latest}"
    );
    assert_eq!(latest["source"], source);
    // The CPU of two spinning processes, over an interval (a loaded
    // machine gives them less than two cores, never more than it has).
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        eventually(Duration::from_secs(10), || {
            latest = job(server, &id)["resources"].clone();
            latest["cpu_percent"]
                .as_f64()
                .is_some_and(|p| p > 30.0 && p <= cores * 100.0 + 10.0)
        }),
        "{latest}"
    );
    assert!(latest["cpu_seconds"].as_f64().unwrap() > 0.1);
    assert!(latest["threads"].as_u64().unwrap() >= 3);
    // No GPU on this machine: no figures, and no error.
    assert_eq!(latest["gpu_percent"], Value::Null);
    assert_eq!(latest["gpu_memory_bytes"], Value::Null);

    // The same processes as /proc shows them, within what changes
    // between the two looks (the interpreters' own memory moves a little).
    let record: Value =
        serde_json::from_slice(&fs::read(root.path().join(format!("jobs/{id}/job.json"))).unwrap())
            .unwrap();
    let pgid = record["pid"].as_i64().unwrap() as i32;
    let (rss, processes) = group_rss(pgid);
    if source == "process-group" {
        assert_eq!(processes, 3);
    }
    let sampled = latest["rss_bytes"].as_u64().unwrap() as f64;
    assert!(
        (sampled / rss as f64 - 1.0).abs() < 0.25,
        "sampled {sampled} against /proc {rss}"
    );

    // The history grows; the gauges show the running job.
    let history = get(&server.url(&format!("/api/training/{id}/resources"))).json();
    let samples = history["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{history}");
    assert!(samples.iter().all(|s| s["time"].is_string()));
    let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    for family in [
        "trainbox_job_cpu_percent",
        "trainbox_job_resident_bytes",
        "trainbox_job_threads",
    ] {
        assert!(
            metrics.contains(&format!("{family}{{job=\"{id}\"}}")),
            "{family}:\n{metrics}"
        );
    }
    assert!(!metrics.contains("trainbox_job_gpu_percent{"));
    (id, latest)
}

/// After the job ends: its gauges go, its samples stay with it.
fn check_after_cancel(server: &Server, id: &str) {
    let cancel = post(&server.url(&format!("/api/training/{id}/cancel")), "");
    assert_eq!(cancel.status, 200, "{}", cancel.detail());
    assert!(eventually(
        Duration::from_secs(30),
        || job(server, id)["status"] == "cancelled"
    ));
    assert!(eventually(Duration::from_secs(10), || {
        let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
        !metrics.contains(&format!("job=\"{id}\""))
    }));
    assert!(job(server, id)["resources"]["rss_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_multi_process_trainer_is_sampled_over_its_process_group() {
    let root = root_with_trainer("resources-group");
    let server = Server::start(
        root.path(),
        &["--sample-interval", "0.5", "--cancel-grace", "2"],
    );
    let (id, _) = check_sampled_job(&server, &root, "process-group");
    check_after_cancel(&server, &id);
}

#[test]
fn in_cgroup_mode_the_cgroup_is_the_source() {
    let cgroup = match TestCgroup::new("resources") {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("SKIPPED: cgroup mode needs root and cgroup v2 ({why})");
            return;
        }
    };
    let root = root_with_trainer("resources-cgroup");
    let args = [
        "--sample-interval",
        "0.5",
        "--cancel-grace",
        "2",
        "--cgroup",
        cgroup.0.to_str().unwrap(),
    ];
    let server = Server::start(root.path(), &args);
    let (id, latest) = check_sampled_job(&server, &root, "cgroup");
    // The cgroup charges the job's memory, resident and cached, where the
    // memory controller is enabled for it.
    let controllers =
        fs::read_to_string(cgroup.0.join("cgroup.subtree_control")).unwrap_or_default();
    if controllers.contains("memory") {
        assert!(
            latest["memory_bytes"].as_u64().unwrap() >= 96 << 20,
            "{latest}"
        );
    }
    check_after_cancel(&server, &id);
}

/// GPU figures through NVML, against a stand-in `libnvidia-ml.so.1`
/// (`tests/nvml/fake_nvml.c`: NVML's own signatures and structs, reporting
/// every `python3` process at 256 MiB and 25% SM use), loaded at run time
/// from `LD_LIBRARY_PATH` as the real one would be from the driver's
/// directory. No GPU is needed; what a real device reports is not tested
/// here.
#[test]
fn gpu_use_comes_through_nvml_when_the_library_is_there() {
    let lib = TempDir::new("fake-nvml");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nvml/fake_nvml.c");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(lib.path().join("libnvidia-ml.so.1"))
        .arg(source)
        .output()
        .expect("a C compiler (the Rust toolchain links with it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let root = root_with_trainer("resources-nvml");
    let server = Server::start_with(
        root.path(),
        &["--sample-interval", "0.5", "--cancel-grace", "2"],
        &[
            ("LD_LIBRARY_PATH", lib.path().to_str().unwrap()),
            ("FAKE_NVML_COMM", "python3"),
        ],
    );
    assert!(
        server.logged("GPU use per process through NVML"),
        "{}",
        server.log()
    );
    let id = start_recipe(&server, "spin");
    // The trainer and its two children: three python3 processes.
    let mut latest = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            latest = job(&server, &id)["resources"].clone();
            latest["processes"] == 3 && latest["gpu_memory_bytes"] == json!(3 * (256 << 20))
        }),
        "{latest}"
    );
    assert_eq!(latest["gpu_percent"], json!(75.0));
    let metrics = String::from_utf8(get(&server.url("/metrics")).body).unwrap();
    assert!(
        metrics.contains(&format!("trainbox_job_gpu_percent{{job=\"{id}\"}} 75")),
        "{metrics}"
    );
    check_after_cancel(&server, &id);
}
