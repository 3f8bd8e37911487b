//! Run comparison, as a pure core: a scalar's value in a progress sample,
//! which way it is better, and one job's curve of it by step with its
//! final and best values. `GET /api/training/compare` puts several jobs'
//! curves side by side; their histories are already bounded (at most
//! `store::history::MAX_POINTS` points a job, loss extremes kept exactly).

use std::collections::BTreeSet;

use crate::store::progress::Progress;

/// The most jobs one comparison takes.
pub const COMPARE_JOBS_MAX: usize = 8;
/// The longest metric name accepted.
pub const METRIC_NAME_MAX: usize = 64;

/// Which values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    /// Lower for losses and errors (`loss`, `eval_loss`, `val_err`,
    /// `perplexity`, `wer`, `mse`...), higher for anything else
    /// (accuracy, F1, BLEU, reward).
    pub fn guess(metric: &str) -> Better {
        let name = metric.to_ascii_lowercase();
        let lower = [
            "loss",
            "err",
            "perplexity",
            "ppl",
            "wer",
            "cer",
            "mse",
            "mae",
            "rmse",
            "nll",
        ];
        if lower.iter().any(|word| name.contains(word)) {
            Better::Lower
        } else {
            Better::Higher
        }
    }

    pub fn parse(text: &str) -> Option<Better> {
        match text {
            "lower" => Some(Better::Lower),
            "higher" => Some(Better::Higher),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }

    fn prefers(self, candidate: f64, current: f64) -> bool {
        match self {
            Better::Lower => candidate < current,
            Better::Higher => candidate > current,
        }
    }
}

/// A metric name as a query may give it: 1 to 64 of `A-Z a-z 0-9 _ . / : -`.
pub fn valid_metric(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= METRIC_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:-".contains(&b))
}

/// The value of `metric` in `sample`: its own fields for `loss`,
/// `learning_rate` and `epoch`, else the trainer's other scalars.
pub fn value_of(sample: &Progress, metric: &str) -> Option<f64> {
    let value = match metric {
        "loss" => sample.loss,
        "learning_rate" => sample.learning_rate,
        "epoch" => sample.epoch,
        other => sample
            .metrics
            .get(other)
            .and_then(serde_json::Value::as_f64),
    };
    value.filter(|v| v.is_finite())
}

/// The scalars a sample carries.
pub fn scalars(sample: &Progress) -> BTreeSet<String> {
    let own = [
        ("loss", sample.loss),
        ("learning_rate", sample.learning_rate),
        ("epoch", sample.epoch),
    ];
    own.into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, _)| name.to_owned())
        .chain(sample.metrics.keys().cloned())
        .collect()
}

/// One job's curve of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// `(step, value)`, in the order the trainer logged them.
    pub points: Vec<(u64, f64)>,
    /// The last point.
    pub last: Option<(u64, f64)>,
    /// The best point (the first of equals).
    pub best: Option<(u64, f64)>,
}

/// The curve of `metric` over `samples`: every sample with a step and a
/// finite value of it.
pub fn curve(samples: &[Progress], metric: &str, better: Better) -> Curve {
    let points: Vec<(u64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.step?, value_of(s, metric)?)))
        .collect();
    let best = points
        .iter()
        .copied()
        .reduce(|best, p| if better.prefers(p.1, best.1) { p } else { best });
    Curve {
        last: points.last().copied(),
        best,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(step: u64, loss: f64, accuracy: f64) -> Progress {
        Progress::from_json(
            json!({"step": step, "loss": loss, "metrics": {"eval_accuracy": accuracy}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn direction_follows_the_name() {
        for lower in ["loss", "eval_loss", "val/err", "perplexity", "WER"] {
            assert_eq!(Better::guess(lower), Better::Lower, "{lower}");
        }
        for higher in ["eval_accuracy", "f1", "bleu", "reward"] {
            assert_eq!(Better::guess(higher), Better::Higher, "{higher}");
        }
    }

    #[test]
    fn curves_have_their_last_and_best_points() {
        let samples = [
            sample(10, 0.9, 0.5),
            sample(20, 0.4, 0.8),
            sample(30, 0.6, 0.7),
        ];
        let loss = curve(&samples, "loss", Better::Lower);
        assert_eq!(loss.points.len(), 3);
        assert_eq!(loss.last, Some((30, 0.6)));
        assert_eq!(loss.best, Some((20, 0.4)));
        let accuracy = curve(&samples, "eval_accuracy", Better::Higher);
        assert_eq!(accuracy.best, Some((20, 0.8)));
        let none = curve(&samples, "bleu", Better::Higher);
        assert_eq!((none.points.len(), none.last, none.best), (0, None, None));
        assert!(scalars(&samples[0]).contains("eval_accuracy"));
    }

    #[test]
    fn metric_names_are_bounded() {
        assert!(valid_metric("eval/accuracy_top-1"));
        for bad in ["", "a b", "x\"y", &"m".repeat(65)] {
            assert!(!valid_metric(bad), "{bad}");
        }
    }
}
