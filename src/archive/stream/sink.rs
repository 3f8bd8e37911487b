//! Pushing an archive range into a [`Sink`]: stored member data goes out
//! as file ranges (sendfile) where the sink can send them, everything else
//! through the buffer, in large writes.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::RawFd;
use std::sync::Arc;

use super::{ArchiveReader, MemberSource, Open};
use crate::archive::digest::changed;
use crate::archive::plan::Method;

/// Where the bytes go.
pub trait Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// True when [`Sink::send_file`] works.
    fn zero_copy(&self) -> bool {
        false
    }
    /// Sends `len` bytes of the file `fd` from `offset` without copying them
    /// through this process (sendfile); only called when `zero_copy()`. An
    /// `Unsupported` error, with nothing sent, means "not for this file":
    /// the reader then writes the bytes itself.
    fn send_file(&mut self, _fd: RawFd, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

impl<S: MemberSource> ArchiveReader<S> {
    /// Pushes the whole range into `sink`, using `buf` for what is not sent
    /// as a file range. Returns the bytes produced.
    pub fn write_to(&mut self, sink: &mut impl Sink, buf: &mut [u8]) -> io::Result<u64> {
        let start = self.pos;
        while self.pos < self.end {
            if self.send_stored(sink, buf)? {
                continue;
            }
            // Fill the buffer across segments (one large write), stopping
            // early where stored data can go out as a file range.
            let mut filled = 0;
            loop {
                let n = self.read_some(&mut buf[filled..])?;
                self.pos += n as u64;
                filled += n;
                if filled == buf.len() || self.pos == self.end || self.stored_data_ahead(sink) {
                    break;
                }
            }
            sink.write_all(&buf[..filled])?;
        }
        Ok(self.pos - start)
    }

    /// True when the next bytes are stored member data and the sink sends
    /// file ranges, so they need not be copied through this process.
    fn stored_data_ahead(&self, sink: &impl Sink) -> bool {
        if !sink.zero_copy() {
            return false;
        }
        let Some(index) = self.plan.member_at(self.pos) else {
            return false;
        };
        let member = &self.plan.members()[index];
        matches!(
            member.spec.method,
            Method::Stored | Method::StoredKnown { .. }
        ) && self.pos >= member.data_offset
            && self.pos < member.descriptor_offset
    }

    /// Sends the stored data at `pos` as file ranges: all of it at once when
    /// its CRC is known, else one buffer at a time after reading it for the
    /// CRC (one copy instead of two). False when the data must go the
    /// ordinary way.
    fn send_stored(&mut self, sink: &mut impl Sink, buf: &mut [u8]) -> io::Result<bool> {
        if !self.stored_data_ahead(sink) {
            return Ok(false);
        }
        let plan = Arc::clone(&self.plan);
        let index = plan.member_at(self.pos).expect("checked above");
        let member = &plan.members()[index];
        let at = self.pos - member.data_offset;
        self.position_at(index, at)?;
        let Some(Open::Stored {
            file,
            at: file_at,
            hasher,
            ..
        }) = &mut self.open
        else {
            return Ok(false);
        };
        let Some(fd) = self.source.raw_fd(file) else {
            return Ok(false);
        };
        let left = member.descriptor_offset.min(self.end) - self.pos;
        let sent = match hasher {
            None => match sink.send_file(fd, at, left) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(false),
                result => {
                    result?;
                    // sendfile with an offset leaves the file position alone.
                    file.seek(SeekFrom::Start(at + left))?;
                    left
                }
            },
            Some(hasher) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(changed(&member.spec.name));
                }
                hasher.update(&buf[..n]);
                match sink.send_file(fd, at, n as u64) {
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        sink.write_all(&buf[..n])?
                    }
                    result => result?,
                }
                n as u64
            }
        };
        *file_at += sent;
        self.pos += sent;
        if at + sent == member.data_len() {
            self.finish_member()?;
        }
        Ok(true)
    }
}
