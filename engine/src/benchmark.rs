//! The page's "benchmark" button (and its test): one fresh run trained alone for a few
//! steps, timed, with the figures that say where a small model's time goes — kernel launches
//! per step ([`crate::dispatches`]) and device → host reads per step.
//!
//! The clock is passed in: `std::time::Instant` does not exist in the browser.

use std::sync::Arc;

use burn::tensor::Device;

use crate::data::Corpus;
use crate::dispatches::DispatchWatch;
use crate::protocol::BenchmarkReport;
use crate::spec::ExperimentSpec;
use crate::train::data_parallel::HelperLink;
use crate::train::{Trainer, divergence, host_reads};

/// Steps before the clock starts: the first compiles the GPU's shaders, and on a GPU the
/// next ones warm up and capture the step's graph (`train::captured_step`), so that the timed
/// steps are the run's steady state.
pub const WARMUP_STEPS: usize = crate::train::captured_step::ORDINARY_STEPS + crate::train::captured_step::WARMUP_STEPS + 1;

/// The most warm-up steps a minimum warm-up time adds up to (a tiny model's steps take
/// milliseconds).
pub const MAX_WARMUP_STEPS: usize = 1000;

/// One step, its rows shared with `helpers` where there are any and the run splits; the
/// helpers are dropped when one fails (that step was completed here).
async fn step(trainer: &mut Trainer, helpers: &mut Vec<&dyn HelperLink>) {
    if trainer.step_with(helpers).await.is_some() {
        helpers.clear();
    }
}

/// Trains `spec`'s first run on `device` for `steps` timed steps, reading the losses every
/// `log_every` steps as the lab's loop does, with each step's rows shared with `helpers` where
/// any are given. `progress(done)` is told after each timed step.
///
/// The warm-up takes [`WARMUP_STEPS`] steps and, where `min_warmup_ms` asks, goes on until
/// that much time has passed: in the tab, V8 optimises each worker's hot functions in the
/// first seconds of stepping (on two cores its compiler threads take time from the steps), so
/// a first press timed after six steps read ~25 % below the next ones.
#[allow(clippy::too_many_arguments)]
pub async fn benchmark(
    spec: &ExperimentSpec,
    corpus: Arc<Corpus>,
    device: Device,
    device_name: &str,
    steps: usize,
    mut helpers: Vec<&dyn HelperLink>,
    now_ms: fn() -> f64,
    min_warmup_ms: f64,
    mut progress: impl FnMut(usize),
) -> Result<BenchmarkReport, String> {
    if !(1..=10_000).contains(&steps) {
        return Err(format!("a benchmark runs 1 to 10000 steps, not {steps}"));
    }
    let mut spec = spec.clone();
    spec.runs.truncate(1);
    // The learning-rate schedule must not run out inside the benchmark.
    let most_warmup = if min_warmup_ms > 0.0 { MAX_WARMUP_STEPS } else { WARMUP_STEPS };
    spec.train.steps = spec.train.steps.max(steps + most_warmup);
    let started = now_ms();
    let mut trainer = Trainer::new(&spec, 0, corpus, device)?;
    trainer.set_clock(now_ms);
    for _ in 0..WARMUP_STEPS {
        step(&mut trainer, &mut helpers).await;
    }
    // Each step past those waits for its loss, so that the time is the device's too: on a GPU
    // the host hands steps over without waiting, and 2.5 s of them queued minutes of work on
    // a software renderer.
    let mut warmup = WARMUP_STEPS;
    while now_ms() - started < min_warmup_ms && warmup < MAX_WARMUP_STEPS {
        step(&mut trainer, &mut helpers).await;
        trainer.read_losses().await?;
        warmup += 1;
    }
    trainer.read_losses().await?;
    trainer.take_profile();
    let warmup_ms = now_ms() - started;
    let log_every = spec.train.log_every.max(1);
    let watch = DispatchWatch::count();
    let reads = host_reads();
    let clock = now_ms();
    // wall time inside the steps: on a GPU in the browser, the host handing each step to the
    // device (nothing there waits for the device inside a step: the reads come after; see
    // `BenchmarkReport::host_ms_per_step` for native)
    let mut host_ms = 0.0;
    // launches a replayed graph runs, which the watch does not see
    let mut replayed = 0;
    for done in 1..=steps {
        let handed = now_ms();
        step(&mut trainer, &mut helpers).await;
        host_ms += now_ms() - handed;
        replayed += trainer.replayed_launches();
        if done % log_every == 0 || done == steps {
            let losses = trainer.read_losses().await?;
            if let Some(why) = divergence(&losses) {
                return Err(format!("the benchmark run {why}"));
            }
        }
        progress(done);
    }
    let seconds = ((now_ms() - clock) / 1000.0).max(1e-9);
    let steps_per_s = steps as f64 / seconds;
    let tokens_per_s = steps_per_s * spec.tokens_per_step() as f64;
    let flops_per_token = spec.model.train_flops_per_token(trainer.corpus().tokenizer.vocab_size());
    let dispatches_per_step = (watch.total() + replayed) as f64 / steps as f64;
    // A GPU's parts would time only their launches (see `crate::profile`).
    let profile = trainer.take_profile().filter(|_| dispatches_per_step == 0.0);
    Ok(BenchmarkReport {
        preset: spec.preset.clone(),
        device: device_name.to_string(),
        steps,
        steps_per_s,
        tokens_per_s,
        tflops: tokens_per_s * flops_per_token / 1e12,
        warmup_ms,
        dispatches_per_step,
        host_reads_per_step: (host_reads() - reads) as f64 / steps as f64,
        workers: trainer.workers_with(helpers.len()),
        profile,
        host_ms_per_step: (dispatches_per_step > 0.0).then(|| host_ms / steps as f64),
        replayed_per_step: replayed as f64 / steps as f64,
        capture_recordings: trainer.capture_recordings(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::time::Instant;

    /// Milliseconds since the first call.
    fn clock() -> f64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }

    #[test]
    fn reports_speed_and_reads_on_the_cpu() {
        let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
        spec.train.log_every = 2;
        let corpus = Arc::new(Corpus::from_text("test", &"to be or not to be, that is the question. ".repeat(40)).unwrap());
        let mut seen = Vec::new();
        let report = pollster::block_on(benchmark(
            &spec,
            corpus,
            Device::flex(),
            "cpu",
            4,
            Vec::new(),
            clock,
            0.0,
            |done| seen.push(done),
        ))
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4]);
        assert_eq!(report.steps, 4);
        assert!(report.steps_per_s > 0.0 && report.tokens_per_s > report.steps_per_s);
        assert!(report.tflops > 0.0);
        // flex launches no kernels; losses are read at steps 2 and 4 (other tests may read
        // concurrently, so only a lower bound holds for the process-wide counter)
        assert_eq!(report.dispatches_per_step, 0.0);
        assert!(report.host_reads_per_step >= 0.5, "{report:?}");
        assert!(report.warmup_ms >= 0.0);
        // where the steps' time went: every part of a one-worker step, none of a split one
        let p = report.profile.clone().expect("a CPU benchmark has a profile");
        assert_eq!(p.steps, 4);
        assert!(p.forward_ms > 0.0 && p.backward_ms > 0.0 && p.update_ms > 0.0, "{p:?}");
        assert_eq!((p.send_ms, p.wait_ms, p.helper_ms, p.add_ms), (0.0, 0.0, 0.0, 0.0));
        assert!(p.total_ms() <= 1000.0 / report.steps_per_s * 1.01, "the parts fit in a step: {p:?} {report:?}");
        // on the CPU the step is the arithmetic: no separate host figure
        assert_eq!(report.host_ms_per_step, None);
    }

    /// A minimum warm-up time keeps the run stepping before the clock starts (as the tab's
    /// button asks, for V8 to optimise the workers' code first).
    #[test]
    fn warms_up_for_at_least_the_time_asked() {
        let spec = ExperimentSpec::from_preset("tiny").unwrap();
        let corpus = Arc::new(Corpus::from_text("test", &"to be or not to be, that is the question. ".repeat(40)).unwrap());
        let report = pollster::block_on(benchmark(&spec, corpus, Device::flex(), "cpu", 2, Vec::new(), clock, 150.0, |_| {})).unwrap();
        assert!(report.warmup_ms >= 150.0, "{report:?}");
        assert_eq!(report.steps, 2);
    }

    /// With a helper (here the engine's own, in-process), every step is split and the report
    /// says two workers computed it; a helper that fails is dropped and the run goes on.
    #[test]
    fn splits_steps_with_a_helper_and_survives_its_failure() {
        use crate::train::data_parallel::InProcess;
        let spec = ExperimentSpec::from_preset("tiny").unwrap();
        let corpus = Arc::new(Corpus::from_text("test", &"to be or not to be, that is the question. ".repeat(40)).unwrap());
        let helper = InProcess::new(false);
        let report = pollster::block_on(benchmark(&spec, corpus.clone(), Device::flex(), "cpu", 3, vec![&helper], clock, 0.0, |_| {})).unwrap();
        assert_eq!(report.workers, 2);
        // the in-process helper computes when its answer is awaited, so its time shows as
        // waiting; it reports no time of its own
        let p = report.profile.clone().expect("a CPU benchmark has a profile");
        assert_eq!(p.steps, 3);
        assert!(p.send_ms > 0.0 && p.wait_ms > 0.0 && p.forward_ms > 0.0 && p.backward_ms > 0.0 && p.add_ms > 0.0 && p.update_ms > 0.0, "{p:?}");
        assert_eq!((p.helper_ms, p.messaging_ms), (0.0, 0.0));
        assert_eq!(helper.asked.get(), WARMUP_STEPS + 3, "every step asked the helper");

        let failing = InProcess::new(true);
        let report = pollster::block_on(benchmark(&spec, corpus, Device::flex(), "cpu", 3, vec![&failing], || 0.0, 0.0, |_| {})).unwrap();
        assert_eq!((report.workers, failing.asked.get()), (1, 1), "asked once, then alone");
        assert_eq!(report.steps, 3);
    }

    #[test]
    fn refuses_a_senseless_step_count() {
        let spec = ExperimentSpec::from_preset("tiny").unwrap();
        let corpus = Arc::new(Corpus::from_text("test", &"abcdefgh ".repeat(100)).unwrap());
        let err = pollster::block_on(benchmark(&spec, corpus, Device::flex(), "cpu", 0, Vec::new(), || 0.0, 0.0, |_| {})).unwrap_err();
        assert!(err.contains("1 to 10000"), "{err}");
    }
}
