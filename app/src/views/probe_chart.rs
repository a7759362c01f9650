//! Linear-probe accuracy over training, one line per run: how well a logistic regression on
//! the run's frozen pooled representations tells which Markov source wrote a sequence, or on
//! the digits which digit an image shows (held-out half of the probe set). The dashed line is
//! chance.

use leptos::html::Canvas;
use leptos::prelude::*;
use super::canvas::{draw_axes, fit_box, polyline};
use crate::lab::{Lab, RunView, label_in};

/// The chart's width in CSS pixels before layout; on the page, its section's.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const PAD: f64 = 40.0;

/// Which probe sets the page's runs read: `(Markov sources, digit images)`, the runs' corpora
/// (the controls' before any run).
pub(super) fn probe_kinds(lab: Lab) -> (bool, bool) {
    let corpora: Vec<bool> = lab.runs.with(|runs| runs.iter().map(RunView::on_digits).collect());
    if corpora.is_empty() {
        let on_digits = lab.shown().corpus == objlab_engine::digits::NAME;
        (!on_digits, on_digits)
    } else {
        (corpora.iter().any(|d| !d), corpora.iter().any(|d| *d))
    }
}

/// What the probe asks, for the probe sets the runs read.
fn probe_hint((sources, images): (bool, bool)) -> String {
    let of_sources = "of sequences from 4 Markov sources with identical letter frequencies: only context tells them apart";
    let per_digit = objlab_engine::probe_set::RECORDS_PER_CLASS;
    let of_images = format!(
        "of {} held-out images, {per_digit} of each digit: which digit is it? (Image GPT's test of what pretraining on pixels teaches)",
        per_digit * objlab_engine::digits::CLASSES
    );
    let body = match (sources, images) {
        (true, true) => format!("on a text, {of_sources}; on the digits, {of_images}"),
        (false, true) => of_images.to_string(),
        _ => of_sources.to_string(),
    };
    format!("Logistic regression on each run's frozen, mean-pooled hidden states {body}.")
}

#[component]
pub fn ProbeChart(lab: Lab) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        lab.layout.track();
        let runs = lab.runs.get();
        let lines: Vec<(&'static str, Vec<(usize, f32)>)> = runs
            .iter()
            .filter(|r| r.visible.get())
            .map(|r| (r.colour, r.snapshots.with(|s| s.iter().map(|x| (x.step, x.probe_accuracy)).collect())))
            .collect();
        let chance = runs.iter().find_map(|r| r.snapshots.with(|s| s.first().map(|x| 1.0 / x.probe_classes.max(1) as f64)));
        let time = lab.time.get();
        let Some(canvas) = canvas.get() else { return };
        let Some((ctx, width)) = fit_box(&canvas, WIDTH, HEIGHT) else { return };
        ctx.clear_rect(0.0, 0.0, width, HEIGHT);
        let x_max = lines.iter().flat_map(|(_, p)| p.iter().map(|(s, _)| *s)).max().unwrap_or(1).max(1) as f64;
        let x = |s: f64| PAD + s / x_max * (width - 2.0 * PAD);
        let y = |a: f64| HEIGHT - PAD + -a * (HEIGHT - 1.5 * PAD);
        draw_axes(&ctx, width, HEIGHT, PAD);
        let _ = ctx.fill_text("100%", 2.0, y(1.0) + 4.0);
        let _ = ctx.fill_text("0%", 14.0, y(0.0) + 4.0);
        let _ = ctx.fill_text(&format!("step {}", x_max as usize), width - PAD - 40.0, HEIGHT - PAD + 16.0);
        if let Some(c) = chance {
            let dash = js_sys::Array::of2(&4.0.into(), &4.0.into());
            let _ = ctx.set_line_dash(&dash);
            ctx.begin_path();
            ctx.move_to(PAD, y(c));
            ctx.line_to(width - PAD, y(c));
            ctx.stroke();
            let _ = ctx.set_line_dash(&js_sys::Array::new());
            // above the line's right end: past it, the label did not fit the canvas
            ctx.set_text_align("right");
            let _ = ctx.fill_text("chance", width - PAD, y(c) - 4.0);
            ctx.set_text_align("left");
        }
        if let Some(t) = time {
            ctx.set_stroke_style_str("#ccc");
            ctx.begin_path();
            ctx.move_to(x(t as f64), PAD / 2.0);
            ctx.line_to(x(t as f64), HEIGHT - PAD);
            ctx.stroke();
        }
        ctx.set_line_width(2.0);
        for (colour, points) in &lines {
            ctx.set_stroke_style_str(colour);
            polyline(&ctx, points.iter().map(|(s, a)| (x(*s as f64), y(*a as f64))));
        }
        ctx.set_line_width(1.0);
    });
    let points = move || lab.runs.with(|runs| runs.iter().map(|r| r.snapshots.with(Vec::len).to_string()).collect::<Vec<_>>().join(","));
    // for a screen reader: each shown run's latest accuracy against chance
    let summary = move || {
        let labels = lab.labels();
        let lines: Vec<String> = lab.runs.with(|runs| {
            runs.iter()
                .filter(|r| r.visible.get())
                .filter_map(|r| {
                    let label = label_in(&labels, r.id);
                    r.snapshots.with(|s| s.last().map(|x| format!("{label} {:.0}% at step {} (chance {:.0}%)", 100.0 * x.probe_accuracy, x.step, 100.0 / x.probe_classes.max(1) as f32)))
                })
                .collect()
        });
        if lines.is_empty() { "Linear-probe accuracy: no snapshot yet".to_string() } else { format!("Linear-probe accuracy. {}", lines.join("; ")) }
    };
    view! {
        <section class="chart">
            <h2>{move || match probe_kinds(lab) {
                (false, true) => "Linear probe: can the representation tell the digits apart?",
                (true, false) => "Linear probe: can the representation tell the sources apart?",
                _ => "Linear probe: can the representation tell the labels apart?",
            }}</h2>
            <p class="hint" data-testid="probe-hint">{move || probe_hint(probe_kinds(lab))}</p>
            <canvas data-testid="probe-chart" node_ref=canvas width=WIDTH.to_string() height=HEIGHT.to_string() data-points=points
                role="img" aria-label=summary></canvas>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::probe_hint;

    #[test]
    fn the_hint_names_the_probe_sets_the_runs_read() {
        assert_eq!(
            probe_hint((true, false)),
            "Logistic regression on each run's frozen, mean-pooled hidden states of sequences from 4 Markov sources with identical letter frequencies: only context tells them apart."
        );
        assert!(probe_hint((false, true)).starts_with("Logistic regression on each run's frozen, mean-pooled hidden states of 120 held-out images"));
        let both = probe_hint((true, true));
        assert!(both.contains("hidden states on a text, of sequences") && both.contains("; on the digits, of 120 held-out images"), "{both}");
    }
}
