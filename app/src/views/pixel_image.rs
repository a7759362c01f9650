//! Tokens of the digits corpus drawn as the 8×8 images they are (`objlab_engine::digits`): a
//! generated sample, and what the model reads, is scored on and answers in "what the model
//! sees". Each cell is a pixel's grey level; a cell without a pixel (a masked or replaced
//! token, a sentinel, nothing scored there) takes its mark's colour or stays empty.

use leptos::prelude::*;
use objlab_engine::digits::{PIXELS, SIDE, ink};

/// One cell of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// How dark the pixel is (0 background, 1 full ink); `None` where the cell holds no pixel.
    pub ink: Option<f32>,
    /// CSS class of a cell to single out (a mark such as `mark-masked`, or `right` / `wrong`).
    pub class: &'static str,
    /// What the cell shows, on hover.
    pub title: String,
}

impl Cell {
    pub fn empty() -> Self {
        Self { ink: None, class: "", title: String::new() }
    }

    /// The cell of token text `token`, marked with `class`.
    pub fn of(token: &str, class: &'static str) -> Self {
        Self { ink: ink(token), class, title: token.to_string() }
    }
}

/// The images a text of the digits corpus holds, from its cells (their titles the tokens, so a
/// new line is the cell titled `"\n"`), each cell keeping its mark: the engine's rule
/// ([`objlab_engine::digits::split_images`]), which `objlab train` draws by too.
pub fn images_of_cells(cells: Vec<Cell>) -> Vec<Vec<Cell>> {
    objlab_engine::digits::split_images(cells, |c| c.title == "\n")
}

/// One image: up to 64 cells in rows of 8 (missing cells drawn empty), and its caption. A
/// `heat` image draws each cell's `ink` in blue (an attention weight, not a grey level);
/// `on_pick`, where given, is called with the pixel a click lands on.
#[component]
pub fn PixelImage(
    cells: Vec<Cell>,
    caption: String,
    #[prop(optional)] testid: &'static str,
    #[prop(optional)] heat: bool,
    #[prop(optional)] on_pick: Option<Callback<usize>>,
    #[prop(optional)] cursor: Option<usize>,
) -> impl IntoView {
    let filled = cells.iter().filter(|c| c.ink.is_some()).count();
    let label = format!("{caption}: an {SIDE}×{SIDE} image, {filled} of {PIXELS} pixels");
    let mut cells = cells;
    cells.resize(PIXELS, Cell::empty());
    view! {
        <figure class="pixel-figure">
            <div class=if on_pick.is_some() { "pixels pickable" } else { "pixels" } role="img" aria-label=label data-testid=if testid.is_empty() { "pixel-image" } else { testid } data-pixels=filled>
                {cells.into_iter().take(PIXELS).enumerate().map(|(p, c)| {
                    let style = c.ink.map(|v| {
                        let g = (255.0 * (1.0 - v)).round() as u8;
                        if heat { format!("background:rgb({g},{g},255)") } else { format!("background:rgb({g},{g},{g})") }
                    });
                    let mut class = if c.class.is_empty() { "px".to_string() } else { format!("px {}", c.class) };
                    if cursor == Some(p) {
                        class.push_str(" cursor");
                    }
                    let pick = move |_| {
                        if let Some(f) = on_pick {
                            f.run(p);
                        }
                    };
                    view! { <span class=class style=style title=c.title on:click=pick></span> }
                }).collect_view()}
            </div>
            <figcaption>{caption}</figcaption>
        </figure>
    }
}

/// Where a key moves a keyboard cursor at pixel `p` of an image of `len` pixels (arrows by a
/// pixel or a row, Home and End to the first and last); `None` for another key or off the image.
pub fn moved(p: usize, key: &str, len: usize) -> Option<usize> {
    let to = match key {
        "ArrowLeft" => p.checked_sub(1)?,
        "ArrowRight" => p + 1,
        "ArrowUp" => p.checked_sub(SIDE)?,
        "ArrowDown" => p + SIDE,
        "Home" => 0,
        "End" => len.checked_sub(1)?,
        _ => return None,
    };
    (to < len).then_some(to)
}

/// The images a text of the digits holds ([`images_of_cells`]), side by side, numbered; its
/// first `given` characters (what a model was given to continue) drawn faintly.
#[component]
pub fn TextImages(text: String, testid: &'static str, #[prop(optional)] given: usize) -> impl IntoView {
    let cells = text.chars().enumerate().map(|(k, c)| Cell::of(&c.to_string(), if k < given { "given" } else { "" })).collect();
    view! {
        <div class="pixel-row" data-testid=testid>
            {images_of_cells(cells).into_iter().enumerate().map(|(i, cells)| view! {
                <PixelImage cells=cells caption=format!("image {}", i + 1) />
            }).collect_view()}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_of_text(text: &str) -> Vec<Vec<Cell>> {
        images_of_cells(text.chars().map(|c| Cell::of(&c.to_string(), "")).collect())
    }

    #[test]
    fn keys_move_a_cursor_by_a_pixel_or_a_row_and_stay_on_the_image() {
        assert_eq!(moved(9, "ArrowRight", 64), Some(10));
        assert_eq!(moved(9, "ArrowDown", 64), Some(17));
        assert_eq!(moved(9, "ArrowUp", 64), Some(1));
        assert_eq!(moved(3, "ArrowUp", 64), None, "no row above the first");
        assert_eq!(moved(0, "ArrowLeft", 64), None);
        assert_eq!(moved(60, "ArrowDown", 64), None, "no row below the last");
        assert_eq!(moved(31, "ArrowRight", 32), None, "half an image ends at its 32nd pixel");
        assert_eq!((moved(20, "Home", 64), moved(20, "End", 32)), (Some(0), Some(31)));
        assert_eq!(moved(5, "Enter", 64), None);
    }

    #[test]
    fn a_sample_splits_into_images_at_new_lines() {
        let image: String = "·░▒▓█".chars().cycle().take(64).collect();
        let images = images_of_text(&format!("\n{image}\n{}", &image.chars().take(10).collect::<String>()));
        assert_eq!(images.iter().map(Vec::len).collect::<Vec<_>>(), [64, 10]);
        assert_eq!(images[0][0].ink, Some(0.0));
        assert_eq!(images[0][4].ink, Some(1.0));
        // an image the model did not end runs over into the next; pixels before any new line
        // are an image too
        let long: String = image.repeat(2) + "··";
        assert_eq!(images_of_text(&format!("▓▓\n{long}")).iter().map(Vec::len).collect::<Vec<_>>(), [2, 64, 64, 2]);
        assert_eq!(images_of_text("\n\n").len(), 1, "an image the model ended at once is empty");
        assert_eq!(images_of_text(&format!("\n{image}\n")).len(), 1, "nothing after the last new line");
    }
}
