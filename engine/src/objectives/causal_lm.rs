//! Causal language modelling: predict token t+1 from tokens ≤ t, under a causal mask.
//!
//! Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training" (GPT);
//! compared with the other objectives in Wang et al. 2022, "What Language Model Architecture
//! and Pretraining Objective Work Best for Zero-Shot Generalization?".

use super::{Alignment, Context, Objective, ObjectiveInfo, Prepared};
use crate::data::CleanBatch;
use crate::model::AttentionMode;
use crate::rng::Rng;

pub struct CausalLm;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "causal_lm",
    name: "next token (causal LM)",
    paper: "Radford et al. 2018 (GPT); Wang et al. 2022",
    definition: "predict token t+1 from tokens ≤ t; causal mask; loss at every position",
    explanation: "The model reads the text left to right. At every position it may only look at \
        the tokens before it (the causal mask) and is scored on guessing the token that comes \
        next. Every position is a training example, and the trained model can generate text.",
    generates: true,
    asks: "continues what you type",
    alignment: Alignment::NextToken,
    params: &[],
};

impl Objective for CausalLm {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, _ctx: &Context, _rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let mut inputs = Vec::with_capacity(b * s);
        let mut targets = Vec::with_capacity(b * s);
        for r in 0..b {
            let row = clean.row(r);
            inputs.extend_from_slice(&row[..s]);
            targets.extend(row[1..].iter().map(|&t| t as i32));
        }
        let mut p = Prepared::new(b, s, inputs, AttentionMode::Causal);
        p.targets = targets;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::Params;
    use crate::objectives::testing::with_context;

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let clean = CleanBatch { batch: 2, seq: 3, tokens: vec![1, 2, 3, 4, 5, 6, 7, 8] };
        let p = with_context(&Params::new(), |ctx| CausalLm.prepare(&clean, ctx, &mut Rng::seeded(0)));
        assert_eq!(p.inputs, vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(p.targets, vec![2, 3, 4, 6, 7, 8]);
        assert_eq!(p.attention, AttentionMode::Causal);
        assert_eq!(p.n_targets(), 6);
    }

    proptest::proptest! {
        /// For any clean batch: every position is scored, on exactly the next token.
        #[test]
        fn every_position_predicts_the_next_token(
            batch in 1usize..5,
            seq in 1usize..20,
            seed in 0u64..1000,
        ) {
            let mut rng = Rng::seeded(seed);
            let tokens: Vec<u32> = (0..batch * (seq + 1)).map(|_| rng.below(9) as u32).collect();
            let clean = CleanBatch { batch, seq, tokens };
            let p = with_context(&Params::new(), |ctx| CausalLm.prepare(&clean, ctx, &mut rng));
            proptest::prop_assert_eq!(p.n_targets(), batch * seq);
            for r in 0..batch {
                let row = clean.row(r);
                for t in 0..seq {
                    proptest::prop_assert_eq!(p.inputs[r * seq + t], row[t]);
                    proptest::prop_assert_eq!(p.targets[r * seq + t], row[t + 1] as i32);
                }
            }
        }
    }
}

