//! The embedded web page: one self-contained HTML file, no build step.

/// `GET /`: jobs, live progress and loss curve, checkpoints and downloads.
pub const INDEX_HTML: &str = include_str!("index.html");

/// The login form (`POST /login`), for a browser without a token.
pub const LOGIN_HTML: &str = include_str!("login.html");

/// The login form after a wrong token.
pub const LOGIN_FAILED_HTML: &str = include_str!("login-failed.html");
