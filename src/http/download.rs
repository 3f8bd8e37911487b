//! Downloads, from admission to the last byte: the model, a checkpoint or
//! the logs as a ZIP.
//!
//! [`admit_model`] and [`admit_logs`] run on a worker: they check the job
//! and what it would archive, take a download slot, and give a [`Download`]
//! (or the error to answer). [`serve`] then streams it on the download's own
//! thread: a planned archive (exact length, ETag, `Range`, `If-Range`,
//! `If-None-Match`) for `auto` and `stored`, a chunked deflate stream for
//! `deflate` and the logs. The body goes to the request's `ResponseWriter`
//! in 1 MiB blocks, stored file data by sendfile(2) (`http::sink`). A body
//! that must stop short — a file changed, the client stopped reading past
//! the write timeout — ends with the connection shut down, so the client
//! sees it short and no stray bytes after it.

use std::io::{self, BufWriter, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use tiny_http::{Request, ResponseWriter};

use super::error::{ApiError, Context};
use super::headers;
use super::range::{RangeRequest, parse_range};
use super::request::HttpRequest;
use super::respond::{self, ChunkedWriter, Framing, write_head};
use super::router::{self, Route};
use super::sink::{SocketSink, is_client_error};
use crate::app::{App, JobDownload, Slot};
use crate::archive::digest::{changed, is_changed};
use crate::archive::plan::Fingerprint;
use crate::archive::stream::{ArchiveReader, MemberSource};
use crate::archive::streamed::write_parallel_deflated;
use crate::archive::zipwriter::{StreamMember, write_deflated};
use crate::archive::{ArchiveSource, Compression, etag, file_set_id, plan_archive};
use crate::counting::Counting;
use crate::names::JobId;
use crate::store::JobFiles;
use crate::store::walk::fingerprint;

/// Size of each write to the socket.
const BLOCK: usize = 1 << 20;
/// Buffer in front of chunked framing, so chunks are this large.
const CHUNK: usize = 256 * 1024;

/// How a download ended, for the access log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte promised was written.
    Completed,
    /// The client went away or stopped reading.
    ClientGone,
    /// A file changed while it was streamed; the response was cut short.
    Changed,
    /// Something failed on the server before or while streaming.
    Failed,
}

impl Outcome {
    /// The `outcome` label of the download metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ClientGone => "client_gone",
            Outcome::Changed => "changed",
            Outcome::Failed => "failed",
        }
    }
}

/// What the access log records of a finished download.
pub struct Sent {
    pub status: u16,
    pub bytes: u64,
    pub outcome: Outcome,
}

/// How an admitted download is written.
enum Layout {
    /// A planned archive (`auto`, `stored`): exact length, ranges.
    Planned(Compression),
    /// Every member deflated, chunked (`deflate`).
    Deflated,
    /// The logs: deflated, each file up to its size when it is opened.
    Logs,
}

/// A download that passed every check and holds a download slot.
pub struct Download {
    files: JobFiles,
    layout: Layout,
    filename: String,
    /// What the archive holds, for its comment: the job and the source,
    /// and where its manifest is.
    contents: String,
    head: bool,
    _slot: Slot,
    /// Holds the job against deletion while this download runs.
    _job: JobDownload,
}

fn slot(app: &App) -> Result<Slot, ApiError> {
    app.downloads
        .try_acquire(app.limits.max_downloads)
        .ok_or(ApiError::Unavailable(
            "Too many downloads in progress; try again shortly",
        ))
}

/// `GET /api/training/{job_id}/download/model[?checkpoint=|?exclude=checkpoints]`
/// and `GET /api/training/{job_id}/download/logs`: the job must exist, have
/// what `source` names (a checkpoint complete, unless `allow_incomplete`),
/// and a download slot must be free.
pub fn admit(
    app: &App,
    id: &JobId,
    source: &ArchiveSource,
    compression: Compression,
    allow_incomplete: bool,
    head: bool,
) -> Result<Download, ApiError> {
    let job = super::open_job(app, id)?;
    // From here on the job is not deleted under this download.
    let held = app.job_downloads.enter(id);
    let missing = || match source {
        ArchiveSource::Model { .. } => ApiError::ModelNotFound(id.clone()),
        ArchiveSource::Checkpoint(name) => ApiError::CheckpointNotFound(name.clone()),
        ArchiveSource::Logs => ApiError::LogNotFound(id.clone()),
    };
    // No model directory at all is "no model", even for a checkpoint.
    if !matches!(source, ArchiveSource::Logs)
        && !job.has_model().context("looking for the model")?
    {
        return Err(ApiError::ModelNotFound(id.clone()));
    }
    if let (ArchiveSource::Checkpoint(name), false) = (source, allow_incomplete) {
        let checkpoint = job.checkpoint(name).context("looking at the checkpoint")?;
        if checkpoint.is_some_and(|c| !c.complete) {
            return Err(ApiError::Conflict(format!(
                "Checkpoint '{name}' is still being written; \
                 download it once complete, or with allow_incomplete=1"
            )));
        }
    }
    let files = job
        .archive(source)
        .context("listing the files to archive")?
        .ok_or_else(missing)?;
    let (layout, filename) = match source {
        ArchiveSource::Logs => (Layout::Logs, format!("logs_{id}.zip")),
        ArchiveSource::Model { .. } => (layout(compression), format!("model_{id}.zip")),
        ArchiveSource::Checkpoint(name) => (layout(compression), format!("model_{id}_{name}.zip")),
    };
    // Where the archive's manifest is, and what the archive holds.
    let (query, contents) = match source {
        ArchiveSource::Checkpoint(name) => (
            format!("checkpoint={}&", super::percent::encode(name.as_str())),
            format!("checkpoint {name}"),
        ),
        ArchiveSource::Model {
            exclude_checkpoints: true,
        } => (
            "exclude=checkpoints&".to_owned(),
            "model without checkpoints".to_owned(),
        ),
        _ => (String::new(), "model".to_owned()),
    };
    let contents = format!(
        "trainbox job {id}, {contents}; manifest: /api/training/{id}/files?{query}format=sha256sum"
    );
    Ok(Download {
        files,
        layout,
        filename,
        contents,
        head,
        _job: held,
        _slot: slot(app)?,
    })
}

fn layout(compression: Compression) -> Layout {
    match compression {
        Compression::Deflate => Layout::Deflated,
        planned => Layout::Planned(planned),
    }
}

/// Streams `download` to `request`; runs on the download's own thread.
pub fn serve(app: &App, asked: &HttpRequest, request: Request, download: Download) -> Sent {
    match download.layout {
        Layout::Planned(compression) => planned(app, asked, request, &download, compression),
        Layout::Deflated | Layout::Logs => chunked(asked, request, &download),
    }
}

fn disposition(filename: &str) -> String {
    // Names are built from parsed ids: no quotes or controls to escape.
    format!("attachment; filename=\"{filename}\"")
}

/// Ends a download: how it went, and a connection shut down when the body
/// stopped short (the client sees it short instead of waiting for more).
pub(super) fn finish(
    writer: &ResponseWriter,
    filename: &str,
    result: io::Result<()>,
    client_failed: bool,
) -> Outcome {
    let outcome = match result {
        Ok(()) => return Outcome::Completed,
        Err(e) if is_changed(&e) => Outcome::Changed,
        Err(e) if client_failed || is_client_error(&e) => Outcome::ClientGone,
        Err(e) => {
            log::error!("{filename}: {e}");
            Outcome::Failed
        }
    };
    let _ = writer.shutdown(Shutdown::Both);
    log::warn!("{filename}: {outcome:?}; connection closed");
    outcome
}

/// The answer when writing the head already failed, or the head was all.
pub(super) fn head_only(status: u16, written: io::Result<u64>) -> Sent {
    match written {
        Ok(bytes) => Sent {
            status,
            bytes,
            outcome: Outcome::Completed,
        },
        Err(_) => Sent {
            status,
            bytes: 0,
            outcome: Outcome::ClientGone,
        },
    }
}

fn planned(
    app: &App,
    asked: &HttpRequest,
    request: Request,
    download: &Download,
    compression: Compression,
) -> Sent {
    let entries = download.files.entries();
    // Two layouts: the final one, with every CRC up front (no data
    // descriptors: streaming readers take it) and a comment naming the
    // manifest, once the digest index knows every file; the early one,
    // with descriptors and no comment, before. Not from the per-process
    // CRC cache, which fills as downloads run. An archive served in the
    // early layout keeps it for a while (pinned): a bare `Range` resume
    // (curl -C -, wget -c) must get the very bytes it started with.
    let set = file_set_id(&entries, compression);
    let manifest = match app.digests.pinned(set) {
        true => None,
        false => app.digests.sha256sums(&entries),
    };
    let known_crc = |key: &Fingerprint| {
        manifest
            .as_ref()
            .and_then(|_| app.digests.get(key).map(|d| d.crc32))
    };
    let plan = match plan_archive(
        &entries,
        compression,
        &download.files,
        &app.caches,
        &known_crc,
    )
    .context("planning the archive")
    {
        // With every SHA-256 known, the comment also names the manifest's
        // own: a checksum file that checks the checksums.
        Ok(plan) => Arc::new(match &manifest {
            Some(manifest) => {
                let digest = crate::store::digests::sha256_hex(manifest.as_bytes());
                plan.with_comment(&format!("{}, SHA-256 {digest}", download.contents))
            }
            None => plan,
        }),
        Err(error) => {
            return Sent {
                status: error.status(),
                bytes: respond::send_error(request, &error),
                outcome: Outcome::Failed,
            };
        }
    };
    if manifest.is_none() && !download.head {
        app.digests.pin(set);
    }
    let etag = etag(&plan, compression);
    let head = vec![
        ("Content-Type", "application/zip".to_owned()),
        ("Content-Disposition", disposition(&download.filename)),
        ("Accept-Ranges", "bytes".to_owned()),
        ("ETag", etag),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let RangedBody {
        mut writer,
        status,
        head_bytes,
        start,
        end,
    } = match ranged_head(asked, request, head, plan.len(), download.head) {
        Ok(body) => body,
        Err(answered) => return answered,
    };
    let mut reader = ArchiveReader::new(plan, &download.files, Arc::clone(&app.caches), start, end);
    let mut sink = SocketSink::new(&mut writer, app.limits.sendfile);
    let mut buf = vec![0u8; BLOCK];
    let result = reader
        .write_to(&mut sink, &mut buf)
        .and_then(|_| sink.flush());
    let (sent, client_failed) = (sink.sent, sink.client_failed);
    Sent {
        status,
        bytes: head_bytes + sent,
        outcome: finish(&writer, &download.filename, result, client_failed),
    }
}

/// A ranged response whose head is out: bytes `start..end` of the whole
/// follow on `writer`.
pub(super) struct RangedBody {
    pub writer: ResponseWriter,
    pub status: u16,
    pub head_bytes: u64,
    pub start: u64,
    pub end: u64,
}

/// The head of a response with an exact length `len` and validators in
/// `head` (its `ETag` among them): 304 when `If-None-Match` names the
/// ETag (with the ETag and the other validators of `head`); else the
/// `Range` asked, unless a stale `If-Range` says the client's partial copy
/// is of something else (then the whole); 416 outside; for a HEAD, the
/// head alone. `Err` is a response already answered in full (304, 416, a
/// HEAD, or a client gone while the head was written).
pub(super) fn ranged_head(
    asked: &HttpRequest,
    request: Request,
    mut head: Vec<(&'static str, String)>,
    len: u64,
    head_only_asked: bool,
) -> Result<RangedBody, Sent> {
    let etag = head
        .iter()
        .find(|(name, _)| *name == "ETag")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    if asked
        .header("If-None-Match")
        .is_some_and(|list| headers::none_match(list, &etag))
    {
        head.retain(|(name, _)| matches!(*name, "ETag" | "Cache-Control" | "X-Repo-Commit"));
        let mut writer = request.into_writer();
        let written = write_head(&mut writer, 304, &head, None);
        return Err(head_only(
            304,
            written.and_then(|n| writer.flush().map(|_| n)),
        ));
    }
    let range = match asked.header("Range") {
        Some(range) if headers::range_allowed(asked.header("If-Range"), &etag) => {
            parse_range(range, len)
        }
        _ => RangeRequest::Full,
    };
    let (status, start, end) = match range {
        RangeRequest::Full => (200, 0, len),
        RangeRequest::Partial { start, end } => {
            head.push(("Content-Range", format!("bytes {start}-{}/{len}", end - 1)));
            (206, start, end)
        }
        RangeRequest::Unsatisfiable => {
            let error = ApiError::RangeNotSatisfiable { len };
            return Err(Sent {
                status: 416,
                bytes: respond::send_error(request, &error),
                outcome: Outcome::Completed,
            });
        }
    };
    let mut writer = request.into_writer();
    let written = write_head(
        &mut writer,
        status,
        &head,
        Some(Framing::Length(end - start)),
    )
    .and_then(|n| writer.flush().map(|_| n));
    match written {
        Ok(head_bytes) if !head_only_asked => Ok(RangedBody {
            writer,
            status,
            head_bytes,
            start,
            end,
        }),
        other => Err(head_only(status, other)),
    }
}

/// A chunked (or, for HTTP/1.0, close-delimited) deflated archive: the
/// model in `deflate` mode, or the logs.
fn chunked(asked: &HttpRequest, request: Request, download: &Download) -> Sent {
    let head = [
        ("Content-Type", "application/zip".to_owned()),
        ("Content-Disposition", disposition(&download.filename)),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let framing = (!asked.http10).then_some(Framing::Chunked);
    let mut writer = request.into_writer();
    let written =
        write_head(&mut writer, 200, &head, framing).and_then(|n| writer.flush().map(|_| n));
    let head_bytes = match written {
        Ok(n) if !download.head => n,
        other => return head_only(200, other),
    };
    let mut counter = Counting::new(&mut writer);
    let logs = matches!(download.layout, Layout::Logs);
    let write_zip = |out: &mut dyn Write| write_members(out, &download.files, logs);
    let result = if asked.http10 {
        let mut out = BufWriter::with_capacity(CHUNK, &mut counter);
        write_zip(&mut out).and_then(|_| out.flush())
    } else {
        let mut out = BufWriter::with_capacity(CHUNK, ChunkedWriter::new(&mut counter));
        write_zip(&mut out).and_then(|_| {
            out.into_inner()
                .map_err(|e| e.into_error())?
                .finish()
                .map(|_| ())
        })
    };
    let bytes = head_bytes + counter.count;
    Sent {
        status: 200,
        bytes,
        outcome: finish(&writer, &download.filename, result, false),
    }
}

/// Deflates every file of `files` into `out`: model members on every core
/// (`archive::streamed`), the logs with the zip crate. A model member must
/// still be the file that was walked (or the response stops short); a log
/// may have grown, and is copied up to its size when it is opened, a
/// consistent prefix.
fn write_members(out: &mut dyn Write, files: &JobFiles, growing: bool) -> io::Result<()> {
    let entries = files.entries();
    let members = entries.iter().enumerate().map(|(index, entry)| {
        let file = files.open(index)?;
        let now = fingerprint(&file.metadata()?);
        let expected = if growing { now } else { entry.fingerprint };
        if now != expected {
            return Err(changed(&entry.name));
        }
        Ok(StreamMember {
            name: entry.name.clone(),
            reader: Verified {
                file,
                left: expected.size,
                expected,
                growing,
            },
            size: expected.size,
            mtime_secs: expected.mtime_ns.div_euclid(1_000_000_000) as i64,
        })
    });
    if growing {
        write_deflated(out, members).map(|_| ())
    } else {
        write_parallel_deflated(out, members).map(|_| ())
    }
}

/// A member file read up to its planned size, which must still match its
/// fingerprint at the end (unless it is a log allowed to grow).
struct Verified<F> {
    file: F,
    left: u64,
    expected: Fingerprint,
    growing: bool,
}

impl Read for Verified<cap_std::fs::File> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed("a member"));
        }
        self.left -= n as u64;
        if self.left == 0 && !self.growing && fingerprint(&self.file.metadata()?) != self.expected {
            return Err(changed("a member"));
        }
        Ok(n)
    }
}

/// Appends the download to the audit: when, to whom (address and token
/// label), what (job, model, checkpoint, logs or one file through the Hub
/// routes, mode, range), how much
/// was sent, how it ended and how long it took. `HEAD` sends nothing and
/// is not recorded.
pub fn audit(app: &App, asked: &HttpRequest, sent: &Sent, seconds: f64) {
    let Some(audit) = app.audit.as_ref() else {
        return;
    };
    if asked.method != "GET" {
        return;
    }
    let (job, what, mode) = match router::route(&asked.method, &asked.target).map(|m| m.route) {
        Ok(Route::DownloadModel {
            job,
            source,
            compression,
            ..
        }) => {
            let what = match source {
                ArchiveSource::Checkpoint(name) => format!("checkpoint {name}"),
                ArchiveSource::Model {
                    exclude_checkpoints: true,
                } => "model without checkpoints".to_owned(),
                _ => "model".to_owned(),
            };
            (job, what, compression.as_str())
        }
        Ok(Route::DownloadLogs(job)) => (job, "logs".to_owned(), "deflate"),
        Ok(Route::HubResolve {
            job,
            revision,
            path,
        }) => (job, format!("file {path} at {revision}"), "hub"),
        _ => return,
    };
    let entry = serde_json::json!({
        "time": crate::timefmt::now_rfc3339(),
        "client": asked.peer.map(|p| p.ip().to_string()),
        "who": asked.who,
        "job": job.as_str(),
        "what": what,
        "mode": mode,
        "range": asked.header("Range"),
        "status": sent.status,
        "bytes": sent.bytes,
        "outcome": sent.outcome.label(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
    });
    if let serde_json::Value::Object(entry) = entry {
        audit.record(entry);
    }
}
