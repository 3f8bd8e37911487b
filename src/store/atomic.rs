//! Atomic replacement of small files: a temporary file, fsync, rename
//! over the target, fsync of the directory. A crash at any point leaves
//! the old content or the new, never a torn file.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::{Dir, OpenOptions};

/// Replaces `name` in `dir` with `bytes`, atomically and durably.
pub fn replace(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let result = (|| {
        let mut file = dir.open_with(&tmp, &options)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        dir.rename(&tmp, dir, name)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}

/// fsyncs a directory, so a rename in it is durable. cap-std holds
/// directories as `O_PATH` descriptors, which cannot be synced, so this
/// opens the same directory (relative to its own descriptor) for reading.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    // SAFETY: openat on a descriptor we own with a constant relative path;
    // the result is owned (and closed) by `File`.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.sync_all()
}
