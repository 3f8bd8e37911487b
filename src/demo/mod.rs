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

/// Creates the demo root: `jobs/` and a `recipes.json` whose `demo` recipe
/// runs this binary's demo trainer.
pub fn prepare_root() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let root = temp_root()?;
    fs::write(
        root.join("recipes.json"),
        serde_json::to_vec_pretty(&demo_recipes(&exe))?,
    )?;
    Ok(root)
}

/// Removes the demo's temporary root (the demo stops its trainers first).
pub fn remove_root(root: &Path) -> io::Result<()> {
    fs::remove_dir_all(root)
}

/// What to try once the demo serves, in an order in which every line
/// works as printed: `job` trains now, `queued` waits behind it.
pub fn banner(base: &str, root: &Path, job: &str, queued: &str) -> String {
    let api = format!("{base}/api/training");
    format!(
        "\ntrainbox demo: serving {root} at {base} (removed again when the demo stops)\n\
         job {job} is training now (about 30 s; a checkpoint every 100 steps);\n\
         job {queued} waits behind it.\n\n\
         open {base}/ in a browser, or try:\n\n\
         \x20 curl {api}/jobs\n\
         \x20 curl {api}/{job}/progress\n\
         \x20 curl -X POST {api}/{job}/pause\n\
         \x20 curl -X POST {api}/{job}/resume\n\
         \x20 curl {api}/{job}/checkpoints\n\
         \x20 curl -OJ '{api}/{job}/download/model?checkpoint=checkpoint-100'\n\
         \x20 curl {api}/{job}/resources\n\
         \x20 curl '{api}/compare?jobs={job},{queued}&metric=loss'\n\
         \x20 curl {api}/disk\n\
         \x20 curl -X POST {api}/{queued}/cancel\n\n\
         once {job} has finished:\n\n\
         \x20 curl -OJ {api}/{job}/download/model\n\
         \x20 curl -C - -o model_{job}.zip {api}/{job}/download/model    # resumes a cut download\n\
         \x20 curl -OJ {api}/{job}/download/logs\n\
         \x20 curl {base}/api/models/trainbox/{job}    # the job as a Hugging Face Hub repository\n\
         \x20 curl -O {base}/trainbox/{job}/resolve/main/config.json\n\
         \x20 curl -X POST -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"recipe\": \"demo\", \"params\": {{\"steps\": 500}}}}' {api}/jobs\n\n\
         press Ctrl-C to stop\n",
        root = root.display()
    )
}
