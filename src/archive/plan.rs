//! `ArchivePlan`: the byte layout of a ZIP archive, computed from metadata
//! alone before the first byte is sent.
//!
//! The plan is a pure value: members in order with the offsets of their local
//! header, data and data descriptor, then the central directory and the end
//! records. Because every length is known, the archive has an exact
//! `Content-Length` and any byte range can be produced without producing what
//! lies before it (`archive::stream`). The framing follows APPNOTE.TXT 6.3:
//!
//! - Stored members set flag bit 3 and are followed by a data descriptor: the
//!   CRC-32 is known only after reading, and a CRC pass must not delay the
//!   first byte. Their local header carries zero CRC and sizes, as 4.4.4 says.
//! - Deflated members carry CRC and sizes in the local header, since both are
//!   known from the sizing pass (`archive::digest`), and no descriptor.
//! - Zip64 fields appear exactly where a value does not fit in 32 bits (a
//!   size or offset at or over 0xFFFF_FFFF, or 65535 entries); an archive that
//!   needs none carries none, since forced zip64 breaks some readers.
//! - Names are UTF-8 (flag bit 11 when not plain ASCII); times are the file's
//!   mtime in UTC as a DOS date; modes are 0644 from a Unix host.

use std::fmt;

mod bytes;

use super::records;
pub use super::records::dos_datetime;
use super::records::*;

/// How a member's data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Method 0: the file's bytes as they are, CRC in a trailing descriptor.
    Stored,
    /// Method 0 with the CRC known before the first byte (the digest
    /// index): CRC and sizes in the local header, no descriptor, so
    /// streaming readers that never see the central directory read it.
    StoredKnown { crc32: u32 },
    /// Method 8: raw deflate, with the compressed size and CRC found by a
    /// sizing pass before planning.
    Deflated { compressed_size: u64, crc32: u32 },
}

/// What identifies one version of a file: a change in any field means the
/// bytes may differ. Keys the CRC and deflate caches and feeds the ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

/// One file to put in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// The member's path inside the archive, `/`-separated, relative.
    pub name: String,
    pub fingerprint: Fingerprint,
    pub method: Method,
}

impl MemberSpec {
    pub fn size(&self) -> u64 {
        self.fingerprint.size
    }

    /// Bytes of member data in the archive.
    pub fn data_len(&self) -> u64 {
        match self.method {
            Method::Stored | Method::StoredKnown { .. } => self.fingerprint.size,
            Method::Deflated {
                compressed_size, ..
            } => compressed_size,
        }
    }

    /// True when the sizes need 64 bits (the local header then carries a
    /// zip64 extra field and the descriptor 8-byte sizes).
    fn zip64_sizes(&self) -> bool {
        self.size() >= ZIP64_LIMIT || self.data_len() >= ZIP64_LIMIT
    }

    fn mtime_secs(&self) -> i64 {
        self.fingerprint.mtime_ns.div_euclid(1_000_000_000) as i64
    }

    /// What the member's local header says.
    fn local_entry(&self) -> LocalEntry<'_> {
        let (crc32, compressed, size) = match self.method {
            // Bit 3: CRC and sizes are zero here and follow in the descriptor.
            Method::Stored => (0, 0, 0),
            Method::StoredKnown { crc32 } => (crc32, self.size(), self.size()),
            Method::Deflated {
                compressed_size,
                crc32,
            } => (crc32, compressed_size, self.size()),
        };
        LocalEntry {
            name: &self.name,
            flags: self.flags(),
            method: self.method_code(),
            mtime_secs: self.mtime_secs(),
            crc32,
            compressed,
            size,
            zip64: self.zip64_sizes(),
        }
    }

    fn flags(&self) -> u16 {
        let utf8 = if self.name.is_ascii() { 0 } else { FLAG_UTF8 };
        match self.method {
            Method::Stored => FLAG_DESCRIPTOR | utf8,
            Method::StoredKnown { .. } | Method::Deflated { .. } => utf8,
        }
    }

    fn method_code(&self) -> u16 {
        match self.method {
            Method::Stored | Method::StoredKnown { .. } => 0,
            Method::Deflated { .. } => 8,
        }
    }
}

/// A member placed in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMember {
    pub spec: MemberSpec,
    /// Offset of the local file header.
    pub header_offset: u64,
    /// Offset of the first data byte.
    pub data_offset: u64,
    /// Offset of the data descriptor (equal to the end of data when none).
    pub descriptor_offset: u64,
    /// Offset just past this member (the next header).
    pub end_offset: u64,
}

impl PlannedMember {
    pub fn data_len(&self) -> u64 {
        self.descriptor_offset - self.data_offset
    }

    /// What the member's central directory header says, given its CRC.
    fn central_entry(&self, crc32: u32) -> CentralEntry<'_> {
        let spec = &self.spec;
        CentralEntry {
            name: &spec.name,
            flags: spec.flags(),
            method: spec.method_code(),
            mtime_secs: spec.mtime_secs(),
            crc32,
            compressed: spec.data_len(),
            size: spec.size(),
            header_offset: self.header_offset,
            zip64_local: spec.zip64_sizes(),
        }
    }
}

/// Why a member list cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A name is empty, absolute, longer than 65535 bytes, or has a `..`,
    /// empty or backslash component.
    BadName(String),
    /// Two members have the same name.
    DuplicateName(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::BadName(name) => write!(f, "member name {name:?} cannot be archived"),
            PlanError::DuplicateName(name) => write!(f, "member name {name:?} appears twice"),
        }
    }
}

impl std::error::Error for PlanError {}

/// The complete layout of one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePlan {
    members: Vec<PlannedMember>,
    central_offset: u64,
    central_len: u64,
    /// Where the zip64 end record starts, when one is needed.
    zip64_end_offset: Option<u64>,
    len: u64,
    /// The archive comment, after the end record.
    comment: Vec<u8>,
}

impl ArchivePlan {
    /// Lays out `specs` in the given order.
    pub fn new(specs: Vec<MemberSpec>) -> Result<ArchivePlan, PlanError> {
        let mut names = std::collections::HashSet::with_capacity(specs.len());
        let mut members = Vec::with_capacity(specs.len());
        let mut offset = 0u64;
        for spec in specs {
            check_name(&spec.name)?;
            if !names.insert(spec.name.clone()) {
                return Err(PlanError::DuplicateName(spec.name));
            }
            let header_offset = offset;
            let data_offset = header_offset + local_header_len(&spec);
            let descriptor_offset = data_offset + spec.data_len();
            let end_offset = descriptor_offset + descriptor_len(&spec);
            offset = end_offset;
            members.push(PlannedMember {
                spec,
                header_offset,
                data_offset,
                descriptor_offset,
                end_offset,
            });
        }
        let central_offset = offset;
        let central_len: u64 = members.iter().map(|m| m.central_entry(0).len()).sum();
        let end = central_offset + central_len;
        let zip64_end_offset =
            needs_zip64_end(members.len(), central_offset, central_len).then_some(end);
        let len = end + end_records_len(members.len(), central_offset, central_len);
        Ok(ArchivePlan {
            members,
            central_offset,
            central_len,
            zip64_end_offset,
            len,
            comment: Vec::new(),
        })
    }

    /// The same plan with an archive comment (cut to what the end record
    /// holds): what readers show as the archive's description.
    pub fn with_comment(mut self, comment: &str) -> ArchivePlan {
        let mut bytes = comment.as_bytes().to_vec();
        bytes.truncate(COMMENT_MAX);
        self.len = self.len - self.comment.len() as u64 + bytes.len() as u64;
        self.comment = bytes;
        self
    }

    /// The archive comment (empty when there is none).
    pub fn comment(&self) -> &[u8] {
        &self.comment
    }

    /// Total length of the archive in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn members(&self) -> &[PlannedMember] {
        &self.members
    }

    /// Offset of the central directory: everything from here on depends on
    /// the CRCs of all stored members.
    pub fn central_offset(&self) -> u64 {
        self.central_offset
    }

    /// True when the archive carries zip64 end records.
    pub fn has_zip64_end(&self) -> bool {
        self.zip64_end_offset.is_some()
    }

    /// Index of the member whose bytes (header, data or descriptor) contain
    /// `offset`, or `None` when `offset` lies in the central directory or past it.
    pub fn member_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.central_offset {
            return None;
        }
        // The first member whose end lies past `offset`.
        Some(self.members.partition_point(|m| m.end_offset <= offset))
    }
}

fn check_name(name: &str) -> Result<(), PlanError> {
    let bad = name.is_empty()
        || name.len() > u16::MAX as usize
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(PlanError::BadName(name.to_owned()))
    } else {
        Ok(())
    }
}

fn local_header_len(spec: &MemberSpec) -> u64 {
    spec.local_entry().len()
}

fn descriptor_len(spec: &MemberSpec) -> u64 {
    match spec.method {
        Method::Stored => records::descriptor_len(spec.zip64_sizes()),
        Method::StoredKnown { .. } | Method::Deflated { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn stored(name: &str, size: u64) -> MemberSpec {
        MemberSpec {
            name: name.to_owned(),
            fingerprint: Fingerprint {
                dev: 1,
                ino: 1,
                size,
                mtime_ns: 1_700_000_000_000_000_000,
            },
            method: Method::Stored,
        }
    }

    #[test]
    fn small_archive_layout() {
        let plan = ArchivePlan::new(vec![stored("a.bin", 10), stored("dir/b.txt", 0)]).unwrap();
        let m = plan.members();
        assert_eq!(m[0].header_offset, 0);
        assert_eq!(m[0].data_offset, 30 + 5);
        assert_eq!(m[0].descriptor_offset, 35 + 10);
        assert_eq!(m[0].end_offset, 45 + 16);
        assert_eq!(m[1].header_offset, 61);
        assert_eq!(m[1].end_offset, 61 + 30 + 9 + 16);
        assert_eq!(plan.central_offset(), 116);
        assert_eq!(plan.len(), 116 + (46 + 5) + (46 + 9) + 22);
        assert!(!plan.has_zip64_end());
        assert_eq!(plan.local_header(0).len() as u64, m[0].data_offset);
        assert_eq!(plan.tail(&[0, 0]).len() as u64, plan.len() - 116);
    }

    #[test]
    fn an_empty_archive_is_an_end_record() {
        let plan = ArchivePlan::new(Vec::new()).unwrap();
        assert_eq!(plan.len(), 22);
        assert_eq!(plan.tail(&[]), {
            let mut eocd = vec![0x50, 0x4b, 0x05, 0x06];
            eocd.extend([0; 18]);
            eocd
        });
    }

    #[test]
    fn zip64_only_where_needed() {
        let just_under = ArchivePlan::new(vec![stored("a", ZIP64_LIMIT - 100)]).unwrap();
        assert_eq!(just_under.members()[0].data_offset, 31);
        assert!(!just_under.has_zip64_end());
        // A member just under the limit has no zip64 field of its own, but the
        // central directory after it starts past 4 GiB.
        let under = ArchivePlan::new(vec![stored("a", ZIP64_LIMIT - 1)]).unwrap();
        assert_eq!(under.members()[0].data_offset, 31);
        assert!(under.has_zip64_end());
        let huge = ArchivePlan::new(vec![stored("a", 5 << 30), stored("b", 1)]).unwrap();
        assert_eq!(huge.members()[0].data_offset, 31 + 20);
        assert_eq!(
            huge.members()[0].end_offset - huge.members()[0].descriptor_offset,
            24
        );
        // The second member is small but lies past 4 GiB: only its central
        // header needs a zip64 offset.
        assert_eq!(
            huge.members()[1].data_offset - huge.members()[1].header_offset,
            31
        );
        assert!(huge.has_zip64_end());
        let tail = huge.tail(&[1, 2]);
        assert_eq!(tail.len() as u64, huge.len() - huge.central_offset());
    }

    #[test]
    fn names_must_be_relative_and_unique() {
        for bad in ["", "/abs", "a//b", "../x", "a/./b", "a\\b", "a/"] {
            assert!(
                matches!(
                    ArchivePlan::new(vec![stored(bad, 1)]),
                    Err(PlanError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ArchivePlan::new(vec![stored("a", 1), stored("a", 2)]),
            Err(PlanError::DuplicateName(_))
        ));
    }

    #[test]
    fn member_at_finds_the_owner_of_every_byte() {
        let plan = ArchivePlan::new(vec![stored("a", 3), stored("b", 0), stored("c", 5)]).unwrap();
        for (index, m) in plan.members().iter().enumerate() {
            for offset in m.header_offset..m.end_offset {
                assert_eq!(plan.member_at(offset), Some(index));
            }
        }
        assert_eq!(plan.member_at(plan.central_offset()), None);
    }

    #[test]
    fn dos_dates() {
        // 2024-02-29T13:45:58Z
        let (time, date) = dos_datetime(1_709_214_358);
        assert_eq!(time, 13 << 11 | 45 << 5 | 29);
        assert_eq!(date, (2024 - 1980) << 9 | 2 << 5 | 29);
        assert_eq!(dos_datetime(0), (0, 1 << 5 | 1));
    }
}
