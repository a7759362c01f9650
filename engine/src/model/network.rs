//! The transformer network on burn: masks as attention biases, the blocks, the model.
//! (Its configuration types live in the parent module, which the page shares.)

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::softmax;

use super::embedding::{lookup, tied_head};
use super::gelu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::self_attention;
use super::layer_norm::LayerNorm;
use super::{Architecture, AttentionMode, Head, ModelConfig};
use crate::rng::Rng;

impl AttentionMode {
    /// Whether the mask differs between rows (and so needs one bias per row).
    pub(crate) fn per_row(&self) -> bool {
        matches!(self, AttentionMode::Prefix(_) | AttentionMode::KeyMask { .. })
    }

    /// Additive attention bias `[rows, 1, seq, seq]`: 0 where allowed, -1e9 where blocked.
    /// Causal and bidirectional masks are the same for every row, so they get one row that
    /// broadcasts over the batch.
    pub fn bias(&self, batch: usize, seq: usize, device: &Device) -> Tensor<4> {
        let rows = if self.per_row() { batch } else { 1 };
        bias_from(rows, seq, device, |r, q, k| self.allows(r, q, k))
    }
}

fn bias_from(rows: usize, seq: usize, device: &Device, allows: impl Fn(usize, usize, usize) -> bool) -> Tensor<4> {
    let mut values = Vec::with_capacity(rows * seq * seq);
    for r in 0..rows {
        for q in 0..seq {
            for k in 0..seq {
                values.push(if allows(r, q, k) { 0.0f32 } else { -1e9 });
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [rows, 1, seq, seq]), device)
}

/// The masks of an encoder–decoder pass over packed rows "prefix ⧺ rest" (all [batch, 1, seq, seq]).
/// Row r's encoder reads positions < p; its decoder reads positions ≥ p − 1 (the last prefix
/// token plays T5's start token) causally, and attends to the encoder at positions < p.
#[derive(Clone)]
pub struct EncoderDecoderMasks {
    pub encoder: Tensor<4>,
    pub decoder: Tensor<4>,
    pub cross: Tensor<4>,
    /// keep: [batch, seq, 1], 1 at encoder positions (< p), 0 elsewhere, so that cross
    /// attention never reads the encoder's output at positions the decoder predicts.
    pub keep: Tensor<3>,
}

impl EncoderDecoderMasks {
    pub fn new(prefix: &[usize], seq: usize, device: &Device) -> Self {
        let b = prefix.len();
        let start = |r: usize| prefix[r].saturating_sub(1);
        let keep: Vec<f32> = (0..b).flat_map(|r| (0..seq).map(move |k| if k < prefix[r] { 1.0 } else { 0.0 })).collect();
        Self {
            encoder: bias_from(b, seq, device, |r, q, k| q == k || (q < prefix[r] && k < prefix[r])),
            decoder: bias_from(b, seq, device, |r, q, k| q == k || (k <= q && k >= start(r))),
            cross: bias_from(b, seq, device, |r, _q, k| k < prefix[r]),
            keep: Tensor::from_data(TensorData::new(keep, [b, seq, 1]), device),
        }
    }
}

/// Which stacks a batch runs through.
#[derive(Clone)]
pub enum Route {
    /// One stack (`blocks`) with one mask: every batch on the decoder architecture.
    Single(Tensor<4>),
    /// Encoder–decoder architecture, batch without a prefix and not causal: encoder only.
    EncoderOnly(Tensor<4>),
    /// Encoder–decoder architecture, causal batch: decoder only, no cross-attention.
    DecoderOnly(Tensor<4>),
    /// Encoder–decoder architecture, prefix batch: both stacks.
    Both(Box<EncoderDecoderMasks>),
}

impl Route {
    /// The route of a batch with attention `mode` on architecture `arch`.
    pub fn new(mode: &AttentionMode, arch: Architecture, batch: usize, seq: usize, device: &Device) -> Self {
        match (arch, mode) {
            (Architecture::EncoderDecoder, AttentionMode::Prefix(prefix)) => Route::Both(Box::new(EncoderDecoderMasks::new(prefix, seq, device))),
            _ => Self::with_bias(mode, arch, mode.bias(batch, seq, device)),
        }
    }

    /// The route of a one-stack batch whose mask `bias` (from [`AttentionMode::bias`]) is
    /// already built, e.g. cached. Not for a prefix batch on the encoder–decoder, which needs
    /// three masks ([`Route::new`]).
    pub fn with_bias(mode: &AttentionMode, arch: Architecture, bias: Tensor<4>) -> Self {
        match (arch, mode) {
            (Architecture::Decoder, _) => Route::Single(bias),
            (Architecture::EncoderDecoder, AttentionMode::Prefix(_)) => {
                panic!("a prefix batch on the encoder–decoder needs Route::new")
            }
            (Architecture::EncoderDecoder, mode) if mode.is_causal() => Route::DecoderOnly(bias),
            (Architecture::EncoderDecoder, _) => Route::EncoderOnly(bias),
        }
    }
}

/// What the model is given for one batch (already on the device).
pub struct ModelInput {
    /// x: [batch, seq] token ids
    pub tokens: Tensor<2, Int>,
    pub route: Route,
    /// Whether learned position embeddings are added (position-prediction objectives turn
    /// them off so that position must be inferred).
    pub use_positions: bool,
    /// [batch, seq, d_model] multiplier of the input embeddings (dropout keep-mask / (1 − p)),
    /// drawn on the CPU from the run's RNG so runs stay reproducible on every device.
    pub embed_mask: Option<Tensor<3>>,
    pub head: Head,
}

/// What the model gives back.
pub struct ModelOutput {
    /// logits: [batch, seq, classes] of the requested head (vocab, 1 or block_size classes);
    /// for the projection head, the hidden states.
    pub logits: Tensor<3>,
    /// hidden: [batch, seq, d_model] final hidden states (after the last LayerNorm)
    pub hidden: Tensor<3>,
    /// pooled: [batch, d_model] unit-length projections (projection head only)
    pub pooled: Option<Tensor<2>>,
}

/// A linear layer over every position at once: x: [batch, seq, d_in] -> [batch, seq, d_out].
///
/// burn's `Linear::forward` on a 3-D input is a *batched* product against the weight broadcast
/// over the batch: on the CPU that is `batch` small products (each packing the weight again),
/// and its backward sums `batch` weight gradients afterwards. Folding batch and sequence into
/// one axis makes each direction a single product ([batch·seq, d_in] × [d_in, d_out]) whose
/// weight gradient is summed inside the product itself.
fn dense(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, s, d_in] = x.dims();
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    // y: [batch * seq, d_out]
    let y = x.reshape([b * s, d_in]).matmul(weight);
    let y = match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze_dim(0),
        None => y,
    };
    y.reshape([b, s, d_out])
}

#[derive(Module, Debug)]
pub struct Mlp {
    fc: Linear,
    proj: Linear,
}

impl Mlp {
    // x: [batch, seq, d_model] -> [batch, seq, d_model]
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        dense(&self.proj, gelu(dense(&self.fc, x)))
    }
}

/// Scaled dot-product attention over heads, primitive by primitive: the reference that
/// attention's custom operation is tested against (here and in `attention.rs`).
/// q, k, v: [batch, heads, seq, d_head], bias: [rows, 1, seq, seq] -> [batch, seq, d_model]
#[cfg(test)]
pub(super) fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<3> {
    let [b, h, s, dh] = q.dims();
    let weights = attention_weights(q, k, bias);
    // y: [batch, heads, seq, d_head] -> [batch, seq, d_model]
    weights.matmul(v).swap_dims(1, 2).reshape([b, s, h * dh])
}

/// q, k: [batch, heads, seq, d_head], bias: [rows, 1, seq, seq] -> weights: [batch, heads, seq, seq]
/// (each row a distribution over the keys a query may see)
fn attention_weights(q: Tensor<4>, k: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    let dh = q.dims()[3];
    // scores: [batch, heads, seq, seq]
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()) + bias;
    softmax(scores, 3)
}

/// [batch, seq, d_model] -> [batch, heads, seq, d_head]
fn split_heads(x: Tensor<3>, h: usize) -> Tensor<4> {
    let [b, s, d] = x.dims();
    x.reshape([b, s, h, d / h]).swap_dims(1, 2)
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
        // One custom operation from the fused projection to the merged heads (attention.rs)
        dense(&self.proj, self_attention(dense(&self.qkv, x), bias, self.n_head))
    }

    /// The attention weights of [`SelfAttention::forward`]: [batch, heads, seq, seq]
    fn weights(&self, x: Tensor<3>, bias: Tensor<4>) -> Tensor<4> {
        let [q, k, _] = self.heads(x);
        attention_weights(q, k, bias)
    }

    /// x: [batch, seq, d_model] -> queries, keys, values, each [batch, heads, seq, d_head]
    fn heads(&self, x: Tensor<3>) -> [Tensor<4>; 3] {
        split_qkv(dense(&self.qkv, x), self.n_head)
    }
}

/// The fused projection's output split into heads, primitive by primitive (the attention-map
/// view, and the reference `attention.rs`'s custom operation is tested against).
/// qkv: [batch, seq, 3 * d_model] -> queries, keys, values, each [batch, heads, seq, d_head]
pub(super) fn split_qkv(qkv: Tensor<3>, h: usize) -> [Tensor<4>; 3] {
    let [b, s, d3] = qkv.dims();
    let d = d3 / 3;
    // qkv: [batch, seq, 3, d_model]
    let qkv = qkv.reshape([b, s, 3, d]);
    [0, 1, 2].map(|i| split_heads(qkv.clone().narrow(2, i, 1).reshape([b, s, d]), h))
}

/// The decoder's attention to the encoder's output (T5's cross-attention).
#[derive(Module, Debug)]
pub struct CrossAttention {
    /// [d_model, d_model]
    q: Linear,
    /// Keys and values from the encoder output: [d_model, 2 * d_model].
    kv: Linear,
    proj: Linear,
    n_head: usize,
}

impl CrossAttention {
    /// x: [batch, seq, d_model] (decoder), memory: [batch, seq, d_model] (encoder output),
    /// bias: [batch, 1, seq, seq] -> [batch, seq, d_model]
    ///
    /// The decoder's queries laid beside the encoder's keys and values are exactly a fused
    /// projection's `qkv` (packed rows give the encoder and the decoder the same length), so
    /// cross-attention runs self-attention's custom operation: one loop per head on the CPU,
    /// one kernel each way on the GPU. Composed (six batched products, burn's softmax and the
    /// head copies) it had made the encoder–decoder ~2.9× as slow as the decoder on the CPU,
    /// where its extra stack and cross-attention are ~2.3× the work.
    fn forward(&self, x: Tensor<3>, memory: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        // qkv: [batch, seq, 3 · d_model] = [queries | keys | values]
        let qkv = Tensor::cat(vec![dense(&self.q, x), dense(&self.kv, memory)], 2);
        dense(&self.proj, self_attention(qkv, bias, self.n_head))
    }

    /// The same, composed: the reference of the test below.
    #[cfg(test)]
    fn composed(&self, x: Tensor<3>, memory: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [b, s, d] = memory.dims();
        let h = self.n_head;
        let q = split_heads(dense(&self.q, x), h);
        // kv: [batch, seq, 2, d_model]
        let kv = dense(&self.kv, memory).reshape([b, s, 2, d]);
        let k = split_heads(kv.clone().narrow(2, 0, 1).reshape([b, s, d]), h);
        let v = split_heads(kv.narrow(2, 1, 1).reshape([b, s, d]), h);
        dense(&self.proj, attend(q, k, v, bias))
    }
}

/// The residual stream of a pre-norm stack: x, and the last sublayer's output not yet added
/// to it. The next LayerNorm adds it as it normalises ([`LayerNorm::forward_residual`]: one
/// pass over the stream where an addition and a LayerNorm took two).
#[derive(Clone)]
struct Stream {
    /// x: [batch, seq, d_model]
    x: Tensor<3>,
    /// branch: [batch, seq, d_model], computed from the last LayerNorm of x; or, at the start,
    /// the position embeddings, [1, seq, d_model], broadcast over the batch
    branch: Option<Tensor<3>>,
}

impl Stream {
    fn new(x: Tensor<3>) -> Self {
        Self { x, branch: None }
    }

    /// (the stream's value, its LayerNorm by `ln`)
    fn norm(self, ln: &LayerNorm) -> (Tensor<3>, Tensor<3>) {
        match self.branch {
            Some(branch) => ln.forward_residual(self.x, branch),
            None => (self.x.clone(), ln.forward(self.x)),
        }
    }

    /// A pre-norm sublayer: x + f(ln(x)), the addition left to the next LayerNorm.
    fn sublayer(self, ln: &LayerNorm, f: impl FnOnce(Tensor<3>) -> Tensor<3>) -> Self {
        let (x, normed) = self.norm(ln);
        Self { x, branch: Some(f(normed)) }
    }

    /// The stream's value, x + branch, by a plain addition.
    fn into_sum(self) -> Tensor<3> {
        match self.branch {
            Some(branch) => self.x + branch,
            None => self.x,
        }
    }
}

#[derive(Module, Debug)]
pub struct Block {
    ln_1: LayerNorm,
    attn: SelfAttention,
    /// Decoder blocks of the encoder–decoder architecture only.
    ln_cross: Option<LayerNorm>,
    cross: Option<CrossAttention>,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    // stream: [batch, seq, d_model] -> [batch, seq, d_model]
    fn forward(&self, stream: Stream, bias: Tensor<4>) -> Stream {
        stream.sublayer(&self.ln_1, |h| self.attn.forward(h, bias)).sublayer(&self.ln_2, |h| self.mlp.forward(h))
    }

    /// Self-attention, then cross-attention to `memory`, then the MLP (a T5 decoder block).
    fn forward_cross(&self, stream: Stream, bias: Tensor<4>, memory: Tensor<3>, cross_bias: Tensor<4>) -> Stream {
        let (Some(ln), Some(cross)) = (&self.ln_cross, &self.cross) else {
            return self.forward(stream, bias);
        };
        stream
            .sublayer(&self.ln_1, |h| self.attn.forward(h, bias))
            .sublayer(ln, |h| cross.forward(h, memory, cross_bias))
            .sublayer(&self.ln_2, |h| self.mlp.forward(h))
    }
}

#[derive(Module, Debug)]
pub struct Transformer {
    /// Token embedding, also the output head (weight tying, as GPT-2 and nanoGPT).
    wte: Embedding,
    /// Learned position embedding.
    wpe: Embedding,
    /// The decoder (or the single stack).
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// The encoder stack (empty on the decoder architecture) and its final LayerNorm.
    encoder: Vec<Block>,
    ln_enc: Option<LayerNorm>,
    /// Replaced-or-original logit (RTD): [d_model, 1].
    binary_head: Linear,
    /// Position classes (MP3): [d_model, block_size].
    position_head: Linear,
    /// Contrastive projection of the pooled representation: [d_model, d_model].
    projection: Linear,
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

fn block(config: &ModelConfig, with_cross: bool, rng: &mut Rng, device: &Device) -> Block {
    let d = config.d_model;
    // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer).
    let proj_std = 0.02 / ((2 * config.n_layer) as f64).sqrt();
    Block {
        ln_1: LayerNorm::new(d, device),
        attn: SelfAttention { qkv: linear(d, 3 * d, 0.02, rng, device), proj: linear(d, d, proj_std, rng, device), n_head: config.n_head },
        ln_cross: with_cross.then(|| LayerNorm::new(d, device)),
        cross: with_cross.then(|| CrossAttention {
            q: linear(d, d, 0.02, rng, device),
            kv: linear(d, 2 * d, 0.02, rng, device),
            proj: linear(d, d, proj_std, rng, device),
            n_head: config.n_head,
        }),
        ln_2: LayerNorm::new(d, device),
        mlp: Mlp { fc: linear(d, 4 * d, 0.02, rng, device), proj: linear(4 * d, d, proj_std, rng, device) },
    }
}

impl Transformer {
    pub fn new(config: &ModelConfig, vocab_size: usize, rng: &mut Rng, device: &Device) -> Self {
        let d = config.d_model;
        let enc_dec = config.arch == Architecture::EncoderDecoder;
        let blocks = (0..config.n_layer).map(|_| block(config, enc_dec, rng, device)).collect();
        let encoder = if enc_dec { (0..config.n_layer).map(|_| block(config, false, rng, device)).collect() } else { Vec::new() };
        Self {
            wte: embedding(vocab_size, d, rng, device),
            wpe: embedding(config.block_size, d, rng, device),
            blocks,
            ln_f: LayerNorm::new(d, device),
            encoder,
            ln_enc: enc_dec.then(|| LayerNorm::new(d, device)),
            binary_head: linear(d, 1, 0.02, rng, device),
            position_head: linear(d, config.block_size, 0.02, rng, device),
            projection: linear(d, d, 0.02, rng, device),
        }
    }

    /// Token (+ position) embeddings, with the dropout mask if any. Without a mask, the
    /// positions are left for the first LayerNorm to add (one pass, not two).
    /// tokens: [batch, seq] -> x: [batch, seq, d_model]
    fn embed(&self, input: &ModelInput) -> Stream {
        let [_, s] = input.tokens.dims();
        // the lookup whose backward adds into the tied head's gradient (embedding.rs)
        let tokens = lookup(self.wte.weight.val(), input.tokens.clone());
        // pos: [1, seq, d_model], broadcast over the batch. The whole table when the batch
        // fills the context: a narrowed table's gradient costs a zero-filled tensor and a
        // slice assignment (two GPU launches per step).
        let positions = input.use_positions.then(|| {
            let table = self.wpe.weight.val();
            if s == table.dims()[0] { table } else { table.narrow(0, 0, s) }.unsqueeze::<3>()
        });
        match (positions, &input.embed_mask) {
            (Some(pos), None) => Stream { x: tokens, branch: Some(pos) },
            (positions, mask) => {
                let mut x = tokens;
                if let Some(pos) = positions {
                    x = x + pos;
                }
                if let Some(mask) = mask {
                    x = x * mask.clone();
                }
                Stream::new(x)
            }
        }
    }

    fn run_encoder(&self, mut stream: Stream, bias: Tensor<4>) -> Tensor<3> {
        for block in &self.encoder {
            stream = block.forward(stream, bias.clone());
        }
        stream.norm(self.ln_enc.as_ref().expect("encoder–decoder model has an encoder norm")).1
    }

    pub fn forward(&self, input: &ModelInput) -> ModelOutput {
        let embedded = self.embed(input);
        let hidden = match &input.route {
            Route::Single(bias) | Route::DecoderOnly(bias) => {
                let mut stream = embedded;
                for block in &self.blocks {
                    stream = block.forward(stream, bias.clone());
                }
                stream.norm(&self.ln_f).1
            }
            Route::EncoderOnly(bias) => self.run_encoder(embedded, bias.clone()),
            Route::Both(masks) => {
                // memory: [batch, seq, d_model], zero where the decoder must not look
                let memory = self.run_encoder(embedded.clone(), masks.encoder.clone()) * masks.keep.clone();
                let mut stream = embedded;
                for block in &self.blocks {
                    stream = block.forward_cross(stream, masks.decoder.clone(), memory.clone(), masks.cross.clone());
                }
                stream.norm(&self.ln_f).1
            }
        };
        let [b, s, d] = hidden.dims();
        let (logits, pooled) = match input.head {
            Head::Vocab => {
                // logits: [batch * seq, d_model] x [d_model, vocab] -> [batch, seq, vocab]
                let wte = self.wte.weight.val();
                let vocab = wte.dims()[0];
                (tied_head(hidden.clone().reshape([b * s, d]), wte).reshape([b, s, vocab]), None)
            }
            Head::Binary => (dense(&self.binary_head, hidden.clone()), None),
            Head::Position => (dense(&self.position_head, hidden.clone()), None),
            Head::Projection => {
                // pooled: mean over positions [batch, d_model] -> projection -> unit length
                let mean = hidden.clone().mean_dim(1).reshape([b, d]);
                let z = self.projection.forward(mean);
                let norm = z.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-8).sqrt();
                (hidden.clone(), Some(z / norm))
            }
        };
        ModelOutput { logits, hidden, pooled }
    }

    /// Self-attention weights of every layer of the stack a one-stack route runs through (the
    /// decoder, or the encoder for an encoder-only route), for the attention-map view:
    /// one [batch, heads, seq, seq] per layer. Not for a prefix batch on the encoder–decoder.
    pub fn attention_maps(&self, input: &ModelInput) -> Vec<Tensor<4>> {
        let (blocks, bias) = match &input.route {
            Route::Single(bias) | Route::DecoderOnly(bias) => (&self.blocks, bias),
            Route::EncoderOnly(bias) => (&self.encoder, bias),
            Route::Both(_) => panic!("attention maps read one stack; use a causal or bidirectional route"),
        };
        let mut stream = self.embed(input);
        let mut maps = Vec::with_capacity(blocks.len());
        for block in blocks {
            let x = stream.into_sum();
            maps.push(block.attn.weights(block.ln_1.forward(x.clone()), bias.clone()));
            stream = block.forward(Stream::new(x), bias.clone());
        }
        maps
    }

    /// Token embedding table, for views and probes: [vocab, d_model].
    pub fn token_embeddings(&self) -> Tensor<2> {
        self.wte.weight.val()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products big enough for flex's threads (≥ 192³ multiply-adds, where the patched flex
    /// gives each pool thread a block of rows or columns, `patches/README.md`) against plain
    /// sums: blocks split by rows and by columns, ragged last tiles, and a transposed input.
    #[test]
    fn threaded_products_match_plain_sums() {
        let device = Device::flex();
        let data = |rows: usize, cols: usize, seed: usize| -> Vec<f32> {
            (0..rows * cols).map(|i| (((i * 7919 + seed * 31) % 97) as f32 - 48.0) / 32.0).collect()
        };
        // [m, k] · [k, n]: rows split (m ≥ n), columns split, rows split with the left transposed
        for (m, k, n, transposed) in [(300, 200, 130, false), (100, 300, 250, false), (330, 160, 150, true)] {
            let (a, b) = (data(m, k, 1), data(k, n, 2));
            let lhs = match transposed {
                // the same values, stored [k, m] and viewed through a transpose
                false => Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &device),
                true => {
                    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                    Tensor::<2>::from_data(TensorData::new(at, [k, m]), &device).transpose()
                }
            };
            let rhs = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
            let ours = lhs.matmul(rhs).into_data().try_to_vec::<f32>().unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|c| a[i * k + c] as f64 * b[c * n + j] as f64).sum();
                    let got = ours[i * n + j] as f64;
                    assert!((got - want).abs() <= 1e-3 * (1.0 + want.abs()), "{m}x{k}x{n} [{i}, {j}]: {got} vs {want}");
                }
            }
        }
    }

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
        for arch in [Architecture::Decoder, Architecture::EncoderDecoder] {
            let cfg = ModelConfig { n_layer: 2, n_head: 2, d_model: 16, block_size: 8, arch };
            let device = Device::flex();
            let model = Transformer::new(&cfg, 11, &mut Rng::seeded(0), &device);
            assert_eq!(model.num_params(), cfg.n_params(11), "{arch:?}");
        }
    }

    /// For every attention mode on both architectures: changing a token that a position must
    /// not see leaves that position's logits exactly unchanged (and changing a visible one
    /// changes them, so the test can fail).
    #[test]
    fn invisible_tokens_do_not_leak() {
        let (b, s, vocab) = (2, 7, 11);
        let device = Device::flex();
        let mut rng = Rng::seeded(4);
        let tokens: Vec<i32> = (0..b * s).map(|_| rng.below(vocab) as i32).collect();
        let modes = [
            AttentionMode::Causal,
            AttentionMode::Bidirectional,
            AttentionMode::Prefix(vec![3, 1]),
            AttentionMode::KeyMask { causal: true, seq: s, visible: (0..b * s).map(|i| i % 3 != 1).collect() },
            AttentionMode::KeyMask { causal: false, seq: s, visible: (0..b * s).map(|i| i % 4 != 2).collect() },
        ];
        for arch in [Architecture::Decoder, Architecture::EncoderDecoder] {
            let cfg = ModelConfig { n_layer: 2, n_head: 2, d_model: 16, block_size: s, arch };
            let model = Transformer::new(&cfg, vocab, &mut Rng::seeded(9), &device);
            let logits = |toks: &[i32], mode: &AttentionMode| -> Vec<f32> {
                let input = ModelInput {
                    tokens: Tensor::from_data(TensorData::new(toks.to_vec(), [b, s]), &device),
                    route: Route::new(mode, arch, b, s, &device),
                    use_positions: true,
                    embed_mask: None,
                    head: Head::Vocab,
                };
                model.forward(&input).logits.into_data().try_to_vec::<f32>().unwrap()
            };
            for mode in &modes {
                let base = logits(&tokens, mode);
                let mut saw_change = false;
                for r in 0..b {
                    for j in 0..s {
                        let mut changed = tokens.clone();
                        changed[r * s + j] = (changed[r * s + j] + 1) % vocab as i32;
                        let out = logits(&changed, mode);
                        for q in 0..s {
                            let at = (r * s + q) * vocab;
                            let same = base[at..at + vocab] == out[at..at + vocab];
                            if !mode.allows(r, q, j) {
                                assert!(same, "{arch:?} {mode:?}: token {j} of row {r} leaked into position {q}");
                            } else if !same {
                                saw_change = true;
                            }
                        }
                    }
                }
                assert!(saw_change, "{arch:?} {mode:?}: visible tokens must matter");
            }
        }
    }

    /// Cross-attention through self-attention's custom operation against the composed
    /// reference: values, and the gradients of the decoder's input, the encoder's output and
    /// every parameter, for prefixes of every length (0: a query row with no key to see).
    #[test]
    fn cross_attention_matches_the_composed_reference() {
        let device = Device::flex().autodiff();
        let (b, s, d, h) = (4, 9, 16, 2);
        let cfg = ModelConfig { n_layer: 1, n_head: h, d_model: d, block_size: s, arch: Architecture::EncoderDecoder };
        let model = Transformer::new(&cfg, 7, &mut Rng::seeded(3), &device);
        let cross = model.blocks[0].cross.as_ref().expect("a decoder block of the encoder–decoder has cross-attention");
        let masks = EncoderDecoderMasks::new(&[0, 1, 5, s], s, &device);
        let mut rng = Rng::seeded(8);
        let mut draw = || -> Tensor<3> {
            let v: Vec<f32> = (0..b * s * d).map(|_| rng.normal() as f32).collect();
            Tensor::from_data(TensorData::new(v, [b, s, d]), &device)
        };
        let (x_vals, m_vals, r) = (draw(), draw(), draw());
        let run = |fused: bool| -> Vec<Vec<f32>> {
            let (x, memory) = (x_vals.clone().require_grad(), m_vals.clone().require_grad());
            let y = match fused {
                true => cross.forward(x.clone(), memory.clone(), masks.cross.clone()),
                false => cross.composed(x.clone(), memory.clone(), masks.cross.clone()),
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            let read3 = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
            let read2 = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            let mut out = vec![read3(y.clone()), read3(x.grad(&grads).unwrap()), read3(memory.grad(&grads).unwrap())];
            for linear in [&cross.q, &cross.kv, &cross.proj] {
                out.push(read2(linear.weight.val().grad(&grads).unwrap()));
            }
            out
        };
        let (ours, reference) = (run(true), run(false));
        for (what, (a, e)) in ["y", "dx", "dmemory", "dWq", "dWkv", "dWproj"].iter().zip(ours.iter().zip(&reference)) {
            for (a, e) in a.iter().zip(e) {
                assert!((a - e).abs() < 1e-4 * (1.0 + e.abs()), "{what}: {a} vs composed {e}");
            }
        }
    }

    /// Finite-difference check of one block's backward pass (attention, LayerNorm, GELU MLP)
    /// with respect to its input: d/dx sum(block(x) * r).
    #[test]
    fn block_gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let cfg = ModelConfig { n_layer: 1, n_head: 2, d_model: 8, block_size: 5, arch: Default::default() };
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
        let f = (block.forward(Stream::new(x.clone()), bias.clone()).into_sum() * r.clone()).sum();
        let grads = f.backward();
        let analytic = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();

        let valid = block.valid();
        let r_plain = Tensor::<3>::from_data(TensorData::new(r_vals, [b, s, d]), &plain);
        let bias_plain = AttentionMode::Prefix(vec![2, 0]).bias(b, s, &plain);
        let eval = |vals: &[f32]| -> f64 {
            let x = Tensor::<3>::from_data(TensorData::new(vals.to_vec(), [b, s, d]), &plain);
            let y: f32 = (valid.forward(Stream::new(x), bias_plain.clone()).into_sum() * r_plain.clone()).sum().into_scalar();
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

