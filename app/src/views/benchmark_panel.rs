//! The "benchmark" button: times a fresh run of the experiment the controls show, alone on
//! its device, and reports the figures that say where a small model's time goes — steps/s,
//! GPU dispatches and host round trips per step — beside the first-step latency.

use leptos::prelude::*;
use objlab_engine::protocol::{BenchmarkReport, ToWorker};

use crate::lab::{Benchmark, Lab};
use crate::worker_link;

/// Timed steps: enough to average over, few enough for a slow device.
const STEPS: usize = 20;

fn report_text(r: &BenchmarkReport, first_step_ms: Option<f64>) -> String {
    let dispatches = if r.dispatches_per_step > 0.0 {
        format!("{:.0} GPU dispatches per step", r.dispatches_per_step)
    } else {
        "no GPU dispatches (CPU backend)".to_string()
    };
    let workers = if r.workers > 1 { format!(" ({} workers)", r.workers) } else { String::new() };
    let first = first_step_ms.map(|ms| format!(" · first step {:.1} s after opening the page", ms / 1000.0)).unwrap_or_default();
    format!(
        "{} on {}{workers}: {:.2} steps/s · {:.0} tokens/s · {:.3} TFLOP/s · {dispatches} · {:.2} host reads per step · warm-up {:.1} s{first}",
        r.preset,
        r.device,
        r.steps_per_s,
        r.tokens_per_s,
        r.tflops,
        r.host_reads_per_step,
        r.warmup_ms / 1000.0
    )
}

#[component]
pub fn BenchmarkPanel(lab: Lab) -> impl IntoView {
    let running = move || matches!(lab.benchmark.get(), Benchmark::Running { .. });
    let start = move |_| {
        let spec = lab.spec.get_untracked();
        let steps = STEPS.min(spec.train.steps.max(1));
        lab.benchmark.set(Benchmark::Running { done: 0, steps });
        worker_link::send(lab, &ToWorker::Benchmark { spec, steps });
    };
    let status = move || match lab.benchmark.get() {
        Benchmark::Idle => String::new(),
        Benchmark::Running { done: 0, .. } => "benchmark: loading and warming up (the runs wait)…".into(),
        Benchmark::Running { done, steps } => format!("benchmark: step {done} / {steps} (the runs wait)…"),
        Benchmark::Done(_) => String::new(),
    };
    let report = move || match lab.benchmark.get() {
        Benchmark::Done(r) => Some(r),
        _ => None,
    };
    view! {
        <section class="benchmark">
            <button data-testid="benchmark" on:click=start disabled=running
                title="train a fresh run of this experiment alone for a few steps and time it">
                "benchmark"
            </button>
            <span data-testid="benchmark-status">{status}</span>
            {move || report().map(|r| view! {
                <span data-testid="benchmark-result"
                    data-steps-per-s=r.steps_per_s.to_string()
                    data-dispatches=r.dispatches_per_step.to_string()
                    data-host-reads=r.host_reads_per_step.to_string()
                    data-workers=r.workers.to_string()
                    data-warmup-ms=r.warmup_ms.to_string()>
                    {report_text(&r, lab.first_step_ms.get())}
                </span>
            })}
        </section>
    }
}
