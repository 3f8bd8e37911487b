//! trainbox: a sandboxed, synchronous HTTP server for edge and air-gapped
//! training boxes. It lists the training jobs under one root directory,
//! shows their progress and checkpoints, and streams models, checkpoints
//! and logs as ZIP archives with an exact length and byte ranges.
//!
//! The contract is `DESIGN.md`; the modules follow its layout (the module
//! map and the rule of each layer: `ARCHITECTURE.md`):
//!
//! - [`access`]: tokens and roles, sessions, login attempts, browser policy.
//! - [`names`]: `JobId` and `CheckpointName`, the only names a request can use.
//! - [`http`]: the server loop, the pure router and Range parser, errors, handlers.
//! - [`store`]: the cap-std root; the only code that touches the filesystem
//!   on behalf of a request.
//! - [`archive`]: the ZIP plan (pure) and the reader that streams it.
//! - [`runner`]: recipes, the job queue, trainer processes and their signals.
//! - [`service`]: the process from start to a graceful stop.
//! - [`systemd`]: socket activation and `sd_notify`.
//! - [`metrics`]: the Prometheus counters behind `/metrics`.
//! - [`view`]: a job as the API shows it, read once from the store.
//! - [`compare`]: run comparison: a metric's curve, last and best values.
//! - [`hub`]: a job as a Hugging Face Hub repository: revisions, commit ids, trees.
//! - [`housekeeping`]: job sizes, the disk warning, `--keep-checkpoints`.
//! - [`index`]: every job's view in memory, kept fresh by inotify.
//! - [`demo`]: the built-in demo trainer and the `demo` command.
//! - [`doorbell`]: rung on job and download changes (for `STATUS=`).
//! - [`counting`]: a writer that counts what it passes on.

pub mod access;
pub mod app;
pub mod archive;
pub mod compare;
pub mod counting;
pub mod demo;
pub mod doorbell;
pub mod housekeeping;
pub mod http;
pub mod hub;
pub mod index;
pub mod metrics;
pub mod names;
pub mod runner;
pub mod service;
pub mod signals;
pub mod store;
pub mod systemd;
pub mod text;
pub mod timefmt;
pub mod ui;
pub mod view;
