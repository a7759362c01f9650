//! Objective Lab in the browser: the page (Leptos, main thread) and the training worker.
//!
//! The page never trains: it sends typed [`objlab_engine::protocol`] messages to a Web Worker
//! that runs the engine, and draws what comes back, so the tab stays responsive.

pub mod lab;
pub mod views;
pub mod worker;
pub mod worker_link;
