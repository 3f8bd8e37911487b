//! Job-id and checkpoint-name parsers: whatever they accept is one harmless
//! path component (no `/`, `\`, NUL, not `.` or `..`, no leading dot) and
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::names::{CheckpointName, JobId};

fn harmless(accepted: &str, input: &str) {
    assert_eq!(accepted, input, "round-trips");
    assert!(!accepted.contains(['/', '\\', '\0']));
    assert!(accepted != "." && accepted != "..");
    assert!(!accepted.starts_with('.'));
    assert!(!accepted.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = JobId::parse(text) {
        harmless(id.as_str(), text);
        assert_eq!(JobId::parse(id.as_str()), Ok(id.clone()));
        assert_ne!(id.as_str(), "jobs");
    }
    if let Ok(name) = CheckpointName::parse(text) {
        harmless(name.as_str(), text);
        assert_eq!(CheckpointName::parse(name.as_str()), Ok(name.clone()));
    }
});
