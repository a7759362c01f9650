//! The page's components, one per file.

pub mod app;
pub mod controls;
pub mod error_banner;
pub mod loss_chart;
pub mod model_view;
pub mod objective_panel;
pub mod sample_view;
pub mod stats_panel;
