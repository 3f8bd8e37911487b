//! Resource use of running jobs, sampled every few seconds by one thread:
//! CPU time and utilisation, memory, processes and threads, read and
//! written bytes — from the job's cgroup where it has one, and from `/proc`
//! over its processes (the cgroup's, or the trainer's process group)
//! otherwise — and GPU utilisation and memory per process through NVML,
//! loaded at run time when `libnvidia-ml.so.1` is there (a Jetson's load
//! file stands in where it is not). Each sample is appended to the job's
//! `resources.jsonl` and kept as the job's latest, for `/metrics`.
//!
//! A sample costs a few small reads per process of the job; process
//! groups are found by one scan of `/proc` a round, for all jobs. Nothing here can fail a job: a
//! figure that cannot be read is left out.
#![allow(clippy::disallowed_methods)] // /proc and /sys are the kernel's files, not the store's

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde_json::{Value, json};

use super::cgroup::Account;
use super::state::{Hold, Shared};
use crate::names::JobId;
use crate::timefmt;

/// How often a running job is sampled by default.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The NVML library as the driver installs it (no `-dev` package needed).
const NVML_LIBRARY: &str = "libnvidia-ml.so.1";
/// A Jetson's GPU load, in tenths of a percent, for the whole device.
const JETSON_LOAD: [&str; 2] = [
    "/sys/devices/gpu.0/load",
    "/sys/devices/platform/gpu.0/load",
];

/// What one process of a job is using, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pgrp: i32,
    /// utime + stime + cutime + cstime, in clock ticks: its own CPU time
    /// and that of the children it has reaped.
    pub cpu_ticks: u64,
    pub threads: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is the process's
/// own choice and may hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let ticks = [14, 15, 16, 17]
        .into_iter()
        .map(|n| field(n).map(|v| v.max(0) as u64))
        .sum::<Option<u64>>()?;
    Some(ProcStat {
        pgrp: field(5)? as i32,
        cpu_ticks: ticks,
        threads: field(20)?.max(0) as u64,
        rss_pages: field(24)?.max(0) as u64,
    })
}

/// `read_bytes` and `write_bytes` of `/proc/<pid>/io` (what reached the
/// storage layer).
pub fn parse_io(text: &str) -> (Option<u64>, Option<u64>) {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    };
    (value("read_bytes:"), value("write_bytes:"))
}

/// A running job, as the sampler finds it under the runner's lock.
struct Target {
    id: JobId,
    pgid: i32,
    cgroup: Option<Account>,
}

/// What a job's processes add up to at one moment.
#[derive(Debug, Default, Clone, PartialEq)]
struct Totals {
    processes: u64,
    threads: u64,
    rss_bytes: u64,
    cpu_seconds: f64,
    read_bytes: Option<u64>,
    write_bytes: Option<u64>,
}

/// Sums `/proc` over `pids`.
fn proc_totals(pids: &[i32], tick: f64, page: u64) -> Totals {
    let mut totals = Totals::default();
    for pid in pids {
        let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        else {
            continue; // gone since it was listed
        };
        totals.processes += 1;
        totals.threads += stat.threads;
        totals.rss_bytes += stat.rss_pages * page;
        totals.cpu_seconds += stat.cpu_ticks as f64 / tick;
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/io")) {
            let (read, write) = parse_io(&text);
            totals.read_bytes = add(totals.read_bytes, read);
            totals.write_bytes = add(totals.write_bytes, write);
        }
    }
    totals
}

fn add(sum: Option<u64>, more: Option<u64>) -> Option<u64> {
    match (sum, more) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// Every process by process group, from one scan of `/proc` (shared by
/// all the jobs of a round).
fn processes_by_group() -> HashMap<i32, Vec<i32>> {
    let mut groups: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return groups;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            groups.entry(stat.pgrp).or_default().push(pid);
        }
    }
    groups
}

/// GPU figures for a set of processes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct GpuUse {
    percent: Option<f64>,
    memory_bytes: Option<u64>,
}

/// Where GPU figures come from on this box, found once.
enum Gpu {
    Nvml {
        nvml: Box<Nvml>,
        /// The driver's timestamp of the last utilisation sample read, per
        /// device, so each read covers the time since the one before.
        last_seen: HashMap<u32, u64>,
    },
    /// A Jetson: the whole device's load, told for the only running job.
    Jetson(&'static str),
    None,
}

impl Gpu {
    fn find() -> Gpu {
        match Nvml::builder().lib_path(OsStr::new(NVML_LIBRARY)).init() {
            Ok(nvml) => {
                log::info!("resources: GPU use per process through NVML");
                return Gpu::Nvml {
                    nvml: Box::new(nvml),
                    last_seen: HashMap::new(),
                };
            }
            Err(e) => log::debug!("resources: no NVML ({e})"),
        }
        match JETSON_LOAD
            .into_iter()
            .find(|path| fs::read_to_string(path).is_ok())
        {
            Some(path) => {
                log::info!("resources: GPU load of the device from {path}");
                Gpu::Jetson(path)
            }
            None => Gpu::None,
        }
    }

    /// What `pids` use of every GPU; `jobs` is how many jobs run now.
    fn usage(&mut self, pids: &[i32], jobs: usize) -> GpuUse {
        match self {
            Gpu::Nvml { nvml, last_seen } => nvml_usage(nvml, last_seen, pids),
            Gpu::Jetson(path) if jobs == 1 => GpuUse {
                percent: fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .map(|load| load / 10.0),
                memory_bytes: None,
            },
            _ => GpuUse::default(),
        }
    }
}

/// The SM utilisation (summed over devices) and GPU memory of `pids`.
fn nvml_usage(nvml: &Nvml, last_seen: &mut HashMap<u32, u64>, pids: &[i32]) -> GpuUse {
    let ours = |pid: u32| pids.contains(&(pid as i32));
    let mut found = GpuUse::default();
    let count = nvml.device_count().unwrap_or(0);
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        if let Ok(processes) = device.running_compute_processes() {
            for process in processes.into_iter().filter(|p| ours(p.pid)) {
                if let UsedGpuMemory::Used(bytes) = process.used_gpu_memory {
                    found.memory_bytes = Some(found.memory_bytes.unwrap_or(0) + bytes);
                }
            }
        }
        let since = last_seen.get(&index).copied();
        if let Ok(samples) = device.process_utilization_stats(since) {
            let mut per_pid: HashMap<u32, u32> = HashMap::new();
            for sample in &samples {
                last_seen.insert(index, sample.timestamp.max(since.unwrap_or(0)));
                if ours(sample.pid) {
                    let util = per_pid.entry(sample.pid).or_default();
                    *util = (*util).max(sample.sm_util);
                }
            }
            if !per_pid.is_empty() || found.memory_bytes.is_some() {
                let sum: u32 = per_pid.values().sum();
                found.percent = Some(found.percent.unwrap_or(0.0) + f64::from(sum));
            }
        }
    }
    found
}

/// The sampler's memory between two rounds.
struct Sampler {
    shared: Weak<Shared>,
    every: Duration,
    gpu: Gpu,
    /// CPU seconds and when, at each job's last sample.
    previous: HashMap<JobId, (f64, Instant)>,
    tick: f64,
    page: u64,
}

/// Starts the sampler; it ends with the runner.
pub(super) fn start(shared: &Arc<Shared>, every: Duration) -> std::io::Result<()> {
    let shared = Arc::downgrade(shared);
    thread::Builder::new()
        .name("resources".into())
        .spawn(move || {
            // SAFETY: sysconf reads constants of the system.
            let (tick, page) = unsafe {
                (
                    libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                    libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
                )
            };
            let mut sampler = Sampler {
                shared,
                every,
                gpu: Gpu::find(),
                previous: HashMap::new(),
                tick,
                page,
            };
            while sampler.round() {
                thread::sleep(sampler.every);
            }
        })?;
    Ok(())
}

impl Sampler {
    /// Samples every running job once; false once the runner is gone.
    fn round(&mut self) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        let targets: Vec<Target> = {
            let state = shared.lock();
            if state.stopping {
                return false;
            }
            state
                .active
                .iter()
                .filter(|(_, active)| !active.paused)
                .map(|(id, active)| Target {
                    id: id.clone(),
                    pgid: active.pgid,
                    cgroup: match &active.hold {
                        Hold::Cgroup(cgroup) => Some(cgroup.account()),
                        Hold::Group => None,
                    },
                })
                .collect()
        };
        self.previous
            .retain(|id, _| targets.iter().any(|t| t.id == *id));
        let jobs = targets.len();
        let groups = match targets.iter().any(|t| t.cgroup.is_none()) {
            true => processes_by_group(),
            false => HashMap::new(),
        };
        let mut latest = HashMap::new();
        for target in targets {
            let pids = match &target.cgroup {
                Some(cgroup) => cgroup.pids(),
                None => groups.get(&target.pgid).cloned().unwrap_or_default(),
            };
            let sample = self.sample(&target, &pids, jobs);
            if let Ok(Some(dir)) = shared.store.job(&target.id)
                && let Err(e) = dir.append_resources(&sample)
            {
                log::warn!("job {}: resources not recorded: {e}", target.id);
            }
            latest.insert(target.id, sample);
        }
        *shared.resources.lock().unwrap_or_else(|e| e.into_inner()) = latest;
        true
    }

    fn sample(&mut self, target: &Target, pids: &[i32], jobs: usize) -> Value {
        let totals = proc_totals(pids, self.tick, self.page);
        let usage = target.cgroup.as_ref().map(Account::usage);
        // The cgroup counts what exited processes used too; /proc only
        // what is alive (and what it reaped).
        let cpu_seconds = usage
            .as_ref()
            .and_then(|u| u.cpu_usec)
            .map_or(totals.cpu_seconds, |usec| usec as f64 / 1e6);
        let now = Instant::now();
        let cpu_percent = self
            .previous
            .insert(target.id.clone(), (cpu_seconds, now))
            .map(|(before, at)| {
                let wall = now.duration_since(at).as_secs_f64();
                ((cpu_seconds - before).max(0.0) / wall * 100.0 * 10.0).round() / 10.0
            });
        let gpu = self.gpu.usage(pids, jobs);
        let (read, write) = match &usage {
            Some(u) if u.io_read_bytes.is_some() => (u.io_read_bytes, u.io_write_bytes),
            _ => (totals.read_bytes, totals.write_bytes),
        };
        json!({
            "time": timefmt::now_rfc3339(),
            "cpu_seconds": (cpu_seconds * 1000.0).round() / 1000.0,
            "cpu_percent": cpu_percent,
            "rss_bytes": totals.rss_bytes,
            "memory_bytes": usage.as_ref().and_then(|u| u.memory_bytes),
            "processes": totals.processes,
            "threads": totals.threads,
            "read_bytes": read,
            "write_bytes": write,
            "gpu_percent": gpu.percent,
            "gpu_memory_bytes": gpu.memory_bytes,
            "source": if target.cgroup.is_some() { "cgroup" } else { "process-group" },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stat_line(comm: &str) -> String {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice threads
        // itrealvalue starttime vsize rss ...
        format!(
            "4242 ({comm}) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 12 0 999 123456789 2048 18446744073709551615 0 0"
        )
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = parse_stat(&stat_line("python3")).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pgrp: 4240,
                cpu_ticks: 310,
                threads: 12,
                rss_pages: 2048
            }
        );
        let tricky = parse_stat(&stat_line("a) S 1 9 9 (b")).unwrap();
        assert_eq!(tricky.pgrp, 4240);
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn io_bytes_are_read_by_key() {
        let text = "rchar: 100\nwchar: 50\nsyscr: 3\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(text), (Some(4096), Some(8192)));
        assert_eq!(parse_io("rchar: 1\n"), (None, None));
    }

    #[test]
    fn this_process_is_found_in_its_own_group_and_counted() {
        // SAFETY: getpgrp and getpid cannot fail.
        let (pgid, pid) = unsafe { (libc::getpgrp(), libc::getpid()) };
        assert!(processes_by_group()[&pgid].contains(&pid));
        let totals = proc_totals(&[pid], 100.0, 4096);
        assert_eq!(totals.processes, 1);
        assert!(totals.threads >= 1 && totals.rss_bytes > 0);
        // A pid that does not exist is skipped, not an error.
        assert_eq!(proc_totals(&[i32::MAX], 100.0, 4096).processes, 0);
    }

    #[test]
    fn processes_not_on_a_gpu_have_no_gpu_figures() {
        // Whatever this machine has (here: no NVIDIA driver, no Jetson),
        // finding it is no error, and a process that is on no GPU gets no
        // figures, never zeros that look measured.
        let mut gpu = Gpu::find();
        assert_eq!(gpu.usage(&[i32::MAX], 2), GpuUse::default());
        assert_eq!(Gpu::None.usage(&[1], 1), GpuUse::default());
    }

    proptest! {
        /// Whatever a process calls itself, the fields after its name
        /// are found.
        #[test]
        fn any_command_name_parses(comm in "[ -~]{0,32}") {
            let stat = parse_stat(&stat_line(&comm));
            prop_assert_eq!(stat.map(|s| s.pgrp), Some(4240));
        }
    }
}
