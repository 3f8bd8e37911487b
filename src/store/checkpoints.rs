//! A job's checkpoints and the files a download archives: what is listed,
//! what a source (the model, a checkpoint, the logs) covers, and the
//! opened files a download streams.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::File;
use serde::Serialize;

use super::job::JobDir;
use super::progress::Progress;
use super::walk::{self, WalkedFile};
use super::{HISTORY_FILE, LOG_FILE, MODEL_DIR, PROGRESS_FILE, TRAINER_STATE_FILE, is_missing};
use crate::archive::plan::Fingerprint;
use crate::archive::stream::MemberSource;
use crate::archive::{ArchiveSource, FileEntry, is_checkpoint_member};
use crate::names::CheckpointName;
use crate::timefmt;

/// A checkpoint of a job, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub name: String,
    /// `hf` for `checkpoint-*` directories, `lightning` for `*.ckpt` files.
    pub kind: &'static str,
    pub step: Option<u64>,
    pub size_bytes: u64,
    pub modified_at: String,
    /// Written to the end: see [`CHECKPOINT_SETTLE`].
    pub complete: bool,
}

/// How long a checkpoint must stay unchanged to count as complete.
/// Hugging Face's Trainer (5.x) writes `checkpoint-N/` in place, with
/// `trainer_state.json` near the end and the RNG state after it; Lightning
/// writes a `.ckpt` file in place. Neither marks the end, so what settles
/// is taken as done. A trainer pausing longer than this in the middle of
/// a save is the case it cannot tell apart.
pub const CHECKPOINT_SETTLE: Duration = Duration::from_secs(3);

impl JobDir {
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
            if let Some(checkpoint) = self.checkpoint(&name)? {
                found.push(checkpoint);
            }
        }
        found.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
        Ok(found)
    }

    /// One checkpoint by name: `None` when there is none of that name (or
    /// it is being written under a `tmp-` name).
    pub fn checkpoint(&self, name: &CheckpointName) -> io::Result<Option<Checkpoint>> {
        if name.is_in_progress() {
            return Ok(None);
        }
        let path = format!("{MODEL_DIR}/{name}");
        let Some(meta) = self.metadata(&path).ok().flatten() else {
            return Ok(None); // gone, or a symlink leaving the job
        };
        let kind = if meta.is_dir() && name.as_str().starts_with("checkpoint") {
            "hf"
        } else if meta.is_file() && name.as_str().ends_with(".ckpt") {
            "lightning"
        } else {
            return Ok(None);
        };
        let step = step_from_name(name.as_str()).or_else(|| {
            (kind == "hf")
                .then(|| self.read_small(&format!("{path}/{TRAINER_STATE_FILE}")))
                .and_then(|r| r.ok().flatten())
                .and_then(|bytes| Progress::from_trainer_state(&bytes))
                .and_then(|p| p.step)
        });
        let own_mtime = walk::fingerprint(&meta).mtime_ns;
        let (size_bytes, complete) = if meta.is_dir() {
            let (size, newest) = walk::size_and_newest(&self.dir, &path)?;
            let has_state = self
                .metadata(&format!("{path}/{TRAINER_STATE_FILE}"))?
                .is_some_and(|m| m.is_file());
            let newest = newest.map_or(own_mtime, |n| n.max(own_mtime));
            (size, has_state && settled(newest))
        } else {
            (meta.len(), settled(own_mtime))
        };
        Ok(Some(Checkpoint {
            name: name.to_string(),
            kind,
            step,
            size_bytes,
            modified_at: timefmt::rfc3339_from_nanos(own_mtime),
            complete,
        }))
    }

    /// Deletes checkpoint `name` (a directory with everything in it, or a
    /// `.ckpt` file), through the job's own directory; links are removed,
    /// never followed. `Ok(false)` when there is no such checkpoint.
    pub fn remove_checkpoint(&self, name: &CheckpointName) -> io::Result<bool> {
        if self.checkpoint(name)?.is_none() {
            return Ok(false);
        }
        let path = format!("{MODEL_DIR}/{name}");
        let meta = self.dir.symlink_metadata(&path)?;
        if meta.is_dir() {
            self.dir.remove_dir_all(&path)?;
        } else {
            self.dir.remove_file(&path)?;
        }
        Ok(true)
    }

    /// The files a download of `source` archives, found now, with the
    /// job to open them through. `Ok(None)` when there is nothing to
    /// archive: no model directory, no such (or an in-progress) checkpoint,
    /// no log.
    pub fn archive(self, source: &ArchiveSource) -> io::Result<Option<JobFiles>> {
        let files = match source {
            ArchiveSource::Model {
                exclude_checkpoints,
            } => {
                if !self.has_model()? {
                    return Ok(None);
                }
                let mut files = walk::walk(&self.dir, MODEL_DIR)?;
                if *exclude_checkpoints {
                    files.retain(|f| !is_checkpoint_member(&f.entry.name));
                }
                files
            }
            ArchiveSource::Checkpoint(name) if name.is_in_progress() => return Ok(None),
            ArchiveSource::Checkpoint(name) => {
                let base = format!("{MODEL_DIR}/{name}");
                match self.metadata(&base)? {
                    Some(meta) if meta.is_dir() || meta.is_file() => walk::walk(&self.dir, &base)?,
                    _ => return Ok(None),
                }
            }
            ArchiveSource::Logs => {
                if !self.metadata(LOG_FILE)?.is_some_and(|m| m.is_file()) {
                    return Ok(None);
                }
                // progress.json and metrics.jsonl are optional.
                [LOG_FILE, PROGRESS_FILE, HISTORY_FILE]
                    .into_iter()
                    .filter_map(|name| {
                        let meta = self.metadata(name).ok()??;
                        meta.is_file().then(|| WalkedFile {
                            path: name.to_owned(),
                            entry: FileEntry {
                                name: name.to_owned(),
                                fingerprint: walk::fingerprint(&meta),
                            },
                        })
                    })
                    .collect()
            }
        };
        Ok(Some(JobFiles::new(self, files)))
    }
}

/// True when `mtime_ns` lies at least [`CHECKPOINT_SETTLE`] in the past.
fn settled(mtime_ns: i128) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    now - mtime_ns >= CHECKPOINT_SETTLE.as_nanos() as i128
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
    files: Vec<WalkedFile>,
}

impl JobFiles {
    fn new(dir: JobDir, files: Vec<WalkedFile>) -> JobFiles {
        JobFiles { dir, files }
    }

    /// The members, by archive name and fingerprint, in archive order.
    pub fn entries(&self) -> Vec<FileEntry> {
        self.files.iter().map(|f| f.entry.clone()).collect()
    }
}

impl MemberSource for JobFiles {
    type File = File;

    fn open(&self, index: usize) -> io::Result<File> {
        self.dir.open_regular(&self.files[index].path)
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
