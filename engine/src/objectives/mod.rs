//! Pretraining objectives: how a clean batch becomes a training signal.
//!
//! One objective = one file implementing [`Objective`], listed once in [`REGISTRY`]. The page
//! and the CLI build their choices and parameter controls from the registry, so adding an
//! objective needs no UI code. The trait does not assume next-token prediction: an objective
//! decides the model's input, the attention pattern, whether positions are given, the targets
//! and the loss.

mod causal_lm;

use std::collections::BTreeMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::data::CleanBatch;
use crate::model::{AttentionMode, ModelOutput};
use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

pub use causal_lm::CausalLm;

/// Target value meaning "no loss at this position".
pub const IGNORE: i32 = -1;

/// One adjustable number of an objective (a rate, a span length, a temperature, …).
#[derive(Clone, Debug, Serialize)]
pub struct ParamInfo {
    pub key: &'static str,
    pub label: &'static str,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub step: f64,
    pub help: &'static str,
}

/// What the registry tells the UI and the CLI about an objective.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectiveInfo {
    /// Stable id used in specs, URLs and the CLI (`causal_lm`).
    pub id: &'static str,
    pub name: &'static str,
    /// The paper(s) it comes from.
    pub paper: &'static str,
    /// One line: the idea.
    pub idea: &'static str,
    /// A plain-language paragraph for students.
    pub explanation: &'static str,
    pub params: &'static [ParamInfo],
}

/// Parameter values of one objective in one run, checked against its [`ParamInfo`]s.
pub type Params = BTreeMap<String, f64>;

/// A clean batch turned into what the model sees and what it is scored on (CPU side).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub batch: usize,
    pub seq: usize,
    /// inputs: [batch, seq] token ids
    pub inputs: Vec<u32>,
    pub attention: AttentionMode,
    /// Whether the model adds position embeddings.
    pub use_positions: bool,
    /// targets: [batch, seq]; [`IGNORE`] where there is no loss
    pub targets: Vec<i32>,
}

impl Prepared {
    /// Number of positions that carry a loss.
    pub fn n_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Prepared targets on the device, for [`Objective::loss`].
pub struct DeviceTargets {
    /// targets: [batch * seq] (ignored positions hold 0)
    pub ids: Tensor<1, Int>,
    /// weights: [batch * seq], 1 where a target counts, 0 where ignored
    pub weights: Tensor<1>,
    /// Sum of `weights`, known on the CPU so the mean needs no device read.
    pub count: usize,
}

impl DeviceTargets {
    pub fn new(prepared: &Prepared, device: &Device) -> Self {
        let n = prepared.targets.len();
        let ids: Vec<i32> = prepared.targets.iter().map(|&t| t.max(0)).collect();
        let weights: Vec<f32> = prepared.targets.iter().map(|&t| if t == IGNORE { 0.0 } else { 1.0 }).collect();
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [n]), device),
            weights: Tensor::from_data(TensorData::new(weights, [n]), device),
            count: prepared.n_targets(),
        }
    }
}

/// Everything an objective may need besides the batch.
pub struct Context<'a> {
    pub tokenizer: &'a CharTokenizer,
    pub params: &'a Params,
}

impl Context<'_> {
    /// The run's value of a parameter (its default when unset).
    pub fn param(&self, info: &ObjectiveInfo, key: &str) -> f64 {
        self.params.get(key).copied().unwrap_or_else(|| {
            info.params.iter().find(|p| p.key == key).map(|p| p.default).expect("declared parameter")
        })
    }
}

/// How a clean example becomes a training signal.
pub trait Objective: Sync {
    fn info(&self) -> &'static ObjectiveInfo;

    /// CPU side, deterministic given the RNG: corrupt/split the clean batch.
    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared;

    /// Device side: the scalar loss from the model's outputs. The default is the mean token
    /// cross-entropy over the positions that have a target.
    fn loss(&self, out: &ModelOutput, targets: &DeviceTargets) -> Tensor<1> {
        token_cross_entropy(out.logits.clone(), targets)
    }
}

/// Mean cross-entropy of `logits` against the targets that count.
/// logits: [batch, seq, vocab] -> loss: [1]
pub fn token_cross_entropy(logits: Tensor<3>, targets: &DeviceTargets) -> Tensor<1> {
    let [b, s, v] = logits.dims();
    // logp: [batch * seq, vocab]
    let logp = log_softmax(logits.reshape([b * s, v]), 1);
    // picked: [batch * seq]
    let picked = logp.gather(1, targets.ids.clone().reshape([b * s, 1])).reshape([b * s]);
    (picked * targets.weights.clone()).sum().mul_scalar(-1.0 / targets.count.max(1) as f64)
}

/// Every objective the lab knows, in the order the UI lists them.
pub static REGISTRY: &[&dyn Objective] = &[&CausalLm];

/// Looks an objective up by id; the error lists the valid ids.
pub fn find(id: &str) -> Result<&'static dyn Objective, String> {
    REGISTRY.iter().copied().find(|o| o.info().id == id).ok_or_else(|| {
        let ids: Vec<&str> = REGISTRY.iter().map(|o| o.info().id).collect();
        format!("unknown objective {id:?}; valid objectives: {}", ids.join(", "))
    })
}

/// Checks a run's parameter values against the objective's declared ranges.
pub fn check_params(info: &ObjectiveInfo, params: &Params) -> Result<(), String> {
    for (key, value) in params {
        let Some(p) = info.params.iter().find(|p| p.key == key) else {
            let keys: Vec<&str> = info.params.iter().map(|p| p.key).collect();
            return Err(format!(
                "objective {} has no parameter {key:?}; its parameters: {}",
                info.id,
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            ));
        };
        if !value.is_finite() || *value < p.min || *value > p.max {
            return Err(format!("{}.{key} = {value} is out of range: valid range is {} to {}", info.id, p.min, p.max));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ids_are_unique_and_findable() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|o| o.info().id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(find("causal_lm").unwrap().info().id, "causal_lm");
        let err = find("gpt").err().unwrap();
        assert!(err.contains("valid objectives: causal_lm"), "{err}");
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_vocab() {
        let device = Device::flex();
        let logits = Tensor::<3>::zeros([2, 3, 5], &device);
        let prepared = Prepared {
            batch: 2,
            seq: 3,
            inputs: vec![0; 6],
            attention: AttentionMode::Causal,
            use_positions: true,
            targets: vec![1, 2, IGNORE, 0, 4, IGNORE],
        };
        let t = DeviceTargets::new(&prepared, &device);
        assert_eq!(t.count, 4);
        let loss: f32 = token_cross_entropy(logits, &t).into_scalar();
        assert!((loss - 5f32.ln()).abs() < 1e-5, "{loss}");
    }
}
