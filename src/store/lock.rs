//! One server per root: an exclusive `flock(2)` on `<root>/.trainbox.lock`,
//! held for the life of the process, with the holder's pid inside.
//!
//! Two servers on one root would each mark the other's running jobs
//! interrupted, kill their trainers as leftovers, and start the same queued
//! job twice. The kernel drops the lock when its holder exits, however it
//! exits, so a crash never leaves a stale lock behind.

use std::io::{self, Read, Seek, Write};

use cap_std::fs::{Dir, File, OpenOptions};
use rustix::fs::{FlockOperation, flock};

/// The lock file, at the root.
pub const LOCK_FILE: &str = ".trainbox.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Why the root could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid, when it wrote one.
    Held { pid: Option<u32> },
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// Takes the lock on `root`, or says who holds it.
pub fn lock(root: &Dir) -> Result<InstanceLock, LockError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    let mut file = root.open_with(LOCK_FILE, &options).map_err(LockError::Io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                pid: text.trim().parse().ok(),
            });
        }
        Err(e) => return Err(LockError::Io(e.into())),
    }
    let written = (|| {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    })();
    if let Err(e) = written {
        // The lock holds without the pid; a second server just cannot name us.
        log::warn!("cannot write the pid into {LOCK_FILE}: {e}");
    }
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    #[test]
    #[allow(clippy::disallowed_methods)] // the fixture's directory
    fn a_second_lock_names_the_holder_and_a_released_one_is_taken_again() {
        let path = std::env::temp_dir().join(format!("trainbox-lock-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let open = || Dir::open_ambient_dir(&path, ambient_authority()).unwrap();
        let held = lock(&open()).unwrap();
        // flock locks belong to the open file description: a second open,
        // even in this process, is refused as another server would be.
        match lock(&open()) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert!(lock(&open()).is_ok());
        std::fs::remove_dir_all(&path).unwrap();
    }
}
