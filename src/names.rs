//! `JobId` and `CheckpointName`: the only names a request may use to reach a
//! file; and `Cursor`, a place in the job list a client hands back.
//!
//! Both are newtypes whose one constructor is a strict allow-list parser, so a
//! handler that holds one holds a single, harmless path component: no `/`, `\`,
//! NUL, no `.`/`..`, no leading dot or dash, nothing non-ASCII. The store joins
//! them under its cap-std root; cap-std is the second wall, this is the first.

use std::fmt;

/// Longest accepted job id, in bytes.
pub const JOB_ID_MAX_LEN: usize = 64;
/// Longest accepted checkpoint name, in bytes (Lightning names run long:
/// `model-epoch=02-step=1200-val_loss=0.32.ckpt`).
pub const CHECKPOINT_NAME_MAX_LEN: usize = 128;

/// Why a name was refused. The HTTP layer maps both to a fixed `detail`, so
/// the reason is for logs and tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than its type allows.
    TooLong,
    /// The name does not start with an ASCII letter or digit (this refuses
    /// `.`, `..`, dot-files and names that read like flags).
    BadFirstChar,
    /// The name holds a byte outside the allow-list.
    BadChar,
    /// The name is reserved (`jobs` would make `/api/training/jobs/...` ambiguous).
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "the name is empty",
            NameError::TooLong => "the name is too long",
            NameError::BadFirstChar => "the name must start with a letter or digit",
            NameError::BadChar => "the name holds a character that is not allowed",
            NameError::Reserved => "the name is reserved",
        })
    }
}

impl std::error::Error for NameError {}

/// Checks `name` against a length bound and a byte allow-list; the first byte
/// must be an ASCII letter or digit.
fn check(name: &str, max_len: usize, allowed: fn(u8) -> bool) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let first = *bytes.first().ok_or(NameError::Empty)?;
    if bytes.len() > max_len {
        return Err(NameError::TooLong);
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadFirstChar);
    }
    if !bytes.iter().all(|&b| allowed(b)) {
        return Err(NameError::BadChar);
    }
    Ok(())
}

/// The id of a training job: the name of its directory under `jobs/`.
///
/// ```
/// use trainbox::names::JobId;
/// assert_eq!(JobId::parse("run-2024_11.a").unwrap().as_str(), "run-2024_11.a");
/// assert!(JobId::parse("../etc").is_err());
/// assert!(JobId::parse("jobs").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    /// Parses a job id: 1 to 64 bytes of `[A-Za-z0-9._-]`, starting with a
    /// letter or digit, and not the reserved word `jobs`.
    pub fn parse(name: &str) -> Result<JobId, NameError> {
        check(name, JOB_ID_MAX_LEN, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
        })?;
        if name == "jobs" {
            return Err(NameError::Reserved);
        }
        Ok(JobId(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a checkpoint: an immediate child of a job's `model/` directory.
///
/// ```
/// use trainbox::names::CheckpointName;
/// assert!(CheckpointName::parse("checkpoint-500").is_ok());
/// assert!(CheckpointName::parse("epoch=3-step=1200.ckpt").is_ok());
/// assert!(CheckpointName::parse("checkpoint\\..\\..\\secret").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointName(String);

impl CheckpointName {
    /// Parses a checkpoint name: 1 to 128 bytes of `[A-Za-z0-9._=+-]`,
    /// starting with a letter or digit.
    pub fn parse(name: &str) -> Result<CheckpointName, NameError> {
        check(name, CHECKPOINT_NAME_MAX_LEN, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'=' | b'+')
        })?;
        Ok(CheckpointName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `tmp-*` names: checkpoints still being written, never listed
    /// or served.
    pub fn is_in_progress(&self) -> bool {
        self.0.starts_with("tmp-")
    }
}

impl fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a page of the job list ends: its last job's creation time and id
/// (the list's sort key), as `{created_at}_{id}`. A cursor stays valid when
/// its job is deleted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: String,
    pub id: JobId,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let (created_at, id) = text.split_once('_')?;
        let stamp = |c: char| c.is_ascii_digit() || "TZ:.-+".contains(c);
        if created_at.len() > 40 || !created_at.chars().all(stamp) {
            return None;
        }
        Some(Cursor {
            created_at: created_at.to_owned(),
            id: JobId::parse(id).ok()?,
        })
    }

    /// The text `parse` reads back.
    pub fn render(&self) -> String {
        format!("{}_{}", self.created_at, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOSTILE: &[&str] = &[
        "",
        ".",
        "..",
        "../../../etc/passwd",
        "/etc/shadow",
        "checkpoint\\..\\..\\secret",
        "a/b",
        "a\\b",
        "a\0b",
        ".hidden",
        "-rf",
        "ckpt ",
        "naïve",
        "checkpoint-1\n",
        "%2e%2e",
    ];

    #[test]
    fn hostile_names_are_refused_by_both_parsers() {
        for name in HOSTILE {
            assert!(JobId::parse(name).is_err(), "job id {name:?}");
            assert!(CheckpointName::parse(name).is_err(), "checkpoint {name:?}");
        }
    }

    #[test]
    fn real_names_are_accepted() {
        for name in ["abc123", "run.2024-11-27_a", "A"] {
            assert_eq!(JobId::parse(name).unwrap().as_str(), name);
        }
        for name in [
            "checkpoint-500",
            "epoch=3-step=1200.ckpt",
            "last.ckpt",
            "last-v1.ckpt",
            "model+ema.ckpt",
            "tmp-checkpoint-1500",
        ] {
            assert_eq!(CheckpointName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn length_bounds_are_exact() {
        assert!(JobId::parse(&"a".repeat(JOB_ID_MAX_LEN)).is_ok());
        assert_eq!(
            JobId::parse(&"a".repeat(JOB_ID_MAX_LEN + 1)),
            Err(NameError::TooLong)
        );
        assert!(CheckpointName::parse(&"c".repeat(CHECKPOINT_NAME_MAX_LEN)).is_ok());
        assert_eq!(
            CheckpointName::parse(&"c".repeat(CHECKPOINT_NAME_MAX_LEN + 1)),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn jobs_is_reserved_only_as_a_job_id() {
        assert_eq!(JobId::parse("jobs"), Err(NameError::Reserved));
        assert!(JobId::parse("jobs2").is_ok());
        assert!(CheckpointName::parse("jobs").is_ok());
    }

    #[test]
    fn tmp_names_are_in_progress() {
        assert!(
            CheckpointName::parse("tmp-checkpoint-9")
                .unwrap()
                .is_in_progress()
        );
        assert!(
            !CheckpointName::parse("checkpoint-9")
                .unwrap()
                .is_in_progress()
        );
    }

    /// The invariant the fuzz targets also check: whatever parses is one
    /// harmless path component and round-trips.
    fn assert_harmless(accepted: &str, original: &str) {
        assert_eq!(accepted, original);
        assert!(!accepted.contains(['/', '\\', '\0']));
        assert!(accepted != "." && accepted != "..");
        assert!(!accepted.starts_with('.'));
    }

    proptest! {
        #[test]
        fn accepted_names_are_harmless(s in "\\PC{0,140}") {
            if let Ok(id) = JobId::parse(&s) {
                assert_harmless(id.as_str(), &s);
            }
            if let Ok(name) = CheckpointName::parse(&s) {
                assert_harmless(name.as_str(), &s);
            }
        }

        #[test]
        fn allow_listed_names_are_accepted(s in "[a-z0-9][a-z0-9._=+-]{0,100}") {
            prop_assert!(CheckpointName::parse(&s).is_ok());
        }
    }
}
