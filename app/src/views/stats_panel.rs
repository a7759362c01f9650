//! The run's numbers: state, step, losses, speed, learning rate, device.

use leptos::prelude::*;
use objlab_engine::protocol::RunState;

use crate::lab::{Lab, RunView};

/// `first_step`: the run trains but has not finished a step yet. That step can be long (on
/// WebGPU it compiles every kernel the model uses: seconds on a GPU, nearly a minute for baby
/// GPT on a software renderer), so it says so instead of "training" at step 0.
fn state_text(state: RunState, first_step: bool) -> &'static str {
    match state {
        RunState::Idle => "ready",
        RunState::Loading => "loading corpus and device…",
        RunState::Running if first_step => "starting: the first step…",
        RunState::Running => "training",
        RunState::Paused => "paused",
        RunState::Stopped => "stopped",
        RunState::Finished => "finished",
        RunState::Failed => "failed",
    }
}

/// The learning rate of the last step, or "—" before a run has taken one and for a run kept
/// from an earlier visit, which does not keep it (both showed "0.00e0", a rate of zero).
fn lr_text(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".into(), |r| format!("{r:.2e}"))
}

#[component]
pub fn StatsPanel(lab: Lab) -> impl IntoView {
    // The selected run's numbers (none before the first run).
    let run = move || lab.selected_run();
    let loss = |points: RwSignal<Vec<(usize, f32)>>, first: bool| {
        points.with(|p| if first { p.first() } else { p.last() }.map(|(_, l)| format!("{l:.4}")))
    };
    let last_train = move || run().and_then(|r| loss(r.train, false)).unwrap_or_else(|| "—".into());
    let first_train = move || run().and_then(|r| loss(r.train, true)).unwrap_or_default();
    // every digit of the last training loss, for tests that compare two runs (the text rounds)
    let exact_train = move || run().and_then(|r| r.train.with(|p| p.last().map(|(_, l)| l.to_string()))).unwrap_or_default();
    let last_val = move || run().and_then(|r| loss(r.val, false)).unwrap_or_else(|| "—".into());
    let number = move |f: fn(&RunView) -> f64| run().map_or(0.0, |r| f(&r));
    view! {
        <section class="stats">
            <div title="the first step waits for the device: on WebGPU it compiles every kernel the model uses">
                <span class="label">"state"</span>
                <span data-testid="state">{move || state_text(lab.state(), run().is_some_and(|r| r.step.get() == 0))}</span>
            </div>
            <div><span class="label">"step"</span>
                <span data-testid="step">{move || run().map_or(0, |r| r.step.get())}</span>
                <span class="of">{move || format!(" / {}", run().map_or(0, |r| r.steps.get()))}</span></div>
            <div><span class="label">"train loss"</span><span data-testid="train-loss" data-first=first_train data-exact=exact_train>{last_train}</span></div>
            <div><span class="label">"validation loss"</span><span data-testid="val-loss">{last_val}</span></div>
            <div><span class="label">"tokens/s"</span><span data-testid="tokens-per-s">{move || format!("{:.0}", number(|r| r.tokens_per_s.get()))}</span></div>
            <div><span class="label">"steps/s"</span><span data-testid="steps-per-s">{move || format!("{:.2}", number(|r| r.steps_per_s.get()))}</span></div>
            <div title="from opening the page to the first finished training step (loading the worker, the corpus and the device, compiling shaders), not counting the time the page waited for you to press Start">
                <span class="label">"first step after"</span>
                <span data-testid="first-step">{move || lab.first_step_ms.get().map(|ms| format!("{:.1} s", ms / 1000.0)).unwrap_or_else(|| "—".into())}</span>
            </div>
            <div><span class="label">"learning rate"</span><span data-testid="lr">{move || lr_text(run().filter(|r| r.step.get() > 0 && !r.restored).map(|r| r.learning_rate.get()))}</span></div>
            <div class="wide"><span class="label">"device"</span><span data-testid="device">{move || lab.device.get()}</span></div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::lr_text;

    #[test]
    fn the_learning_rate_is_a_dash_until_a_step_is_taken() {
        assert_eq!(lr_text(None), "—");
        assert_eq!(lr_text(Some(1e-3)), "1.00e-3");
    }
}
