//! Attention maps: for a string the user types, every layer and head of one run as a heat map
//! (row = query, column = key; darker = more weight), the tokens along the edges and each
//! cell's weight under the pointer. The maps refresh at each of the run's snapshots while shown.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::protocol::{RunId, ToWorker};
use objlab_engine::digits::{PIXELS, SIDE};
use super::canvas::fit_fixed;
use super::model_view::show;
use super::pixel_image::{Cell, PixelImage, moved};
use crate::lab::{AttentionView, Lab};
use crate::worker_link;

/// Side of a map's grid in pixels (the cells shrink as the text grows).
const CELL_AREA: f64 = 180.0;
/// Room for the token labels along the top and the left of each map.
const LABEL: f64 = 12.0;

/// What the pointer at canvas pixel (`x`, `y`) of a map of `s` tokens with cells of `cell`
/// pixels points at: (query, key), or `None` outside the grid.
fn cell_at(x: f64, y: f64, s: usize, cell: f64) -> Option<(usize, usize)> {
    let (k, q) = ((x - LABEL) / cell, (y - LABEL) / cell);
    (k >= 0.0 && q >= 0.0 && (k as usize) < s && (q as usize) < s).then_some((q as usize, k as usize))
}

/// Where the image starts in the tokens the maps read (the digits): the token after the
/// first new line, if any.
fn image_start(tokens: &[String]) -> Option<usize> {
    tokens.iter().position(|t| t == "\n").map(|nl| nl + 1)
}

/// The attention of query token `q` over the image that starts at token `start`, as cells:
/// each key pixel's weight (scaled by the row's largest, so that a head that spreads its
/// weight thinly still shows where), the query's own pixel outlined.
fn looks_from(weights: &[f32], s: usize, start: usize, q: usize) -> Vec<Cell> {
    let row = &weights[q * s..(q + 1) * s];
    let keys = &row[start.min(s)..(start + PIXELS).min(s)];
    let most = keys.iter().cloned().fold(0.0f32, f32::max).max(1e-9);
    keys.iter()
        .enumerate()
        .map(|(p, &w)| Cell {
            ink: Some(w / most),
            class: if start + p == q { "query" } else { "" },
            title: format!("{:.2}", w),
        })
        .collect()
}

/// The image the maps read, as cells, the query pixel `q` outlined.
fn read_cells(tokens: &[String], start: usize, q: usize) -> Vec<Cell> {
    let image = &tokens[start.min(tokens.len())..(start + PIXELS).min(tokens.len())];
    image.iter().enumerate().map(|(p, t)| Cell::of(t, if start + p == q { "query" } else { "" })).collect()
}

#[component]
fn HeadMap(lab: Lab, maps: AttentionView, layer: usize, head: usize, query: RwSignal<Option<usize>>, start: Option<usize>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let s = maps.tokens.len();
    let cell = (CELL_AREA / s.max(1) as f64).floor().max(2.0);
    let size = LABEL + cell * s as f64;
    let offset = (layer * maps.heads + head) * s * s;
    // weights: [seq (query), seq (key)] of this layer and head
    let weights = maps.weights[offset..offset + s * s].to_vec();
    let labels: Vec<String> = maps.tokens.iter().map(|t| show(t)).collect();
    // "query → key: weight" under the pointer, so that a map can be read cell by cell
    let hovered = RwSignal::new(None::<String>);
    let (w, l) = (weights.clone(), labels.clone());
    let on_move = move |ev: web_sys::MouseEvent| {
        let Some(c) = canvas.get_untracked() else { return };
        // the canvas may be drawn smaller than its pixels (max-width): scale the pointer
        let scale = size / (c.client_width().max(1) as f64);
        let at = cell_at(ev.offset_x() as f64 * scale, ev.offset_y() as f64 * scale, s, cell);
        hovered.set(at.map(|(q, k)| format!("{:?} at {} looks at {:?} at {}: {:.2}", l[q], q + 1, l[k], k + 1, w[q * s + k])));
        // (on the digits, the pixel of the row pointed at is the query every head's image
        // shows; a row of no pixel keeps the one before, and an unchanged row redraws nothing)
        if let Some((q, _)) = at.filter(|&(q, _)| start.is_some_and(|start| q >= start) && query.get_untracked() != Some(q)) {
            query.set(Some(q));
        }
    };
    // on the digits: where the chosen query pixel looks, on the image
    let pixels = start.map(|start| {
        let (w, pick) = (weights.clone(), Callback::new(move |p: usize| query.set(Some(start + p))));
        move || {
            let q = query.get().filter(|&q| q >= start && q < s)?;
            Some(view! {
                <PixelImage cells=looks_from(&w, s, start, q) heat=true on_pick=pick testid="pixel-attention"
                    caption=format!("where pixel {} looks", q - start + 1) />
            })
        }
    });
    Effect::new(move |_| {
        lab.layout.track();
        let Some(c) = canvas.get() else { return };
        let Some(ctx) = fit_fixed(&c, size, size) else { return };
        ctx.set_fill_style_str("#fff");
        ctx.fill_rect(0.0, 0.0, size, size);
        for q in 0..s {
            for k in 0..s {
                let w = weights[q * s + k].clamp(0.0, 1.0) as f64;
                let shade = (255.0 * (1.0 - w.sqrt())) as u8;
                ctx.set_fill_style_str(&format!("rgb({shade},{shade},{})", 255));
                ctx.fill_rect(LABEL + k as f64 * cell, LABEL + q as f64 * cell, cell, cell);
            }
        }
        // the tokens: keys along the top, queries down the left (where the cells are wide
        // enough to read them)
        if cell >= 7.0 {
            ctx.set_fill_style_str("#555");
            ctx.set_font(&format!("{}px monospace", cell.min(LABEL).floor()));
            ctx.set_text_align("center");
            for (i, label) in labels.iter().enumerate() {
                let middle = LABEL + (i as f64 + 0.5) * cell;
                let _ = ctx.fill_text(label, middle, LABEL - 2.0);
                let _ = ctx.fill_text(label, LABEL / 2.0, middle + cell.min(LABEL) / 3.0);
            }
        }
    });
    view! {
        <figure>
            <canvas node_ref=canvas width=size.to_string() height=size.to_string() role="img"
                aria-label=format!("attention weights of layer {} head {}: rows are the queries, columns the keys (hover for each weight)", layer + 1, head + 1)
                on:mousemove=on_move on:mouseleave=move |_| hovered.set(None)></canvas>
            <figcaption>{move || hovered.get().unwrap_or_else(|| format!("layer {} · head {}", layer + 1, head + 1))}</figcaption>
            {pixels}
        </figure>
    }
}

/// What the maps read unless the user types something else.
pub(crate) const DEFAULT_TEXT: &str = "To be, or not to be";

/// The first 20 characters of `text`'s first line that has any: what a run on it reads by
/// default (every one of them is in its vocabulary).
pub(crate) fn opening_words(text: &str) -> String {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().chars().take(20).collect()
}

/// The opening words of run `id`'s text where it trains on a text of one's own (which may not
/// have Shakespeare's letters), or a held-out image on the digits (its new line written ⏎),
/// for the line a panel offers it.
pub(crate) fn own_opening(lab: Lab, id: RunId) -> Option<String> {
    let spec = lab.run(id)?.spec.get_value();
    if spec.corpus == objlab_engine::digits::NAME {
        return Some(digits_line(spec.model.block_size));
    }
    let corpus = spec.corpus;
    lab.uploads.with(|u| u.iter().find(|u| u.name == corpus).map(|u| opening_words(&u.text)))
}

/// The line offered to a run on the digits that reads `context` tokens: a held-out 3, its new
/// line written ⏎, as much of it as the model reads at once.
pub(crate) fn digits_line(context: usize) -> String {
    let pixels = objlab_engine::digits::HELD_OUT_THREE.chars().take(context.saturating_sub(1));
    std::iter::once(objlab_engine::tokenizer::NEW_LINE_SIGN).chain(pixels).collect()
}

/// Offers `next` in a panel's `text`, in place of the line offered before (`offered`), unless
/// the user has typed one of their own.
pub(crate) fn offer(text: RwSignal<String>, offered: StoredValue<String>, next: String) {
    if text.get_untracked() == offered.get_value() {
        text.set(next.clone());
    }
    offered.set_value(next);
}

#[component]
pub fn AttentionMap(lab: Lab) -> impl IntoView {
    let text = RwSignal::new(DEFAULT_TEXT.to_string());
    let chosen = RwSignal::new(None::<RunId>);
    // a chosen run that has since been removed gives way to the selected one (asking the
    // worker for a run it no longer has would only show an error)
    let run = move || chosen.get().filter(|id| lab.run(*id).is_some()).or_else(|| lab.selected.get());
    // A run on a text of one's own may not know Shakespeare's letters: it reads the start of
    // its own text instead, unless the user typed something.
    let suggested = StoredValue::new(DEFAULT_TEXT.to_string());
    Effect::new(move |_| offer(text, suggested, run().and_then(|id| own_opening(lab, id)).unwrap_or_else(|| DEFAULT_TEXT.to_string())));
    // a run kept from an earlier visit has no weights in the worker to read
    let kept = move || run().and_then(|id| lab.run(id)).is_some_and(|r| r.restored);
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
    // on the digits, the query pixel whose attention each head's image shows (the row pointed
    // at in any map, or a pixel clicked): at first the middle of the image
    let query = RwSignal::new(None::<usize>);
    let maps = move || {
        let maps = lab.attention.get()?;
        // on a digits run, where the image starts (a text of another run may hold a new line)
        let start = image_start(&maps.tokens).filter(|_| lab.run(maps.run).is_some_and(|r| r.on_digits()));
        if let Some(start) = start {
            let middle = (start + PIXELS / 2 + SIDE / 2).min(maps.tokens.len().saturating_sub(1));
            query.update_untracked(|q| *q = Some(q.filter(|&q| q >= start && q < maps.tokens.len()).unwrap_or(middle)));
        }
        let tokens: String = maps.tokens.concat();
        Some(view! {
            <div data-testid="attention-map" data-run=maps.run.to_string() data-layers=maps.layers.to_string() data-heads=maps.heads.to_string()>
                <p class="caption" data-testid="attention-caption">{format!("run {} reading {:?} {}: rows are queries, columns keys", maps.run, tokens, maps.reads)}</p>
                {start.map(|start| {
                    let (tokens, pick) = (maps.tokens.clone(), Callback::new(move |p: usize| query.set(Some(start + p))));
                    let pixels = maps.tokens.len().saturating_sub(start).min(PIXELS);
                    view! {
                        // (the keyboard moves the chosen pixel: this element stays while the
                        // images in it are drawn anew, so it keeps the focus)
                        <div class="image-read keyed" tabindex="0" data-testid="attention-keys"
                            aria-label="the image read and the pixel whose attention is shown: arrow keys move the pixel"
                            on:keydown=move |ev: web_sys::KeyboardEvent| {
                                let q = query.get_untracked().unwrap_or(start).saturating_sub(start);
                                if let Some(p) = moved(q, &ev.key(), pixels) {
                                    ev.prevent_default();
                                    query.set(Some(start + p));
                                }
                            }>
                            {move || {
                                let q = query.get().unwrap_or(start);
                                view! { <PixelImage cells=read_cells(&tokens, start, q) on_pick=pick testid="attention-image"
                                    caption="the image read".to_string() /> }
                            }}
                            <p class="hint">"Under each map, where one pixel of this image (outlined) looks: darker blue is more weight, scaled to that pixel's strongest. Click a pixel, here or under a map, point at a row of any map, or move it with the arrow keys here, to choose another."</p>
                        </div>
                    }
                })}
                {(0..maps.layers).map(|layer| {
                    let maps = maps.clone();
                    view! {
                        <div class="head-row">
                            {(0..maps.heads).map(|head| view! { <HeadMap lab=lab maps=maps.clone() layer=layer head=head query=query start=start /> }).collect_view()}
                        </div>
                    }
                }).collect_view()}
            </div>
        })
    };
    view! {
        <section class="attention-maps">
            <h2>"Attention maps"</h2>
            <label>"run "
                <select data-testid="attention-run" on:change=move |ev| chosen.set(event_target_value(&ev).parse().ok())>
                    {move || lab.labels().into_iter().map(|(id, label)| view! {
                        <option value=id.to_string() prop:selected=move || run() == Some(id)>{format!("{id}: {label}")}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>" text "
                <input data-testid="attention-text" type="text" maxlength="65" prop:value=move || text.get()
                    on:change=move |ev| text.set(event_target_value(&ev)) />
            </label>
            <button data-testid="attention-show" on:click=move |_| request() prop:disabled=move || run().is_none() || kept()>"Show"</button>
            <Show when=kept>
                <span class="hint" data-testid="attention-kept">" a run kept from your last visit has its curves, not its weights: train it again to read its attention"</span>
            </Show>
            {maps}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::{LABEL, cell_at, image_start, looks_from, read_cells};

    #[test]
    fn a_pixels_attention_is_drawn_on_the_image_after_the_new_line() {
        let tokens: Vec<String> = ["\n", "·", "█", "▒"].iter().map(|t| t.to_string()).collect();
        assert_eq!(image_start(&tokens), Some(1));
        assert_eq!(image_start(&["a".to_string()]), None, "a text is not an image");
        // weights: [4, 4]; query 3 (the third pixel) looks at the new line, pixels 1 and 3
        let mut w = vec![0.0f32; 16];
        w[12..16].copy_from_slice(&[0.5, 0.1, 0.0, 0.4]);
        let cells = looks_from(&w, 4, 1, 3);
        assert_eq!(cells.len(), 3, "the image's pixels only, not the new line");
        let inks: Vec<f32> = cells.iter().map(|c| c.ink.unwrap()).collect();
        assert_eq!(inks, [0.25, 0.0, 1.0], "scaled to the strongest pixel");
        assert_eq!(cells.iter().map(|c| c.class).collect::<Vec<_>>(), ["", "", "query"]);
        let read = read_cells(&tokens, 1, 2);
        assert_eq!(read.iter().map(|c| (c.ink, c.class)).collect::<Vec<_>>(), [(Some(0.0), ""), (Some(1.0), "query"), (Some(0.5), "")]);
    }

    #[test]
    fn the_pointer_names_the_query_row_and_the_key_column() {
        // 3 tokens, cells of 10 pixels after the labels' margin
        assert_eq!(cell_at(LABEL + 25.0, LABEL + 5.0, 3, 10.0), Some((0, 2)));
        assert_eq!(cell_at(LABEL + 1.0, LABEL + 29.0, 3, 10.0), Some((2, 0)));
        assert_eq!(cell_at(LABEL - 1.0, LABEL + 5.0, 3, 10.0), None, "on the labels");
        assert_eq!(cell_at(LABEL + 30.0, LABEL + 5.0, 3, 10.0), None, "past the last key");
    }
}
