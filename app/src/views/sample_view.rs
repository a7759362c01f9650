//! The latest text the model generated (for objectives that train a left-to-right generator),
//! and, for conditional training, how many bad words the sample contains.

use leptos::prelude::*;
use objlab_engine::objectives::find;

use crate::lab::Lab;

#[component]
pub fn SampleView(lab: Lab) -> impl IntoView {
    let generates = move || lab.spec.get().runs[0].objectives.iter().any(|o| find(&o.id).map(|f| f.info().generates).unwrap_or(false));
    view! {
        <section class="sample">
            <h2>{move || match lab.sample.get() {
                Some((step, _)) => format!("Sample at step {step}"),
                None if generates() => "Sample (every few hundred steps)".to_string(),
                None => "Sample".to_string(),
            }}</h2>
            <Show when=move || !generates()>
                <p class="hint">"This objective does not train a left-to-right generator, so the lab shows no text samples; watch the loss and what the model sees instead."</p>
            </Show>
            <p data-testid="bad-word-rate">{move || lab.sample_bad_words.get().map(|(hits, words)| format!(
                "bad words in this sample (generated after <good>): {hits} of {words} words ({:.1}%)",
                if words == 0 { 0.0 } else { 100.0 * hits as f64 / words as f64 }
            ))}</p>
            <pre data-testid="sample">{move || lab.sample.get().map(|(_, t)| t).unwrap_or_default()}</pre>
        </section>
    }
}
