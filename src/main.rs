//! The `trainbox` binary: CLI → config → serve | demo | demo-trainer.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use trainbox::app::{App, Limits};
use trainbox::demo;
use trainbox::http::server;
use trainbox::store::Store;

/// A sandboxed HTTP server for training boxes: jobs, progress, checkpoints,
/// and streaming ZIP downloads of models and logs.
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
    /// Train a demo job in a temporary root and serve it.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
        /// Training steps for the demo job.
        #[arg(long, default_value_t = 300)]
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
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Request worker threads.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Downloads streaming at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 16)]
    max_downloads: usize,
    /// Copy file data through the server instead of sendfile(2) (for
    /// filesystems where sendfile misbehaves, and for benchmarks).
    #[arg(long)]
    no_sendfile: bool,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { root, server } => serve(&root, &server, None),
        Command::Demo { server, steps } => match demo::prepare(steps) {
            Ok((root, job)) => serve(&root, &server, Some(job)),
            Err(e) => Err(format!("cannot prepare the demo: {e}")),
        },
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

fn serve(root: &Path, args: &ServerArgs, demo_job: Option<String>) -> Result<(), String> {
    if !root.is_dir() {
        return Err(format!("root {} is not a directory", root.display()));
    }
    let store =
        Store::open(root).map_err(|e| format!("cannot open root {}: {e}", root.display()))?;
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let limits = Limits {
        workers: args.workers.max(1),
        max_downloads: args.max_downloads.max(1),
        sendfile: !args.no_sendfile,
    };
    let app = Arc::new(App::new(store, limits, local.port()));
    log::info!("serving {} on http://{local}", root.display());
    if let Some(job) = demo_job {
        println!("{}", demo::banner(&format!("http://{local}"), root, &job));
    }
    let stop = Arc::new(AtomicBool::new(false));
    server::serve(app, listener, stop).map_err(|e| format!("server failed: {e}"))
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
