//! The digest worker: one background thread at the lowest CPU and I/O
//! priority that hashes (CRC-32 and SHA-256, one read) every file of
//! finished jobs and of complete checkpoints into the digest index, paced
//! so that it never takes the disk from a download.
//!
//! It follows the job index: a pass starts when a job changed (or every
//! [`RESCAN`]) and skips jobs whose files have not changed since they were
//! all hashed. Files are read through the store's cap-std root, and a file
//! whose fingerprint changes while it is read is not recorded.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::JobIndex;
use crate::archive::ArchiveSource;
use crate::archive::plan::Fingerprint;
use crate::archive::stream::MemberSource;
use crate::names::{CheckpointName, JobId};
use crate::store::digests::{Digests, FileDigest};
use crate::store::{Stamp, Store};

/// A pass also starts this long after the last when nothing changed.
const RESCAN: Duration = Duration::from_secs(60);
/// How often a running job's checkpoints are looked at for new complete
/// ones (a checkpoint settles in `CHECKPOINT_SETTLE`).
const RUNNING_LOOK: Duration = Duration::from_secs(5);
/// The most bytes hashed per second: a bound on the disk bandwidth taken.
pub const PACE_BYTES_PER_SEC: u64 = 512 << 20;
/// Read size while hashing: on the worker's stack, so an idle server keeps
/// no heap for it (64 KiB reads still run at the pace).
const CHUNK: usize = 64 << 10;

/// Starts the worker; it ends when the job index is dropped.
pub fn start(index: &Arc<JobIndex>, store: Arc<Store>, digests: Arc<Digests>) -> io::Result<()> {
    let index = Arc::downgrade(index);
    thread::Builder::new()
        .name("digests".into())
        .spawn(move || {
            lower_priority();
            let mut worker = Worker {
                store,
                digests,
                hashed: HashMap::new(),
                looked: HashMap::new(),
                pace: Pace::new(PACE_BYTES_PER_SEC),
            };
            // Holds the index only for a pass and a wait: the process
            // keeps it for its whole life, and tests that drop theirs do
            // not start this worker.
            while let Some(index) = Weak::upgrade(&index) {
                let seen = index.generation();
                worker.pass(&index);
                index.wait_for_change(seen, RESCAN);
            }
        })?;
    Ok(())
}

/// Nice 19 and the idle I/O class, for this thread only (Linux applies
/// both per thread).
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid as libc::c_long,
            IOPRIO_CLASS_IDLE << 13,
        );
    }
}

struct Worker {
    store: Arc<Store>,
    digests: Arc<Digests>,
    /// Jobs whose every file is hashed, with what their files looked like.
    hashed: HashMap<JobId, Stamp>,
    /// When each job was last looked at.
    looked: HashMap<JobId, Instant>,
    pace: Pace,
}

impl Worker {
    fn pass(&mut self, index: &JobIndex) {
        let ids = index.ids();
        let present: HashSet<&JobId> = ids.iter().collect();
        self.hashed.retain(|id, _| present.contains(id));
        self.looked.retain(|id, _| present.contains(id));
        for id in &ids {
            let Some(entry) = index.job(id) else {
                continue;
            };
            // The index's stamp of the job's files: nothing read here for
            // a job already hashed and unchanged.
            let stamp = entry.stamp;
            if self.hashed.get(id) == Some(&stamp) {
                continue;
            }
            // A running job changes with every progress write: its
            // checkpoints are looked at now and then, not at each write.
            if !entry.status.is_final()
                && self
                    .looked
                    .get(id)
                    .is_some_and(|at| at.elapsed() < RUNNING_LOOK)
            {
                continue;
            }
            self.looked.insert(id.clone(), Instant::now());
            let Ok(Some(dir)) = self.store.job(id) else {
                continue;
            };
            let id = id.clone();
            // Finished: the whole model. Still running: only what will not
            // change any more, its complete checkpoints.
            let (sources, all) = if entry.status.is_final() {
                let model = ArchiveSource::Model {
                    exclude_checkpoints: false,
                };
                (vec![model], true)
            } else {
                let complete = dir
                    .checkpoints()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.complete)
                    .filter_map(|c| CheckpointName::parse(&c.name).ok())
                    .map(ArchiveSource::Checkpoint)
                    .collect();
                // Never "all done" while it runs: more will come.
                (complete, false)
            };
            let mut every_file = all;
            for source in sources {
                every_file &= self.hash_source(&id, &source);
            }
            if every_file {
                self.hashed.insert(id, stamp);
            }
        }
    }

    /// Hashes the files of `source` not in the index yet; true when every
    /// one of them is in it afterwards.
    fn hash_source(&mut self, id: &JobId, source: &ArchiveSource) -> bool {
        let Ok(Some(dir)) = self.store.job(id) else {
            return false;
        };
        let Ok(Some(files)) = dir.archive(source) else {
            return false;
        };
        let mut every = true;
        for (index, entry) in files.entries().iter().enumerate() {
            if self.digests.get(&entry.fingerprint).is_some() {
                continue;
            }
            match self.hash_file(&files, index, entry.fingerprint) {
                Ok(Some(digest)) => self.digests.insert(entry.fingerprint, digest),
                Ok(None) => every = false, // changed while read: next pass
                Err(e) => {
                    log::debug!("digests: job {id}: {}: {e}", entry.name);
                    every = false;
                }
            }
        }
        every
    }

    fn hash_file<S: MemberSource>(
        &mut self,
        files: &S,
        index: usize,
        fingerprint: Fingerprint,
    ) -> io::Result<Option<FileDigest>> {
        let pace = &mut self.pace;
        hash_member(files, index, fingerprint, |n| pace.spend(n))
    }
}

/// CRC-32 and SHA-256 of member `index` of `files`, in one read through
/// a buffer on the stack; `read` is told of each block (to pace it).
/// `None` when the file is not, or not any more, the version
/// `fingerprint` names: a digest is only ever recorded for the bytes it
/// describes.
pub fn hash_member<S: MemberSource>(
    files: &S,
    index: usize,
    fingerprint: Fingerprint,
    mut read: impl FnMut(u64),
) -> io::Result<Option<FileDigest>> {
    let mut file = files.open(index)?;
    if files.fingerprint(&file)? != fingerprint {
        return Ok(None);
    }
    let mut buf = [0u8; CHUNK];
    let mut crc = crc32fast::Hasher::new();
    let mut sha = Sha256::new();
    let mut left = fingerprint.size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(None);
        }
        crc.update(&buf[..n]);
        sha.update(&buf[..n]);
        left -= n as u64;
        read(n as u64);
    }
    if files.fingerprint(&file)? != fingerprint {
        return Ok(None);
    }
    Ok(Some(FileDigest {
        crc32: crc.finalize(),
        sha256: sha.finalize().into(),
    }))
}

/// Sleeps as needed to keep to a rate.
struct Pace {
    per_sec: u64,
    started: Instant,
    spent: u64,
}

impl Pace {
    fn new(per_sec: u64) -> Pace {
        Pace {
            per_sec,
            started: Instant::now(),
            spent: 0,
        }
    }

    fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        let due = Duration::from_secs_f64(self.spent as f64 / self.per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            thread::sleep(due - elapsed);
        }
        // A fresh window now and then, so an idle spell is not credit.
        if elapsed > Duration::from_secs(10) {
            *self = Pace::new(self.per_sec);
        }
    }
}
