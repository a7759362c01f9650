//! Training and validation loss on a canvas (one path per curve, not a node per point, so
//! long runs redraw cheaply).

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::CanvasRenderingContext2d;

use crate::lab::Lab;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const PAD: f64 = 44.0;

fn draw(canvas: &web_sys::HtmlCanvasElement, train: &[(usize, f32)], val: &[(usize, f32)], steps: usize) {
    let Some(ctx) = canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        return;
    };
    ctx.clear_rect(0.0, 0.0, WIDTH, HEIGHT);
    let finite = train.iter().chain(val).map(|(_, l)| *l as f64).filter(|l| l.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| (a.min(l), b.max(l)));
    ctx.set_fill_style_str("#555");
    ctx.set_font("12px sans-serif");
    if !lo.is_finite() {
        let _ = ctx.fill_text("the loss curves appear here once training starts", PAD, HEIGHT / 2.0);
        return;
    }
    let (lo, hi) = if hi - lo < 1e-6 { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let x_max = steps.max(train.last().map(|(s, _)| s + 1).unwrap_or(1)).max(1) as f64;
    let x = |s: usize| PAD + (s as f64 / x_max) * (WIDTH - 2.0 * PAD);
    let y = |l: f64| HEIGHT - PAD + (lo - l) / (hi - lo) * (HEIGHT - 2.0 * PAD);
    // axes and labels
    ctx.set_stroke_style_str("#999");
    ctx.begin_path();
    ctx.move_to(PAD, PAD / 2.0);
    ctx.line_to(PAD, HEIGHT - PAD);
    ctx.line_to(WIDTH - PAD / 2.0, HEIGHT - PAD);
    ctx.stroke();
    let _ = ctx.fill_text(&format!("{hi:.2}"), 4.0, y(hi) + 4.0);
    let _ = ctx.fill_text(&format!("{lo:.2}"), 4.0, y(lo) + 4.0);
    let _ = ctx.fill_text("0", PAD, HEIGHT - PAD + 16.0);
    let _ = ctx.fill_text(&format!("step {}", x_max as usize), WIDTH - PAD - 40.0, HEIGHT - PAD + 16.0);
    let line = |points: &[(usize, f32)], color: &str, width: f64| {
        ctx.set_stroke_style_str(color);
        ctx.set_line_width(width);
        ctx.begin_path();
        let mut first = true;
        for (s, l) in points.iter().filter(|(_, l)| l.is_finite()) {
            if first {
                ctx.move_to(x(*s), y(*l as f64));
                first = false;
            } else {
                ctx.line_to(x(*s), y(*l as f64));
            }
        }
        ctx.stroke();
    };
    line(train, "#3b6fd4", 1.0);
    line(val, "#d4573b", 2.0);
    ctx.set_line_width(1.0);
    ctx.set_fill_style_str("#3b6fd4");
    let _ = ctx.fill_text("train", WIDTH - 120.0, PAD / 2.0 + 4.0);
    ctx.set_fill_style_str("#d4573b");
    let _ = ctx.fill_text("validation", WIDTH - 80.0, PAD / 2.0 + 4.0);
}

#[component]
pub fn LossChart(lab: Lab) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let (train, val, steps) = (lab.train.get(), lab.val.get(), lab.steps.get());
        if let Some(canvas) = canvas.get() {
            draw(&canvas, &train, &val, steps);
        }
    });
    view! {
        <section class="chart">
            <h2>"Loss"</h2>
            <canvas data-testid="loss-chart" node_ref=canvas width=WIDTH.to_string() height=HEIGHT.to_string()></canvas>
        </section>
    }
}
