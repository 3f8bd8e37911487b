//! Trainer processes: spawning one as its own process group in its job
//! directory, signalling the group, and finding a group's members in /proc.
//!
//! The trainer gets the parent-death signal (SIGKILL) so it cannot outlive
//! the server: the kernel sends it when the *thread* that forked it exits,
//! so the runner forks from one thread that lives as long as the server.
//! Processes the trainer forks itself (data loaders) are in its group; the
//! runner kills the group when the trainer ends, and at start-up sweeps
//! groups left by a server that was killed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::recipes::env_name;
use crate::names::JobId;

/// Variables a trainer must not inherit: systemd's hand-offs to the server
/// (a trainer answering `NOTIFY_SOCKET` or taking `LISTEN_FDS` would confuse
/// it) and the token directory.
const WITHHELD_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
];

/// What a trainer is started with.
pub struct Launch<'a> {
    pub command: &'a [String],
    pub job: &'a JobId,
    /// The job directory's absolute path, for the `TRAINBOX_*_DIR` variables.
    pub job_path: &'a Path,
    /// The job directory, opened; the trainer starts in it (fchdir), so no
    /// path is resolved again between checking and starting.
    pub job_dir_fd: RawFd,
    pub params: &'a BTreeMap<String, String>,
    /// `training.log`, opened for appending: stdout and stderr.
    pub log: std::fs::File,
    /// The job's `cgroup.procs`, open for writing, when jobs get cgroups:
    /// the child moves itself in before it execs, so nothing it starts
    /// runs outside.
    pub cgroup_procs: Option<RawFd>,
}

/// The environment a trainer sees: the server's, minus [`WITHHELD_ENV`] and
/// any `TRAINBOX_*`, plus the job's variables and params.
pub fn trainer_env(launch: &Launch<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !k.starts_with("TRAINBOX_") && !WITHHELD_ENV.contains(&k.as_ref())
        })
        .collect();
    let job_path = launch.job_path;
    env.push(("TRAINBOX_JOB_ID".into(), launch.job.as_str().into()));
    env.push(("TRAINBOX_JOB_DIR".into(), job_path.into()));
    env.push(("TRAINBOX_OUTPUT_DIR".into(), job_path.join("model").into()));
    env.push((
        "TRAINBOX_PROGRESS_FILE".into(),
        job_path.join("progress.json").into(),
    ));
    for (name, value) in launch.params {
        env.push((env_name(name).into(), value.into()));
    }
    env
}

/// Starts the trainer: its own process group, working directory the job
/// directory, stdin empty, stdout and stderr appended to the log, SIGKILL
/// when the spawning thread dies.
pub fn spawn(launch: Launch<'_>) -> io::Result<Child> {
    let (program, args) = launch
        .command
        .split_first()
        .ok_or_else(|| io::Error::other("the recipe has an empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(trainer_env(&launch))
        .stdin(Stdio::null())
        .stdout(Stdio::from(launch.log.try_clone()?))
        .stderr(Stdio::from(launch.log))
        .process_group(0);
    let dir_fd = launch.job_dir_fd;
    let cgroup_procs = launch.cgroup_procs;
    // SAFETY: getpid before fork; in the child only async-signal-safe
    // calls (prctl, getppid, fchdir, write, sigprocmask, signal) run
    // before exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The server may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::fchdir(dir_fd) != 0 {
                return Err(io::Error::last_os_error());
            }
            // "0" moves the writing process into the cgroup.
            if let Some(fd) = cgroup_procs {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // A trainer starts with the standard signal state: the server
            // blocks SIGTERM/SIGINT for its signal thread and ignores
            // SIGPIPE, and both would survive exec.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for signal in 1..32 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to every process in group `pgid`. A group that is gone
/// is not an error.
pub fn signal_group(pgid: i32, signal: libc::c_int) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::other("refusing to signal process group <= 1"));
    }
    // SAFETY: kill(2) with a negative pid signals the process group.
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub pgrp: i32,
    /// The scheduler state letter: R, S, D, T (stopped), Z, ...
    pub state: char,
}

/// Parses `/proc/PID/stat` text (the command name may hold spaces and
/// parentheses, so fields are counted from the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let pid = text.split(' ').next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcInfo { pid, pgrp, state })
}

/// The processes in group `pgid`, from /proc (the process table, not the
/// request path).
#[allow(clippy::disallowed_methods)]
pub fn group_members(pgid: i32) -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .filter(|p| p.pgrp == pgid)
        .collect()
}

/// True when process `pid` was started for job `job` (its environment
/// holds `TRAINBOX_JOB_ID=<job>`): a recorded pid is only signalled after
/// this check, so a reused pid is never hit.
#[allow(clippy::disallowed_methods)]
pub fn belongs_to_job(pid: i32, job: &JobId) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("TRAINBOX_JOB_ID={job}");
    environ
        .split(|&b| b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// Kills what is left of job `job`'s process group `pgid` after a server
/// that was killed (its trainers got SIGKILL; their children may not have).
/// Returns how many processes were signalled.
pub fn sweep_leftovers(pgid: i32, job: &JobId) -> usize {
    let members: Vec<i32> = group_members(pgid)
        .into_iter()
        .filter(|p| belongs_to_job(p.pid, job))
        .map(|p| p.pid)
        .collect();
    for pid in &members {
        // SAFETY: signalling one checked pid.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    members.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names() {
        let line = "4242 (python3 (worker) x) T 4200 4242 4242 0 -1 4194304 ...";
        assert_eq!(
            parse_stat(line),
            Some(ProcInfo {
                pid: 4242,
                pgrp: 4242,
                state: 'T'
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_in_its_own_group_listing() {
        // SAFETY: getpgrp has no failure modes.
        let pgrp = unsafe { libc::getpgrp() };
        let me = std::process::id() as i32;
        assert!(group_members(pgrp).iter().any(|p| p.pid == me));
    }

    #[test]
    fn refuses_to_signal_init_or_everyone() {
        assert!(signal_group(0, libc::SIGCONT).is_err());
        assert!(signal_group(1, libc::SIGCONT).is_err());
    }
}
