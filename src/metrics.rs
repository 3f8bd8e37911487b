//! Prometheus metrics: what the server counts as it goes, and the text
//! exposition for `GET /metrics`.
//!
//! Label values come from fixed sets only (route names, status codes,
//! download outcomes, job statuses), so a client cannot grow the number of
//! series.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::records::JobStatus;

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
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
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
    pub fn render(
        &self,
        downloads_in_flight: usize,
        trainers: usize,
        jobs: &[(JobStatus, usize)],
    ) -> String {
        self.downloads_in_flight.set(downloads_in_flight as i64);
        self.jobs_running.set(trainers as i64);
        for status in JobStatus::ALL {
            let count = jobs
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
        let text = m.render(2, 1, &[(JobStatus::Running, 1), (JobStatus::Completed, 3)]);
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
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }
}
