//! Plan and reader against each other and against the zip crate's reader:
//! random member lists, every byte range, zip64 sizes without real data.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;

use super::cache::{Caches, Digest};
use super::digest::crc_of;
use super::plan::{ArchivePlan, Fingerprint};
use super::stream::{ArchiveReader, MemberSource};
use super::*;

/// A member's bytes: real ones, or `len` zeros that are never allocated.
#[derive(Clone)]
enum Content {
    Bytes(Arc<Vec<u8>>),
    Zeros(u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Zeros(n) => *n,
        }
    }
}

struct VirtualFile {
    content: Content,
    pos: u64,
    fingerprint: Fingerprint,
}

impl Read for VirtualFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.content.len().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match &self.content {
            Content::Bytes(b) => buf[..n].copy_from_slice(&b[self.pos as usize..][..n]),
            Content::Zeros(_) => buf[..n].fill(0),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for VirtualFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Start(p) => self.pos = p,
            _ => unimplemented!("the reader seeks from the start only"),
        }
        Ok(self.pos)
    }
}

struct MemSource {
    files: Vec<(FileEntry, Content)>,
    /// When set, every fstat reports a newer mtime: the files "changed".
    touched: Arc<AtomicBool>,
}

impl MemSource {
    fn new(files: Vec<(&str, Content)>) -> MemSource {
        let files = files
            .into_iter()
            .enumerate()
            .map(|(i, (name, content))| {
                let entry = FileEntry {
                    name: name.to_owned(),
                    fingerprint: Fingerprint {
                        dev: 7,
                        ino: i as u64 + 1,
                        size: content.len(),
                        mtime_ns: 1_730_000_000_123_456_789,
                    },
                };
                (entry, content)
            })
            .collect();
        MemSource {
            files,
            touched: Arc::default(),
        }
    }

    fn entries(&self) -> Vec<FileEntry> {
        self.files.iter().map(|(e, _)| e.clone()).collect()
    }
}

impl MemberSource for MemSource {
    type File = VirtualFile;

    fn open(&self, index: usize) -> io::Result<VirtualFile> {
        let (entry, content) = &self.files[index];
        Ok(VirtualFile {
            content: content.clone(),
            pos: 0,
            fingerprint: entry.fingerprint,
        })
    }

    fn fingerprint(&self, file: &VirtualFile) -> io::Result<Fingerprint> {
        let mut f = file.fingerprint;
        if self.touched.load(Ordering::SeqCst) {
            f.mtime_ns += 1;
        }
        Ok(f)
    }
}

struct Fixture {
    plan: Arc<ArchivePlan>,
    source: Arc<MemSource>,
    cache: Arc<Caches>,
}

impl MemberSource for Arc<MemSource> {
    type File = VirtualFile;
    fn open(&self, index: usize) -> io::Result<VirtualFile> {
        (**self).open(index)
    }
    fn fingerprint(&self, file: &VirtualFile) -> io::Result<Fingerprint> {
        (**self).fingerprint(file)
    }
}

impl Fixture {
    fn new(files: Vec<(&str, Content)>, compression: Compression) -> Fixture {
        Fixture::with_digests(files, compression, false)
    }

    /// With `digests`, every member's CRC is known before planning (as
    /// the digest index knows them): stored members carry it up front.
    fn with_digests(
        files: Vec<(&str, Content)>,
        compression: Compression,
        digests: bool,
    ) -> Fixture {
        let source = Arc::new(MemSource::new(files));
        let cache = Arc::new(Caches::default());
        let mut known = std::collections::HashMap::new();
        if digests {
            for (index, entry) in source.entries().iter().enumerate() {
                let mut file = source.open(index).unwrap();
                let crc = crc_of(&mut file, entry.fingerprint.size, &mut [0; 65536]).unwrap();
                known.insert(entry.fingerprint, crc);
            }
        }
        let known_crc = |key: &Fingerprint| known.get(key).copied();
        let plan =
            plan_archive(&source.entries(), compression, &source, &cache, &known_crc).unwrap();
        Fixture {
            plan: Arc::new(plan),
            source,
            cache,
        }
    }

    fn reader(&self, start: u64, end: u64) -> ArchiveReader<Arc<MemSource>> {
        ArchiveReader::new(
            Arc::clone(&self.plan),
            Arc::clone(&self.source),
            Arc::clone(&self.cache),
            start,
            end,
        )
    }

    fn bytes(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader(start, end).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Counts the bytes of a range without keeping them.
    fn count(&self, start: u64, end: u64) -> u64 {
        let mut reader = self.reader(start, end);
        let mut buf = vec![0u8; 4 << 20];
        let mut total = 0;
        loop {
            match reader.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n as u64,
            }
        }
    }
}

/// `Read + Seek` over a planned archive, so the zip crate can read it at
/// random like a file.
struct Seekable {
    fixture: Arc<Fixture>,
    pos: u64,
    reader: Option<ArchiveReader<Arc<MemSource>>>,
}

impl Read for Seekable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.fixture.plan.len();
        let reader = self
            .reader
            .get_or_insert_with(|| self.fixture.reader(self.pos.min(len), len));
        let n = reader.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Seekable {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.fixture.plan.len() as i128;
        let pos = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "before start"));
        }
        if pos as u64 != self.pos {
            self.reader = None;
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"{\"loss\": ",
        b"0.25",
        b", \"step\": ",
        b"12",
        b"}\n",
        b"token ",
    ];
    let mut out = Vec::with_capacity(len);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize]);
    }
    out.truncate(len);
    out
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn check_with_zip_crate(archive: &[u8], expected: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).expect("zip crate opens it");
    assert_eq!(zip.len(), expected.len());
    for (name, data) in expected {
        let mut file = zip.by_name(name).expect("member present");
        let mut got = Vec::new();
        file.read_to_end(&mut got)
            .expect("CRC and length check out");
        assert_eq!(&got, data, "{name}");
    }
}

/// Reads `archive` front to back the way a streaming unzipper does (Java's
/// `ZipInputStream`, Python's stream-unzip): local headers only, never the
/// central directory; a stored member must give its size up front.
fn check_streamable(archive: &[u8], expected: &[(String, Vec<u8>)]) {
    let u16_at = |at: usize| u16::from_le_bytes(archive[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(archive[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(archive[at..at + 8].try_into().unwrap());
    let mut at = 0;
    for (name, data) in expected {
        assert_eq!(u32_at(at), 0x0403_4b50, "{name}: a local header");
        let (flags, method, crc) = (u16_at(at + 6), u16_at(at + 8), u32_at(at + 14));
        let (mut compressed, mut size) = (u64::from(u32_at(at + 18)), u64::from(u32_at(at + 22)));
        let (name_len, extra_len) = (u16_at(at + 26) as usize, u16_at(at + 28) as usize);
        assert_eq!(&archive[at + 30..at + 30 + name_len], name.as_bytes());
        assert_eq!(flags & 8, 0, "{name}: no data descriptor");
        let mut extra = at + 30 + name_len;
        let extra_end = extra + extra_len;
        while extra < extra_end {
            let (id, len) = (u16_at(extra), u16_at(extra + 2) as usize);
            if id == 1 {
                size = u64_at(extra + 4);
                compressed = u64_at(extra + 12);
            }
            extra += 4 + len;
        }
        let body = &archive[extra_end..extra_end + compressed as usize];
        let got = match method {
            0 => body.to_vec(),
            8 => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            other => panic!("{name}: method {other}"),
        };
        assert_eq!(got.len() as u64, size, "{name}");
        assert_eq!(&got, data, "{name}");
        assert_eq!(crc32fast::hash(&got), crc, "{name}: CRC");
        at = extra_end + compressed as usize;
    }
    let next = if expected.is_empty() {
        0x0605_4b50
    } else {
        0x0201_4b50
    };
    assert_eq!(
        u32_at(at),
        next,
        "the central directory (or the end) follows"
    );
}

fn member_strategy() -> impl Strategy<Value = Vec<(String, bool, usize)>> {
    let name = prop_oneof![
        "[a-z]{1,8}\\.(json|txt|bin|safetensors|log)",
        "[a-z]{1,4}/[a-zé中]{1,6}\\.(json|pt)",
        "checkpoint-[0-9]{1,4}/trainer_state\\.json",
    ];
    proptest::collection::vec((name, any::<bool>(), 0usize..150_000), 0..8).prop_map(|mut v| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random member lists: the plan's length is the number of bytes the
    /// reader produces, the zip crate reads every member back, and every
    /// byte range equals the same slice of the whole.
    #[test]
    fn plan_reader_and_ranges_agree(
        members in member_strategy(),
        stored in any::<bool>(),
        digests in any::<bool>(),
        ranges in proptest::collection::vec((any::<u64>(), any::<u64>()), 6),
    ) {
        let files: Vec<(String, Vec<u8>)> = members
            .iter()
            .enumerate()
            .map(|(i, (name, is_text, len))| {
                let data = if *is_text { text(i as u64 + 3, *len) } else { noise(i as u64 + 3, *len) };
                (name.clone(), data)
            })
            .collect();
        let compression = if stored { Compression::Stored } else { Compression::Auto };
        let contents = files
            .iter()
            .map(|(n, d)| (n.as_str(), Content::Bytes(Arc::new(d.clone()))))
            .collect();
        let fx = Fixture::with_digests(contents, compression, digests);
        let len = fx.plan.len();
        let whole = fx.bytes(0, len).unwrap();
        prop_assert_eq!(whole.len() as u64, len);
        check_with_zip_crate(&whole, &files);
        if digests {
            check_streamable(&whole, &files);
        }
        // Same bytes on a second run, with the CRC cache now warm.
        prop_assert_eq!(&fx.bytes(0, len).unwrap(), &whole);
        for (a, b) in ranges {
            let (a, b) = (a % (len + 1), b % (len + 1));
            let (a, b) = (a.min(b), a.max(b));
            // A cold cache exercises the prefix-CRC and read-pass paths.
            let cold = Fixture { cache: Arc::new(Caches::default()), ..fx.clone_shallow() };
            prop_assert_eq!(&cold.bytes(a, b).unwrap(), &whole[a as usize..b as usize]);
            prop_assert_eq!(&fx.bytes(a, b).unwrap(), &whole[a as usize..b as usize]);
        }
    }
}

impl Fixture {
    fn clone_shallow(&self) -> Fixture {
        Fixture {
            plan: Arc::clone(&self.plan),
            source: Arc::clone(&self.source),
            cache: Arc::clone(&self.cache),
        }
    }
}

#[test]
fn auto_deflates_text_and_stores_tensors() {
    let fx = Fixture::new(
        vec![
            ("config.json", Content::Bytes(Arc::new(text(1, 50_000)))),
            (
                "model.safetensors",
                Content::Bytes(Arc::new(noise(2, 50_000))),
            ),
        ],
        Compression::Auto,
    );
    let m = fx.plan.members();
    assert!(
        matches!(m[0].spec.method, plan::Method::Deflated { compressed_size, .. } if compressed_size < 20_000)
    );
    assert_eq!(m[1].spec.method, plan::Method::Stored);
}

#[test]
fn policy_by_name_and_size() {
    assert!(auto_deflates("tokenizer.json", 20 << 20));
    assert!(auto_deflates("a/b/merges.txt", 1));
    assert!(auto_deflates("README", 10));
    assert!(!auto_deflates("model.safetensors", 1 << 20));
    assert!(!auto_deflates("epoch=1.ckpt", 1 << 20));
    assert!(!auto_deflates("big.json", AUTO_DEFLATE_MAX + 1));
    assert!(!auto_deflates("empty.json", 0));
}

#[test]
fn a_changed_file_aborts_the_stream() {
    let fx = Fixture::new(
        vec![
            ("a.bin", Content::Bytes(Arc::new(noise(1, 300_000)))),
            ("b.json", Content::Bytes(Arc::new(text(2, 300_000)))),
        ],
        Compression::Auto,
    );
    let mut reader = fx.reader(0, fx.plan.len());
    let mut buf = vec![0; 1000];
    reader.read_exact(&mut buf).unwrap();
    fx.source.touched.store(true, Ordering::SeqCst);
    let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
    assert!(
        err.to_string().contains("changed while being read"),
        "{err}"
    );
}

#[test]
fn the_etag_follows_the_files() {
    let files = || vec![("a.bin", Content::Bytes(Arc::new(noise(1, 10))))];
    let a = Fixture::new(files(), Compression::Auto);
    let b = Fixture::new(files(), Compression::Auto);
    assert_eq!(
        etag(&a.plan, Compression::Auto),
        etag(&b.plan, Compression::Auto)
    );
    assert_ne!(
        etag(&a.plan, Compression::Auto),
        etag(&a.plan, Compression::Stored)
    );
    let mut changed = (*a.plan).clone().members().to_vec();
    changed[0].spec.fingerprint.mtime_ns += 1;
    let changed = ArchivePlan::new(changed.into_iter().map(|m| m.spec).collect()).unwrap();
    assert_ne!(
        etag(&a.plan, Compression::Auto),
        etag(&changed, Compression::Auto)
    );
}

/// CRC-32 of `len` zero bytes in O(log len), by combining halves.
fn crc_of_zeros(len: u64) -> u32 {
    let block = vec![0u8; 1 << 20];
    let mut result = crc32fast::Hasher::new();
    let mut left = len;
    let mut chunk = {
        let mut h = crc32fast::Hasher::new();
        h.update(&block);
        h
    };
    let mut chunk_len = 1u64 << 20;
    // Whole megabytes by binary decomposition, then the remainder.
    let mut megabytes = left >> 20;
    left &= (1 << 20) - 1;
    let mut pieces = Vec::new();
    while megabytes > 0 {
        if megabytes & 1 == 1 {
            pieces.push(chunk.clone());
        }
        let copy = chunk.clone();
        chunk.combine(&copy);
        chunk_len *= 2;
        megabytes >>= 1;
    }
    let _ = chunk_len;
    for piece in pieces {
        result.combine(&piece);
    }
    let mut tail = crc32fast::Hasher::new();
    tail.update(&block[..left as usize]);
    result.combine(&tail);
    result.finalize()
}

#[test]
fn crc_of_zeros_matches_hashing() {
    for len in [0u64, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 5] {
        assert_eq!(
            crc_of_zeros(len),
            crc32fast::hash(&vec![0u8; len as usize]),
            "{len}"
        );
    }
}

/// Sizes across the 4 GiB boundary, with zeros that are never allocated and
/// CRCs put in the cache beforehand: the byte count equals the plan, zip64
/// appears exactly when needed, and the zip crate reads the result.
#[test]
fn zip64_boundaries_without_real_data() {
    const LIMIT: u64 = 0xFFFF_FFFF;
    for (big, needs_zip64) in [(LIMIT - 1, false), (LIMIT, true), (5 << 30, true)] {
        let small = text(9, 1000);
        let source_files = vec![
            ("big.bin", Content::Zeros(big)),
            ("small.json", Content::Bytes(Arc::new(small.clone()))),
        ];
        let mut fx = Fixture::new(source_files, Compression::Auto);
        let cache = Caches::default();
        let big_fp = fx.plan.members()[0].spec.fingerprint;
        cache.digests.put(
            big_fp,
            Digest {
                crc32: crc_of_zeros(big),
                deflated_size: None,
            },
        );
        fx.cache = Arc::new(cache);
        let len = fx.plan.len();
        let m0 = &fx.plan.members()[0];
        let zip64_extra = if needs_zip64 { 20 } else { 0 };
        assert_eq!(m0.data_offset - m0.header_offset, 30 + 7 + zip64_extra);
        // Every case puts the central directory past 4 GiB.
        assert!(fx.plan.has_zip64_end());
        let fx = Arc::new(fx);
        // The tail and the small member, read through the zip crate at random.
        let mut zip = zip::ZipArchive::new(Seekable {
            fixture: Arc::clone(&fx),
            pos: 0,
            reader: None,
        })
        .expect("zip crate opens the archive");
        assert_eq!(zip.by_name("big.bin").unwrap().size(), big);
        let mut got = Vec::new();
        zip.by_name("small.json")
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, small);
        // Every byte, counted: the plan's length is what the reader produces.
        assert_eq!(fx.count(0, len), len);
        // A range across the end of the big member's data.
        let data_end = fx.plan.members()[0].descriptor_offset;
        let around = fx.bytes(data_end - 3, data_end + 10).unwrap();
        assert_eq!(&around[..3], &[0, 0, 0]);
        assert_eq!(&around[3..7], &0x0807_4b50u32.to_le_bytes());
        assert_eq!(
            &around[7..11],
            &crc_of_zeros(big).to_le_bytes(),
            "the descriptor carries the CRC"
        );
    }
}

/// Real files on disk, for the zero-copy path (it needs descriptors).
struct DiskSource {
    paths: Vec<std::path::PathBuf>,
}

impl MemberSource for DiskSource {
    type File = std::fs::File;

    #[allow(clippy::disallowed_methods)] // test files in a temp dir
    fn open(&self, index: usize) -> io::Result<std::fs::File> {
        std::fs::File::open(&self.paths[index])
    }

    fn fingerprint(&self, file: &std::fs::File) -> io::Result<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    fn raw_fd(&self, file: &std::fs::File) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(file.as_raw_fd())
    }
}

/// A sink that "sends" file ranges by pread, recording how many bytes went
/// each way.
#[derive(Default)]
struct RecordingSink {
    out: Vec<u8>,
    zero_copy: bool,
    file_bytes: u64,
}

impl stream::Sink for RecordingSink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn zero_copy(&self) -> bool {
        self.zero_copy
    }
    fn send_file(&mut self, fd: std::os::fd::RawFd, offset: u64, len: u64) -> io::Result<()> {
        let mut buf = vec![0u8; len as usize];
        // SAFETY: pread into a buffer of exactly `len` bytes on an open descriptor.
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        assert_eq!(n as u64, len, "the file holds the planned bytes");
        self.out.extend_from_slice(&buf);
        self.file_bytes += len;
        Ok(())
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // test files in a temp dir
fn zero_copy_sinks_get_the_same_bytes_as_readers() {
    let dir = std::env::temp_dir().join(format!("trainbox-zc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("a.safetensors", noise(1, 3_000_000)),
        ("b.json", text(2, 200_000)),
        ("c.bin", noise(3, 0)),
        ("d/e.pt", noise(4, 1_000_001)),
    ];
    let mut entries = Vec::new();
    let mut paths = Vec::new();
    for (name, data) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        paths.push(path);
    }
    let source = DiskSource { paths };
    for (index, (name, _)) in files.iter().enumerate() {
        let file = source.open(index).unwrap();
        entries.push(FileEntry {
            name: (*name).to_owned(),
            fingerprint: source.fingerprint(&file).unwrap(),
        });
    }
    let caches = Arc::new(Caches::default());
    let plan =
        Arc::new(plan_archive(&entries, Compression::Auto, &source, &caches, &|_| None).unwrap());
    let len = plan.len();
    let reader = |start, end| {
        ArchiveReader::new(
            Arc::clone(&plan),
            DiskSource {
                paths: source.paths.clone(),
            },
            Arc::clone(&caches),
            start,
            end,
        )
    };
    let mut whole = Vec::new();
    reader(0, len).read_to_end(&mut whole).unwrap();
    check_with_zip_crate(
        &whole,
        &files
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.clone()))
            .collect::<Vec<_>>(),
    );
    // The first pass filled the CRC cache: now stored data goes as file ranges.
    let mut buf = vec![0u8; 64 * 1024];
    let cuts = [0, 1, 40, 1_000_000, len / 2, len - 100, len - 1, len];
    for &a in &cuts {
        for &b in &cuts {
            if a > b {
                continue;
            }
            for zero_copy in [false, true] {
                let mut sink = RecordingSink {
                    zero_copy,
                    ..RecordingSink::default()
                };
                let produced = reader(a, b).write_to(&mut sink, &mut buf).unwrap();
                assert_eq!(produced, b - a);
                assert_eq!(
                    sink.out,
                    whole[a as usize..b as usize],
                    "{a}..{b} zero_copy={zero_copy}"
                );
                if !zero_copy {
                    assert_eq!(sink.file_bytes, 0);
                }
            }
        }
    }
    let mut sink = RecordingSink {
        zero_copy: true,
        ..RecordingSink::default()
    };
    reader(0, len).write_to(&mut sink, &mut buf).unwrap();
    assert_eq!(
        sink.file_bytes,
        3_000_000 + 1_000_001,
        "stored data went without a copy"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
