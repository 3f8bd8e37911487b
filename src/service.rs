//! The server process from start to exit: the listening socket (from
//! systemd or bound here), the app and its runner, the systemd
//! notifications and watchdog, and the graceful stop.
//!
//! Stop sequence on the first SIGTERM or SIGINT: `STOPPING=1`; no new
//! requests are taken; downloads in flight get up to the shutdown grace to
//! finish; running trainers get SIGTERM (SIGKILL after the cancel grace)
//! and are recorded `interrupted`; exit 0. A second signal exits at once.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::access::tokens::Tokens;
use crate::access::{Access, BrowserPolicy};
use crate::app::{App, Limits};
use crate::doorbell::Doorbell;
use crate::http::server;
use crate::index::JobIndex;
use crate::runner::{Runner, RunnerConfig};
use crate::signals;
use crate::store::Store;
use crate::store::lock::LockError;
use crate::systemd::{self, Notifier};

/// Everything `serve` needs, from the command line.
pub struct ServeConfig {
    pub root: PathBuf,
    /// HOST:PORT; a name is resolved and each of its addresses tried.
    pub listen: String,
    pub limits: Limits,
    pub runner: RunnerConfig,
    pub tokens: Option<Tokens>,
    pub insecure_no_auth: bool,
    /// The hosts and origins browsers may use.
    pub browser: BrowserPolicy,
    /// How long downloads in flight may run on after a stop signal.
    pub shutdown_grace: Duration,
}

/// Runs once the server is ready, with the app and the address it serves.
pub type OnReady = Box<dyn FnOnce(&App, SocketAddr) -> Result<(), String>>;

/// Serves until a stop signal, then stops gracefully. Errors are one-line
/// reasons for the operator.
pub fn serve(config: ServeConfig, on_ready: Option<OnReady>) -> Result<(), String> {
    let root = &config.root;
    let store = Arc::new(Store::open(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("root {} does not exist", root.display()),
        std::io::ErrorKind::NotADirectory => format!("root {} is not a directory", root.display()),
        _ => format!("cannot open root {}: {e}", root.display()),
    })?);
    // Held until the process exits: before the runner touches any record.
    let _instance = match store.lock_instance() {
        Ok(lock) => Some(lock),
        Err(LockError::Held { pid }) => {
            let holder = pid.map_or_else(
                || "another trainbox".to_owned(),
                |p| format!("trainbox (pid {p})"),
            );
            return Err(format!(
                "root {} is already served by {holder}; one server per root",
                root.display()
            ));
        }
        Err(LockError::Io(e)) => {
            log::warn!(
                "cannot lock root {} ({e}): a second server on it would not be refused",
                root.display()
            );
            None
        }
    };
    let (listener, activated) =
        match systemd::listener_from_env().map_err(|e| format!("socket activation: {e}"))? {
            Some(listener) => (listener, true),
            None => (
                TcpListener::bind(config.listen.as_str())
                    .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?,
                false,
            ),
        };
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if config.tokens.is_none() && !local.ip().is_loopback() && !config.insecure_no_auth {
        return Err(format!(
            "refusing to serve {local} without --token-file: anyone who can reach it could \
             read and control every job (say --insecure-no-auth to do it anyway)"
        ));
    }
    match raise_open_files_limit() {
        Ok(limit) => log::debug!("open files limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
    let notifier = Notifier::from_env()
        .map_err(|e| format!("NOTIFY_SOCKET: {e}"))?
        .map(Arc::new);

    // Under systemd, STATUS= follows every job and download change.
    let (changes, changed) = match &notifier {
        Some(_) => {
            let (bell, heard) = Doorbell::new();
            (bell, Some(heard))
        }
        None => (Doorbell::default(), None),
    };
    let runner_config = RunnerConfig {
        changes: changes.clone(),
        ..config.runner.clone()
    };
    let runner = Runner::start(Arc::clone(&store), runner_config)
        .map_err(|e| format!("cannot start the job runner: {e}"))?;
    if config.tokens.is_none() {
        log::info!("access control: off (no --token-file)");
    }
    let access = Access {
        tokens: config.tokens,
        browser: config.browser,
        ..Access::default()
    };
    // After the runner's recovery, so recovered records are what it reads.
    let index =
        JobIndex::open(Arc::clone(&store)).map_err(|e| format!("cannot read the jobs: {e}"))?;
    log::info!(
        "job index: {} jobs, changes by {}",
        index.counts().iter().map(|(_, n)| n).sum::<usize>(),
        index.mode()
    );
    {
        let index = Arc::clone(&index);
        runner.observe(Box::new(move |id| {
            index.refresh(id);
        }));
    }
    let app = Arc::new(App::new(
        store,
        index,
        Arc::new(runner.clone()),
        access,
        config.limits,
        changes,
    ));
    if let Err(e) =
        crate::index::digester::start(&app.index, Arc::clone(&app.store), Arc::clone(&app.digests))
    {
        log::warn!("cannot start the digest worker ({e}); files are not hashed ahead");
    }
    if let Err(e) = crate::housekeeping::start(&app) {
        log::warn!("cannot start housekeeping ({e}); job sizes are not measured");
    }
    if let (Some(notifier), Some(changed)) = (&notifier, changed) {
        follow_changes(Arc::clone(&app), Arc::clone(notifier), changed);
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, notifier, app) = (Arc::clone(&stop), notifier.clone(), Arc::clone(&app));
        signals::on_termination(move |_| {
            if let Some(n) = &notifier {
                n.send("STOPPING=1");
            }
            app.stopping.store(true, Ordering::Release);
            stop.store(true, Ordering::Release);
        })
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    }
    let (probe_tx, probe_rx) = mpsc::channel();
    if let Some(notifier) = &notifier {
        start_watchdog(
            Arc::clone(&app),
            Arc::clone(notifier),
            probe_tx,
            Arc::clone(&stop),
        );
    }

    let how = if activated {
        "socket from systemd"
    } else {
        "bound"
    };
    log::info!("serving {} on http://{local} ({how})", root.display());
    if let Some(on_ready) = on_ready {
        on_ready(&app, local)?;
    }
    if let Some(n) = &notifier {
        n.send(&format!("READY=1\nSTATUS={}", status_line(&app)));
    }
    server::serve(Arc::clone(&app), listener, stop, probe_rx)
        .map_err(|e| format!("server failed: {e}"))?;

    // Stopping: let downloads finish, then stop the trainers.
    let deadline = Instant::now() + config.shutdown_grace;
    while app.downloads.current() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let unfinished = app.downloads.current();
    if unfinished > 0 {
        log::warn!("{unfinished} download(s) cut off by the shutdown grace");
    }
    runner.shutdown(config.runner.cancel_grace + Duration::from_secs(5));
    log::info!("stopped");
    Ok(())
}

/// This machine's host name, which browsers on the network may use.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes, NUL-terminated when
    // the name fits.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Raises the soft limit on open files to the hard limit; returns the new
/// soft limit. Each connection costs a descriptor, each download one or two
/// more (the files it streams).
fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// The one-line `STATUS=` systemd shows.
fn status_line(app: &App) -> String {
    format!(
        "serving; {} trainer(s) running, {} queued, {} download(s) in flight",
        app.runner.active_count(),
        app.runner.queued_count(),
        app.downloads.current()
    )
}

/// Sends `STATUS=` each time the doorbell rings (a job or a download
/// changed), a few at a time at most: rings within 50 ms are one update.
fn follow_changes(app: Arc<App>, notifier: Arc<Notifier>, changed: mpsc::Receiver<()>) {
    let spawned = thread::Builder::new().name("status".into()).spawn(move || {
        while changed.recv().is_ok() {
            thread::sleep(Duration::from_millis(50));
            while changed.try_recv().is_ok() {}
            notifier.send(&format!("STATUS={}", status_line(&app)));
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the status thread ({e}); STATUS= follows the watchdog only");
    }
}

/// Sends `WATCHDOG=1` at half of `WATCHDOG_USEC`, but only after a probe
/// went through a worker and the list handler (the job index's lock): a
/// hung server misses its keep-alive and systemd restarts it.
fn start_watchdog(
    app: Arc<App>,
    notifier: Arc<Notifier>,
    probes: mpsc::Sender<server::Probe>,
    stop: Arc<AtomicBool>,
) {
    let Some(interval) = systemd::watchdog_interval() else {
        // No watchdog: keep STATUS= current anyway.
        let _ = thread::Builder::new().name("status".into()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                thread::sleep(Duration::from_secs(5));
                notifier.send(&format!("STATUS={}", status_line(&app)));
            }
        });
        return;
    };
    let spawned = thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            log::info!("watchdog: proving liveness every {interval:?}");
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let (reply_tx, reply_rx) = mpsc::channel();
                if probes.send(reply_tx).is_err() {
                    return; // the server is gone
                }
                match reply_rx.recv_timeout(interval) {
                    Ok(true) => {
                        notifier.send(&format!("WATCHDOG=1\nSTATUS={}", status_line(&app)));
                    }
                    Ok(false) => log::error!("watchdog: the probe request failed"),
                    Err(_) => log::error!("watchdog: no answer to the probe within {interval:?}"),
                }
                thread::sleep(interval.saturating_sub(started.elapsed()));
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the watchdog thread: {e}");
    }
}
