//! ZIP archives of job files: the plan, its streaming reader, and the
//! per-file compression policy.
//!
//! `plan` and the policy below are pure; `stream` reads files through a
//! [`stream::MemberSource`] and so never names a path itself; `cache` keeps
//! what reading taught (CRCs, deflated sizes and bytes); `streamed` writes
//! the archives that are streamed without a plan (`compression=deflate`),
//! deflated on every core by `parallel`; `zipwriter` wraps the zip crate
//! for the logs archive.

pub mod cache;
pub mod digest;
pub mod parallel;
pub mod plan;
mod records;
pub mod stream;
pub mod streamed;
pub mod zipwriter;

use std::io;

use std::sync::Arc;

use cache::{Caches, DEFLATED_MEMBER_MAX};
use digest::deflate_digest;
use plan::{ArchivePlan, Fingerprint, MemberSpec, Method};
use stream::MemberSource;

use crate::names::CheckpointName;

/// How model archive members are compressed (`?compression=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Tensors stored, text deflated; exact length, resumable.
    #[default]
    Auto,
    /// Everything stored; exact length, resumable.
    Stored,
    /// Everything deflated, streamed without a length.
    Deflate,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Auto => "auto",
            Compression::Stored => "stored",
            Compression::Deflate => "deflate",
        }
    }
}

/// What a download archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSource {
    /// All of `model/`; without its checkpoint directories and `.ckpt`
    /// files when `exclude_checkpoints` (the final model alone).
    Model { exclude_checkpoints: bool },
    /// One checkpoint: a directory or a `.ckpt` file in `model/`.
    Checkpoint(CheckpointName),
    /// `training.log`, `progress.json` and `metrics.jsonl`.
    Logs,
}

/// True for an archive member of the model that belongs to a checkpoint:
/// inside a top-level `checkpoint*` directory, or a top-level `.ckpt` file.
pub fn is_checkpoint_member(name: &str) -> bool {
    match name.split_once('/') {
        Some((top, _)) => top.starts_with("checkpoint"),
        None => name.ends_with(".ckpt"),
    }
}

/// A file to archive, as found by the store: its name inside the archive
/// and its fingerprint at planning time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub fingerprint: Fingerprint,
}

/// Text files up to this size are deflated in `auto` mode; larger ones are
/// stored so the sizing pass before the first byte stays short.
pub const AUTO_DEFLATE_MAX: u64 = 64 << 20;

/// Extensions of text that compresses well: configs, tokenizers, logs.
const TEXT_EXTENSIONS: &[&str] = &[
    "json", "jsonl", "txt", "log", "md", "yaml", "yml", "csv", "tsv", "toml", "ini", "cfg", "py",
    "xml", "html", "vocab", "merges",
];

/// True when `auto` mode deflates a file of this name and size: text by
/// extension (or a well-known extensionless text name), up to
/// [`AUTO_DEFLATE_MAX`]. Tensors and other dense binaries are stored.
pub fn auto_deflates(name: &str, size: u64) -> bool {
    size > 0 && size <= AUTO_DEFLATE_MAX && is_text(name)
}

/// True for text by extension, or a well-known extensionless text name.
pub fn is_text(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    match file.rsplit_once('.') {
        Some((_, ext)) => TEXT_EXTENSIONS.iter().any(|t| t.eq_ignore_ascii_case(ext)),
        None => matches!(file, "README" | "LICENSE" | "merges" | "vocab"),
    }
}

/// Plans an archive of `entries` for `compression` (`Auto` or `Stored`).
/// In `Auto`, each text member's deflated size comes from the cache or from
/// a sizing pass over the file, before the first byte is sent; the sizing
/// pass's output is kept in the cache when small, so it is not made twice.
///
/// When `known_crc` (the digest index) knows the CRC of every stored
/// member, they all carry it in their local headers and have no data
/// descriptor: an archive streaming readers accept. Otherwise none do (two
/// layouts in all, told apart by the ETag).
pub fn plan_archive<S: MemberSource>(
    entries: &[FileEntry],
    compression: Compression,
    source: &S,
    caches: &Caches,
    known_crc: &dyn Fn(&Fingerprint) -> Option<u32>,
) -> io::Result<ArchivePlan> {
    let mut specs = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let method = if compression == Compression::Auto
            && auto_deflates(&entry.name, entry.fingerprint.size)
        {
            let digest = match caches.digest(&entry.fingerprint) {
                Some(d) if d.deflated_size.is_some() => d,
                _ => {
                    let mut file = source.open(index)?;
                    if source.fingerprint(&file)? != entry.fingerprint {
                        return Err(digest::changed(&entry.name));
                    }
                    let (d, bytes) =
                        deflate_digest(&mut file, entry.fingerprint.size, DEFLATED_MEMBER_MAX)?;
                    if source.fingerprint(&file)? != entry.fingerprint {
                        return Err(digest::changed(&entry.name));
                    }
                    caches.digests.put(entry.fingerprint, d);
                    if let Some(bytes) = bytes {
                        caches.deflated.put(entry.fingerprint, Arc::from(bytes));
                    }
                    d
                }
            };
            Method::Deflated {
                compressed_size: digest.deflated_size.unwrap_or_default(),
                crc32: digest.crc32,
            }
        } else {
            Method::Stored
        };
        specs.push(MemberSpec {
            name: entry.name.clone(),
            fingerprint: entry.fingerprint,
            method,
        });
    }
    let crcs: Option<Vec<Option<u32>>> = specs
        .iter()
        .map(|spec| match spec.method {
            Method::Stored => known_crc(&spec.fingerprint).map(Some),
            _ => Some(None),
        })
        .collect();
    if let Some(crcs) = crcs {
        for (spec, crc) in specs.iter_mut().zip(crcs) {
            if let Some(crc32) = crc {
                spec.method = Method::StoredKnown { crc32 };
            }
        }
    }
    ArchivePlan::new(specs).map_err(io::Error::other)
}

/// A strong ETag for an archive: a hash of the format version, the mode and
/// every member's name, fingerprint and method, so it changes when any file
/// does and two equal ETags mean byte-identical archives.
pub fn etag(plan: &ArchivePlan, compression: Compression) -> String {
    let mut hash = Fnv64::default();
    hash.write(b"trainbox-zip/1 deflate-");
    hash.write(digest::DEFLATE_LEVEL.to_string().as_bytes());
    hash.write(compression.as_str().as_bytes());
    for member in plan.members() {
        let spec = &member.spec;
        let f = spec.fingerprint;
        hash.write(spec.name.as_bytes());
        hash.write(&[0]);
        // The layout: a descriptor or not.
        hash.write(&[match spec.method {
            Method::Stored => 0,
            Method::StoredKnown { .. } => 1,
            Method::Deflated { .. } => 2,
        }]);
        for value in [f.dev, f.ino, f.size, spec.data_len()] {
            hash.write(&value.to_le_bytes());
        }
        hash.write(&f.mtime_ns.to_le_bytes());
    }
    hash.write(plan.comment());
    format!("\"z1-{:016x}{:08x}\"", hash.finish(), plan.len() as u32)
}

/// Which archive `entries` make in `compression`, whatever its layout: the
/// names and fingerprints of its files (a key for layout pins).
pub fn file_set_id(entries: &[FileEntry], compression: Compression) -> u64 {
    let mut hash = Fnv64::default();
    hash.write(compression.as_str().as_bytes());
    for entry in entries {
        let f = entry.fingerprint;
        hash.write(entry.name.as_bytes());
        hash.write(&[0]);
        for value in [f.dev, f.ino, f.size] {
            hash.write(&value.to_le_bytes());
        }
        hash.write(&f.mtime_ns.to_le_bytes());
    }
    hash.finish()
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
