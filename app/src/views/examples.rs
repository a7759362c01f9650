//! Ready-made comparisons for a class or a first visit: each is a workspace of runs that differ
//! in one choice (the objective, the architecture, the seed, the model's shape), so that their curves and
//! representations show what that one choice does. A click starts it, or, while runs train,
//! offers it beside them (as a shared link does) rather than stopping them unasked.

use leptos::prelude::*;
use objlab_engine::spec::ExperimentSpec;

use crate::lab::Lab;

/// One comparison: a title, what to look for, and one address query per run.
pub struct Example {
    pub title: &'static str,
    pub look_for: &'static str,
    pub runs: &'static [&'static str],
}

pub const EXAMPLES: &[Example] = &[
    Example {
        title: "GPT against BERT",
        look_for: "next-token prediction scores every position, masked LM 15 % of them: compare the curves' noise, the samples (only the causal model writes), what each makes of the same line with a blank (\"ask the model\", every run) and how the probe and CKA see the two representations",
        runs: &["objective=causal_lm&steps=1000", "objective=masked_lm&steps=1000"],
    },
    Example {
        title: "ELECTRA's detection against BERT's masking",
        look_for: "random token detection learns from every position with a binary head; does its representation tell the probe's sources apart sooner?",
        runs: &["objective=masked_lm&steps=1000", "objective=random_token_detection&steps=1000"],
    },
    Example {
        title: "UL2's denoisers",
        look_for: "UL2's R denoiser (span corruption) alone, its S denoiser (prefix LM) alone, and its mixture of R, X and S: three objectives, one architecture; ask every run a line with ___ in it: who writes the gap, who can only continue",
        runs: &["objective=span_corruption&steps=1000", "objective=prefix_lm&steps=1000", "objective=ul2_mixture&steps=1000"],
    },
    Example {
        title: "Architecture is not the objective",
        look_for: "the same prefix-LM objective on a decoder and on an encoder–decoder (Wang et al. 2022; UL2)",
        runs: &["objective=prefix_lm&arch=decoder&steps=1000", "objective=prefix_lm&arch=encoder_decoder&steps=1000"],
    },
    Example {
        title: "How much is the seed?",
        look_for: "one experiment, three seeds: the spread between these curves (the ± in the results table) is the noise any other comparison must beat",
        runs: &["objective=causal_lm&seed=1&steps=1000", "objective=causal_lm&seed=2&steps=1000", "objective=causal_lm&seed=3&steps=1000"],
    },
    Example {
        title: "Deeper or wider?",
        look_for: "three shapes of the same ~0.8 M parameters (the results table's parameters column): 2 wide layers, baby GPT's 4, and 16 narrow ones: which learns most per step, and which representation tells the probe's sources apart?",
        runs: &["objective=causal_lm&layers=2&width=176&steps=1000", "objective=causal_lm&steps=1000", "objective=causal_lm&layers=16&width=64&steps=1000"],
    },
    Example {
        title: "GPT against BERT on pixels",
        look_for: "the same two objectives on handwritten digits read one pixel after another, as Image GPT reads images (Chen et al. 2020): the causal run draws digits (its sample), the masked run fills in hidden pixels (what the model sees); which representation tells the digits apart (the linear probe)? Image GPT found next-pixel prediction's the better",
        runs: &["corpus=digits&objective=causal_lm&steps=1000", "corpus=digits&objective=masked_lm&steps=1000"],
    },
];

/// The runs of `example`, as the page reads its queries.
pub fn example_runs(example: &Example) -> Vec<ExperimentSpec> {
    example.runs.iter().map(|q| ExperimentSpec::from_query(q).0).collect()
}

#[component]
pub fn Examples(lab: Lab) -> impl IntoView {
    let open = move |k: usize| {
        let runs = example_runs(&EXAMPLES[k]);
        lab.linked.set(runs);
        lab.linked_from.set(Some(EXAMPLES[k].title));
        if !lab.any_live() {
            lab.start_linked();
        }
    };
    view! {
        <details class="examples" data-testid="examples">
            <summary>"Examples to start from"</summary>
            <ul>
                {EXAMPLES.iter().enumerate().map(|(k, e)| view! {
                    <li>
                        <button data-testid=format!("example-{k}") on:click=move |_| open(k)>{e.title}</button>
                        " "<span class="hint">{e.look_for}</span>
                    </li>
                }).collect_view()}
            </ul>
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objlab_engine::spec::run_labels;

    #[test]
    fn every_example_is_a_valid_workspace_whose_runs_differ() {
        for e in EXAMPLES {
            for q in e.runs {
                let (spec, problems) = ExperimentSpec::from_query(q);
                assert!(problems.is_empty(), "{}: {q}: {problems:?}", e.title);
                spec.validate().unwrap_or_else(|err| panic!("{}: {q}: {err}", e.title));
            }
            let runs = example_runs(e);
            let labels = run_labels(&runs.iter().collect::<Vec<_>>());
            let distinct: std::collections::BTreeSet<&String> = labels.iter().collect();
            assert_eq!(distinct.len(), runs.len(), "{}: runs told apart by their labels: {labels:?}", e.title);
            assert!(runs.len() <= crate::lab::MAX_RUNS);
        }
    }

    #[test]
    fn deeper_or_wider_compares_shapes_of_one_size() {
        let e = EXAMPLES.iter().find(|e| e.title == "Deeper or wider?").unwrap();
        let vocab = objlab_engine::spec::builtin_vocab("tiny-shakespeare").unwrap();
        let params: Vec<f64> = example_runs(e).iter().map(|s| s.model.n_params(vocab) as f64).collect();
        let (lo, hi) = (params.iter().cloned().fold(f64::MAX, f64::min), params.iter().cloned().fold(0.0, f64::max));
        assert!(hi / lo < 1.05 && (0.75e6..0.85e6).contains(&lo), "the same ~0.8 M parameters: {params:?}");
    }
}
