//! The bytes of each ZIP record a plan lays out: local headers, data
//! descriptors, central headers and the end records (APPNOTE.TXT 4.3),
//! little-endian, with zip64 fields exactly where the plan needs them.

use super::*;

impl ArchivePlan {
    /// The local file header of member `index`.
    pub fn local_header(&self, index: usize) -> Vec<u8> {
        let spec = &self.members[index].spec;
        let zip64 = spec.zip64_sizes();
        let (time, date) = spec.dos_datetime();
        let (crc, sizes) = match spec.method {
            // Bit 3: CRC and sizes are zero here and follow in the descriptor.
            Method::Stored => (0, (0, 0)),
            Method::Deflated {
                compressed_size,
                crc32,
            } => (crc32, (compressed_size, spec.size())),
        };
        let mut out = Vec::with_capacity(local_header_len(spec) as usize);
        put_u32(&mut out, LOCAL_HEADER_SIG);
        put_u16(
            &mut out,
            if zip64 {
                VERSION_ZIP64
            } else {
                VERSION_DEFAULT
            },
        );
        put_u16(&mut out, spec.flags());
        put_u16(&mut out, spec.method_code());
        put_u16(&mut out, time);
        put_u16(&mut out, date);
        put_u32(&mut out, crc);
        if zip64 {
            put_u32(&mut out, ZIP64_LIMIT as u32);
            put_u32(&mut out, ZIP64_LIMIT as u32);
        } else {
            put_u32(&mut out, sizes.0 as u32);
            put_u32(&mut out, sizes.1 as u32);
        }
        put_u16(&mut out, spec.name.len() as u16);
        put_u16(&mut out, if zip64 { 20 } else { 0 });
        out.extend_from_slice(spec.name.as_bytes());
        if zip64 {
            // 4.5.3: in a local header the zip64 field holds both sizes.
            put_u16(&mut out, 0x0001);
            put_u16(&mut out, 16);
            put_u64(&mut out, sizes.1);
            put_u64(&mut out, sizes.0);
        }
        out
    }

    /// The data descriptor of member `index` (empty for deflated members).
    pub fn descriptor(&self, index: usize, crc32: u32) -> Vec<u8> {
        let spec = &self.members[index].spec;
        let mut out = Vec::with_capacity(descriptor_len(spec) as usize);
        if spec.method != Method::Stored {
            return out;
        }
        put_u32(&mut out, DESCRIPTOR_SIG);
        put_u32(&mut out, crc32);
        if spec.zip64_sizes() {
            put_u64(&mut out, spec.data_len());
            put_u64(&mut out, spec.size());
        } else {
            put_u32(&mut out, spec.data_len() as u32);
            put_u32(&mut out, spec.size() as u32);
        }
        out
    }

    /// The central directory and end records, given the CRC-32 of every
    /// member in order. This is the archive's tail from `central_offset()`.
    pub fn tail(&self, crcs: &[u32]) -> Vec<u8> {
        assert_eq!(crcs.len(), self.members.len(), "one CRC per member");
        let mut out = Vec::with_capacity((self.len - self.central_offset) as usize);
        for (member, &crc) in self.members.iter().zip(crcs) {
            write_central_header(&mut out, member, crc);
        }
        let entries = self.members.len() as u64;
        if let Some(zip64_end) = self.zip64_end_offset {
            put_u32(&mut out, ZIP64_EOCD_SIG);
            put_u64(&mut out, ZIP64_EOCD_LEN - 12);
            put_u16(&mut out, HOST_UNIX | VERSION_ZIP64);
            put_u16(&mut out, VERSION_ZIP64);
            put_u32(&mut out, 0); // this disk
            put_u32(&mut out, 0); // disk with the central directory
            put_u64(&mut out, entries);
            put_u64(&mut out, entries);
            put_u64(&mut out, self.central_len);
            put_u64(&mut out, self.central_offset);
            put_u32(&mut out, ZIP64_LOCATOR_SIG);
            put_u32(&mut out, 0);
            put_u64(&mut out, zip64_end);
            put_u32(&mut out, 1); // total disks
        }
        put_u32(&mut out, EOCD_SIG);
        put_u16(&mut out, 0);
        put_u16(&mut out, 0);
        let entries16 = entries.min(ZIP64_ENTRY_LIMIT as u64) as u16;
        put_u16(&mut out, entries16);
        put_u16(&mut out, entries16);
        put_u32(&mut out, self.central_len.min(ZIP64_LIMIT) as u32);
        put_u32(&mut out, self.central_offset.min(ZIP64_LIMIT) as u32);
        put_u16(&mut out, 0); // comment length
        debug_assert_eq!(out.len() as u64, self.len - self.central_offset);
        out
    }
}

fn write_central_header(out: &mut Vec<u8>, member: &PlannedMember, crc: u32) {
    let spec = &member.spec;
    let (size64, data64, offset64) = central_zip64_fields(member);
    let extra_len = central_extra_len(member);
    let version = if extra_len > 0 || spec.zip64_sizes() {
        VERSION_ZIP64
    } else {
        VERSION_DEFAULT
    };
    let (time, date) = spec.dos_datetime();
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
    put_u16(out, spec.flags());
    put_u16(out, spec.method_code());
    put_u16(out, time);
    put_u16(out, date);
    put_u32(out, crc);
    put_u32(out, clamp(spec.data_len(), data64));
    put_u32(out, clamp(spec.size(), size64));
    put_u16(out, spec.name.len() as u16);
    put_u16(out, extra_len as u16);
    put_u16(out, 0); // comment length
    put_u16(out, 0); // disk number start
    put_u16(out, 0); // internal attributes
    put_u32(out, EXTERNAL_ATTRS);
    put_u32(out, clamp(member.header_offset, offset64));
    out.extend_from_slice(spec.name.as_bytes());
    if extra_len > 0 {
        // 4.5.3: only the moved values, in this fixed order.
        put_u16(out, 0x0001);
        put_u16(out, (extra_len - 4) as u16);
        if size64 {
            put_u64(out, spec.size());
        }
        if data64 {
            put_u64(out, spec.data_len());
        }
        if offset64 {
            put_u64(out, member.header_offset);
        }
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
