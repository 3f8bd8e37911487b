//! The Hugging Face Hub's view of a job, as a pure core: revisions, paths
//! inside a repository, content-derived commit ids and tree listings.
//!
//! A job is the repository `trainbox/<job_id>`. Its revisions are `main`
//! (the final model, without checkpoints), each complete checkpoint by
//! name, and the commit id of either: 40 lowercase hex digits derived from
//! the revision's content (its sorted paths and their SHA-256), so the same
//! files always have the same commit, a changed file a new one, and a
//! client that pinned a commit gets exactly those bytes or a clear "not
//! found". Directories get ids the same way, over the files under them.
//! Nothing here touches a file: `http::handlers::hub` builds a [`Manifest`]
//! from the store and the digest index.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::names::{CheckpointName, JobId};
use crate::store::digests::hex;

/// The one namespace: repositories are `trainbox/<job_id>`.
pub const NAMESPACE: &str = "trainbox";
/// Longest path inside a repository, in bytes.
pub const PATH_MAX: usize = 1024;
/// Longest component of such a path, in bytes.
const COMPONENT_MAX: usize = 255;
/// Prefixed to what an id hashes, so no other hash of the same text can
/// pass for one.
const ID_DOMAIN: &[u8] = b"trainbox-hub-tree-v1\n";

/// A revision as a client names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revision {
    /// The job's final model, without checkpoints.
    Main,
    /// A complete checkpoint.
    Checkpoint(CheckpointName),
    /// The commit id of one of the above, as 40 lowercase hex digits.
    Commit(String),
}

impl Revision {
    /// `main`, a commit id (40 hex digits, lowercase) or a checkpoint name;
    /// `None` for anything else (branches with `/`, tags, `refs/pr/1`).
    pub fn parse(text: &str) -> Option<Revision> {
        if text == "main" {
            return Some(Revision::Main);
        }
        if is_commit_id(text) {
            return Some(Revision::Commit(text.to_owned()));
        }
        CheckpointName::parse(text)
            .ok()
            .filter(|name| !name.is_in_progress())
            .map(Revision::Checkpoint)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Main => f.write_str("main"),
            Revision::Checkpoint(name) => write!(f, "{name}"),
            Revision::Commit(id) => f.write_str(id),
        }
    }
}

/// True for 40 lowercase hex digits, the shape of a commit id.
pub fn is_commit_id(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The repository a job is: `trainbox/<job_id>`.
pub fn repo_id(job: &JobId) -> String {
    format!("{NAMESPACE}/{job}")
}

/// A path inside a repository: `/`-separated components, none empty, `.`
/// or `..`, none holding `\`, NUL or another control character. It is only
/// ever looked up among the files a revision lists, never opened as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    pub fn parse(text: &str) -> Option<RepoPath> {
        if text.is_empty() || text.len() > PATH_MAX {
            return None;
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.len() <= COMPONENT_MAX
                && c != "."
                && c != ".."
                && !c.chars().any(|ch| ch == '\\' || ch.is_control())
        };
        text.split('/')
            .all(component_ok)
            .then(|| RepoPath(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Commit ids given out recently, and which revision of which job each
/// was. A client pins the commit from the repository info and asks for
/// every file by it; looking it up here (and checking it against the
/// files) spares hashing every revision of the job to find it again.
#[derive(Default)]
pub struct Commits(Mutex<HashMap<(JobId, String), Revision>>);

/// Commits remembered; past it the memory starts afresh (a forgotten one
/// is found again by looking at every revision).
const COMMITS_MAX: usize = 4096;

impl Commits {
    /// Remembers that `commit` was `revision` (`main` or a checkpoint) of `job`.
    pub fn remember(&self, job: &JobId, commit: &str, revision: &Revision) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= COMMITS_MAX {
            known.clear();
        }
        known.insert((job.clone(), commit.to_owned()), revision.clone());
    }

    /// Which revision of `job` `commit` last was, if it was given out.
    pub fn recall(&self, job: &JobId, commit: &str) -> Option<Revision> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&(job.clone(), commit.to_owned())).cloned()
    }
}

/// One file of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Its path in the repository (its name in the revision's archive).
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl ManifestFile {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// The files of a revision, sorted by path, each with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    files: Vec<ManifestFile>,
}

/// An entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry<'a> {
    File(&'a ManifestFile),
    Directory { path: String, oid: String },
}

impl Manifest {
    pub fn new(mut files: Vec<ManifestFile>) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Manifest { files }
    }

    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }

    /// The revision's commit id: the id of its root directory.
    pub fn commit_id(&self) -> String {
        tree_id(self.files.iter().map(|f| (f.path.as_str(), f)))
    }

    /// The file at `path`, if the revision has one there.
    pub fn file(&self, path: &RepoPath) -> Option<&ManifestFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path.as_str()))
            .ok()
            .map(|at| &self.files[at])
    }

    /// The files under directory `dir` (all of them for `None`), with their
    /// paths relative to it. Paths sharing a prefix are consecutive in
    /// sorted order, so this is a binary search and a slice.
    fn under<'a>(&'a self, dir: Option<&str>) -> impl Iterator<Item = (&'a str, &'a ManifestFile)> {
        let (files, skip) = match dir {
            None => (&self.files[..], 0),
            Some(dir) => {
                let prefix = format!("{dir}/");
                let start = self
                    .files
                    .partition_point(|f| f.path.as_str() < prefix.as_str());
                let len = self.files[start..].partition_point(|f| f.path.starts_with(&prefix));
                (&self.files[start..start + len], prefix.len())
            }
        };
        files.iter().map(move |f| (&f.path[skip..], f))
    }

    /// The listing of directory `dir` (the root for `None`): its files and
    /// directories, or with `recursive` everything below it, sorted by
    /// path; `None` when `dir` is not a directory of this revision.
    pub fn tree(&self, dir: Option<&RepoPath>, recursive: bool) -> Option<Vec<TreeEntry<'_>>> {
        let dir = dir.map(RepoPath::as_str);
        let prefix = dir.map_or_else(String::new, |d| format!("{d}/"));
        let mut directories = BTreeSet::new();
        let mut entries = Vec::new();
        for (relative, file) in self.under(dir) {
            // Each directory between `dir` and the file (just the first
            // level unless recursive), and the file itself if it is listed.
            let mut slashes = relative.match_indices('/').map(|(at, _)| at);
            let listed = if recursive {
                directories.extend(slashes.map(|at| &relative[..at]));
                true
            } else {
                match slashes.next() {
                    Some(at) => {
                        directories.insert(&relative[..at]);
                        false
                    }
                    None => true,
                }
            };
            if listed {
                entries.push(TreeEntry::File(file));
            }
        }
        if dir.is_some() && entries.is_empty() && directories.is_empty() {
            return None;
        }
        for sub in directories {
            let path = format!("{prefix}{sub}");
            let oid = tree_id(self.under(Some(&path)));
            entries.push(TreeEntry::Directory { path, oid });
        }
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        Some(entries)
    }
}

impl TreeEntry<'_> {
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::File(file) => &file.path,
            TreeEntry::Directory { path, .. } => path,
        }
    }
}

/// The id of a directory holding `files` (paths relative to it, sorted):
/// the first 40 hex digits of a SHA-256 over each path and its file's
/// SHA-256.
fn tree_id<'a>(files: impl Iterator<Item = (&'a str, &'a ManifestFile)>) -> String {
    let mut hash = Sha256::new();
    hash.update(ID_DOMAIN);
    for (path, file) in files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(hex(&file.sha256).as_bytes());
        hash.update(b"\n");
    }
    let mut id = hex(&hash.finalize());
    id.truncate(40);
    id
}

/// A file's object id in a listing (git would give its blob's SHA-1,
/// which trainbox does not compute): the first 40 hex digits of its
/// SHA-256. Clients store and compare it, never recompute it.
pub fn file_oid(file: &ManifestFile) -> String {
    let mut oid = hex(&file.sha256);
    oid.truncate(40);
    oid
}

/// Size of the Git LFS pointer a file this large would have in a Hub
/// repository: the listings' `lfs.pointerSize`, which the client reads.
pub fn lfs_pointer_size(size: u64) -> u64 {
    // "version https://git-lfs.github.com/spec/v1\n" (43)
    // "oid sha256:<64 hex>\n" (76), "size <n>\n" (6 + digits)
    43 + 76 + 6 + size.to_string().len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(path: &str, byte: u8) -> ManifestFile {
        ManifestFile {
            path: path.to_owned(),
            size: u64::from(byte),
            sha256: [byte; 32],
        }
    }

    fn paths(entries: &[TreeEntry<'_>]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                TreeEntry::File(f) => f.path.clone(),
                TreeEntry::Directory { path, .. } => format!("{path}/"),
            })
            .collect()
    }

    #[test]
    fn revisions_parse() {
        assert_eq!(Revision::parse("main"), Some(Revision::Main));
        assert!(matches!(
            Revision::parse("checkpoint-500"),
            Some(Revision::Checkpoint(name)) if name.as_str() == "checkpoint-500"
        ));
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(Revision::parse(id), Some(Revision::Commit(id.to_owned())));
        // Upper case is not a commit id, and not a checkpoint either.
        assert!(matches!(
            Revision::parse(&id.to_uppercase()),
            Some(Revision::Checkpoint(_))
        ));
        for bad in [
            "",
            "refs/pr/1",
            "..",
            "tmp-checkpoint-5",
            "v1.0 beta",
            "a\\b",
        ] {
            assert_eq!(Revision::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_parse() {
        for good in ["config.json", "sub/dir/model.safetensors", "a b.txt", "é/ü"] {
            assert_eq!(RepoPath::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/./b", "a\\b", "a\0b", "a\nb",
        ] {
            assert!(RepoPath::parse(bad).is_none(), "{bad:?}");
        }
        assert!(RepoPath::parse(&"a".repeat(PATH_MAX + 1)).is_none());
    }

    #[test]
    fn commit_ids_follow_content() {
        let one = Manifest::new(vec![file("b", 2), file("a", 1)]);
        let same = Manifest::new(vec![file("a", 1), file("b", 2)]);
        let changed = Manifest::new(vec![file("a", 1), file("b", 3)]);
        let renamed = Manifest::new(vec![file("a", 1), file("c", 2)]);
        assert_eq!(one.commit_id(), same.commit_id());
        assert_ne!(one.commit_id(), changed.commit_id());
        assert_ne!(one.commit_id(), renamed.commit_id());
        assert!(is_commit_id(&one.commit_id()));
    }

    #[test]
    fn trees_list_levels_and_everything() {
        let manifest = Manifest::new(vec![
            file("config.json", 1),
            file("sub/a.bin", 2),
            file("sub/deeper/b.bin", 3),
            file("subway.txt", 4),
        ]);
        let top = manifest.tree(None, false).unwrap();
        assert_eq!(paths(&top), ["config.json", "sub/", "subway.txt"]);
        let all = manifest.tree(None, true).unwrap();
        assert_eq!(
            paths(&all),
            [
                "config.json",
                "sub/",
                "sub/a.bin",
                "sub/deeper/",
                "sub/deeper/b.bin",
                "subway.txt"
            ]
        );
        let sub = RepoPath::parse("sub").unwrap();
        assert_eq!(
            paths(&manifest.tree(Some(&sub), false).unwrap()),
            ["sub/a.bin", "sub/deeper/"]
        );
        // A file, a prefix that is no directory, and nothing at all.
        for missing in ["config.json", "su", "nope"] {
            let path = RepoPath::parse(missing).unwrap();
            assert!(manifest.tree(Some(&path), true).is_none(), "{missing}");
        }
        // A directory's id is the commit id of the same files on their own.
        let TreeEntry::Directory { oid, .. } = &top[1] else {
            panic!("sub/ is a directory")
        };
        let alone = Manifest::new(vec![file("a.bin", 2), file("deeper/b.bin", 3)]);
        assert_eq!(*oid, alone.commit_id());
    }

    #[test]
    fn pointer_size_is_the_pointer_text() {
        for size in [0u64, 7, 519, 1 << 30] {
            let pointer = format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {size}\n",
                "0".repeat(64)
            );
            assert_eq!(lfs_pointer_size(size), pointer.len() as u64);
        }
    }

    proptest! {
        /// Every file appears once in the recursive listing, every directory
        /// on the way to one appears once, and each level's listing is what
        /// the recursive one holds at that level.
        #[test]
        fn recursive_listing_covers_every_file(
            names in proptest::collection::btree_set("[a-c]{1,2}(/[a-c]{1,2}){0,3}", 1..30)
        ) {
            // A path that is also a directory of another is not a tree.
            let names: Vec<String> = names
                .iter()
                .filter(|n| !names.iter().any(|m| m.starts_with(&format!("{n}/"))))
                .cloned()
                .collect();
            let manifest = Manifest::new(
                names.iter().enumerate().map(|(i, n)| file(n, i as u8)).collect(),
            );
            let all = manifest.tree(None, true).unwrap();
            let listed: Vec<String> = paths(&all);
            for name in &names {
                prop_assert_eq!(listed.iter().filter(|p| *p == name).count(), 1);
                let mut at = 0;
                while let Some(slash) = name[at..].find('/') {
                    let dir = format!("{}/", &name[..at + slash]);
                    prop_assert_eq!(listed.iter().filter(|p| **p == dir).count(), 1);
                    at += slash + 1;
                }
            }
            let top = manifest.tree(None, false).unwrap();
            for entry in &top {
                prop_assert!(!entry.path().contains('/'));
                prop_assert!(all.contains(entry));
            }
        }
    }
}
