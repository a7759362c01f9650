//! Experiment choices (preset, architecture, objective, device, size, text, seed) and the run buttons.
//! The objective list comes from the engine's registry; choices are mirrored into the URL.
//! The objective mixer with every parameter is in `objective_panel.rs`.

use leptos::prelude::*;
use objlab_engine::objectives::REGISTRY;
use objlab_engine::protocol::{RunState, ToWorker};
use objlab_engine::spec::{ExperimentSpec, presets};

use super::corpus_choice::CorpusChoice;
use super::model_size::ModelSize;
use crate::lab::Lab;
use crate::worker_link;

/// Applies one option to the experiment, or shows why it was refused.
fn set_option(lab: Lab, key: &str, value: &str) {
    lab.change(|spec| spec.set(key, value));
}

/// A number input bound to one spec option (checked in full by [`Lab::change`]).
#[component]
pub(super) fn NumberOption(
    lab: Lab,
    testid: &'static str,
    key: &'static str,
    label: &'static str,
    title: &'static str,
    value: fn(&ExperimentSpec) -> String,
) -> impl IntoView {
    view! {
        <label title=title>
            {label}
            <input data-testid=testid type="number" min="0" step="any" class="short"
                prop:value=move || value(&lab.shown())
                on:change=move |ev| set_option(lab, key, &event_target_value(&ev)) />
        </label>
    }
}

#[component]
pub fn Controls(lab: Lab) -> impl IntoView {
    let busy = move || lab.any_live();
    let can_pause = move || matches!(lab.state(), RunState::Running | RunState::Paused);
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
        // the user chose this experiment over the runs a shared link offered
        lab.linked.set(Vec::new());
        lab.errors.set(Vec::new());
        // a value refused earlier was repainted away: the run starts with what the fields show
        lab.control_error.set(None);
        lab.pending.set(None);
        if let Err(e) = lab.add_run(spec) {
            lab.push_error(format!("the run was not started: {e}"));
        }
    };
    let pause = move |_| {
        let message = if untrack(|| lab.state()) == RunState::Paused { ToWorker::Resume } else { ToWorker::Pause };
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
                    {presets().into_iter().map(|p| {
                        let n = p.name;
                        view! {
                            <option value=n title=p.description prop:selected=move || { let s = lab.shown(); s.preset == n && !s.resized() }>{n}</option>
                        }
                    }).collect_view()}
                    // sizes changed on the size line: choosing a preset restores its size
                    <option value="resized" disabled=true prop:selected=move || lab.shown().resized()>
                        {move || format!("{}, resized", lab.shown().preset)}
                    </option>
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
                    <option value="auto" prop:selected=move || device_value() == "auto">"WebGPU on a GPU, else CPU"</option>
                    <option value="gpu" prop:selected=move || device_value() == "gpu">"WebGPU"</option>
                    <option value="cpu" prop:selected=move || device_value() == "cpu">"CPU"</option>
                </select>
            </label>
            <ModelSize lab=lab />
            <CorpusChoice lab=lab />
            <NumberOption lab=lab testid="lr-choice" key="lr" label="Learning rate "
                title="AdamW's peak learning rate (warm-up, then cosine decay)" value=|s| s.train.learning_rate.to_string() />
            <NumberOption lab=lab testid="steps-choice" key="steps" label="Steps " title="optimiser steps of a run"
                value=|s| s.train.steps.to_string() />
            <NumberOption lab=lab testid="snapshot-every" key="snapshot_every" label="Snapshot every "
                title="steps between snapshots of the representations (projections, probe, CKA)"
                value=|s| s.train.snapshot_every.to_string() />
            <NumberOption lab=lab testid="seed" key="seed" label="Seed " title="the run's random seed (weights, batches, corruption)"
                value=|s| s.seed.to_string() />
            <NumberOption lab=lab testid="workers" key="workers" label="CPU workers (0 = one per core) "
                title="on the CPU, how many workers share each step's rows, each on its own core: 0 for one per core (up to 4), 1 for one worker alone, at most 8"
                value=|s| s.train.workers.to_string() />
            <details class="fault">
                <summary>"Fault injection"</summary>
                <NumberOption lab=lab testid="nan-at" key="nan_at" label="NaN loss at step (0 = off) "
                    title="make this run's loss NaN at a step, to see how a diverging run stops alone while the others go on"
                    value=|s| s.train.nan_at.to_string() />
                <NumberOption lab=lab testid="helper-fails-at" key="helper_fails_at" label="Helper workers crash at step (0 = off) "
                    title="on the CPU, crash the workers that share each step with the run's own at a step, to see the run go on alone"
                    value=|s| s.train.helper_fails_at.to_string() />
                <NumberOption lab=lab testid="lose-device-at" key="lose_device_at" label="Lose the GPU device after step (0 = off) "
                    title="on WebGPU, destroy the device after a step, as a driver reset would, to see what a lost GPU does to the runs"
                    value=|s| s.train.lose_device_at.to_string() />
                <NumberOption lab=lab testid="capture-fails" key="capture_fails" label="Captured steps that fail to record (0 = off) "
                    title="on WebGPU, make this many of the run's first captured steps fail while they record, to see the run start over from its seed and go on (after two, without capture)"
                    value=|s| s.train.capture_fails.to_string() />
            </details>
            <div class="buttons">
                <button data-testid="start" on:click=start prop:disabled=busy>"Start"</button>
                <button data-testid="pause" on:click=pause prop:disabled=move || !can_pause()>
                    {move || if lab.state() == RunState::Paused { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="stop" on:click=stop prop:disabled=move || !busy()>"Stop"</button>
                <button data-testid="reset" on:click=reset>"Reset"</button>
            </div>
        </section>
    }
}
