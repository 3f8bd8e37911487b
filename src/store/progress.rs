//! Training progress as trainers write it: `progress.json`, the lines of
//! `metrics.jsonl`, a Hugging Face `trainer_state.json`, or the
//! `metrics.csv` of PyTorch Lightning's `CSVLogger`.
//!
//! Parsing is pure and lenient: every field is optional, wrong types are
//! dropped, and a file that is not a JSON object yields `None`, so a
//! half-written file is ignored rather than reported (the caller keeps the
//! last good value). `NaN` and `±Infinity`, which Python's `json` writes
//! when a run diverges, read as missing values rather than spoiling the
//! whole document (see [`parse_lenient`]).

use serde::Serialize;
use serde_json::{Map, Value};

/// One progress sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metrics: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Progress {
    /// Parses a `progress.json` document or one `metrics.jsonl` line.
    pub fn from_json(bytes: &[u8]) -> Option<Progress> {
        let Value::Object(obj) = parse_lenient(bytes)? else {
            return None;
        };
        let metrics = match obj.get("metrics") {
            Some(Value::Object(m)) => numbers_only(m),
            _ => Map::new(),
        };
        Some(Progress {
            step: count(obj.get("step")),
            total_steps: count(obj.get("total_steps")),
            epoch: number(obj.get("epoch")),
            loss: number(obj.get("loss")),
            learning_rate: number(obj.get("learning_rate")),
            metrics,
            updated_at: obj
                .get("updated_at")
                .and_then(Value::as_str)
                .map(|s| s.chars().take(64).collect()),
        })
    }

    /// Parses a Hugging Face `trainer_state.json`: the step and total from
    /// `global_step` and `max_steps`, loss and learning rate from the last
    /// `log_history` entry that has them, `eval_*` values as metrics.
    pub fn from_trainer_state(bytes: &[u8]) -> Option<Progress> {
        let Value::Object(obj) = parse_lenient(bytes)? else {
            return None;
        };
        let history: &[Value] = match obj.get("log_history") {
            Some(Value::Array(entries)) => entries,
            _ => &[],
        };
        let last_with = |key: &str| {
            history
                .iter()
                .rev()
                .find_map(|entry| number(entry.get(key)))
        };
        let mut metrics = Map::new();
        for entry in history.iter().rev() {
            if let Value::Object(fields) = entry {
                for (key, value) in fields {
                    if key.starts_with("eval_") && value.is_number() && !metrics.contains_key(key) {
                        metrics.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Some(Progress {
            step: count(obj.get("global_step")),
            total_steps: count(obj.get("max_steps")),
            epoch: number(obj.get("epoch")),
            loss: last_with("loss"),
            learning_rate: last_with("learning_rate"),
            metrics,
            updated_at: None,
        })
    }

    /// Percent done, when both step and total are known.
    pub fn percent(&self) -> Option<f64> {
        match (self.step, self.total_steps) {
            (Some(step), Some(total)) if total > 0 => {
                Some((step.min(total) as f64 * 1000.0 / total as f64).round() / 10.0)
            }
            _ => None,
        }
    }

    /// The HF `log_history` entries of a `trainer_state.json` as samples.
    pub fn history_from_trainer_state(bytes: &[u8]) -> Vec<Progress> {
        let Some(Value::Object(obj)) = parse_lenient(bytes) else {
            return Vec::new();
        };
        match obj.get("log_history") {
            Some(Value::Array(entries)) => entries
                .iter()
                .filter_map(|entry| {
                    let loss = number(entry.get("loss"));
                    loss.map(|loss| Progress {
                        step: count(entry.get("step")),
                        epoch: number(entry.get("epoch")),
                        loss: Some(loss),
                        learning_rate: number(entry.get("learning_rate")),
                        ..Progress::default()
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Lightning's `CSVLogger` `metrics.csv` as samples, one per step: a
/// header of metric names, then rows in which only the metrics logged at
/// that moment are filled (training and validation rows of one step come
/// separately and are merged here). `step` and `epoch` are columns of
/// their own; the loss is `loss`, else `train_loss`, `train_loss_step` or
/// `train_loss_epoch`; a learning rate is `learning_rate` or a
/// `LearningRateMonitor` column (`lr-*`); every other numeric column is a
/// metric. Rows without a step, and cells that are not finite numbers,
/// are skipped.
pub fn samples_from_lightning_csv(bytes: &[u8]) -> Vec<Progress> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<String> = csv_fields(header).into_iter().take(256).collect();
    let mut samples: Vec<Progress> = Vec::new();
    for line in lines {
        let cells = csv_fields(line);
        let value = |name: &str| {
            let at = columns.iter().position(|c| c == name)?;
            let cell = cells.get(at)?.trim();
            cell.parse::<f64>().ok().filter(|v| v.is_finite())
        };
        let Some(step) = value("step").filter(|s| *s >= 0.0 && s.fract() == 0.0 && *s < 1e18)
        else {
            continue;
        };
        let step = step as u64;
        if samples.last().is_none_or(|last| last.step != Some(step)) {
            samples.push(Progress {
                step: Some(step),
                ..Progress::default()
            });
        }
        let sample = samples.last_mut().expect("pushed above");
        sample.epoch = value("epoch").or(sample.epoch);
        let loss = ["loss", "train_loss", "train_loss_step", "train_loss_epoch"]
            .iter()
            .find_map(|name| value(name));
        sample.loss = loss.or(sample.loss);
        for (at, name) in columns.iter().enumerate() {
            let Some(number) = cells
                .get(at)
                .and_then(|c| c.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            if name == "learning_rate" || name.starts_with("lr-") {
                sample.learning_rate = Some(number);
            } else if !matches!(name.as_str(), "step" | "epoch")
                && name.len() <= 64
                && (sample.metrics.len() < 64 || sample.metrics.contains_key(name))
            {
                sample.metrics.insert(name.clone(), number.into());
            }
        }
    }
    samples
}

/// The fields of one CSV line (RFC 4180 quoting, as Python's `csv` module
/// writes it: a field with a comma or quote is quoted, quotes doubled).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Parses JSON as Python's `json` module writes it: the non-standard
/// `NaN`, `Infinity` and `-Infinity` (outside strings) become `null`.
/// `None` for anything that is still not JSON.
pub fn parse_lenient(bytes: &[u8]) -> Option<Value> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(_) => serde_json::from_slice(&nonfinite_to_null(bytes)?).ok(),
    }
}

/// `bytes` with every `NaN`, `Infinity` and `-Infinity` token outside a
/// string replaced by `null`; `None` when there was none (so the caller
/// knows a second parse would fail the same way).
fn nonfinite_to_null(bytes: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped, mut replaced) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(token) = TOKENS.iter().find(|t| bytes[i..].starts_with(t)) {
            out.extend_from_slice(b"null");
            i += token.len();
            replaced = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    replaced.then_some(out)
}

fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64).filter(|v| v.is_finite())
}

/// A non-negative whole count; trainers sometimes write `12.0`.
fn count(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0 && *v < 1e18)
            .map(|v| v as u64)
    })
}

fn numbers_only(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, v)| v.is_number() && k.len() <= 64)
        .take(64)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightning_csv_rows_merge_by_step() {
        // As CSVLogger writes it: training rows, a validation row of the
        // same step, a LearningRateMonitor column, a quoted name.
        let csv = b"epoch,lr-AdamW,step,train_loss_step,val_loss,\"acc,top1\"\n\
            0,0.001,49,0.9,,\n\
            0,,49,,0.95,0.5\n\
            1,0.0009,99,0.7,,\n\
            1,,99,,nan,0.6\n\
            ,,,,,\n\
            2,0.0008,149,0.6,,\n";
        let samples = samples_from_lightning_csv(csv);
        assert_eq!(samples.len(), 3);
        let first = &samples[0];
        assert_eq!(
            (first.step, first.epoch, first.loss, first.learning_rate),
            (Some(49), Some(0.0), Some(0.9), Some(0.001))
        );
        assert_eq!(first.metrics["val_loss"], 0.95);
        assert_eq!(first.metrics["acc,top1"], 0.5);
        assert_eq!(samples[1].loss, Some(0.7));
        assert!(!samples[1].metrics.contains_key("val_loss"), "nan skipped");
        assert_eq!(samples[2].step, Some(149));
        assert!(samples_from_lightning_csv(b"").is_empty());
        assert!(samples_from_lightning_csv(b"epoch,loss\n1,0.5\n").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn lightning_csv_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = samples_from_lightning_csv(&bytes);
        }
    }

    #[test]
    fn progress_json_fields_are_optional_and_typed() {
        let p = Progress::from_json(
            br#"{"step": 50, "total_steps": 200.0, "loss": 0.5, "epoch": "x",
                 "metrics": {"acc": 0.9, "name": "no"}, "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(p.step, Some(50));
        assert_eq!(p.total_steps, Some(200));
        assert_eq!(p.loss, Some(0.5));
        assert_eq!(p.epoch, None);
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(p.percent(), Some(25.0));
        assert_eq!(Progress::from_json(b"{}").unwrap(), Progress::default());
    }

    #[test]
    fn half_written_files_are_none() {
        for bad in [
            &b""[..],
            b"{\"step\": 5",
            b"[1,2]",
            b"null",
            b"{\"loss\": NaNa}",
        ] {
            assert_eq!(
                Progress::from_json(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn nan_and_infinity_are_missing_values_not_broken_files() {
        let p = Progress::from_json(br#"{"step": 7, "loss": NaN, "learning_rate": -Infinity}"#)
            .unwrap();
        assert_eq!((p.step, p.loss, p.learning_rate), (Some(7), None, None));
        // A diverged HF run: the whole state still reads.
        let state = br#"{"global_step": 30, "max_steps": 100, "log_history": [
            {"loss": 2.5, "step": 10}, {"loss": NaN, "step": 20}, {"loss": Infinity, "step": 30}]}"#;
        let p = Progress::from_trainer_state(state).unwrap();
        assert_eq!((p.step, p.loss), (Some(30), Some(2.5)));
        assert_eq!(Progress::history_from_trainer_state(state).len(), 1);
        // Inside strings the words stay words.
        let v = parse_lenient(br#"{"note": "NaN and \"Infinity\"", "x": NaN}"#).unwrap();
        assert_eq!(v["note"], "NaN and \"Infinity\"");
        assert!(v["x"].is_null());
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Any JSON document with NaN written in place of some numbers
        /// reads as the document with null there.
        #[test]
        fn nonfinite_tokens_read_as_null(values in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(None),
                // Quarters: exact in binary, so the text round-trips.
                (-4_000_000i32..4_000_000).prop_map(|n| Some(f64::from(n) / 4.0)),
            ], 0..20),
            words in proptest::collection::vec("[a-zA-Z\"\\\\ ]{0,12}", 0..20)) {
            let mut written = String::from("{");
            let mut expected = Map::new();
            for (i, value) in values.iter().enumerate() {
                let key = format!("k{i}");
                let word = words.get(i).cloned().unwrap_or_default();
                let text = serde_json::to_string(&word).unwrap();
                written.push_str(&format!("\"{key}\": [{}, {text}],", value.map_or("NaN".to_owned(), |v| serde_json::to_string(&v).unwrap())));
                expected.insert(key, serde_json::json!([value, word]));
            }
            written.push_str("\"end\": Infinity}");
            expected.insert("end".into(), Value::Null);
            prop_assert_eq!(parse_lenient(written.as_bytes()), Some(Value::Object(expected)));
        }
    }

    #[test]
    fn trainer_state() {
        let state = br#"{"global_step": 500, "max_steps": 1000, "epoch": 1.5,
            "log_history": [
              {"loss": 2.0, "learning_rate": 0.001, "step": 100, "epoch": 0.3},
              {"loss": 1.2, "learning_rate": 0.0008, "step": 500, "epoch": 1.5},
              {"eval_loss": 1.4, "eval_accuracy": 0.61, "step": 500}]}"#;
        let p = Progress::from_trainer_state(state).unwrap();
        assert_eq!((p.step, p.total_steps), (Some(500), Some(1000)));
        assert_eq!(p.loss, Some(1.2));
        assert_eq!(p.learning_rate, Some(0.0008));
        assert_eq!(p.metrics.get("eval_loss"), Some(&serde_json::json!(1.4)));
        assert_eq!(p.percent(), Some(50.0));
        let history = Progress::history_from_trainer_state(state);
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].step, Some(500));
    }
}
