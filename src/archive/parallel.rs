//! Deflate on every core, as pigz does: a member's bytes cut into blocks,
//! each block deflated on its own and ended on a byte boundary (a sync
//! flush; the last block is finished), the blocks joined in order into one
//! raw deflate stream. A text block is primed with the 32 KiB before it,
//! so matches across block boundaries are not lost.
//!
//! One pool of compressor threads, one per core, serves every download;
//! a download keeps at most [`IN_FLIGHT`] blocks out at once, so its
//! memory is bounded (about 2 MiB per block in flight) whatever the file
//! size. The reading thread computes the CRC-32 and writes the blocks out
//! in order as they come back.
//!
//! Dense files (tensors, optimizer states) are deflated with the RLE
//! strategy: float weights hold almost no repeated strings, so string
//! matching (what levels 1-9 spend their time on) finds nothing a Huffman
//! code does not, while runs of zeros still shrink. On float32 weights it
//! gives the same size as level 3 at three times the speed. Text keeps
//! [`DEFLATE_LEVEL`] with full matching.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::thread;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status, Strategy};

use super::digest::DEFLATE_LEVEL;

/// Bytes of input per block.
pub const BLOCK: usize = 512 * 1024;
/// What a text block is primed with: deflate's whole window.
const DICTIONARY: usize = 32 * 1024;
/// Blocks a download has out at once beyond the pool's size.
const IN_FLIGHT_EXTRA: usize = 1;

/// What kind of bytes a member holds, which decides how it is deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Configs, tokenizers, logs: full string matching.
    Text,
    /// Tensors and other binaries: run-length and Huffman coding only.
    Dense,
}

/// What deflating one member gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflated {
    pub crc32: u32,
    /// Bytes read.
    pub size: u64,
    /// Bytes written.
    pub compressed: u64,
}

struct Job {
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    kind: Kind,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// The compressor threads, started on first use.
fn pool() -> &'static Mutex<Sender<Job>> {
    static POOL: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = channel::<Job>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for index in 0..threads() {
            let queue = std::sync::Arc::clone(&queue);
            let spawned = thread::Builder::new()
                .name(format!("deflate-{index}"))
                .spawn(move || compress_jobs(&queue));
            if let Err(e) = spawned {
                log::error!("cannot start a deflate thread: {e}");
            }
        }
        Mutex::new(jobs)
    })
}

/// One compressor thread per core.
fn threads() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

fn compress_jobs(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = deflate_block(&job.data, &job.dictionary, job.kind, job.last);
        // The download may have gone meanwhile.
        let _ = job.reply.send(result);
    }
}

/// Deflates one block: a sync-flushed piece of a stream, or its end.
pub fn deflate_block(
    data: &[u8],
    dictionary: &[u8],
    kind: Kind,
    last: bool,
) -> io::Result<Vec<u8>> {
    let config = match kind {
        Kind::Text => DeflateConfig {
            level: DEFLATE_LEVEL as i32,
            window_bits: -15,
            ..DeflateConfig::default()
        },
        Kind::Dense => DeflateConfig {
            level: 1,
            window_bits: -15,
            strategy: Strategy::Rle,
            ..DeflateConfig::default()
        },
    };
    let mut deflate = Deflate::new_with_config(config);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(|e| io::Error::other(format!("deflate dictionary: {}", e.as_str())))?;
    }
    // Room for the worst case (stored blocks) and the flush marker.
    let mut out = vec![0u8; zlib_rs::compress_bound(data.len()) + 64];
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    let status = deflate
        .compress(data, &mut out, flush)
        .map_err(|e| io::Error::other(format!("deflate: {}", e.as_str())))?;
    let complete = if last {
        status == Status::StreamEnd
    } else {
        status == Status::Ok
    };
    if !complete || deflate.total_in() != data.len() as u64 {
        return Err(io::Error::other("deflate: the output buffer was too small"));
    }
    out.truncate(deflate.total_out() as usize);
    Ok(out)
}

/// Reads `reader` to its end and writes it to `out` as one raw deflate
/// stream, its blocks deflated on the pool.
pub fn deflate_to(reader: &mut dyn Read, kind: Kind, out: &mut dyn Write) -> io::Result<Deflated> {
    deflate_blocks(reader, kind, out, BLOCK)
}

/// [`deflate_to`] with blocks of `block` bytes (tests use small ones).
fn deflate_blocks(
    reader: &mut dyn Read,
    kind: Kind,
    out: &mut dyn Write,
    block: usize,
) -> io::Result<Deflated> {
    let in_flight = threads() + IN_FLIGHT_EXTRA;
    let mut pending: VecDeque<Receiver<io::Result<Vec<u8>>>> = VecDeque::new();
    let mut hasher = crc32fast::Hasher::new();
    let mut done = Deflated {
        crc32: 0,
        size: 0,
        compressed: 0,
    };
    let mut dictionary = Vec::new();
    let mut current = read_block(reader, block)?;
    loop {
        // A block is the last when nothing follows it.
        let next = if current.len() == block {
            read_block(reader, block)?
        } else {
            Vec::new()
        };
        let last = next.is_empty();
        hasher.update(&current);
        done.size += current.len() as u64;
        let primer = match kind {
            Kind::Text => {
                let tail = current[current.len().saturating_sub(DICTIONARY)..].to_vec();
                std::mem::replace(&mut dictionary, tail)
            }
            Kind::Dense => Vec::new(),
        };
        let (reply, result) = sync_channel(1);
        let job = Job {
            data: current,
            dictionary: primer,
            last,
            kind,
            reply,
        };
        pool()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| io::Error::other("the deflate threads are gone"))?;
        pending.push_back(result);
        while pending.len() >= in_flight || (last && !pending.is_empty()) {
            let block = pending
                .pop_front()
                .expect("not empty")
                .recv()
                .map_err(|_| io::Error::other("a deflate thread failed"))??;
            out.write_all(&block)?;
            done.compressed += block.len() as u64;
        }
        if last {
            done.crc32 = hasher.finalize();
            return Ok(done);
        }
        current = next;
    }
}

/// Up to `len` bytes: fewer only at the end of the input.
fn read_block(reader: &mut dyn Read, len: usize) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut block)?;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;
    use proptest::prelude::*;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        DeflateDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn round_trip(input: &[u8], kind: Kind) -> Deflated {
        round_trip_in(input, kind, BLOCK)
    }

    fn round_trip_in(input: &[u8], kind: Kind, block: usize) -> Deflated {
        let mut out = Vec::new();
        let done = deflate_blocks(&mut &input[..], kind, &mut out, block).unwrap();
        assert_eq!(inflate(&out), input, "one valid stream, in order");
        assert_eq!(done.size, input.len() as u64);
        assert_eq!(done.compressed, out.len() as u64);
        assert_eq!(done.crc32, crc32fast::hash(input));
        done
    }

    #[test]
    fn block_boundaries_and_empty_input() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 3 * BLOCK + 17] {
            let input: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            round_trip(&input, Kind::Text);
            round_trip(&input, Kind::Dense);
        }
    }

    #[test]
    fn text_keeps_its_matches_across_blocks() {
        let text = "{\"token\": \"a\", \"id\": 1234},\n".repeat(100_000);
        let parallel = round_trip(text.as_bytes(), Kind::Text).compressed;
        let whole = deflate_block(text.as_bytes(), &[], Kind::Text, true)
            .unwrap()
            .len() as u64;
        // Primed blocks deflate within a few bytes a block of one stream.
        assert!(
            parallel <= whole + 64 * (text.len() / BLOCK) as u64,
            "{parallel} vs {whole}"
        );
    }

    #[test]
    fn zero_runs_in_dense_files_shrink() {
        let mut tensor = vec![0u8; 2 * BLOCK];
        tensor[100..200].fill(7);
        let done = round_trip(&tensor, Kind::Dense);
        assert!(done.compressed * 100 < done.size, "{done:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_bytes_in_any_blocks_round_trip(
            input in proptest::collection::vec(0u8..4, 0..20_000),
            block in 1usize..5000,
            text in any::<bool>(),
        ) {
            round_trip_in(&input, if text { Kind::Text } else { Kind::Dense }, block);
        }
    }
}
