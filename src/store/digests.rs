//! The digest index: CRC-32 and SHA-256 of file versions, keyed by their
//! fingerprint (device, inode, size, mtime), kept in memory and appended to
//! `<root>/.trainbox-digests.jsonl` so a restart does not hash again.
//!
//! A changed file is a new fingerprint, so a stale digest is never given
//! out, only left unused. The file is read once at start (malformed lines
//! skipped: a line cut by a crash is harmless) and rewritten without
//! duplicates when it has grown past what it holds.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::sync::{Mutex, RwLock};

use cap_std::fs::{Dir, File, OpenOptions};
use serde::{Deserialize, Serialize};

use crate::archive::FileEntry;
use crate::archive::plan::Fingerprint;

pub const DIGESTS_FILE: &str = ".trainbox-digests.jsonl";
/// The most file versions remembered; past it the oldest are dropped when
/// the file is rewritten (they are hashed again if asked for).
pub const DIGESTS_MAX: usize = 200_000;

/// What is known of one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub crc32: u32,
    pub sha256: [u8; 32],
}

impl FileDigest {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
struct Line {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    crc32: u32,
    sha256: String,
}

impl Line {
    fn new(key: &Fingerprint, digest: &FileDigest) -> Line {
        Line {
            dev: key.dev,
            ino: key.ino,
            size: key.size,
            mtime_ns: key.mtime_ns,
            crc32: digest.crc32,
            sha256: digest.sha256_hex(),
        }
    }

    fn parse(text: &str) -> Option<(Fingerprint, FileDigest)> {
        let line: Line = serde_json::from_str(text).ok()?;
        let sha256 = unhex(&line.sha256)?;
        Some((
            Fingerprint {
                dev: line.dev,
                ino: line.ino,
                size: line.size,
                mtime_ns: line.mtime_ns,
            },
            FileDigest {
                crc32: line.crc32,
                sha256,
            },
        ))
    }
}

/// How long an archive layout served with data descriptors stays pinned
/// after its last download: a client resuming with a bare `Range` (curl
/// `-C -`, `wget -c`: no `If-Range`) must get the bytes of the layout it
/// started with, even if every CRC became known in between.
pub const PIN_SECS: i64 = 24 * 3600;

/// A pin: this file set was last served with descriptors at `at`.
#[derive(Serialize, Deserialize)]
struct PinLine {
    pin: String,
    at: i64,
}

/// The index, shared by the digest worker (which fills it) and downloads
/// and file listings (which read it).
pub struct Digests {
    known: RwLock<HashMap<Fingerprint, (FileDigest, u64)>>,
    /// Archives (by a hash of their file set and mode) last served with
    /// data descriptors, and when.
    pins: Mutex<HashMap<u64, i64>>,
    /// Appended to as digests are learned; `None` when the root is
    /// read-only (the index then lives in memory only).
    log: Mutex<Option<File>>,
}

impl Digests {
    /// Reads what earlier runs learned from `root` and opens the file for
    /// appending; compacts it first when it holds many duplicates.
    pub fn open(root: &Dir) -> Digests {
        let mut known = HashMap::new();
        let mut pins = HashMap::new();
        let mut lines = 0usize;
        if let Ok(file) = root.open(DIGESTS_FILE) {
            for (order, text) in BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .enumerate()
            {
                lines += 1;
                if let Some((key, digest)) = Line::parse(&text) {
                    known.insert(key, (digest, order as u64));
                } else if let Ok(pin) = serde_json::from_str::<PinLine>(&text)
                    && let Ok(set) = u64::from_str_radix(&pin.pin, 16)
                {
                    pins.insert(set, pin.at);
                }
            }
        }
        let now = unix_now();
        pins.retain(|_, at| now - *at < PIN_SECS);
        let held = known.len() + pins.len();
        let digests = Digests {
            known: RwLock::new(known),
            pins: Mutex::new(pins),
            log: Mutex::new(None),
        };
        let compact = lines > 2 * held + 1024 || digests.len() > DIGESTS_MAX;
        let log = if compact {
            digests.rewrite(root)
        } else {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            root.open_with(DIGESTS_FILE, &options)
        };
        match log {
            Ok(file) => *digests.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(file),
            Err(e) => log::warn!("digest index: cannot write {DIGESTS_FILE} ({e}); kept in memory"),
        }
        digests
    }

    /// Keeps the newest [`DIGESTS_MAX`] entries and writes them to a new
    /// file renamed over the old one; returns it open for appending.
    fn rewrite(&self, root: &Dir) -> io::Result<File> {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.len() > DIGESTS_MAX {
            let mut orders: Vec<u64> = known.values().map(|(_, order)| *order).collect();
            orders.sort_unstable();
            let cut = orders[orders.len() - DIGESTS_MAX];
            known.retain(|_, (_, order)| *order >= cut);
        }
        let tmp = format!("{DIGESTS_FILE}.tmp");
        let mut options = OpenOptions::new();
        options.create(true).write(true).truncate(true);
        let mut out = io::BufWriter::new(root.open_with(&tmp, &options)?);
        let mut entries: Vec<_> = known.iter().collect();
        entries.sort_by_key(|(_, (_, order))| *order);
        for (key, (digest, _)) in entries {
            serde_json::to_writer(&mut out, &Line::new(key, digest))?;
            out.write_all(b"\n")?;
        }
        for (set, at) in self.pins.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let pin = PinLine {
                pin: format!("{set:016x}"),
                at: *at,
            };
            serde_json::to_writer(&mut out, &pin)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        root.rename(&tmp, root, DIGESTS_FILE)?;
        let mut options = OpenOptions::new();
        options.append(true);
        root.open_with(DIGESTS_FILE, &options)
    }

    pub fn get(&self, key: &Fingerprint) -> Option<FileDigest> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.get(key).map(|(digest, _)| *digest)
    }

    pub fn len(&self) -> usize {
        self.known.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a digest, in memory and in the file.
    pub fn insert(&self, key: Fingerprint, digest: FileDigest) {
        {
            let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
            let order = known.len() as u64 + u64::from(u32::MAX);
            if known.insert(key, (digest, order)).is_some() {
                return;
            }
        }
        self.append(serde_json::to_vec(&Line::new(&key, &digest)).expect("a line serializes"));
    }

    /// True when the archive `set` was served with data descriptors less
    /// than [`PIN_SECS`] ago: it keeps that layout.
    pub fn pinned(&self, set: u64) -> bool {
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.get(&set).is_some_and(|at| unix_now() - at < PIN_SECS)
    }

    /// Records that the archive `set` was served with data descriptors now
    /// (written at most once a minute per archive).
    pub fn pin(&self, set: u64) {
        let now = unix_now();
        {
            let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
            if pins.get(&set).is_some_and(|at| now - at < 60) {
                return;
            }
            pins.insert(set, now);
        }
        let pin = PinLine {
            pin: format!("{set:016x}"),
            at: now,
        };
        self.append(serde_json::to_vec(&pin).expect("a line serializes"));
    }

    fn append(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = log.as_mut()
            && let Err(e) = file.write_all(&line)
        {
            log::warn!("digest index: cannot append to {DIGESTS_FILE} ({e}); kept in memory");
            *log = None;
        }
    }
}

impl Digests {
    /// The `SHA256SUMS` text of `files` (named as in their archive, so
    /// `sha256sum -c` checks an unzipped download), once every file's
    /// SHA-256 is known.
    pub fn sha256sums(&self, files: &[FileEntry]) -> Option<String> {
        files
            .iter()
            .map(|f| {
                Some(sha256sum_line(
                    &self.get(&f.fingerprint)?.sha256_hex(),
                    &f.name,
                ))
            })
            .collect()
    }
}

/// One line of a `sha256sum` manifest; a name with a backslash or a line
/// break is escaped the way GNU `sha256sum` writes and reads it.
fn sha256sum_line(sha256: &str, name: &str) -> String {
    if name.contains(['\\', '\n', '\r']) {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{sha256}  {escaped}\n")
    } else {
        format!("{sha256}  {name}\n")
    }
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test plays another process: std::fs
mod tests {
    use super::*;

    fn key(ino: u64) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: 5,
        }
    }

    fn digest(n: u8) -> FileDigest {
        FileDigest {
            crc32: u32::from(n),
            sha256: [n; 32],
        }
    }

    fn temp_root(name: &str) -> (std::path::PathBuf, Dir) {
        let path =
            std::env::temp_dir().join(format!("trainbox-digests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let dir = Dir::open_ambient_dir(&path, cap_std::ambient_authority()).unwrap();
        (path, dir)
    }

    #[test]
    fn survives_a_restart_and_a_torn_last_line() {
        let (path, root) = temp_root("restart");
        let digests = Digests::open(&root);
        digests.insert(key(1), digest(1));
        digests.insert(key(2), digest(2));
        digests.insert(key(2), digest(2));
        drop(digests);
        // A crash mid-append leaves a partial line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path.join(DIGESTS_FILE))
            .unwrap();
        file.write_all(br#"{"dev":1,"ino":3,"si"#).unwrap();
        let again = Digests::open(&root);
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&key(2)), Some(digest(2)));
        assert_eq!(again.get(&key(3)), None);
        assert_eq!(again.get(&key(1)).unwrap().sha256_hex(), "01".repeat(32));
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn manifest_lines_escape_as_gnu_sha256sum_does() {
        assert_eq!(sha256sum_line("ab", "a b.txt"), "ab  a b.txt\n");
        assert_eq!(sha256sum_line("ab", "x\\y\nz"), "\\ab  x\\\\y\\nz\n");
    }

    #[test]
    fn duplicates_are_compacted_away() {
        let (path, root) = temp_root("compact");
        let line = serde_json::to_string(&Line::new(&key(1), &digest(1))).unwrap();
        std::fs::write(path.join(DIGESTS_FILE), format!("{line}\n").repeat(3000)).unwrap();
        let digests = Digests::open(&root);
        assert_eq!(digests.len(), 1);
        let text = std::fs::read_to_string(path.join(DIGESTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1);
        digests.insert(key(2), digest(2));
        let text = std::fs::read_to_string(path.join(DIGESTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "appends after the rewrite");
        std::fs::remove_dir_all(path).unwrap();
    }
}
