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
#[cfg(feature = "training")]
pub mod dispatches;
pub mod memory;
pub mod model;
pub mod objectives;
#[cfg(feature = "training")]
pub mod optim;
pub mod probe_set;
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
pub use burn;
