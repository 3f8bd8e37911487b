//! The archive plan: any member list gives a plan or a clean error; in a
//! plan, member offsets strictly increase, each member's parts are
//! contiguous, and the length is the sum of every part, computed here
//! independently of the plan's own arithmetic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::archive::plan::{ArchivePlan, Fingerprint, MemberSpec, Method};

const LIMIT: u64 = 0xFFFF_FFFF;

fn members(data: &[u8]) -> Vec<MemberSpec> {
    data.chunks(12)
        .enumerate()
        .map(|(i, chunk)| {
            let mut raw = [0u8; 12];
            raw[..chunk.len()].copy_from_slice(chunk);
            // Sizes across the 4 GiB boundary, up to 2^44.
            let size = u64::from_le_bytes(raw[..8].try_into().unwrap()) >> (raw[8] % 64).max(20);
            let name = match raw[9] % 4 {
                0 => format!("m{i}.bin"),
                1 => format!("dir/sub/m{i}.safetensors"),
                2 => format!("名前/{i}.json"),
                _ => String::from_utf8_lossy(&raw[10..]).into_owned(),
            };
            let method = match raw[10] % 3 {
                0 => Method::Stored,
                1 => Method::StoredKnown { crc32: 7 },
                _ => Method::Deflated { compressed_size: size / 3 + u64::from(raw[11]), crc32: 7 },
            };
            MemberSpec {
                name,
                fingerprint: Fingerprint { dev: 1, ino: i as u64, size, mtime_ns: i128::from(raw[11]) << 40 },
                method,
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let specs = members(data);
    let Ok(plan) = ArchivePlan::new(specs.clone()) else {
        return;
    };
    let mut expected = 0u64;
    let mut central = 0u64;
    let mut previous = None;
    for (m, spec) in plan.members().iter().zip(&specs) {
        assert_eq!(&m.spec, spec);
        assert_eq!(m.header_offset, expected, "contiguous");
        if let Some(p) = previous {
            assert!(m.header_offset > p, "strictly increasing");
        }
        previous = Some(m.header_offset);
        let data_len = match spec.method {
            Method::Stored | Method::StoredKnown { .. } => spec.fingerprint.size,
            Method::Deflated { compressed_size, .. } => compressed_size,
        };
        let zip64 = spec.fingerprint.size >= LIMIT || data_len >= LIMIT;
        let header = 30 + spec.name.len() as u64 + if zip64 { 20 } else { 0 };
        let descriptor = match (spec.method, zip64) {
            (Method::Stored, false) => 16,
            (Method::Stored, true) => 24,
            _ => 0,
        };
        assert_eq!(m.data_offset, m.header_offset + header);
        assert_eq!(m.descriptor_offset, m.data_offset + data_len);
        assert_eq!(m.end_offset, m.descriptor_offset + descriptor);
        let moved = u64::from(spec.fingerprint.size >= LIMIT)
            + u64::from(data_len >= LIMIT)
            + u64::from(m.header_offset >= LIMIT);
        central += 46 + spec.name.len() as u64 + if moved > 0 { 4 + 8 * moved } else { 0 };
        expected = m.end_offset;
    }
    assert_eq!(plan.central_offset(), expected);
    let zip64_end = plan.members().len() >= 0xFFFF || expected >= LIMIT || central >= LIMIT;
    assert_eq!(plan.has_zip64_end(), zip64_end);
    let total = expected + central + if zip64_end { 76 } else { 0 } + 22;
    assert_eq!(plan.len(), total, "the length is the sum of its parts");
    // Every offset before the central directory has an owner, in order.
    for (index, m) in plan.members().iter().enumerate() {
        assert_eq!(plan.member_at(m.header_offset), Some(index));
        assert_eq!(plan.member_at(m.end_offset - 1), Some(index));
    }
    assert_eq!(plan.member_at(plan.central_offset()), None);
    // The tail is as long as the plan says.
    let tail = plan.tail(&vec![0; plan.members().len()]);
    assert_eq!(tail.len() as u64, plan.len() - plan.central_offset());
});
