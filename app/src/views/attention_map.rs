//! Attention maps: for a string the user types, every layer and head of one run as a heat map
//! (row = query, column = key; darker = more weight). The maps refresh at each of the run's
//! snapshots while shown.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::protocol::{RunId, ToWorker};
use super::canvas::context_2d;
use crate::lab::{AttentionView, Lab};
use crate::worker_link;

const CELL_AREA: f64 = 180.0;

#[component]
fn HeadMap(maps: AttentionView, layer: usize, head: usize) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let s = maps.tokens.len();
    let cell = (CELL_AREA / s.max(1) as f64).floor().max(2.0);
    let size = cell * s as f64;
    let offset = (layer * maps.heads + head) * s * s;
    let weights = maps.weights[offset..offset + s * s].to_vec();
    Effect::new(move |_| {
        let Some(c) = canvas.get() else { return };
        let Some(ctx) = context_2d(&c) else { return };
        for q in 0..s {
            for k in 0..s {
                let w = weights[q * s + k].clamp(0.0, 1.0) as f64;
                let shade = (255.0 * (1.0 - w.sqrt())) as u8;
                ctx.set_fill_style_str(&format!("rgb({shade},{shade},{})", 255));
                ctx.fill_rect(k as f64 * cell, q as f64 * cell, cell, cell);
            }
        }
    });
    view! {
        <figure>
            <canvas node_ref=canvas width=size.to_string() height=size.to_string()></canvas>
            <figcaption>{format!("layer {} · head {}", layer + 1, head + 1)}</figcaption>
        </figure>
    }
}

#[component]
pub fn AttentionMap(lab: Lab) -> impl IntoView {
    let text = RwSignal::new("To be, or not to be".to_string());
    let chosen = RwSignal::new(None::<RunId>);
    let run = move || chosen.get().or_else(|| lab.selected.get());
    let request = move || {
        if let Some(run) = run() {
            worker_link::send(lab, &ToWorker::Attention { run, text: text.get_untracked() });
        }
    };
    // While a map is shown, refresh it at each new snapshot of its run.
    Effect::new(move |_| {
        let Some(shown) = lab.attention.with_untracked(|a| a.as_ref().map(|a| a.run)) else { return };
        let Some(view) = lab.run(shown) else { return };
        let n = view.snapshots.with(Vec::len);
        if n > 1 {
            worker_link::send(lab, &ToWorker::Attention { run: shown, text: text.get_untracked() });
        }
    });
    let maps = move || {
        let maps = lab.attention.get()?;
        let tokens: String = maps.tokens.concat();
        Some(view! {
            <div data-testid="attention-map" data-run=maps.run.to_string() data-layers=maps.layers.to_string() data-heads=maps.heads.to_string()>
                <p class="caption">{format!("run {} reading {:?}: rows are queries, columns keys", maps.run, tokens)}</p>
                {(0..maps.layers).map(|layer| {
                    let maps = maps.clone();
                    view! {
                        <div class="head-row">
                            {(0..maps.heads).map(|head| view! { <HeadMap maps=maps.clone() layer=layer head=head /> }).collect_view()}
                        </div>
                    }
                }).collect_view()}
            </div>
        })
    };
    view! {
        <section class="attention">
            <h2>"Attention maps"</h2>
            <label>"run "
                <select data-testid="attention-run" on:change=move |ev| chosen.set(event_target_value(&ev).parse().ok())>
                    {move || lab.labels().into_iter().map(|(id, label)| view! {
                        <option value=id.to_string() prop:selected=move || run() == Some(id)>{format!("{id}: {label}")}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>" text "
                <input data-testid="attention-text" type="text" maxlength="64" prop:value=move || text.get()
                    on:change=move |ev| text.set(event_target_value(&ev)) />
            </label>
            <button data-testid="attention-show" on:click=move |_| request() prop:disabled=move || run().is_none()>"Show"</button>
            {maps}
        </section>
    }
}
