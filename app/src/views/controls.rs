//! Experiment choices (preset, objective, device, seed) and the run buttons.
//! The objective list comes from the engine's registry; choices are mirrored into the URL.

use leptos::prelude::*;
use objlab_engine::objectives::REGISTRY;
use objlab_engine::protocol::{RunState, ToWorker};
use objlab_engine::spec::{DeviceChoice, ExperimentSpec, preset_names};

use crate::lab::Lab;
use crate::worker_link;

/// Writes the experiment's choices into the page address, so the link reproduces it.
fn write_url(spec: &ExperimentSpec) {
    let objective: Vec<String> = spec.runs[0]
        .objectives
        .iter()
        .map(|o| if o.weight == 1.0 { o.id.clone() } else { format!("{}={}", o.id, o.weight) })
        .collect();
    let device = DeviceChoice::NAMES[[DeviceChoice::Auto, DeviceChoice::Gpu, DeviceChoice::Cpu]
        .iter()
        .position(|d| *d == spec.device)
        .unwrap_or(0)];
    let query = format!(
        "?preset={}&objective={}&device={device}&seed={}&steps={}",
        spec.preset,
        objective.join(","),
        spec.seed,
        spec.train.steps
    );
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query));
    }
}

/// Applies one option to the experiment, or shows why it was refused.
fn set_option(lab: Lab, key: &str, value: &str) {
    let mut spec = lab.spec.get_untracked();
    match spec.set(key, value).and_then(|_| spec.validate()) {
        Ok(()) => {
            write_url(&spec);
            lab.spec.set(spec);
        }
        Err(e) => lab.push_error(e),
    }
}

#[component]
pub fn Controls(lab: Lab) -> impl IntoView {
    let busy = move || matches!(lab.state.get(), RunState::Loading | RunState::Running | RunState::Paused);
    let can_pause = move || matches!(lab.state.get(), RunState::Running | RunState::Paused);
    let start = move |_| {
        let spec = lab.spec.get_untracked();
        if let Err(e) = spec.validate() {
            lab.push_error(e);
            return;
        }
        write_url(&spec);
        lab.clear_run();
        lab.errors.set(Vec::new());
        lab.steps.set(spec.train.steps);
        lab.state.set(RunState::Loading);
        worker_link::send(lab, &ToWorker::Start { spec });
    };
    let pause = move |_| {
        let message = if lab.state.get_untracked() == RunState::Paused { ToWorker::Resume } else { ToWorker::Pause };
        worker_link::send(lab, &message);
    };
    let stop = move |_| worker_link::send(lab, &ToWorker::Stop);
    let reset = move |_| {
        // A crashed worker is replaced; a live one forgets its run.
        if lab.state.get_untracked() == RunState::Failed {
            worker_link::connect(lab);
        } else {
            worker_link::send(lab, &ToWorker::Reset);
        }
        lab.state.set(RunState::Idle);
        lab.clear_run();
        lab.errors.set(Vec::new());
        lab.device.set("not started".into());
    };
    let objective_value = move || lab.spec.get().runs[0].objectives.first().map(|o| o.id.clone()).unwrap_or_default();
    let device_value = move || match lab.spec.get().device {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Gpu => "gpu",
        DeviceChoice::Cpu => "cpu",
    };
    view! {
        <section class="controls">
            <label>
                "Model "
                <select data-testid="preset" prop:disabled=busy
                    on:change=move |ev| set_option(lab, "preset", &event_target_value(&ev))>
                    {preset_names().into_iter().map(|n| view! {
                        <option value=n prop:selected=move || lab.spec.get().preset == n>{n}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>
                "Objective "
                <select data-testid="objective" prop:disabled=busy
                    on:change=move |ev| set_option(lab, "objective", &event_target_value(&ev))>
                    {REGISTRY.iter().map(|o| {
                        let info = o.info();
                        view! { <option value=info.id title=info.idea prop:selected=move || objective_value() == info.id>{info.name}</option> }
                    }).collect_view()}
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
            <label>
                "Seed "
                <input data-testid="seed" type="number" min="0" prop:value=move || lab.spec.get().seed.to_string()
                    prop:disabled=busy on:change=move |ev| set_option(lab, "seed", &event_target_value(&ev)) />
            </label>
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
