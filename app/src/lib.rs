//! Objective Lab in the browser: the page (Leptos, main thread). The training worker is its
//! own crate (`worker/`), so this one links the engine without burn.
//!
//! The page never trains: it sends typed [`objlab_engine::protocol`] messages to a Web Worker
//! that runs the engine, and draws what comes back, so the tab stays responsive.

pub mod lab;
pub mod saved_runs;
pub mod views;
pub mod wasm_features;
pub mod worker_link;
