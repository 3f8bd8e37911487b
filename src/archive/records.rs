//! The fixed parts of ZIP records (APPNOTE.TXT 4.3): signatures, lengths,
//! flags, versions, and little-endian field writers, shared by the planned
//! archives (`plan`) and the ones streamed without a plan (`streamed`).

/// A value at or over this needs a zip64 field (0xFFFF_FFFF is itself the
/// "see zip64" sentinel, so it cannot be stored literally).
pub(crate) const ZIP64_LIMIT: u64 = 0xFFFF_FFFF;
pub(crate) const ZIP64_ENTRY_LIMIT: usize = 0xFFFF;

pub(crate) const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
pub(crate) const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
pub(crate) const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
pub(crate) const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
pub(crate) const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
pub(crate) const EOCD_SIG: u32 = 0x0605_4b50;

pub(crate) const LOCAL_HEADER_LEN: u64 = 30;
pub(crate) const CENTRAL_HEADER_LEN: u64 = 46;
pub(crate) const ZIP64_EOCD_LEN: u64 = 56;
pub(crate) const ZIP64_LOCATOR_LEN: u64 = 20;
pub(crate) const EOCD_LEN: u64 = 22;

pub(crate) const FLAG_DESCRIPTOR: u16 = 1 << 3;
pub(crate) const FLAG_UTF8: u16 = 1 << 11;
pub(crate) const VERSION_DEFAULT: u16 = 20;
pub(crate) const VERSION_ZIP64: u16 = 45;
/// "Made by" a Unix host, so readers apply the mode bits below.
pub(crate) const HOST_UNIX: u16 = 3 << 8;
/// A regular file, rw-r--r--, in the high half of the external attributes.
pub(crate) const EXTERNAL_ATTRS: u32 = 0o100644 << 16;

/// MS-DOS (time, date) for a Unix time in UTC, clamped to the range DOS
/// dates can hold (1980 to 2107).
pub fn dos_datetime(unix_secs: i64) -> (u16, u16) {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let secs = unix_secs.clamp(MIN, MAX);
    let (year, month, day) = crate::timefmt::civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let time = (((tod / 3600) << 11) | ((tod % 3600 / 60) << 5) | ((tod % 60) / 2)) as u16;
    let date = (((year - 1980) << 9) | (i64::from(month) << 5) | i64::from(day)) as u16;
    (time, date)
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// What a local file header says of one member (4.3.7). With flag bit 3
/// the CRC and sizes given are zeros and follow in the data descriptor.
pub(crate) struct LocalEntry<'a> {
    pub name: &'a str,
    pub flags: u16,
    /// 0 stored, 8 deflated.
    pub method: u16,
    pub mtime_secs: i64,
    pub crc32: u32,
    pub compressed: u64,
    pub size: u64,
    /// Carry a zip64 field: in a local header it holds both sizes (4.5.3),
    /// and the 32-bit fields say "see zip64".
    pub zip64: bool,
}

impl LocalEntry<'_> {
    /// The header's length in bytes.
    pub fn len(&self) -> u64 {
        LOCAL_HEADER_LEN + self.name.len() as u64 + if self.zip64 { 20 } else { 0 }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let (time, date) = dos_datetime(self.mtime_secs);
        put_u32(out, LOCAL_HEADER_SIG);
        put_u16(
            out,
            if self.zip64 {
                VERSION_ZIP64
            } else {
                VERSION_DEFAULT
            },
        );
        put_u16(out, self.flags);
        put_u16(out, self.method);
        put_u16(out, time);
        put_u16(out, date);
        put_u32(out, self.crc32);
        if self.zip64 {
            put_u32(out, ZIP64_LIMIT as u32);
            put_u32(out, ZIP64_LIMIT as u32);
        } else {
            put_u32(out, self.compressed as u32);
            put_u32(out, self.size as u32);
        }
        put_u16(out, self.name.len() as u16);
        put_u16(out, if self.zip64 { 20 } else { 0 });
        out.extend_from_slice(self.name.as_bytes());
        if self.zip64 {
            put_u16(out, 0x0001);
            put_u16(out, 16);
            put_u64(out, self.size);
            put_u64(out, self.compressed);
        }
    }
}

/// The length of a data descriptor (4.3.9) with 64- or 32-bit sizes.
pub(crate) fn descriptor_len(zip64: bool) -> u64 {
    if zip64 { 24 } else { 16 }
}

/// Appends a data descriptor (4.3.9), with the signature readers expect.
pub(crate) fn write_descriptor(
    out: &mut Vec<u8>,
    crc32: u32,
    compressed: u64,
    size: u64,
    zip64: bool,
) {
    put_u32(out, DESCRIPTOR_SIG);
    put_u32(out, crc32);
    if zip64 {
        put_u64(out, compressed);
        put_u64(out, size);
    } else {
        put_u32(out, compressed as u32);
        put_u32(out, size as u32);
    }
}

/// What a central directory header says of one member.
pub(crate) struct CentralEntry<'a> {
    pub name: &'a str,
    pub flags: u16,
    /// 0 stored, 8 deflated.
    pub method: u16,
    pub mtime_secs: i64,
    pub crc32: u32,
    pub compressed: u64,
    pub size: u64,
    pub header_offset: u64,
    /// The member's local header carried a zip64 field.
    pub zip64_local: bool,
}

impl CentralEntry<'_> {
    /// Which values move into the zip64 field: size, compressed size,
    /// header offset (4.5.3: only those that do not fit, in this order).
    fn zip64_fields(&self) -> (bool, bool, bool) {
        (
            self.size >= ZIP64_LIMIT,
            self.compressed >= ZIP64_LIMIT,
            self.header_offset >= ZIP64_LIMIT,
        )
    }

    fn extra_len(&self) -> u64 {
        let (size, compressed, offset) = self.zip64_fields();
        let fields = u64::from(size) + u64::from(compressed) + u64::from(offset);
        if fields == 0 { 0 } else { 4 + 8 * fields }
    }

    /// The header's length in bytes.
    pub fn len(&self) -> u64 {
        CENTRAL_HEADER_LEN + self.name.len() as u64 + self.extra_len()
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let (size64, compressed64, offset64) = self.zip64_fields();
        let extra_len = self.extra_len();
        let version = if extra_len > 0 || self.zip64_local {
            VERSION_ZIP64
        } else {
            VERSION_DEFAULT
        };
        let (time, date) = dos_datetime(self.mtime_secs);
        let clamp = |value: u64, moved: bool| {
            if moved {
                ZIP64_LIMIT as u32
            } else {
                value as u32
            }
        };
        put_u32(out, CENTRAL_HEADER_SIG);
        put_u16(out, HOST_UNIX | version);
        put_u16(out, version);
        put_u16(out, self.flags);
        put_u16(out, self.method);
        put_u16(out, time);
        put_u16(out, date);
        put_u32(out, self.crc32);
        put_u32(out, clamp(self.compressed, compressed64));
        put_u32(out, clamp(self.size, size64));
        put_u16(out, self.name.len() as u16);
        put_u16(out, extra_len as u16);
        put_u16(out, 0); // comment length
        put_u16(out, 0); // disk number start
        put_u16(out, 0); // internal attributes
        put_u32(out, EXTERNAL_ATTRS);
        put_u32(out, clamp(self.header_offset, offset64));
        out.extend_from_slice(self.name.as_bytes());
        if extra_len > 0 {
            put_u16(out, 0x0001);
            put_u16(out, (extra_len - 4) as u16);
            if size64 {
                put_u64(out, self.size);
            }
            if compressed64 {
                put_u64(out, self.compressed);
            }
            if offset64 {
                put_u64(out, self.header_offset);
            }
        }
    }
}

/// True when a central directory of `entries` headers at `offset`, `len`
/// bytes long, needs the zip64 end records.
pub(crate) fn needs_zip64_end(entries: usize, offset: u64, len: u64) -> bool {
    entries >= ZIP64_ENTRY_LIMIT || offset >= ZIP64_LIMIT || len >= ZIP64_LIMIT
}

/// The length of the end records after such a central directory.
pub(crate) fn end_records_len(entries: usize, offset: u64, len: u64) -> u64 {
    let zip64 = if needs_zip64_end(entries, offset, len) {
        ZIP64_EOCD_LEN + ZIP64_LOCATOR_LEN
    } else {
        0
    };
    zip64 + EOCD_LEN
}

/// The longest archive comment the end record can hold.
pub(crate) const COMMENT_MAX: usize = 0xFFFF;

/// Writes the end records (zip64 ones where needed, then the classic one)
/// after a central directory of `entries` headers at `offset`, `len` long,
/// with `comment` (at most [`COMMENT_MAX`] bytes) at the very end.
pub(crate) fn write_end_records(
    out: &mut Vec<u8>,
    entries: usize,
    offset: u64,
    len: u64,
    comment: &[u8],
) {
    assert!(
        comment.len() <= COMMENT_MAX,
        "a comment fits its length field"
    );
    let count = entries as u64;
    if needs_zip64_end(entries, offset, len) {
        let zip64_end = offset + len;
        put_u32(out, ZIP64_EOCD_SIG);
        put_u64(out, ZIP64_EOCD_LEN - 12);
        put_u16(out, HOST_UNIX | VERSION_ZIP64);
        put_u16(out, VERSION_ZIP64);
        put_u32(out, 0); // this disk
        put_u32(out, 0); // disk with the central directory
        put_u64(out, count);
        put_u64(out, count);
        put_u64(out, len);
        put_u64(out, offset);
        put_u32(out, ZIP64_LOCATOR_SIG);
        put_u32(out, 0);
        put_u64(out, zip64_end);
        put_u32(out, 1); // total disks
    }
    put_u32(out, EOCD_SIG);
    put_u16(out, 0);
    put_u16(out, 0);
    let entries16 = count.min(ZIP64_ENTRY_LIMIT as u64) as u16;
    put_u16(out, entries16);
    put_u16(out, entries16);
    put_u32(out, len.min(ZIP64_LIMIT) as u32);
    put_u32(out, offset.min(ZIP64_LIMIT) as u32);
    put_u16(out, comment.len() as u16);
    out.extend_from_slice(comment);
}
