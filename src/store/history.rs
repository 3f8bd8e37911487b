//! A job's progress history from `metrics.jsonl`, in bounded memory
//! however long the file grows, and cheap to ask for again.
//!
//! The file is read in one streaming pass, line by line, into a
//! [`Downsampler`]: at most [`BUCKETS`] buckets of consecutive samples,
//! each keeping its first and last sample and those with the lowest and
//! highest loss, so the curve's shape and its extremes survive (at most
//! `4 × BUCKETS` points come out, whatever the file's length). When the
//! buckets fill, neighbours merge and each covers twice as many lines.
//!
//! [`Histories`] keeps that state per job with the byte offset reached, so
//! the next request reads only what the trainer appended since: a trainer
//! logging every step and a page polling every five seconds cost a few new
//! lines a request, not the whole file. A file replaced or truncated
//! (another inode, or shorter than what was read) is read again from the
//! start. Requests for the same job wait for each other rather than read
//! the same bytes twice.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use cap_std::fs::MetadataExt;

use super::progress::Progress;
use crate::names::JobId;

/// Buckets kept; each contributes at most four samples.
pub const BUCKETS: usize = 256;
/// The most points a history has.
pub const MAX_POINTS: usize = 4 * BUCKETS;
/// Lines longer than this are skipped (no trainer writes one; a hostile
/// file must not make a line buffer grow without bound).
const MAX_LINE: usize = 64 << 10;
/// Jobs whose history state is kept.
const CACHED_JOBS: usize = 256;

/// A sample and its line number, to keep the order and drop duplicates.
type Sample = (u64, Progress);

#[derive(Debug, Clone)]
struct Bucket {
    first: Sample,
    last: Sample,
    lowest: Option<Sample>,
    highest: Option<Sample>,
}

impl Bucket {
    fn new(sample: Sample) -> Bucket {
        let loss = sample.1.loss.is_some();
        Bucket {
            lowest: loss.then(|| sample.clone()),
            highest: loss.then(|| sample.clone()),
            first: sample.clone(),
            last: sample,
        }
    }

    fn add(&mut self, sample: Sample) {
        self.absorb_extremes(Some(&sample), Some(&sample));
        self.last = sample;
    }

    fn merge(mut self, next: Bucket) -> Bucket {
        self.absorb_extremes(next.lowest.as_ref(), next.highest.as_ref());
        self.last = next.last;
        self
    }

    fn absorb_extremes(&mut self, low: Option<&Sample>, high: Option<&Sample>) {
        let loss = |s: &Sample| s.1.loss;
        if let Some(low) = low.filter(|s| loss(s).is_some()) {
            if self.lowest.as_ref().is_none_or(|cur| loss(low) < loss(cur)) {
                self.lowest = Some(low.clone());
            }
        }
        if let Some(high) = high.filter(|s| loss(s).is_some()) {
            if self
                .highest
                .as_ref()
                .is_none_or(|cur| loss(high) > loss(cur))
            {
                self.highest = Some(high.clone());
            }
        }
    }
}

/// Samples in, a bounded, shape-keeping subset out.
#[derive(Debug, Clone, Default)]
pub struct Downsampler {
    buckets: Vec<Bucket>,
    /// Lines each bucket covers (a power of two).
    span: u64,
    /// Samples seen.
    seen: u64,
}

impl Downsampler {
    /// Adds the next sample.
    pub fn push(&mut self, progress: Progress) {
        let index = self.seen;
        self.seen += 1;
        let span = self.span.max(1);
        let current = self.buckets.len() as u64;
        match self.buckets.last_mut() {
            Some(bucket) if index / span + 1 == current => bucket.add((index, progress)),
            _ => self.buckets.push(Bucket::new((index, progress))),
        }
        if self.buckets.len() > 2 * BUCKETS {
            let buckets = std::mem::take(&mut self.buckets);
            let mut pairs = buckets.into_iter();
            while let Some(a) = pairs.next() {
                self.buckets.push(match pairs.next() {
                    Some(b) => a.merge(b),
                    None => a,
                });
            }
            self.span = span * 2;
        }
    }

    /// How many samples went in.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The kept samples, in the order they came, without duplicates.
    /// Neighbouring buckets are merged on the way out, so at most
    /// [`MAX_POINTS`] come out even just before the buckets' own merge.
    pub fn points(&self) -> Vec<Progress> {
        let mut out = Vec::with_capacity(MAX_POINTS);
        for pair in self.buckets.chunks(2) {
            let Some(merged) = pair.iter().cloned().reduce(Bucket::merge) else {
                continue;
            };
            let mut kept: Vec<Sample> = [
                Some(merged.first),
                merged.lowest,
                merged.highest,
                Some(merged.last),
            ]
            .into_iter()
            .flatten()
            .collect();
            kept.sort_by_key(|(index, _)| *index);
            kept.dedup_by_key(|(index, _)| *index);
            out.extend(kept.into_iter().map(|(_, progress)| progress));
        }
        out
    }
}

/// Feeds the complete lines of `reader` to `into`; returns the bytes
/// consumed, which end at the last newline (a line still being written is
/// left for next time). Lines over [`MAX_LINE`] and lines that are not a
/// progress object are skipped.
pub fn read_lines(reader: impl Read, into: &mut Downsampler) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 << 10, reader);
    let mut line = Vec::with_capacity(256);
    let mut consumed = 0u64;
    loop {
        line.clear();
        let line_start = consumed;
        let mut overlong = false;
        // Read up to a newline, keeping at most MAX_LINE bytes of it.
        let complete = loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break false;
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (&buf[..=at], true),
                None => (buf, false),
            };
            let used = chunk.len();
            if line.len() + used <= MAX_LINE + 1 {
                line.extend_from_slice(chunk);
            } else {
                overlong = true;
            }
            reader.consume(used);
            consumed += used as u64;
            if found {
                break true;
            }
        };
        if !complete {
            // A partial last line: not consumed, so it is read again once whole.
            return Ok(line_start);
        }
        if !overlong {
            if let Some(progress) = Progress::from_json(&line) {
                into.push(progress);
            }
        }
    }
}

/// What is known of one job's `metrics.jsonl`.
#[derive(Default)]
struct Known {
    /// (device, inode) of the file read.
    file: Option<(u64, u64)>,
    /// Bytes read so far (whole lines only).
    offset: u64,
    samples: Downsampler,
}

/// The history state of each job (see the module docs).
#[derive(Default)]
pub struct Histories {
    jobs: Mutex<HashMap<JobId, Arc<Mutex<Known>>>>,
}

/// A job's history as far as it is written, and how many samples it holds.
pub struct History {
    pub points: Vec<Progress>,
    pub samples: u64,
}

impl Histories {
    /// The history in `file` (the job's opened `metrics.jsonl`), reading
    /// only what was appended since the last call for `job`.
    pub fn read(&self, job: &JobId, mut file: cap_std::fs::File) -> io::Result<History> {
        let entry = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if jobs.len() >= CACHED_JOBS && !jobs.contains_key(job) {
                jobs.clear(); // rare: many jobs' pages open at once; start afresh
            }
            Arc::clone(jobs.entry(job.clone()).or_default())
        };
        let mut known = entry.lock().unwrap_or_else(|e| e.into_inner());
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino());
        if known.file != Some(identity) || meta.len() < known.offset {
            *known = Known {
                file: Some(identity),
                ..Known::default()
            };
        }
        if meta.len() > known.offset {
            file.seek(SeekFrom::Start(known.offset))?;
            let read = read_lines(&mut file, &mut known.samples)?;
            known.offset += read;
        }
        Ok(History {
            points: known.samples.points(),
            samples: known.samples.seen(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: u64, loss: f64) -> Progress {
        Progress {
            step: Some(step),
            loss: Some(loss),
            ..Progress::default()
        }
    }

    #[test]
    fn short_histories_come_out_whole() {
        let mut d = Downsampler::default();
        for step in 0..100 {
            d.push(sample(step, 1.0 / (step + 1) as f64));
        }
        let points = d.points();
        assert_eq!(points.len(), 100);
        assert!(points.windows(2).all(|w| w[0].step < w[1].step));
    }

    #[test]
    fn long_histories_keep_their_ends_and_extremes_within_the_bound() {
        let mut d = Downsampler::default();
        let n = 1_000_003u64;
        for step in 0..n {
            // A falling curve with one spike and one dip deep inside it.
            let loss = match step {
                400_000 => 50.0,
                700_001 => -3.0,
                _ => 10.0 / (1.0 + step as f64 / 1000.0),
            };
            d.push(sample(step, loss));
        }
        let points = d.points();
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        // A falling curve keeps two points a bucket (its first is its highest).
        assert!(points.len() >= BUCKETS, "{}", points.len());
        assert_eq!(points.first().unwrap().step, Some(0));
        assert_eq!(points.last().unwrap().step, Some(n - 1));
        assert!(points.iter().any(|p| p.loss == Some(50.0)), "the spike");
        assert!(points.iter().any(|p| p.loss == Some(-3.0)), "the dip");
        assert!(points.windows(2).all(|w| w[0].step < w[1].step));
        assert_eq!(d.seen(), n);
    }

    #[test]
    fn lines_are_read_whole_long_ones_skipped_and_a_partial_last_one_left() {
        let long = format!("{{\"step\": 2, \"note\": \"{}\"}}\n", "x".repeat(MAX_LINE));
        let text = format!(
            "{{\"step\": 1, \"loss\": 1}}\n{long}not json\n{{\"step\": 3}}\n{{\"step\": 4, \"lo"
        );
        let mut d = Downsampler::default();
        let consumed = read_lines(text.as_bytes(), &mut d).unwrap();
        let steps: Vec<_> = d.points().iter().map(|p| p.step).collect();
        assert_eq!(steps, [Some(1), Some(3)]);
        assert_eq!(&text[consumed as usize..], "{\"step\": 4, \"lo");
    }
}
