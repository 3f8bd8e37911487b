//! The progress parsers over what trainers (or anyone who can write into
//! a job) leave on disk: `progress.json` and `metrics.jsonl` lines, a
//! Hugging Face `trainer_state.json`, a Lightning `metrics.csv`. None may
//! panic, and every value they keep is finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::store::progress::{samples_from_lightning_csv, Progress};

fn check(p: &Progress) {
    for value in [p.epoch, p.loss, p.learning_rate].into_iter().flatten() {
        assert!(value.is_finite());
    }
    if let Some(percent) = p.percent() {
        assert!((0.0..=100.0).contains(&percent));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(p) = Progress::from_json(data) {
        check(&p);
    }
    if let Some(p) = Progress::from_trainer_state(data) {
        check(&p);
    }
    Progress::history_from_trainer_state(data).iter().for_each(check);
    samples_from_lightning_csv(data).iter().for_each(check);
});
