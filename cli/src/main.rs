//! `objlab`: run Objective Lab's experiments natively — the same engine and specs as the page.
//!
//! ```text
//! objlab train --preset baby-gpt --steps 2000 --device cpu
//! objlab bench --preset baby-gpt --device gpu --steps 50
//! objlab bench --preset baby-gpt --device cpu --runs 6 --snapshot   # a workspace of 6 runs
//! objlab train --preset tiny --objective causal_lm=0.5,masked_lm=0.5 --set masked_lm.rate=0.3 --steps 200 --json
//! objlab train --link 'http://127.0.0.1:8080/?preset=tiny&run=…&run=…'   # a page's runs, and its results table
//! objlab objectives            # the registry, with parameters and their ranges
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use objlab_engine::burn::tensor::Device;
use objlab_engine::data::{Corpus, is_upload, upload_file_name};
use objlab_engine::results::{RunCurves, curves_csv};
use objlab_engine::spec::{CORPORA, ExperimentSpec};
use objlab_engine::train::Trainer;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its `mimalloc.h`; libmimalloc-sys names only v2's
/// options): milliseconds before freed memory goes back to the kernel, −1 for never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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
    /// wgpu (Vulkan, Metal, DirectX 12 or WebGPU, whichever the machine has); cubecl's
    /// autotune level follows CUBECL_AUTOTUNE_LEVEL (default balanced)
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
        /// Train every run of a link from the page ("copy link", or the address itself), one
        /// after another on `--device`, and print the page's results table for them (Markdown:
        /// seeds in one row as mean ± standard deviation). `--steps` and `--set` apply to every
        /// run; a run on a text of one's own needs that file as `--data`
        #[arg(long, conflicts_with_all = ["preset", "objective"])]
        link: Option<String>,
        /// Also write the loss curves to this file as the page's "download CSV" does
        /// (`run,label,split,step,loss`, one row per point)
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// End with one JSON line instead of the human summary
        #[arg(long)]
        json: bool,
    },
    /// Measure training speed; ends with one JSON line
    Bench {
        #[command(flatten)]
        run: RunArgs,
        /// Runs side by side (round robin, as the page's workspace), each with its own seed;
        /// the figure is the aggregate steps/s
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Also time one representation snapshot per run (device read, PCA of embeddings and
        /// probe states, linear probe, CKA across the runs), on the CPU and, where there is a
        /// GPU adapter, on the WGSL kernels
        #[arg(long)]
        snapshot: bool,
        /// Time `--device gpu` even when the adapter is a software rasteriser (lavapipe)
        #[arg(long)]
        software: bool,
        /// The device's peak TFLOP/s (e.g. 67 for an H100's FP32), to report model FLOP
        /// utilisation beside the achieved TFLOP/s
        #[arg(long)]
        peak_tflops: Option<f64>,
        /// After the timed steps, time every GPU kernel of 10 more steps (each kernel then
        /// waits for the previous one) and print where the device time goes
        #[arg(long)]
        kernel_profile: bool,
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
    // SAFETY: sets one of mimalloc's options, which it reads when it next purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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
        Command::Train { run, link: Some(link), csv, json } => train_link(&link, run, csv, json),
        Command::Train { run, link: None, csv, json } => train(run, csv, json),
        Command::Bench { run, runs, snapshot, software, peak_tflops, kernel_profile } => {
            bench(run, runs, snapshot, software, peak_tflops, kernel_profile)
        }
        Command::List => {
            let vocab = objlab_engine::spec::builtin_vocab(CORPORA[0].0).expect("a built-in corpus");
            for p in objlab_engine::spec::presets() {
                let params = objlab_engine::results::params_text(p.model.n_params(vocab));
                println!("preset    {:<24} {} ({params} parameters on {})", p.name, p.description, CORPORA[0].0);
            }
            println!("          (any size: --set layers=N --set heads=N --set width=N --set context=N --set batch=N)");
            for (name, _) in CORPORA {
                println!("corpus    {name:<24} {}", objlab_engine::spec::corpus_description(name));
            }
            println!("          (or --set corpus=NAME; a text file of your own: --data FILE)");
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
    if let Some(objective) = &args.objective {
        spec.set("objective", objective)?;
    }
    override_spec(&mut spec, args)?;
    let corpus = load_corpus(&spec, args.data.as_ref())?;
    let (device, device_name) = open_device(args.device)?;
    Ok((spec, corpus, device, device_name))
}

/// `--steps` and every `--set`, then the spec's own checks.
fn override_spec(spec: &mut ExperimentSpec, args: &RunArgs) -> Result<(), String> {
    if let Some(steps) = args.steps {
        spec.set("steps", &steps.to_string())?;
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv:?} should look like key=value"))?;
        spec.set(k, v)?;
    }
    spec.validate()
}

/// The text `spec` trains on: `data` where given, else its built-in corpus from assets/.
fn load_corpus(spec: &ExperimentSpec, data: Option<&PathBuf>) -> Result<Arc<Corpus>, String> {
    let (name, path) = match data {
        // named by its file name, as the page names a file of one's own: a corpus name keeps
        // only characters that read well in an address, so a path's '/' came out as '_'
        // ("_tmp_short.txt is too short…")
        Some(p) => (p.file_name().map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned()), p.clone()),
        None => {
            // a text of one's own (`corpus=file:…`, as a page's link names it) is not shipped
            let file = CORPORA.iter().find(|(n, _)| *n == spec.corpus).map(|(_, f)| *f).ok_or_else(|| {
                format!("this run trains on a text of one's own ({}): pass that file as --data FILE", upload_file_name(&spec.corpus))
            })?;
            (spec.corpus.clone(), shipped_asset(file))
        }
    };
    // the hint only where the built-in corpus is missing (a checkout without assets/)
    let hint = if data.is_none() { " (pass --data FILE)" } else { "" };
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read corpus {}: {e}{hint}", path.display()))?;
    // a file of one's own gets the page's checks (text, not binary; size; distinct characters)
    Ok(Arc::new(if data.is_some() {
        Corpus::from_upload(&name, &bytes)?
    } else {
        Corpus::builtin(&name, &String::from_utf8_lossy(&bytes))?
    }))
}

fn open_device(device: DeviceArg) -> Result<(Device, String), String> {
    Ok(match device {
        DeviceArg::Cpu => (Device::flex(), "cpu (flex)".to_string()),
        DeviceArg::Gpu => {
            let d = Device::wgpu_options().init().map_err(|e| format!("no GPU through wgpu: {e:?}; use --device cpu"))?;
            (d, "gpu (wgpu)".to_string())
        }
    })
}

/// A file of the repository's assets/: from the workspace `cargo run` names (set at run time),
/// else ./assets, else where this binary was compiled (a shared target folder can hand one
/// clone a binary built in another).
fn shipped_asset(file: &str) -> PathBuf {
    let candidates = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(|d| PathBuf::from(d).join("../assets").join(file)),
        Some(PathBuf::from("assets").join(file)),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets").join(file))
}

/// Writes the runs' curves as the page's "download CSV" does.
fn write_csv(path: &PathBuf, curves: &[RunCurves]) -> Result<(), String> {
    std::fs::write(path, curves_csv(curves)).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn train(args: RunArgs, csv: Option<PathBuf>, json: bool) -> Result<(), String> {
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
    let (mut train_points, mut val_points) = (Vec::new(), Vec::new());
    while !trainer.is_done() {
        trainer.step();
        let step = trainer.step_count();
        if step % log_every == 0 || trainer.is_done() {
            let read = pollster::block_on(trainer.read_losses())?;
            losses.extend(read.iter().map(|(_, l)| *l));
            train_points.extend(read.iter().copied());
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
            val_points.push((step, val));
            bar.println(format!("step {step}: validation loss {val:.4}"));
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let val = pollster::block_on(trainer.evaluate())?;
    val_points.push((trainer.step_count(), val));
    if let Some(path) = &csv {
        let label = objlab_engine::spec::objective_mix_text(&spec.runs[0].objectives);
        write_csv(path, &[RunCurves { run: 1, label: &label, train: &train_points, validation: &val_points }])?;
    }
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
            let sample = pollster::block_on(trainer.sample(&trainer.corpus().tokenizer.sample_prompt(), spec.train.sample_len))?;
            // (the digits' images drawn as images, as the page draws them: a corpus of records
            // is the built-in digits, since a file of one's own is plain text)
            match trainer.corpus().records.is_some() {
                true => println!("{}\n", objlab_engine::digits::drawn(&sample, 6)),
                false => println!("{sample}\n"),
            }
        }
        println!(
            "done: {steps} steps in {elapsed:.1} s ({steps_per_s:.2} steps/s); final train loss {:.4}, validation loss {val:.4}",
            losses.last().copied().unwrap_or(f32::NAN)
        );
    }
    Ok(())
}

/// `objlab train --link`: every run of a page's link, one after another, then the page's
/// results table for them. Each run is built from its own spec as the page builds it (its
/// seed, its objective mix, its sizes), so the table's rows are the page's experiments; the
/// figures differ from the page's only by rounding (native and wasm vector code add in other
/// orders).
fn train_link(link: &str, args: RunArgs, csv: Option<PathBuf>, json: bool) -> Result<(), String> {
    use objlab_engine::probe_set::ProbeSet;
    use objlab_engine::results::{RunResult, Table, common_step, figures_at};
    use objlab_engine::spec::{numbered_repeats, run_labels, workspace_from_query};

    // the address as the page shows it, or its query alone
    let query = link.split_once('?').map_or(link, |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let (controls, mut specs, problems) = workspace_from_query(query);
    if !problems.is_empty() {
        return Err(format!("the link is not one the page made: {}", problems.join("; ")));
    }
    if specs.is_empty() {
        // a link of one run holds it in its own options, as the page's address does
        specs.push(controls);
    }
    for (i, spec) in specs.iter_mut().enumerate() {
        override_spec(spec, &args).map_err(|e| format!("run {}: {e}", i + 1))?;
    }
    let (device, device_name) = open_device(args.device)?;
    let refs: Vec<&ExperimentSpec> = specs.iter().collect();
    // as the page names runs: what differs, and its number where two read the same
    let labels: Vec<String> = numbered_repeats((1..).zip(run_labels(&refs)).collect()).into_iter().map(|(_, l)| l).collect();
    // every text before the first step, so that a missing file is said at once; each text once
    let mut corpora: Vec<Arc<Corpus>> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if corpora.iter().any(|c| c.name == spec.corpus) {
            continue;
        }
        // `--data` is the text of one's own that a run names; the built-in ones come from assets/
        let data = args.data.as_ref().filter(|_| is_upload(&spec.corpus));
        let corpus = load_corpus(spec, data).map_err(|e| format!("run {}: {e}", i + 1))?;
        if corpus.name != spec.corpus {
            return Err(format!(
                "run {}: {} is not the text this run trained on ({}): its contents differ",
                i + 1,
                args.data.as_ref().map_or_else(String::new, |p| p.display().to_string()),
                upload_file_name(&spec.corpus)
            ));
        }
        corpora.push(corpus);
    }
    let bars = indicatif::MultiProgress::new();
    if json {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        eprintln!("training the link's {} runs one after another on {device_name}", specs.len());
    }
    let mut results = Vec::new();
    for (i, (spec, label)) in specs.iter().zip(&labels).enumerate() {
        let corpus = corpora.iter().find(|c| c.name == spec.corpus).expect("loaded above").clone();
        let bar = bars.add(ProgressBar::new(spec.train.steps as u64));
        bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} steps  {msg}").expect("valid template"));
        bar.set_prefix(format!("run {} ({label}, seed {})", i + 1, spec.seed));
        let mut trainer = Trainer::new(spec, 0, corpus, device.clone()).map_err(|e| format!("run {}: {e}", i + 1))?;
        let (mut train, mut val, mut probes) = (Vec::new(), Vec::new(), Vec::new());
        let mut failure = None;
        let log_every = spec.train.log_every.max(10);
        while !trainer.is_done() {
            trainer.step();
            let step = trainer.step_count();
            let done = trainer.is_done();
            if step % log_every == 0 || done {
                let read = pollster::block_on(trainer.read_losses())?;
                // as the page: a run whose loss stopped being a number stops, the others go on
                if let Some(why) = objlab_engine::train::divergence(&read) {
                    failure = Some(why);
                    break;
                }
                train.extend(read);
                bar.set_position(step as u64);
                bar.set_message(format!("loss {:.4}", train.last().map_or(f32::NAN, |p: &(usize, f32)| p.1)));
            }
            if step % spec.train.eval_every == 0 || done {
                val.push((step, pollster::block_on(trainer.evaluate())?));
            }
        }
        let trained = train.last().map(|p| p.0 + 1);
        if failure.is_none() {
            // the page's probe: a linear probe on the frozen, mean-pooled states of its probe set
            let probe = ProbeSet::of_views(trainer.corpus())?;
            let f = pollster::block_on(trainer.features(&probe))?;
            let pooled = objlab_kernels::Matrix::new(probe.rows.len(), f.d_model, f.pooled);
            probes.push((trainer.step_count(), objlab_kernels::probe::probe_accuracy(&pooled, &probe.labels, probe.classes), probe.classes));
        }
        match &failure {
            Some(why) => bar.abandon_with_message(format!("stopped: {why}")),
            None => bar.finish_with_message(format!("validation loss {:.4}", val.last().map_or(f32::NAN, |p| p.1))),
        }
        let latest = if failure.is_some() { trained } else { Some(trainer.step_count()) };
        results.push((spec.clone(), latest, failure, train, val, probes));
    }
    let trained: Vec<(Option<usize>, bool)> = results.iter().map(|r| (r.1, r.2.is_some())).collect();
    let at = common_step(&trained).unwrap_or(0);
    if let Some(path) = &csv {
        let curves: Vec<RunCurves> = results
            .iter()
            .zip(&labels)
            .enumerate()
            .map(|(i, (r, label))| RunCurves { run: i as u32 + 1, label, train: &r.3, validation: &r.4 })
            .collect();
        write_csv(path, &curves)?;
    }
    let runs: Vec<RunResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, (spec, latest, failure, train, val, probes))| RunResult {
            id: i as u32 + 1,
            vocab: corpora.iter().find(|c| c.name == spec.corpus).map(|c| c.tokenizer.vocab_size()),
            spec,
            latest,
            failure,
            figures: figures_at(&train, &val, &probes, at),
        })
        .collect();
    let table = Table::build(&runs, at);
    let markdown = table.markdown();
    if json {
        let rows: Vec<serde_json::Value> = table
            .rows
            .iter()
            .map(|r| {
                let stat = |s: &Option<objlab_engine::results::Stat>| s.as_ref().map(|s| serde_json::json!({"mean": s.mean, "sd": s.sd, "n": s.n, "of": s.of}));
                serde_json::json!({"label": r.label, "seeds": r.seeds, "params": r.params, "train": stat(&r.train), "val": stat(&r.val), "probe": stat(&r.probe), "notes": r.notes()})
            })
            .collect();
        println!("{}", serde_json::json!({"at": table.at, "rows": rows, "markdown": markdown}));
    } else {
        println!("\n{markdown}");
    }
    Ok(())
}

fn bench(
    args: RunArgs,
    n_runs: usize,
    snapshot: bool,
    software_ok: bool,
    peak_tflops: Option<f64>,
    kernel_profile: bool,
) -> Result<(), String> {
    use objlab_engine::dispatches::DispatchWatch;
    use objlab_engine::scheduler::Scheduler;
    if !(1..=8).contains(&n_runs) {
        return Err(format!("--runs {n_runs}: between 1 and 8 runs side by side"));
    }
    if matches!(args.device, DeviceArg::Gpu)
        && !software_ok
        && let Ok(gpu) = pollster::block_on(objlab_kernels::gpu::Gpu::new())
        && gpu.software
    {
        return Err(format!(
            "the only GPU adapter here is a software rasteriser ({}): no GPU speed figure (pass --software to time it anyway)",
            gpu.adapter
        ));
    }
    let (mut spec, corpus, device, device_name) = setup(&args)?;
    if kernel_profile {
        // the profile times every launch, which a replayed graph does not make
        spec.train.capture = false;
    }
    // --steps: timed steps in all (shared by the runs)
    let steps = args.steps.unwrap_or(50 * n_runs);
    // the page's benchmark's warm-up: shaders compiled and, on a GPU, the step's graph captured
    let warm_steps = objlab_engine::benchmark::WARMUP_STEPS;
    // + warm-up, the dispatch count (5 per run) and the kernel profile (10 per run)
    spec.train.steps = steps + (warm_steps + 15) * n_runs;
    let mut runs: Vec<(u32, Trainer)> = Vec::new();
    for i in 0..n_runs {
        let mut s = spec.clone();
        s.seed += i as u64;
        runs.push((i as u32, Trainer::new(&s, 0, corpus.clone(), device.clone())?));
    }
    let mut scheduler = Scheduler::default();
    for (id, _) in &runs {
        scheduler.add(*id);
    }
    // `n` steps round robin, then one read of every run's pending losses (which waits for the
    // device): each run's last loss.
    let mut steps_then_read = |runs: &mut Vec<(u32, Trainer)>, n: usize| -> Result<Vec<Option<f32>>, String> {
        for _ in 0..n {
            let id = scheduler.next().expect("runs are active");
            runs.iter_mut().find(|(r, _)| *r == id).expect("scheduled run exists").1.step();
            scheduler.stepped(id);
        }
        runs.iter_mut().map(|(_, t)| Ok(pollster::block_on(t.read_losses())?.last().map(|(_, l)| *l))).collect()
    };
    // Warm up (kernel compilation, allocator, the capture) outside the timed window.
    let warm = Instant::now();
    steps_then_read(&mut runs, warm_steps * n_runs)?;
    let warmup_s = warm.elapsed().as_secs_f64();
    let reads_before = objlab_engine::train::host_reads();
    let started = Instant::now();
    let last = steps_then_read(&mut runs, steps)?;
    let elapsed = started.elapsed().as_secs_f64();
    let host_reads = objlab_engine::train::host_reads() - reads_before;
    // Kernel launches per step (GPU only), counted over 5 more steps per run.
    // (a replayed graph's launches are not observed: each run's graph runs its own per step)
    let watch = DispatchWatch::count();
    steps_then_read(&mut runs, 5 * n_runs)?;
    let replayed_per_step = runs.iter().map(|(_, t)| t.replayed_launches()).sum::<usize>() as f64 / n_runs as f64;
    let dispatches_per_step = watch.total() as f64 / (5 * n_runs) as f64 + replayed_per_step;
    drop(watch);
    let profile = if kernel_profile {
        let watch = DispatchWatch::timed();
        let clock = Instant::now();
        steps_then_read(&mut runs, 10 * n_runs)?;
        let per_step = (10 * n_runs) as f64;
        let wall_ms = clock.elapsed().as_secs_f64() * 1e3 / per_step;
        let kernels = watch.kernels();
        let device_ms: f64 = kernels.iter().map(|k| k.ms).sum::<f64>() / per_step;
        eprintln!("kernel profile (each kernel waited for): {wall_ms:.2} ms per step, {device_ms:.2} ms of it in kernels");
        for k in kernels.iter().take(20) {
            eprintln!("  {:>8.3} ms/step {:>6.1} launches/step  {}", k.ms / per_step, k.launches as f64 / per_step, k.name);
        }
        Some(serde_json::json!({
            "wall_ms_per_step": wall_ms,
            "kernel_ms_per_step": device_ms,
            "top": kernels.iter().take(20).map(|k| serde_json::json!({
                "kernel": k.name, "ms_per_step": k.ms / per_step, "launches_per_step": k.launches as f64 / per_step,
            })).collect::<Vec<_>>(),
        }))
    } else {
        None
    };
    let val = pollster::block_on(runs[0].1.evaluate())?;
    let steps_per_s = steps as f64 / elapsed;
    let tflops = spec.model.train_flops_per_token(corpus.tokenizer.vocab_size()) * spec.tokens_per_step() as f64 * steps_per_s / 1e12;
    eprintln!("{device_name}: {n_runs} run(s), warm-up {warmup_s:.2} s, {steps} steps in {elapsed:.2} s");
    let mut report = serde_json::json!({
        "preset": spec.preset,
        "device": match args.device { DeviceArg::Cpu => "cpu", DeviceArg::Gpu => "gpu" },
        "runs": n_runs,
        "steps_per_s": steps_per_s,
        "step_ms": 1000.0 / steps_per_s,
        "tokens_per_s": steps_per_s * spec.tokens_per_step() as f64,
        "warmup_s": warmup_s,
        "autotune": if matches!(args.device, DeviceArg::Gpu) { objlab_engine::dispatches::autotune_level() } else { "—".into() },
        "tflops": tflops,
        "dispatches_per_step": dispatches_per_step,
        "replayed_per_step": replayed_per_step,
        "host_reads_per_step": host_reads as f64 / steps as f64,
        "final_train_loss": last[0],
        "val_loss": val,
    });
    if let Some(peak) = peak_tflops {
        report["mfu"] = serde_json::json!(tflops / peak);
    }
    if let Some(profile) = profile {
        report["kernel_profile"] = profile;
    }
    if snapshot {
        let trainers: Vec<&Trainer> = runs.iter().map(|(_, t)| t).collect();
        let cpu = pollster::block_on(snapshot_ms(&trainers, &objlab_kernels::Analyser::Cpu))?;
        report["snapshot_ms_cpu"] = serde_json::json!(cpu);
        match pollster::block_on(objlab_kernels::gpu::Gpu::new()) {
            Ok(gpu) if gpu.software && !software_ok => {
                eprintln!("no GPU figure for the snapshot kernels: the only adapter is a software rasteriser ({})", gpu.adapter)
            }
            Ok(gpu) => {
                let gpu = objlab_kernels::Analyser::Gpu(gpu);
                pollster::block_on(snapshot_ms(&trainers, &gpu))?; // compiles the kernels
                report["snapshot_ms_gpu"] = serde_json::json!(pollster::block_on(snapshot_ms(&trainers, &gpu))?);
            }
            Err(why) => eprintln!("no GPU figure for the snapshot kernels: {why}"),
        }
    }
    println!("{report}");
    Ok(())
}

/// Milliseconds of one snapshot of every run, as the page's worker takes them: read features
/// (at the step), then one stage at a time between steps: PCA of the token embeddings, PCA of
/// the probe states, the linear probe, CKA across the runs. Reports the mean of each stage per
/// run, the total for all runs, and the longest single stage (how long training waits at most).
async fn snapshot_ms(trainers: &[&Trainer], analyser: &objlab_kernels::Analyser) -> Result<serde_json::Value, String> {
    use objlab_engine::probe_set::ProbeSet;
    use objlab_kernels::Matrix;
    // the worker's probe set
    let probe = ProbeSet::of_views(trainers[0].corpus())?;
    let mut stages = [0.0f64; 4];
    let mut longest = 0.0f64;
    let mut pooled = Vec::new();
    let all = Instant::now();
    let mut timed = |i: usize, clock: Instant, stages: &mut [f64; 4]| {
        let ms = 1000.0 * clock.elapsed().as_secs_f64();
        stages[i] += ms;
        longest = longest.max(ms);
    };
    for t in trainers {
        let clock = Instant::now();
        let f = t.features(&probe).await?;
        timed(0, clock, &mut stages);
        let e = Matrix::new(f.tokens.len(), f.d_model, f.embeddings);
        let p = Matrix::new(probe.rows.len(), f.d_model, f.pooled);
        let clock = Instant::now();
        analyser.pca(&e).await?;
        timed(1, clock, &mut stages);
        let clock = Instant::now();
        analyser.pca(&p).await?;
        timed(1, clock, &mut stages);
        let clock = Instant::now();
        objlab_kernels::probe::probe_accuracy(&p, &probe.labels, probe.classes);
        timed(2, clock, &mut stages);
        pooled.push(p);
    }
    let clock = Instant::now();
    analyser.cka_matrix(&pooled.iter().collect::<Vec<_>>()).await?;
    timed(3, clock, &mut stages);
    let n = trainers.len() as f64;
    Ok(serde_json::json!({
        "read_per_run": stages[0] / n,
        "pca_per_run": stages[1] / n,
        "probe_per_run": stages[2] / n,
        "cka_all_runs": stages[3],
        "total_all_runs": 1000.0 * all.elapsed().as_secs_f64(),
        "longest_stage": longest,
    }))
}

#[cfg(test)]
mod tests {
    /// The option number is mimalloc v3's purge delay: its default there is 1000 ms, which no
    /// neighbouring option has (a version that renumbered its options fails here).
    #[test]
    fn purge_delay_is_the_option_set() {
        // SAFETY: reads one of mimalloc's options.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(default, 1000);
    }
}
