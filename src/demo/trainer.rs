//! `trainbox demo-trainer`: a small but real trainer built into the binary.
//!
//! A two-layer MLP (tanh hidden layer, sigmoid output) learns a noisy linear
//! teacher on generated data with minibatch SGD and binary cross-entropy, so
//! the loss really falls. It writes what Hugging Face's Trainer writes
//! (`checkpoint-N/` with `model.safetensors` and `trainer_state.json`, made
//! as `tmp-checkpoint-N` and renamed), plus `progress.json` (atomically),
//! `metrics.jsonl` and log lines on stdout. On SIGTERM it saves a checkpoint
//! and exits 0. Settings come from `TRAINBOX_*` variables, overridden by flags.
//!
//! This is a separate process, not request-path code, so it uses `std::fs`.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::timefmt;

/// Trainer settings.
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    pub output_dir: PathBuf,
    pub progress_file: PathBuf,
    pub metrics_file: PathBuf,
    pub steps: u64,
    pub learning_rate: f64,
    pub save_every: u64,
    pub log_every: u64,
    pub step_delay: Duration,
    pub hidden: usize,
    pub seed: u64,
}

const INPUTS: usize = 32;
const SAMPLES: usize = 4096;
const BATCH: usize = 64;

impl TrainerConfig {
    /// Defaults, then `TRAINBOX_*` variables (DESIGN §5), relative to the
    /// working directory (the job directory when the runner starts it).
    pub fn from_env() -> Result<TrainerConfig, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let job_dir = var("TRAINBOX_JOB_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
        let parse = |name: &str, default: f64| -> Result<f64, String> {
            match var(name) {
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not a number")),
                None => Ok(default),
            }
        };
        let steps = parse("TRAINBOX_PARAM_STEPS", 300.0)? as u64;
        Ok(TrainerConfig {
            output_dir: var("TRAINBOX_OUTPUT_DIR")
                .map_or_else(|| job_dir.join("model"), PathBuf::from),
            progress_file: var("TRAINBOX_PROGRESS_FILE")
                .map_or_else(|| job_dir.join("progress.json"), PathBuf::from),
            metrics_file: job_dir.join("metrics.jsonl"),
            steps: steps.max(1),
            learning_rate: parse("TRAINBOX_PARAM_LR", 0.05)?,
            save_every: parse("TRAINBOX_PARAM_SAVE_EVERY", (steps / 3).max(1) as f64)?.max(1.0)
                as u64,
            log_every: parse("TRAINBOX_PARAM_LOG_EVERY", 10.0)?.max(1.0) as u64,
            step_delay: Duration::from_millis(parse("TRAINBOX_PARAM_STEP_DELAY_MS", 10.0)? as u64),
            hidden: parse("TRAINBOX_PARAM_HIDDEN", 64.0)?.clamp(1.0, 4096.0) as usize,
            seed: parse("TRAINBOX_PARAM_SEED", 42.0)? as u64,
        })
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// xorshift64*: small, seeded, good enough for generated data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The model: `p = sigmoid(w2 · tanh(W1 x + b1) + b2)`.
struct Mlp {
    w1: Vec<f64>, // hidden × INPUTS, row-major
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
}

impl Mlp {
    fn new(hidden: usize, rng: &mut Rng) -> Mlp {
        let scale = (1.0 / INPUTS as f64).sqrt();
        Mlp {
            w1: (0..hidden * INPUTS).map(|_| rng.normal() * scale).collect(),
            b1: vec![0.0; hidden],
            w2: (0..hidden)
                .map(|_| rng.normal() * (1.0 / hidden as f64).sqrt())
                .collect(),
            b2: 0.0,
        }
    }

    fn hidden(&self) -> usize {
        self.b1.len()
    }

    /// One SGD step on a batch; returns the batch's mean loss and accuracy.
    #[allow(clippy::needless_range_loop)] // indices mirror the formulas
    fn step(&mut self, xs: &[[f64; INPUTS]], ys: &[f64], lr: f64) -> (f64, f64) {
        let h = self.hidden();
        let (mut gw1, mut gb1, mut gw2, mut gb2) =
            (vec![0.0; h * INPUTS], vec![0.0; h], vec![0.0; h], 0.0);
        let (mut loss, mut correct) = (0.0, 0usize);
        let mut act = vec![0.0; h];
        for (x, &y) in xs.iter().zip(ys) {
            for j in 0..h {
                let row = &self.w1[j * INPUTS..(j + 1) * INPUTS];
                act[j] = (row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + self.b1[j]).tanh();
            }
            let logit = act.iter().zip(&self.w2).map(|(a, w)| a * w).sum::<f64>() + self.b2;
            let p = 1.0 / (1.0 + (-logit).exp());
            loss += -(y * p.max(1e-12).ln() + (1.0 - y) * (1.0 - p).max(1e-12).ln());
            correct += usize::from((p >= 0.5) == (y >= 0.5));
            let dlogit = p - y;
            gb2 += dlogit;
            for j in 0..h {
                gw2[j] += dlogit * act[j];
                let dz = dlogit * self.w2[j] * (1.0 - act[j] * act[j]);
                gb1[j] += dz;
                for (g, v) in gw1[j * INPUTS..(j + 1) * INPUTS].iter_mut().zip(x) {
                    *g += dz * v;
                }
            }
        }
        let n = xs.len() as f64;
        let update = |params: &mut [f64], grads: &[f64]| {
            for (p, g) in params.iter_mut().zip(grads) {
                *p -= lr * g / n;
            }
        };
        update(&mut self.w1, &gw1);
        update(&mut self.b1, &gb1);
        update(&mut self.w2, &gw2);
        self.b2 -= lr * gb2 / n;
        (loss / n, correct as f64 / n)
    }

    /// The weights in the safetensors format: a little-endian u64 header
    /// length, a JSON header padded to 8 bytes, then F32 data.
    fn safetensors(&self) -> Vec<u8> {
        let h = self.hidden();
        let tensors: [(&str, Vec<usize>, Vec<f64>); 4] = [
            ("layer1.weight", vec![h, INPUTS], self.w1.clone()),
            ("layer1.bias", vec![h], self.b1.clone()),
            ("layer2.weight", vec![1, h], self.w2.clone()),
            ("layer2.bias", vec![1], vec![self.b2]),
        ];
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            json!({ "format": "pt", "producer": "trainbox demo-trainer" }),
        );
        let mut offset = 0usize;
        for (name, shape, values) in &tensors {
            let end = offset + values.len() * 4;
            header.insert(
                (*name).into(),
                json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] }),
            );
            offset = end;
        }
        let mut header = Value::Object(header).to_string().into_bytes();
        while header.len() % 8 != 0 {
            header.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for (_, _, values) in &tensors {
            for v in values {
                out.extend_from_slice(&(*v as f32).to_le_bytes());
            }
        }
        out
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so readers
/// never see a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

struct Run<'a> {
    config: &'a TrainerConfig,
    history: Vec<Value>,
}

impl Run<'_> {
    fn trainer_state(&self, step: u64) -> Value {
        json!({
            "global_step": step,
            "max_steps": self.config.steps,
            "epoch": step as f64 * BATCH as f64 / SAMPLES as f64,
            "log_history": self.history,
            "logging_steps": self.config.log_every,
            "save_steps": self.config.save_every,
            "train_batch_size": BATCH,
            "trial_name": null,
        })
    }

    fn model_config(&self, model: &Mlp) -> Value {
        json!({
            "architectures": ["DemoMLP"],
            "model_type": "trainbox-demo-mlp",
            "input_size": INPUTS,
            "hidden_size": model.hidden(),
            "activation": "tanh",
            "torch_dtype": "float32",
        })
    }

    /// `checkpoint-N/`, written as `tmp-checkpoint-N/` and renamed.
    fn save_checkpoint(&self, model: &Mlp, step: u64) -> io::Result<()> {
        let out = &self.config.output_dir;
        let tmp = out.join(format!("tmp-checkpoint-{step}"));
        let done = out.join(format!("checkpoint-{step}"));
        if done.exists() {
            return Ok(());
        }
        fs::create_dir_all(&tmp)?;
        fs::write(tmp.join("model.safetensors"), model.safetensors())?;
        fs::write(tmp.join("config.json"), pretty(&self.model_config(model)))?;
        fs::write(
            tmp.join("trainer_state.json"),
            pretty(&self.trainer_state(step)),
        )?;
        fs::rename(&tmp, &done)?;
        println!("saved checkpoint-{step}");
        Ok(())
    }

    fn save_final(&self, model: &Mlp, step: u64) -> io::Result<()> {
        let out = &self.config.output_dir;
        write_atomic(&out.join("model.safetensors"), &model.safetensors())?;
        write_atomic(&out.join("config.json"), &pretty(&self.model_config(model)))?;
        write_atomic(
            &out.join("trainer_state.json"),
            &pretty(&self.trainer_state(step)),
        )
    }

    fn report(&self, step: u64, loss: f64, accuracy: f64, lr: f64) -> io::Result<()> {
        let sample = json!({
            "step": step,
            "total_steps": self.config.steps,
            "epoch": step as f64 * BATCH as f64 / SAMPLES as f64,
            "loss": loss,
            "learning_rate": lr,
            "metrics": { "accuracy": accuracy },
            "updated_at": timefmt::now_rfc3339(),
        });
        write_atomic(&self.config.progress_file, sample.to_string().as_bytes())?;
        let mut history = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.metrics_file)?;
        writeln!(history, "{sample}")
    }
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Runs the training; returns the step it stopped at.
pub fn train(config: &TrainerConfig) -> io::Result<u64> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
    fs::create_dir_all(&config.output_dir)?;
    let mut rng = Rng(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let teacher: Vec<f64> = (0..INPUTS).map(|_| rng.normal()).collect();
    let data: Vec<[f64; INPUTS]> = (0..SAMPLES)
        .map(|_| std::array::from_fn(|_| rng.normal()))
        .collect();
    let labels: Vec<f64> = data
        .iter()
        .map(|x| {
            let margin: f64 = x.iter().zip(&teacher).map(|(a, b)| a * b).sum();
            f64::from(u8::from(margin + 0.3 * rng.normal() > 0.0))
        })
        .collect();
    let mut model = Mlp::new(config.hidden, &mut rng);
    let mut run = Run {
        config,
        history: Vec::new(),
    };
    println!(
        "demo-trainer: {} steps, lr {}, hidden {}, output {}",
        config.steps,
        config.learning_rate,
        config.hidden,
        config.output_dir.display()
    );
    let mut step = 0;
    while step < config.steps {
        if STOP.load(Ordering::SeqCst) {
            println!("SIGTERM at step {step}: saving and exiting");
            run.save_checkpoint(&model, step)?;
            run.save_final(&model, step)?;
            return Ok(step);
        }
        let start = (step as usize * BATCH) % SAMPLES;
        let (xs, ys) = (&data[start..start + BATCH], &labels[start..start + BATCH]);
        // Cosine decay of the learning rate, as trainers commonly do.
        let lr = config.learning_rate
            * 0.5
            * (1.0 + (std::f64::consts::PI * step as f64 / config.steps as f64).cos());
        let (loss, accuracy) = model.step(xs, ys, lr);
        step += 1;
        if step % config.log_every == 0 || step == config.steps {
            run.history
                .push(json!({ "step": step, "loss": loss, "learning_rate": lr,
                                     "epoch": step as f64 * BATCH as f64 / SAMPLES as f64 }));
            println!(
                "step {step}/{} loss {loss:.4} accuracy {accuracy:.3} lr {lr:.5}",
                config.steps
            );
            io::stdout().flush()?;
        }
        run.report(step, loss, accuracy, lr)?;
        if step % config.save_every == 0 {
            run.save_checkpoint(&model, step)?;
        }
        std::thread::sleep(config.step_delay);
    }
    run.save_final(&model, step)?;
    println!("training finished at step {step}");
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_falls() {
        let mut rng = Rng(7);
        let teacher: Vec<f64> = (0..INPUTS).map(|_| rng.normal()).collect();
        let xs: Vec<[f64; INPUTS]> = (0..512)
            .map(|_| std::array::from_fn(|_| rng.normal()))
            .collect();
        let ys: Vec<f64> = xs
            .iter()
            .map(|x| {
                f64::from(u8::from(
                    x.iter().zip(&teacher).map(|(a, b)| a * b).sum::<f64>() > 0.0,
                ))
            })
            .collect();
        let mut model = Mlp::new(16, &mut rng);
        let (first, _) = model.step(&xs, &ys, 0.5);
        let mut last = first;
        for _ in 0..200 {
            last = model.step(&xs, &ys, 0.5).0;
        }
        assert!(last < first * 0.7, "loss {first} -> {last}");
    }

    #[test]
    fn safetensors_header_describes_the_data() {
        let model = Mlp::new(4, &mut Rng(1));
        let bytes = model.safetensors();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        let params = 4 * INPUTS + 4 + 4 + 1;
        assert_eq!(bytes.len(), 8 + header_len + params * 4);
        assert_eq!(
            header["layer2.bias"]["data_offsets"],
            json!([(params - 1) * 4, params * 4])
        );
    }
}
