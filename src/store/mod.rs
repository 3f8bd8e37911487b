//! The store: the root directory, opened once as a cap-std `Dir`, and the
//! only code that touches the filesystem on behalf of a request.
//!
//! Ambient authority appears once, in [`Store::open`]. Everything below takes
//! parsed names (`JobId`, `CheckpointName`) and resolves them beneath the
//! root, so no request can reach a file outside it: path traversal is
//! impossible by construction. Each job gets its own `Dir`, so symlinks in a
//! job are followed only while they stay inside that job.
//!
//! Here: the root and the job list. One job's record, log, progress and
//! history: `job`; its checkpoints and the files a download covers:
//! `checkpoints`; its resource samples: `resources`; replacing a record
//! atomically: `atomic`.

mod atomic;
pub mod audit;
mod checkpoints;
pub mod digests;
pub mod history;
mod job;
pub mod lock;
pub mod progress;
pub mod records;
mod resources;
pub mod walk;

pub use checkpoints::{Checkpoint, JobFiles, step_from_name};
pub use job::{JobDir, ProgressRead, Stamp};
pub use resources::{RESOURCES_FILE, RESOURCES_MAX_BYTES, RESOURCES_POINTS_MAX};

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, File, OpenOptions, OpenOptionsExt};

use crate::names::JobId;

/// Largest `job.json`, `progress.json` or `trainer_state.json` read whole.
const SMALL_FILE_MAX: u64 = 16 << 20;
/// How much of `metrics.jsonl` (or `metrics.csv`) the latest progress
/// reads (the last lines are enough).
const LAST_SAMPLE_TAIL: u64 = 64 << 10;
/// How much of a Lightning `metrics.csv` the history reads: its newest
/// part, downsampled like `metrics.jsonl`.
const CSV_HISTORY_TAIL: u64 = 16 << 20;

pub const JOBS_DIR: &str = "jobs";
pub const RECORD_FILE: &str = "job.json";
pub const LOG_FILE: &str = "training.log";
pub const PROGRESS_FILE: &str = "progress.json";
pub const HISTORY_FILE: &str = "metrics.jsonl";
pub const MODEL_DIR: &str = "model";
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// Where PyTorch Lightning's loggers write by default, under the trainer's
/// working directory (the job's) or its `default_root_dir`.
pub const LIGHTNING_LOGS: [&str; 2] = ["lightning_logs", "model/lightning_logs"];
/// `CSVLogger`'s file, in `lightning_logs/version_N/`.
pub const LIGHTNING_METRICS_FILE: &str = "metrics.csv";
pub const RECIPES_FILE: &str = "recipes.json";

/// The root of everything the server reads and writes.
pub struct Store {
    root: Dir,
    /// The root's path, only to tell trainers (other processes) where their
    /// job lives; never used to open anything here.
    path: PathBuf,
}

impl Store {
    /// Opens `path` as the root. This is the one use of ambient authority.
    pub fn open(path: &Path) -> io::Result<Store> {
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        let path = std::path::absolute(path)?;
        Ok(Store { root, path })
    }

    /// Takes the root for this process: a second server on the same root
    /// is refused (see [`lock`]).
    pub fn lock_instance(&self) -> Result<lock::InstanceLock, lock::LockError> {
        lock::lock(&self.root)
    }

    /// The root's absolute path, for what can only take a path (inotify
    /// watches, trainers' environment); never used to open anything here.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The absolute path of a job's directory, for trainers' environment.
    pub fn job_path(&self, id: &JobId) -> PathBuf {
        self.path.join(JOBS_DIR).join(id.as_str())
    }

    /// The download audit kept under the root (see [`audit`]).
    pub fn audit(&self) -> io::Result<audit::Audit> {
        audit::Audit::open(&self.root)
    }

    /// The digest index kept under the root (see [`digests`]).
    pub fn digests(&self) -> digests::Digests {
        digests::Digests::open(&self.root)
    }

    /// `recipes.json`, when the admin wrote one.
    pub fn recipes(&self) -> io::Result<Option<Vec<u8>>> {
        read_small(&self.root, RECIPES_FILE)
    }

    /// Creates a new, empty job directory with its `model/`; fails if the
    /// job exists.
    pub fn create_job(&self, id: &JobId) -> io::Result<JobDir> {
        let mut builder = DirBuilder::new();
        builder.recursive(true);
        self.root.create_dir_with(JOBS_DIR, &builder)?;
        self.root.create_dir(format!("{JOBS_DIR}/{id}"))?;
        let dir = self.root.open_dir(format!("{JOBS_DIR}/{id}"))?;
        dir.create_dir(MODEL_DIR)?;
        Ok(JobDir {
            id: id.clone(),
            dir,
        })
    }

    /// Deletes a job's directory and everything in it, through the root
    /// (cap-std removes links, never what they point to).
    pub fn remove_job(&self, id: &JobId) -> io::Result<()> {
        self.root.remove_dir_all(format!("{JOBS_DIR}/{id}"))
    }

    /// The ids of all job directories; names that are not valid job ids are
    /// not jobs (and could not be addressed anyway).
    /// The root's file system: (total bytes, bytes free to unprivileged
    /// users), by fstatvfs(2) on the root's own descriptor.
    pub fn filesystem(&self) -> io::Result<(u64, u64)> {
        use std::os::fd::AsRawFd;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: the root's descriptor is open for the store's life, and
        // the kernel fills `stat` on success.
        let stat = unsafe {
            if libc::fstatvfs(self.root.as_raw_fd(), stat.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            stat.assume_init()
        };
        let unit = stat.f_frsize as u64;
        Ok((stat.f_blocks as u64 * unit, stat.f_bavail as u64 * unit))
    }

    pub fn job_ids(&self) -> io::Result<Vec<JobId>> {
        let entries = match self.root.read_dir(JOBS_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| JobId::parse(n).ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Opens a job's directory; `None` when there is no such job.
    pub fn job(&self, id: &JobId) -> io::Result<Option<JobDir>> {
        match self.root.open_dir(format!("{JOBS_DIR}/{id}")) {
            Ok(dir) => Ok(Some(JobDir {
                id: id.clone(),
                dir,
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // Also what cap-std says of a symlink leading out of the root.
                log::warn!("job {id}: its directory cannot be opened: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// True for errors that mean "there is nothing (usable) at that path".
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Reads a small file under `dir` whole; `None` when it does not exist.
fn read_small(dir: &Dir, path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut file = match open_regular(dir, path) {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    (&mut file)
        .take(SMALL_FILE_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SMALL_FILE_MAX {
        return Err(io::Error::other(format!(
            "{path} is larger than {SMALL_FILE_MAX} bytes"
        )));
    }
    Ok(Some(bytes))
}

/// Opens a regular file under `dir` for reading. `O_NONBLOCK` keeps a FIFO
/// planted there from blocking the thread; anything but a regular file is
/// refused after opening, so a swap between stat and open cannot slip one
/// through.
fn open_regular(dir: &Dir, path: &str) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = dir.open_with(path, &options)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{path} is not a regular file"),
        ));
    }
    Ok(file)
}
