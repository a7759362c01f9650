//! "What the model sees": one real example of the current batch per objective, as the model
//! gets it — input tokens with the corrupted positions highlighted, the attention pattern as a
//! small matrix, what each position is scored on, and under it the model's answer now (green
//! where right: what it has learned of its task, and what it still gets wrong) — beside a
//! plain-language explanation and the paper. A student should be able to tell the objectives
//! apart from this alone.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::model::Head;
use objlab_engine::objectives::{Example, Mark, find};
use super::canvas::context_2d;
use crate::lab::Lab;

pub(crate) fn mark_name(m: Mark) -> &'static str {
    match m {
        Mark::Plain => "plain",
        Mark::Masked => "masked",
        Mark::Replaced => "replaced",
        Mark::Kept => "kept",
        Mark::Sentinel => "sentinel",
        Mark::Target => "target",
        Mark::Control => "control",
        Mark::Pad => "pad",
        Mark::HiddenKey => "hidden-key",
    }
}

/// Makes whitespace visible.
pub(crate) fn show(token: &str) -> String {
    match token {
        " " => "·".into(),
        "\n" => "⏎".into(),
        t => t.into(),
    }
}

/// Short labels so that a binary target fits under its token.
pub(crate) fn short_target(target: &str) -> String {
    match target {
        "original" => "orig".into(),
        "replaced" => "REPL".into(),
        t => show(t),
    }
}

/// A name for the attention pattern of the first row.
fn attention_label(a: &[Vec<bool>]) -> String {
    let n = a.len();
    if a.iter().all(|r| r.iter().all(|&x| x)) {
        return "bidirectional: every token sees every token".into();
    }
    if (0..n).all(|q| (0..n).all(|k| a[q][k] == (k <= q))) {
        return "causal: each token sees itself and the tokens before it".into();
    }
    let prefix = a.first().map(|r| r.iter().filter(|&&x| x).count()).unwrap_or(0);
    if prefix > 1 {
        return format!("prefix: the first {prefix} tokens see each other fully, later ones are causal");
    }
    "causal with hidden keys: some tokens are invisible to the others".into()
}

fn draw_attention(canvas: &web_sys::HtmlCanvasElement, a: &[Vec<bool>]) {
    let Some(ctx) = context_2d(canvas) else { return };
    let n = a.len().max(1) as f64;
    let size = canvas.width() as f64;
    let cell = size / n;
    ctx.set_fill_style_str("#f1f1f1");
    ctx.fill_rect(0.0, 0.0, size, size);
    ctx.set_fill_style_str("#3b6fd4");
    for (q, row) in a.iter().enumerate() {
        for (k, &on) in row.iter().enumerate() {
            if on {
                ctx.fill_rect(k as f64 * cell, q as f64 * cell, cell.max(1.0), cell.max(1.0));
            }
        }
    }
}

#[component]
fn AttentionMatrix(attention: Vec<Vec<bool>>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let label = attention_label(&attention);
    let a = attention.clone();
    Effect::new(move |_| {
        if let Some(c) = canvas.get() {
            draw_attention(&c, &a);
        }
    });
    view! {
        <figure class="attention">
            <canvas node_ref=canvas width="160" height="160" data-testid="seen-attention" data-pattern=label.clone()></canvas>
            <figcaption>"attention (row = query, column = key; blue = may look): "{label}</figcaption>
        </figure>
    }
}

/// How many of the first row's scored positions the model answers right, of how many.
pub(crate) fn answer_score(example: &Example) -> (usize, usize) {
    let Some(row) = example.rows.first() else { return (0, 0) };
    let scored = row.targets.iter().zip(&example.answers).filter(|(y, a)| !y.is_empty() && !a.is_empty());
    scored.fold((0, 0), |(right, all), (y, a)| (right + usize::from(y == a), all + 1))
}

#[component]
fn ExampleCard(example: Example, arch_note: Option<&'static str>) -> impl IntoView {
    let info = find(&example.objective).ok().map(|o| o.info());
    let (name, paper, explanation) = info.map(|i| (i.name, i.paper, i.explanation)).unwrap_or(("", "", ""));
    let scored = match example.head {
        Head::Vocab => "the token it is scored on",
        Head::Binary => "replaced or original, scored at every position",
        Head::Position => "the position it must name (no position embedding is given)",
        Head::Projection => "scored on: matching the two views of the same text against the rest of the batch",
    };
    // One column per position: the token the model reads, below it what it is scored on, and
    // (the first row, once read) below that the model's answer now, green where it is right.
    let rows = example.rows.clone();
    let answered = !example.answers.is_empty();
    let (right, scored_count) = answer_score(&example);
    let answers = example.answers.clone();
    let confidence = example.confidence.clone();
    view! {
        <article class="seen" data-testid="seen" data-objective=example.objective.clone()>
            <h3>{name}" "<small>{paper}</small></h3>
            <div class="seen-body">
                <div class="seen-example">
                    {rows.into_iter().enumerate().map(|(i, row)| view! {
                        <div class="row-label">{if example.rows.len() > 1 {
                            format!("view {} (what the model reads)", i + 1)
                        } else if answered {
                            format!("what the model reads (top), {scored} (middle) and the model's answer now (below: green where right, {right} of {scored_count})")
                        } else {
                            format!("what the model reads (top) and {scored} (below)")
                        }}</div>
                        <div class="tokens" data-testid="seen-input">
                            {row.tokens.iter().zip(&row.marks).zip(&row.targets).enumerate().map(|(k, ((t, m), y))| {
                                let answer = (i == 0).then(|| answers.get(k).filter(|a| !a.is_empty())).flatten().map(|a| {
                                    let p = confidence.get(k).copied().unwrap_or(0.0);
                                    let verdict = if a == y { "right" } else { "wrong" };
                                    view! {
                                        <span class=format!("tok answer {verdict}") data-answer=verdict
                                            title=format!("the model's answer: {} ({:.0} % sure; {verdict})", show(a), 100.0 * p)>{short_target(a)}</span>
                                    }
                                });
                                view! {
                                    <span class="col">
                                        <span class=format!("tok mark-{}", mark_name(*m)) data-mark=mark_name(*m) title=mark_name(*m)>{show(t)}</span>
                                        <span class=if y.is_empty() { "tok none" } else { "tok scored" }>{if y.is_empty() { "\u{a0}".to_string() } else { short_target(y) }}</span>
                                        {answer}
                                    </span>
                                }
                            }).collect_view()}
                        </div>
                    }).collect_view()}
                    <Show when={let h = example.head; move || h == Head::Projection}>
                        <p class="row-label">{scored}</p>
                    </Show>
                    <p class="note">{example.note.clone()}</p>
                </div>
                <AttentionMatrix attention=example.attention.clone() />
            </div>
            <p class="explain">{explanation}{arch_note.map(|n| format!(" {n}"))}</p>
        </article>
    }
}

#[component]
pub fn ModelView(lab: Lab) -> impl IntoView {
    // the selected run's architecture (the controls may already show the next run's)
    let arch_note = move || match lab.selected_spec().model.arch {
        objlab_engine::model::Architecture::EncoderDecoder => Some(
            "On the encoder–decoder architecture, the bidirectional prefix is read by the encoder and the rest by the decoder, which attends to the encoder.",
        ),
        objlab_engine::model::Architecture::Decoder => None,
    };
    // the selected run's latest examples (none before the first run)
    let examples = move || lab.selected_run().map(|r| r.examples.get()).unwrap_or_default();
    view! {
        <section class="model-view">
            <h2 data-testid="seen-heading">{move || {
                let of_run = lab.heading_run_suffix();
                match lab.selected_run().map_or(0, |r| r.examples.with(|e| e.0)) {
                    0 => format!("What the model sees{of_run} (shown once training starts)"),
                    step => format!("What the model sees{of_run} (a real example from the batch of step {step})"),
                }
            }}</h2>
            <div class="legend">
                {["masked", "replaced", "kept", "sentinel", "target", "control", "hidden-key", "pad"].map(|m| view! {
                    <span class=format!("tok mark-{m}")>{m.replace('-', " ")}</span>
                }).collect_view()}
            </div>
            {move || {
                let note = arch_note();
                examples().1.into_iter().map(|e| view! { <ExampleCard example=e arch_note=note /> }).collect_view()
            }}
        </section>
    }
}
