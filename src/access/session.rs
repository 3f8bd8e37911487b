//! Browser sessions: what the login cookie carries instead of a token.
//!
//! A session id is 32 random bytes, kept only in this process's memory with
//! the role the login granted and an expiry. A cookie leaks to every other
//! service on the same host name (cookies ignore ports): a stolen session
//! id is worth a few hours and dies with a logout or a restart (which also
//! re-reads the token file), where a stolen token would be worth until the
//! admin noticed.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tokens::Role;

/// The cookie that carries the session id.
pub const COOKIE: &str = "trainbox_session";
/// How long a session lasts: a working day.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const CAPACITY: usize = 1024;

struct Session {
    role: Role,
    /// The label of the token the login used.
    label: String,
    expires: Instant,
}

/// The open sessions.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session granting `role`; returns its id for the cookie.
    pub fn open(&self, role: Role, label: &str) -> io::Result<String> {
        let id = random_hex(32)?;
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, s| s.expires > now);
        if open.len() >= CAPACITY {
            if let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
            {
                open.remove(&oldest);
            }
        }
        open.insert(
            id.clone(),
            Session {
                role,
                label: label.to_owned(),
                expires: now + LIFETIME,
            },
        );
        Ok(id)
    }

    /// The role of an open, unexpired session.
    pub fn role_of(&self, id: &str) -> Option<Role> {
        self.identify(id).map(|(role, _)| role)
    }

    /// The role and token label of an open, unexpired session.
    pub fn identify(&self, id: &str) -> Option<(Role, String)> {
        let open = self.lock();
        open.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.role, s.label.clone()))
    }

    /// Ends a session (logout).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `n` bytes from the kernel's random source, as hex.
fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let got = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += got as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_grant_their_role_until_closed() {
        let sessions = Sessions::default();
        let reader = sessions.open(Role::Read, "r").unwrap();
        let controller = sessions.open(Role::Control, "c").unwrap();
        assert_eq!(reader.len(), 64);
        assert_ne!(reader, controller);
        assert_eq!(sessions.role_of(&reader), Some(Role::Read));
        assert_eq!(sessions.role_of(&controller), Some(Role::Control));
        assert_eq!(sessions.role_of("not-a-session"), None);
        sessions.close(&reader);
        assert_eq!(sessions.role_of(&reader), None);
        assert_eq!(sessions.role_of(&controller), Some(Role::Control));
    }

    #[test]
    fn the_oldest_session_goes_when_full() {
        let sessions = Sessions::default();
        let first = sessions.open(Role::Read, "r").unwrap();
        for _ in 0..CAPACITY {
            sessions.open(Role::Read, "r").unwrap();
        }
        assert_eq!(sessions.role_of(&first), None);
        assert_eq!(sessions.lock().len(), CAPACITY);
    }
}
