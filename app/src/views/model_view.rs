//! "What the model sees": one real example of the current batch per objective, as the model
//! gets it — input tokens with the corrupted positions highlighted, the attention pattern as a
//! small matrix, what each position is scored on, and under it the model's answer now (green
//! where right: what it has learned of its task, and what it still gets wrong) — beside a
//! plain-language explanation and the paper. A student should be able to tell the objectives
//! apart from this alone.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::model::Head;
use objlab_engine::objectives::{Alignment, Example, Mark, find};
use objlab_engine::tokenizer::NEW_LINE_SIGN;
use super::canvas::context_2d;
use super::pixel_image::{Cell, PixelImage};
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

/// Makes whitespace visible: a space as `␣` (`·` is a pixel of the digits), a new line as the
/// sign typed for one (`tokenizer::NEW_LINE_SIGN`). Every view that draws a lone token uses it.
pub(crate) fn show(token: &str) -> String {
    match token {
        " " => SPACE_SIGN.into(),
        "\n" => NEW_LINE_SIGN.into(),
        t => t.into(),
    }
}

/// How a space is drawn where a token stands alone (`·` would be a digits pixel).
const SPACE_SIGN: char = '␣';

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

/// The first row of `example` as up to three images (what the model reads, what it is scored
/// on, its answers now), from the image that starts at the row's first new line, where the
/// objective's input keeps the text's positions (the registry's `alignment`).
fn example_images(example: &Example) -> Vec<(String, Vec<Cell>)> {
    let layout = find(&example.objective).map_or(Alignment::Moved, |o| o.info().alignment);
    let Some(row) = example.rows.first().filter(|_| layout != Alignment::Moved) else { return Vec::new() };
    // where the image starts: the row's first new line, read or (masked or swapped away) scored
    let Some(nl) = row.tokens.iter().zip(&row.targets).position(|(t, y)| t == "\n" || (layout == Alignment::SameToken && y == "\n"))
    else {
        return Vec::new();
    };
    let reads: Vec<Cell> = row.tokens[nl + 1..]
        .iter()
        .zip(&row.marks[nl + 1..])
        .map(|(t, m)| Cell::of(t, if *m == Mark::Plain { "" } else { pixel_mark(*m) }))
        .collect();
    let mut images = vec![("what the model reads".to_string(), reads)];
    // the pixel the target at position k stands for
    let pixel = |k: usize| match layout {
        Alignment::NextToken => k.checked_sub(nl),
        Alignment::SameToken => k.checked_sub(nl + 1),
        Alignment::InputOnly | Alignment::Moved => None,
    };
    if layout != Alignment::InputOnly {
        // in place, the pixels that are not scored are given: drawn faintly, so that the
        // scored ones stand out where they lie in the digit
        let mut scored: Vec<Cell> = (0..objlab_engine::digits::PIXELS)
            .map(|p| match (layout, images[0].1.get(p)) {
                (Alignment::SameToken, Some(read)) if read.ink.is_some() => Cell { class: "given", ..read.clone() },
                _ => Cell::empty(),
            })
            .collect();
        let mut answers = scored.clone();
        for (k, y) in row.targets.iter().enumerate().filter(|(_, y)| !y.is_empty()) {
            let Some(p) = pixel(k).filter(|&p| p < scored.len()) else { continue };
            scored[p] = Cell::of(y, "");
            if let Some(a) = example.answers.get(k).filter(|a| !a.is_empty()) {
                answers[p] = Cell::of(a, if a == y { "right" } else { "wrong" });
            }
        }
        images.push(("what it is scored on".to_string(), scored));
        if !example.answers.is_empty() {
            images.push(("its answers now (green: right)".to_string(), answers));
        }
    }
    images
}

/// The class a marked pixel takes (the marks' colours are for text; on an image a mark is an outline).
fn pixel_mark(m: Mark) -> &'static str {
    match m {
        Mark::Masked => "mark-masked",
        Mark::Replaced => "mark-replaced",
        Mark::Sentinel => "mark-sentinel",
        Mark::HiddenKey => "mark-hidden-key",
        _ => "",
    }
}

#[component]
fn ExampleCard(example: Example, arch_note: Option<&'static str>, pixels: bool) -> impl IntoView {
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
    let images = if pixels { example_images(&example) } else { Vec::new() };
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
                    {(!images.is_empty()).then(|| view! {
                        <div class="pixel-row" data-testid="seen-images">
                            {images.into_iter().map(|(caption, cells)| view! { <PixelImage cells=cells caption=caption testid="seen-image" /> }).collect_view()}
                        </div>
                    })}
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
                let pixels = lab.selected_spec().corpus == objlab_engine::digits::NAME;
                examples().1.into_iter().map(|e| view! { <ExampleCard example=e arch_note=note pixels=pixels /> }).collect_view()
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objlab_engine::objectives::ExampleRow;

    #[test]
    fn whitespace_is_shown_by_signs_that_no_corpus_token_is() {
        assert_eq!(show(" "), "␣");
        assert_eq!(show("\n"), "⏎");
        assert_eq!(show("·"), "·", "a digits pixel stays itself");
        assert!(objlab_engine::digits::PALETTE.iter().all(|&p| p != SPACE_SIGN && p != NEW_LINE_SIGN));
    }

    fn example(objective: &str, tokens: &[&str], marks: &[Mark], targets: &[&str], answers: &[&str]) -> Example {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Example {
            objective: objective.into(),
            head: Head::Vocab,
            attention: Vec::new(),
            rows: vec![ExampleRow { tokens: strings(tokens), marks: marks.to_vec(), targets: strings(targets) }],
            note: String::new(),
            answers: strings(answers),
            confidence: Vec::new(),
        }
    }

    #[test]
    fn a_masked_digit_is_drawn_where_its_pixels_are() {
        use Mark::{Masked, Plain};
        // the image's new line itself masked: the image still starts after it
        let e = example(
            "masked_lm",
            &["[MASK]", "·", "[MASK]", "█"],
            &[Masked, Plain, Masked, Plain],
            &["\n", "", "▒", ""],
            &["▒", "", "▒", ""],
        );
        let images = example_images(&e);
        let captions: Vec<&str> = images.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(captions, ["what the model reads", "what it is scored on", "its answers now (green: right)"]);
        let (reads, scored, answers) = (&images[0].1, &images[1].1, &images[2].1);
        assert_eq!((reads[0].ink, reads[1].ink, reads[1].class, reads[2].ink), (Some(0.0), None, "mark-masked", Some(1.0)));
        assert_eq!((scored[0].ink, scored[0].class, scored[1].ink, scored[1].class), (Some(0.0), "given", Some(0.5), ""), "only the masked pixel is scored; the others are given");
        assert_eq!((answers[1].ink, answers[1].class), (Some(0.5), "right"));
    }

    #[test]
    fn a_next_pixel_target_is_drawn_one_pixel_on() {
        let plain = [Mark::Plain; 3];
        let e = example("causal_lm", &["\n", "·", "█"], &plain, &["·", "█", "▒"], &["·", "▒", "▒"]);
        let images = example_images(&e);
        let inks = |cells: &[Cell]| cells.iter().take(3).map(|c| c.ink).collect::<Vec<_>>();
        assert_eq!(inks(&images[0].1), [Some(0.0), Some(1.0)], "the row reads the new line and two pixels");
        assert_eq!(inks(&images[1].1), [Some(0.0), Some(1.0), Some(0.5)], "and is scored on the first three");
        assert_eq!(images[2].1.iter().take(3).map(|c| c.class).collect::<Vec<_>>(), ["right", "wrong", "right"]);
        // an objective whose input does not keep the pixels in place is not drawn
        assert!(example_images(&example("span_corruption", &["\n", "<S0>"], &[Mark::Plain, Mark::Sentinel], &["", ""], &[])).is_empty());
    }
}
