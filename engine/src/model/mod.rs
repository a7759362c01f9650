//! The transformer, in the spirit of nanoGPT's `model.py`: config up front, one block type,
//! pre-norm residual blocks, GELU MLP, learned position embeddings, weight-tied output head.
//!
//! Unlike nanoGPT the attention pattern is not baked in: each batch says whether attention is
//! causal, prefix (bidirectional over a per-row prefix, causal after) or bidirectional, because
//! the architecture and the objective are independent choices (Tay et al. 2022, UL2).
//! Weights are drawn on the CPU from the run's own seeded RNG, so a run starts from the same
//! weights on flex, on wgpu and in the browser.

use serde::{Deserialize, Serialize};

// The network itself (burn): the page's build leaves it out (the engine without its
// `training` feature), since the page only needs the configuration types below.
#[cfg(feature = "training")]
mod attention;
// Its CPU loops and its fused GPU kernels.
#[cfg(feature = "training")]
mod attention_cpu;
#[cfg(feature = "training")]
mod attention_kernel;
#[cfg(all(test, feature = "training"))]
mod checks;
#[cfg(feature = "training")]
mod cross_entropy;
// Its GPU kernels.
#[cfg(feature = "training")]
mod cross_entropy_kernel;
#[cfg(feature = "training")]
mod embedding;
#[cfg(feature = "training")]
mod gelu;
// Its GPU backward.
#[cfg(feature = "training")]
mod gelu_kernel;
#[cfg(feature = "training")]
mod layer_norm;
// Its CPU loops and its GPU kernels.
#[cfg(feature = "training")]
mod layer_norm_cpu;
#[cfg(feature = "training")]
mod layer_norm_kernel;
#[cfg(feature = "training")]
mod network;
// The residual stream's gradient handed to the LayerNorm that reads it.
#[cfg(feature = "training")]
mod residual;
#[cfg(feature = "training")]
pub use attention::self_attention;
#[cfg(feature = "training")]
pub use cross_entropy::cross_entropy;
#[cfg(feature = "training")]
pub use gelu::gelu;
#[cfg(feature = "training")]
pub use layer_norm::LayerNorm;
#[cfg(feature = "training")]
pub use network::*;

/// Which stack(s) the model has. The objective decides the attention pattern; the
/// architecture decides how that pattern is realised (Tay et al. 2022, UL2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// One stack. With the objective's mask it is a causal decoder (GPT), a non-causal
    /// (prefix) decoder, or an encoder (bidirectional, BERT).
    #[default]
    Decoder,
    /// Two stacks, as T5: the encoder reads a batch's prefix bidirectionally, the decoder
    /// reads the rest causally and attends to the encoder's output (cross-attention).
    /// Batches without a prefix use one stack: bidirectional ones the encoder, causal ones
    /// the decoder.
    EncoderDecoder,
}

impl Architecture {
    pub const NAMES: &'static [&'static str] = &["decoder", "encoder_decoder"];

    /// The name [`Architecture::parse`] reads (specs, URLs, the CLI).
    pub fn name(self) -> &'static str {
        match self {
            Self::Decoder => "decoder",
            Self::EncoderDecoder => "encoder_decoder",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "decoder" => Ok(Self::Decoder),
            "encoder_decoder" | "encoder-decoder" => Ok(Self::EncoderDecoder),
            _ => Err(format!("unknown architecture {s:?}; valid architectures: {}", Self::NAMES.join(", "))),
        }
    }
}

/// Size of the model. nanoGPT's names; the presets live in [`crate::spec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the residual stream (nanoGPT's `n_embd`).
    pub d_model: usize,
    /// Longest sequence the model sees (nanoGPT's `block_size`).
    pub block_size: usize,
    #[serde(default)]
    pub arch: Architecture,
}

impl ModelConfig {
    /// Weights of one pre-norm block: two LayerNorms (scale and shift), attention's q/k/v and
    /// output projections (4·d²), the MLP (8·d²); no linear biases.
    fn params_per_block(&self) -> usize {
        let d = self.d_model;
        2 * 2 * d + d * 3 * d + d * d + d * 4 * d + 4 * d * d
    }

    /// Number of trainable parameters for a vocabulary of `vocab` tokens (tied head counted once).
    pub fn n_params(&self, vocab: usize) -> usize {
        let d = self.d_model;
        let per_block = self.params_per_block();
        let heads = d /* binary */ + d * self.block_size /* position */ + d * d /* projection */;
        let base = vocab * d + self.block_size * d + self.n_layer * per_block + 2 * d + heads;
        match self.arch {
            Architecture::Decoder => base,
            // + encoder stack and its final LayerNorm, + a cross-attention sublayer per decoder block
            Architecture::EncoderDecoder => base + self.n_layer * per_block + 2 * d + self.n_layer * (2 * d + 4 * d * d),
        }
    }

    /// Training FLOPs per token of the decoder on next-token prediction, as nanoGPT's
    /// `estimate_mfu` (PaLM appendix B): 6 per weight of the blocks, the final LayerNorm and
    /// the tied head, plus 12·layers·width·context for attention's two products (forward and
    /// backward).
    pub fn train_flops_per_token(&self, vocab: usize) -> f64 {
        let d = self.d_model;
        let weights = vocab * d + self.n_layer * self.params_per_block() + 2 * d;
        6.0 * weights as f64 + 12.0 * (self.n_layer * d * self.block_size) as f64
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
    /// Causal or bidirectional, and the keys with `visible[row * seq + k] == false` are hidden
    /// from every query but their own (MP3's key masking).
    KeyMask { causal: bool, seq: usize, visible: Vec<bool> },
}

impl AttentionMode {
    /// Whether no token sees a later one (GPT's mask, with or without hidden keys): such a
    /// batch runs the encoder–decoder's decoder alone, and its run is read causally.
    pub fn is_causal(&self) -> bool {
        matches!(self, AttentionMode::Causal | AttentionMode::KeyMask { causal: true, .. })
    }

    /// Whether query `q` may attend to key `k` in row `row`.
    pub fn allows(&self, row: usize, q: usize, k: usize) -> bool {
        match self {
            AttentionMode::Causal => k <= q,
            AttentionMode::Bidirectional => true,
            AttentionMode::Prefix(prefix) => k <= q || k < prefix[row],
            AttentionMode::KeyMask { causal, seq, visible } => (!causal || k <= q) && (k == q || visible[row * seq + k]),
        }
    }
}

/// Which output head scores the hidden states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Next/original token over the vocabulary (weight-tied to the token embedding).
    Vocab,
    /// One logit per position: replaced or original (RTD).
    Binary,
    /// `block_size` classes per position: where is this token (MP3).
    Position,
    /// Mean-pooled, projected, unit-length vector per row (contrastive).
    Projection,
}
