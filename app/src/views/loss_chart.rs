//! Training and validation loss of every run, overlaid on one canvas (one path per curve, not a
//! node per point; a long curve draws at most four points per pixel column, the ones that decide
//! its look, so 6 runs × 10,000 steps redraw in a few milliseconds, ten times a second at most
//! however often losses arrive). Options: log-scaled steps, smoothing (a debiased exponential
//! moving average, as TensorBoard's), each run relative to its first loss (runs on different
//! objectives score different tasks: a masked LM's ~3 and a detector's ~0.3 share no scale, and
//! divided by where each started their shapes compare), and a readout of every run under the
//! cursor.

use leptos::html::Canvas;
use leptos::prelude::*;
use objlab_engine::spec::objective_mix_text;
use super::canvas::{Redraws, draw_axes, fit_box, pixel_ratio, polyline};
use super::curves_download::CurvesDownload;
use crate::lab::{Lab, RUN_COLOURS, RunView, label_in};

/// The chart's width in CSS pixels where it is not laid out (the timing canvas off the page);
/// on the page it is as wide as its section.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const PAD: f64 = 44.0;
/// Least time between two redraws for new losses (the pointer and the options redraw at once).
const DATA_REDRAW_MS: f64 = 100.0;

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

/// The points of a curve that decide how it looks, pixel column by pixel column: each column's
/// first, lowest, highest and last point, in step order (M4: Jugel et al., "M4: A
/// Visualization-Oriented Time Series Data Aggregation", VLDB 2014). A line through them covers
/// the pixels a line through every point would, so a 10,000-step curve draws as at most four
/// points a column, and no spike is skipped (as striding over the points skipped some, and
/// left the first steps of a log-scaled chart a handful of points).
fn per_column(points: &[(usize, f64)], column: impl Fn(usize) -> i64) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    let mut first = 0;
    while first < points.len() {
        let at = column(points[first].0);
        let (mut lowest, mut highest, mut last) = (first, first, first);
        while last + 1 < points.len() && column(points[last + 1].0) == at {
            last += 1;
            if points[last].1 < points[lowest].1 {
                lowest = last;
            }
            if points[last].1 > points[highest].1 {
                highest = last;
            }
        }
        let mut kept = [first, lowest, highest, last];
        kept.sort_unstable();
        let mut previous = None;
        for i in kept {
            if previous != Some(i) {
                out.push(points[i]);
                previous = Some(i);
            }
        }
        first = last + 1;
    }
    out
}

/// What one run contributes to the chart.
struct Curve {
    colour: &'static str,
    label: String,
    train: Vec<(usize, f64)>,
    val: Vec<(usize, f64)>,
    /// Drawn relative to its start: the first training loss both curves were divided by.
    start: Option<f64>,
}

/// Maps steps to x (linear or log) for a chart `width` wide whose last step is `x_max`.
fn x_of(step: f64, x_max: f64, log_x: bool, width: f64) -> f64 {
    let t = if log_x { (step + 1.0).ln() / (x_max + 1.0).ln() } else { step / x_max };
    PAD + t * (width - 2.0 * PAD)
}

fn step_of(x: f64, x_max: f64, log_x: bool, width: f64) -> f64 {
    let t = ((x - PAD) / (width - 2.0 * PAD)).clamp(0.0, 1.0);
    if log_x { (t * (x_max + 1.0).ln()).exp() - 1.0 } else { t * x_max }
}

/// Draws the chart as wide as the page shows it; returns that width (CSS pixels), which the
/// pointer's and the keyboard's readout map back to steps.
fn draw(canvas: &web_sys::HtmlCanvasElement, curves: &[Curve], x_max: f64, log_x: bool, hover: Option<f64>) -> f64 {
    let relative = curves.iter().any(|c| c.start.is_some());
    let Some((ctx, width)) = fit_box(canvas, WIDTH, HEIGHT) else { return WIDTH };
    ctx.clear_rect(0.0, 0.0, width, HEIGHT);
    let all = curves.iter().flat_map(|c| c.train.iter().chain(&c.val)).map(|(_, l)| *l);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| (a.min(l), b.max(l)));
    ctx.set_fill_style_str("#555");
    ctx.set_font("12px sans-serif");
    if !lo.is_finite() {
        let _ = ctx.fill_text("the loss curves appear here once training starts", PAD, HEIGHT / 2.0);
        return width;
    }
    let (lo, hi) = if hi - lo < 1e-6 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let x = |s: usize| x_of(s as f64, x_max, log_x, width);
    let y = |l: f64| HEIGHT - PAD + (lo - l) / (hi - lo) * (HEIGHT - 2.0 * PAD);
    draw_axes(&ctx, width, HEIGHT, PAD);
    // relative: the loss as a multiple of the run's first ("0.62×": 62 % of where it started)
    let unit = if relative { "×" } else { "" };
    let _ = ctx.fill_text(&format!("{hi:.2}{unit}"), 4.0, y(hi) + 4.0);
    let _ = ctx.fill_text(&format!("{lo:.2}{unit}"), 4.0, y(lo) + 4.0);
    let _ = ctx.fill_text(if log_x { "1" } else { "0" }, PAD, HEIGHT - PAD + 16.0);
    let _ = ctx.fill_text(&format!("step {}{}", x_max as usize, if log_x { " (log)" } else { "" }), width - PAD - 70.0, HEIGHT - PAD + 16.0);
    // (the column a step falls in, for `per_column`)
    let column = |s: usize| x(s).floor() as i64;
    let line = |points: &[(usize, f64)], colour: &str, width: f64, dashed: bool| {
        ctx.set_stroke_style_str(colour);
        ctx.set_line_width(width);
        let dash = js_sys::Array::new();
        if dashed {
            dash.push(&6.0.into());
            dash.push(&4.0.into());
        }
        let _ = ctx.set_line_dash(&dash);
        polyline(&ctx, per_column(points, column).iter().map(|(s, l)| (x(*s), y(*l))));
    };
    let hairline = 1.0 / pixel_ratio();
    for c in curves {
        // one device pixel: Skia draws a stroke no wider than a pixel as a hairline, ~8× faster
        // to rasterise than the 1.2 px this was (six noisy curves: 2.3 against 18.5 ms)
        line(&c.train, c.colour, hairline, false);
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
    // legend: one entry per run, solid = train, dashed = validation. Top right, on a pale
    // backing: loss curves start high at the left and end low at the right, so the top-right
    // corner is the one they leave empty (top left, eight runs' names hid their first steps)
    let note = if relative { "solid: train · dashed: validation · × each run's first loss" } else { "solid: train · dashed: validation" };
    let text_width = |t: &str| ctx.measure_text(t).map(|m| m.width()).unwrap_or(7.0 * t.len() as f64);
    let wide = curves.iter().map(|c| text_width(&c.label)).fold(text_width(note), f64::max);
    let right = width - PAD;
    ctx.set_fill_style_str("rgba(255, 255, 255, 0.85)");
    ctx.fill_rect(right - wide - 6.0, PAD / 2.0 - 8.0, wide + 8.0, 14.0 * (curves.len() as f64 + 1.0) + 4.0);
    ctx.set_text_align("right");
    ctx.set_fill_style_str("#555");
    let _ = ctx.fill_text(note, right, PAD / 2.0 + 4.0);
    for (i, c) in curves.iter().enumerate() {
        ctx.set_fill_style_str(c.colour);
        let _ = ctx.fill_text(&c.label, right, PAD / 2.0 + 4.0 + 14.0 * (i as f64 + 1.0));
    }
    ctx.set_text_align("start");
    if let Some(hx) = hover {
        ctx.set_stroke_style_str("#bbb");
        ctx.begin_path();
        ctx.move_to(hx, PAD / 2.0);
        ctx.line_to(hx, HEIGHT - PAD);
        ctx.stroke();
    }
    width
}

/// The value of `points` at the last step ≤ `step`.
fn at(points: &[(usize, f64)], step: f64) -> Option<(usize, f64)> {
    points.iter().rev().find(|(s, _)| *s as f64 <= step).or(points.first()).copied()
}

impl Curve {
    /// A run's curve as drawn: its training losses smoothed with `alpha`, its validation losses
    /// as they are; with `relative`, both divided by the run's first finite training loss
    /// (where that is above 0), so that every run starts at 1.
    fn of(colour: &'static str, label: String, train: &[(usize, f32)], val: &[(usize, f32)], alpha: f64, relative: bool) -> Curve {
        let (mut train, mut val) = (smooth(train, alpha), smooth(val, 0.0));
        let start = train.first().map(|(_, l)| *l).filter(|l| relative && *l > 0.0);
        if let Some(start) = start {
            for (_, l) in train.iter_mut().chain(val.iter_mut()) {
                *l /= start;
            }
        }
        Curve { colour, label, train, val, start }
    }

    /// A loss as the readout gives it: the value, and relative to the start where drawn so.
    fn read(&self, l: f64) -> String {
        match self.start {
            Some(start) => format!("{:.4}, {l:.3}× its start", l * start),
            None => format!("{l:.4}"),
        }
    }
}

fn curves(lab: Lab, runs: &[RunView], alpha: f64) -> Vec<Curve> {
    let labels = lab.labels();
    let relative = lab.relative.get();
    runs.iter()
        .filter(|r| r.visible.get())
        .map(|r| r.train.with(|t| r.val.with(|v| Curve::of(r.colour, label_in(&labels, r.id), t, v, alpha, relative))))
        .collect()
}

/// How long the chart took to redraw, as [`time_redraws`] measured it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RedrawTiming {
    pub runs: usize,
    pub points: usize,
    pub redraws: usize,
    pub median_ms: f64,
    pub worst_ms: f64,
}

/// (step, loss) pairs, as a run's curves keep them.
type Losses = Vec<(usize, f32)>;

/// Training losses shaped like a run's (a fast fall, then a slow one, with step-to-step noise)
/// at every step below `points`, and a validation loss every 250 steps; `run` shifts the curve.
fn synthetic_losses(run: usize, points: usize) -> (Losses, Losses) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (run as u64 + 1);
    let mut noise = move || {
        // xorshift64: uniform in [-0.5, 0.5)
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let loss = |step: usize| 1.3 + 0.1 * run as f32 + 2.9 * (-(step as f32) / 1500.0).exp();
    let train = (0..points).map(|s| (s, loss(s) + 0.3 * noise())).collect();
    let val = (0..points).step_by(250).map(|s| (s, loss(s) + 0.05)).collect();
    (train, val)
}

/// Resolves in a later task, so that the page handles its events in between.
async fn next_task() {
    let promise = js_sys::Promise::new(&mut |resolve, _| match web_sys::window() {
        Some(w) if w.set_timeout_with_callback(&resolve).is_ok() => {}
        _ => {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Times the chart's redraw with `runs` runs of `points` training losses each, the load issue 4
/// asks to redraw without jank (6 × 10,000): the same smoothing, decimation and drawing as the
/// chart on the page, on a canvas of its size off the page, `redraws` times, each in a task of
/// its own (the page stays responsive) and with other options (smoothing, log steps, the
/// readout's line), as a user changing them would redraw it. Each time includes rasterising the
/// drawing: reading one pixel back makes the canvas draw what it was told. `None` without a
/// window (not in a browser).
pub async fn time_redraws(runs: usize, points: usize, redraws: usize) -> Option<RedrawTiming> {
    use wasm_bindgen::JsCast;
    let window = web_sys::window()?;
    let performance = window.performance()?;
    let canvas: web_sys::HtmlCanvasElement = window.document()?.create_element("canvas").ok()?.dyn_into().ok()?;
    let (ctx, _) = fit_box(&canvas, WIDTH, HEIGHT)?;
    let losses: Vec<_> = (0..runs).map(|r| synthetic_losses(r, points)).collect();
    let mut times = Vec::with_capacity(redraws);
    for i in 0..redraws {
        next_task().await;
        let (alpha, log_x, hover) = ([0.0, 0.6, 0.9, 0.99][i % 4], i % 2 == 1, (i % 3 == 0).then_some(WIDTH / 2.0));
        let start = performance.now();
        let curves: Vec<Curve> = losses
            .iter()
            .enumerate()
            .map(|(r, (train, val))| Curve::of(RUN_COLOURS[r % RUN_COLOURS.len()], format!("run {}", r + 1), train, val, alpha, i % 5 == 4))
            .collect();
        draw(&canvas, &curves, points as f64, log_x, hover);
        let _ = ctx.get_image_data(0.0, 0.0, 1.0, 1.0);
        times.push(performance.now() - start);
    }
    times.sort_by(f64::total_cmp);
    Some(RedrawTiming { runs, points, redraws, median_ms: *times.get(redraws / 2)?, worst_ms: *times.last()? })
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
    // the width the chart was last drawn at (CSS pixels): its section's, which the window sets
    let width = StoredValue::new(WIDTH);
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
    let redraw = move || {
        let runs = lab.runs.get();
        let cs = curves(lab, &runs, lab.smoothing.get());
        let (x_max, log_x, hover) = (x_max(), lab.log_x.get(), hover.get());
        if let Some(canvas) = canvas.get() {
            width.set_value(draw(&canvas, &cs, x_max, log_x, hover));
        }
    };
    // The losses arrive in up to hundreds of messages a second (a message per run and step for
    // `tiny`): the chart redraws ten times a second at most for them, once however many came,
    // and at the next frame for the pointer and the options. (Redrawn for every message, six
    // `tiny` runs had brought the page down to 16 frames/s by 3,000 points each; redrawn every
    // frame, it took a sixth of a core from the runs at 10,000.) Tracked by the two effects:
    // everything `redraw` reads.
    let redraws = Redraws::new(DATA_REDRAW_MS);
    Effect::new(move |_| {
        lab.runs.with(|runs| {
            for r in runs {
                r.visible.track();
                r.train.track();
                r.val.track();
                r.steps.track();
            }
        });
        redraws.ask(false, move || untrack(redraw));
    });
    Effect::new(move |_| {
        lab.smoothing.track();
        lab.log_x.track();
        lab.relative.track();
        hover.track();
        canvas.track();
        lab.layout.track();
        redraws.ask(true, move || untrack(redraw));
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
        let step = step_of(hx, x_max(), lab.log_x.get(), width.get_value());
        let runs = lab.runs.get();
        let lines: Vec<String> = curves(lab, &runs, lab.smoothing.get())
            .iter()
            .filter_map(|c| {
                let (s, l) = at(&c.train, step)?;
                let val = at(&c.val, step).map(|(vs, v)| format!(", validation {} (step {vs})", c.read(v))).unwrap_or_default();
                Some(format!("{}: train {} (step {s}){val}", c.label, c.read(l)))
            })
            .collect();
        Some(format!("step ≈ {}: {}", step.round() as usize, lines.join(" · ")))
    };
    // The keyboard reads the chart as the pointer does: focused, ← and → move the readout by a
    // fiftieth of the chart (Home and End to its ends), Escape hides it.
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let (left, right) = (PAD, width.get_value() - PAD);
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
        // (drawn in CSS pixels at the width shown: a pointer's offset is the chart's x)
        let scale = width.get_value() / rect.width().max(1.0);
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
                <label title="each run's losses divided by its first training loss: runs whose objectives score different tasks compare by shape">
                    <input type="checkbox" data-testid="relative" prop:checked=move || lab.relative.get()
                        on:change=move |_| lab.relative.update(|v| *v = !*v) />" relative to each run's start"</label>
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
                    "compare each curve's shape, not their heights (tick “relative to each run's start” to draw each from 1). The probe and CKA below compare what they learned on one footing."
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
    fn the_timed_curves_look_like_training() {
        let (train, val) = synthetic_losses(2, 10_000);
        assert_eq!(train.len(), 10_000);
        assert_eq!(val.len(), 40);
        assert!(train.iter().enumerate().all(|(i, (s, l))| *s == i && l.is_finite() && *l > 1.0 && *l < 5.0));
        let mean = |p: &[(usize, f32)]| p.iter().map(|(_, l)| l).sum::<f32>() / p.len() as f32;
        assert!(mean(&train[..100]) > mean(&train[9_900..]) + 2.0, "the loss falls");
        assert_ne!(synthetic_losses(3, 100).0, synthetic_losses(2, 100).0, "each run its own curve");
    }

    #[test]
    fn relative_curves_start_at_one_and_keep_their_shape() {
        let train = [(0, 4.0), (1, 2.0), (2, 3.0)];
        let val = [(2, 2.5)];
        let c = Curve::of("#000", "run".into(), &train, &val, 0.0, true);
        assert_eq!(c.start, Some(4.0));
        assert_eq!(c.train, vec![(0, 1.0), (1, 0.5), (2, 0.75)]);
        assert_eq!(c.val, vec![(2, 0.625)], "validation divided by the same first training loss");
        assert_eq!(c.read(0.5), "2.0000, 0.500× its start");
        let plain = Curve::of("#000", "run".into(), &train, &val, 0.0, false);
        assert_eq!((plain.start, plain.train[1], plain.read(2.0)), (None, (1, 2.0), "2.0000".to_string()));
        // a first loss of 0 (or none yet) leaves the curve as it is
        assert_eq!(Curve::of("#000", "run".into(), &[(0, 0.0), (1, 1.0)], &[], 0.0, true).start, None);
    }

    #[test]
    fn smoothing_is_debiased_and_zero_is_the_raw_curve() {
        let raw = [(0, 4.0), (1, 2.0), (2, 3.0)];
        assert_eq!(smooth(&raw, 0.0), vec![(0, 4.0), (1, 2.0), (2, 3.0)]);
        let s = smooth(&raw, 0.9);
        assert!((s[0].1 - 4.0).abs() < 1e-9, "the first point is not pulled towards 0");
        assert!(s[1].1 < 4.0 && s[1].1 > 2.0);
    }

    #[test]
    fn a_long_curve_draws_the_points_that_decide_each_pixel_column() {
        // 10,000 noisy steps over 632 columns, one spike in the middle
        let mut noisy: Vec<(usize, f64)> = (0..10_000).map(|i| (i, 2.0 + ((i * 7919) % 13) as f64 / 13.0)).collect();
        noisy[5_003].1 = 9.0;
        let column = |s: usize| (s as f64 * 632.0 / 10_000.0).floor() as i64;
        let drawn = per_column(&noisy, column);
        assert!(drawn.len() <= 4 * 633, "{}", drawn.len());
        assert_eq!((drawn[0], *drawn.last().unwrap()), (noisy[0], noisy[9_999]), "the ends stay");
        assert!(drawn.contains(&(5_003, 9.0)), "the spike stays");
        assert!(drawn.windows(2).all(|w| w[0].0 < w[1].0), "in step order, none twice");
        // each column keeps its first, lowest, highest and last point
        for c in [0, 100, 631] {
            let all: Vec<_> = noisy.iter().filter(|p| column(p.0) == c).collect();
            let kept: Vec<_> = drawn.iter().filter(|p| column(p.0) == c).collect();
            let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
            assert_eq!((kept[0], kept.last().unwrap()), (all[0], all.last().unwrap()));
            assert!(kept.iter().any(|p| p.1 == lo) && kept.iter().any(|p| p.1 == hi) && kept.len() <= 4);
        }
        // a short curve, a column per point: every point
        let short: Vec<(usize, f64)> = (0..50).map(|i| (i, i as f64)).collect();
        assert_eq!(per_column(&short, |s| s as i64 * 12), short);
        assert!(per_column(&[], column).is_empty());
    }
}
