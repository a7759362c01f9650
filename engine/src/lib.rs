//! Objective Lab's training engine: data, tokenizer, model, objectives, training loop.
//!
//! It has no web dependencies: the same code trains natively (the `objlab` CLI, the tests)
//! and inside the page's Web Worker (wasm32). Everything that reads a tensor back from the
//! device does so asynchronously (`into_data_async`, `Transaction::execute_async`), because
//! synchronous reads panic in the browser.

#[cfg(feature = "training")]
pub mod benchmark;
#[cfg(feature = "training")]
mod cpu_loops;
pub mod data;
pub mod digits;
#[cfg(feature = "training")]
pub mod dispatches;
#[cfg(all(feature = "training", any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd"))))]
mod lanes4;
pub mod memory;
pub mod model;
pub mod objectives;
#[cfg(feature = "training")]
pub mod optim;
pub mod probe_set;
pub mod results;
pub mod profile;
pub mod protocol;
pub mod rng;
pub mod schedule;
pub mod scheduler;
pub mod spec;
pub mod tokenizer;
#[cfg(feature = "training")]
pub mod train;
#[cfg(feature = "training")]
mod vectors;
#[cfg(feature = "training")]
mod workgroup_sum;

#[cfg(feature = "training")]
pub use burn;

/// The repository's root (the folder above the engine's), for the tests that read `docs/` and
/// `assets/`. Read from `CARGO_MANIFEST_DIR` when the tests run, not when they were compiled: a
/// test binary built in another clone (one target folder is shared) and found fresh here
/// would otherwise read that clone's files.
#[doc(hidden)]
pub fn repo_root() -> std::path::PathBuf {
    let engine = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    std::path::Path::new(&engine).join("..")
}
