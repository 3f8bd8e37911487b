//! `ArchiveReader`: produces any byte range of a planned archive, as a
//! `Read` or pushed into a [`Sink`] that can send file ranges without
//! copying them (sendfile; `stream::sink`).
//!
//! It walks the plan from the range's start: headers are generated; stored
//! data is read (or, when its CRC is already known, handed to the sink as a
//! file range) while its CRC is computed; deflated data comes from the cache
//! of deflated bytes or is re-made by the deterministic `Deflater`. Nothing
//! before the range is sent; what is needed from before it is recovered
//! without sending: a member's CRC from the cache, or by reading the skipped
//! part of that member; the CRCs for the central directory from the cache or
//! a read pass. A member whose size or mtime differs from the plan when its
//! data ends makes the reader fail, so the response stops short of its
//! `Content-Length` instead of carrying an inconsistent archive.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::RawFd;
use std::sync::Arc;

use super::cache::Caches;
use super::digest::{Deflater, changed, crc_of};
use super::plan::{ArchivePlan, Fingerprint, Method};

mod sink;

pub use sink::Sink;

/// Where member data comes from: the store implements this over its cap-std
/// directory; tests implement it over memory.
pub trait MemberSource {
    type File: Read + Seek;
    /// Opens the file of member `index`.
    fn open(&self, index: usize) -> io::Result<Self::File>;
    /// The current fingerprint of an open file (fstat).
    fn fingerprint(&self, file: &Self::File) -> io::Result<Fingerprint>;
    /// The descriptor to send the file from without copying, if it has one.
    fn raw_fd(&self, _file: &Self::File) -> Option<RawFd> {
        None
    }
}

impl<S: MemberSource> MemberSource for &S {
    type File = S::File;

    fn open(&self, index: usize) -> io::Result<S::File> {
        (**self).open(index)
    }

    fn fingerprint(&self, file: &S::File) -> io::Result<Fingerprint> {
        (**self).fingerprint(file)
    }

    fn raw_fd(&self, file: &S::File) -> Option<RawFd> {
        (**self).raw_fd(file)
    }
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
    /// Deflated bytes from the cache; `file` is kept for the final check.
    Cached {
        index: usize,
        bytes: Arc<[u8]>,
        file: F,
        at: u64,
    },
}

impl<F> Open<F> {
    fn position(&self) -> (usize, u64) {
        match self {
            Open::Stored { index, at, .. }
            | Open::Deflated { index, at, .. }
            | Open::Cached { index, at, .. } => (*index, *at),
        }
    }
}

pub struct ArchiveReader<S: MemberSource> {
    plan: Arc<ArchivePlan>,
    source: S,
    caches: Arc<Caches>,
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
        caches: Arc<Caches>,
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
                Method::Deflated { crc32, .. } | Method::StoredKnown { crc32 } => Some(crc32),
                Method::Stored => None,
            })
            .collect();
        ArchiveReader {
            plan,
            source,
            caches,
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

    /// Produces bytes at `self.pos` into `buf`, from one segment; returns how
    /// many (> 0 while bytes remain).
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
        self.position_at(index, at)?;
        let member = &self.plan.members()[index];
        let name = &member.spec.name;
        let n = match self.open.as_mut().expect("positioned above") {
            Open::Stored {
                file, at, hasher, ..
            } => {
                let n = file.read(buf)?;
                if let Some(h) = hasher {
                    h.update(&buf[..n]);
                }
                *at += n as u64;
                n
            }
            Open::Deflated { deflater, at, .. } => {
                let n = deflater.read(buf)?;
                *at += n as u64;
                n
            }
            Open::Cached { bytes, at, .. } => {
                let n = copy_from(&bytes[*at as usize..], buf);
                *at += n as u64;
                n
            }
        };
        if n == 0 {
            return Err(changed(name));
        }
        if self.open.as_ref().map(|o| o.position().1) == Some(member.data_len()) {
            self.finish_member()?;
        }
        Ok(n)
    }

    /// The CRC of member `index` if it is known without reading.
    fn known_crc(&mut self, index: usize) -> Option<u32> {
        if self.crcs[index].is_none() {
            let fingerprint = self.plan.members()[index].spec.fingerprint;
            self.crcs[index] = self.caches.digest(&fingerprint).map(|d| d.crc32);
        }
        self.crcs[index]
    }

    /// Makes `self.open` member `index` positioned `at` bytes into its data.
    fn position_at(&mut self, index: usize, at: u64) -> io::Result<()> {
        if self.open.as_ref().map(Open::position) != Some((index, at)) {
            self.open = Some(self.open_at(index, at)?);
        }
        Ok(())
    }

    /// Opens member `index` positioned at `at` bytes into its data.
    fn open_at(&mut self, index: usize, at: u64) -> io::Result<Open<S::File>> {
        let known = self.known_crc(index);
        let spec = &self.plan.members()[index].spec;
        let mut file = self.source.open(index)?;
        if self.source.fingerprint(&file)? != spec.fingerprint {
            return Err(changed(&spec.name));
        }
        match spec.method {
            Method::Stored | Method::StoredKnown { .. } => {
                let hasher = if known.is_some() {
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
                if let Some(bytes) = self.caches.deflated.get(&spec.fingerprint) {
                    if bytes.len() as u64 == spec.data_len() {
                        return Ok(Open::Cached {
                            index,
                            bytes,
                            file,
                            at,
                        });
                    }
                }
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
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let index = open.position().0;
        let spec = &self.plan.members()[index].spec;
        let file = match open {
            Open::Stored { file, hasher, .. } => {
                if let Some(hasher) = hasher {
                    let crc = hasher.finalize();
                    if self.source.fingerprint(&file)? == spec.fingerprint {
                        self.crcs[index] = Some(crc);
                        self.caches.put_crc(spec.fingerprint, crc);
                    }
                }
                file
            }
            Open::Deflated { mut deflater, .. } => {
                // The stream must end exactly where the plan said.
                if deflater.read(&mut [0u8; 1])? != 0 || Some(deflater.crc32()) != self.crcs[index]
                {
                    return Err(changed(&spec.name));
                }
                deflater.into_input()
            }
            Open::Cached { file, .. } => file,
        };
        if self.source.fingerprint(&file)? != spec.fingerprint {
            return Err(changed(&spec.name));
        }
        Ok(())
    }

    /// The CRC-32 of member `index`: known, cached, or found by a read pass.
    fn crc(&mut self, index: usize) -> io::Result<u32> {
        if let Some(crc) = self.known_crc(index) {
            return Ok(crc);
        }
        let spec = &self.plan.members()[index].spec;
        let mut file = self.source.open(index)?;
        if self.source.fingerprint(&file)? != spec.fingerprint {
            return Err(changed(&spec.name));
        }
        let crc = crc_of(&mut file, spec.size(), scratch(&mut self.scratch))?;
        if self.source.fingerprint(&file)? != spec.fingerprint {
            return Err(changed(&spec.name));
        }
        self.caches.put_crc(spec.fingerprint, crc);
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
