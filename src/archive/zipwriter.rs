//! The logs archive, streamed without a plan and written by the zip crate:
//! a growing log is copied up to the size it had when the download began,
//! so it is a consistent prefix. The zip crate's stream writer puts sizes
//! and CRCs in data descriptors, so nothing is buffered beyond the
//! compressor's window. (Models in `compression=deflate` go through
//! `streamed`, deflated on every core.)

use std::io::{self, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::plan::dos_datetime;

/// One member: its name, its bytes, how many of them to copy, and its mtime.
pub use super::streamed::Member as StreamMember;

/// Writes a deflated ZIP of `members` to `out` as it goes; returns `out`.
/// Each member is copied up to `size` bytes (fewer if the file shrank).
pub fn write_deflated<W: Write, R: Read>(
    out: W,
    members: impl IntoIterator<Item = io::Result<StreamMember<R>>>,
) -> io::Result<W> {
    let mut zip = ZipWriter::new_stream(out);
    let mut buf = vec![0u8; 64 * 1024];
    for member in members {
        let member = member?;
        let (time, date) = dos_datetime(member.mtime_secs);
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(i64::from(super::digest::DEFLATE_LEVEL)))
            .last_modified_time(DateTime::try_from_msdos(date, time).unwrap_or_default())
            .unix_permissions(0o644)
            .large_file(member.size >= 0xFFFF_FFFF);
        zip.start_file(member.name.as_str(), options)
            .map_err(io::Error::other)?;
        let mut reader = member.reader.take(member.size);
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n])?;
        }
    }
    let stream = zip.finish().map_err(io::Error::other)?;
    Ok(stream.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_zip_crate_reads_what_it_wrote_and_prefixes_hold() {
        let log = b"step 1 loss 0.9\n".repeat(5000);
        let members = vec![
            Ok(StreamMember {
                name: "training.log".to_owned(),
                reader: &log[..],
                // A log that grew after the download began: only the prefix.
                size: 1600,
                mtime_secs: 1_700_000_000,
            }),
            Ok(StreamMember {
                name: "progress.json".to_owned(),
                reader: &b"{\"step\": 1}"[..],
                size: 11,
                mtime_secs: 1_700_000_000,
            }),
        ];
        let bytes = write_deflated(Vec::new(), members).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut got = String::new();
        zip.by_name("training.log")
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got.as_bytes(), &log[..1600]);
        let member = zip.by_name("progress.json").unwrap();
        assert_eq!(member.compression(), CompressionMethod::Deflated);
    }
}
