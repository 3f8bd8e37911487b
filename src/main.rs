//! The `trainbox` binary: CLI → config → serve | demo | demo-trainer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use trainbox::access::BrowserPolicy;
use trainbox::access::tokens::Tokens;
use trainbox::app::Limits;
use trainbox::demo;
use trainbox::runner::RunnerConfig;
use trainbox::service::{self, OnReady, ServeConfig};
use trainbox::signals;

/// A sandboxed HTTP server for training boxes: jobs, progress, checkpoints,
/// job control, and streaming ZIP downloads of models and logs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the jobs under a root directory.
    Serve {
        /// The root directory (holds `jobs/` and `recipes.json`).
        #[arg(long)]
        root: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve a temporary root with the demo recipe and one demo job running.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
        /// Training steps for the demo job.
        #[arg(long, default_value_t = 1500)]
        steps: u64,
    },
    /// Run the built-in demo trainer (reads the TRAINBOX_* variables).
    DemoTrainer {
        /// Override TRAINBOX_PARAM_STEPS.
        #[arg(long)]
        steps: Option<u64>,
        /// Override TRAINBOX_PARAM_LR.
        #[arg(long)]
        lr: Option<f64>,
        /// Override TRAINBOX_OUTPUT_DIR.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on: HOST:PORT, where HOST is an IP address or a
    /// name (`localhost:8000`).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,
    /// Request worker threads.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    workers: usize,
    /// Downloads streaming at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    max_downloads: usize,
    /// Client connections open at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024, value_parser = at_least_one)]
    max_connections: usize,
    /// Live event streams (SSE and WebSocket) at once; more get 503.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    max_streams: usize,
    /// Copy file data through the server instead of sendfile(2) (for
    /// filesystems where sendfile misbehaves, and for benchmarks).
    #[arg(long)]
    no_sendfile: bool,
    /// A cgroup v2 directory (created if missing) to give each job a cgroup
    /// of its own under, for a server run by root outside systemd. Under
    /// systemd, `Delegate=yes` hands the service its cgroup instead.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Jobs that may wait in the queue; more submissions get 429.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    max_queued: usize,
    /// Trainers running at once; more jobs wait in a FIFO queue.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    max_jobs: usize,
    /// Seconds between SIGTERM and SIGKILL when a job is cancelled.
    #[arg(long, default_value_t = 30.0)]
    cancel_grace: f64,
    /// Finished jobs keep this many complete checkpoints, the newest; the
    /// older ones are deleted in the background (logged). Unset: all kept.
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Warn (log, page, `/api/training/disk`) once this share of the
    /// root's file system is used.
    #[arg(long, default_value_t = 90.0)]
    disk_warn_percent: f64,
    /// Seconds between two samples of each running job's resource use
    /// (CPU, memory, I/O, GPU), kept in its `resources.jsonl`.
    #[arg(long, default_value_t = 5.0)]
    sample_interval: f64,
    /// Bearer tokens, one a line as `read:<token>` or `control:<token>`. A
    /// relative path is looked up in $CREDENTIALS_DIRECTORY when systemd
    /// set it (LoadCredential=).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve a non-loopback address without tokens (anyone who can reach
    /// it can read and control every job).
    #[arg(long)]
    insecure_no_auth: bool,
    /// A host name browsers may use for this server, besides IP addresses,
    /// `localhost` and this machine's name (repeat for several). Requests
    /// naming any other host get 421, which stops DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// An origin (`https://box.example:8443`) whose pages may start, pause
    /// and cancel jobs and open live streams, besides the server's own: a
    /// reverse proxy's (repeat for several).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Seconds a connection may stay silent waiting for its next request
    /// (counted from the end of the previous response); then it is closed.
    #[arg(long, default_value_t = 30.0)]
    read_timeout: f64,
    /// Seconds a client has to send a whole request head, however slowly
    /// it trickles; then it gets 408. Request bodies must then keep up at
    /// least 4 KiB/s.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a client may stop reading a response; then it is dropped.
    #[arg(long, default_value_t = 60.0)]
    write_timeout: f64,
    /// Seconds downloads in flight may run on after SIGTERM before the
    /// server exits.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
}

/// A count that must be at least one (zero workers would serve nothing).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A positive number of seconds from the command line.
fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} must be a positive number of seconds"))
    }
}

fn percent(value: f64, flag: &str) -> Result<f64, String> {
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{flag} must be a percentage, 0 to 100"))
    }
}

/// Who may address the server from a browser: `--allowed-host` names and
/// this machine's own, `--allowed-origin` origins (checked for shape).
fn browser_policy(args: &ServerArgs) -> Result<BrowserPolicy, String> {
    let mut hosts: Vec<String> = args
        .allowed_hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if let Some(name) = trainbox::service::host_name() {
        hosts.push(name.to_ascii_lowercase());
    }
    let mut origins = Vec::new();
    for origin in &args.allowed_origins {
        let lower = origin.trim_end_matches('/').to_ascii_lowercase();
        let shaped = ["http://", "https://"].iter().any(|scheme| {
            lower
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        });
        if !shaped {
            return Err(format!(
                "--allowed-origin {origin}: expected scheme://host[:port], as a browser sends it"
            ));
        }
        origins.push(lower);
    }
    Ok(BrowserPolicy { hosts, origins })
}

/// Reads the token file (before serving; the ambient filesystem is fine here).
#[allow(clippy::disallowed_methods)]
fn load_tokens(path: &Path) -> Result<Tokens, String> {
    let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => Path::new(&dir).join(path),
        _ => path.to_owned(),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    Tokens::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = !matches!(cli.command, Command::DemoTrainer { .. });
    if serving {
        // Before any thread exists, so every thread inherits the mask.
        if let Err(e) = signals::block_termination() {
            eprintln!("trainbox: cannot block termination signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    init_logging();
    let result = match cli.command {
        Command::Serve { root, server } => serve(&root, &server, None),
        Command::Demo { server, steps } => demo(&server, steps),
        Command::DemoTrainer {
            steps,
            lr,
            output_dir,
        } => demo_trainer(steps, lr, output_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trainbox: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(root: &Path, args: &ServerArgs, on_ready: Option<OnReady>) -> Result<(), String> {
    if !(args.cancel_grace.is_finite() && args.cancel_grace >= 0.0) {
        return Err("--cancel-grace must be a number of seconds".into());
    }
    if !(args.shutdown_grace.is_finite() && args.shutdown_grace >= 0.0) {
        return Err("--shutdown-grace must be a number of seconds".into());
    }
    let config = ServeConfig {
        root: root.to_owned(),
        listen: args.listen.clone(),
        limits: Limits {
            workers: args.workers,
            max_downloads: args.max_downloads,
            sendfile: !args.no_sendfile,
            max_connections: args.max_connections,
            max_streams: args.max_streams,
            read_timeout: seconds(args.read_timeout, "--read-timeout")?,
            header_timeout: seconds(args.header_timeout, "--header-timeout")?,
            write_timeout: seconds(args.write_timeout, "--write-timeout")?,
            keep_checkpoints: args.keep_checkpoints,
            disk_warn_percent: percent(args.disk_warn_percent, "--disk-warn-percent")?,
        },
        runner: RunnerConfig {
            max_jobs: args.max_jobs,
            max_queued: args.max_queued,
            cgroup: args.cgroup.clone(),
            cancel_grace: Duration::from_secs_f64(args.cancel_grace),
            changes: Default::default(),
            sample_every: seconds(args.sample_interval, "--sample-interval")?,
        },
        tokens: args.token_file.as_deref().map(load_tokens).transpose()?,
        insecure_no_auth: args.insecure_no_auth,
        browser: browser_policy(args)?,
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
    };
    service::serve(config, on_ready)
}

/// The demo: a temporary root with the demo recipe, a job training and a
/// second one queued behind it (to cancel), the lines to try, and the
/// temporary root removed again when the demo stops.
fn demo(args: &ServerArgs, steps: u64) -> Result<(), String> {
    let root = demo::prepare_root().map_err(|e| format!("cannot prepare the demo: {e}"))?;
    let shown_root = root.clone();
    let on_ready: OnReady = Box::new(move |app, local| {
        let submit = |name: &str, steps: u64| {
            let params = serde_json::json!({ "steps": steps, "step_delay_ms": 20 });
            let serde_json::Value::Object(params) = params else {
                unreachable!("a JSON object literal");
            };
            app.runner
                .submit("demo", Some(name.into()), params)
                .map_err(|e| format!("cannot start the demo job: {e}"))
        };
        let first = submit("demo run", steps)?;
        let second = submit("queued run", steps)?;
        let banner = demo::banner(
            &format!("http://{local}"),
            &shown_root,
            &first.id,
            &second.id,
        );
        // Whoever reads our output may stop reading (a pipe to `head`, a
        // test that has what it needs): the demo serves on regardless,
        // where println! would panic on the closed pipe.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        Ok(())
    });
    let served = serve(&root, args, Some(on_ready));
    if let Err(e) = demo::remove_root(&root) {
        eprintln!(
            "trainbox: cannot remove the demo root {}: {e}",
            root.display()
        );
    }
    served
}

fn demo_trainer(
    steps: Option<u64>,
    lr: Option<f64>,
    output_dir: Option<PathBuf>,
) -> Result<(), String> {
    let mut config = demo::trainer::TrainerConfig::from_env()?;
    if let Some(steps) = steps {
        config.steps = steps.max(1);
    }
    if let Some(lr) = lr {
        config.learning_rate = lr;
    }
    if let Some(dir) = output_dir {
        config.output_dir = dir;
    }
    demo::trainer::train(&config)
        .map(|_| ())
        .map_err(|e| format!("demo-trainer: {e}"))
}

/// Logs to stderr. Under systemd (`JOURNAL_STREAM` set) lines carry a
/// `<N>` syslog priority and no timestamp, since journald adds its own.
fn init_logging() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            let target = record.target().trim_start_matches("trainbox::");
            if journald {
                let priority = match record.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                writeln!(buf, "<{priority}>{target}: {}", record.args())
            } else {
                writeln!(
                    buf,
                    "{} {:<5} {target}: {}",
                    trainbox::timefmt::now_rfc3339(),
                    record.level(),
                    record.args()
                )
            }
        })
        .init();
}
