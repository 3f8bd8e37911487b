//! The store: the root directory, opened once as a cap-std `Dir`, and the
//! only code that touches the filesystem on behalf of a request.
//!
//! Ambient authority appears once, in [`Store::open`]. Everything below takes
//! parsed names (`JobId`, `CheckpointName`) and resolves them beneath the
//! root, so no request can reach a file outside it: path traversal is
//! impossible by construction. Each job gets its own `Dir`, so symlinks in a
//! job are followed only while they stay inside that job.

pub mod history;
pub mod lock;
pub mod progress;
pub mod records;
pub mod walk;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, File, Metadata, OpenOptions, OpenOptionsExt};
use serde::Serialize;

use crate::archive::plan::Fingerprint;
use crate::archive::stream::MemberSource;
use crate::names::{CheckpointName, JobId};
use crate::timefmt;
use history::{Histories, History};
use progress::Progress;
use records::JobRecord;
use walk::WalkedFile;

/// Largest `job.json`, `progress.json` or `trainer_state.json` read whole.
const SMALL_FILE_MAX: u64 = 16 << 20;
/// How much of `metrics.jsonl` the latest progress reads (the last line
/// is enough).
const LAST_SAMPLE_TAIL: u64 = 64 << 10;

pub const JOBS_DIR: &str = "jobs";
pub const RECORD_FILE: &str = "job.json";
pub const LOG_FILE: &str = "training.log";
pub const PROGRESS_FILE: &str = "progress.json";
pub const HISTORY_FILE: &str = "metrics.jsonl";
pub const MODEL_DIR: &str = "model";
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
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

    /// The absolute path of a job's directory, for trainers' environment.
    pub fn job_path(&self, id: &JobId) -> PathBuf {
        self.path.join(JOBS_DIR).join(id.as_str())
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

    /// The ids of all job directories; names that are not valid job ids are
    /// not jobs (and could not be addressed anyway).
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

/// What progress the job's files show.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressRead {
    /// A sample, and the file it came from.
    Found(Progress, &'static str),
    /// A file exists but is malformed or half-written.
    Unreadable,
    /// No progress file of any kind.
    Absent,
}

/// A checkpoint of a job, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub name: String,
    /// `hf` for `checkpoint-*` directories, `lightning` for `*.ckpt` files.
    pub kind: &'static str,
    pub step: Option<u64>,
    pub size_bytes: u64,
    pub modified_at: String,
}

/// One job's directory.
pub struct JobDir {
    id: JobId,
    dir: Dir,
}

impl JobDir {
    pub fn id(&self) -> &JobId {
        &self.id
    }

    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The job record, or `None` for a job started outside trainbox (or a
    /// record that does not parse, which is logged).
    pub fn record(&self) -> Option<JobRecord> {
        let bytes = self.read_small(RECORD_FILE).ok().flatten()?;
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                log::warn!("job {}: {RECORD_FILE} does not parse: {e}", self.id);
                None
            }
        }
    }

    /// Reads a small file whole; `None` when it does not exist.
    pub fn read_small(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        read_small(&self.dir, path)
    }

    /// Opens a regular file for reading (see [`open_regular`]).
    pub fn open_regular(&self, path: &str) -> io::Result<File> {
        open_regular(&self.dir, path)
    }

    /// Writes `job.json` atomically: a temporary file, fsync, rename over
    /// the record, fsync of the directory. A crash at any point leaves the
    /// old record or the new one, never a torn one.
    pub fn write_record(&self, record: &JobRecord) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        let tmp = format!(
            ".{RECORD_FILE}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let result = (|| {
            let mut file = self.dir.open_with(&tmp, &options)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            self.dir.rename(&tmp, &self.dir, RECORD_FILE)?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        result
    }

    /// `training.log`, opened for appending (created if missing), for a
    /// trainer's stdout and stderr.
    pub fn open_log_for_append(&self) -> io::Result<std::fs::File> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        Ok(self.dir.open_with(LOG_FILE, &options)?.into_std())
    }

    /// The job directory's descriptor (a trainer starts in it by fchdir).
    pub fn raw_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// Metadata of a path in the job, following symlinks inside it.
    /// `None` also for a symlink that leads out of the job (cap-std refuses
    /// it as PermissionDenied): to a client it does not exist.
    pub fn metadata(&self, path: &str) -> io::Result<Option<Metadata>> {
        match self.dir.metadata(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                log::warn!("job {}: {path} is out of reach: {e}", self.id);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn has_model(&self) -> io::Result<bool> {
        Ok(self.metadata(MODEL_DIR)?.is_some_and(|m| m.is_dir()))
    }

    /// The latest progress: `progress.json`, else the last line of
    /// `metrics.jsonl`, else the newest checkpoint's `trainer_state.json`.
    pub fn progress(&self) -> ProgressRead {
        if let Ok(Some(bytes)) = self.read_small(PROGRESS_FILE) {
            return match Progress::from_json(&bytes) {
                Some(p) => ProgressRead::Found(p, PROGRESS_FILE),
                None => ProgressRead::Unreadable,
            };
        }
        // Only the end of the history is needed for its last sample.
        if let Ok(Some(last)) = self
            .history_tail(LAST_SAMPLE_TAIL)
            .map(|h| h.and_then(|h| h.into_iter().last()))
        {
            return ProgressRead::Found(last, HISTORY_FILE);
        }
        if let Some(bytes) = self.newest_trainer_state() {
            return match Progress::from_trainer_state(&bytes) {
                Some(p) => ProgressRead::Found(p, TRAINER_STATE_FILE),
                None => ProgressRead::Unreadable,
            };
        }
        ProgressRead::Absent
    }

    /// The progress history: `metrics.jsonl` read through `histories`
    /// (streamed, downsampled, only new lines read again), else the newest
    /// checkpoint's `log_history`. A history file that cannot be read (a
    /// FIFO, a directory, no permission) counts as absent, and is logged.
    pub fn history(&self, histories: &Histories) -> History {
        match self.open_regular(HISTORY_FILE) {
            Ok(file) => match histories.read(&self.id, file) {
                Ok(history) => return history,
                Err(e) => log::warn!("job {}: cannot read {HISTORY_FILE}: {e}", self.id),
            },
            Err(e) if is_missing(&e) => {}
            Err(e) => log::warn!("job {}: skipping {HISTORY_FILE}: {e}", self.id),
        }
        let points = self
            .newest_trainer_state()
            .map(|bytes| Progress::history_from_trainer_state(&bytes))
            .unwrap_or_default();
        History {
            samples: points.len() as u64,
            points,
        }
    }

    /// The `trainer_state.json` of the `checkpoint-N` directory with the
    /// largest N (names only: no sizes, no other checkpoint is read).
    fn newest_trainer_state(&self) -> Option<Vec<u8>> {
        let newest = self
            .dir
            .read_dir(MODEL_DIR)
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("checkpoint"))
            .filter_map(|name| Some((step_from_name(&name)?, name)))
            .max()?;
        self.read_small(&format!("{MODEL_DIR}/{}/{TRAINER_STATE_FILE}", newest.1))
            .ok()
            .flatten()
    }

    /// The samples in the last `max` bytes of `metrics.jsonl`; `None` when
    /// the file does not exist. Malformed lines (a line being written, say)
    /// are skipped.
    fn history_tail(&self, max: u64) -> io::Result<Option<Vec<Progress>>> {
        let mut file = match self.open_regular(HISTORY_FILE) {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let start = len.saturating_sub(max);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.take(len - start).read_to_end(&mut bytes)?;
        let mut lines = bytes.split(|&b| b == b'\n');
        if start > 0 {
            lines.next(); // a partial line
        }
        Ok(Some(lines.filter_map(Progress::from_json).collect()))
    }

    /// The checkpoints: immediate children of `model/` that are directories
    /// named `checkpoint*` or files named `*.ckpt`, never `tmp-*`; sorted by
    /// step, then name.
    pub fn checkpoints(&self) -> io::Result<Vec<Checkpoint>> {
        let entries = match self.dir.read_dir(MODEL_DIR) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| CheckpointName::parse(n).ok())
            else {
                continue;
            };
            if name.is_in_progress() {
                continue;
            }
            let path = format!("{MODEL_DIR}/{name}");
            let Some(meta) = self.metadata(&path).ok().flatten() else {
                continue; // gone, or a symlink leaving the job
            };
            let kind = if meta.is_dir() && name.as_str().starts_with("checkpoint") {
                "hf"
            } else if meta.is_file() && name.as_str().ends_with(".ckpt") {
                "lightning"
            } else {
                continue;
            };
            let step = step_from_name(name.as_str()).or_else(|| {
                (kind == "hf")
                    .then(|| self.read_small(&format!("{path}/{TRAINER_STATE_FILE}")))
                    .and_then(|r| r.ok().flatten())
                    .and_then(|bytes| Progress::from_trainer_state(&bytes))
                    .and_then(|p| p.step)
            });
            let size_bytes = if meta.is_dir() {
                walk::total_size(&self.dir, &path)?
            } else {
                meta.len()
            };
            found.push(Checkpoint {
                name: name.to_string(),
                kind,
                step,
                size_bytes,
                modified_at: timefmt::rfc3339_from_nanos(walk::fingerprint(&meta).mtime_ns),
            });
        }
        found.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
        Ok(found)
    }

    /// Resolves what a model download archives: all of `model/`, or one
    /// checkpoint in it. `Ok(None)` when that does not exist (or is an
    /// in-progress `tmp-*` checkpoint).
    pub fn download_base(&self, checkpoint: Option<&CheckpointName>) -> io::Result<Option<String>> {
        let base = match checkpoint {
            None => MODEL_DIR.to_owned(),
            Some(name) if name.is_in_progress() => return Ok(None),
            Some(name) => format!("{MODEL_DIR}/{name}"),
        };
        let exists = match self.metadata(&base)? {
            Some(meta) => meta.is_dir() || (checkpoint.is_some() && meta.is_file()),
            None => false,
        };
        Ok(exists.then_some(base))
    }

    /// The files under `base` to archive.
    pub fn files_under(&self, base: &str) -> io::Result<Vec<WalkedFile>> {
        walk::walk(&self.dir, base)
    }

    /// The most recent modification among the job's own files, for the
    /// status of jobs without a record and the listing order.
    pub fn last_write(&self) -> Option<SystemTime> {
        [LOG_FILE, PROGRESS_FILE, HISTORY_FILE, MODEL_DIR, "."]
            .iter()
            .filter_map(|p| self.dir.metadata(p).ok())
            .filter_map(|m| m.modified().ok())
            .map(|t| t.into_std())
            .max()
    }
}

/// fsyncs a directory, so a rename in it is durable. cap-std holds
/// directories as `O_PATH` descriptors, which cannot be synced, so this
/// opens the same directory (relative to its own descriptor) for reading.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    // SAFETY: openat on a descriptor we own with a constant relative path;
    // the result is owned (and closed) by `File`.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.sync_all()
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

/// The step in a checkpoint's name: `checkpoint-500` → 500,
/// `epoch=3-step=1200.ckpt` → 1200.
pub fn step_from_name(name: &str) -> Option<u64> {
    let digits = |s: &str| -> Option<u64> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    if let Some(at) = name.find("step=") {
        return digits(&name[at + 5..]);
    }
    let rest = name.strip_prefix("checkpoint")?;
    let rest = rest.trim_start_matches(['-', '_']);
    // Only when the digits are the whole rest of the name.
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// The files of one download, opened by index through the job's `Dir`.
pub struct JobFiles {
    dir: JobDir,
    paths: Vec<String>,
}

impl JobFiles {
    pub fn new(dir: JobDir, files: &[WalkedFile]) -> JobFiles {
        JobFiles {
            dir,
            paths: files.iter().map(|f| f.path.clone()).collect(),
        }
    }
}

impl MemberSource for JobFiles {
    type File = File;

    fn open(&self, index: usize) -> io::Result<File> {
        self.dir.open_regular(&self.paths[index])
    }

    fn fingerprint(&self, file: &File) -> io::Result<Fingerprint> {
        Ok(walk::fingerprint(&file.metadata()?))
    }

    fn raw_fd(&self, file: &File) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(file.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_from_names() {
        assert_eq!(step_from_name("checkpoint-500"), Some(500));
        assert_eq!(step_from_name("checkpoint_7"), Some(7));
        assert_eq!(step_from_name("epoch=3-step=1200.ckpt"), Some(1200));
        assert_eq!(step_from_name("epoch=3-step=1200-v1.ckpt"), Some(1200));
        assert_eq!(step_from_name("last.ckpt"), None);
        assert_eq!(step_from_name("checkpoint-best"), None);
        assert_eq!(step_from_name("checkpoint-5a"), None);
        assert_eq!(step_from_name("checkpoint-007"), Some(7));
    }
}
