//! "Results side by side": the table an ablation reports. One row per experiment, its seeds
//! gathered into one row, with the training loss, the validation loss and the linear probe's
//! accuracy as mean ± standard deviation over the seeds (and each model's parameters where the
//! rows differ in size), every run compared at the same step:
//! the furthest step every shown run has reached, or the time slider's. Without it a reader
//! compares curves by eye at different steps and cannot tell a difference from seed noise.
//! "copy as Markdown" puts the table in a lab notebook or an issue as it is. The table itself
//! (rows, statistics, Markdown) is the engine's `results`, which `objlab train --link` prints
//! too; this file is the page's side: which runs, at which step, and the markup.

use leptos::prelude::*;
use leptos::task::spawn_local;
use objlab_engine::results::{DIFFERENT_TASKS, RunResult, TRAIN_WINDOW, Table, common_step, figures_at, loss_text, params_text, probe_header, probe_text, seeds_text};
use wasm_bindgen_futures::JsFuture;

use super::canvas::Redraws;
use crate::lab::{Lab, RunView};

/// How often, at most, new readings rebuild the table.
const REFRESH_MS: f64 = 250.0;

/// The table's runs from the page's: those shown on the charts, at the time slider's step or
/// the common one (tracked).
fn table_of(lab: Lab) -> Option<Table> {
    let shown: Vec<RunView> = lab.runs.with(|runs| runs.iter().filter(|r| r.visible.get()).copied().collect());
    // how many steps a run has trained, as its validations and snapshots are labelled (its
    // training readings are labelled one less: the engine's `results` says why)
    let latest = |r: &RunView| Some(r.step.get()).filter(|s| *s > 0);
    let trained: Vec<(Option<usize>, bool)> = shown.iter().map(|r| (latest(r), r.failure.with(Option::is_some))).collect();
    let at = lab.time.get().or_else(|| common_step(&trained))?;
    let runs: Vec<RunResult> = shown
        .iter()
        .map(|r| {
            let probes: Vec<(usize, f32, usize)> = r.snapshots.with(|s| s.iter().map(|x| (x.step, x.probe_accuracy, x.probe_classes)).collect());
            RunResult {
                id: r.id,
                spec: r.spec.get_value(),
                latest: latest(r),
                failure: r.failure.get(),
                figures: r.train.with(|t| r.val.with(|v| figures_at(t, v, &probes, at))),
                vocab: r.spec.with_value(|s| lab.vocab_of(&s.corpus)),
            }
        })
        .collect();
    Some(Table::build(&runs, at))
}

/// Selects a text area's text when it takes the focus, to copy by hand (by name: web-sys's
/// text-area type is a feature the page does not otherwise need).
fn select_all(ev: web_sys::FocusEvent) {
    if let Some(target) = ev.target()
        && let Ok(select) = js_sys::Reflect::get(&target, &"select".into())
        && let Some(select) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&select)
    {
        let _ = select.call0(&target);
    }
}

#[component]
pub fn ResultsTable(lab: Lab) -> impl IntoView {
    // The losses arrive in up to hundreds of messages a second: the table is rebuilt four times
    // a second at most for them, and at the next frame when the slider or a run's visibility
    // moves (as the loss chart redraws, `Redraws`).
    let table = RwSignal::new(None::<Table>);
    let refresh = move || {
        let fresh = untrack(|| table_of(lab));
        if table.with_untracked(|old| *old != fresh) {
            table.set(fresh);
        }
    };
    let redraws = Redraws::new(REFRESH_MS);
    Effect::new(move |_| {
        lab.runs.with(|runs| {
            for r in runs {
                r.step.track();
                r.train.track();
                r.val.track();
                r.snapshots.track();
                r.failure.track();
            }
        });
        redraws.ask(false, refresh);
    });
    Effect::new(move |_| {
        lab.time.track();
        lab.runs.with(|runs| runs.iter().for_each(|r| r.visible.track()));
        redraws.ask(true, refresh);
    });
    // Ok(()) once copied; Err(text) where the clipboard was refused: shown to copy by hand
    let copied = RwSignal::new(None::<Result<(), String>>);
    let copy = move |_| {
        let Some(text) = table.get_untracked().map(|t| t.markdown()) else { return };
        let Some(window) = web_sys::window() else { return };
        let clipboard = window.navigator().clipboard();
        spawn_local(async move {
            let done = JsFuture::from(clipboard.write_text(&text)).await;
            copied.set(Some(done.map(|_| ()).map_err(|_| text)));
        });
    };
    let body = move || {
        let Some(t) = table.get() else {
            return view! { <p class="caption">"appears when a run has trained a step"</p> }.into_any();
        };
        let (best_val, best_probe) = t.bests();
        let shared = t.chance().is_some();
        let sizes = t.sizes_differ();
        let caption = if lab.time.get().is_some() {
            format!("at step {}, the time slider's", t.at)
        } else {
            format!("at step {}, the furthest every shown run has reached", t.at)
        };
        view! {
            <p class="caption" data-testid="results-step" data-step=t.at.to_string()>{caption}</p>
            <table data-testid="results" data-rows=t.rows.len().to_string()>
                <tr>
                    <th>"run"</th><th>"seeds"</th>
                    {sizes.then(|| view! { <th title="the model's trainable parameters">"parameters"</th> })}
                    <th title=format!("the mean of each run's last {TRAIN_WINDOW} training readings")>"training loss"</th>
                    <th>"validation loss"</th>
                    <th title="held-out accuracy of a linear probe on the frozen representations (which source wrote a sequence)">{probe_header(&t)}</th>
                </tr>
                {t.rows.iter().enumerate().map(|(i, r)| view! {
                    <tr data-testid="results-row" title=(!r.notes().is_empty()).then(|| r.notes().join("; "))>
                        <th class="row-label">
                            {r.runs.iter().filter_map(|id| lab.run(*id)).map(|run| view! { <span class="swatch" style=format!("background:{}", run.colour)></span> }).collect_view()}
                            {r.label.clone()}
                            {r.failed.then(|| view! { <span class="stopped" data-testid="results-stopped" title=r.notes().join("; ")>" ⚠ stopped"</span> })}
                        </th>
                        <td data-testid="results-seeds">{seeds_text(&r.seeds)}</td>
                        {sizes.then(|| view! { <td data-testid="results-params">{r.params.map_or_else(|| "—".into(), params_text)}</td> })}
                        <td data-testid="results-train">{loss_text(&r.train)}</td>
                        <td data-testid="results-val" class:best=best_val == Some(i)>{loss_text(&r.val)}</td>
                        <td data-testid="results-probe" class:best=best_probe == Some(i)>{probe_text(r, shared)}</td>
                    </tr>
                }).collect_view()}
            </table>
            {(!t.losses_compare).then(|| view! {
                <p class="hint" data-testid="results-caveat">{DIFFERENT_TASKS}</p>
            })}
        }.into_any()
    };
    view! {
        <section class="results">
            <h2>"Results side by side"</h2>
            <p class="hint">
                "One row per experiment, its seeds together: mean ± standard deviation over the seeds (duplicate a run for another seed). "
                "A difference smaller than the ± is within the noise of the seed. Bold: the best of a column. "
                "The same table natively, at native speed: "<code>"objlab train --link '…'"</code>" with the page's link (\"copy link\")."
            </p>
            {body}
            <p>
                <button data-testid="results-copy" on:click=copy prop:disabled=move || table.with(Option::is_none)
                    title="the table as Markdown, for a notebook or an issue">"copy as Markdown"</button>
                {move || copied.get().map(|r| match r {
                    Ok(()) => view! { <span class="hint" data-testid="results-copied">" copied"</span> }.into_any(),
                    Err(text) => view! {
                        <textarea data-testid="results-markdown" class="markdown" readonly=true rows="6" prop:value=text
                            on:focus=select_all></textarea>
                    }.into_any(),
                })}
            </p>
        </section>
    }
}
