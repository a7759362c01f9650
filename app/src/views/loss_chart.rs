//! Training and validation loss of every run, overlaid on one canvas (one path per curve, not a
//! node per point; long curves are thinned to about two points per pixel column, so 6 runs ×
//! 10,000 steps redraw in a few milliseconds). Options: log-scaled steps, smoothing (a debiased
//! exponential moving average, as TensorBoard's), and a readout of every run under the cursor.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::spec::objective_mix_text;
use super::canvas::{context_2d, draw_axes, polyline};
use super::curves_download::CurvesDownload;
use crate::lab::{Lab, RunView, label_in};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const PAD: f64 = 44.0;

/// Debiased exponential moving average: s_t = a·s_{t−1} + (1 − a)·x_t, divided by 1 − a^t.
pub fn smooth(points: &[(usize, f32)], a: f64) -> Vec<(usize, f64)> {
    let mut s = 0.0;
    let mut weight = 0.0;
    points
        .iter()
        .filter(|(_, l)| l.is_finite())
        .map(|&(step, l)| {
            s = a * s + (1.0 - a) * l as f64;
            weight = a * weight + (1.0 - a);
            (step, s / weight)
        })
        .collect()
}

/// At most `n` points, evenly strided (the last one kept).
fn thin(points: Vec<(usize, f64)>, n: usize) -> Vec<(usize, f64)> {
    if points.len() <= n {
        return points;
    }
    let stride = points.len().div_ceil(n);
    let last = *points.last().expect("not empty");
    let mut out: Vec<(usize, f64)> = points.into_iter().step_by(stride).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// What one run contributes to the chart.
struct Curve {
    colour: &'static str,
    label: String,
    train: Vec<(usize, f64)>,
    val: Vec<(usize, f64)>,
}

/// Maps steps to x (linear or log) for a chart whose last step is `x_max`.
fn x_of(step: f64, x_max: f64, log_x: bool) -> f64 {
    let t = if log_x { (step + 1.0).ln() / (x_max + 1.0).ln() } else { step / x_max };
    PAD + t * (WIDTH - 2.0 * PAD)
}

fn step_of(x: f64, x_max: f64, log_x: bool) -> f64 {
    let t = ((x - PAD) / (WIDTH - 2.0 * PAD)).clamp(0.0, 1.0);
    if log_x { (t * (x_max + 1.0).ln()).exp() - 1.0 } else { t * x_max }
}

fn draw(canvas: &web_sys::HtmlCanvasElement, curves: &[Curve], x_max: f64, log_x: bool, hover: Option<f64>) {
    let Some(ctx) = context_2d(canvas) else { return };
    ctx.clear_rect(0.0, 0.0, WIDTH, HEIGHT);
    let all = curves.iter().flat_map(|c| c.train.iter().chain(&c.val)).map(|(_, l)| *l);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| (a.min(l), b.max(l)));
    ctx.set_fill_style_str("#555");
    ctx.set_font("12px sans-serif");
    if !lo.is_finite() {
        let _ = ctx.fill_text("the loss curves appear here once training starts", PAD, HEIGHT / 2.0);
        return;
    }
    let (lo, hi) = if hi - lo < 1e-6 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let x = |s: usize| x_of(s as f64, x_max, log_x);
    let y = |l: f64| HEIGHT - PAD + (lo - l) / (hi - lo) * (HEIGHT - 2.0 * PAD);
    draw_axes(&ctx, WIDTH, HEIGHT, PAD);
    let _ = ctx.fill_text(&format!("{hi:.2}"), 4.0, y(hi) + 4.0);
    let _ = ctx.fill_text(&format!("{lo:.2}"), 4.0, y(lo) + 4.0);
    let _ = ctx.fill_text(if log_x { "1" } else { "0" }, PAD, HEIGHT - PAD + 16.0);
    let _ = ctx.fill_text(&format!("step {}{}", x_max as usize, if log_x { " (log)" } else { "" }), WIDTH - PAD - 70.0, HEIGHT - PAD + 16.0);
    let line = |points: &[(usize, f64)], colour: &str, width: f64, dashed: bool| {
        ctx.set_stroke_style_str(colour);
        ctx.set_line_width(width);
        let dash = js_sys::Array::new();
        if dashed {
            dash.push(&6.0.into());
            dash.push(&4.0.into());
        }
        let _ = ctx.set_line_dash(&dash);
        polyline(&ctx, points.iter().map(|(s, l)| (x(*s), y(*l))));
    };
    for c in curves {
        line(&c.train, c.colour, 1.2, false);
    }
    // validation above every run's training curve (a noisy one hid the others' validation),
    // on a white halo, with a dot at each evaluation
    for c in curves {
        line(&c.val, "#fff", 5.0, false);
        line(&c.val, c.colour, 2.2, true);
        ctx.set_fill_style_str(c.colour);
        for (s, l) in &c.val {
            ctx.begin_path();
            let _ = ctx.arc(x(*s), y(*l), 3.0, 0.0, std::f64::consts::TAU);
            ctx.fill();
        }
    }
    let _ = ctx.set_line_dash(&js_sys::Array::new());
    ctx.set_line_width(1.0);
    // legend: one entry per run, solid = train, dashed = validation
    for (i, c) in curves.iter().enumerate() {
        ctx.set_fill_style_str(c.colour);
        let _ = ctx.fill_text(&c.label, PAD + 8.0, PAD / 2.0 + 14.0 * (i as f64 + 1.0));
    }
    ctx.set_fill_style_str("#555");
    let _ = ctx.fill_text("solid: train · dashed: validation", WIDTH - 230.0, PAD / 2.0 + 4.0);
    if let Some(hx) = hover {
        ctx.set_stroke_style_str("#bbb");
        ctx.begin_path();
        ctx.move_to(hx, PAD / 2.0);
        ctx.line_to(hx, HEIGHT - PAD);
        ctx.stroke();
    }
}

/// The value of `points` at the last step ≤ `step`.
fn at(points: &[(usize, f64)], step: f64) -> Option<(usize, f64)> {
    points.iter().rev().find(|(s, _)| *s as f64 <= step).or(points.first()).copied()
}

fn curves(lab: Lab, runs: &[RunView], alpha: f64, thin_to: Option<usize>) -> Vec<Curve> {
    let labels = lab.labels();
    runs.iter()
        .filter(|r| r.visible.get())
        .map(|r| {
            let train = r.train.with(|t| smooth(t, alpha));
            let val = r.val.with(|v| smooth(v, 0.0));
            let (train, val) = match thin_to {
                Some(n) => (thin(train, n), thin(val, n)),
                None => (train, val),
            };
            Curve {
                colour: r.colour,
                label: label_in(&labels, r.id),
                train,
                val,
            }
        })
        .collect()
}

/// A shown run's latest points for [`summary`]: its label, (step, training loss) and (step,
/// validation loss).
type Latest = (String, Option<(usize, f32)>, Option<(usize, f32)>);

/// What the chart says to a screen reader (its `aria-label`): each shown run's latest losses.
fn summary(runs: &[Latest]) -> String {
    let lines: Vec<String> = runs
        .iter()
        .filter_map(|(label, train, val)| {
            let (step, train) = (*train)?;
            let val = val.map(|(vs, v)| format!(", validation {v:.3} (step {vs})")).unwrap_or_default();
            Some(format!("{label} at step {step}: training {train:.3}{val}"))
        })
        .collect();
    if lines.is_empty() { "Loss curves: no run has trained yet".to_string() } else { format!("Loss curves. {}", lines.join("; ")) }
}

#[component]
pub fn LossChart(lab: Lab) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let hover = RwSignal::new(None::<f64>);
    let x_max = move || {
        lab.runs.with(|runs| {
            runs.iter()
                .filter(|r| r.visible.get())
                .map(|r| r.steps.get().max(r.train.with(|t| t.last().map_or(0, |(s, _)| s + 1))))
                .max()
                .unwrap_or(1)
                .max(1) as f64
        })
    };
    Effect::new(move |_| {
        let runs = lab.runs.get();
        let cs = curves(lab, &runs, lab.smoothing.get(), Some(2 * WIDTH as usize));
        let (x_max, log_x, hover) = (x_max(), lab.log_x.get(), hover.get());
        if let Some(canvas) = canvas.get() {
            draw(&canvas, &cs, x_max, log_x, hover);
        }
    });
    let points = move || lab.runs.with(|runs| runs.iter().map(|r| r.train.with(Vec::len).to_string()).collect::<Vec<_>>().join(","));
    // whether the shown runs' losses score different tasks (their objective mixes differ)
    let mixed_objectives = move || {
        let mixes: Vec<String> = lab.runs.with(|runs| {
            runs.iter().filter(|r| r.visible.get()).map(|r| r.spec.with_value(|s| objective_mix_text(&s.runs[0].objectives))).collect()
        });
        mixes.iter().any(|m| *m != mixes[0])
    };
    let latest = move || {
        let labels = lab.labels();
        let runs: Vec<Latest> = lab.runs.with(|runs| {
            runs.iter()
                .filter(|r| r.visible.get())
                .map(|r| {
                    let label = label_in(&labels, r.id);
                    (label, r.train.with(|t| t.last().copied()), r.val.with(|v| v.last().copied()))
                })
                .collect()
        });
        summary(&runs)
    };
    let visible = move || lab.runs.with(|runs| runs.iter().filter(|r| r.visible.get() && r.train.with(|t| !t.is_empty())).count());
    let readout = move || {
        let hx = hover.get()?;
        let step = step_of(hx, x_max(), lab.log_x.get());
        let runs = lab.runs.get();
        let lines: Vec<String> = curves(lab, &runs, lab.smoothing.get(), None)
            .iter()
            .filter_map(|c| {
                let (s, l) = at(&c.train, step)?;
                let val = at(&c.val, step).map(|(vs, v)| format!(", validation {v:.4} (step {vs})")).unwrap_or_default();
                Some(format!("{}: train {l:.4} (step {s}){val}", c.label))
            })
            .collect();
        Some(format!("step ≈ {}: {}", step.round() as usize, lines.join(" · ")))
    };
    // The keyboard reads the chart as the pointer does: focused, ← and → move the readout by a
    // fiftieth of the chart (Home and End to its ends), Escape hides it.
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let (left, right) = (PAD, WIDTH - PAD);
        let at = hover.get_untracked().unwrap_or(right);
        let stride = (right - left) / 50.0;
        let next = match ev.key().as_str() {
            "ArrowLeft" => Some((at - stride).max(left)),
            "ArrowRight" => Some((at + stride).min(right)),
            "Home" => Some(left),
            "End" => Some(right),
            "Escape" => None,
            _ => return,
        };
        ev.prevent_default();
        hover.set(next);
    };
    let on_move = move |ev: web_sys::MouseEvent| {
        let Some(c) = canvas.get_untracked() else { return };
        let rect = AsRef::<web_sys::Element>::as_ref(&c).get_bounding_client_rect();
        let scale = WIDTH / rect.width().max(1.0);
        hover.set(Some((ev.client_x() as f64 - rect.left()) * scale));
    };
    view! {
        <section class="chart">
            <h2>"Loss"</h2>
            <div class="chart-options">
                <label><input type="checkbox" data-testid="log-x" prop:checked=move || lab.log_x.get()
                    on:change=move |_| lab.log_x.update(|v| *v = !*v) />" log steps"</label>
                <label title="exponential moving average of the training loss">" smoothing "
                    <input type="range" data-testid="smoothing" min="0" max="0.99" step="0.01"
                        prop:value=move || lab.smoothing.get().to_string()
                        on:input=move |ev| lab.smoothing.set(event_target_value(&ev).parse::<f64>().unwrap_or(0.0).clamp(0.0, 0.99)) />
                    <span>{move || format!("{:.2}", lab.smoothing.get())}</span>
                </label>
                <CurvesDownload lab=lab />
            </div>
            <canvas data-testid="loss-chart" node_ref=canvas width=WIDTH.to_string() height=HEIGHT.to_string()
                role="img" aria-label=latest
                data-curves=move || visible().to_string() data-points=points
                tabindex="0" on:keydown=on_key
                on:mousemove=on_move on:mouseleave=move |_| hover.set(None)></canvas>
            <Show when=mixed_objectives>
                <p class="hint" data-testid="loss-caveat">
                    "These runs train on different objectives, so their losses score different tasks (a masked token, the next one, a replaced-or-not bit…): "
                    "compare each curve's shape, not their heights. The probe and CKA below compare what they learned on one footing."
                </p>
            </Show>
            <p class="readout" data-testid="loss-readout" aria-live="polite">
                {move || readout().unwrap_or_else(|| "hover over the chart (or focus it and press ← →) to read every run at one step".into())}
            </p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_reader_hears_each_runs_latest_losses() {
        assert_eq!(summary(&[]), "Loss curves: no run has trained yet");
        let runs = [
            ("causal_lm".to_string(), Some((580, 2.13171)), Some((500, 2.2572))),
            ("masked_lm".to_string(), Some((20, 4.0)), None),
            ("span".to_string(), None, None),
        ];
        assert_eq!(
            summary(&runs),
            "Loss curves. causal_lm at step 580: training 2.132, validation 2.257 (step 500); masked_lm at step 20: training 4.000"
        );
    }

    #[test]
    fn smoothing_is_debiased_and_zero_is_the_raw_curve() {
        let raw = [(0, 4.0), (1, 2.0), (2, 3.0)];
        assert_eq!(smooth(&raw, 0.0), vec![(0, 4.0), (1, 2.0), (2, 3.0)]);
        let s = smooth(&raw, 0.9);
        assert!((s[0].1 - 4.0).abs() < 1e-9, "the first point is not pulled towards 0");
        assert!(s[1].1 < 4.0 && s[1].1 > 2.0);
        let long: Vec<(usize, f64)> = (0..10_000).map(|i| (i, 1.0)).collect();
        let t = thin(long, 1440);
        assert!(t.len() <= 1441 && t.last() == Some(&(9999, 1.0)));
    }
}
