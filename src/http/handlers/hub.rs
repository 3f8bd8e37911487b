//! The Hugging Face Hub routes: a job's revisions as they stand on disk
//! now (files, SHA-256, commit id), answered as repository info and tree
//! listings; `http::resolve` streams a single file of one.
//!
//! The SHA-256 of each file comes from the digest index, which the digest
//! worker fills as jobs finish and checkpoints complete. The client gives
//! up on an answer after 10 s, so a request never hashes much itself: at
//! most [`HASH_ON_THE_SPOT_MAX`] bytes of files not hashed yet, and 503
//! with `Retry-After` beyond that.

use serde_json::{Value, json};

use super::Reply;
use crate::app::App;
use crate::archive::ArchiveSource;
use crate::archive::plan::Fingerprint;
use crate::http::error::{ApiError, Context};
use crate::hub::{self, Manifest, ManifestFile, RepoPath, Revision, TreeEntry};
use crate::index::digester::hash_member;
use crate::names::{CheckpointName, JobId};
use crate::store::JobFiles;
use crate::timefmt;

/// Bytes of not yet hashed files one request hashes itself (about a
/// tenth of a second); a revision with more waits for the digest worker.
pub const HASH_ON_THE_SPOT_MAX: u64 = 64 << 20;

/// A revision as it stands on disk now.
pub struct Snapshot {
    /// Its files, to open by index (in the manifest's order).
    pub files: JobFiles,
    pub manifest: Manifest,
    pub commit: String,
}

impl Snapshot {
    /// The manifest's file at `path`, with its index in `files` and the
    /// fingerprint it was listed with.
    pub fn file(&self, path: &RepoPath) -> Result<(usize, Fingerprint, &ManifestFile), ApiError> {
        let missing = || ApiError::EntryNotFound {
            commit: self.commit.clone(),
            path: path.to_string(),
        };
        let file = self.manifest.file(path).ok_or_else(missing)?;
        let entries = self.files.entries();
        let index = entries
            .iter()
            .position(|e| e.name == file.path)
            .ok_or_else(missing)?;
        Ok((index, entries[index].fingerprint, file))
    }
}

/// `revision` of `job` now: `main`, a complete checkpoint, or whichever of
/// them has the commit id asked for.
pub fn snapshot(app: &App, job: &JobId, revision: &Revision) -> Result<Snapshot, ApiError> {
    let Revision::Commit(commit) = revision else {
        return named(app, job, revision);
    };
    // The revision this commit was when it was given out, then every one.
    let mut candidates: Vec<Revision> = app.hub_commits.recall(job, commit).into_iter().collect();
    candidates.push(Revision::Main);
    candidates.extend(
        complete_checkpoints(app, job)?
            .into_iter()
            .map(Revision::Checkpoint),
    );
    let mut hashing = false;
    for candidate in &candidates {
        match named(app, job, candidate) {
            Ok(snapshot) if snapshot.commit == *commit => return Ok(snapshot),
            Ok(_) | Err(ApiError::RevisionNotFound(_)) => {}
            Err(ApiError::Unavailable(_)) => hashing = true,
            Err(other) => return Err(other),
        }
    }
    if hashing {
        return Err(not_hashed());
    }
    Err(ApiError::RevisionNotFound(format!(
        "No revision of {} has commit {commit} now: its files changed, or it was deleted",
        hub::repo_id(job)
    )))
}

/// `main` or a checkpoint of `job`, with its commit id (remembered, so a
/// client pinning it finds it again at once).
fn named(app: &App, job: &JobId, revision: &Revision) -> Result<Snapshot, ApiError> {
    let dir = app
        .store
        .job(job)
        .context("opening a job")?
        .ok_or(ApiError::RepoNotFound)?;
    let source = match revision {
        Revision::Main => {
            let status = app.index.job(job).map(|entry| entry.status);
            if status.is_some_and(|s| !s.is_final()) {
                return Err(ApiError::RevisionNotFound(format!(
                    "Job {job} has not finished: revision main, its final model, exists once it \
                     has. {}",
                    checkpoints_now(app, job)
                )));
            }
            ArchiveSource::Model {
                exclude_checkpoints: true,
            }
        }
        Revision::Checkpoint(name) => {
            match dir.checkpoint(name).context("looking at a checkpoint")? {
                Some(checkpoint) if checkpoint.complete => {}
                Some(_) => {
                    return Err(ApiError::RevisionNotFound(format!(
                        "Checkpoint {name} is still being written; it is a revision once complete"
                    )));
                }
                None => {
                    return Err(ApiError::RevisionNotFound(format!(
                        "Job {job} has no checkpoint {name}. {}",
                        checkpoints_now(app, job)
                    )));
                }
            }
            ArchiveSource::Checkpoint(name.clone())
        }
        // A commit is found by `snapshot`, which asks for each named one.
        Revision::Commit(commit) => {
            return Err(ApiError::RevisionNotFound(format!(
                "Commit {commit} is not a name of a revision"
            )));
        }
    };
    let files = dir
        .archive(&source)
        .context("listing a revision's files")?
        .filter(|files| !files.entries().is_empty())
        .ok_or_else(|| {
            ApiError::RevisionNotFound(format!(
                "Job {job} has no final model: model/ holds no files outside its checkpoints. {}",
                checkpoints_now(app, job)
            ))
        })?;
    let manifest = manifest(app, &files)?;
    let commit = manifest.commit_id();
    app.hub_commits.remember(job, &commit, revision);
    Ok(Snapshot {
        files,
        manifest,
        commit,
    })
}

/// The files with their SHA-256: from the digest index, or hashed now if
/// few bytes are missing from it.
fn manifest(app: &App, files: &JobFiles) -> Result<Manifest, ApiError> {
    let entries = files.entries();
    let missing: u64 = entries
        .iter()
        .filter(|e| app.digests.get(&e.fingerprint).is_none())
        .map(|e| e.fingerprint.size)
        .sum();
    if missing > HASH_ON_THE_SPOT_MAX {
        return Err(not_hashed());
    }
    let mut listed = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let digest = match app.digests.get(&entry.fingerprint) {
            Some(digest) => digest,
            None => {
                let digest = hash_member(files, index, entry.fingerprint, |_| {})
                    .context("hashing a file")?
                    // Changed since it was listed: it is being written.
                    .ok_or_else(not_hashed)?;
                app.digests.insert(entry.fingerprint, digest);
                digest
            }
        };
        listed.push(ManifestFile {
            path: entry.name.clone(),
            size: entry.fingerprint.size,
            sha256: digest.sha256,
        });
    }
    Ok(Manifest::new(listed))
}

fn not_hashed() -> ApiError {
    ApiError::Unavailable("Some files of this revision are still being hashed; try again shortly")
}

fn complete_checkpoints(app: &App, job: &JobId) -> Result<Vec<CheckpointName>, ApiError> {
    let dir = app
        .store
        .job(job)
        .context("opening a job")?
        .ok_or(ApiError::RepoNotFound)?;
    Ok(dir
        .checkpoints()
        .context("listing checkpoints")?
        .into_iter()
        .filter(|c| c.complete)
        .filter_map(|c| CheckpointName::parse(&c.name).ok())
        .collect())
}

/// Which revisions a client could ask for instead, for a refusal's text.
fn checkpoints_now(app: &App, job: &JobId) -> String {
    match complete_checkpoints(app, job) {
        Ok(names) if !names.is_empty() => {
            let names: Vec<&str> = names.iter().map(CheckpointName::as_str).collect();
            format!("Complete checkpoints are revisions: {}", names.join(", "))
        }
        _ => "It has no complete checkpoint yet".to_owned(),
    }
}

/// `GET /api/models/trainbox/{job_id}[/revision/{revision}]`.
pub fn repo(app: &App, job: &JobId, revision: &Revision, blobs: bool) -> Result<Reply, ApiError> {
    let snapshot = snapshot(app, job, revision)?;
    let siblings: Vec<Value> = snapshot
        .manifest
        .files()
        .iter()
        .map(|file| match blobs {
            false => json!({ "rfilename": file.path }),
            true => json!({
                "rfilename": file.path,
                "size": file.size,
                "blobId": hub::file_oid(file),
                "lfs": {
                    "sha256": file.sha256_hex(),
                    "size": file.size,
                    "pointerSize": hub::lfs_pointer_size(file.size),
                },
            }),
        })
        .collect();
    let modified = snapshot
        .files
        .entries()
        .iter()
        .map(|e| e.fingerprint.mtime_ns)
        .max()
        .map(timefmt::rfc3339_from_nanos);
    let id = hub::repo_id(job);
    Ok(Reply::Json(
        200,
        json!({
            "_id": job.as_str(),
            "id": id,
            "modelId": id,
            "author": hub::NAMESPACE,
            "sha": snapshot.commit,
            "lastModified": modified,
            "private": false,
            "disabled": false,
            "gated": false,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }),
    ))
}

/// `GET /api/models/trainbox/{job_id}/refs`: `main` as a branch (once the
/// job has finished with a model) and each complete checkpoint as a tag,
/// each with its commit id, as `list_repo_refs` reads them.
pub fn refs(app: &App, job: &JobId) -> Result<Reply, ApiError> {
    let reference = |name: &str, kind: &str, commit: String| json!({ "name": name, "ref": format!("refs/{kind}/{name}"), "targetCommit": commit });
    let branches: Vec<Value> = match named(app, job, &Revision::Main) {
        Ok(main) => vec![reference("main", "heads", main.commit)],
        Err(ApiError::RevisionNotFound(_)) => Vec::new(),
        Err(other) => return Err(other),
    };
    let mut tags = Vec::new();
    for name in complete_checkpoints(app, job)? {
        match named(app, job, &Revision::Checkpoint(name.clone())) {
            Ok(checkpoint) => tags.push(reference(name.as_str(), "tags", checkpoint.commit)),
            // Deleted or changed since it was listed.
            Err(ApiError::RevisionNotFound(_)) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(Reply::Json(
        200,
        json!({ "branches": branches, "converts": [], "tags": tags, "pullRequests": [] }),
    ))
}

/// `GET /api/models/trainbox/{job_id}/tree/{revision}[/{path}]`.
pub fn tree(
    app: &App,
    job: &JobId,
    revision: &Revision,
    path: Option<&RepoPath>,
    recursive: bool,
) -> Result<Reply, ApiError> {
    let snapshot = snapshot(app, job, revision)?;
    let entries =
        snapshot
            .manifest
            .tree(path, recursive)
            .ok_or_else(|| ApiError::EntryNotFound {
                commit: snapshot.commit.clone(),
                path: path.map(ToString::to_string).unwrap_or_default(),
            })?;
    let listed: Vec<Value> = entries
        .iter()
        .map(|entry| match entry {
            TreeEntry::File(file) => json!({
                "type": "file",
                "oid": hub::file_oid(file),
                "size": file.size,
                "path": file.path,
                "lfs": {
                    "oid": file.sha256_hex(),
                    "size": file.size,
                    "pointerSize": hub::lfs_pointer_size(file.size),
                },
            }),
            TreeEntry::Directory { path, oid } => json!({
                "type": "directory",
                "oid": oid,
                "size": 0,
                "path": path,
            }),
        })
        .collect();
    Ok(Reply::Json(200, Value::Array(listed)))
}
