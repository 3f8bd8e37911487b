//! Who may do what: the tokens and their roles, the browser sessions
//! opened with them, login attempts per address, and the hosts and origins
//! a browser may use. Values and their rules; the HTTP layer (`http::auth`,
//! `http::guard`) applies them to requests.

pub mod ratelimit;
pub mod session;
pub mod tokens;

use ratelimit::LoginLimiter;
use session::Sessions;
use tokens::Tokens;

/// Who may address the server from a browser, fixed at start-up.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Host names (no port) accepted in `Host`, lower case: this machine's
    /// name and `--allowed-host` values.
    pub hosts: Vec<String>,
    /// Origins accepted besides the server's own (`--allowed-origin`), lower
    /// case, as `scheme://host[:port]`.
    pub origins: Vec<String>,
}

/// The access state the server holds.
#[derive(Default)]
pub struct Access {
    /// `None` when the server runs without access control (loopback only,
    /// or `--insecure-no-auth`).
    pub tokens: Option<Tokens>,
    pub sessions: Sessions,
    pub logins: LoginLimiter,
    pub browser: BrowserPolicy,
}
