//! Small helpers shared by the canvas views (charts, projections, heat maps): the 2-D context
//! and chart axes. Canvases draw one path per curve instead of a DOM node per point, so long
//! curves and many runs redraw cheaply.

use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// The canvas's 2-D drawing context.
pub fn context_2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
}

/// Left and bottom axes of a `width` × `height` chart with margin `pad`.
pub fn draw_axes(ctx: &CanvasRenderingContext2d, width: f64, height: f64, pad: f64) {
    ctx.set_stroke_style_str("#999");
    ctx.set_line_width(1.0);
    ctx.begin_path();
    ctx.move_to(pad, pad / 2.0);
    ctx.line_to(pad, height - pad);
    ctx.line_to(width - pad / 2.0, height - pad);
    ctx.stroke();
    ctx.set_fill_style_str("#555");
    ctx.set_font("12px sans-serif");
}

/// One stroked path through `points` (canvas coordinates).
pub fn polyline(ctx: &CanvasRenderingContext2d, points: impl IntoIterator<Item = (f64, f64)>) {
    ctx.begin_path();
    for (i, (x, y)) in points.into_iter().enumerate() {
        if i == 0 {
            ctx.move_to(x, y);
        } else {
            ctx.line_to(x, y);
        }
    }
    ctx.stroke();
}
