//! The transformer, in the spirit of nanoGPT's `model.py`: config up front, one block type,
//! pre-norm residual blocks, GELU MLP, learned position embeddings, weight-tied output head.
//!
//! Unlike nanoGPT the attention pattern is not baked in: each batch says whether attention is
//! causal, prefix (bidirectional over a per-row prefix, causal after) or bidirectional, because
//! the architecture and the objective are independent choices (Tay et al. 2022, UL2).
//! Weights are drawn on the CPU from the run's own seeded RNG, so a run starts from the same
//! weights on flex, on wgpu and in the browser.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Size of the model. nanoGPT's names; the presets live in [`crate::spec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the residual stream (nanoGPT's `n_embd`).
    pub d_model: usize,
    /// Longest sequence the model sees (nanoGPT's `block_size`).
    pub block_size: usize,
}

impl ModelConfig {
    /// Number of trainable parameters for a vocabulary of `vocab` tokens (tied head counted once).
    pub fn n_params(&self, vocab: usize) -> usize {
        let d = self.d_model;
        let per_block = 2 * 2 * d /* two LayerNorms */ + d * 3 * d + d * d + d * 4 * d + 4 * d * d;
        vocab * d + self.block_size * d + self.n_layer * per_block + 2 * d
    }
}

/// How tokens may look at each other in one batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttentionMode {
    /// Token t sees tokens ≤ t (GPT).
    Causal,
    /// Every token sees every token (BERT).
    Bidirectional,
    /// Row r: the first `prefix[r]` tokens see each other fully; later tokens see the prefix
    /// and the tokens before them (non-causal decoder, prefix LM).
    Prefix(Vec<usize>),
}

impl AttentionMode {
    /// Whether query `q` may attend to key `k` in row `row`.
    pub fn allows(&self, row: usize, q: usize, k: usize) -> bool {
        match self {
            AttentionMode::Causal => k <= q,
            AttentionMode::Bidirectional => true,
            AttentionMode::Prefix(prefix) => k <= q || k < prefix[row],
        }
    }

    /// Additive attention bias `[rows, 1, seq, seq]`: 0 where allowed, -1e9 where blocked.
    /// Causal and bidirectional masks are the same for every row, so they get one row that
    /// broadcasts over the batch.
    pub fn bias(&self, batch: usize, seq: usize, device: &Device) -> Tensor<4> {
        let rows = if matches!(self, AttentionMode::Prefix(_)) { batch } else { 1 };
        let mut values = Vec::with_capacity(rows * seq * seq);
        for r in 0..rows {
            for q in 0..seq {
                for k in 0..seq {
                    values.push(if self.allows(r, q, k) { 0.0f32 } else { -1e9 });
                }
            }
        }
        Tensor::from_data(TensorData::new(values, [rows, 1, seq, seq]), device)
    }
}

/// What the model is given for one batch (already on the device).
pub struct ModelInput {
    /// x: [batch, seq] token ids
    pub tokens: Tensor<2, Int>,
    /// [rows, 1, seq, seq] additive attention bias, see [`AttentionMode::bias`]
    pub attention_bias: Tensor<4>,
    /// Whether learned position embeddings are added (position-prediction objectives turn
    /// them off so that position must be inferred).
    pub use_positions: bool,
}

/// What the model gives back.
pub struct ModelOutput {
    /// logits: [batch, seq, vocab] from the weight-tied head
    pub logits: Tensor<3>,
    /// hidden: [batch, seq, d_model] final hidden states (after the last LayerNorm)
    pub hidden: Tensor<3>,
}

#[derive(Module, Debug)]
pub struct Mlp {
    fc: Linear,
    proj: Linear,
}

impl Mlp {
    // x: [batch, seq, d_model] -> [batch, seq, d_model]
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.proj.forward(gelu(self.fc.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query, key and value projections in one matrix: [d_model, 3 * d_model].
    qkv: Linear,
    proj: Linear,
    n_head: usize,
}

impl SelfAttention {
    /// x: [batch, seq, d_model], bias: [rows, 1, seq, seq] -> [batch, seq, d_model]
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let h = self.n_head;
        let dh = d / h;
        // qkv: [batch, seq, 3, heads, d_head] -> three [batch, heads, seq, d_head]
        let qkv = self.qkv.forward(x).reshape([b, s, 3, h, dh]);
        let q = qkv.clone().narrow(2, 0, 1).reshape([b, s, h, dh]).swap_dims(1, 2);
        let k = qkv.clone().narrow(2, 1, 1).reshape([b, s, h, dh]).swap_dims(1, 2);
        let v = qkv.narrow(2, 2, 1).reshape([b, s, h, dh]).swap_dims(1, 2);
        // scores: [batch, heads, seq, seq]
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()) + bias;
        let weights = softmax(scores, 3);
        // y: [batch, heads, seq, d_head] -> [batch, seq, d_model]
        let y = weights.matmul(v).swap_dims(1, 2).reshape([b, s, d]);
        self.proj.forward(y)
    }
}

#[derive(Module, Debug)]
pub struct Block {
    ln_1: LayerNorm,
    attn: SelfAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    // x: [batch, seq, d_model] -> [batch, seq, d_model]
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), bias);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Transformer {
    /// Token embedding, also the output head (weight tying, as GPT-2 and nanoGPT).
    wte: Embedding,
    /// Learned position embedding.
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

/// A weight matrix drawn from N(0, std²) on the CPU (nanoGPT's init).
fn normal_param(shape: [usize; 2], std: f64, rng: &mut Rng, device: &Device) -> Param<Tensor<2>> {
    let values: Vec<f32> = (0..shape[0] * shape[1]).map(|_| (rng.normal() * std) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn linear(d_in: usize, d_out: usize, std: f64, rng: &mut Rng, device: &Device) -> Linear {
    // burn's Linear stores weight as [d_in, d_out]; nanoGPT uses no biases.
    Linear { weight: normal_param([d_in, d_out], std, rng, device), bias: None }
}

fn embedding(n: usize, d: usize, rng: &mut Rng, device: &Device) -> Embedding {
    Embedding { weight: normal_param([n, d], 0.02, rng, device) }
}

impl Transformer {
    pub fn new(config: &ModelConfig, vocab_size: usize, rng: &mut Rng, device: &Device) -> Self {
        let d = config.d_model;
        // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer).
        let proj_std = 0.02 / ((2 * config.n_layer) as f64).sqrt();
        let blocks = (0..config.n_layer)
            .map(|_| Block {
                ln_1: LayerNormConfig::new(d).init(device),
                attn: SelfAttention {
                    qkv: linear(d, 3 * d, 0.02, rng, device),
                    proj: linear(d, d, proj_std, rng, device),
                    n_head: config.n_head,
                },
                ln_2: LayerNormConfig::new(d).init(device),
                mlp: Mlp {
                    fc: linear(d, 4 * d, 0.02, rng, device),
                    proj: linear(4 * d, d, proj_std, rng, device),
                },
            })
            .collect();
        Self {
            wte: embedding(vocab_size, d, rng, device),
            wpe: embedding(config.block_size, d, rng, device),
            blocks,
            ln_f: LayerNormConfig::new(d).init(device),
        }
    }

    pub fn forward(&self, input: &ModelInput) -> ModelOutput {
        let [b, s] = input.tokens.dims();
        // x: [batch, seq, d_model]
        let mut x = self.wte.forward(input.tokens.clone());
        if input.use_positions {
            // pos: [1, seq, d_model], broadcast over the batch
            let pos = self.wpe.weight.val().narrow(0, 0, s).unsqueeze::<3>();
            x = x + pos;
        }
        for block in &self.blocks {
            x = block.forward(x, input.attention_bias.clone());
        }
        let hidden = self.ln_f.forward(x);
        let d = hidden.dims()[2];
        // logits: [batch * seq, d_model] x [d_model, vocab] -> [batch, seq, vocab]
        let wte_t = self.wte.weight.val().transpose();
        let vocab = wte_t.dims()[1];
        let logits = hidden.clone().reshape([b * s, d]).matmul(wte_t).reshape([b, s, vocab]);
        ModelOutput { logits, hidden }
    }

    /// Token embedding table, for views and probes: [vocab, d_model].
    pub fn token_embeddings(&self) -> Tensor<2> {
        self.wte.weight.val()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_modes_allow_the_right_pairs() {
        let causal = AttentionMode::Causal;
        assert!(causal.allows(0, 3, 3) && causal.allows(0, 3, 0) && !causal.allows(0, 3, 4));
        assert!(AttentionMode::Bidirectional.allows(0, 0, 7));
        let prefix = AttentionMode::Prefix(vec![3, 0]);
        assert!(prefix.allows(0, 0, 2), "prefix tokens see the whole prefix");
        assert!(!prefix.allows(0, 0, 3), "prefix tokens do not see the suffix");
        assert!(prefix.allows(0, 5, 4) && !prefix.allows(0, 4, 5), "suffix is causal");
        assert!(!prefix.allows(1, 0, 1), "an empty prefix is plain causal");
    }

    #[test]
    fn parameter_count_matches_the_module() {
        let cfg = ModelConfig { n_layer: 2, n_head: 2, d_model: 16, block_size: 8 };
        let device = Device::flex();
        let model = Transformer::new(&cfg, 11, &mut Rng::seeded(0), &device);
        assert_eq!(model.num_params(), cfg.n_params(11));
    }

    /// Finite-difference check of one block's backward pass (attention, LayerNorm, GELU MLP)
    /// with respect to its input: d/dx sum(block(x) * r).
    #[test]
    fn block_gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let cfg = ModelConfig { n_layer: 1, n_head: 2, d_model: 8, block_size: 5 };
        let model = Transformer::new(&cfg, 7, &mut Rng::seeded(11), &device);
        let block = &model.blocks[0];
        let (b, s, d) = (2, 5, 8);
        let mut rng = Rng::seeded(5);
        let x_vals: Vec<f32> = (0..b * s * d).map(|_| rng.normal() as f32).collect();
        let r_vals: Vec<f32> = (0..b * s * d).map(|_| rng.normal() as f32).collect();
        let plain = Device::flex();
        let r = Tensor::<3>::from_data(TensorData::new(r_vals.clone(), [b, s, d]), &device);
        let bias = AttentionMode::Prefix(vec![2, 0]).bias(b, s, &device);

        let x = Tensor::<3>::from_data(TensorData::new(x_vals.clone(), [b, s, d]), &device).require_grad();
        let f = (block.forward(x.clone(), bias.clone()) * r.clone()).sum();
        let grads = f.backward();
        let analytic = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();

        let valid = block.valid();
        let r_plain = Tensor::<3>::from_data(TensorData::new(r_vals, [b, s, d]), &plain);
        let bias_plain = AttentionMode::Prefix(vec![2, 0]).bias(b, s, &plain);
        let eval = |vals: &[f32]| -> f64 {
            let x = Tensor::<3>::from_data(TensorData::new(vals.to_vec(), [b, s, d]), &plain);
            let y: f32 = (valid.forward(x, bias_plain.clone()) * r_plain.clone()).sum().into_scalar();
            y as f64
        };
        let eps = 1e-2f32;
        for i in (0..b * s * d).step_by(7) {
            let mut up = x_vals.clone();
            up[i] += eps;
            let mut down = x_vals.clone();
            down[i] -= eps;
            let numeric = (eval(&up) - eval(&down)) / (2.0 * eps as f64);
            let a = analytic[i] as f64;
            assert!((a - numeric).abs() < 2e-2 * numeric.abs().max(1.0), "x[{i}]: autodiff {a} vs finite difference {numeric}");
        }
    }
}

