//! The selected run's latest generated text (for objectives that train a left-to-right
//! generator), and, for conditional training, how many bad words the sample contains. On the
//! digits the text is images, and drawn as such.

use leptos::prelude::*;
use objlab_engine::objectives::find;

use super::pixel_image::TextImages;
use crate::lab::Lab;

#[component]
pub fn SampleView(lab: Lab) -> impl IntoView {
    // the selected run's objectives (the controls' before any run), not the controls' alone:
    // they may already show the next run's experiment
    let generates = move || lab.selected_spec().runs[0].objectives.iter().any(|o| find(&o.id).map(|f| f.info().generates).unwrap_or(false));
    let sample = move || lab.selected_run().and_then(|r| r.sample.get());
    let bad_words = move || lab.selected_run().and_then(|r| r.sample_bad_words.get());
    let of_run = move || lab.heading_run_suffix();
    let images = move || lab.selected_spec().corpus == objlab_engine::digits::NAME;
    view! {
        <section class="sample">
            <h2 data-testid="sample-heading">{move || match sample() {
                Some((step, _)) => format!("Sample at step {step}{}", of_run()),
                None if generates() => {
                    let train = lab.selected_spec().train;
                    format!("{}{}", waiting_heading(train.sample_every, train.steps), of_run())
                }
                None => format!("Sample{}", of_run()),
            }}</h2>
            <Show when=move || !generates()>
                <p class="hint" data-testid="sample-hint">"This objective does not train a left-to-right generator, so the lab shows no text samples; watch the loss and what the model sees instead."</p>
            </Show>
            <p data-testid="bad-word-rate">{move || bad_words().map(|(hits, words)| format!(
                "bad words in this sample (generated after <good>): {hits} of {words} words ({:.1}%)",
                if words == 0 { 0.0 } else { 100.0 * hits as f64 / words as f64 }
            ))}</p>
            <Show when=images fallback=move || view! {
                <pre data-testid="sample">{move || sample().map(|(_, t)| t).unwrap_or_default()}</pre>
            }>
                {move || sample().map(|(_, t)| view! { <TextImages text=t testid="sample-images" /> })}
            </Show>
        </section>
    }
}

/// The heading before a run's first sample: when it will come (the worker writes one every
/// `sample_every` steps and at the last step; none where `sample_every` is 0).
fn waiting_heading(sample_every: usize, steps: usize) -> String {
    match sample_every {
        0 => "Sample (none: this experiment sets sample_every=0)".to_string(),
        n if n >= steps => format!("Sample (at the last step, {steps})"),
        n => format!("Sample (every {n} steps: the first at step {n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::waiting_heading;

    #[test]
    fn the_heading_says_when_the_first_sample_comes() {
        assert_eq!(waiting_heading(500, 2000), "Sample (every 500 steps: the first at step 500)");
        assert_eq!(waiting_heading(500, 300), "Sample (at the last step, 300)");
        assert_eq!(waiting_heading(0, 300), "Sample (none: this experiment sets sample_every=0)");
    }
}
