//! Experiment choices (preset, architecture, objective, device, seed) and the run buttons.
//! The objective list comes from the engine's registry; choices are mirrored into the URL.
//! The objective mixer with every parameter is in `objective_panel.rs`.

use leptos::prelude::*;
use objlab_engine::objectives::REGISTRY;
use objlab_engine::protocol::{RunState, ToWorker};
use objlab_engine::spec::preset_names;

use crate::lab::{Lab, write_url};
use crate::worker_link;

/// Applies one option to the experiment, or shows why it was refused.
fn set_option(lab: Lab, key: &str, value: &str) {
    lab.change(|spec| spec.set(key, value));
}

#[component]
pub fn Controls(lab: Lab) -> impl IntoView {
    let busy = move || lab.any_live();
    let can_pause = move || matches!(lab.state.get(), RunState::Running | RunState::Paused);
    // Start: a fresh workspace whose only run is the experiment the controls show.
    let start = move |_| {
        let spec = lab.spec.get_untracked();
        if let Err(e) = spec.validate() {
            lab.push_error(e);
            return;
        }
        if !lab.runs.with_untracked(Vec::is_empty) {
            lab.reset();
        }
        write_url(&spec);
        lab.errors.set(Vec::new());
        lab.pending.set(None);
        if let Err(e) = lab.add_run(spec) {
            lab.push_error(e);
        }
    };
    let pause = move |_| {
        let message = if lab.state.get_untracked() == RunState::Paused { ToWorker::Resume } else { ToWorker::Pause };
        worker_link::send(lab, &message);
    };
    let stop = move |_| worker_link::send(lab, &ToWorker::Stop);
    let reset = move |_| lab.reset();
    let objective_value = move || {
        let spec = lab.shown();
        let live: Vec<_> = spec.runs[0].objectives.iter().filter(|o| o.weight > 0.0).collect();
        if live.len() == 1 { live[0].id.clone() } else { "mix".to_string() }
    };
    let arch_value = move || lab.shown().model.arch.name();
    let device_value = move || lab.spec.get().device.name();
    view! {
        <section class="controls">
            <label>
                "Model "
                <select data-testid="preset"
                    on:change=move |ev| set_option(lab, "preset", &event_target_value(&ev))>
                    {preset_names().into_iter().map(|n| view! {
                        <option value=n prop:selected=move || lab.shown().preset == n>{n}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>
                "Objective "
                <select data-testid="objective"
                    on:change=move |ev| set_option(lab, "objective", &event_target_value(&ev))>
                    {REGISTRY.iter().map(|o| {
                        let info = o.info();
                        view! { <option value=info.id title=info.definition prop:selected=move || objective_value() == info.id>{info.name}</option> }
                    }).collect_view()}
                    <option value="mix" disabled=true prop:selected=move || objective_value() == "mix">"mixture (see below)"</option>
                </select>
            </label>
            <label title="UL2: the architecture is chosen apart from the objective">
                "Architecture "
                <select data-testid="arch"
                    on:change=move |ev| set_option(lab, "arch", &event_target_value(&ev))>
                    <option value="decoder" prop:selected=move || arch_value() == "decoder">"decoder (mask from the objective)"</option>
                    <option value="encoder_decoder" prop:selected=move || arch_value() == "encoder_decoder">"encoder–decoder"</option>
                </select>
            </label>
            <label>
                "Device "
                <select data-testid="device-choice" prop:disabled=busy
                    on:change=move |ev| set_option(lab, "device", &event_target_value(&ev))>
                    <option value="auto" prop:selected=move || device_value() == "auto">"WebGPU if available"</option>
                    <option value="gpu" prop:selected=move || device_value() == "gpu">"WebGPU"</option>
                    <option value="cpu" prop:selected=move || device_value() == "cpu">"CPU"</option>
                </select>
            </label>
            <label title="AdamW's peak learning rate (warm-up, then cosine decay)">
                "Learning rate "
                <input data-testid="lr-choice" type="number" min="0" max="1" step="any" class="short"
                    prop:value=move || lab.shown().train.learning_rate.to_string()
                    on:change=move |ev| set_option(lab, "lr", &event_target_value(&ev)) />
            </label>
            <label>
                "Steps "
                <input data-testid="steps-choice" type="number" min="1" class="short"
                    prop:value=move || lab.shown().train.steps.to_string()
                    on:change=move |ev| set_option(lab, "steps", &event_target_value(&ev)) />
            </label>
            <label title="steps between snapshots of the representations (projections, probe, CKA)">
                "Snapshot every "
                <input data-testid="snapshot-every" type="number" min="1" class="short"
                    prop:value=move || lab.shown().train.snapshot_every.to_string()
                    on:change=move |ev| set_option(lab, "snapshot_every", &event_target_value(&ev)) />
                " steps"
            </label>
            <label>
                "Seed "
                <input data-testid="seed" type="number" min="0" class="short" prop:value=move || lab.shown().seed.to_string()
                    on:change=move |ev| set_option(lab, "seed", &event_target_value(&ev)) />
            </label>
            <details class="fault">
                <summary>"Fault injection"</summary>
                <label title="make this run's loss NaN at a step, to see how a diverging run stops alone while the others go on">
                    "NaN loss at step "
                    <input data-testid="nan-at" type="number" min="0" class="short"
                        prop:value=move || lab.shown().train.nan_at.to_string()
                        on:change=move |ev| set_option(lab, "nan_at", &event_target_value(&ev)) />
                    " (0 = off)"
                </label>
            </details>
            <div class="buttons">
                <button data-testid="start" on:click=start prop:disabled=busy>"Start"</button>
                <button data-testid="pause" on:click=pause prop:disabled=move || !can_pause()>
                    {move || if lab.state.get() == RunState::Paused { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="stop" on:click=stop prop:disabled=move || !busy()>"Stop"</button>
                <button data-testid="reset" on:click=reset>"Reset"</button>
            </div>
        </section>
    }
}
