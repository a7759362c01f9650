//! The "benchmark" button: times a fresh run of the experiment the controls show, alone on
//! its device, and reports the figures that say where a small model's time goes — steps/s,
//! GPU dispatches and host round trips per step — beside the first-step latency; then times
//! the loss chart's redraw at the largest load it is meant for (6 runs × 10,000 points).

use leptos::prelude::*;
use objlab_engine::protocol::{BenchmarkReport, ToWorker};
use objlab_engine::profile::StepProfile;

use super::loss_chart::{RedrawTiming, time_redraws};
use crate::lab::{Benchmark, Lab};
use crate::worker_link;

/// Timed steps: enough to average over, few enough for a slow device.
const STEPS: usize = 20;
/// The loss chart's load to time (issue 4: "6 runs × 10,000 points must redraw without jank"),
/// and its redraws to time.
const CHART_RUNS: usize = 6;
const CHART_POINTS: usize = 10_000;
const CHART_REDRAWS: usize = 24;
/// A frame at 60 Hz: a redraw within it does not stall the page.
const FRAME_MS: f64 = 1000.0 / 60.0;

fn redraw_text(t: &RedrawTiming) -> String {
    let verdict = if t.worst_ms <= FRAME_MS { "within" } else { "longer than" };
    format!(
        "loss chart: {} runs × {} points redraw in {:.1} ms (median of {}; slowest {:.1} ms: {verdict} a {FRAME_MS:.1} ms frame)",
        t.runs, t.points, t.median_ms, t.redraws, t.worst_ms
    )
}

fn report_text(r: &BenchmarkReport, first_step_ms: Option<f64>) -> String {
    let dispatches = if r.dispatches_per_step > 0.0 {
        let host = r.host_ms_per_step.map(|ms| format!(" ({ms:.1} ms of host work to launch them)")).unwrap_or_default();
        // (a second recording means the first failed and the run started over: worth knowing
        // when a figure looks off)
        let recordings = if r.capture_recordings > 1 { format!(", captured at try {} (a failed recording starts a run over)", r.capture_recordings) } else { String::new() };
        let replayed = if r.replayed_per_step > 0.0 { format!(", {:.0} of them replayed from a captured graph", r.replayed_per_step) } else { String::new() };
        format!("{:.0} GPU dispatches per step{replayed}{host}{recordings}", r.dispatches_per_step)
    } else {
        "no GPU dispatches (CPU backend)".to_string()
    };
    let workers = if r.workers > 1 { format!(" ({} workers)", r.workers) } else { String::new() };
    let first = first_step_ms.map(|ms| format!(" · first step {:.1} s after opening the page (less the wait for Start)", ms / 1000.0)).unwrap_or_default();
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

/// Where a step's time went (CPU backend) with `workers` sharing it, in the order the parts run.
fn profile_text(p: &StepProfile, workers: usize) -> String {
    // one helper, or several (whose slowest the profile times)
    let (helper, its, computed) = if workers > 2 {
        ("the helpers", "their", "the slowest helper computed its share")
    } else {
        ("the helper", "its", "the helper computed its half")
    };
    let mut parts = vec![format!("forward {:.1}", p.forward_ms), format!("backward {:.1}", p.backward_ms)];
    if p.helper_ms > 0.0 || p.wait_ms > 0.0 {
        // a split step: this worker's share beside the helpers', then the exchange
        parts.insert(0, format!("sending {:.1}", p.send_ms));
        parts.push(format!("waiting for {helper} {:.1}", p.wait_ms));
        parts.push(format!("adding {its} gradients {:.1}", p.add_ms));
    }
    parts.push(format!("update {:.1}", p.update_ms));
    let mut text = format!("per step: {} ms", parts.join(" · "));
    if p.helper_ms > 0.0 && p.messaging_ms > 0.0 {
        text += &format!(" (meanwhile {computed} in {:.1} ms; its messages took {:.1})", p.helper_ms, p.messaging_ms);
    } else if p.helper_ms > 0.0 {
        // each job went to the helper with the step before (engine: `HelperLink::sends_ahead`),
        // so its messages' time is not seen from here
        text += &format!(" (meanwhile {computed} in {:.1} ms; each job was sent with the step before)", p.helper_ms);
    }
    text
}

#[component]
pub fn BenchmarkPanel(lab: Lab) -> impl IntoView {
    let running = move || matches!(lab.benchmark.get(), Benchmark::Running { .. });
    // The chart's redraw is timed once the worker's report is in: timed meanwhile, the main
    // thread would take a core from the run being timed.
    let redraw = RwSignal::new(None::<RedrawTiming>);
    let timing_redraw = RwSignal::new(false);
    Effect::new(move |_| {
        if matches!(lab.benchmark.get(), Benchmark::Done(_)) && !timing_redraw.get_untracked() && redraw.get_untracked().is_none() {
            timing_redraw.set(true);
            leptos::task::spawn_local(async move {
                redraw.set(time_redraws(CHART_RUNS, CHART_POINTS, CHART_REDRAWS).await);
                timing_redraw.set(false);
            });
        }
    });
    let start = move |_| {
        redraw.set(None);
        let spec = lab.spec.get_untracked();
        let steps = STEPS.min(spec.train.steps.max(1));
        lab.benchmark.set(Benchmark::Running { done: 0, steps });
        worker_link::send(lab, &ToWorker::Benchmark { spec, steps });
    };
    let status = move || match lab.benchmark.get() {
        Benchmark::Idle => String::new(),
        Benchmark::Running { done: 0, .. } => "benchmark: loading and warming up (the runs wait)…".into(),
        Benchmark::Running { done, steps } => format!("benchmark: step {done} / {steps} (the runs wait)…"),
        Benchmark::Done(_) if timing_redraw.get() => format!("benchmark: timing the loss chart's redraw with {CHART_RUNS} runs × {CHART_POINTS} points…"),
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
                    data-warmup-ms=r.warmup_ms.to_string()
                    data-host-ms=r.host_ms_per_step.map(|ms| ms.to_string())
                    data-replayed=r.replayed_per_step.to_string()
                    data-recordings=r.capture_recordings.to_string()
                    data-profile=r.profile.as_ref().and_then(|p| serde_json::to_string(p).ok())>
                    {report_text(&r, lab.first_step_ms.get())}
                    {r.profile.as_ref().map(|p| view! { <br/><span data-testid="benchmark-profile">{profile_text(p, r.workers)}</span> })}
                </span>
            })}
            {move || redraw.get().map(|t| view! {
                <br/>
                <span data-testid="chart-redraw" data-median-ms=t.median_ms.to_string() data-worst-ms=t.worst_ms.to_string()
                    data-runs=t.runs.to_string() data-points=t.points.to_string()>
                    {redraw_text(&t)}
                </span>
            })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_report_names_the_host_work_beside_the_dispatches() {
        let r = BenchmarkReport {
            preset: "tiny".into(),
            device: "google swiftshader".into(),
            steps: 20,
            steps_per_s: 1.97,
            tokens_per_s: 505.0,
            tflops: 0.0,
            warmup_ms: 8600.0,
            dispatches_per_step: 69.0,
            host_reads_per_step: 1.0,
            workers: 1,
            profile: None,
            host_ms_per_step: Some(8.04),
            replayed_per_step: 0.0,
            capture_recordings: 0,
        };
        let text = report_text(&r, None);
        assert!(text.contains("69 GPU dispatches per step (8.0 ms of host work to launch them)"), "{text}");
        let captured = BenchmarkReport { replayed_per_step: 47.0, host_ms_per_step: Some(1.5), ..r.clone() };
        let text = report_text(&captured, None);
        assert!(text.contains("69 GPU dispatches per step, 47 of them replayed from a captured graph (1.5 ms of host work to launch them)"), "{text}");
        let second = BenchmarkReport { capture_recordings: 2, ..captured.clone() };
        let text = report_text(&second, None);
        assert!(text.contains("47 of them replayed from a captured graph (1.5 ms of host work to launch them), captured at try 2 (a failed"), "{text}");
        let cpu = BenchmarkReport { dispatches_per_step: 0.0, host_ms_per_step: None, ..r };
        let text = report_text(&cpu, None);
        assert!(text.contains("no GPU dispatches (CPU backend) ·") && !text.contains("host work"), "{text}");
    }

    #[test]
    fn the_charts_redraw_is_told_against_a_frame() {
        let t = RedrawTiming { runs: 6, points: 10_000, redraws: 24, median_ms: 3.04, worst_ms: 5.0 };
        assert_eq!(redraw_text(&t), "loss chart: 6 runs × 10000 points redraw in 3.0 ms (median of 24; slowest 5.0 ms: within a 16.7 ms frame)");
        let slow = RedrawTiming { worst_ms: 20.0, ..t };
        assert!(redraw_text(&slow).contains("slowest 20.0 ms: longer than a 16.7 ms frame)"));
    }

    #[test]
    fn a_split_steps_profile_names_the_helpers_part() {
        let one = StepProfile { steps: 20, forward_ms: 40.0, backward_ms: 60.0, update_ms: 8.0, ..Default::default() };
        assert_eq!(profile_text(&one, 1), "per step: forward 40.0 · backward 60.0 · update 8.0 ms");
        let split = StepProfile { send_ms: 2.0, wait_ms: 15.0, helper_ms: 70.0, messaging_ms: 5.0, add_ms: 3.0, ..one };
        let text = profile_text(&split, 2);
        assert!(text.starts_with("per step: sending 2.0 · forward 40.0 · backward 60.0 · waiting for the helper 15.0"), "{text}");
        assert!(text.ends_with("(meanwhile the helper computed its half in 70.0 ms; its messages took 5.0)"), "{text}");
        let ahead = StepProfile { messaging_ms: 0.0, ..split };
        assert!(profile_text(&ahead, 2).ends_with("(meanwhile the helper computed its half in 70.0 ms; each job was sent with the step before)"));
        // with more helpers, their slowest
        let text = profile_text(&ahead, 4);
        assert!(text.contains("waiting for the helpers 15.0 · adding their gradients 3.0"), "{text}");
        assert!(text.ends_with("(meanwhile the slowest helper computed its share in 70.0 ms; each job was sent with the step before)"), "{text}");
    }
}
