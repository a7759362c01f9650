//! `objlab`: run Objective Lab's experiments natively — the same engine and specs as the page.
//!
//! ```text
//! objlab train --preset baby-gpt --steps 2000 --device cpu
//! objlab bench --preset baby-gpt --device gpu --steps 50
//! objlab train --preset tiny --objective causal_lm=0.5,masked_lm=0.5 --set masked_lm.rate=0.3 --steps 200 --json
//! objlab objectives            # the registry, with parameters and their ranges
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use objlab_engine::burn::tensor::Device;
use objlab_engine::data::Corpus;
use objlab_engine::spec::{CORPORA, ExperimentSpec, preset_names};
use objlab_engine::train::Trainer;

#[derive(Parser)]
#[command(name = "objlab", version, about = "Objective Lab: train small models on different pretraining objectives")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// burn's flex backend on the CPU
    Cpu,
    /// wgpu (Vulkan, Metal, DirectX 12 or WebGPU, whichever the machine has)
    Gpu,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Preset to start from (baby-gpt, tiny)
    #[arg(long, default_value = "baby-gpt")]
    preset: String,
    /// Optimiser steps (default: the preset's)
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Objective or weighted mix, e.g. `masked_lm` or `causal_lm=0.7,masked_lm=0.3`
    /// (parameters after `:`, e.g. `masked_lm:rate=0.3`); see `objlab objectives`
    #[arg(long)]
    objective: Option<String>,
    /// Any other spec option, `key=value` (seed, lr, batch, arch, …) or an objective's
    /// parameter `<objective>.<parameter>=value` (e.g. `masked_lm.rate=0.3`); repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Text file to train on instead of the built-in corpus
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Train one run with a progress bar and print the final validation loss
    Train {
        #[command(flatten)]
        run: RunArgs,
        /// End with one JSON line instead of the human summary
        #[arg(long)]
        json: bool,
    },
    /// Measure training speed; ends with one JSON line
    Bench {
        #[command(flatten)]
        run: RunArgs,
    },
    /// List presets and objectives
    List,
    /// The objective registry: each objective, its paper, definition and parameters with ranges
    Objectives {
        /// Print the docs/objectives.md table instead
        #[arg(long)]
        markdown: bool,
        /// Print the registry as JSON
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Train { run, json } => train(run, json),
        Command::Bench { run } => bench(run),
        Command::List => {
            println!("presets: {}", preset_names().join(", "));
            for o in objlab_engine::objectives::REGISTRY {
                let i = o.info();
                println!("objective {:<24} {} — {}", i.id, i.name, i.paper);
            }
            Ok(())
        }
        Command::Objectives { markdown, json } => {
            use objlab_engine::objectives::{ParamKind, REGISTRY, markdown_table};
            if markdown {
                print!("{}", markdown_table());
            } else if json {
                let infos: Vec<_> = REGISTRY.iter().map(|o| o.info()).collect();
                println!("{}", serde_json::to_string_pretty(&infos).expect("registry serialises"));
            } else {
                for o in REGISTRY {
                    let i = o.info();
                    println!("{}  —  {}\n  paper: {}\n  {}", i.id, i.name, i.paper, i.definition);
                    for p in i.params {
                        let range = match p.kind {
                            ParamKind::Number { min, max, default, .. } => format!("{min} to {max}, default {default}"),
                            ParamKind::Words { default } => format!("comma-separated words, default {default:?}"),
                        };
                        println!("    {}.{} = {}  ({range}): {}", i.id, p.key, p.label, p.help);
                    }
                    println!();
                }
                println!("mix objectives with weights: --objective causal_lm=0.5,masked_lm=0.5; set parameters with --set <objective>.<parameter>=value");
            }
            Ok(())
        }
    }
}

/// The spec, corpus and device that `args` describe.
fn setup(args: &RunArgs) -> Result<(ExperimentSpec, Arc<Corpus>, Device, String), String> {
    let mut spec = ExperimentSpec::from_preset(&args.preset)?;
    if let Some(steps) = args.steps {
        spec.set("steps", &steps.to_string())?;
    }
    if let Some(objective) = &args.objective {
        spec.set("objective", objective)?;
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv:?} should look like key=value"))?;
        spec.set(k, v)?;
    }
    spec.validate()?;
    let (name, path) = match &args.data {
        Some(p) => (p.display().to_string(), p.clone()),
        None => {
            let file = CORPORA.iter().find(|(n, _)| *n == spec.corpus).map(|(_, f)| *f).expect("validated corpus");
            (spec.corpus.clone(), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets").join(file))
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read corpus {}: {e}", path.display()))?;
    let corpus = Arc::new(Corpus::from_text(&name, &text)?);
    let (device, device_name) = match args.device {
        DeviceArg::Cpu => (Device::flex(), "cpu (flex)".to_string()),
        DeviceArg::Gpu => {
            let d = Device::wgpu_options().init().map_err(|e| format!("no GPU through wgpu: {e:?}; use --device cpu"))?;
            (d, "gpu (wgpu)".to_string())
        }
    };
    Ok((spec, corpus, device, device_name))
}

fn train(args: RunArgs, json: bool) -> Result<(), String> {
    let (spec, corpus, device, device_name) = setup(&args)?;
    let mut trainer = Trainer::new(&spec, 0, corpus, device)?;
    let steps = spec.train.steps;
    let log_every = spec.train.log_every.max(10);
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
            .expect("valid template"),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.println(format!(
        "training {} ({} parameters) on {device_name}: {} steps of {} tokens",
        spec.preset,
        spec.model.n_params(trainer.corpus().tokenizer.vocab_size()),
        steps,
        spec.tokens_per_step()
    ));
    let started = Instant::now();
    let mut losses: Vec<f32> = Vec::new();
    while !trainer.is_done() {
        trainer.step();
        let step = trainer.step_count();
        if step % log_every == 0 || trainer.is_done() {
            let read = pollster::block_on(trainer.read_losses())?;
            losses.extend(read.iter().map(|(_, l)| *l));
            let last = *losses.last().expect("at least one loss");
            if !last.is_finite() {
                return Err(format!("training diverged at step {step}: loss is {last}"));
            }
            let tokens_per_s = (step * spec.tokens_per_step()) as f64 / started.elapsed().as_secs_f64();
            bar.set_position(step as u64);
            bar.set_message(format!("loss {last:.4}  {tokens_per_s:.0} tokens/s"));
        }
        if step % spec.train.eval_every == 0 && !trainer.is_done() {
            let val = pollster::block_on(trainer.evaluate())?;
            bar.println(format!("step {step}: validation loss {val:.4}"));
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let val = pollster::block_on(trainer.evaluate())?;
    let steps_per_s = steps as f64 / elapsed;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "objective": objlab_engine::spec::objective_mix_text(&spec.runs[0].objectives),
                "arch": spec.model.arch,
                "first_loss": losses.first(),
                "last_loss": losses.last(),
                "val_loss": val,
                "steps_per_s": steps_per_s,
            })
        );
    } else {
        if trainer.generates() {
            let sample = pollster::block_on(trainer.sample("\n", spec.train.sample_len))?;
            println!("{sample}\n");
        }
        println!(
            "done: {steps} steps in {elapsed:.1} s ({steps_per_s:.2} steps/s); final train loss {:.4}, validation loss {val:.4}",
            losses.last().copied().unwrap_or(f32::NAN)
        );
    }
    Ok(())
}

fn bench(args: RunArgs) -> Result<(), String> {
    let (mut spec, corpus, device, device_name) = setup(&args)?;
    let steps = args.steps.unwrap_or(50);
    spec.train.steps = steps + 5;
    let mut trainer = Trainer::new(&spec, 0, corpus, device)?;
    // Warm up (kernel compilation, allocator) outside the timed window.
    let warm = Instant::now();
    for _ in 0..5 {
        trainer.step();
    }
    pollster::block_on(trainer.read_losses())?;
    let warmup_s = warm.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..steps {
        trainer.step();
    }
    let losses = pollster::block_on(trainer.read_losses())?;
    let elapsed = started.elapsed().as_secs_f64();
    let val = pollster::block_on(trainer.evaluate())?;
    let steps_per_s = steps as f64 / elapsed;
    eprintln!("{device_name}: warm-up {warmup_s:.2} s, {steps} steps in {elapsed:.2} s");
    println!(
        "{}",
        serde_json::json!({
            "preset": spec.preset,
            "device": match args.device { DeviceArg::Cpu => "cpu", DeviceArg::Gpu => "gpu" },
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * spec.tokens_per_step() as f64,
            "final_train_loss": losses.last().map(|(_, l)| *l),
            "val_loss": val,
        })
    );
    Ok(())
}
