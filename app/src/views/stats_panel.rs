//! The run's numbers: state, step, losses, speed, learning rate, device.

use leptos::prelude::*;
use objlab_engine::protocol::RunState;

use crate::lab::Lab;

fn state_text(state: RunState) -> &'static str {
    match state {
        RunState::Idle => "ready",
        RunState::Loading => "loading corpus and device…",
        RunState::Running => "training",
        RunState::Paused => "paused",
        RunState::Stopped => "stopped",
        RunState::Finished => "finished",
        RunState::Failed => "failed",
    }
}

#[component]
pub fn StatsPanel(lab: Lab) -> impl IntoView {
    let last_train = move || lab.train.with(|t| t.last().map(|(_, l)| format!("{l:.4}"))).unwrap_or_else(|| "—".into());
    let first_train = move || lab.train.with(|t| t.first().map(|(_, l)| format!("{l:.4}"))).unwrap_or_default();
    let last_val = move || lab.val.with(|v| v.last().map(|(_, l)| format!("{l:.4}"))).unwrap_or_else(|| "—".into());
    view! {
        <section class="stats">
            <div><span class="label">"state"</span><span data-testid="state">{move || state_text(lab.state.get())}</span></div>
            <div><span class="label">"step"</span>
                <span data-testid="step">{move || lab.step.get()}</span>
                <span class="of">{move || format!(" / {}", lab.steps.get())}</span></div>
            <div><span class="label">"train loss"</span><span data-testid="train-loss" data-first=first_train>{last_train}</span></div>
            <div><span class="label">"validation loss"</span><span data-testid="val-loss">{last_val}</span></div>
            <div><span class="label">"tokens/s"</span><span data-testid="tokens-per-s">{move || format!("{:.0}", lab.tokens_per_s.get())}</span></div>
            <div><span class="label">"steps/s"</span><span data-testid="steps-per-s">{move || format!("{:.2}", lab.steps_per_s.get())}</span></div>
            <div title="from opening the page to the first finished training step (loading the corpus, the device, compiling shaders)">
                <span class="label">"first step after"</span>
                <span data-testid="first-step">{move || lab.first_step_ms.get().map(|ms| format!("{:.1} s", ms / 1000.0)).unwrap_or_else(|| "—".into())}</span>
            </div>
            <div><span class="label">"learning rate"</span><span data-testid="lr">{move || format!("{:.2e}", lab.learning_rate.get())}</span></div>
            <div class="wide"><span class="label">"device"</span><span data-testid="device">{move || lab.device.get()}</span></div>
        </section>
    }
}
