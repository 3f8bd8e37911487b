//! The download audit: one JSON line per download in
//! `<root>/downloads.jsonl`, rotated by size to `downloads.jsonl.1`, and
//! read back newest first, filtered by job, a page at a time.
//!
//! Each line carries a sequence number, increasing across rotations (the
//! next one is found from the file's last line at start), which is also
//! the cursor of the pages.

use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::sync::Mutex;

use cap_std::fs::{Dir, File, OpenOptions};
use serde_json::{Map, Value};

pub const AUDIT_FILE: &str = "downloads.jsonl";
pub const AUDIT_OLD: &str = "downloads.jsonl.1";
/// A file is rotated past this size; with the rotated one, at most twice
/// this is kept and read by a listing.
pub const AUDIT_ROTATE_BYTES: u64 = 4 << 20;

pub struct Audit {
    root: Dir,
    state: Mutex<State>,
}

struct State {
    /// `None` when the root is read-only (downloads go unrecorded, logged).
    file: Option<File>,
    next_seq: u64,
}

impl Audit {
    /// Opens the audit under `root` (a handle of its own on the root).
    pub fn open(root: &Dir) -> io::Result<Audit> {
        let root = root.try_clone()?;
        let next_seq = [AUDIT_FILE, AUDIT_OLD]
            .iter()
            .find_map(|name| last_seq(&root, name))
            .map_or(1, |seq| seq + 1);
        let file = match open_append(&root) {
            Ok(file) => Some(file),
            Err(e) => {
                log::warn!("download audit: cannot write {AUDIT_FILE} ({e}); not recorded");
                None
            }
        };
        Ok(Audit {
            root,
            state: Mutex::new(State { file, next_seq }),
        })
    }

    /// Appends `entry` with the next sequence number.
    pub fn record(&self, mut entry: Map<String, Value>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = state.next_seq;
        state.next_seq += 1;
        entry.insert("seq".into(), seq.into());
        let mut line = serde_json::to_vec(&entry).expect("a JSON object serializes");
        line.push(b'\n');
        let Some(file) = state.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(&line) {
            log::warn!("download audit: cannot append ({e}); not recorded");
            return;
        }
        if file.metadata().is_ok_and(|m| m.len() > AUDIT_ROTATE_BYTES) {
            let rotated = self
                .root
                .rename(AUDIT_FILE, &self.root, AUDIT_OLD)
                .and_then(|()| open_append(&self.root));
            match rotated {
                Ok(file) => state.file = Some(file),
                Err(e) => log::warn!("download audit: cannot rotate ({e})"),
            }
        }
    }

    /// At most `limit` entries, newest first, with a sequence number below
    /// `before` (all when `None`) and for `job` (all jobs when `None`); and
    /// the cursor of the next page, when there are more.
    pub fn page(
        &self,
        job: Option<&str>,
        limit: usize,
        before: Option<u64>,
    ) -> (Vec<Value>, Option<u64>) {
        let mut matching = Vec::new();
        for name in [AUDIT_OLD, AUDIT_FILE] {
            let Ok(file) = self.root.open(name) else {
                continue;
            };
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                let Ok(Value::Object(entry)) = serde_json::from_str::<Value>(&line) else {
                    continue; // a line cut by a crash
                };
                let seq = entry.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let for_job =
                    job.is_none_or(|j| entry.get("job").and_then(Value::as_str) == Some(j));
                if for_job && before.is_none_or(|b| seq < b) {
                    matching.push((seq, Value::Object(entry)));
                }
            }
        }
        matching.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let more = matching.len() > limit;
        matching.truncate(limit);
        let next = more.then(|| matching.last().map(|(seq, _)| *seq)).flatten();
        (matching.into_iter().map(|(_, e)| e).collect(), next)
    }
}

fn open_append(root: &Dir) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    root.open_with(AUDIT_FILE, &options)
}

/// The sequence number of the last whole line of `name`.
fn last_seq(root: &Dir, name: &str) -> Option<u64> {
    let mut file = root.open(name).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))
        .ok()?;
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            serde_json::from_str::<Value>(&line)
                .ok()?
                .get("seq")?
                .as_u64()
        })
        .last()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test sets up a root: std::fs
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(job: &str) -> Map<String, Value> {
        match json!({ "job": job, "bytes": 1 }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn pages_newest_first_across_rotation_and_restart() {
        let path = std::env::temp_dir().join(format!("trainbox-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let root = Dir::open_ambient_dir(&path, cap_std::ambient_authority()).unwrap();
        let audit = Audit::open(&root).unwrap();
        for i in 0..5 {
            audit.record(entry(if i % 2 == 0 { "a" } else { "b" }));
        }
        let (page, next) = audit.page(None, 2, None);
        let seqs: Vec<u64> = page.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!((seqs, next), (vec![5, 4], Some(4)));
        let (page, next) = audit.page(Some("a"), 10, Some(5));
        let seqs: Vec<u64> = page.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!((seqs, next), (vec![3, 1], None));

        // Past the size: rotated; a restart continues the numbering.
        std::fs::rename(path.join(AUDIT_FILE), path.join(AUDIT_OLD)).unwrap();
        let again = Audit::open(&root).unwrap();
        again.record(entry("a"));
        let (page, _) = again.page(Some("a"), 10, None);
        let seqs: Vec<u64> = page.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![6, 5, 3, 1]);

        // What recording costs a download (printed, not asserted).
        let started = std::time::Instant::now();
        for _ in 0..2000 {
            again.record(entry("a"));
        }
        eprintln!(
            "audit: {:?} per recorded download",
            started.elapsed() / 2000
        );
        std::fs::remove_dir_all(path).unwrap();
    }
}
