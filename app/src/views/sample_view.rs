//! The latest text the model generated.

use leptos::prelude::*;

use crate::lab::Lab;

#[component]
pub fn SampleView(lab: Lab) -> impl IntoView {
    view! {
        <section class="sample">
            <h2>{move || match lab.sample.get() {
                Some((step, _)) => format!("Sample at step {step}"),
                None => "Sample (every few hundred steps)".to_string(),
            }}</h2>
            <pre data-testid="sample">{move || lab.sample.get().map(|(_, t)| t).unwrap_or_default()}</pre>
        </section>
    }
}
