//! One file of a Hub revision (`/trainbox/{job_id}/resolve/{revision}/
//! {path}`), from admission to the last byte: the headers the Hub client
//! reads (`X-Repo-Commit`, the SHA-256 as `ETag`, `Content-Length` on HEAD
//! too), `Range` for resumes, the body by sendfile(2).
//!
//! The answer is 200 straight away, never a redirect (a same-origin
//! redirect costs the client its headers); no `X-Xet-Hash` or xet `Link`
//! header is sent, so the client fetches plain HTTP. A file that changes
//! while it is sent ends the response short, as an archive does.

use std::io::{self, Read, Seek, SeekFrom};

use tiny_http::Request;

use super::download::{Outcome, RangedBody, Sent, finish, ranged_head};
use super::error::ApiError;
use super::handlers::hub::snapshot;
use super::request::HttpRequest;
use super::respond;
use super::sink::SocketSink;
use crate::app::{App, JobDownload, Slot};
use crate::archive::digest::changed;
use crate::archive::plan::Fingerprint;
use crate::archive::stream::{MemberSource, Sink};
use crate::hub::{RepoPath, Revision};
use crate::names::JobId;
use crate::store::JobFiles;
use crate::store::walk::fingerprint;

/// Size of each read when the file is copied rather than sent by sendfile.
const BLOCK: usize = 1 << 20;

/// A file that passed every check: the revision has it, its SHA-256 is
/// known, and (for a GET) a download slot is held.
pub struct FileDownload {
    files: JobFiles,
    index: usize,
    fingerprint: Fingerprint,
    /// `"<sha256>"`: the Hub client keeps the file under this name.
    etag: String,
    commit: String,
    /// For logs: the job, revision and path.
    label: String,
    head: bool,
    _slot: Option<Slot>,
    _job: JobDownload,
}

/// `HEAD` or `GET /trainbox/{job_id}/resolve/{revision}/{path}`.
pub fn admit(
    app: &App,
    job: &JobId,
    revision: &Revision,
    path: &RepoPath,
    head: bool,
) -> Result<FileDownload, ApiError> {
    // From here on the job is not deleted under this download.
    let held = app.job_downloads.enter(job);
    let snapshot = snapshot(app, job, revision)?;
    let (index, fingerprint, file) = snapshot.file(path)?;
    let etag = format!("\"{}\"", file.sha256_hex());
    // A HEAD sends no body: it takes no download slot.
    let slot = match head {
        true => None,
        false => Some(app.downloads.try_acquire(app.limits.max_downloads).ok_or(
            ApiError::Unavailable("Too many downloads in progress; try again shortly"),
        )?),
    };
    Ok(FileDownload {
        files: snapshot.files,
        index,
        fingerprint,
        etag,
        commit: snapshot.commit,
        label: format!("trainbox/{job}@{revision}/{path}"),
        head,
        _slot: slot,
        _job: held,
    })
}

/// Sends `file` to `request`; runs on the download's own thread.
pub fn serve(app: &App, asked: &HttpRequest, request: Request, file: FileDownload) -> Sent {
    // Opened before the head goes out: a file gone or changed since
    // admission gets an answer, not a short body.
    let opened = file.files.open(file.index).and_then(|f| {
        let now = fingerprint(&f.metadata()?);
        if now == file.fingerprint {
            Ok(f)
        } else {
            Err(changed(&file.label))
        }
    });
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => {
            log::warn!("{}: {e}", file.label);
            let error = ApiError::Unavailable("The file changed just now; ask again");
            return Sent {
                status: error.status(),
                bytes: respond::send_error(request, &error),
                outcome: Outcome::Changed,
            };
        }
    };
    let head = vec![
        ("Content-Type", "application/octet-stream".to_owned()),
        ("Accept-Ranges", "bytes".to_owned()),
        ("ETag", file.etag.clone()),
        ("X-Repo-Commit", file.commit.clone()),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    let RangedBody {
        mut writer,
        status,
        head_bytes,
        start,
        end,
    } = match ranged_head(asked, request, head, file.fingerprint.size, file.head) {
        Ok(body) => body,
        Err(answered) => return answered,
    };
    let mut sink = SocketSink::new(&mut writer, app.limits.sendfile);
    let result = send_range(&mut sink, &opened, &file, start, end).and_then(|_| sink.flush());
    let (sent, client_failed) = (sink.sent, sink.client_failed);
    Sent {
        status,
        bytes: head_bytes + sent,
        outcome: finish(&writer, &file.label, result, client_failed),
    }
}

/// Bytes `start..end` of `opened` into `sink`: by sendfile where it
/// works, copied otherwise; the file must still be the version admitted
/// when they are out.
fn send_range(
    sink: &mut SocketSink<'_>,
    opened: &cap_std::fs::File,
    file: &FileDownload,
    start: u64,
    end: u64,
) -> io::Result<()> {
    let sent = match file.files.raw_fd(opened) {
        Some(fd) if sink.zero_copy() => match sink.send_file(fd, start, end - start) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => false,
            Err(e) => return Err(e),
        },
        _ => false,
    };
    if !sent {
        copy_range(sink, opened, start, end)?;
    }
    if fingerprint(&opened.metadata()?) != file.fingerprint {
        return Err(changed(&file.label));
    }
    Ok(())
}

fn copy_range(
    sink: &mut SocketSink<'_>,
    opened: &cap_std::fs::File,
    start: u64,
    end: u64,
) -> io::Result<()> {
    let mut reader = opened;
    reader.seek(SeekFrom::Start(start))?;
    let mut buf = vec![
        0u8;
        BLOCK
            .min(usize::try_from(end - start).unwrap_or(BLOCK))
            .max(1)
    ];
    let mut at = start;
    while at < end {
        let want = buf
            .len()
            .min(usize::try_from(end - at).unwrap_or(usize::MAX));
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed("a file")); // shorter than admitted
        }
        sink.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}
