//! The `/proc` parsers of the resource sampler over any text: a process
//! names itself (`prctl(PR_SET_NAME)`, its command), and that name sits in
//! the middle of `/proc/<pid>/stat`. None may panic; a stat line that
//! parses keeps the fields after the name, whatever the name holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainbox::runner::resources::{parse_io, parse_stat};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_io(text);
    let _ = parse_stat(text);
    // The same fields after a name of this text: always found.
    let line = format!("7 ({text}) S 1 42 42 0 -1 0 0 0 0 0 5 6 7 8 20 0 3 0 1 100 9 0");
    let stat = parse_stat(&line).expect("fields after any name parse");
    assert_eq!((stat.pgrp, stat.cpu_ticks, stat.threads, stat.rss_pages), (42, 26, 3, 9));
});
