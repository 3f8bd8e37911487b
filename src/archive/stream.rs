//! `ArchiveReader`: a `Read` that produces any byte range of a planned archive.
//!
//! It walks the plan from the range's start: headers are generated, stored
//! data is read straight into the caller's buffer (one copy) while its CRC is
//! computed, deflated data is re-made by the deterministic `Deflater`. Nothing
//! before the range is sent; what is needed from before it is recovered
//! without sending: a member's CRC from the cache, or by reading the skipped
//! part of that member; the CRCs for the central directory from the cache or
//! a read pass. A member whose size or mtime differs from the plan when its
//! data ends makes `read` fail, so the response stops short of its
//! `Content-Length` instead of carrying an inconsistent archive.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use super::digest::{Deflater, DigestCache, changed, crc_of};
use super::plan::{ArchivePlan, Fingerprint, Method};

/// Where member data comes from: the store implements this over its cap-std
/// directory; tests implement it over memory.
pub trait MemberSource {
    type File: Read + Seek;
    /// Opens the file of member `index`.
    fn open(&self, index: usize) -> io::Result<Self::File>;
    /// The current fingerprint of an open file (fstat).
    fn fingerprint(&self, file: &Self::File) -> io::Result<Fingerprint>;
}

/// The member whose data is being produced.
enum Open<F> {
    Stored {
        index: usize,
        file: F,
        /// Position in the member's data.
        at: u64,
        /// `None` when the CRC is already known (cache), so hashing is skipped.
        hasher: Option<crc32fast::Hasher>,
    },
    Deflated {
        index: usize,
        deflater: Box<Deflater<F>>,
        at: u64,
    },
}

pub struct ArchiveReader<S: MemberSource> {
    plan: Arc<ArchivePlan>,
    source: S,
    cache: Arc<DigestCache>,
    pos: u64,
    end: u64,
    crcs: Vec<Option<u32>>,
    open: Option<Open<S::File>>,
    tail: Option<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<S: MemberSource> ArchiveReader<S> {
    /// A reader of bytes `start..end` of the archive.
    pub fn new(
        plan: Arc<ArchivePlan>,
        source: S,
        cache: Arc<DigestCache>,
        start: u64,
        end: u64,
    ) -> ArchiveReader<S> {
        assert!(
            start <= end && end <= plan.len(),
            "range within the archive"
        );
        let crcs = plan
            .members()
            .iter()
            .map(|m| match m.spec.method {
                Method::Deflated { crc32, .. } => Some(crc32),
                Method::Stored => None,
            })
            .collect();
        ArchiveReader {
            plan,
            source,
            cache,
            pos: start,
            end,
            crcs,
            open: None,
            tail: None,
            scratch: Vec::new(),
        }
    }

    /// Bytes left to produce.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Produces bytes at `self.pos` into `buf`; returns how many (> 0 while
    /// bytes remain).
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let plan = Arc::clone(&self.plan);
        let limit = buf
            .len()
            .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        let buf = &mut buf[..limit];
        if self.pos >= plan.central_offset() {
            if self.tail.is_none() {
                let crcs = (0..plan.members().len())
                    .map(|i| self.crc(i))
                    .collect::<io::Result<Vec<u32>>>()?;
                self.tail = Some(plan.tail(&crcs));
            }
            let tail = self.tail.as_deref().unwrap_or_default();
            let from = (self.pos - plan.central_offset()) as usize;
            return Ok(copy_from(&tail[from..], buf));
        }
        let index = plan
            .member_at(self.pos)
            .expect("offsets before the central directory belong to a member");
        let member = &plan.members()[index];
        if self.pos < member.data_offset {
            let header = plan.local_header(index);
            let from = (self.pos - member.header_offset) as usize;
            Ok(copy_from(&header[from..], buf))
        } else if self.pos < member.descriptor_offset {
            let at = self.pos - member.data_offset;
            let left = member.data_len() - at;
            let buf_len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.read_data(index, at, &mut buf[..buf_len])
        } else {
            let crc = self.crc(index)?;
            let descriptor = plan.descriptor(index, crc);
            let from = (self.pos - member.descriptor_offset) as usize;
            Ok(copy_from(&descriptor[from..], buf))
        }
    }

    /// Reads member `index`'s data from offset `at` into `buf` (which ends
    /// at or before the data's end).
    fn read_data(&mut self, index: usize, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        let positioned = match &self.open {
            Some(
                Open::Stored {
                    index: i, at: a, ..
                }
                | Open::Deflated {
                    index: i, at: a, ..
                },
            ) => *i == index && *a == at,
            None => false,
        };
        if !positioned {
            self.open = Some(self.open_at(index, at)?);
        }
        let member = &self.plan.members()[index];
        let data_len = member.data_len();
        let n = match self.open.as_mut().expect("opened above") {
            Open::Stored {
                file, at, hasher, ..
            } => {
                let n = file.read(buf)?;
                if n == 0 {
                    return Err(changed(&member.spec.name));
                }
                if let Some(h) = hasher {
                    h.update(&buf[..n]);
                }
                *at += n as u64;
                n
            }
            Open::Deflated { deflater, at, .. } => {
                let n = deflater.read(buf)?;
                if n == 0 {
                    return Err(changed(&member.spec.name));
                }
                *at += n as u64;
                n
            }
        };
        let finished = matches!(
            &self.open,
            Some(Open::Stored { at, .. } | Open::Deflated { at, .. }) if *at == data_len
        );
        if finished {
            self.finish_member()?;
        }
        Ok(n)
    }

    /// Opens member `index` positioned at `at` bytes into its data.
    fn open_at(&mut self, index: usize, at: u64) -> io::Result<Open<S::File>> {
        let spec = &self.plan.members()[index].spec;
        let mut file = self.source.open(index)?;
        if self.source.fingerprint(&file)? != spec.fingerprint {
            return Err(changed(&spec.name));
        }
        match spec.method {
            Method::Stored => {
                if self.crcs[index].is_none() {
                    self.crcs[index] = self.cache.get(&spec.fingerprint).map(|d| d.crc32);
                }
                let hasher = if self.crcs[index].is_some() {
                    file.seek(SeekFrom::Start(at))?;
                    None
                } else {
                    // Hash the skipped prefix; reading it also positions the file.
                    let mut hasher = crc32fast::Hasher::new();
                    let mut left = at;
                    let scratch = scratch(&mut self.scratch);
                    while left > 0 {
                        let want = scratch
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let n = file.read(&mut scratch[..want])?;
                        if n == 0 {
                            return Err(changed(&spec.name));
                        }
                        hasher.update(&scratch[..n]);
                        left -= n as u64;
                    }
                    Some(hasher)
                };
                Ok(Open::Stored {
                    index,
                    file,
                    at,
                    hasher,
                })
            }
            Method::Deflated { .. } => {
                let mut deflater = Box::new(Deflater::new(file, spec.size()));
                deflater.skip(at)?;
                Ok(Open::Deflated {
                    index,
                    deflater,
                    at,
                })
            }
        }
    }

    /// Checks the member whose data just ended against its plan and records
    /// its CRC.
    fn finish_member(&mut self) -> io::Result<()> {
        let spec = match &self.open {
            Some(Open::Stored { index, .. } | Open::Deflated { index, .. }) => {
                &self.plan.members()[*index].spec
            }
            None => return Ok(()),
        };
        match self.open.take().expect("checked above") {
            Open::Stored {
                index,
                file,
                hasher,
                ..
            } => {
                if self.source.fingerprint(&file)? != spec.fingerprint {
                    return Err(changed(&spec.name));
                }
                if let Some(hasher) = hasher {
                    let crc = hasher.finalize();
                    self.crcs[index] = Some(crc);
                    self.cache.put_crc(spec.fingerprint, crc);
                }
            }
            Open::Deflated {
                index,
                mut deflater,
                ..
            } => {
                // The stream must end exactly where the plan said.
                if deflater.read(&mut [0u8; 1])? != 0 || Some(deflater.crc32()) != self.crcs[index]
                {
                    return Err(changed(&spec.name));
                }
                let file = deflater.into_input();
                if self.source.fingerprint(&file)? != spec.fingerprint {
                    return Err(changed(&spec.name));
                }
            }
        }
        Ok(())
    }

    /// The CRC-32 of member `index`: known, cached, or found by a read pass.
    fn crc(&mut self, index: usize) -> io::Result<u32> {
        if let Some(crc) = self.crcs[index] {
            return Ok(crc);
        }
        let spec = &self.plan.members()[index].spec;
        let crc = match self.cache.get(&spec.fingerprint) {
            Some(digest) => digest.crc32,
            None => {
                let mut file = self.source.open(index)?;
                if self.source.fingerprint(&file)? != spec.fingerprint {
                    return Err(changed(&spec.name));
                }
                let crc = crc_of(&mut file, spec.size(), scratch(&mut self.scratch))?;
                if self.source.fingerprint(&file)? != spec.fingerprint {
                    return Err(changed(&spec.name));
                }
                self.cache.put_crc(spec.fingerprint, crc);
                crc
            }
        };
        self.crcs[index] = Some(crc);
        Ok(crc)
    }
}

impl<S: MemberSource> Read for ArchiveReader<S> {
    /// Fills as much of `buf` as the range allows, so a large buffer becomes
    /// one large socket write.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && self.pos < self.end {
            let n = self.read_some(&mut buf[filled..])?;
            self.pos += n as u64;
            filled += n;
        }
        Ok(filled)
    }
}

fn copy_from(src: &[u8], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

/// A reusable buffer for reads whose bytes are hashed, not sent.
fn scratch(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.is_empty() {
        buf.resize(256 * 1024, 0);
    }
    buf
}
