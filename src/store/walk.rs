//! Walking a directory tree inside a job's `Dir`: the files a download
//! archives, with their fingerprints.
//!
//! Paths are resolved by cap-std relative to the job directory, so a symlink
//! is followed only while it stays inside it; one that leaves it (or dangles)
//! is skipped and logged. `tmp-*` directories (checkpoints being written),
//! special files and names that are not UTF-8 are skipped too. The result is
//! sorted by archive name, so the same tree always gives the same archive.
//!
//! Each directory is walked at most once, whatever links lead to it: the
//! real directories first (entries in name order), then the symlinked ones
//! in name order, each only if its target was not walked already. So the
//! real tree keeps its own names, a link adds only what is not there
//! anyway, and a tree of links cannot multiply the work (two links to the
//! next level at each of 24 levels used to mean 2^24 paths). Directories
//! and files are capped, and so is depth.
//!
//! A file with more than one hard link, owned by someone other than the
//! job directory's owner, is skipped and logged like an escaping symlink:
//! where hard links to others' files are allowed
//! (`fs.protected_hardlinks=0`), whoever can write into a job could
//! otherwise link any file the server may read into its next download.

use std::collections::HashSet;
use std::io;

use cap_std::fs::{Dir, Metadata, MetadataExt};

use crate::archive::FileEntry;
use crate::archive::plan::Fingerprint;
use crate::text::escape_controls;

/// Deeper trees are cut off (and logged): no real model nests this far.
const MAX_DEPTH: usize = 32;
/// More files than this is refused rather than planned.
pub const MAX_FILES: usize = 100_000;
/// More directories than this is refused rather than walked.
pub const MAX_DIRS: usize = 20_000;

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
    let owner = job.dir_metadata()?.uid();
    if meta.is_file() {
        let name = base.rsplit('/').next().unwrap_or(base).to_owned();
        if foreign_hard_link(&meta, owner) {
            log::warn!("skipping {}: {}", escape_controls(base), FOREIGN);
            return Ok(Vec::new());
        }
        return Ok(vec![WalkedFile {
            path: base.to_owned(),
            entry: FileEntry {
                name,
                fingerprint: fingerprint(&meta),
            },
        }]);
    }
    let mut walk = Walk {
        job,
        owner,
        files: Vec::new(),
        visited: HashSet::from([(meta.dev(), meta.ino())]),
        stack: vec![(base.to_owned(), String::new())],
        linked: Vec::new(),
    };
    loop {
        while let Some((dir_path, prefix)) = walk.stack.pop() {
            walk.list(&dir_path, &prefix)?;
        }
        // Then the symlinked directories, in name order, each once.
        walk.linked.sort_by(|a, b| b.1.cmp(&a.1));
        let Some((path, prefix, id)) = walk.linked.pop() else {
            break;
        };
        if walk.visited.insert(id) {
            walk.check_dirs()?;
            walk.stack.push((path, prefix));
        } else {
            log::debug!(
                "not following {}: its directory is archived already",
                escape_controls(&path)
            );
        }
    }
    let mut files = walk.files;
    files.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(files)
}

const FOREIGN: &str = "a hard link to another owner's file";

/// A file linked into the job from elsewhere by someone who does not own it.
fn foreign_hard_link(meta: &Metadata, owner: u32) -> bool {
    meta.nlink() > 1 && meta.uid() != owner
}

/// The state of one walk.
struct Walk<'a> {
    job: &'a Dir,
    /// The job directory's owner.
    owner: u32,
    files: Vec<WalkedFile>,
    /// (device, inode) of every directory walked or queued.
    visited: HashSet<(u64, u64)>,
    /// Real directories to list: (path in job, archive prefix).
    stack: Vec<(String, String)>,
    /// Symlinked directories found: (path, archive prefix, target id).
    linked: Vec<(String, String, (u64, u64))>,
}

impl Walk<'_> {
    fn check_dirs(&self) -> io::Result<()> {
        if self.visited.len() > MAX_DIRS {
            return Err(io::Error::other(format!(
                "more than {MAX_DIRS} directories to archive"
            )));
        }
        Ok(())
    }

    /// Reads one directory: files are kept, real subdirectories queued
    /// (in name order), symlinked ones set aside for later.
    fn list(&mut self, dir_path: &str, prefix: &str) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in self.job.read_dir(dir_path)? {
            let entry = entry?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(raw) => log::warn!(
                    "skipping a name that is not UTF-8 in {}: {}",
                    escape_controls(dir_path),
                    escape_controls(&raw.to_string_lossy())
                ),
            }
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = format!("{dir_path}/{name}");
            let shown = escape_controls(&path);
            let linked = is_symlink(self.job, &path);
            let meta = match self.job.metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !linked => {
                    continue; // removed since the listing
                }
                Err(e) if linked => {
                    log::warn!(
                        "skipping symlink {shown}: it leaves the job directory or dangles ({e})"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            let archive_name = format!("{prefix}{name}");
            if meta.is_dir() {
                if name.starts_with("tmp-") {
                    continue;
                }
                if prefix.matches('/').count() >= MAX_DEPTH {
                    log::warn!("skipping {shown}: deeper than {MAX_DEPTH} directories");
                    continue;
                }
                let id = (meta.dev(), meta.ino());
                if linked {
                    self.linked.push((path, format!("{archive_name}/"), id));
                } else if self.visited.insert(id) {
                    self.check_dirs()?;
                    subdirs.push((path, format!("{archive_name}/")));
                }
            } else if meta.is_file() {
                if foreign_hard_link(&meta, self.owner) {
                    log::warn!("skipping {shown}: {FOREIGN}");
                    continue;
                }
                if self.files.len() >= MAX_FILES {
                    return Err(io::Error::other(format!(
                        "more than {MAX_FILES} files to archive"
                    )));
                }
                self.files.push(WalkedFile {
                    path,
                    entry: FileEntry {
                        name: archive_name,
                        fingerprint: fingerprint(&meta),
                    },
                });
            } else {
                log::debug!("skipping {shown}: not a regular file");
            }
        }
        // Popped in name order.
        self.stack.extend(subdirs.into_iter().rev());
        Ok(())
    }
}

fn is_symlink(job: &Dir, path: &str) -> bool {
    job.symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// The total size of the regular files under `base`, and the newest of
/// their modification times (nanoseconds; `None` when there are none).
pub fn size_and_newest(job: &Dir, base: &str) -> io::Result<(u64, Option<i128>)> {
    let files = walk(job, base)?;
    let size = files.iter().map(|f| f.entry.fingerprint.size).sum();
    let newest = files.iter().map(|f| f.entry.fingerprint.mtime_ns).max();
    Ok((size, newest))
}
