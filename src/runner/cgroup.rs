//! Each job in a cgroup of its own (cgroup v2): frozen, killed and
//! accounted as a whole, whatever its processes do.
//!
//! A process group holds only the processes that stay in it: a launcher, a
//! shell wrapper or a data-loader worker that calls `setsid()` leaves it,
//! and then escapes pause, cancel and the server's end. A process cannot
//! leave a cgroup on its own, so with one per job `cgroup.freeze` pauses
//! the whole tree, `cgroup.kill` ends it, and the cgroup's own files count
//! what it used.
//!
//! Layout, under a cgroup `C` the server may manage (delegated by systemd
//! with `Delegate=yes`, or named with `--cgroup` by root):
//!
//! ```text
//! C/server/        the server itself (a cgroup with children must hold no process)
//! C/jobs/          controllers enabled for the jobs (cpu, memory, io, pids where available)
//! C/jobs/<job_id>/ one job: its trainer is moved in before it execs
//! ```
//!
//! This is process control at start-up and for the runner, outside the
//! request path, so it uses `std::fs` on `/sys/fs/cgroup` directly.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::names::JobId;

/// The controllers jobs get, where the hierarchy offers them.
const WANTED: [&str; 4] = ["cpu", "memory", "io", "pids"];

/// The cgroup the server manages.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
    /// Controllers enabled for the jobs.
    controllers: Vec<String>,
}

/// A job's limits from its recipe, written to its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `memory.max` in bytes.
    pub memory_max: Option<u64>,
    /// `cpu.weight` (1–10000; 100 is the default share).
    pub cpu_weight: Option<u32>,
    /// `pids.max`.
    pub pids_max: Option<u64>,
}

impl Cgroups {
    /// Finds the cgroup to manage: `explicit` (`--cgroup`, created if
    /// missing), else this process's own cgroup when systemd delegated it.
    /// `Ok(None)` when there is none: the runner falls back to process
    /// groups. Moves this process into `C/server`.
    pub fn setup(explicit: Option<&Path>) -> io::Result<Option<Cgroups>> {
        if explicit.is_some() {
            return Self::take(explicit);
        }
        // A delegated cgroup that cannot be used after all (mounted
        // read-only by ProtectControlGroups=, say) leaves process groups.
        Self::take(None).or_else(|e| {
            log::warn!("cannot use this service's delegated cgroup ({e}); process groups instead");
            Ok(None)
        })
    }

    fn take(explicit: Option<&Path>) -> io::Result<Option<Cgroups>> {
        let base = match explicit {
            Some(dir) => {
                if !is_cgroup2(dir.parent().unwrap_or(dir)) {
                    return Err(io::Error::other(format!(
                        "{} is not in a cgroup v2 hierarchy",
                        dir.display()
                    )));
                }
                fs::create_dir_all(dir)?;
                dir.to_owned()
            }
            None => match delegated_own_cgroup() {
                Some(dir) => dir,
                None => return Ok(None),
            },
        };
        let server = base.join("server");
        fs::create_dir_all(&server)?;
        write_file(
            &server.join("cgroup.procs"),
            &std::process::id().to_string(),
        )?;
        let jobs = base.join("jobs");
        fs::create_dir_all(&jobs)?;
        let available = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        let mut controllers = Vec::new();
        for wanted in WANTED {
            if !available.split_whitespace().any(|c| c == wanted) {
                continue;
            }
            // Enabled at C for C's children, then at C/jobs for each job.
            let enabled = write_file(&base.join("cgroup.subtree_control"), &format!("+{wanted}"))
                .and_then(|_| {
                    write_file(&jobs.join("cgroup.subtree_control"), &format!("+{wanted}"))
                });
            match enabled {
                Ok(()) => controllers.push(wanted.to_owned()),
                Err(e) => log::warn!("cgroup controller {wanted} not enabled for jobs: {e}"),
            }
        }
        Ok(Some(Cgroups { base, controllers }))
    }

    /// Where the jobs' cgroups live.
    pub fn path(&self) -> &Path {
        &self.base
    }

    /// The controllers jobs have (for accounting and limits).
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Creates job `job`'s cgroup with `limits` (those whose controller is
    /// missing are logged, not applied).
    pub fn create(&self, job: &JobId, limits: &Limits) -> io::Result<JobCgroup> {
        let path = self.base.join("jobs").join(job.as_str());
        match fs::create_dir(&path) {
            Ok(()) => {}
            // A leftover of this very job (recovery removes them first).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let has = |c: &str| self.controllers.iter().any(|have| have == c);
        let settings = [
            (
                "memory",
                "memory.max",
                limits.memory_max.map(|v| v.to_string()),
            ),
            (
                "cpu",
                "cpu.weight",
                limits.cpu_weight.map(|v| v.to_string()),
            ),
            ("pids", "pids.max", limits.pids_max.map(|v| v.to_string())),
        ];
        for (controller, file, value) in settings {
            let Some(value) = value else { continue };
            if has(controller) {
                write_file(&path.join(file), &value)?;
            } else {
                log::warn!(
                    "job {job}: {file}={value} not applied: the {controller} controller is not available here"
                );
            }
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))?;
        Ok(JobCgroup { path, procs })
    }

    /// The cgroups of jobs left by a server that was killed.
    pub fn leftovers(&self) -> Vec<(String, JobCgroup)> {
        let Ok(entries) = fs::read_dir(self.base.join("jobs")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let e = e.ok()?;
                if !e.file_type().ok()?.is_dir() {
                    return None;
                }
                let name = e.file_name().into_string().ok()?;
                let procs = OpenOptions::new()
                    .write(true)
                    .open(e.path().join("cgroup.procs"))
                    .ok()?;
                Some((
                    name,
                    JobCgroup {
                        path: e.path(),
                        procs,
                    },
                ))
            })
            .collect()
    }
}

/// One job's cgroup.
#[derive(Debug)]
pub struct JobCgroup {
    path: PathBuf,
    /// `cgroup.procs`, open for writing: the trainer writes "0" to it
    /// between fork and exec, which moves it in before it runs anything.
    procs: File,
}

/// A job cgroup's files that say what it holds and used.
#[derive(Debug, Clone)]
pub struct Account {
    path: PathBuf,
}

impl Account {
    /// The pids in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// What the cgroup's files say it used (each figure where its
    /// controller is enabled; `cpu.stat` exists in every cgroup).
    pub fn usage(&self) -> Usage {
        let (mut read, mut write) = (None, None);
        if let Ok(text) = fs::read_to_string(self.path.join("io.stat")) {
            for field in text.split_whitespace() {
                if let Some(n) = field
                    .strip_prefix("rbytes=")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    read = Some(read.unwrap_or(0) + n);
                }
                if let Some(n) = field
                    .strip_prefix("wbytes=")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    write = Some(write.unwrap_or(0) + n);
                }
            }
        }
        Usage {
            cpu_usec: keyed(&self.path.join("cpu.stat"), "usage_usec"),
            memory_bytes: single(&self.path.join("memory.current")),
            memory_peak_bytes: single(&self.path.join("memory.peak")),
            io_read_bytes: read,
            io_write_bytes: write,
            pids: single(&self.path.join("pids.current")),
        }
    }
}

/// What a job's cgroup says it used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub pids: Option<u64>,
}

impl JobCgroup {
    /// The descriptor a child writes "0" to, to join (see `procs`).
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// The pids in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        self.account().pids()
    }

    /// The cgroup's accounting, to read without holding the job (the
    /// resource sampler reads it while the runner goes on).
    pub fn account(&self) -> Account {
        Account {
            path: self.path.clone(),
        }
    }

    /// A key of `cgroup.events` (`populated`, `frozen`).
    fn event(&self, key: &str) -> Option<bool> {
        let text = fs::read_to_string(self.path.join("cgroup.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u8>().ok())
            .map(|v| v == 1)
    }

    /// True while any process is in the cgroup.
    pub fn populated(&self) -> bool {
        self.event("populated").unwrap_or(false)
    }

    /// Freezes (`true`) or thaws the whole tree, and waits up to `within`
    /// until the kernel says it is done; `Ok(false)` when it was not.
    pub fn freeze(&self, frozen: bool, within: Duration) -> io::Result<bool> {
        write_file(
            &self.path.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.event("frozen") == Some(frozen) {
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(self.event("frozen") == Some(frozen))
    }

    /// Sends `signal` to every process in the cgroup, twice over, so a
    /// child forked while the first round ran is reached too.
    pub fn signal_all(&self, signal: libc::c_int) {
        for _ in 0..2 {
            for pid in self.pids() {
                // SAFETY: kill(2) on a pid read from the job's own cgroup.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// Kills every process in the cgroup at once (`cgroup.kill`, Linux
    /// 5.14), falling back to SIGKILL pid by pid.
    pub fn kill(&self) {
        if write_file(&self.path.join("cgroup.kill"), "1").is_err() {
            // Frozen processes die on SIGKILL too.
            self.signal_all(libc::SIGKILL);
        }
    }

    /// Kills what is left, waits until the cgroup is empty (up to
    /// `within`) and removes it. Returns whether it is gone.
    pub fn remove(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if !self.populated() {
                match fs::remove_dir(&self.path) {
                    Ok(()) => return true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
                    Err(_) => {}
                }
            } else {
                self.kill();
            }
            if Instant::now() >= deadline {
                log::warn!("cgroup {} is not empty; left in place", self.path.display());
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many processes the kernel's OOM killer ended in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        keyed(&self.path.join("memory.events"), "oom_kill").unwrap_or(0)
    }

    /// What the cgroup's files say it used.
    pub fn usage(&self) -> Usage {
        self.account().usage()
    }
}

/// A file holding one number.
fn single(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// True when `dir` is on a cgroup2 file system.
fn is_cgroup2(dir: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    // f_type's integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// This process's cgroup, when systemd delegated it (`Delegate=yes`): the
/// directory carries systemd's `trusted.delegate` or `user.delegate` mark,
/// or belongs to this (non-root) user, as systemd makes a delegated cgroup
/// of an unprivileged service. A cgroup that root can merely write is not
/// taken: managing children of a cgroup systemd did not delegate would
/// fight systemd.
fn delegated_own_cgroup() -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    if relative == "/" {
        return None; // the root of the hierarchy is never ours
    }
    let mount = cgroup2_mount()?;
    let dir = mount.join(relative.trim_start_matches('/'));
    let marked = ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        rustix::fs::getxattr(&dir, *name, &mut value).is_ok_and(|n| n > 0 && value[0] == b'1')
    });
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let owned = euid != 0 && fs::metadata(&dir).is_ok_and(|m| m.uid() == euid);
    (marked || owned).then_some(dir)
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid systems), from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = before.split_whitespace();
        let root = fields.nth(3)?;
        let point = fields.next()?;
        (root == "/").then(|| PathBuf::from(point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_single_files() {
        let dir = std::env::temp_dir().join(format!("trainbox-cg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
        )
        .unwrap();
        fs::write(dir.join("memory.current"), "4096\n").unwrap();
        assert_eq!(keyed(&dir.join("cpu.stat"), "usage_usec"), Some(1234));
        assert_eq!(keyed(&dir.join("cpu.stat"), "usage"), None);
        assert_eq!(single(&dir.join("memory.current")), Some(4096));
        assert_eq!(single(&dir.join("missing")), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
