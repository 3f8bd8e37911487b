//! What is learned by reading a member: its CRC-32 and, for text, the exact
//! length of its deflate stream, plus the bounded cache that remembers both.
//!
//! The cache is keyed by `Fingerprint` (device, inode, size, mtime), so a
//! changed file is a new key and a stale answer cannot be served. The
//! [`Deflater`] is the one deflate code path: the sizing pass and the
//! streaming pass run the same input chunking and output buffering, so they
//! produce the same bytes and the planned length holds.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::plan::Fingerprint;

/// zlib's default level: text shrinks 70-90% at well over 100 MB/s.
pub const DEFLATE_LEVEL: u32 = 6;
const CHUNK: usize = 64 * 1024;
/// Entries kept; each is a few dozen bytes.
pub const CACHE_CAPACITY: usize = 16 * 1024;

/// What the cache knows about one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub crc32: u32,
    /// Length of the raw deflate stream at `DEFLATE_LEVEL`, when computed.
    pub deflated_size: Option<u64>,
}

/// A bounded map from file versions to digests, evicting the least
/// recently used entry when full.
pub struct DigestCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

struct CacheInner {
    map: HashMap<Fingerprint, (Digest, u64)>,
    clock: u64,
}

impl Default for DigestCache {
    fn default() -> Self {
        DigestCache::with_capacity(CACHE_CAPACITY)
    }
}

impl DigestCache {
    pub fn with_capacity(capacity: usize) -> DigestCache {
        DigestCache {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &Fingerprint) -> Option<Digest> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        inner.map.get_mut(key).map(|(digest, used)| {
            *used = now;
            *digest
        })
    }

    /// Records a CRC; keeps a deflated size learned earlier for the same version.
    pub fn put_crc(&self, key: Fingerprint, crc32: u32) {
        self.update(key, |old| Digest {
            crc32,
            deflated_size: old
                .filter(|d| d.crc32 == crc32)
                .and_then(|d| d.deflated_size),
        });
    }

    pub fn put(&self, key: Fingerprint, digest: Digest) {
        self.update(key, |_| digest);
    }

    fn update(&self, key: Fingerprint, make: impl FnOnce(Option<Digest>) -> Digest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        let old = inner.map.get(&key).map(|(d, _)| *d);
        if old.is_none() && inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.map.remove(&oldest);
            }
        }
        inner.map.insert(key, (make(old), now));
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file no longer matches the fingerprint it was planned with.
#[derive(Debug)]
pub struct Changed(String);

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changed while being read", self.0)
    }
}

impl std::error::Error for Changed {}

/// The I/O error for a file that no longer matches its planned fingerprint.
pub fn changed(what: &str) -> io::Error {
    io::Error::other(Changed(what.to_owned()))
}

/// True when `e` came from [`changed`].
pub fn is_changed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Changed>())
}

/// CRC-32 of exactly `size` bytes of `input`; fails if the input is shorter.
pub fn crc_of(input: &mut impl Read, size: u64, buf: &mut [u8]) -> io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed("a member"));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize())
}

/// Raw deflate of exactly `size` bytes of `input`, produced in fixed-size
/// output chunks; also computes the input's CRC-32.
pub struct Deflater<R> {
    input: R,
    left: u64,
    compress: Compress,
    in_buf: Box<[u8]>,
    in_pos: usize,
    in_len: usize,
    out_buf: Box<[u8]>,
    out_pos: usize,
    out_len: usize,
    hasher: crc32fast::Hasher,
    done: bool,
}

impl<R: Read> Deflater<R> {
    pub fn new(input: R, size: u64) -> Deflater<R> {
        Deflater {
            input,
            left: size,
            compress: Compress::new(Compression::new(DEFLATE_LEVEL), false),
            in_buf: vec![0; CHUNK].into_boxed_slice(),
            in_pos: 0,
            in_len: 0,
            out_buf: vec![0; CHUNK].into_boxed_slice(),
            out_pos: 0,
            out_len: 0,
            hasher: crc32fast::Hasher::new(),
            done: false,
        }
    }

    /// Compressed bytes produced so far and not yet taken by `read`.
    fn pending(&self) -> &[u8] {
        &self.out_buf[self.out_pos..self.out_len]
    }

    /// Runs the compressor until it has output or has finished.
    fn refill(&mut self) -> io::Result<()> {
        while self.pending().is_empty() && !self.done {
            if self.in_pos == self.in_len && self.left > 0 {
                let want = CHUNK.min(usize::try_from(self.left).unwrap_or(CHUNK));
                let n = read_full(&mut self.input, &mut self.in_buf[..want])?;
                if n < want {
                    return Err(changed("a member"));
                }
                self.hasher.update(&self.in_buf[..n]);
                self.left -= n as u64;
                self.in_pos = 0;
                self.in_len = n;
            }
            let flush = if self.left == 0 {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let (before_in, before_out) = (self.compress.total_in(), self.compress.total_out());
            let status = self
                .compress
                .compress(
                    &self.in_buf[self.in_pos..self.in_len],
                    &mut self.out_buf,
                    flush,
                )
                .map_err(io::Error::other)?;
            self.in_pos += (self.compress.total_in() - before_in) as usize;
            self.out_pos = 0;
            self.out_len = (self.compress.total_out() - before_out) as usize;
            if status == Status::StreamEnd {
                self.done = true;
            }
        }
        Ok(())
    }

    /// The CRC-32 of the input; valid once `read` has returned 0.
    pub fn crc32(&self) -> u32 {
        self.hasher.clone().finalize()
    }

    pub fn into_input(self) -> R {
        self.input
    }

    /// Skips `n` bytes of compressed output; fails if the stream is shorter.
    pub fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            self.refill()?;
            let pending = self.pending().len();
            if pending == 0 {
                return Err(changed("a member"));
            }
            let take = pending.min(usize::try_from(n).unwrap_or(usize::MAX));
            self.out_pos += take;
            n -= take as u64;
        }
        Ok(())
    }
}

impl<R: Read> Read for Deflater<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.refill()?;
        let pending = self.pending();
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends.
pub fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The sizing pass: the deflated length and CRC-32 of `size` bytes of `input`.
pub fn deflate_digest(input: impl Read, size: u64) -> io::Result<Digest> {
    let mut deflater = Deflater::new(input, size);
    let mut sink = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = deflater.read(&mut sink)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(Digest {
        crc32: deflater.crc32(),
        deflated_size: Some(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;

    fn key(ino: u64) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: 5,
        }
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"{\"loss\": 0.125, \"step\": 42}\n"[i % 28] ^ (i / 997 % 3) as u8)
            .collect()
    }

    #[test]
    fn deflate_is_deterministic_and_sized_exactly() {
        for len in [0, 1, 1000, CHUNK - 1, CHUNK, 3 * CHUNK + 17] {
            let data = text(len);
            let digest = deflate_digest(&data[..], len as u64).unwrap();
            let mut streamed = Vec::new();
            let mut deflater = Deflater::new(&data[..], len as u64);
            // Odd read sizes must not change the output.
            let mut buf = [0u8; 777];
            loop {
                let n = deflater.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                streamed.extend_from_slice(&buf[..n]);
            }
            assert_eq!(streamed.len() as u64, digest.deflated_size.unwrap());
            assert_eq!(deflater.crc32(), crc32fast::hash(&data));
            assert_eq!(digest.crc32, crc32fast::hash(&data));
            let mut inflated = Vec::new();
            DeflateDecoder::new(&streamed[..])
                .read_to_end(&mut inflated)
                .unwrap();
            assert_eq!(inflated, data);
        }
    }

    #[test]
    fn skip_then_read_gives_the_same_suffix() {
        let data = text(200_000);
        let full = {
            let mut out = Vec::new();
            Deflater::new(&data[..], data.len() as u64)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        for skip in [0, 1, full.len() / 2, full.len() - 1, full.len()] {
            let mut d = Deflater::new(&data[..], data.len() as u64);
            d.skip(skip as u64).unwrap();
            let mut rest = Vec::new();
            d.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, full[skip..]);
        }
    }

    #[test]
    fn short_input_is_a_change() {
        let data = text(100);
        assert!(deflate_digest(&data[..], 200).is_err());
        assert!(crc_of(&mut &data[..], 200, &mut [0; 64]).is_err());
    }

    #[test]
    fn cache_is_bounded_and_keeps_recent_entries() {
        let cache = DigestCache::with_capacity(2);
        cache.put_crc(key(1), 11);
        cache.put_crc(key(2), 22);
        assert_eq!(cache.get(&key(1)).unwrap().crc32, 11); // 1 is now newer than 2
        cache.put_crc(key(3), 33);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(1)).is_some() && cache.get(&key(3)).is_some());
    }

    #[test]
    fn crc_update_keeps_a_matching_deflated_size() {
        let cache = DigestCache::default();
        cache.put(
            key(1),
            Digest {
                crc32: 7,
                deflated_size: Some(99),
            },
        );
        cache.put_crc(key(1), 7);
        assert_eq!(cache.get(&key(1)).unwrap().deflated_size, Some(99));
        cache.put_crc(key(1), 8);
        assert_eq!(cache.get(&key(1)).unwrap().deflated_size, None);
    }
}
