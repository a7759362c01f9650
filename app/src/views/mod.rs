//! The page's components, one per file.

pub mod app;
pub mod ask_model;
pub mod attention_map;
pub mod benchmark_panel;
pub mod canvas;
pub mod cka_matrix;
pub mod controls;
pub mod corpus_choice;
pub mod curves_download;
pub mod error_banner;
pub mod examples;
pub mod loss_chart;
pub mod model_size;
pub mod model_view;
pub mod objective_panel;
pub mod pixel_image;
pub mod probe_chart;
pub mod probe_confusion;
pub mod projection_view;
pub mod results_table;
pub mod run_list;
pub mod sample_view;
pub mod share_link;
pub mod stats_panel;
pub mod time_slider;
