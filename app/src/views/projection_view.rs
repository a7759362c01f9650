//! Embedding projections, one card per run on the shared time slider: (a) the token
//! embeddings on their first two principal axes, each character drawn where it lands and
//! coloured by its class, and (b) the probe set's pooled representations, coloured by which
//! Markov source wrote the sequence (on the digits: which digit the image shows). Runs whose
//! objective exposes the label pull the colours of (b) apart.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::protocol::Snapshot;
use objlab_engine::tokenizer::CharClass;
use super::canvas::fit_fixed;
use super::model_view::show;
use super::probe_confusion::ProbeConfusion;
use crate::lab::{Lab, RunView};

const SIZE: f64 = 240.0;
const MARGIN: f64 = 14.0;
pub const CLASS_COLOURS: [&str; 6] = ["#d55e00", "#0072b2", "#009e73", "#cc79a7", "#999999", "#e69f00"];
/// One colour per probe label: Okabe–Ito's eight, then two more for the ten digits.
pub const LABEL_COLOURS: [&str; 10] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c6d31", "#f0e442", "#999999"];

/// Maps points into the canvas, keeping the aspect ratio (distances mean the same on both axes).
fn scaler(points: &[[f32; 2]]) -> impl Fn([f32; 2]) -> (f64, f64) {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k] as f64);
            hi[k] = hi[k].max(p[k] as f64);
        }
    }
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-9);
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let scale = (SIZE - 2.0 * MARGIN) / span;
    move |p: [f32; 2]| (SIZE / 2.0 + (p[0] as f64 - centre[0]) * scale, SIZE / 2.0 - (p[1] as f64 - centre[1]) * scale)
}

fn draw_tokens(canvas: &web_sys::HtmlCanvasElement, s: &Snapshot) {
    let Some(ctx) = fit_fixed(canvas, SIZE, SIZE) else { return };
    ctx.clear_rect(0.0, 0.0, SIZE, SIZE);
    let at = scaler(&s.token_points);
    ctx.set_font("12px monospace");
    for (text, p) in s.tokens.iter().zip(&s.token_points) {
        // a pixel of the digits: a square of its grey (do the levels line up in order?)
        if let Some(ink) = objlab_engine::digits::ink(text) {
            let (x, y) = at(*p);
            let g = (255.0 * (1.0 - ink)).round() as u8;
            ctx.set_fill_style_str(&format!("rgb({g},{g},{g})"));
            ctx.fill_rect(x - 5.0, y - 5.0, 10.0, 10.0);
            ctx.set_stroke_style_str("#555");
            ctx.stroke_rect(x - 5.0, y - 5.0, 10.0, 10.0);
            continue;
        }
        let class = CharClass::of(text);
        let k = CharClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
        ctx.set_fill_style_str(CLASS_COLOURS[k]);
        let (x, y) = at(*p);
        let _ = ctx.fill_text(&show(text), x - 3.0, y + 4.0);
    }
}

fn draw_probe(canvas: &web_sys::HtmlCanvasElement, s: &Snapshot) {
    let Some(ctx) = fit_fixed(canvas, SIZE, SIZE) else { return };
    ctx.clear_rect(0.0, 0.0, SIZE, SIZE);
    let at = scaler(&s.probe_points);
    for (label, p) in s.probe_labels.iter().zip(&s.probe_points) {
        ctx.set_fill_style_str(LABEL_COLOURS[label % LABEL_COLOURS.len()]);
        let (x, y) = at(*p);
        ctx.begin_path();
        let _ = ctx.arc(x, y, 3.0, 0.0, std::f64::consts::TAU);
        ctx.fill();
    }
}

#[component]
fn ProjectionCard(lab: Lab, run: RunView) -> impl IntoView {
    let tokens = NodeRef::<Canvas>::new();
    let probe = NodeRef::<Canvas>::new();
    let shown = Memo::new(move |_| run.snapshot_at(lab.time.get()));
    Effect::new(move |_| {
        // (a zoom changes the pixel ratio: redrawn, the projections stay sharp)
        lab.layout.track();
        let Some(s) = shown.get() else { return };
        if let (Some(t), Some(p)) = (tokens.get(), probe.get()) {
            draw_tokens(&t, &s);
            draw_probe(&p, &s);
        }
    });
    let id = run.id;
    let label = move || lab.labels().into_iter().find(|(r, _)| *r == id).map(|(_, l)| l).unwrap_or_default();
    let on_digits = run.on_digits();
    let by_what = move || if on_digits { "digit" } else { "source" };
    let caption = move || match shown.get() {
        None => "waiting for the first snapshot…".to_string(),
        Some(s) => format!(
            "step {} · probe accuracy {:.0}% (chance {:.0}%) · effective rank {:.1} · snapshot {:.0} ms on the {} (longest pause {:.0} ms)",
            s.step,
            100.0 * s.probe_accuracy,
            100.0 / s.probe_classes.max(1) as f32,
            s.effective_rank,
            s.millis,
            s.analyser,
            s.stall_ms
        ),
    };
    view! {
        <div class="projection" data-testid="projection" data-run=id.to_string()
            data-analyser=move || shown.get().map(|s| s.analyser).unwrap_or_default()
            data-millis=move || shown.get().map(|s| format!("{:.1}", s.millis)).unwrap_or_default()
            data-stall=move || shown.get().map(|s| format!("{:.1}", s.stall_ms)).unwrap_or_default()
            data-step=move || shown.get().map(|s| s.step.to_string()).unwrap_or_default()>
            <h3><span class="swatch" style=format!("background:{}", run.colour)></span>{label}</h3>
            <div class="pair">
                <figure>
                    <canvas node_ref=tokens width=SIZE.to_string() height=SIZE.to_string() role="img"
                        aria-label=move || format!("{}: its token embeddings on their first two principal axes, {}", label(), caption())></canvas>
                    <figcaption>"token embeddings (PCA)"</figcaption>
                </figure>
                <figure>
                    <canvas node_ref=probe width=SIZE.to_string() height=SIZE.to_string() role="img"
                        aria-label=move || format!("{}: its representations of the probe sequences on their first two principal axes, coloured by {}, {}", label(), by_what(), caption())></canvas>
                    <figcaption>{move || format!("probe sequences (PCA), by {}", by_what())}</figcaption>
                </figure>
                <ProbeConfusion shown=shown on_digits=on_digits />
            </div>
            <p class="caption">{caption}</p>
        </div>
    }
}

#[component]
pub fn ProjectionView(lab: Lab) -> impl IntoView {
    view! {
        <section class="projections">
            <p class="legend">
                {move || (super::probe_chart::probe_kinds(lab).0).then(|| CharClass::ALL.iter().zip(CLASS_COLOURS).filter(|(c, _)| **c != CharClass::Special).map(|(c, colour)| view! {
                    <span style=format!("color:{colour}")>"■ " {c.name()} " "</span>
                }).collect_view())}
                {move || (super::probe_chart::probe_kinds(lab).1).then_some("tokens of the digits: a square of each pixel's grey level, ⏎ where an image starts ")}
                {move || match super::probe_chart::probe_kinds(lab) {
                    (false, true) => " · probe points: one colour per digit (the label a linear probe must read off)".to_string(),
                    (true, false) => " · probe points: one colour per Markov source (the label a linear probe must read off)".to_string(),
                    _ => " · probe points: one colour per Markov source, or per digit on the digits (the label a linear probe must read off)".to_string(),
                }}
                {move || (super::probe_chart::probe_kinds(lab).1).then(|| view! {
                    <span class="digit-key">" (digits: "{LABEL_COLOURS.iter().enumerate().map(|(d, c)| view! {
                        <span style=format!("color:{c}")>{format!("■{d} ")}</span>
                    }).collect_view()}")"</span>
                })}
            </p>
            <div class="projection-grid">
                <For each=move || lab.runs.get() key=|r| r.id let:run>
                    <ProjectionCard lab=lab run=run />
                </For>
            </div>
        </section>
    }
}
