//! The text a run trains on: the built-in corpus or a text file of one's own. A chosen file is
//! read in the page, checked (`data::check_upload`: plain UTF-8 text, not binary, at most
//! 16 MB and 4000 distinct characters, long enough to train on) and sent to the worker. It never
//! leaves the computer, so a link to a run on it asks for the file again.

use js_sys::Uint8Array;
use leptos::prelude::*;
use leptos::task::spawn_local;
use objlab_engine::data::{check_upload_size, is_upload, upload_file_name};
use objlab_engine::digits;
use objlab_engine::spec::CORPORA;
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlInputElement;

use crate::lab::Lab;

/// How the built-in corpus `name` is listed.
fn built_in_label(name: &str) -> String {
    if name == digits::NAME {
        return "digits: 8×8 images, pixel by pixel (built in)".to_string();
    }
    format!("{} (built in)", name.replace('-', " "))
}

/// What the digits are, and how much of an image a context of `context` tokens holds.
fn digits_note(context: usize) -> String {
    let holds = match context {
        c if c < digits::RECORD - 1 => format!("a context of {c} holds an image's first {} pixels, so runs learn only the top of each digit", c - 1),
        c if c == digits::RECORD - 1 => format!("a context of {c} holds an image's new line and all but its last pixel"),
        c => format!("a context of {c} holds a whole image"),
    };
    format!(
        "1,797 handwritten digits (UCI, via scikit-learn), each a new line and then its 64 pixels in five grey levels, read one pixel after another as Image GPT reads images: {holds}. The linear probe asks which digit a held-out image shows."
    )
}

#[component]
pub fn CorpusChoice(lab: Lab) -> impl IntoView {
    // what the page says of the latest file: what it holds, or why it was refused
    let message = RwSignal::new(None::<Result<String, String>>);
    let choose = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
        // the same file chosen again (after an edit) is read again
        input.set_value("");
        let name = file.name();
        if let Err(e) = check_upload_size(&name, file.size() as u64) {
            message.set(Some(Err(format!("the file was not used: {e}"))));
            return;
        }
        message.set(Some(Ok(format!("reading {name}…"))));
        spawn_local(async move {
            let result = match JsFuture::from(file.array_buffer()).await {
                Ok(buffer) => lab.add_upload(&name, &Uint8Array::new(&buffer).to_vec()),
                Err(e) => Err(format!("the file was not used: {name} could not be read ({e:?})")),
            };
            message.set(Some(result));
        });
    };
    let corpus = move || lab.shown().corpus;
    // a link's text of one's own that this page does not hold: shown, so the choice is plain
    let missing = move || {
        let c = corpus();
        (is_upload(&c) && !lab.uploads.with(|u| u.iter().any(|u| u.name == c))).then_some(c)
    };
    view! {
        <div class="corpus-choice">
            <label title="what the runs train on: the built-in corpus, or a plain-text file of your own (it stays on this computer)">
                "Text "
                <select data-testid="corpus"
                    on:change=move |ev| lab.change(|spec| spec.set("corpus", &event_target_value(&ev)))>
                    {CORPORA.iter().map(|(name, _)| view! {
                        <option value=*name title=objlab_engine::spec::corpus_description(name) prop:selected=move || corpus() == *name>{built_in_label(name)}</option>
                    }).collect_view()}
                    {move || lab.uploads.get().into_iter().map(|u| {
                        let label = format!("{} (yours)", upload_file_name(&u.name));
                        let name = u.name.clone();
                        view! { <option value=u.name.clone() prop:selected=move || corpus() == name>{label}</option> }
                    }).collect_view()}
                    {move || missing().map(|c| view! {
                        <option value=c.clone() selected=true disabled=true>{format!("{} (not on this page: choose the file again)", upload_file_name(&c))}</option>
                    })}
                </select>
            </label>
            <label class="file" title="a plain-text file (.txt, UTF-8), at most 16 MB">
                "or your own text file "
                <input data-testid="corpus-file" type="file" accept=".txt,text/plain" on:change=choose />
            </label>
            {move || {
                let spec = lab.shown();
                (spec.corpus == digits::NAME).then(|| view! { <p class="hint" data-testid="digits-note">{digits_note(spec.model.block_size)}</p> })
            }}
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <span class="corpus-info" data-testid="corpus-info">{text}</span> }.into_any(),
                Err(text) => view! { <span class="control-error" data-testid="corpus-error">{text}</span> }.into_any(),
            })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::digits_note;

    #[test]
    fn the_digits_note_says_how_much_of_an_image_a_context_holds() {
        assert!(digits_note(32).contains("a context of 32 holds an image's first 31 pixels"));
        assert!(digits_note(64).contains("all but its last pixel"));
        assert!(digits_note(65).contains("a context of 65 holds a whole image"));
    }
}
