//! The model's size: layers, heads, width, context and batch, each started from the preset and
//! changeable on its own (an ablation over depth or width is a run with one number changed), and
//! what they come to before anything is trained: parameters, tokens a step, memory while training.

use leptos::prelude::*;
use objlab_engine::memory::{self, DEVICE_BUDGET};
use objlab_engine::results::params_text;
use objlab_engine::spec::ExperimentSpec;

use super::controls::NumberOption;
use crate::lab::Lab;

/// "0.80 M parameters · 768 tokens a step · about 60 MB while training", and whether a run of
/// that size would be refused. `vocab` is `None` for a text of one's own the page does not hold.
fn size_summary(spec: &ExperimentSpec, vocab: Option<usize>) -> (String, bool) {
    let tokens = format!("{} tokens a step", spec.tokens_per_step());
    let Some(vocab) = vocab else {
        return (format!("{tokens} (the parameters depend on the text's characters)"), false);
    };
    let params = params_text(spec.model.n_params(vocab));
    let bytes = memory::run_bytes(spec, vocab);
    let mut text = format!("{params} parameters · {tokens} · about {} while training", memory::format_bytes(bytes));
    let too_large = bytes > DEVICE_BUDGET;
    if too_large {
        text.push_str(&format!(": more than the {} a run may take here, so it would be refused", memory::format_bytes(DEVICE_BUDGET)));
    }
    (text, too_large)
}

#[component]
pub fn ModelSize(lab: Lab) -> impl IntoView {
    // read by the line's class and its text: computed once per change
    let summary = Memo::new(move |_| {
        let spec = lab.shown();
        size_summary(&spec, lab.vocab_of(&spec.corpus))
    });
    view! {
        <div class="model-size" title="the model's size, from the preset; change one number for an ablation">
            "Size "
            <NumberOption lab=lab testid="layers" key="layers" label="layers " title="transformer blocks (each stack's, on an encoder–decoder)"
                value=|s| s.model.n_layer.to_string() />
            <NumberOption lab=lab testid="heads" key="heads" label="heads " title="attention heads per layer (the width must divide by them)"
                value=|s| s.model.n_head.to_string() />
            <NumberOption lab=lab testid="width" key="width" label="width " title="the model's width (d_model): each token's vector"
                value=|s| s.model.d_model.to_string() />
            <NumberOption lab=lab testid="context" key="context" label="context " title="tokens the model reads at once (the block size)"
                value=|s| s.model.block_size.to_string() />
            <NumberOption lab=lab testid="batch" key="batch" label="batch " title="sequences per optimiser step"
                value=|s| s.train.batch_size.to_string() />
            <span data-testid="model-size" class=move || if summary.with(|s| s.1) { "size-info too-large" } else { "size-info" }>
                {move || summary.with(|s| s.0.clone())}
            </span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objlab_engine::spec::builtin_vocab;

    #[test]
    fn the_summary_counts_parameters_tokens_and_memory() {
        let mut spec = ExperimentSpec::default_experiment();
        let vocab = builtin_vocab(&spec.corpus);
        let (text, too_large) = size_summary(&spec, vocab);
        assert!(text.starts_with("0.8") && text.contains(" M parameters · 768 tokens a step · about "), "{text}");
        assert!(!too_large);
        spec.set("layers", "48").unwrap();
        spec.set("width", "2048").unwrap();
        let (text, too_large) = size_summary(&spec, vocab);
        assert!(too_large && text.ends_with("so it would be refused"), "{text}");
        let (text, _) = size_summary(&ExperimentSpec::from_preset("tiny").unwrap(), vocab);
        assert!(text.contains(" k parameters"), "{text}");
        assert!(size_summary(&spec, None).0.contains("depend on the text"));
    }
}
