//! Walking a directory tree inside a job's `Dir`: the files a download
//! archives, with their fingerprints.
//!
//! Paths are resolved by cap-std relative to the job directory, so a symlink
//! is followed only while it stays inside it; one that leaves it (or dangles)
//! is skipped and logged. Directory cycles through symlinks, `tmp-*`
//! directories (checkpoints being written), special files and names that are
//! not UTF-8 are skipped too. The result is sorted by archive name, so the
//! same tree always gives the same archive.

use std::io;

use cap_std::fs::{Dir, Metadata, MetadataExt};

use crate::archive::FileEntry;
use crate::archive::plan::Fingerprint;

/// Deeper trees are cut off (and logged): no real model nests this far.
const MAX_DEPTH: usize = 32;
/// More files than this is refused rather than planned.
pub const MAX_FILES: usize = 100_000;

/// A file found by the walk: where it is and what it is called in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedFile {
    /// Path relative to the job directory, `/`-separated.
    pub path: String,
    pub entry: FileEntry,
}

pub fn fingerprint(meta: &Metadata) -> Fingerprint {
    Fingerprint {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    }
}

/// The regular files under `base` (a directory or a file, relative to
/// `job`). Archive names are relative to `base`; a file `base` is named by
/// its last component.
pub fn walk(job: &Dir, base: &str) -> io::Result<Vec<WalkedFile>> {
    let meta = job.metadata(base)?;
    if meta.is_file() {
        let name = base.rsplit('/').next().unwrap_or(base).to_owned();
        return Ok(vec![WalkedFile {
            path: base.to_owned(),
            entry: FileEntry {
                name,
                fingerprint: fingerprint(&meta),
            },
        }]);
    }
    let mut files = Vec::new();
    // (path in job, archive prefix, (dev, ino) of the directories above).
    let mut stack = vec![(
        base.to_owned(),
        String::new(),
        vec![(meta.dev(), meta.ino())],
    )];
    while let Some((dir_path, prefix, ancestors)) = stack.pop() {
        for entry in job.read_dir(&dir_path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                log::warn!("skipping a name that is not UTF-8 in {dir_path}");
                continue;
            };
            let path = format!("{dir_path}/{name}");
            let meta = match job.metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !is_symlink(job, &path) => {
                    continue; // removed since the listing
                }
                Err(e) => {
                    if is_symlink(job, &path) {
                        log::warn!(
                            "skipping symlink {path}: it leaves the job directory or dangles ({e})"
                        );
                        continue;
                    }
                    return Err(e);
                }
            };
            let archive_name = format!("{prefix}{name}");
            if meta.is_dir() {
                let id = (meta.dev(), meta.ino());
                if name.starts_with("tmp-") {
                    continue;
                }
                if ancestors.contains(&id) {
                    log::warn!("skipping {path}: a symlink loop back to a directory above it");
                    continue;
                }
                if ancestors.len() > MAX_DEPTH {
                    log::warn!("skipping {path}: deeper than {MAX_DEPTH} directories");
                    continue;
                }
                let mut below = ancestors.clone();
                below.push(id);
                stack.push((path, format!("{archive_name}/"), below));
            } else if meta.is_file() {
                if files.len() >= MAX_FILES {
                    return Err(io::Error::other(format!(
                        "more than {MAX_FILES} files to archive"
                    )));
                }
                files.push(WalkedFile {
                    path,
                    entry: FileEntry {
                        name: archive_name,
                        fingerprint: fingerprint(&meta),
                    },
                });
            } else {
                log::debug!("skipping {path}: not a regular file");
            }
        }
    }
    files.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(files)
}

fn is_symlink(job: &Dir, path: &str) -> bool {
    job.symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// The total size of the regular files under `base`.
pub fn total_size(job: &Dir, base: &str) -> io::Result<u64> {
    Ok(walk(job, base)?
        .iter()
        .map(|f| f.entry.fingerprint.size)
        .sum())
}
