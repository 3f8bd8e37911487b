//! Termination signals: SIGTERM and SIGINT are blocked in every thread and
//! taken by one thread with `sigwait`, so shutdown runs as ordinary code,
//! not in a signal handler. The first signal starts a graceful stop; a
//! second one ends the process at once, unless it came within
//! [`SAME_STOP`] of the first: `timeout`, a shell's Ctrl-C and systemd's
//! `KillMode=` may signal the process and its group in the same instant,
//! and one stop must not read as two.

use std::io;
use std::mem::MaybeUninit;
use std::thread;
use std::time::{Duration, Instant};

/// Signals this soon after the first are part of the same stop.
pub const SAME_STOP: Duration = Duration::from_secs(1);

/// The signals that stop the server.
fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set before sigaddset uses it.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        set.assume_init()
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it
/// starts afterwards. Call first thing in `main`, before any thread exists.
/// (Trainers get an empty mask back before exec: `runner::process`.)
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: a valid, initialized set; no old mask wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts the thread that waits for SIGTERM or SIGINT: `on_first` runs at
/// the first, and the process exits with status 1 at the second.
pub fn on_termination(on_first: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let first = wait();
            let at = Instant::now();
            log::info!(
                "received {}; stopping gracefully (again to stop at once)",
                name(first)
            );
            on_first(first);
            loop {
                let second = wait();
                if at.elapsed() < SAME_STOP {
                    log::info!("received {} with the first; still stopping", name(second));
                    continue;
                }
                log::warn!("received {} again; exiting now", name(second));
                std::process::exit(1);
            }
        })?;
    Ok(())
}

fn wait() -> i32 {
    let set = termination_set();
    let mut signal = 0;
    loop {
        // SAFETY: the set is initialized and blocked in this thread.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            return signal;
        }
    }
}

/// The conventional name of a signal trainbox sends or receives.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGCONT => "SIGCONT",
        _ => "a signal",
    }
}
