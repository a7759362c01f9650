//! The lab's root: reads the experiment from the URL, starts the worker, lays out the panels.

use leptos::prelude::*;
use objlab_engine::spec::ExperimentSpec;

use super::attention_map::AttentionMap;
use super::benchmark_panel::BenchmarkPanel;
use super::cka_matrix::CkaMatrix;
use super::controls::Controls;
use super::error_banner::ErrorBanner;
use super::loss_chart::LossChart;
use super::model_view::ModelView;
use super::objective_panel::ObjectivePanel;
use super::probe_chart::ProbeChart;
use super::projection_view::ProjectionView;
use super::run_list::RunList;
use super::sample_view::SampleView;
use super::stats_panel::StatsPanel;
use super::time_slider::TimeSlider;
use crate::lab::Lab;
use crate::worker_link;

/// Mounts the lab on the page's body.
pub fn mount() {
    mount_to_body(App);
}

/// The experiment named by the page's URL query, and what in it was not understood.
fn spec_from_url() -> (ExperimentSpec, Vec<String>) {
    let query = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let (spec, errors) = ExperimentSpec::from_query(&query);
    let errors = errors.into_iter().map(|e| format!("in the page address: {e}")).collect();
    (spec, errors)
}

#[component]
pub fn App() -> impl IntoView {
    let (spec, errors) = spec_from_url();
    let lab = Lab::new(spec, errors);
    worker_link::connect(lab);
    view! {
        <header>
            <h1>"Objective Lab"</h1>
            <p class="tagline">"Train a small transformer in this tab and watch what a pretraining objective teaches it."</p>
        </header>
        <main>
            <ErrorBanner lab=lab />
            <Controls lab=lab />
            <ObjectivePanel lab=lab />
            <RunList lab=lab />
            <StatsPanel lab=lab />
            <BenchmarkPanel lab=lab />
            <LossChart lab=lab />
            <TimeSlider lab=lab />
            <ProjectionView lab=lab />
            <ProbeChart lab=lab />
            <CkaMatrix lab=lab />
            <AttentionMap lab=lab />
            <ModelView lab=lab />
            <SampleView lab=lab />
        </main>
        <footer>
            "Corpus: tiny shakespeare (public domain, via char-rnn/nanoGPT). Engine: burn on WebGPU or the CPU, in a Web Worker."
        </footer>
    }
}
