//! The workspace's runs: add the experiment the controls show as a new run, and per run its
//! label (what differs from the others), state, progress, speed, a marker when it stopped
//! alone, and pause / duplicate / remove / show-hide. Clicking a run's label selects it for the
//! single-run panels. The device's aggregate throughput is the sum of the runs' steps/s.

use leptos::prelude::*;
use objlab_engine::protocol::{RunState, ToWorker};
use objlab_engine::spec::{ExperimentSpec, run_labels};

use super::share_link::ShareLink;
use crate::lab::{Lab, RunView, with_next_free_seed};
use crate::worker_link;

/// `first_step`: training, but no step finished yet (the first compiles the device's kernels).
fn state_word(state: RunState, first_step: bool) -> &'static str {
    match state {
        RunState::Idle => "ready",
        RunState::Loading => "loading",
        RunState::Running if first_step => "starting",
        RunState::Running => "training",
        RunState::Paused => "paused",
        RunState::Stopped => "stopped",
        RunState::Finished => "finished",
        RunState::Failed => "stopped: failed",
    }
}

#[component]
fn RunRow(lab: Lab, run: RunView) -> impl IntoView {
    let id = run.id;
    let label = move || lab.labels().into_iter().find(|(r, _)| *r == id).map(|(_, l)| l).unwrap_or_default();
    let pause = move |_| {
        let message = if run.state.get_untracked() == RunState::Paused { ToWorker::ResumeRun { run: id } } else { ToWorker::PauseRun { run: id } };
        worker_link::send(lab, &message);
    };
    let duplicate = move |_| {
        let existing: Vec<ExperimentSpec> = lab.runs.with_untracked(|runs| runs.iter().map(|r| r.spec.get_value()).collect());
        let spec = with_next_free_seed(&run.spec.get_value(), &existing);
        if let Err(e) = lab.add_run(spec) {
            lab.push_error(format!("the run was not added: {e}"));
        }
    };
    // a kept run: the same experiment trained anew in its place (the same seed gives the
    // same curve, and this time weights to read)
    let retrain = move |_| {
        if let Err(e) = lab.retrain(id) {
            lab.push_error(format!("the run was not trained again: {e}"));
        }
    };
    view! {
        <tr data-testid="run-row" data-run=id.to_string() data-state=move || state_word(run.state.get(), run.step.get() == 0)
            class:selected=move || lab.selected.get() == Some(id)>
            <td>
                <input type="checkbox" data-testid="run-visible" title="show this run's curves"
                    prop:checked=move || run.visible.get() on:change=move |_| run.visible.update(|v| *v = !*v) />
            </td>
            <td><span class="swatch" style=format!("background:{}", run.colour)></span></td>
            <td class="run-label">
                <a href="#" data-testid="run-select" title="show this run in the panels below"
                    on:click=move |ev| { ev.prevent_default(); lab.select(id); }>{label}</a>
                <Show when=move || run.failure.get().is_some()>
                    <span class="failed-marker" data-testid="run-failed" title=move || run.failure.get().unwrap_or_default()>
                        "⚠ " {move || run.failure.get().unwrap_or_default()}
                    </span>
                </Show>
            </td>
            <td data-testid="run-state" title=run.restored.then_some("kept from your last visit: its curves, not its weights (duplicate it to train again)")>
                {move || state_word(run.state.get(), run.step.get() == 0)}
                {run.restored.then_some(view! { <span class="kept" data-testid="run-kept">" (last visit)"</span> })}
            </td>
            <td data-testid="run-step">{move || format!("{} / {}", run.step.get(), run.steps.get())}</td>
            <td data-testid="run-speed">{move || format!("{:.2} steps/s", run.steps_per_s.get())}</td>
            <td class="run-buttons">
                {if run.restored {
                    view! {
                        <button data-testid="run-retrain" on:click=retrain
                            title="its weights were not kept: train the same experiment, same seed, from the start (in its place)">"train again"</button>
                    }.into_any()
                } else {
                    view! {
                        <button data-testid="run-pause" on:click=pause
                            prop:disabled=move || !matches!(run.state.get(), RunState::Running | RunState::Paused)>
                            {move || if run.state.get() == RunState::Paused { "resume" } else { "pause" }}
                        </button>
                    }.into_any()
                }}
                <button data-testid="run-duplicate" title="add the same experiment with the next seed no run has" on:click=duplicate>"duplicate"</button>
                <button data-testid="run-remove" on:click=move |_| lab.remove_run(id)>"remove"</button>
            </td>
        </tr>
    }
}

/// The device's steps/s over its running runs, as the page shows it. Summed from +0.0: Rust's
/// float `sum` starts from −0.0, which an empty workspace showed as "-0.00".
fn throughput_text(rates: impl Iterator<Item = f64>) -> String {
    format!("{:.2}", rates.fold(0.0, |total, rate| total + rate))
}

/// What the notice of the runs an earlier visit kept says: how many, what differs between
/// them, and how long ago they were kept (`age_ms`).
fn saved_text(runs: &[ExperimentSpec], age_ms: f64) -> String {
    let labels = run_labels(&runs.iter().collect::<Vec<_>>());
    let minutes = (age_ms / 60_000.0).max(0.0).round() as u64;
    let ago = match minutes {
        0 => "just now".to_string(),
        1 => "a minute ago".to_string(),
        m if m < 120 => format!("{m} minutes ago"),
        m if m < 48 * 60 => format!("{} hours ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    };
    let what = match runs.len() {
        1 => format!("a run's curves ({})", labels[0]),
        n => format!("{n} runs' curves ({})", labels.join(" · ")),
    };
    format!("This browser kept {what} from your last visit, {ago}.")
}

/// What the notice of a shared workspace's runs says: where they come from (the address, or
/// the example titled `from`), how many, and what differs between them.
fn linked_text(runs: &[ExperimentSpec], from: Option<&str>) -> String {
    let labels = run_labels(&runs.iter().collect::<Vec<_>>());
    let source = from.map_or_else(|| "This link".to_string(), |title| format!("The example “{title}”"));
    match runs.len() {
        1 => format!("{source} holds a run: {}.", labels[0]),
        n => format!("{source} holds {n} runs side by side: {}.", labels.join(" · ")),
    }
}

#[component]
pub fn RunList(lab: Lab) -> impl IntoView {
    let throughput = move || {
        lab.runs.with(|runs| throughput_text(runs.iter().filter(|r| r.state.get() == RunState::Running).map(|r| r.steps_per_s.get())))
    };
    view! {
        <section class="runs">
            <h2>"Runs side by side"</h2>
            <p class="hint">
                "Each run is an objective mix, an architecture and a seed (and the sizes above). "
                "Runs take turns on the device, so their curves advance together; a run's numbers are the same alone or beside others."
            </p>
            <Show when=move || lab.linked.with(|l| !l.is_empty())>
                <p class="linked" data-testid="linked-runs">
                    {move || linked_text(&lab.linked.get(), lab.linked_from.get())}" "
                    <button data-testid="start-linked" on:click=move |_| lab.start_linked()>"Start them"</button>
                </p>
            </Show>
            <Show when=move || lab.saved.with(|s| s.is_some())>
                <p class="linked" data-testid="saved-runs">
                    {move || lab.saved.get().map(|w| {
                        let specs: Vec<ExperimentSpec> = w.runs.iter().filter_map(|r| r.spec()).collect();
                        saved_text(&specs, js_sys::Date::now() - w.saved_at)
                    })}" "
                    <button data-testid="show-saved" on:click=move |_| lab.show_saved()>"Show them"</button>
                    <button data-testid="forget-saved" on:click=move |_| lab.forget_saved()>"Forget them"</button>
                </p>
            </Show>
            <div class="buttons">
                <button data-testid="add-run" on:click=move |_| lab.add_shown_run()
                    title="add the experiment set above as a new run beside the others">"Add run"</button>
                <ShareLink lab=lab />
                <span class="throughput">"device throughput: "
                    <span data-testid="throughput">{throughput}</span>" steps/s"</span>
            </div>
            <table class="run-list">
                <For each=move || lab.runs.get() key=|r| r.id let:run>
                    <RunRow lab=lab run=run />
                </For>
            </table>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::{linked_text, saved_text, throughput_text};

    #[test]
    fn kept_runs_are_named_with_their_age() {
        let run = |q: &str| objlab_engine::spec::ExperimentSpec::from_query(q).0;
        assert_eq!(
            saved_text(&[run("objective=causal_lm"), run("objective=masked_lm")], 3.0 * 3_600_000.0),
            "This browser kept 2 runs' curves (causal_lm · masked_lm) from your last visit, 3 hours ago."
        );
        assert_eq!(saved_text(&[run("objective=masked_lm")], 1000.0), "This browser kept a run's curves (masked_lm) from your last visit, just now.");
    }

    #[test]
    fn a_links_runs_are_named_by_what_differs() {
        let run = |q: &str| objlab_engine::spec::ExperimentSpec::from_query(q).0;
        assert_eq!(
            linked_text(&[run("objective=causal_lm"), run("objective=masked_lm")], None),
            "This link holds 2 runs side by side: causal_lm · masked_lm."
        );
        assert_eq!(linked_text(&[run("objective=masked_lm")], None), "This link holds a run: masked_lm.");
        assert_eq!(
            linked_text(&[run("seed=1"), run("seed=2")], Some("How much is the seed?")),
            "The example “How much is the seed?” holds 2 runs side by side: seed 1 · seed 2."
        );
    }

    #[test]
    fn no_running_run_shows_zero_not_minus_zero() {
        assert_eq!(throughput_text(std::iter::empty()), "0.00");
        assert_eq!(throughput_text([1.5, 2.25].into_iter()), "3.75");
    }
}
