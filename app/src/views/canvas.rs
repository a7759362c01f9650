//! Small helpers shared by the canvas views (charts, projections, heat maps): the 2-D context
//! and chart axes. Canvases draw one path per curve instead of a DOM node per point, so long
//! curves and many runs redraw cheaply.

use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// The canvas's 2-D drawing context.
pub fn context_2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
}

/// Makes `canvas` sharp at the width the page lays it out (`width: 100%` of its section) and
/// `height` CSS pixels, and returns its context and that width: the canvases whose drawing
/// follows their box (the charts). Off the page (no layout) it draws `before_layout` wide.
///
/// A canvas whose backing pixels are fixed is stretched to its box, and on a screen of two
/// device pixels per CSS pixel (most laptops and phones) to twice its pixels: its lines and
/// 12 px labels came out blurred, and on a phone, drawn for 720 px and shown at 360, 6 px high.
pub fn fit_box(canvas: &HtmlCanvasElement, before_layout: f64, height: f64) -> Option<(CanvasRenderingContext2d, f64)> {
    let width = match canvas.client_width() {
        0 => before_layout,
        laid_out => laid_out as f64,
    };
    fit(canvas, width, height).map(|ctx| (ctx, width))
}

/// Makes `canvas` sharp at a fixed `width` × `height` CSS pixels (a square projection: its
/// points keep their aspect ratio), and returns its context. The canvas's CSS width is set to
/// `width`, so that its box does not grow with the larger backing store; a narrower screen
/// shrinks it (`max-width: 100%`).
pub fn fit_fixed(canvas: &HtmlCanvasElement, width: f64, height: f64) -> Option<CanvasRenderingContext2d> {
    let _ = web_sys::HtmlElement::style(canvas).set_property("width", &format!("{width}px"));
    fit(canvas, width, height)
}

/// Device pixels per CSS pixel on this screen (1 off the page; 2 on most laptops and phones; a
/// zoom changes it). A line `1.0 / pixel_ratio()` wide in a fitted canvas is one device pixel,
/// which Skia draws as a hairline, many times faster than a wider stroke.
pub fn pixel_ratio() -> f64 {
    web_sys::window().map_or(1.0, |w| w.device_pixel_ratio()).clamp(1.0, 4.0)
}

/// The backing store `width` × `height` CSS pixels times the screen's device pixel ratio, and
/// the context scaled so that one unit of drawing is one CSS pixel.
fn fit(canvas: &HtmlCanvasElement, width: f64, height: f64) -> Option<CanvasRenderingContext2d> {
    let ratio = pixel_ratio();
    let (w, h) = ((width * ratio).round() as u32, (height * ratio).round() as u32);
    // (setting either, even to its value, clears the canvas and its context's state)
    if canvas.width() != w {
        canvas.set_width(w);
    }
    if canvas.height() != h {
        canvas.set_height(h);
    }
    let ctx = context_2d(canvas)?;
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    Some(ctx)
}

/// A signal that changes whenever the window's size or pixel ratio does (browser zoom fires
/// `resize` too), for the fitted canvases to redraw at the new size. Made once, for the page
/// ([`crate::lab::Lab::layout`]), so that one listener serves every canvas.
pub fn layout_changes() -> ReadSignal<u32> {
    let (read, write) = signal(0u32);
    let handle = window_event_listener(leptos::ev::resize, move |_| write.update(|n| *n += 1));
    on_cleanup(move || handle.remove());
    read
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

/// When a canvas redraws: at the next animation frame after a change the user makes (the
/// pointer, an option), and at the first frame `gap_ms` after its last redraw for data that
/// streams in. However often it is asked between two redraws, it redraws once, and `draw` reads
/// what is current then. A hidden tab redraws when it is shown again; without a window (not in
/// a browser) nothing is drawn.
#[derive(Clone, Copy)]
pub struct Redraws {
    state: StoredValue<Asked>,
    gap_ms: f64,
}

#[derive(Clone, Copy, Default)]
struct Asked {
    /// A frame is requested.
    waiting: bool,
    /// For the user: redraw at the next frame.
    soon: bool,
    /// For new data: redraw `gap_ms` after the last redraw.
    data: bool,
    /// The last redraw's frame time, ms.
    last_ms: f64,
}

impl Redraws {
    pub fn new(gap_ms: f64) -> Self {
        Redraws { state: StoredValue::new(Asked::default()), gap_ms }
    }

    /// Asks for a redraw: at the next frame if `soon`, else once `gap_ms` have passed.
    pub fn ask(self, soon: bool, draw: impl Fn() + 'static) {
        // (a chart removed meanwhile has disposed of `state`: the `try_`s leave it be)
        let Some(mut asked) = self.state.try_get_value() else { return };
        if soon {
            asked.soon = true;
        } else {
            asked.data = true;
        }
        let waiting = asked.waiting;
        asked.waiting = true;
        self.state.set_value(asked);
        if !waiting {
            self.at_next_frame(Rc::new(draw));
        }
    }

    fn at_next_frame(self, draw: Rc<dyn Fn()>) {
        let frame = Closure::once_into_js(move |now_ms: f64| {
            let Some(asked) = self.state.try_get_value() else { return };
            if asked.soon || (asked.data && now_ms - asked.last_ms >= self.gap_ms) {
                let _ = self.state.try_set_value(Asked { last_ms: now_ms, ..Asked::default() });
                draw();
            } else {
                self.at_next_frame(draw);
            }
        });
        let asked = web_sys::window().map(|w| w.request_animation_frame(frame.unchecked_ref()));
        if !matches!(asked, Some(Ok(_))) {
            let _ = self.state.try_update_value(|a| a.waiting = false);
        }
    }
}
