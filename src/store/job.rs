//! One job's directory: its record, log, progress and history, each read
//! through the job's own `Dir`.

use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::time::SystemTime;

use cap_std::fs::{Dir, File, Metadata, OpenOptions};

use super::history::Downsampler;
use super::history::{Histories, History};
use super::progress::{Progress, samples_from_lightning_csv};
use super::records::JobRecord;
use super::walk;
use super::{
    CSV_HISTORY_TAIL, HISTORY_FILE, LAST_SAMPLE_TAIL, LIGHTNING_LOGS, LIGHTNING_METRICS_FILE,
    LOG_FILE, MODEL_DIR, PROGRESS_FILE, RECORD_FILE, RESOURCES_FILE, TRAINER_STATE_FILE, atomic,
    is_missing, open_regular, read_small, step_from_name,
};
use crate::archive::plan::Fingerprint;
use crate::names::JobId;

/// The paths a job's [`Stamp`] covers: its view is read from these (the
/// model directory changes when a checkpoint appears).
const STAMPED: [&str; 7] = [
    ".",
    RECORD_FILE,
    PROGRESS_FILE,
    HISTORY_FILE,
    LOG_FILE,
    MODEL_DIR,
    RESOURCES_FILE,
];

/// A digest of the fingerprints of a job's [`STAMPED`] paths (missing ones
/// included): equal stamps mean nothing a view shows has changed. Eight
/// bytes a job rather than the fingerprints themselves, since the index
/// keeps one for every job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u64);

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

/// One job's directory.
pub struct JobDir {
    pub(super) id: JobId,
    pub(super) dir: Dir,
}

impl JobDir {
    pub fn id(&self) -> &JobId {
        &self.id
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
    pub(super) fn read_small(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        read_small(&self.dir, path)
    }

    /// Opens a regular file for reading (see [`open_regular`]).
    pub(super) fn open_regular(&self, path: &str) -> io::Result<File> {
        open_regular(&self.dir, path)
    }

    /// Writes `job.json` atomically (`atomic::replace`): a crash leaves the
    /// old record or the new one, never a torn one.
    pub fn write_record(&self, record: &JobRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        atomic::replace(&self.dir, RECORD_FILE, &bytes)
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
    pub(super) fn metadata(&self, path: &str) -> io::Result<Option<Metadata>> {
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

    /// True when `model/` holds a file, directly or in a directory right
    /// under it (a checkpoint): the runner makes an empty `model/` before
    /// a trainer starts, which is no model yet. Looks at entries only until
    /// the first file.
    pub fn model_has_files(&self) -> bool {
        let Ok(entries) = self.dir.read_dir(MODEL_DIR) else {
            return false;
        };
        entries.flatten().any(|entry| match entry.file_type() {
            Ok(kind) if kind.is_file() => true,
            Ok(kind) if kind.is_dir() => entry
                .open_dir()
                .ok()
                .and_then(|sub| sub.entries().ok())
                .is_some_and(|mut inner| inner.next().is_some()),
            _ => false,
        })
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
        if let Some(bytes) = self.trainer_state() {
            return match Progress::from_trainer_state(&bytes) {
                Some(p) => ProgressRead::Found(p, TRAINER_STATE_FILE),
                None => ProgressRead::Unreadable,
            };
        }
        if let Some(bytes) = self.lightning_csv(LAST_SAMPLE_TAIL) {
            let samples = samples_from_lightning_csv(&bytes);
            return match samples.last() {
                Some(last) => {
                    // A validation row may end the file: the loss is the
                    // last one logged.
                    let mut latest = last.clone();
                    latest.loss = samples.iter().rev().find_map(|s| s.loss);
                    ProgressRead::Found(latest, LIGHTNING_METRICS_FILE)
                }
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
        if let Some(bytes) = self.trainer_state() {
            let points = Progress::history_from_trainer_state(&bytes);
            return History {
                samples: points.len() as u64,
                points,
            };
        }
        let mut downsampled = Downsampler::default();
        if let Some(bytes) = self.lightning_csv(CSV_HISTORY_TAIL) {
            for sample in samples_from_lightning_csv(&bytes) {
                downsampled.push(sample);
            }
        }
        History {
            samples: downsampled.seen(),
            points: downsampled.points(),
        }
    }

    /// The Hugging Face Trainer's state: of `model/trainer_state.json`
    /// (written by `save_state()` at the end) and the newest checkpoint's,
    /// the one further along (the final one when they tie).
    pub(super) fn trainer_state(&self) -> Option<Vec<u8>> {
        let step = |bytes: &[u8]| Progress::from_trainer_state(bytes).and_then(|p| p.step);
        let last = self
            .read_small(&format!("{MODEL_DIR}/{TRAINER_STATE_FILE}"))
            .ok()
            .flatten();
        let newest = self.newest_trainer_state();
        match (last, newest) {
            (Some(last), Some(newest)) if step(&newest) > step(&last) => Some(newest),
            (Some(last), _) => Some(last),
            (None, newest) => newest,
        }
    }

    /// Where Lightning's `CSVLogger` writes now: `metrics.csv` in the
    /// `version_N` directory with the highest N.
    pub(super) fn lightning_metrics_path(&self) -> Option<String> {
        LIGHTNING_LOGS.iter().find_map(|base| {
            let newest = self
                .dir
                .read_dir(base)
                .ok()?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter_map(|name| {
                    Some((name.strip_prefix("version_")?.parse::<u64>().ok()?, name))
                })
                .max()?;
            Some(format!("{base}/{}/{LIGHTNING_METRICS_FILE}", newest.1))
        })
    }

    /// The newest Lightning `metrics.csv`: its header line and its last
    /// `tail` bytes (whole lines), or `None` when there is none.
    fn lightning_csv(&self, tail: u64) -> Option<Vec<u8>> {
        let path = self.lightning_metrics_path()?;
        let mut file = self.open_regular(&path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut head = Vec::new();
        (&mut file)
            .take(LAST_SAMPLE_TAIL)
            .read_to_end(&mut head)
            .ok()?;
        let header_end = head.iter().position(|&b| b == b'\n')? + 1;
        let start = len.saturating_sub(tail).max(header_end as u64);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut rest = Vec::new();
        file.take(len - start).read_to_end(&mut rest).ok()?;
        if start > header_end as u64 {
            // A partial line.
            let cut = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |at| at + 1);
            rest.drain(..cut);
        }
        let mut out = head[..header_end].to_vec();
        out.extend_from_slice(&rest);
        Some(out)
    }

    /// The `trainer_state.json` of the `checkpoint-N` directory with the
    /// largest N (names only: no sizes, no other checkpoint is read).
    pub(super) fn newest_trainer_state(&self) -> Option<Vec<u8>> {
        self.read_small(&self.newest_checkpoint_state_path()?)
            .ok()
            .flatten()
    }

    /// The directories inside the job where a framework writes progress
    /// now (relative to the job): the newest `checkpoint-N/`, and each
    /// `lightning_logs/` with its newest `version_N/`. A watcher of the
    /// job watches these too.
    pub fn framework_dirs(&self) -> Vec<String> {
        let mut dirs = Vec::new();
        if let Some(state) = self.newest_checkpoint_state_path()
            && let Some((dir, _)) = state.rsplit_once('/')
        {
            dirs.push(dir.to_owned());
        }
        for base in LIGHTNING_LOGS {
            if self
                .metadata(base)
                .ok()
                .flatten()
                .is_some_and(|m| m.is_dir())
            {
                dirs.push(base.to_owned());
            }
        }
        if let Some(csv) = self.lightning_metrics_path()
            && let Some((dir, _)) = csv.rsplit_once('/')
        {
            dirs.push(dir.to_owned());
        }
        dirs
    }

    fn newest_checkpoint_state_path(&self) -> Option<String> {
        let newest = self
            .dir
            .read_dir(MODEL_DIR)
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("checkpoint"))
            .filter_map(|name| Some((step_from_name(&name)?, name)))
            .max()?;
        Some(format!("{MODEL_DIR}/{}/{TRAINER_STATE_FILE}", newest.1))
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

    /// What revalidation compares to notice a change without inotify: the
    /// fingerprints (inode, size, modification time) of the files and
    /// directories a job's view is read from, framework files included.
    pub fn stamp(&self) -> Stamp {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        // The files trainers' own frameworks write, wherever they are now.
        let framework = [
            Some(format!("{MODEL_DIR}/{TRAINER_STATE_FILE}")),
            self.newest_checkpoint_state_path(),
            self.lightning_metrics_path(),
        ];
        let paths = STAMPED
            .iter()
            .map(|p| p.to_string())
            .chain(framework.into_iter().flatten());
        for path in paths {
            let fingerprint: Option<Fingerprint> =
                self.dir.metadata(&path).ok().map(|m| walk::fingerprint(&m));
            (path, fingerprint).hash(&mut hasher);
        }
        Stamp(hasher.finish())
    }

    /// The bytes the job's directory takes on disk (allocated blocks,
    /// every file once however many links it has), walking it without
    /// following links; bounded like a download's walk, and a partial sum
    /// past the bounds.
    pub fn disk_usage(&self) -> io::Result<u64> {
        use cap_std::fs::MetadataExt;
        let mut seen = std::collections::HashSet::new();
        let mut dirs = vec![String::from(".")];
        let (mut bytes, mut visited) = (0u64, 0usize);
        while let Some(path) = dirs.pop() {
            visited += 1;
            if visited > walk::MAX_DIRS {
                log::warn!(
                    "job {}: more than {} directories; size is partial",
                    self.id,
                    walk::MAX_DIRS
                );
                break;
            }
            let entries = match self.dir.read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if is_missing(&e) => continue, // removed meanwhile
                Err(e) => return Err(e),
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                bytes += meta.blocks() * 512;
                if meta.is_dir() {
                    let name = entry.file_name();
                    dirs.push(format!("{path}/{}", name.to_string_lossy()));
                }
            }
        }
        Ok(bytes)
    }

    /// When the job directory was made (its birth time where the file
    /// system keeps one, else its last change).
    pub fn created(&self) -> Option<SystemTime> {
        let meta = self.dir.dir_metadata().ok()?;
        let created = meta.created().or_else(|_| meta.modified()).ok()?;
        Some(created.into_std())
    }
}
