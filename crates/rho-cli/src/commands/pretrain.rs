//! `rho pretrain --config C`: self-supervised pre-training from a recipe. Metrics go to
//! `OUTPUT/metrics.jsonl` (one JSON object per step) and the online backbone to
//! `OUTPUT/backbone.safetensors` at the end; checkpoints `OUTPUT/ckpt_*.rho` every N steps, and
//! `--resume` continues exactly where one left off.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rho_model::weights::{save_safetensors, Naming};
use rho_train::{pretrain_with, Recipe, RunOptions};

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// The recipe (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a recipe field, e.g. `--set data.rho=4` (repeatable; logged).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Stop after this many steps (counting resumed ones).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Write a checkpoint every N steps into the output folder.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Refresh the PNG plots every N steps.
    #[arg(long, default_value_t = 50)]
    pub plot_every: usize,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Continue from a checkpoint; `--resume` alone (or `latest`) takes the newest in the output folder.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    pub resume: Option<PathBuf>,
}

pub fn run<B: Backend>(a: &PretrainArgs, backend: &str, device: B::Device) -> Result<()> {
    let recipe = Recipe::load(&a.config, &a.overrides)?;
    std::fs::create_dir_all(&recipe.output)
        .with_context(|| format!("cannot create {}", recipe.output.display()))?;
    let s = recipe.schedule();
    eprintln!(
        "rho pretrain {}: {} on {}, ρ = {}, {}×{} at {}², global batch {} for {} epochs, backend {backend}",
        recipe.name,
        format!("{:?}", recipe.method.kind).to_lowercase(),
        recipe.model.arch,
        recipe.data.rho,
        recipe.data.frames,
        recipe.data.stride,
        recipe.data.crop,
        recipe.batch,
        recipe.epochs
    );
    eprintln!(
        "  learning rate: {} at batch {} scaled linearly to {:.4} at batch {}; warm-up {} epochs from {:.5}",
        recipe.optim.base_lr, recipe.optim.reference_batch, s.base_lr, recipe.batch, s.warmup_epochs, s.warmup_start
    );
    for o in &a.overrides {
        eprintln!("  override: {o}");
    }
    // The run card: the resolved recipe, next to the metrics.
    let card = format!(
        "# rho {} ({backend}), run card of {}\n# effective global batch {} videos × {} views; LR {} × {}/{} = {:.5}\n{}",
        env!("CARGO_PKG_VERSION"),
        a.config.display(),
        recipe.batch,
        recipe.data.rho.max(2),
        recipe.optim.base_lr,
        recipe.batch,
        recipe.optim.reference_batch,
        s.base_lr,
        toml::to_string(&recipe).unwrap_or_default()
    );
    rho_model::weights::write_atomically(&recipe.output.join("run_card.toml"), card.as_bytes())
        .with_context(|| format!("cannot write the run card in {}", recipe.output.display()))?;
    let resume = match &a.resume {
        None => None,
        Some(p) if p.as_os_str() != "latest" => Some(p.clone()),
        Some(_) => Some(
            rho_train::checkpoint::list_checkpoints(&recipe.output)
                .pop()
                .with_context(|| {
                    format!("--resume: no checkpoint in {}", recipe.output.display())
                })?,
        ),
    };
    if let Some(p) = &resume {
        eprintln!("  resuming from {}", p.display());
    }
    let metrics_path = recipe.output.join("metrics.jsonl");
    // Appending keeps the history of a resumed run.
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(resume.is_some())
        .write(true)
        .truncate(resume.is_none())
        .open(&metrics_path)
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut write_err = None;
    let (mut wait_total, mut step_total, mut clips_total) = (0.0f64, 0.0f64, 0usize);
    let mut history: Vec<(f64, f64, f64, f64, f64)> = Vec::new(); // step, loss, lr, emb_std, pos_sim
    let opts = RunOptions {
        max_steps: a.max_steps,
        checkpoint_every: Some(a.checkpoint_every),
        keep: a.keep,
        resume,
    };
    let net = pretrain_with::<Autodiff<B>>(&recipe, &device, opts, |log| {
        bar.set_length(log.total_steps as u64);
        bar.set_position(log.step as u64 + 1);
        wait_total += log.data_wait_s;
        step_total += log.step_s;
        clips_total += log.clips;
        let left = log.total_steps.saturating_sub(log.step + 1) as f64 * step_total
            / (log.step as f64 + 1.0).max(1.0);
        let m = |k: &str| log.metrics.get(k).copied().unwrap_or(f64::NAN);
        bar.set_message(format!(
            "ep {:.2} loss {:.4} lr {:.4} m {:.4} | {:.1} clips/s, data wait {:.0}% | ETA {}",
            log.epoch,
            m("loss"),
            log.lr,
            m("momentum"),
            clips_total as f64 / step_total.max(1e-9),
            100.0 * wait_total / step_total.max(1e-9),
            humantime(left)
        ));
        history.push((
            log.step as f64,
            m("loss"),
            log.lr,
            m("emb_std"),
            m("pos_sim"),
        ));
        if a.plot_every > 0 && (log.step + 1) % a.plot_every == 0 {
            if let Err(e) = write_plots(&recipe.output, &history) {
                write_err.get_or_insert(e);
            }
        }
        if let Err(e) = serde_json::to_string(log)
            .map_err(anyhow::Error::from)
            .and_then(|l| writeln!(metrics, "{l}").map_err(Into::into))
        {
            write_err.get_or_insert(e);
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e.context(format!("writing {}", metrics_path.display())));
    }
    write_plots(&recipe.output, &history)?;
    if step_total > 0.0 {
        eprintln!(
            "  {:.1} clips/s, {:.2} steps/s, data wait {:.0}% of the step time",
            clips_total as f64 / step_total,
            bar.position() as f64 / step_total,
            100.0 * wait_total / step_total
        );
    }
    let out = recipe.output.join("backbone.safetensors");
    save_safetensors(&net.backbone, &out, Naming::Rho)?;
    eprintln!(
        "metrics: {}; online backbone: {}",
        metrics_path.display(),
        out.display()
    );
    Ok(())
}

fn humantime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// loss.png, lr.png and collapse.png in the output folder.
fn write_plots(dir: &std::path::Path, h: &[(f64, f64, f64, f64, f64)]) -> Result<()> {
    use rho_train::plot::{LinePlot, Series};
    let series = |name: &str, color: [u8; 3], f: fn(&(f64, f64, f64, f64, f64)) -> f64| Series {
        name: name.into(),
        color,
        points: h.iter().map(|r| (r.0, f(r))).collect(),
    };
    let plots = [
        (
            "loss.png",
            "training loss",
            vec![series("loss", [200, 30, 30], |r| r.1)],
        ),
        (
            "lr.png",
            "learning rate",
            vec![series("lr", [30, 30, 200], |r| r.2)],
        ),
        (
            "collapse.png",
            "collapse monitors",
            vec![
                series("embedding std", [30, 150, 30], |r| r.3),
                series("positive cos", [150, 30, 150], |r| r.4),
            ],
        ),
    ];
    for (file, title, series) in plots {
        let p = LinePlot {
            title: title.into(),
            x_label: "step".into(),
            series,
        };
        p.save_png(&dir.join(file))
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    Ok(())
}
