//! "copy link": the page's address holds the experiment and every run side by side (see
//! `Lab::write_address`), so sharing a workspace is sharing the address. The button copies it;
//! where the browser refuses the clipboard (no permission, an insecure page), the address is
//! shown selected, to copy by hand.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;

use crate::lab::Lab;

#[component]
pub fn ShareLink(lab: Lab) -> impl IntoView {
    // Ok(()) once copied; Err(address) where it has to be copied by hand
    let result = RwSignal::new(None::<Result<(), String>>);
    let copy = move |_| {
        let Some(window) = web_sys::window() else { return };
        let address = window.location().href().unwrap_or_default();
        let clipboard = window.navigator().clipboard();
        spawn_local(async move {
            let copied = JsFuture::from(clipboard.write_text(&address)).await;
            result.set(Some(copied.map(|_| ()).map_err(|_| address)));
        });
    };
    // a new run or option makes a new address: the note about the old one goes
    Effect::new(move |_| {
        lab.runs.with(|_| ());
        lab.spec.with(|_| ());
        result.set(None);
    });
    view! {
        <span class="share">
            <button data-testid="copy-link" on:click=copy
                title="the address holds the experiment and every run side by side: whoever opens it is offered the same runs">"copy link"</button>
            {move || result.get().map(|r| match r {
                Ok(()) => view! { <span class="hint" data-testid="link-copied">" copied: whoever opens it is offered these runs"</span> }.into_any(),
                Err(address) => view! {
                    <input data-testid="link-to-copy" class="link" readonly=true prop:value=address
                        on:focus=move |ev| { event_target::<web_sys::HtmlInputElement>(&ev).select(); } />
                }.into_any(),
            })}
        </span>
    }
}
