//! `trainbox demo`: a temporary root with the demo recipe and one trained
//! job, served, with the URLs and curl lines to try.
//!
//! Setting up the temporary root happens before serving and outside the
//! request path, so it uses `std::fs` directly.
#![allow(clippy::disallowed_methods)]

pub mod trainer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

/// The recipe file for a root whose demo recipe runs this binary.
pub fn demo_recipes(exe: &Path) -> serde_json::Value {
    json!({ "recipes": {
        "demo": {
            "command": [exe.to_string_lossy(), "demo-trainer"],
            "params": {
                "steps": { "type": "int", "min": 1, "max": 100000, "default": 300 },
                "lr": { "type": "float", "min": 0, "max": 1, "default": 0.05 },
                "save_every": { "type": "int", "min": 1, "max": 100000, "default": 100 },
                "step_delay_ms": { "type": "int", "min": 0, "max": 10000, "default": 10 },
                "hidden": { "type": "int", "min": 1, "max": 4096, "default": 64 }
            }
        }
    }})
}

/// Makes a fresh temporary root under the system's temp directory.
pub fn temp_root() -> io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let root = std::env::temp_dir().join(format!("trainbox-demo-{}-{stamp}", std::process::id()));
    fs::create_dir_all(root.join("jobs"))?;
    Ok(root)
}

/// Creates the demo root and trains one job to completion with the demo
/// trainer as a child process (its output goes to the job's
/// `training.log`). Returns the root and the job id.
pub fn prepare(steps: u64) -> io::Result<(PathBuf, String)> {
    let exe = std::env::current_exe()?;
    let root = temp_root()?;
    fs::write(
        root.join("recipes.json"),
        serde_json::to_vec_pretty(&demo_recipes(&exe))?,
    )?;
    let job_id = "demo-1".to_owned();
    let job_dir = root.join("jobs").join(&job_id);
    fs::create_dir_all(job_dir.join("model"))?;
    let log = fs::File::create(job_dir.join("training.log"))?;
    eprintln!("training the demo job in {} ...", job_dir.display());
    let status = Command::new(&exe)
        .arg("demo-trainer")
        .current_dir(&job_dir)
        .env("TRAINBOX_JOB_ID", &job_id)
        .env("TRAINBOX_JOB_DIR", &job_dir)
        .env("TRAINBOX_OUTPUT_DIR", job_dir.join("model"))
        .env("TRAINBOX_PROGRESS_FILE", job_dir.join("progress.json"))
        .env("TRAINBOX_PARAM_STEPS", steps.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "the demo trainer failed: {status}"
        )));
    }
    Ok((root, job_id))
}

/// The newest `checkpoint-N` directory of a job, for the banner's example.
fn newest_checkpoint(job_dir: &Path) -> Option<String> {
    fs::read_dir(job_dir.join("model"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| Some((name.strip_prefix("checkpoint-")?.parse::<u64>().ok()?, name)))
        .max()
        .map(|(_, name)| name)
}

/// What to try once the demo serves.
pub fn banner(base: &str, root: &Path, job: &str) -> String {
    let checkpoint = newest_checkpoint(&root.join("jobs").join(job))
        .unwrap_or_else(|| "checkpoint-100".to_owned());
    format!(
        "\ntrainbox demo: serving {root} at {base}\n\n\
         open {base}/ in a browser, or try:\n\n\
         \x20 curl {base}/api/training/jobs\n\
         \x20 curl {base}/api/training/{job}/progress\n\
         \x20 curl {base}/api/training/{job}/checkpoints\n\
         \x20 curl -OJ {base}/api/training/{job}/download/model\n\
         \x20 curl -OJ '{base}/api/training/{job}/download/model?checkpoint={checkpoint}'\n\
         \x20 curl -OJ -C - {base}/api/training/{job}/download/model   # resume\n\
         \x20 curl -OJ {base}/api/training/{job}/download/logs\n\n\
         press Ctrl-C to stop\n",
        root = root.display()
    )
}
