//! Bounded caches of what was learned by reading files, keyed by
//! `Fingerprint` (device, inode, size, mtime): a changed file is a new key,
//! so a stale entry is never served, only aged out.
//!
//! - CRC-32s and deflated sizes ([`Digest`]), so exact lengths need no
//!   second sizing pass and resumes need no CRC pass.
//! - The deflated bytes of small text members, so a member deflated once
//!   (by the sizing pass, say) is not deflated again for every download.
//!   Bounded in bytes; larger members are re-deflated deterministically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::plan::Fingerprint;

/// Digests kept; each is a few dozen bytes.
pub const DIGEST_ENTRIES: usize = 16 * 1024;
/// Total deflated bytes kept, across all members.
pub const DEFLATED_BYTES: usize = 8 << 20;
/// Largest deflated member kept.
pub const DEFLATED_MEMBER_MAX: usize = 4 << 20;

/// What is known about one file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub crc32: u32,
    /// Length of the raw deflate stream (`archive::digest::Deflater`), when computed.
    pub deflated_size: Option<u64>,
}

/// A map from file versions to values, bounded by the sum of the values'
/// weights, evicting the least recently used.
pub struct Lru<V> {
    inner: Mutex<LruInner<V>>,
    capacity: usize,
    weigh: fn(&V) -> usize,
}

struct LruInner<V> {
    map: HashMap<Fingerprint, (V, u64)>,
    clock: u64,
    weight: usize,
}

impl<V: Clone> Lru<V> {
    pub fn new(capacity: usize, weigh: fn(&V) -> usize) -> Lru<V> {
        Lru {
            inner: Mutex::new(LruInner {
                map: HashMap::new(),
                clock: 0,
                weight: 0,
            }),
            capacity,
            weigh,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruInner<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &Fingerprint) -> Option<V> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.map.get_mut(key).map(|(value, used)| {
            *used = now;
            value.clone()
        })
    }

    /// Inserts or replaces; a value heavier than the whole capacity is not kept.
    pub fn put(&self, key: Fingerprint, value: V) {
        let weight = (self.weigh)(&value);
        if weight > self.capacity {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((old, _)) = inner.map.remove(&key) {
            inner.weight -= (self.weigh)(&old);
        }
        while inner.weight + weight > self.capacity {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((old, _)) = inner.map.remove(&oldest) {
                inner.weight -= (self.weigh)(&old);
            }
        }
        inner.weight += weight;
        inner.map.insert(key, (value, now));
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The summed weight of the entries.
    pub fn weight(&self) -> usize {
        self.lock().weight
    }
}

/// The caches shared by every download.
pub struct Caches {
    pub digests: Lru<Digest>,
    pub deflated: Lru<Arc<[u8]>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            digests: Lru::new(DIGEST_ENTRIES, |_| 1),
            deflated: Lru::new(DEFLATED_BYTES, |bytes| bytes.len()),
        }
    }
}

impl Caches {
    pub fn digest(&self, key: &Fingerprint) -> Option<Digest> {
        self.digests.get(key)
    }

    /// Records a CRC, keeping a deflated size learned earlier for the same
    /// version.
    pub fn put_crc(&self, key: Fingerprint, crc32: u32) {
        let deflated_size = self
            .digests
            .get(&key)
            .filter(|d| d.crc32 == crc32)
            .and_then(|d| d.deflated_size);
        self.digests.put(
            key,
            Digest {
                crc32,
                deflated_size,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: 5,
        }
    }

    #[test]
    fn bounded_by_count_keeping_recent_entries() {
        let lru: Lru<u32> = Lru::new(2, |_| 1);
        lru.put(key(1), 11);
        lru.put(key(2), 22);
        assert_eq!(lru.get(&key(1)), Some(11)); // 1 is now newer than 2
        lru.put(key(3), 33);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&key(2)), None);
        assert!(lru.get(&key(1)).is_some() && lru.get(&key(3)).is_some());
    }

    #[test]
    fn bounded_by_bytes() {
        let lru: Lru<Arc<[u8]>> = Lru::new(10, |b| b.len());
        lru.put(key(1), vec![0; 6].into());
        lru.put(key(2), vec![0; 6].into());
        assert_eq!((lru.len(), lru.weight()), (1, 6));
        lru.put(key(3), vec![0; 11].into()); // heavier than everything: not kept
        assert_eq!(lru.get(&key(3)), None);
        lru.put(key(2), vec![0; 2].into()); // replacing adjusts the weight
        assert_eq!(lru.weight(), 2);
    }

    #[test]
    fn a_crc_update_keeps_a_matching_deflated_size() {
        let caches = Caches::default();
        caches.digests.put(
            key(1),
            Digest {
                crc32: 7,
                deflated_size: Some(99),
            },
        );
        caches.put_crc(key(1), 7);
        assert_eq!(caches.digest(&key(1)).unwrap().deflated_size, Some(99));
        caches.put_crc(key(1), 8);
        assert_eq!(caches.digest(&key(1)).unwrap().deflated_size, None);
    }
}
