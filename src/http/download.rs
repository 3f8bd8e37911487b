//! Streaming a download on its own thread: the model or a checkpoint as a
//! planned ZIP (exact length, ETag, Range), or deflated without a plan (the
//! logs, `compression=deflate`) with chunked framing.
//!
//! The body goes to the request's `ResponseWriter` in 1 MiB blocks (see
//! `http::respond` for why), and stored file data by sendfile(2) to that
//! writer's own socket, which it keeps open for as long as it lives. When
//! a body must stop short — a file changed, the client stopped reading past
//! the write timeout — the writer shuts the connection down, so the client
//! sees a body shorter than its `Content-Length` and no stray bytes after.

use std::io::{self, BufWriter, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tiny_http::{Request, ResponseWriter};

use super::error::ApiError;
use super::handlers::{Download, DownloadKind};
use super::range::{RangeRequest, parse_range};
use super::respond::{self, ChunkedWriter, Framing, write_head};
use super::router::Compression;
use crate::app::App;
use crate::archive::digest::{changed, is_changed};
use crate::archive::plan::Fingerprint;
use crate::archive::stream::{ArchiveReader, MemberSource, Sink};
use crate::archive::zipwriter::{StreamMember, write_deflated};
use crate::archive::{FileEntry, etag, plan_archive};
use crate::store::walk::fingerprint;
use crate::store::{HISTORY_FILE, JobDir, JobFiles, LOG_FILE, PROGRESS_FILE};

/// Size of each write to the socket.
const BLOCK: usize = 1 << 20;
/// Buffer in front of chunked framing, so chunks are this large.
const CHUNK: usize = 256 * 1024;
/// Bytes per sendfile(2) call.
const SENDFILE_CHUNK: u64 = 8 << 20;

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

/// Streams `download` to `request`; runs on the download's own thread.
pub fn serve(app: &App, request: Request, download: Download) -> Sent {
    let Download {
        job,
        kind,
        filename,
        head,
        slot: _slot,
    } = download;
    match kind {
        DownloadKind::Model {
            base,
            compression: Compression::Deflate,
        } => deflated_model(request, job, &base, &filename, head),
        DownloadKind::Model { base, compression } => {
            planned_model(app, request, job, &base, compression, &filename, head)
        }
        DownloadKind::Logs => logs(request, job, &filename, head),
    }
}

fn failed(request: Request, context: &str, e: io::Error) -> Sent {
    log::error!("{context}: {e}");
    let bytes = respond::send_error(request, &ApiError::Internal);
    Sent {
        status: 500,
        bytes,
        outcome: Outcome::Failed,
    }
}

fn header(request: &Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_owned())
}

fn disposition(filename: &str) -> String {
    // Names are built from parsed ids: no quotes or controls to escape.
    format!("attachment; filename=\"{filename}\"")
}

/// True when an `If-None-Match` list names `etag` (or is `*`).
fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn planned_model(
    app: &App,
    request: Request,
    job: JobDir,
    base: &str,
    compression: Compression,
    filename: &str,
    head: bool,
) -> Sent {
    let files = match job.files_under(base) {
        Ok(files) => files,
        Err(e) => return failed(request, "listing the files to archive", e),
    };
    let entries: Vec<FileEntry> = files.iter().map(|f| f.entry.clone()).collect();
    let source = JobFiles::new(job, &files);
    let plan = match plan_archive(&entries, compression, &source, &app.caches) {
        Ok(plan) => Arc::new(plan),
        Err(e) => return failed(request, "planning the archive", e),
    };
    let etag = etag(&plan, compression);
    let len = plan.len();

    if header(&request, "If-None-Match").is_some_and(|list| etag_listed(&list, &etag)) {
        let mut writer = request.into_writer();
        let bytes = write_head(&mut writer, 304, &[("ETag", etag)], None)
            .and_then(|n| writer.flush().map(|_| n))
            .unwrap_or(0);
        return Sent {
            status: 304,
            bytes,
            outcome: Outcome::Completed,
        };
    }
    // A stale `If-Range` (or a date, which cannot be compared strongly)
    // means the client's partial copy is of another archive: send it all.
    let range = match (header(&request, "Range"), header(&request, "If-Range")) {
        (Some(_), Some(if_range)) if if_range.trim() != etag => RangeRequest::Full,
        (Some(range), _) => parse_range(&range, len),
        (None, _) => RangeRequest::Full,
    };
    let mut headers = vec![
        ("Content-Type", "application/zip".to_owned()),
        ("Content-Disposition", disposition(filename)),
        ("Accept-Ranges", "bytes".to_owned()),
        ("ETag", etag),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let (status, start, end) = match range {
        RangeRequest::Full => (200, 0, len),
        RangeRequest::Partial { start, end } => {
            headers.push(("Content-Range", format!("bytes {start}-{}/{len}", end - 1)));
            (206, start, end)
        }
        RangeRequest::Unsatisfiable => {
            let error = ApiError::BadRequest("Requested range not satisfiable".into());
            let bytes = respond::send(
                request,
                416,
                "application/json",
                &[("Content-Range", format!("bytes */{len}"))],
                error.body().into_bytes(),
            );
            return Sent {
                status: 416,
                bytes,
                outcome: Outcome::Completed,
            };
        }
    };
    let mut writer = request.into_writer();
    let mut sent = match write_head(
        &mut writer,
        status,
        &headers,
        Some(Framing::Length(end - start)),
    )
    .and_then(|n| writer.flush().map(|_| n))
    {
        Ok(n) => n,
        Err(_) => {
            return Sent {
                status,
                bytes: 0,
                outcome: Outcome::ClientGone,
            };
        }
    };
    if head {
        return Sent {
            status,
            bytes: sent,
            outcome: Outcome::Completed,
        };
    }
    let mut reader = ArchiveReader::new(plan, source, Arc::clone(&app.caches), start, end);
    let zero_copy = app.limits.sendfile && writer.socket_fd().is_some();
    let mut sink = SocketSink {
        writer: &mut writer,
        zero_copy,
        sent: 0,
        client_failed: false,
    };
    let mut buf = vec![0u8; BLOCK];
    let result = reader
        .write_to(&mut sink, &mut buf)
        .and_then(|_| sink.writer.flush().map_err(|e| sink.client(e)));
    sent += sink.sent;
    let outcome = match result {
        Ok(()) => Outcome::Completed,
        Err(e) if is_changed(&e) => Outcome::Changed,
        Err(_) if sink.client_failed => Outcome::ClientGone,
        Err(e) => {
            log::error!("{filename}: {e}");
            Outcome::Failed
        }
    };
    if outcome != Outcome::Completed {
        cut(&writer, filename, outcome);
    }
    Sent {
        status,
        bytes: sent,
        outcome,
    }
}

/// The connection as an archive `Sink`: bytes go through the response
/// writer; stored file data goes by sendfile(2) from the page cache straight
/// to the writer's socket. Measured on loopback that is as fast as nginx's
/// sendfile and a third of the CPU of read and write.
struct SocketSink<'a> {
    writer: &'a mut ResponseWriter,
    /// Stored data goes by sendfile(2) (the socket is plain, and allowed).
    zero_copy: bool,
    sent: u64,
    /// Set when the failure was the client's (gone, or not reading).
    client_failed: bool,
}

impl SocketSink<'_> {
    fn client(&mut self, e: io::Error) -> io::Error {
        self.client_failed = true;
        e
    }
}

impl Sink for SocketSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).map_err(|e| self.client(e))?;
        if self.zero_copy {
            // Nothing may wait in tiny_http's buffer when sendfile writes next.
            self.writer.flush().map_err(|e| self.client(e))?;
        }
        self.sent += bytes.len() as u64;
        Ok(())
    }

    fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    fn send_file(&mut self, fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
        // Borrowed from the writer, which holds the connection open: the
        // number cannot have been closed and given to anything else.
        let socket = match self.writer.socket_fd() {
            Some(socket) if self.zero_copy => socket.as_raw_fd(),
            _ => return Err(io::ErrorKind::Unsupported.into()),
        };
        let mut offset = offset as libc::off_t;
        let mut left = len;
        while left > 0 {
            let want = left.min(SENDFILE_CHUNK) as usize;
            // SAFETY: both descriptors are open for the duration of the call;
            // the kernel advances `offset`.
            let n = unsafe { libc::sendfile(socket, fd, &mut offset, want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // A filesystem that cannot sendfile: copy from now on.
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if left == len => {
                        log::info!("sendfile unsupported here ({e}); copying instead");
                        self.zero_copy = false;
                        return Err(io::ErrorKind::Unsupported.into());
                    }
                    _ if is_client_error(&e) => return Err(self.client(e)),
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(changed("a member")); // the file is shorter than planned
            }
            left -= n as u64;
            self.sent += n as u64;
        }
        Ok(())
    }
}

/// Ends a connection whose response stopped short: the client sees the
/// body end early instead of waiting for the rest.
fn cut(writer: &ResponseWriter, what: &str, outcome: Outcome) {
    let _ = writer.shutdown(Shutdown::Both);
    log::warn!("{what}: {outcome:?}; connection closed");
}

/// A member file that must match its fingerprint when fully read.
struct Verified<F> {
    file: F,
    left: u64,
    expected: Fingerprint,
    check: fn(&F) -> io::Result<Fingerprint>,
}

impl<F: Read> Read for Verified<F> {
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
        if self.left == 0 && (self.check)(&self.file)? != self.expected {
            return Err(changed("a member"));
        }
        Ok(n)
    }
}

/// Starts a chunked (or, for HTTP/1.0, close-delimited) deflated body and
/// runs `write_zip` into it.
fn stream_chunked(
    request: Request,
    filename: &str,
    head: bool,
    write_zip: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Sent {
    let http10 = request.http_version() == &tiny_http::HTTPVersion(1, 0);
    let headers = [
        ("Content-Type", "application/zip".to_owned()),
        ("Content-Disposition", disposition(filename)),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let framing = (!http10).then_some(Framing::Chunked);
    let mut writer = request.into_writer();
    let head_len = match write_head(&mut writer, 200, &headers, framing)
        .and_then(|n| writer.flush().map(|_| n))
    {
        Ok(n) => n,
        Err(_) => {
            return Sent {
                status: 200,
                bytes: 0,
                outcome: Outcome::ClientGone,
            };
        }
    };
    if head {
        return Sent {
            status: 200,
            bytes: head_len,
            outcome: Outcome::Completed,
        };
    }
    let mut counter = Counting {
        inner: &mut writer,
        count: 0,
    };
    let result = if http10 {
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
    let bytes = head_len + counter.count;
    let outcome = match result {
        Ok(()) => Outcome::Completed,
        Err(e) if is_changed(&e) => Outcome::Changed,
        Err(e) if is_client_error(&e) => Outcome::ClientGone,
        Err(e) => {
            log::error!("{filename}: {e}");
            Outcome::Failed
        }
    };
    if outcome != Outcome::Completed {
        cut(&writer, filename, outcome);
    }
    Sent {
        status: 200,
        bytes,
        outcome,
    }
}

fn is_client_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// Counts bytes on their way to the socket, for the access log.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn deflated_model(request: Request, job: JobDir, base: &str, filename: &str, head: bool) -> Sent {
    let files = match job.files_under(base) {
        Ok(files) => files,
        Err(e) => return failed(request, "listing the files to archive", e),
    };
    let source = JobFiles::new(job, &files);
    stream_chunked(request, filename, head, |out| {
        let members = files.iter().enumerate().map(|(index, file)| {
            let f = source.open(index)?;
            let expected = file.entry.fingerprint;
            if fingerprint(&f.metadata()?) != expected {
                return Err(changed(&file.entry.name));
            }
            Ok(StreamMember {
                name: file.entry.name.clone(),
                reader: Verified {
                    file: f,
                    left: expected.size,
                    expected,
                    check: |f| Ok(fingerprint(&f.metadata()?)),
                },
                size: expected.size,
                mtime_secs: expected.mtime_ns.div_euclid(1_000_000_000) as i64,
            })
        });
        write_deflated(out, members).map(|_| ())
    })
}

fn logs(request: Request, job: JobDir, filename: &str, head: bool) -> Sent {
    stream_chunked(request, filename, head, |out| {
        let members = [LOG_FILE, PROGRESS_FILE, HISTORY_FILE]
            .into_iter()
            .filter_map(|name| match job.open_regular(name) {
                Ok(file) => Some((name, file)),
                Err(_) => None, // progress.json and metrics.jsonl are optional
            })
            .map(|(name, file)| {
                // A growing log is copied up to its size now: a consistent prefix.
                let f = fingerprint(&file.metadata()?);
                Ok(StreamMember {
                    name: name.to_owned(),
                    reader: file,
                    size: f.size,
                    mtime_secs: f.mtime_ns.div_euclid(1_000_000_000) as i64,
                })
            });
        write_deflated(out, members).map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists() {
        assert!(etag_listed("\"a\", \"b\"", "\"b\""));
        assert!(etag_listed("W/\"b\"", "\"b\""));
        assert!(etag_listed("*", "\"b\""));
        assert!(!etag_listed("\"a\"", "\"b\""));
    }
}
