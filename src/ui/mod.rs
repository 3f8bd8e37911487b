//! The embedded web page: one self-contained HTML file, no build step.

/// `GET /`: jobs, live progress and loss curve, checkpoints and downloads.
pub const INDEX_HTML: &str = include_str!("index.html");
