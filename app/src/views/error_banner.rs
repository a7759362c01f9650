//! Every problem the page or the worker reports, in words, in one place.

use leptos::prelude::*;

use crate::lab::Lab;

#[component]
pub fn ErrorBanner(lab: Lab) -> impl IntoView {
    view! {
        <div data-testid="error" class="error" role="alert">
            {move || lab.errors.get().into_iter().map(|e| view! { <p>{e}</p> }).collect_view()}
        </div>
    }
}
