//! The lab's root: reads the experiment from the URL, starts the worker, lays out the panels.

use leptos::prelude::*;
use objlab_engine::spec::{ExperimentSpec, workspace_from_query};

use super::ask_model::AskModel;
use super::attention_map::AttentionMap;
use super::benchmark_panel::BenchmarkPanel;
use super::cka_matrix::CkaMatrix;
use super::controls::Controls;
use super::examples::Examples;
use super::error_banner::ErrorBanner;
use super::loss_chart::LossChart;
use super::model_view::ModelView;
use super::objective_panel::ObjectivePanel;
use super::probe_chart::ProbeChart;
use super::projection_view::ProjectionView;
use super::results_table::ResultsTable;
use super::run_list::RunList;
use super::sample_view::SampleView;
use super::stats_panel::StatsPanel;
use super::time_slider::TimeSlider;
use crate::lab::Lab;
use crate::worker_link;

/// Mounts the lab on the page's body.
pub fn mount() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("{info}").into());
        show_page_failure(&info.to_string());
    }));
    mount_to_body(App);
}

/// A bug in the page (a panic) stops its WebAssembly for good: said in the error element, by
/// hand, since the page's own views can no longer run. The training worker is another
/// module and may go on; a reload starts afresh from the address, which holds the workspace.
fn show_page_failure(what: &str) {
    // once: every later call into the stopped module fails too
    static SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    let Ok(Some(banner)) = document.query_selector("[data-testid=error]") else { return };
    let Ok(p) = document.create_element("p") else { return };
    p.set_text_content(Some(&format!(
        "The page hit a bug and stopped updating ({what}). Reload the page to go on: its address keeps the experiment and the runs side by side."
    )));
    let _ = banner.append_child(&p);
}

/// The experiment named by the page's URL query, the runs of a shared workspace it holds,
/// and what in it was not understood.
fn spec_from_url() -> (ExperimentSpec, Vec<ExperimentSpec>, Vec<String>) {
    let query = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let (spec, runs, errors) = workspace_from_query(&query);
    let errors = errors.into_iter().map(|e| format!("in the page address: {e}")).collect();
    (spec, runs, errors)
}

#[component]
pub fn App() -> impl IntoView {
    let (spec, linked, errors) = spec_from_url();
    let lab = Lab::new(spec, errors, linked);
    // what an earlier visit kept, offered beside the runs (crate::saved_runs)
    lab.saved.set(crate::saved_runs::load().filter(|w| w.runs.iter().any(|r| r.spec().is_some())));
    worker_link::connect(lab);
    view! {
        <header>
            <h1>"Objective Lab"</h1>
            <p class="tagline">"Train a small transformer in this tab and watch what a pretraining objective teaches it."</p>
        </header>
        <main>
            <ErrorBanner lab=lab />
            <Examples lab=lab />
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
            <ResultsTable lab=lab />
            <AttentionMap lab=lab />
            <ModelView lab=lab />
            <AskModel lab=lab />
            <SampleView lab=lab />
        </main>
        <footer>
            "Corpora: tiny shakespeare (public domain, via char-rnn/nanoGPT); digits: the UCI Optical Recognition of Handwritten Digits data set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0), as scikit-learn ships it. Engine: burn on WebGPU or the CPU, in a Web Worker."
        </footer>
    }
}
