//! ZIP archives streamed without a plan, their members deflated on every
//! core (`parallel`): `compression=deflate`. No length is promised, so each
//! member's CRC and sizes follow its data in a data descriptor (flag bit 3)
//! and the central directory, written last, carries them again.
//!
//! A member that might reach 4 GiB gets a zip64 field in its local header
//! (zeros: the sizes are not known yet) and 8-byte sizes in its descriptor,
//! as APPNOTE.TXT 4.3.9.2 asks; the central directory and end records use
//! zip64 exactly where a value does not fit, as in planned archives.

use std::io::{self, Read, Write};

use super::parallel::{self, Kind};
use super::records::*;
use crate::counting::Counting;

/// One member: its name, its bytes, its expected size (to choose zip64
/// ahead of the data) and its mtime.
pub struct Member<R> {
    pub name: String,
    pub reader: R,
    pub size: u64,
    pub mtime_secs: i64,
}

/// What the central directory needs of a member written.
struct Written {
    name: String,
    flags: u16,
    mtime_secs: i64,
    crc32: u32,
    compressed: u64,
    size: u64,
    header_offset: u64,
    zip64: bool,
}

/// True when a member of `size` bytes may not fit 32-bit sizes once
/// deflated: deflate can grow incompressible data by a few bytes per
/// stored block, so the margin is generous.
fn may_need_zip64(size: u64) -> bool {
    size.saturating_add(size / 256 + (1 << 20)) >= ZIP64_LIMIT
}

/// Writes a ZIP of `members`, each deflated on the pool, to `out`; returns
/// `out`. A member is read to its end (its reader decides where that is).
pub fn write_parallel_deflated<W: Write, R: Read>(
    out: W,
    members: impl IntoIterator<Item = io::Result<Member<R>>>,
) -> io::Result<W> {
    let mut out = Counting::new(out);
    let mut written = Vec::new();
    for member in members {
        let mut member = member?;
        let zip64 = may_need_zip64(member.size);
        let header_offset = out.count;
        let flags = FLAG_DESCRIPTOR | if member.name.is_ascii() { 0 } else { FLAG_UTF8 };
        // Flag bit 3: CRC and sizes (zeros here) follow in the descriptor.
        let mut header = Vec::new();
        LocalEntry {
            name: &member.name,
            flags,
            method: 8,
            mtime_secs: member.mtime_secs,
            crc32: 0,
            compressed: 0,
            size: 0,
            zip64,
        }
        .write(&mut header);
        out.write_all(&header)?;
        let kind = if super::is_text(&member.name) {
            Kind::Text
        } else {
            Kind::Dense
        };
        let done = parallel::deflate_to(&mut member.reader, kind, &mut out)?;
        if !zip64 && (done.size >= ZIP64_LIMIT || done.compressed >= ZIP64_LIMIT) {
            // The header promised 32-bit sizes; the archive cannot be kept.
            return Err(io::Error::other(format!(
                "{} grew past 4 GiB while it was archived",
                member.name
            )));
        }
        let mut descriptor = Vec::new();
        write_descriptor(
            &mut descriptor,
            done.crc32,
            done.compressed,
            done.size,
            zip64,
        );
        out.write_all(&descriptor)?;
        written.push(Written {
            name: member.name,
            flags,
            mtime_secs: member.mtime_secs,
            crc32: done.crc32,
            compressed: done.compressed,
            size: done.size,
            header_offset,
            zip64,
        });
    }
    let central_offset = out.count;
    let mut tail = Vec::new();
    for w in &written {
        CentralEntry {
            name: &w.name,
            flags: w.flags,
            method: 8,
            mtime_secs: w.mtime_secs,
            crc32: w.crc32,
            compressed: w.compressed,
            size: w.size,
            header_offset: w.header_offset,
            zip64_local: w.zip64,
        }
        .write(&mut tail);
    }
    let central_len = tail.len() as u64;
    write_end_records(&mut tail, written.len(), central_offset, central_len, &[]);
    out.write_all(&tail)?;
    out.flush()?;
    Ok(out.inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn member(name: &str, bytes: &[u8], size: u64) -> io::Result<Member<Cursor<Vec<u8>>>> {
        Ok(Member {
            name: name.to_owned(),
            reader: Cursor::new(bytes.to_vec()),
            size,
            mtime_secs: 1_700_000_000,
        })
    }

    #[test]
    fn the_zip_crate_reads_every_member_back() {
        let weights: Vec<u8> = (0..3 * parallel::BLOCK + 5)
            .map(|i| (i * 7919 % 256) as u8)
            .collect();
        let config = br#"{"hidden_size": 64}"#.repeat(1000);
        let members = vec![
            member("model.safetensors", &weights, weights.len() as u64),
            member("config.json", &config, config.len() as u64),
            member("empty.txt", b"", 0),
            member("naïve/名前.json", b"{}", 2),
        ];
        let bytes = write_parallel_deflated(Vec::new(), members).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(zip.len(), 4);
        for (name, expected) in [
            ("model.safetensors", &weights[..]),
            ("config.json", &config[..]),
            ("empty.txt", &b""[..]),
            ("naïve/名前.json", &b"{}"[..]),
        ] {
            let mut file = zip.by_name(name).unwrap();
            assert_eq!(file.compression(), zip::CompressionMethod::Deflated);
            let mut got = Vec::new();
            file.read_to_end(&mut got).unwrap();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_member_that_may_reach_4_gib_is_zip64_from_its_header() {
        assert!(!may_need_zip64(1 << 30));
        assert!(may_need_zip64(ZIP64_LIMIT - 1000));
        // Declared huge, actually small: still a valid archive, with zip64
        // fields in the local header and the descriptor.
        let members = vec![member("big.bin", b"abc", ZIP64_LIMIT + 1)];
        let bytes = write_parallel_deflated(Vec::new(), members).unwrap();
        assert_eq!(&bytes[4..6], &VERSION_ZIP64.to_le_bytes());
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut got = Vec::new();
        zip.by_index(0).unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
    }
}
