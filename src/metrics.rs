//! Prometheus metrics: what the server counts as it goes, and the text
//! exposition for `GET /metrics`.
//!
//! Label values come from fixed sets only (route names, status codes,
//! download outcomes, job statuses), so a client cannot grow the number of
//! series; the per-job resource gauges are labelled by job for running
//! jobs only (at most `--max-jobs` of them), and cleared as jobs end.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde_json::Value;

use crate::names::JobId;
use crate::store::records::JobStatus;

/// The per-job resource gauges: (name, help, field of the sample).
const JOB_GAUGES: &[(&str, &str, &str)] = &[
    (
        "job_cpu_percent",
        "CPU use of a running job over its last sampling interval, in percent of one core.",
        "cpu_percent",
    ),
    (
        "job_cpu_seconds",
        "CPU time a running job has used.",
        "cpu_seconds",
    ),
    (
        "job_resident_bytes",
        "Resident memory of a running job's processes.",
        "rss_bytes",
    ),
    (
        "job_memory_bytes",
        "Memory charged to a running job's cgroup (page cache included), where it has one.",
        "memory_bytes",
    ),
    (
        "job_threads",
        "Threads of a running job's processes.",
        "threads",
    ),
    (
        "job_read_bytes",
        "Bytes a running job's processes read from storage.",
        "read_bytes",
    ),
    (
        "job_write_bytes",
        "Bytes a running job's processes wrote to storage.",
        "write_bytes",
    ),
    (
        "job_gpu_percent",
        "GPU (SM) utilisation of a running job's processes, summed over devices.",
        "gpu_percent",
    ),
    (
        "job_gpu_memory_bytes",
        "GPU memory a running job's processes hold.",
        "gpu_memory_bytes",
    ),
];

/// What the gauges are set to when `/metrics` is read.
pub struct Now<'a> {
    pub downloads_in_flight: usize,
    pub trainers: usize,
    pub jobs: &'a [(JobStatus, usize)],
    /// The latest resource sample of each running job.
    pub running: &'a [(JobId, Value)],
    /// The root's file system, and what the jobs under it take.
    pub disk: Option<DiskNow>,
}

/// Disk figures for the gauges.
pub struct DiskNow {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub jobs_bytes: u64,
}

/// Request durations from a millisecond to ten minutes (downloads).
const BUCKETS: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0, 600.0];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    downloads_in_flight: IntGauge,
    download_bytes: IntCounter,
    downloads: IntCounterVec,
    jobs: IntGaugeVec,
    jobs_running: IntGauge,
    accept_restarts: IntCounter,
    job_gauges: Vec<(GaugeVec, &'static str)>,
    disk: IntGaugeVec,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    result.expect("metric definitions are static and valid")
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = must(Registry::new_custom(Some("trainbox".into()), None));
        let requests = must(IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["route", "status"],
        ));
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from the request to the last byte of the response, by route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        ));
        let downloads_in_flight = must(IntGauge::new(
            "downloads_in_flight",
            "Downloads streaming now.",
        ));
        let download_bytes = must(IntCounter::new(
            "download_bytes_total",
            "Bytes sent in download responses (heads and bodies).",
        ));
        let downloads = must(IntCounterVec::new(
            Opts::new(
                "downloads_total",
                "Finished downloads by outcome: completed, client_gone, changed (a file changed mid-stream), failed.",
            ),
            &["outcome"],
        ));
        let jobs = must(IntGaugeVec::new(
            Opts::new("jobs", "Jobs under the root, by status."),
            &["status"],
        ));
        let jobs_running = must(IntGauge::new(
            "trainers_running",
            "Trainer processes the runner has running or paused.",
        ));
        let accept_restarts = must(IntCounter::new(
            "accept_loop_restarts_total",
            "Times the accept loop died (descriptors exhausted, say) and was started again.",
        ));
        let job_gauges: Vec<(GaugeVec, &'static str)> = JOB_GAUGES
            .iter()
            .map(|(name, help, field)| {
                (
                    must(GaugeVec::new(Opts::new(*name, *help), &["job"])),
                    *field,
                )
            })
            .collect();
        let disk = must(IntGaugeVec::new(
            Opts::new(
                "disk_bytes",
                "The root's file system: total, free (to unprivileged users), and taken by jobs.",
            ),
            &["kind"],
        ));
        for (gauge, _) in &job_gauges {
            must(registry.register(Box::new(gauge.clone())));
        }
        for collector in [
            Box::new(disk.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(downloads_in_flight.clone()),
            Box::new(download_bytes.clone()),
            Box::new(downloads.clone()),
            Box::new(jobs.clone()),
            Box::new(jobs_running.clone()),
            Box::new(accept_restarts.clone()),
        ] {
            must(registry.register(collector));
        }
        Metrics {
            registry,
            requests,
            duration,
            downloads_in_flight,
            download_bytes,
            downloads,
            jobs,
            jobs_running,
            accept_restarts,
            job_gauges,
            disk,
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.duration.with_label_values(&[route]).observe(seconds);
    }

    /// Counts one finished download.
    pub fn download(&self, outcome: &'static str, bytes: u64) {
        self.downloads.with_label_values(&[outcome]).inc();
        self.download_bytes.inc_by(bytes);
    }

    pub fn accept_restarted(&self) {
        self.accept_restarts.inc();
    }

    /// The text exposition, with the gauges set to `now`.
    pub fn render(&self, now: &Now<'_>) -> String {
        self.downloads_in_flight.set(now.downloads_in_flight as i64);
        self.jobs_running.set(now.trainers as i64);
        // Only the jobs running now: an ended job's series goes away.
        for (gauge, field) in &self.job_gauges {
            gauge.reset();
            for (job, sample) in now.running {
                if let Some(value) = sample.get(*field).and_then(Value::as_f64) {
                    gauge.with_label_values(&[job.as_str()]).set(value);
                }
            }
        }
        if let Some(disk) = &now.disk {
            for (kind, bytes) in [
                ("total", disk.total_bytes),
                ("free", disk.free_bytes),
                ("jobs", disk.jobs_bytes),
            ] {
                self.disk
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        for status in JobStatus::ALL {
            let count = now
                .jobs
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.jobs
                .with_label_values(&[status.as_str()])
                .set(count as i64);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Status codes as static label values.
fn status_label(status: u16) -> &'static str {
    match status {
        101 => "101",
        200 => "200",
        201 => "201",
        206 => "206",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        416 => "416",
        431 => "431",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family() {
        let m = Metrics::default();
        m.request("ListJobs", 200, 0.002);
        m.request("DownloadModel", 206, 3.0);
        m.download("completed", 1234);
        let job = JobId::parse("j1").unwrap();
        let running = [(
            job,
            serde_json::json!({"cpu_percent": 150.5, "rss_bytes": 1024, "gpu_percent": null}),
        )];
        let text = m.render(&Now {
            downloads_in_flight: 2,
            trainers: 1,
            jobs: &[(JobStatus::Running, 1), (JobStatus::Completed, 3)],
            running: &running,
            disk: Some(DiskNow {
                total_bytes: 100,
                free_bytes: 40,
                jobs_bytes: 7,
            }),
        });
        for needle in [
            "trainbox_http_requests_total{route=\"ListJobs\",status=\"200\"} 1",
            "trainbox_http_request_duration_seconds_bucket{route=\"DownloadModel\",le=\"10\"} 1",
            "trainbox_downloads_in_flight 2",
            "trainbox_download_bytes_total 1234",
            "trainbox_downloads_total{outcome=\"completed\"} 1",
            "trainbox_jobs{status=\"completed\"} 3",
            "trainbox_jobs{status=\"failed\"} 0",
            "trainbox_trainers_running 1",
            "# TYPE trainbox_http_request_duration_seconds histogram",
            "trainbox_job_cpu_percent{job=\"j1\"} 150.5",
            "trainbox_job_resident_bytes{job=\"j1\"} 1024",
            "trainbox_disk_bytes{kind=\"free\"} 40",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        // A figure the sample does not have is no series at all.
        assert!(!text.contains("trainbox_job_gpu_percent{"));
        // The job ends: its series go.
        let text = m.render(&Now {
            downloads_in_flight: 0,
            trainers: 0,
            jobs: &[],
            running: &[],
            disk: None,
        });
        assert!(!text.contains("job=\"j1\""), "{text}");
    }
}
