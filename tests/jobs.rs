//! Job control with real trainer processes: recipes and params, the queue,
//! pause/resume/cancel of whole process groups, failures, crash recovery.
#![allow(clippy::disallowed_methods)] // tests build their fixtures on the ambient filesystem

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A trainer in sh: forks two "data loader" children, then counts steps
/// into progress.json until it reaches TRAINBOX_PARAM_STEPS.
const FAMILY: &str = r#"
echo "argv: $# $*"
echo "tag: $TRAINBOX_PARAM_TAG"
echo "job: $TRAINBOX_JOB_ID dir: $TRAINBOX_JOB_DIR out: $TRAINBOX_OUTPUT_DIR"
(while :; do sleep 0.05; done) &
(while :; do sleep 0.05; done) &
step=0
while [ "$step" -lt "${TRAINBOX_PARAM_STEPS:-100000}" ]; do
  step=$((step + 1))
  echo "{\"step\": $step, \"total_steps\": ${TRAINBOX_PARAM_STEPS:-100000}}" > progress.tmp
  mv progress.tmp "$TRAINBOX_PROGRESS_FILE"
  sleep 0.02
done
echo done
"#;

fn recipes(root: &Path) {
    write(root, "trainers/family.sh", FAMILY);
    write(root, "trainers/fail.sh", "echo failing; exit 3\n");
    write(
        root,
        "trainers/polite.sh",
        "trap 'echo \"SIGTERM: saving\"; exit 0' TERM\nwhile :; do sleep 0.05; done\n",
    );
    write(
        root,
        "trainers/stubborn.sh",
        "trap '' TERM\nwhile :; do sleep 0.05; done\n",
    );
    let sh = |script: &str| json!(["/bin/sh", root.join("trainers").join(script)]);
    let doc = json!({ "recipes": {
        "demo": { "command": [BIN, "demo-trainer"],
                  "params": { "steps": {"type": "int", "min": 1, "max": 100000, "default": 300},
                              "lr": {"type": "float", "min": 0, "max": 1, "default": 0.05},
                              "save_every": {"type": "int", "min": 1, "default": 100},
                              "step_delay_ms": {"type": "int", "min": 0, "default": 0} } },
        "family": { "command": sh("family.sh"),
                    "params": { "steps": {"type": "int", "min": 1, "default": 100000},
                                "tag": {"type": "string", "default": "none"} } },
        "fail": { "command": sh("fail.sh") },
        "stubborn": { "command": sh("stubborn.sh") },
        "polite": { "command": sh("polite.sh") },
        "finetune": { "command": ["/bin/false"],
                      "params": { "base": {"type": "string", "enum": ["tiny", "small"]},
                                  "run": {"type": "string", "pattern": "[a-z0-9-]{1,16}", "default": "r"} } },
        "missing": { "command": ["/nonexistent/trainer"] }
    }});
    write(root, "recipes.json", doc.to_string());
}

fn start(server: &Server, body: Value) -> Value {
    let reply = post(&server.url("/api/training/jobs"), &body.to_string());
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

fn job(server: &Server, id: &str) -> Value {
    get(&server.url(&format!("/api/training/jobs/{id}"))).json()
}

fn wait_status(server: &Server, id: &str, wanted: &[&str]) -> Value {
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(60), || {
        last = job(server, id);
        wanted.contains(&last["status"].as_str().unwrap_or(""))
    });
    assert!(ok, "job {id} never reached {wanted:?}: {last}");
    last
}

fn control(server: &Server, id: &str, action: &str) -> Reply {
    post(&server.url(&format!("/api/training/{id}/{action}")), "")
}

/// The trainer's pid (= its process group) from its record.
fn pgid(root: &Path, id: &str) -> i32 {
    let record: Value =
        serde_json::from_slice(&fs::read(root.join(format!("jobs/{id}/job.json"))).unwrap())
            .unwrap();
    record["pid"]
        .as_i64()
        .expect("a running job records its pid") as i32
}

/// (pid, state) of every process in group `pgid`.
fn group(pgid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap() {
        let Ok(pid) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields[2].parse::<i32>() == Ok(pgid) {
            out.push((pid, fields[0].chars().next().unwrap()));
        }
    }
    out
}

fn step(root: &Path, id: &str) -> u64 {
    let text =
        fs::read_to_string(root.join(format!("jobs/{id}/progress.json"))).unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_demo_job_runs_to_completion() {
    let root = TempDir::new("demo-job");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let created = start(
        &server,
        json!({"recipe": "demo", "name": "first", "params": {"steps": 40, "save_every": 20}}),
    );
    assert_eq!(created["name"], "first");
    assert_eq!(created["recipe"], "demo");
    assert!(["queued", "running"].contains(&created["status"].as_str().unwrap()));
    let id = created["id"].as_str().unwrap().to_owned();
    let done = wait_status(&server, &id, &["completed"]);
    assert_eq!(done["exit_code"], 0);
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    assert_eq!(done["params"], json!({"steps": 40, "save_every": 20}));
    let cps = get(&server.url(&format!("/api/training/{id}/checkpoints"))).json();
    let names: Vec<&str> = cps["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["checkpoint-20", "checkpoint-40"]);
    let log = fs::read_to_string(root.path().join(format!("jobs/{id}/training.log"))).unwrap();
    assert!(log.contains("training finished at step 40"), "{log}");
    let model = get(&server.url(&format!("/api/training/{id}/download/model")));
    assert_eq!(model.status, 200);
    // Finished: no control applies.
    let reply = control(&server, &id, "pause");
    assert_eq!(reply.status, 409);
    assert_eq!(reply.detail(), "Job is completed; it cannot pause");
}

#[test]
fn bad_submissions_get_a_detail_naming_the_problem() {
    let root = TempDir::new("bad-submit");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let cases = [
        ("{", "Malformed JSON body"),
        ("[1]", "The body must be a JSON object"),
        ("{}", "'recipe' is required"),
        (r#"{"recipe": 5}"#, "'recipe' must be a string"),
        (r#"{"recipe": "nope"}"#, "Unknown recipe 'nope'"),
        (r#"{"recipe": "demo", "extra": 1}"#, "Unknown field 'extra'"),
        (
            r#"{"recipe": "demo", "params": [1]}"#,
            "'params' must be an object",
        ),
        (
            r#"{"recipe": "demo", "params": {"epochs": 3}}"#,
            "Unknown param 'epochs'",
        ),
        (
            r#"{"recipe": "demo", "params": {"steps": "many"}}"#,
            "Param 'steps' must be an integer",
        ),
        (
            r#"{"recipe": "demo", "params": {"steps": 0}}"#,
            "Param 'steps' must be at least 1",
        ),
        (
            r#"{"recipe": "demo", "params": {"lr": 7}}"#,
            "Param 'lr' must be at most 1",
        ),
        (r#"{"recipe": "finetune"}"#, "Param 'base' is required"),
        (
            r#"{"recipe": "finetune", "params": {"base": "xl"}}"#,
            "Param 'base' must be one of: tiny, small",
        ),
        (
            r#"{"recipe": "finetune", "params": {"base": "tiny", "run": "a b"}}"#,
            "Param 'run' does not match its pattern",
        ),
        (
            r#"{"recipe": "demo", "name": 7}"#,
            "'name' must be a string of at most 200 printable characters",
        ),
    ];
    for (body, detail) in cases {
        let reply = post(&server.url("/api/training/jobs"), body);
        assert_eq!(reply.status, 400, "{body}");
        assert!(
            reply.detail().starts_with(detail),
            "{body}: {}",
            reply.detail()
        );
    }
    assert_eq!(
        get(&server.url("/api/training/jobs")).json()["jobs"],
        json!([]),
        "no job was created"
    );
}

#[test]
fn oversized_bodies_are_refused_unread() {
    let root = TempDir::new("big-body");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    // A declared length over the limit: 413 at once, connection closed, and
    // none of the body is waited for.
    for declared in ["100000", "1000000000000000"] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                format!("POST /api/training/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"recipe\"")
                    .as_bytes(),
            )
            .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let reply = parse_response(&response);
        assert_eq!(reply.status, 413, "{declared}");
        assert_eq!(reply.detail(), "Request body too large");
    }
    // A chunked body that runs past the limit is cut off at the limit.
    let big = format!(
        "{{\"recipe\": \"demo\", \"name\": \"{}\"}}",
        "x".repeat(70_000)
    );
    assert_eq!(post(&server.url("/api/training/jobs"), &big).status, 413);
    // The server is alive and well.
    assert_eq!(get(&server.url("/healthz")).status, 200);
}

#[test]
fn params_reach_the_trainer_only_as_environment() {
    let root = TempDir::new("env");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let marker = root.path().join("pwned");
    let hostile = format!(
        "$(touch {}); `touch {}` ; rm -rf / #",
        marker.display(),
        marker.display()
    );
    let created = start(
        &server,
        json!({"recipe": "family", "params": {"steps": 3, "tag": hostile}}),
    );
    let id = created["id"].as_str().unwrap().to_owned();
    wait_status(&server, &id, &["completed"]);
    let log = fs::read_to_string(root.path().join(format!("jobs/{id}/training.log"))).unwrap();
    assert!(log.contains("argv: 0"), "no client string in argv: {log}");
    assert!(
        log.contains(&format!("tag: {hostile}")),
        "the value arrives verbatim: {log}"
    );
    let job_dir = root.path().join(format!("jobs/{id}"));
    assert!(
        log.contains(&format!("job: {id} dir: {}", job_dir.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("out: {}", job_dir.join("model").display())),
        "{log}"
    );
    assert!(!marker.exists(), "nothing ran the string");
}

#[test]
fn pause_stops_the_whole_group_and_resume_continues_it() {
    let root = TempDir::new("pause");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let id = start(&server, json!({"recipe": "family"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, &["running"]);
    let pgid = pgid(root.path(), &id);
    assert!(eventually(Duration::from_secs(10), || group(pgid).len()
        >= 3
        && step(root.path(), &id) > 2));

    let paused = control(&server, &id, "pause");
    assert_eq!(paused.status, 200);
    assert_eq!(paused.json()["status"], "paused");
    assert!(
        eventually(Duration::from_secs(5), || group(pgid)
            .iter()
            .all(|(_, s)| *s == 'T')),
        "every process of the group is stopped: {:?}",
        group(pgid)
    );
    let members = group(pgid).len();
    assert!(members >= 3, "trainer and its children: {members}");
    let frozen = step(root.path(), &id);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(step(root.path(), &id), frozen, "no progress while paused");
    assert_eq!(control(&server, &id, "pause").status, 409, "already paused");

    let resumed = control(&server, &id, "resume");
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.json()["status"], "running");
    assert!(
        eventually(Duration::from_secs(5), || step(root.path(), &id)
            > frozen + 2),
        "progress again"
    );
    assert!(group(pgid).iter().all(|(_, s)| *s != 'T'));
    assert_eq!(control(&server, &id, "resume").status, 409, "not paused");

    // Cancel ends every process of the group.
    let cancelled = control(&server, &id, "cancel");
    assert_eq!(cancelled.status, 200);
    // The answer is the state the job is in: asked to stop and not gone
    // yet, or (sh dies of SIGTERM at once) already cancelled; never the
    // state before the cancel.
    let answered = cancelled.json()["status"].clone();
    assert!(
        answered == "cancelling" || answered == "cancelled",
        "{answered}"
    );
    let end = wait_status(&server, &id, &["cancelled"]);
    assert_eq!(end["signal"], 15, "sh dies of SIGTERM");
    assert!(
        eventually(Duration::from_secs(5), || group(pgid).is_empty()),
        "{:?}",
        group(pgid)
    );
    assert_eq!(control(&server, &id, "cancel").status, 409);
}

#[test]
fn a_paused_demo_trainer_saves_on_cancel() {
    let root = TempDir::new("cancel-demo");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let id = start(
        &server,
        json!({"recipe": "demo", "params": {"steps": 100000, "step_delay_ms": 5}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, &["running"]);
    assert!(eventually(Duration::from_secs(10), || step(
        root.path(),
        &id
    ) > 5));
    assert_eq!(control(&server, &id, "pause").status, 200);
    assert_eq!(control(&server, &id, "cancel").status, 200);
    let end = wait_status(&server, &id, &["cancelled"]);
    assert_eq!(end["exit_code"], 0, "the demo trainer exits 0 after saving");
    let cps = get(&server.url(&format!("/api/training/{id}/checkpoints"))).json();
    assert!(
        !cps["checkpoints"].as_array().unwrap().is_empty(),
        "it saved a checkpoint"
    );
}

#[test]
fn a_trainer_that_ignores_sigterm_is_killed_after_the_grace() {
    let root = TempDir::new("stubborn");
    recipes(root.path());
    let server = Server::start(root.path(), &["--cancel-grace", "1"]);
    let id = start(&server, json!({"recipe": "stubborn"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, &["running"]);
    std::thread::sleep(Duration::from_millis(200)); // let sh install its trap
    let asked = Instant::now();
    assert_eq!(control(&server, &id, "cancel").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        job(&server, &id)["status"],
        "cancelling",
        "SIGTERM is ignored: the job is still being cancelled"
    );
    let end = wait_status(&server, &id, &["cancelled"]);
    assert_eq!(end["signal"], 9, "SIGKILL after the grace period");
    eprintln!("stubborn trainer ended {:?} after cancel", asked.elapsed());
}

#[test]
fn failures_are_recorded() {
    let root = TempDir::new("fail");
    recipes(root.path());
    let server = Server::start(root.path(), &[]);
    let id = start(&server, json!({"recipe": "fail"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = wait_status(&server, &id, &["failed"]);
    assert_eq!(end["exit_code"], 3);
    let id = start(&server, json!({"recipe": "missing"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = wait_status(&server, &id, &["failed"]);
    assert!(
        end["error"].as_str().unwrap().contains("cannot start"),
        "{end}"
    );
    assert!(
        !end["error"]
            .as_str()
            .unwrap()
            .contains(&*root.path().to_string_lossy())
    );
}

#[test]
fn the_queue_runs_jobs_in_order_one_at_a_time() {
    let root = TempDir::new("queue");
    recipes(root.path());
    let server = Server::start(root.path(), &["--max-jobs", "1"]);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            start(
                &server,
                json!({"recipe": "family", "params": {"steps": 10}}),
            )["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Queued ones can be looked at but not paused; a queued one can be cancelled.
    let fourth = start(
        &server,
        json!({"recipe": "family", "params": {"steps": 10}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(job(&server, &fourth)["status"], "queued");
    let reply = control(&server, &fourth, "pause");
    assert_eq!(
        (reply.status, reply.detail().as_str()),
        (409, "Job is queued; only a running job can pause")
    );
    assert_eq!(control(&server, &fourth, "cancel").status, 200);
    assert_eq!(job(&server, &fourth)["status"], "cancelled");

    let ends: Vec<Value> = ids
        .iter()
        .map(|id| wait_status(&server, id, &["completed"]))
        .collect();
    for pair in ends.windows(2) {
        let (first, next) = (&pair[0], &pair[1]);
        assert!(
            first["finished_at"].as_str().unwrap() <= next["started_at"].as_str().unwrap(),
            "one at a time, in order: {first} then {next}"
        );
    }
    assert!(
        job(&server, &fourth)["started_at"].is_null(),
        "a cancelled queued job never starts"
    );
}

#[test]
fn jobs_from_outside_can_be_read_but_not_controlled() {
    let root = TempDir::new("external");
    recipes(root.path());
    make_job(root.path(), "ext1");
    let server = Server::start(root.path(), &[]);
    for action in ["pause", "resume", "cancel"] {
        let reply = control(&server, "ext1", action);
        assert_eq!(reply.status, 409, "{action}");
        assert_eq!(
            reply.detail(),
            "Job was not started by trainbox and cannot be controlled"
        );
    }
    assert_eq!(control(&server, "nope", "pause").status, 404);
    assert_eq!(
        get(&server.url("/api/training/ext1/download/model")).status,
        200
    );
}

/// SIGKILL the server: its trainers die with it, and the next start marks
/// them interrupted while queued jobs stay queued and then run in order.
#[test]
fn a_killed_server_leaves_no_trainer_and_recovers_its_queue() {
    let root = TempDir::new("sigkill");
    recipes(root.path());
    let mut server = Server::start(root.path(), &["--max-jobs", "1"]);
    let running = start(&server, json!({"recipe": "family"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &running, &["running"]);
    let queued: Vec<String> = (0..2)
        .map(|_| {
            start(&server, json!({"recipe": "family", "params": {"steps": 5}}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let pgid = pgid(root.path(), &running);
    assert!(eventually(Duration::from_secs(10), || group(pgid).len() >= 3));
    // Pause it too: a stopped group must die as well.
    assert_eq!(control(&server, &running, "pause").status, 200);

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    // The trainer gets SIGKILL from the kernel (parent death); its children
    // are swept at the next start.
    let trainer_gone = eventually(Duration::from_secs(5), || {
        !group(pgid).iter().any(|(pid, _)| *pid == pgid)
    });
    assert!(
        trainer_gone,
        "the trainer died with the server: {:?}",
        group(pgid)
    );

    let server = Server::start(root.path(), &["--max-jobs", "1"]);
    assert!(
        eventually(Duration::from_secs(5), || group(pgid).is_empty()),
        "leftovers swept: {:?}",
        group(pgid)
    );
    assert_eq!(job(&server, &running)["status"], "interrupted");
    assert!(server.log().contains("now interrupted"));
    let ends: Vec<Value> = queued
        .iter()
        .map(|id| wait_status(&server, id, &["completed"]))
        .collect();
    assert!(
        ends[0]["finished_at"].as_str() <= ends[1]["started_at"].as_str(),
        "still in order"
    );
}

/// Kill the server at random points while it writes records: every
/// job.json left behind parses, and no temporary file is taken for one.
#[test]
fn job_records_survive_being_killed_mid_write() {
    let root = TempDir::new("torn");
    recipes(root.path());
    let mut seen = BTreeSet::new();
    for round in 0..12u64 {
        let mut server = Server::start(root.path(), &["--max-jobs", "4"]);
        let ids: Vec<String> = (0..4)
            .map(|_| {
                start(&server, json!({"recipe": "family"}))["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        // Pause and resume in a tight loop on every job (each is a record
        // write), and pull the plug somewhere in the middle.
        let deadline = Instant::now() + Duration::from_millis(50 + (round * 37) % 200);
        'hammer: loop {
            for id in &ids {
                for action in ["pause", "resume"] {
                    let _ = agent()
                        .post(&server.url(&format!("/api/training/{id}/{action}")))
                        .send("");
                    if Instant::now() > deadline {
                        break 'hammer;
                    }
                }
            }
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for entry in fs::read_dir(root.path().join("jobs")).unwrap() {
            let dir = entry.unwrap().path();
            let text = fs::read_to_string(dir.join("job.json")).expect("a record exists");
            let record: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("torn record ({e}): {text}"));
            seen.insert(record["status"].as_str().unwrap().to_owned());
        }
    }
    // The next start turns what was running or paused into interrupted.
    let server = Server::start(root.path(), &[]);
    let jobs = get(&server.url("/api/training/jobs")).json();
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] != "running" && j["status"] != "paused")
    );
    eprintln!("statuses seen on disk after kills: {seen:?}");
}

/// SIGTERM to the server, as `timeout` sends it (to the process and its
/// group in the same instant): one graceful stop. Each trainer, running or
/// paused, gets SIGTERM and its handler runs; the jobs are recorded
/// interrupted, ended by SIGTERM; the server exits 0 well within the grace.
#[test]
fn a_graceful_stop_lets_every_trainer_handle_sigterm() {
    use std::os::unix::process::CommandExt;
    let root = TempDir::new("graceful");
    recipes(root.path());
    let mut server = Server::start_custom(
        root.path(),
        &["--max-jobs", "2", "--cancel-grace", "20"],
        &[],
        |cmd| {
            cmd.process_group(0);
        },
    );
    let running = start(&server, json!({"recipe": "polite"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paused = start(&server, json!({"recipe": "polite"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &running, &["running"]);
    wait_status(&server, &paused, &["running"]);
    assert_eq!(control(&server, &paused, "pause").status, 200);

    let pid = server.child.id() as i32;
    let started = Instant::now();
    // SAFETY: signalling our own child and its process group.
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGTERM);
    }
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let log = server.log();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        took < Duration::from_secs(10),
        "{took:?}: well within the 20 s grace"
    );
    assert!(!log.contains("exiting now"), "one stop, not two: {log}");
    eprintln!("stopped in {took:?} with a running and a paused trainer");
    for id in [&running, &paused] {
        let record: Value = serde_json::from_slice(
            &fs::read(root.path().join(format!("jobs/{id}/job.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["status"], "interrupted", "{record}");
        assert_eq!(record["stop_signal"], 15, "ended by SIGTERM: {record}");
        assert_eq!(
            record["exit_code"], 0,
            "its handler ran and exited: {record}"
        );
        let training_log =
            fs::read_to_string(root.path().join(format!("jobs/{id}/training.log"))).unwrap();
        assert!(
            training_log.contains("SIGTERM: saving"),
            "{id}: {training_log}"
        );
    }
}

/// Cleanup over a real server: a running job and one being downloaded are
/// not deleted; a finished one is, with all its checkpoints, at once.
#[test]
fn jobs_are_deleted_only_once_ended_and_not_downloading() {
    let root = TempDir::new("delete");
    recipes(root.path());
    let server = Server::start(root.path(), &["--cancel-grace", "1"]);
    let id = start(&server, json!({"recipe": "polite"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&server, &id, &["running"]);
    let url = server.url(&format!("/api/training/jobs/{id}"));
    let refused = delete(&url);
    assert_eq!(
        refused.status,
        409,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(
        refused.json()["detail"],
        "Job is running; cancel it (or wait for it to end) first"
    );
    assert_eq!(control(&server, &id, "cancel").status, 200);
    wait_status(&server, &id, &["cancelled"]);

    // A finished job with ten checkpoints and a download in flight.
    make_job(root.path(), "done");
    let model = root.path().join("jobs/done/model");
    for step in 1..=10 {
        write(
            &model,
            &format!("checkpoint-{step}00/weights.bin"),
            floats(1 << 20, step),
        );
        write(
            &model,
            &format!("checkpoint-{step}00/trainer_state.json"),
            "{}",
        );
    }
    write(
        root.path(),
        "jobs/done/job.json",
        r#"{"id":"done","recipe":"demo","status":"completed","created_at":"2026-01-01T00:00:00.000Z"}"#,
    );
    let mut downloading = TcpStream::connect(server.addr).unwrap();
    small_receive_buffer(&downloading, 4096);
    write!(
        downloading,
        "GET /api/training/done/download/model?compression=stored HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1024];
    downloading.read_exact(&mut first).unwrap();
    let done_url = server.url("/api/training/jobs/done");
    let busy = delete(&done_url);
    assert_eq!(busy.status, 409);
    assert_eq!(
        busy.json()["detail"],
        "A download of this job is in progress; try again once it ends"
    );
    drop(downloading);
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(30), || delete(&done_url)
        .status
        == 200));
    eprintln!(
        "a job with 10 checkpoints deleted {:?} after its download was dropped",
        started.elapsed()
    );
    assert!(!root.path().join("jobs/done").exists());
    assert_eq!(get(&done_url).status, 404);
    let listed = get(&server.url("/api/training/jobs")).json();
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["id"] != "done")
    );

    // The cancelled job goes too.
    let started = Instant::now();
    assert_eq!(delete(&url).status, 200);
    eprintln!("a cancelled job deleted in {:?}", started.elapsed());
    assert!(server.logged(&format!("job {id}: deleted")));
}
