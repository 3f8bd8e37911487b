//! A job's resource samples, `resources.jsonl`: one JSON object a line,
//! appended by the runner's sampler while the job runs, kept under
//! [`RESOURCES_MAX_BYTES`] by dropping every other line when it grows past
//! it (older history gets coarser, never lost at once), and read back
//! thinned to at most [`RESOURCES_POINTS_MAX`] samples, or just the last.

use std::io::{self, Read, Seek, SeekFrom, Write};

use cap_std::fs::OpenOptions;
use serde_json::Value;

use super::job::JobDir;
use super::{atomic, is_missing};

pub const RESOURCES_FILE: &str = "resources.jsonl";
/// The file's bound: about 14,000 samples, 19 hours at one every 5 s,
/// before the first halving.
pub const RESOURCES_MAX_BYTES: u64 = 2 << 20;
/// The most samples `GET .../resources` returns.
pub const RESOURCES_POINTS_MAX: usize = 2000;
/// How much of the file's end the latest sample is looked for in.
const LAST_SAMPLE_TAIL: u64 = 4 << 10;

impl JobDir {
    /// Appends `sample` as a line; halves the file first when it has grown
    /// past its bound.
    pub fn append_resources(&self, sample: &Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(sample)?;
        line.push(b'\n');
        let len = self
            .metadata(RESOURCES_FILE)?
            .map_or(0, |m| if m.is_file() { m.len() } else { 0 });
        if len + line.len() as u64 > RESOURCES_MAX_BYTES {
            let bytes = self.read_small(RESOURCES_FILE)?.unwrap_or_default();
            let mut kept: Vec<u8> = halve(&bytes);
            kept.extend_from_slice(&line);
            return atomic::replace(&self.dir, RESOURCES_FILE, &kept);
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        self.dir
            .open_with(RESOURCES_FILE, &options)?
            .write_all(&line)
    }

    /// Every sample kept, oldest first, thinned evenly to at most
    /// [`RESOURCES_POINTS_MAX`] (the newest always kept).
    pub fn resources(&self) -> io::Result<Vec<Value>> {
        let bytes = match self.read_small(RESOURCES_FILE) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let samples: Vec<Value> = parse_lines(&bytes).collect();
        Ok(thin(samples, RESOURCES_POINTS_MAX))
    }

    /// The newest sample, read from the file's end.
    pub fn latest_resources(&self) -> Option<Value> {
        let mut file = self.open_regular(RESOURCES_FILE).ok()?;
        let len = file.metadata().ok()?.len();
        let start = len.saturating_sub(LAST_SAMPLE_TAIL);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut bytes = Vec::new();
        file.take(len - start).read_to_end(&mut bytes).ok()?;
        parse_lines(&bytes).last()
    }
}

/// The JSON objects among `bytes`' lines (a line cut by a crash, or the
/// partial first line of a tail, is skipped).
fn parse_lines(bytes: &[u8]) -> impl Iterator<Item = Value> + '_ {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(Value::is_object)
}

/// Every other line of `bytes`, the last one kept.
fn halve(bytes: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines.len().saturating_sub(1);
    let mut kept = Vec::with_capacity(bytes.len() / 2 + 1);
    for (index, line) in lines.iter().enumerate() {
        if (last - index) % 2 == 0 {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    kept
}

/// At most `max` of `samples`, evenly spaced, the last always among them.
fn thin(samples: Vec<Value>, max: usize) -> Vec<Value> {
    if samples.len() <= max || max == 0 {
        return samples;
    }
    let len = samples.len();
    let step = len as f64 / max as f64;
    let mut picked: Vec<usize> = (0..max)
        .map(|i| len - 1 - ((max - 1 - i) as f64 * step) as usize)
        .collect();
    picked.dedup();
    let mut samples: Vec<Option<Value>> = samples.into_iter().map(Some).collect();
    picked
        .into_iter()
        .filter_map(|i| samples[i].take())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn halving_keeps_every_other_line_and_the_last() {
        let text = b"{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n{\"i\":4}\n";
        let kept: Vec<Value> = parse_lines(&halve(text)).collect();
        assert_eq!(kept, [json!({"i":0}), json!({"i":2}), json!({"i":4})]);
        let even = b"{\"i\":0}\n{\"i\":1}\n";
        let kept: Vec<Value> = parse_lines(&halve(even)).collect();
        assert_eq!(kept, [json!({"i":1})]);
        assert!(halve(b"").is_empty());
    }

    #[test]
    fn thinning_is_even_bounded_and_keeps_the_newest() {
        let samples: Vec<Value> = (0..10_000).map(|i| json!({ "i": i })).collect();
        let thinned = thin(samples, 2000);
        assert_eq!(thinned.len(), 2000);
        assert_eq!(thinned.last(), Some(&json!({ "i": 9999 })));
        let indices: Vec<i64> = thinned.iter().map(|v| v["i"].as_i64().unwrap()).collect();
        assert!(indices.windows(2).all(|w| w[1] - w[0] == 5), "even steps");
        let few: Vec<Value> = (0..3).map(|i| json!({ "i": i })).collect();
        assert_eq!(thin(few.clone(), 2000), few);
    }

    #[test]
    fn partial_and_malformed_lines_are_skipped() {
        let bytes = b"\"i\":1}\n{\"i\":2}\nnot json\n[1]\n{\"i\":3";
        let kept: Vec<Value> = parse_lines(bytes).collect();
        assert_eq!(kept, [json!({"i":2})]);
    }
}
