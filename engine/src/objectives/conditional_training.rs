//! Conditional training on a rule-based reward.
//!
//! Korbak et al. 2023, "Pretraining Language Models with Human Preferences" (conditional
//! training). Each segment is scored by a rule (here: does it contain any word of a
//! configurable "bad" list?), a control token `<good>` or `<bad>` is prepended, and the model
//! is trained as a causal LM. At sampling time the prompt starts with `<good>`, asking for
//! text like the segments that scored well; the page reports the bad-word rate of samples.

use super::{Alignment, Context, Mark, Objective, ObjectiveInfo, ParamInfo, ParamKind, Prepared};
use crate::data::CleanBatch;
use crate::model::AttentionMode;
use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

pub struct ConditionalTraining;

/// Default "bad" words: oaths and insults that occur in tiny shakespeare.
pub const DEFAULT_BAD_WORDS: &str = "villain,knave,rogue,fool,slave,devil,damn,curse";

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "conditional_training",
    name: "conditional training (<good>/<bad>)",
    paper: "Korbak et al. 2023, \"Pretraining Language Models with Human Preferences\"",
    definition: "score each segment with a rule (any word of a configurable bad-word list); prepend <good> or <bad>; causal LM; sample conditioned on <good>",
    explanation: "Before training, every piece of text is labelled by a simple rule: <bad> if \
        it contains a word from the list, <good> otherwise. The label is put in front and the \
        model learns ordinary next-character prediction. Because it learned what follows \
        <good>, asking it to write after <good> should produce fewer bad words.",
    generates: true,
    asks: "continues what you type, after <good>",
    alignment: Alignment::NextToken,
    params: &[ParamInfo {
        key: "bad_words",
        label: "bad words",
        kind: ParamKind::Words { default: DEFAULT_BAD_WORDS },
        help: "comma-separated, matched case-insensitively",
    }],
};

/// The words of a comma-separated list, lower-cased, empty entries dropped.
pub fn word_list(text: &str) -> Vec<String> {
    text.split(',').map(|w| w.trim().to_lowercase()).filter(|w| !w.is_empty()).collect()
}

/// (occurrences of bad words, words) in `text`: the bad-word rate is their ratio.
pub fn bad_word_count(text: &str, bad_words: &str) -> (usize, usize) {
    let bad = word_list(bad_words);
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).collect();
    let hits = words.iter().filter(|w| bad.iter().any(|b| w.contains(b.as_str()))).count();
    (hits, words.len())
}

/// Whether a segment contains a bad word (the rule-based reward is "no").
pub fn is_bad(text: &str, bad_words: &[String]) -> bool {
    let lower = text.to_lowercase();
    bad_words.iter().any(|w| lower.contains(w.as_str()))
}

impl Objective for ConditionalTraining {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, _rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let tok = ctx.tokenizer;
        let bad = word_list(&ctx.text(&INFO, "bad_words"));
        let (good_id, bad_id) = (tok.special_id("<good>"), tok.special_id("<bad>"));
        let mut inputs = Vec::with_capacity(b * s);
        let mut targets = Vec::with_capacity(b * s);
        for r in 0..b {
            // The segment is the row's first s tokens: "<tag> t0 … t(s-2)" predicts "t0 … t(s-1)".
            let segment = &clean.row(r)[..s];
            let tag = if is_bad(&tok.decode(segment), &bad) { bad_id } else { good_id };
            inputs.push(tag);
            inputs.extend_from_slice(&segment[..s - 1]);
            targets.extend(segment.iter().map(|&t| t as i32));
        }
        let mut p = Prepared::new(b, s, inputs, AttentionMode::Causal);
        p.targets = targets;
        for r in 0..b {
            p.marks[r * s] = Mark::Control;
        }
        p
    }

    fn score_sample(&self, text: &str, ctx: &Context) -> Option<(usize, usize)> {
        Some(bad_word_count(text, &ctx.text(&INFO, "bad_words")))
    }

    fn sample_prefix(&self, tokenizer: &CharTokenizer) -> Vec<u32> {
        vec![tokenizer.special_id("<good>")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::with_context;
    use crate::objectives::{ParamValue, Params};

    proptest::proptest! {
        /// The tag matches the rule for every row, and the rest is a causal LM on the segment.
        #[test]
        fn tags_match_the_rule(words in proptest::collection::vec("(fool|good|bad|a|rogue|x)", 1..40), seed in 0u64..100) {
            let tok = crate::objectives::testing::tokenizer();
            let text: String = words.join(" ");
            let ids = tok.encode(&text).unwrap();
            let seq = 12.min(ids.len().saturating_sub(1)).max(1);
            if ids.len() < seq + 1 {
                return Ok(());
            }
            let rows = (ids.len() - 1) / seq;
            let tokens: Vec<u32> = (0..rows).flat_map(|r| ids[r * seq..r * seq + seq + 1].to_vec()).collect();
            let clean = CleanBatch { batch: rows, seq, tokens };
            let params: Params = [("bad_words".to_string(), ParamValue::Text("fool, rogue".into()))].into();
            with_context(&params, |ctx| {
                let p = ConditionalTraining.prepare(&clean, ctx, &mut Rng::seeded(seed));
                for r in 0..rows {
                    let segment = tok.decode(&clean.row(r)[..seq]);
                    let expected = if segment.contains("fool") || segment.contains("rogue") { "<bad>" } else { "<good>" };
                    assert_eq!(tok.token_text(p.row_inputs(r)[0]), expected, "{segment:?}");
                    assert_eq!(&p.row_inputs(r)[1..], &clean.row(r)[..seq - 1]);
                    let t: Vec<u32> = p.row_targets(r).iter().map(|&t| t as u32).collect();
                    assert_eq!(&t[..], &clean.row(r)[..seq]);
                }
            });
        }
    }

    #[test]
    fn bad_word_rate_counts_words() {
        assert_eq!(bad_word_count("Thou fool! A rogue, a FOOL.", "fool,rogue"), (3, 6));
        assert_eq!(bad_word_count("", "fool"), (0, 0));
    }
}
