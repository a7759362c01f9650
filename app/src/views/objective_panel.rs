//! The run's objective as a mixture: one weight slider per objective of the registry, and the
//! parameters of every objective in the mix as controls built from their declarations (no
//! code here knows any particular objective). Out-of-range values are refused with the valid
//! range; a mixture whose weights are all zero is refused; changing the objective of a running
//! run asks to reset it first.

use leptos::prelude::*;
use objlab_engine::objectives::{ObjectiveInfo, ParamKind, ParamValue, Params, REGISTRY, param_value};
use objlab_engine::spec::{ExperimentSpec, ObjectiveChoice};

use crate::lab::Lab;

/// Sets objective `id`'s weight in the first run (adding it with default parameters).
/// Zero-weight entries are dropped once another objective has weight, so the URL stays short.
fn set_weight(spec: &mut ExperimentSpec, id: &str, weight: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&weight) {
        return Err(format!("weight of {id} = {weight} is out of range: valid range is 0 to 1"));
    }
    let mix = &mut spec.runs[0].objectives;
    match mix.iter_mut().find(|o| o.id == id) {
        Some(o) => o.weight = weight,
        None => mix.push(ObjectiveChoice { id: id.to_string(), weight, params: Default::default() }),
    }
    if mix.iter().any(|o| o.weight > 0.0) {
        mix.retain(|o| o.weight > 0.0);
    }
    Ok(())
}

fn weight_of(spec: &ExperimentSpec, id: &str) -> f64 {
    spec.runs[0].objectives.iter().find(|o| o.id == id).map(|o| o.weight).unwrap_or(0.0)
}

fn param_text(spec: &ExperimentSpec, info: &ObjectiveInfo, key: &str) -> String {
    let no_params = Params::new();
    let params = spec.runs[0].objectives.iter().find(|o| o.id == info.id).map(|o| &o.params).unwrap_or(&no_params);
    match param_value(info, params, key) {
        ParamValue::Number(x) => format!("{x}"),
        ParamValue::Text(t) => t,
    }
}

/// The controls of one objective's parameters.
#[component]
fn ParamControls(lab: Lab, info: &'static ObjectiveInfo) -> impl IntoView {
    info.params
        .iter()
        .map(|p| {
            let key = p.key;
            let testid = format!("param-{}-{}", info.id, key);
            let set = move |value: String| lab.change(|spec| spec.set(&format!("{}.{key}", info.id), &value));
            let value = move || param_text(&lab.shown(), info, key);
            let control = match p.kind {
                ParamKind::Number { min, max, step, .. } => view! {
                    <input type="range" min=min max=max step=step prop:value=value aria-label=p.label
                        on:change=move |ev| set(event_target_value(&ev)) />
                    <input data-testid=testid type="number" min=min max=max step=step prop:value=value aria-label=p.label
                        on:change=move |ev| set(event_target_value(&ev)) />
                    <span class="range">{format!("{min}–{max}")}</span>
                }
                .into_any(),
                ParamKind::Words { .. } => view! {
                    <input data-testid=testid type="text" class="words" prop:value=value
                        on:change=move |ev| set(event_target_value(&ev)) />
                }
                .into_any(),
            };
            view! { <label class="param" title=p.help>{p.label}" "{control}</label> }
        })
        .collect_view()
}

#[component]
pub fn ObjectivePanel(lab: Lab) -> impl IntoView {
    let apply_and_reset = move |_| lab.reset();
    let keep = move |_| lab.pending.set(None);
    view! {
        <section class="objectives">
            <h2>"Objective mix"</h2>
            <p class="hint">"A run's objective is a weighted sum: give several objectives a weight to mix them (as UL2 and CodeT5+ do)."</p>
            <Show when=move || lab.pending.get().is_some()>
                <div class="confirm" data-testid="confirm-reset">
                    "The runs were started with another experiment. Changing it needs a fresh start: reset the runs and apply the change, or add it as a new run beside them?"
                    <button data-testid="apply-reset" on:click=apply_and_reset>"Reset and apply"</button>
                    <button data-testid="add-as-run" on:click=move |_| lab.add_shown_run()>"Add as a new run"</button>
                    <button data-testid="keep-run" on:click=keep>"Keep the current runs"</button>
                </div>
            </Show>
            <p class="control-error" data-testid="objective-error">{move || lab.control_error.get().unwrap_or_default()}</p>
            <table>
                {REGISTRY.iter().map(|o| {
                    let info = o.info();
                    let weight = move || weight_of(&lab.shown(), info.id);
                    let set = move |ev| {
                        let text = event_target_value(&ev);
                        lab.change(|spec| {
                            let w: f64 = text.parse().map_err(|_| format!("weight of {} = {text:?} is not a number: valid range is 0 to 1", info.id))?;
                            set_weight(spec, info.id, w)
                        })
                    };
                    view! {
                        <tr class:active=move || { weight() > 0.0 }>
                            <td class="name" title=info.definition>{info.name}<br/><small>{info.paper}</small></td>
                            <td class="weight">
                                <input data-testid=format!("weight-{}", info.id) type="range" min="0" max="1" step="0.05"
                                    aria-label=format!("weight of {}", info.name)
                                    prop:value=move || weight().to_string() on:change=set />
                                <span>{move || format!("{:.2}", weight())}</span>
                            </td>
                            <td class="params">
                                <Show when=move || { weight() > 0.0 }>
                                    <ParamControls lab=lab info=info />
                                </Show>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </table>
        </section>
    }
}
