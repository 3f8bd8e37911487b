//! The bytes of each ZIP record a plan lays out: local headers, data
//! descriptors, central headers and the end records (APPNOTE.TXT 4.3),
//! little-endian, with zip64 fields exactly where the plan needs them.

use super::*;

impl ArchivePlan {
    /// The local file header of member `index`.
    pub fn local_header(&self, index: usize) -> Vec<u8> {
        let spec = &self.members[index].spec;
        let entry = spec.local_entry();
        let mut out = Vec::with_capacity(entry.len() as usize);
        entry.write(&mut out);
        out
    }

    /// The data descriptor of member `index` (empty for deflated members).
    pub fn descriptor(&self, index: usize, crc32: u32) -> Vec<u8> {
        let spec = &self.members[index].spec;
        let mut out = Vec::with_capacity(descriptor_len(spec) as usize);
        if spec.method == Method::Stored {
            write_descriptor(
                &mut out,
                crc32,
                spec.data_len(),
                spec.size(),
                spec.zip64_sizes(),
            );
        }
        out
    }

    /// The central directory and end records, given the CRC-32 of every
    /// member in order. This is the archive's tail from `central_offset()`.
    pub fn tail(&self, crcs: &[u32]) -> Vec<u8> {
        assert_eq!(crcs.len(), self.members.len(), "one CRC per member");
        let mut out = Vec::with_capacity((self.len - self.central_offset) as usize);
        for (member, &crc) in self.members.iter().zip(crcs) {
            member.central_entry(crc).write(&mut out);
        }
        write_end_records(
            &mut out,
            self.members.len(),
            self.central_offset,
            self.central_len,
            &self.comment,
        );
        debug_assert_eq!(out.len() as u64, self.len - self.central_offset);
        out
    }
}
