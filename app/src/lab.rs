//! The page's reactive state: one signal per thing the page shows, updated from worker messages.
//!
//! The workspace holds several runs ([`RunView`]), each with its own curves, snapshots, latest
//! sample and latest examples; the stats panel, "what the model sees" and the samples show the
//! *selected* run's ([`Lab::selected_run`]), so selecting another run (even a finished one)
//! shows its own at once.

use leptos::prelude::*;
use std::sync::Arc;

use objlab_engine::data::{check_upload, is_upload, upload_file_name};
use objlab_engine::memory;
use objlab_engine::objectives::{Answers, Example};
use objlab_engine::protocol::{BenchmarkReport, DeviceKind, FromWorker, RunId, RunState, Snapshot, ToWorker};
use objlab_engine::spec::{ExperimentSpec, builtin_vocab, numbered_repeats, run_labels, workspace_query};

use crate::saved_runs::{self, SavedRun, SavedWorkspace};
use crate::worker_link;

/// One colour per run, in the order runs are added (colour-blind-safe palette, Okabe–Ito).
pub const RUN_COLOURS: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c6d31"];
/// Runs side by side at most (one colour each).
pub const MAX_RUNS: usize = RUN_COLOURS.len();

/// A text of one's own, chosen on the page: it stays in the page (a link cannot carry it) and
/// is sent to every worker the page starts.
#[derive(Clone)]
pub struct Upload {
    /// Its corpus name (`file:…`, what specs name).
    pub name: String,
    /// The model's vocabulary for it (characters and the special tokens).
    pub vocab: usize,
    pub text: Arc<str>,
}

/// One run of the workspace, as the page shows it.
#[derive(Clone, Copy)]
pub struct RunView {
    pub id: RunId,
    pub spec: StoredValue<ExperimentSpec>,
    pub colour: &'static str,
    pub state: RwSignal<RunState>,
    pub step: RwSignal<usize>,
    pub steps: RwSignal<usize>,
    /// (step, loss) of every training step read so far.
    pub train: RwSignal<Vec<(usize, f32)>>,
    pub val: RwSignal<Vec<(usize, f32)>>,
    pub steps_per_s: RwSignal<f64>,
    pub tokens_per_s: RwSignal<f64>,
    /// Learning rate of the next step.
    pub learning_rate: RwSignal<f64>,
    /// Representation snapshots, oldest first.
    pub snapshots: RwSignal<Vec<Snapshot>>,
    /// Whether its curves are drawn.
    pub visible: RwSignal<bool>,
    /// Why it stopped (divergence, refusal, failure), shown as a marker on its row.
    pub failure: RwSignal<Option<String>>,
    /// The latest text it generated: (step, text).
    pub sample: RwSignal<Option<(usize, String)>>,
    /// Conditional training: (bad-word occurrences, words) in the latest sample.
    pub sample_bad_words: RwSignal<Option<(usize, usize)>>,
    /// "What the model sees": one example per objective of a recent batch, and its step.
    pub examples: RwSignal<(usize, Vec<Example>)>,
    /// Kept from an earlier visit ([`saved_runs`]): its curves only, not in the worker.
    pub restored: bool,
}

impl RunView {
    /// Whether the run trains on the digits (whose tokens the views draw as images).
    pub fn on_digits(&self) -> bool {
        self.spec.with_value(|s| s.corpus == objlab_engine::digits::NAME)
    }

    fn new(id: RunId, spec: ExperimentSpec, colour: &'static str) -> Self {
        let steps = spec.train.steps;
        Self {
            id,
            spec: StoredValue::new(spec),
            colour,
            state: RwSignal::new(RunState::Loading),
            step: RwSignal::new(0),
            steps: RwSignal::new(steps),
            train: RwSignal::new(Vec::new()),
            val: RwSignal::new(Vec::new()),
            steps_per_s: RwSignal::new(0.0),
            tokens_per_s: RwSignal::new(0.0),
            learning_rate: RwSignal::new(0.0),
            snapshots: RwSignal::new(Vec::new()),
            visible: RwSignal::new(true),
            failure: RwSignal::new(None),
            sample: RwSignal::new(None),
            sample_bad_words: RwSignal::new(None),
            examples: RwSignal::new((0, Vec::new())),
            restored: false,
        }
    }

    /// What [`saved_runs`] keeps of this run.
    fn saved(&self) -> SavedRun {
        SavedRun {
            query: self.spec.with_value(ExperimentSpec::to_query),
            state: self.state.get_untracked(),
            step: self.step.get_untracked(),
            steps: self.steps.get_untracked(),
            failure: self.failure.get_untracked(),
            train: self.train.with_untracked(|t| saved_runs::thin(t, saved_runs::MAX_POINTS)),
            val: self.val.with_untracked(|v| saved_runs::thin(v, usize::MAX)),
            sample: self.sample.get_untracked(),
            snapshots: self.snapshots.with_untracked(|s| saved_runs::thin_snapshots(s, saved_runs::MAX_SNAPSHOTS)),
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state.get_untracked(), RunState::Loading | RunState::Running | RunState::Paused)
    }

    /// The latest snapshot at or before `step` (tracked).
    pub fn snapshot_at(&self, step: Option<usize>) -> Option<Snapshot> {
        self.snapshots.with(|s| match step {
            None => s.last().cloned(),
            Some(step) => s.iter().rev().find(|x| x.step <= step).or(s.first()).cloned(),
        })
    }
}

/// Attention weights the worker sent for the attention-map view.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionView {
    pub run: RunId,
    pub tokens: Vec<String>,
    /// how the maps read the text (which stack, which mask), in words
    pub reads: String,
    pub layers: usize,
    pub heads: usize,
    /// weights: [layers, heads, seq, seq]
    pub weights: Vec<f32>,
}

/// "Ask the model": one run's part of the question the page last sent and, once the worker
/// answers, its answers or why there are none.
#[derive(Clone, Debug, PartialEq)]
pub struct Asked {
    pub run: RunId,
    pub text: String,
    /// `None` while the worker is answering.
    pub reply: Option<Result<Answers, String>>,
}

/// The benchmark button's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Benchmark {
    Idle,
    /// `done` of `steps` timed steps (0: loading and warming up).
    Running { done: usize, steps: usize },
    Done(Box<BenchmarkReport>),
}

/// One CKA comparison: (step, the runs compared, their matrix [runs, runs] row by row).
pub type CkaAt = (usize, Vec<RunId>, Vec<f32>);

#[derive(Clone, Copy)]
pub struct Lab {
    /// The experiment the controls edit: what "start" and "add run" use.
    pub spec: RwSignal<ExperimentSpec>,
    /// The worker crashed (its `error` event): "reset" starts a fresh one.
    pub worker_crashed: RwSignal<bool>,
    /// What the device element says ("WebGPU — …" or "CPU — …").
    pub device: RwSignal<String>,
    /// An experiment change that waits for the user to agree to reset the running runs.
    pub pending: RwSignal<Option<ExperimentSpec>>,
    /// Messages for the error element, newest last.
    pub errors: RwSignal<Vec<String>>,
    /// Why the last change at a control was refused (shown beside the controls).
    pub control_error: RwSignal<Option<String>>,
    /// The workspace: runs in the order they were added.
    pub runs: RwSignal<Vec<RunView>>,
    pub selected: RwSignal<Option<RunId>>,
    next_id: StoredValue<RunId>,
    /// The page's reactive owner (the root component's), under which every run's signals are
    /// made: a run added from a button inside a row or a notice must outlive that button (its
    /// signals were disposed with the row or the notice, and the page stopped at their next
    /// use).
    owner: StoredValue<Option<Owner>>,
    /// Linear CKA between runs, by step.
    pub cka: RwSignal<Vec<CkaAt>>,
    /// The snapshot step the representation views show (`None`: the latest).
    pub time: RwSignal<Option<usize>>,
    pub attention: RwSignal<Option<AttentionView>>,
    /// The last question, one entry per run asked (one run, or every run at once).
    pub asked: RwSignal<Vec<Asked>>,
    /// Milliseconds from opening the page to the first finished training step (of any run),
    /// less the time the ready page waited for its first run to be started ([`waited_ready`]).
    pub first_step_ms: RwSignal<Option<f64>>,
    /// When (ms since opening the page) the first worker said it was ready, and how long the
    /// page then waited for the first run: the figure above leaves that wait out, so that a
    /// visitor who reads before pressing Start does not lengthen it.
    ready_ms: StoredValue<Option<f64>>,
    idle_ms: StoredValue<Option<f64>>,
    /// Texts of one's own chosen on the page, oldest first.
    pub uploads: RwSignal<Vec<Upload>>,
    /// The runs an earlier visit kept in this browser, offered until shown or forgotten.
    pub saved: RwSignal<Option<SavedWorkspace>>,
    /// When (ms since 1970) the workspace was last kept.
    last_save_ms: StoredValue<f64>,
    /// The benchmark button's state and its latest report.
    pub benchmark: RwSignal<Benchmark>,
    /// Loss chart options.
    pub log_x: RwSignal<bool>,
    pub smoothing: RwSignal<f64>,
    /// The loss chart shows each run's losses divided by its first training loss.
    pub relative: RwSignal<bool>,
    /// The runs the page's address holds (a shared workspace), offered until they start or
    /// the user starts something else.
    pub linked: RwSignal<Vec<ExperimentSpec>>,
    /// Where the offered runs come from: the address (None) or an example (its title).
    pub linked_from: RwSignal<Option<&'static str>>,
    /// Changes when the window's size or pixel ratio does: the canvases that fit the screen
    /// redraw on it (one window listener for the page, [`crate::views::canvas::layout_changes`]).
    pub layout: ReadSignal<u32>,
}

/// Seconds over which a run's shown steps/s is averaged.
const RATE_SECONDS: f64 = 1.0;

/// The steps/s to show after a report of `rate` over `steps` steps, where `shown` was shown
/// (0: nothing yet): an average that forgets with time, not with reports, so that runs
/// reporting every step and every ten steps settle alike.
fn smoothed_rate(shown: f64, rate: f64, steps: usize) -> f64 {
    if shown <= 0.0 || !shown.is_finite() || rate <= 0.0 || !rate.is_finite() {
        return rate;
    }
    let seconds = steps.max(1) as f64 / rate;
    let keep = (-seconds / RATE_SECONDS).exp();
    keep * shown + (1.0 - keep) * rate
}

/// Labels that more than one run shares (the same experiment added twice) get the run's
/// number, so that every run can be told apart by name as well as by colour.
/// How long (ms) the page sat ready, waiting for its first run, started at `pressed` (ms since
/// the page was opened), where the worker said it was ready at `ready`: 0 where the run was
/// started before that. The page's time to its first step leaves this out, so that a visitor
/// who starts at once and one who reads first see the same figure.
fn waited_ready(ready: Option<f64>, pressed: f64) -> f64 {
    ready.map_or(0.0, |ready| (pressed - ready).max(0.0))
}

/// Milliseconds since the page was opened (performance.now() counts from navigation start).
fn page_ms() -> Option<f64> {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now())
}

/// Whether the runs an earlier visit kept are the runs of `linked` (the address's), in order.
fn same_runs(saved: &SavedWorkspace, linked: &[ExperimentSpec]) -> bool {
    saved.runs.len() == linked.len() && saved.runs.iter().zip(linked).all(|(s, l)| s.query == l.to_query())
}

/// Run `id`'s label among `labels` ([`Lab::labels`]), or nothing for a run not (yet) listed.
pub fn label_in(labels: &[(RunId, String)], id: RunId) -> String {
    labels.iter().find(|(r, _)| *r == id).map(|(_, l)| l.clone()).unwrap_or_default()
}

/// A run's "duplicate": the same experiment with the next seed that no run in `existing`
/// already trains it with, so that duplicating one run three times gives three new seeds
/// (1338, 1339, 1340), not three copies of seed 1338 whose curves lie on each other.
pub fn with_next_free_seed(spec: &ExperimentSpec, existing: &[ExperimentSpec]) -> ExperimentSpec {
    let mut next = spec.clone();
    loop {
        next.seed = next.seed.wrapping_add(1);
        if !existing.contains(&next) {
            return next;
        }
    }
}

impl Lab {
    pub fn new(spec: ExperimentSpec, errors: Vec<String>, linked: Vec<ExperimentSpec>) -> Self {
        Self {
            spec: RwSignal::new(spec),
            worker_crashed: RwSignal::new(false),
            device: RwSignal::new("not started".into()),
            pending: RwSignal::new(None),
            errors: RwSignal::new(errors),
            control_error: RwSignal::new(None),
            runs: RwSignal::new(Vec::new()),
            selected: RwSignal::new(None),
            next_id: StoredValue::new(1),
            owner: StoredValue::new(Owner::current()),
            cka: RwSignal::new(Vec::new()),
            time: RwSignal::new(None),
            attention: RwSignal::new(None),
            asked: RwSignal::new(Vec::new()),
            first_step_ms: RwSignal::new(None),
            ready_ms: StoredValue::new(None),
            idle_ms: StoredValue::new(None),
            uploads: RwSignal::new(Vec::new()),
            saved: RwSignal::new(None),
            last_save_ms: StoredValue::new(0.0),
            benchmark: RwSignal::new(Benchmark::Idle),
            log_x: RwSignal::new(false),
            smoothing: RwSignal::new(0.0),
            relative: RwSignal::new(false),
            layout: crate::views::canvas::layout_changes(),
            linked: RwSignal::new(linked),
            linked_from: RwSignal::new(None),
        }
    }

    /// Writes the experiment the controls show into the page address, and the workspace's
    /// runs where it holds two or more (or the runs of the link not started yet), so that the
    /// address reproduces both ([`workspace_query`]).
    pub fn write_address(&self) {
        let controls = self.pending.get_untracked().unwrap_or_else(|| self.spec.get_untracked());
        let mut runs: Vec<ExperimentSpec> = self.runs.with_untracked(|r| r.iter().map(|r| r.spec.get_value()).collect());
        if runs.len() < 2 {
            runs = self.linked.get_untracked();
        }
        let query = format!("?{}", workspace_query(&controls, &runs));
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query));
        }
    }

    /// Starts the runs the page's address holds, in a fresh workspace.
    pub fn start_linked(&self) {
        let linked = self.linked.get_untracked();
        // trained again, the runs an earlier visit kept are replaced: no longer offered
        if self.saved.with_untracked(|s| s.as_ref().is_some_and(|s| same_runs(s, &linked))) {
            self.saved.set(None);
        }
        if !self.runs.with_untracked(Vec::is_empty) {
            self.reset();
        }
        self.linked.set(Vec::new());
        for spec in linked {
            if let Err(e) = self.add_run(spec) {
                self.push_error(format!("a run of the link was not started: {e}"));
            }
        }
        self.write_address();
    }

    /// The experiment the controls show: the pending change if there is one (tracked).
    pub fn shown(&self) -> ExperimentSpec {
        self.pending.get().unwrap_or_else(|| self.spec.get())
    }

    /// Whether a run is under way (a change to the experiment must then wait for a reset, or
    /// go into a new run).
    pub fn busy(&self) -> bool {
        self.runs.with_untracked(|runs| runs.iter().any(|r| r.is_live()))
    }

    /// Whether any run is under way (tracked).
    pub fn any_live(&self) -> bool {
        self.runs.with(|runs| runs.iter().any(|r| matches!(r.state.get(), RunState::Loading | RunState::Running | RunState::Paused)))
    }

    /// The worker crashed: every run it held has failed.
    pub fn worker_failed(&self) {
        self.worker_crashed.set(true);
        self.benchmark.set(Benchmark::Idle);
        self.runs.with_untracked(|runs| runs.iter().filter(|r| r.is_live()).for_each(|r| r.state.set(RunState::Failed)));
        self.save_now();
    }

    /// The run the single-run panels show (tracked).
    pub fn selected_run(&self) -> Option<RunView> {
        let id = self.selected.get()?;
        self.runs.with(|runs| runs.iter().find(|r| r.id == id).copied())
    }

    /// The experiment of the selected run, or the controls' before any run (tracked): what
    /// the single-run panels explain (a run's experiment never changes; the controls' may
    /// already show the next run's).
    pub fn selected_spec(&self) -> ExperimentSpec {
        self.selected_run().map(|r| r.spec.get_value()).unwrap_or_else(|| self.spec.get())
    }

    /// " — <label>" of the selected run where the workspace has more than one run, to name it
    /// in the single-run panels' headings; else empty (tracked).
    pub fn heading_run_suffix(&self) -> String {
        let Some(id) = self.selected.get() else { return String::new() };
        let labels = self.labels();
        if labels.len() < 2 {
            return String::new();
        }
        labels.into_iter().find(|(r, _)| *r == id).map(|(_, l)| format!(" — {l}")).unwrap_or_default()
    }

    fn selected_run_untracked(&self) -> Option<RunView> {
        self.selected.get_untracked().and_then(|id| self.run(id))
    }

    /// State of the selected run; idle when there is none (tracked).
    pub fn state(&self) -> RunState {
        self.selected_run().map_or(RunState::Idle, |r| r.state.get())
    }

    pub fn run(&self, id: RunId) -> Option<RunView> {
        self.runs.with_untracked(|runs| runs.iter().find(|r| r.id == id).copied())
    }

    /// Labels of the runs (what differs between them), in workspace order (tracked).
    pub fn labels(&self) -> Vec<(RunId, String)> {
        self.runs.with(|runs| {
            let specs: Vec<ExperimentSpec> = runs.iter().map(|r| r.spec.get_value()).collect();
            let refs: Vec<&ExperimentSpec> = specs.iter().collect();
            numbered_repeats(runs.iter().map(|r| r.id).zip(run_labels(&refs)).collect())
        })
    }

    /// Applies a change to the experiment, checked in full. While runs are under way the
    /// change waits in `pending` until the user agrees to reset them or adds it as a new run
    /// (never mixing two objectives into one curve). A refused change is explained beside the
    /// controls.
    pub fn change(&self, f: impl FnOnce(&mut ExperimentSpec) -> Result<(), String>) {
        let busy = self.busy();
        let mut spec = if busy { self.pending.get_untracked().unwrap_or_else(|| self.spec.get_untracked()) } else { self.spec.get_untracked() };
        match f(&mut spec).and_then(|_| spec.validate()) {
            Ok(()) => {
                self.control_error.set(None);
                if busy {
                    self.pending.set(Some(spec));
                } else {
                    self.spec.set(spec);
                    self.write_address();
                }
            }
            Err(e) => {
                self.control_error.set(Some(e));
                // Controls show the spec's values: repaint them so the refused value goes away.
                self.spec.update(|_| {});
            }
        }
    }

    /// A new run's id and the first colour no run has.
    fn next_run(&self) -> (RunId, &'static str) {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        let used: Vec<&str> = self.runs.with_untracked(|runs| runs.iter().map(|r| r.colour).collect());
        (id, RUN_COLOURS.iter().find(|c| !used.contains(c)).copied().unwrap_or(RUN_COLOURS[0]))
    }

    /// Makes a run's view under the page's root owner (see `owner`).
    fn under_root(&self, make: impl FnOnce() -> RunView) -> RunView {
        match self.owner.get_value() {
            Some(owner) => owner.with(make),
            None => make(),
        }
    }

    /// Adds a run of `spec` to the workspace and starts it, or says why not: an invalid spec,
    /// too many runs, or more memory than the device budget (estimated before allocating).
    pub fn add_run(&self, spec: ExperimentSpec) -> Result<RunId, String> {
        spec.validate()?;
        if is_upload(&spec.corpus) && !self.uploads.with_untracked(|u| u.iter().any(|u| u.name == spec.corpus)) {
            return Err(format!(
                "it trains on your own file {:?}, which this page does not hold (a file never leaves your computer, and a link cannot carry it): choose the file again under Text",
                upload_file_name(&spec.corpus)
            ));
        }
        let live: Vec<ExperimentSpec> =
            self.runs.with_untracked(|runs| runs.iter().filter(|r| r.is_live()).map(|r| r.spec.get_value()).collect());
        if live.len() >= MAX_RUNS {
            return Err(format!("at most {MAX_RUNS} runs train side by side; remove one first"));
        }
        let mut specs: Vec<&ExperimentSpec> = live.iter().collect();
        specs.push(&spec);
        memory::check_workspace(&specs, self.vocab_bound(), memory::DEVICE_BUDGET)?;
        let (id, colour) = self.next_run();
        let view = self.under_root(|| RunView::new(id, spec.clone(), colour));
        self.runs.update(|runs| runs.push(view));
        if self.idle_ms.get_value().is_none() {
            // the first run: how long the ready page waited for it
            self.idle_ms.set_value(Some(waited_ready(self.ready_ms.get_value(), page_ms().unwrap_or(0.0))));
        }
        if self.selected.get_untracked().is_none() {
            self.select(id);
        }
        worker_link::send(*self, &ToWorker::AddRun { run: id, spec });
        self.write_address();
        Ok(id)
    }

    /// Keeps the workspace's runs in this browser now ([`saved_runs`]); an empty workspace
    /// forgets what was kept.
    pub fn save_now(&self) {
        let now = js_sys::Date::now();
        self.last_save_ms.set_value(now);
        let runs: Vec<SavedRun> = self.runs.with_untracked(|r| r.iter().map(RunView::saved).collect());
        let order: Vec<RunId> = self.runs.with_untracked(|r| r.iter().map(|r| r.id).collect());
        let mut workspace = saved_runs::new_workspace(now, runs);
        workspace.cka = self.cka.with_untracked(|cka| saved_runs::keep_cka(cka, &order));
        saved_runs::store(&workspace);
    }

    /// Keeps the workspace unless it was kept less than [`saved_runs::SAVE_EVERY_MS`] ago.
    fn save_soon(&self) {
        if js_sys::Date::now() - self.last_save_ms.get_value() >= saved_runs::SAVE_EVERY_MS {
            self.save_now();
        }
    }

    /// Keeps the workspace after news of `run`: at once where the run has ended (its last
    /// sample and snapshot come after its end), else at the usual pace.
    fn save_after(&self, run: RunView) {
        if run.is_live() { self.save_soon() } else { self.save_now() }
    }

    /// Shows the runs an earlier visit kept, beside the present ones: their curves, progress
    /// and state (one under way then is shown stopped), not their weights.
    pub fn show_saved(&self) {
        let Some(saved) = self.saved.get_untracked() else { return };
        self.saved.set(None);
        // the address's runs, when they are these, are now in the workspace: nothing to offer
        if self.linked.with_untracked(|l| same_runs(&saved, l)) {
            self.linked.set(Vec::new());
        }
        let mut left_out = 0;
        // the id each kept run gets here, by its position in the kept workspace
        let mut ids: Vec<Option<RunId>> = Vec::new();
        for kept in saved.runs {
            let Some(spec) = kept.spec() else {
                left_out += 1;
                ids.push(None);
                continue;
            };
            if self.runs.with_untracked(Vec::len) >= MAX_RUNS {
                left_out += 1;
                ids.push(None);
                continue;
            }
            let (id, colour) = self.next_run();
            let view = self.under_root(|| {
                let view = RunView { restored: true, ..RunView::new(id, spec, colour) };
                view.state.set(kept.shown_state());
                view.step.set(kept.step);
                view.steps.set(kept.steps);
                view.failure.set(kept.failure);
                view.train.set(kept.train);
                view.val.set(kept.val);
                view.sample.set(kept.sample);
                view.snapshots.set(kept.snapshots.into_iter().map(|s| Snapshot { run: id, ..s }).collect());
                view
            });
            self.runs.update(|runs| runs.push(view));
            ids.push(Some(id));
            if self.selected.get_untracked().is_none() {
                self.select(id);
            }
        }
        // their comparisons, where every run compared came back and the step is free
        for (step, at, matrix) in saved.cka {
            let runs: Option<Vec<RunId>> = at.iter().map(|k| ids.get(*k).copied().flatten()).collect();
            let Some(runs) = runs else { continue };
            if runs.len() * runs.len() != matrix.len() {
                continue;
            }
            self.cka.update(|all| {
                if all.iter().all(|(s, _, _)| *s != step) {
                    let at = all.iter().position(|(s, _, _)| *s > step).unwrap_or(all.len());
                    all.insert(at, (step, runs, matrix));
                }
            });
        }
        if left_out > 0 {
            self.push_error(format!(
                "{left_out} kept run{} left out (at most {MAX_RUNS} runs side by side, or an experiment this page no longer reads)",
                if left_out == 1 { " was" } else { "s were" }
            ));
        }
        self.write_address();
        self.save_now();
    }

    /// Trains run `id` (one kept from an earlier visit) anew in its place: the same experiment
    /// and seed, so the same curve, and weights this time.
    pub fn retrain(&self, id: RunId) -> Result<RunId, String> {
        let Some(at) = self.runs.with_untracked(|r| r.iter().position(|r| r.id == id)) else { return Err("it is gone".into()) };
        let spec = self.runs.with_untracked(|r| r[at].spec.get_value());
        let was_selected = self.selected.get_untracked() == Some(id);
        self.remove_run(id);
        let new = self.add_run(spec)?;
        self.runs.update(|runs| {
            if let Some(view) = runs.pop() {
                runs.insert(at.min(runs.len()), view);
            }
        });
        if was_selected {
            self.select(new);
        }
        self.write_address();
        Ok(new)
    }

    /// Forgets the runs an earlier visit kept (the present workspace, if any, is kept instead).
    pub fn forget_saved(&self) {
        self.saved.set(None);
        self.save_now();
    }

    /// Takes the bytes of a text file of one's own (`file_name`): checks it
    /// ([`check_upload`], without tokenizing it: the worker does), sends it to the worker, and
    /// makes it the experiment's corpus. Returns what the page says of it; a refused file
    /// leaves everything as it was.
    pub fn add_upload(&self, file_name: &str, bytes: &[u8]) -> Result<String, String> {
        let checked = check_upload(file_name, bytes).map_err(|e| format!("the file was not used: {e}"))?;
        let said = format!(
            "{}: {} characters, {} distinct, split 90/10 into training and validation text",
            upload_file_name(&checked.name),
            checked.text.chars().count(),
            checked.tokenizer.n_chars()
        );
        let upload = Upload { name: checked.name.clone(), vocab: checked.tokenizer.vocab_size(), text: checked.text.into() };
        if !self.uploads.with_untracked(|u| u.iter().any(|u| u.name == upload.name)) {
            self.send_upload(&upload);
            self.uploads.update(|u| u.push(upload));
        }
        self.change(|spec| spec.set("corpus", &checked.name));
        Ok(said)
    }

    /// Sends every text of one's own to a worker just started (before any run that needs it).
    pub fn send_uploads(&self) {
        self.uploads.with_untracked(|u| u.iter().for_each(|u| self.send_upload(u)));
    }

    fn send_upload(&self, upload: &Upload) {
        worker_link::send(*self, &ToWorker::AddCorpus { name: upload.name.clone(), text: upload.text.to_string() });
    }

    /// The model's vocabulary on `corpus` (tracked): the built-in text's, or a text of one's
    /// own that the page holds; `None` for one it does not.
    pub fn vocab_of(&self, corpus: &str) -> Option<usize> {
        builtin_vocab(corpus).or_else(|| self.uploads.with(|u| u.iter().find(|u| u.name == corpus).map(|u| u.vocab)))
    }

    /// The largest vocabulary a run may need: 128 bounds the built-in corpus's, and the texts
    /// of one's own are known.
    fn vocab_bound(&self) -> usize {
        self.uploads.with_untracked(|u| u.iter().map(|u| u.vocab).fold(128, usize::max))
    }

    /// Adds the experiment the controls show (a pending change included) as a new run.
    pub fn add_shown_run(&self) {
        let spec = self.pending.get_untracked().unwrap_or_else(|| self.spec.get_untracked());
        match self.add_run(spec.clone()) {
            Ok(_) => {
                self.control_error.set(None);
                self.pending.set(None);
                self.spec.set(spec);
                self.write_address();
            }
            Err(e) => self.push_error(format!("the run was not added: {e}")),
        }
    }

    /// Shows run `id` in the single-run panels (stats, what the model sees, samples).
    pub fn select(&self, id: RunId) {
        if self.run(id).is_some() {
            self.selected.set(Some(id));
        }
    }

    /// "Ask the model": sends `text` to the models of `runs`; their answers replace the last
    /// question's.
    pub fn ask(&self, runs: &[RunId], text: String) {
        self.asked.set(runs.iter().map(|&run| Asked { run, text: text.clone(), reply: None }).collect());
        for &run in runs {
            worker_link::send(*self, &ToWorker::Ask { run, text: text.clone() });
        }
    }

    /// The worker's reply to a question, kept if it is the question the page still shows.
    fn answered(&self, run: RunId, text: &str, reply: Result<Answers, String>) {
        self.asked.update(|all| {
            if let Some(a) = all.iter_mut().find(|a| a.run == run && a.text == text) {
                a.reply = Some(reply);
            }
        });
    }

    pub fn remove_run(&self, id: RunId) {
        worker_link::send(*self, &ToWorker::RemoveRun { run: id });
        self.runs.update(|runs| runs.retain(|r| r.id != id));
        // its attention maps go with it
        if self.attention.with_untracked(|a| a.as_ref().is_some_and(|a| a.run == id)) {
            self.attention.set(None);
        }
        if self.asked.with_untracked(|all| all.iter().any(|a| a.run == id)) {
            self.asked.update(|all| all.retain(|a| a.run != id));
        }
        self.cka.update(|all| {
            for (_, runs, matrix) in all.iter_mut() {
                if let Some(k) = runs.iter().position(|r| *r == id) {
                    let m = runs.len();
                    *matrix = (0..m * m).filter(|i| i / m != k && i % m != k).map(|i| matrix[i]).collect();
                    runs.remove(k);
                }
            }
        });
        if self.selected.get_untracked() == Some(id) {
            self.selected.set(None);
            if let Some(first) = self.runs.with_untracked(|r| r.first().map(|r| r.id)) {
                self.select(first);
            }
        }
        self.write_address();
        self.save_now();
    }

    /// Ends every run (a crashed worker is replaced; a live one forgets its runs), clears the
    /// page, and applies a change that waited for the reset.
    pub fn reset(&self) {
        // (a run kept from an earlier visit failed in another page's worker, not this one's)
        let selected_failed = self.selected_run_untracked().is_some_and(|r| r.state.get_untracked() == RunState::Failed && !r.restored);
        if self.worker_crashed.get_untracked() || (selected_failed && self.runs.with_untracked(|r| r.iter().all(|r| !r.is_live()))) {
            worker_link::connect(*self);
            self.worker_crashed.set(false);
        } else {
            worker_link::send(*self, &ToWorker::Reset);
        }
        self.runs.set(Vec::new());
        self.selected.set(None);
        self.cka.set(Vec::new());
        self.time.set(None);
        self.attention.set(None);
        self.asked.set(Vec::new());
        self.errors.set(Vec::new());
        self.device.set("not started".into());
        if let Some(spec) = self.pending.get_untracked() {
            self.spec.set(spec);
            self.pending.set(None);
        }
        self.write_address();
        // Reset forgets the runs: the browser keeps none of them either
        self.save_now();
    }

    /// Shows `message` in the error element (once: a repeated message is not stacked).
    pub fn push_error(&self, message: String) {
        self.errors.update(|e| {
            if !e.contains(&message) && e.len() < 5 {
                e.push(message);
            }
        });
    }

    pub fn apply(&self, message: FromWorker) {
        match message {
            FromWorker::Ready => {
                if self.ready_ms.get_value().is_none() {
                    self.ready_ms.set_value(page_ms());
                }
            }
            FromWorker::Device { kind, name, note } => {
                let text = match (kind, note) {
                    (DeviceKind::WebGpu, _) => format!("WebGPU — {name}"),
                    (DeviceKind::Cpu, Some(note)) => format!("CPU — {note} ({name})"),
                    (DeviceKind::Cpu, None) => format!("CPU — {name}"),
                };
                self.device.set(text);
            }
            FromWorker::State { run, state } => {
                // Progress of a run removed (or reset) meanwhile is dropped.
                let Some(view) = self.run(run) else { return };
                view.state.set(state);
                if matches!(state, RunState::Finished | RunState::Stopped | RunState::Failed) {
                    self.save_now();
                }
            }
            FromWorker::Metrics { run, step, steps, train, steps_per_s, tokens_per_s, learning_rate } => {
                let Some(view) = self.run(run) else { return };
                if self.first_step_ms.get_untracked().is_none() && step >= 1 {
                    let idle = self.idle_ms.get_value().unwrap_or(0.0);
                    self.first_step_ms.set(page_ms().map(|now| (now - idle).max(0.0)));
                }
                view.step.set(step);
                view.steps.set(steps);
                // the worker's rate covers the steps since its last read (one step for `tiny`):
                // shown smoothed over about a second, so that it can be read
                let shown = smoothed_rate(view.steps_per_s.get_untracked(), steps_per_s, train.len());
                let tokens_per_step = if steps_per_s > 0.0 { tokens_per_s / steps_per_s } else { 0.0 };
                view.steps_per_s.set(shown);
                view.tokens_per_s.set(shown * tokens_per_step);
                view.learning_rate.set(learning_rate);
                view.train.update(|t| t.extend(train));
                self.save_soon();
            }
            FromWorker::Validation { run, step, loss } => {
                let Some(view) = self.run(run) else { return };
                view.val.update(|v| v.push((step, loss)));
            }
            FromWorker::Sample { run, step, text, bad_words } => {
                let Some(view) = self.run(run) else { return };
                view.sample.set(Some((step, text)));
                view.sample_bad_words.set(bad_words);
                self.save_after(view);
            }
            FromWorker::Examples { run, step, examples } => {
                let Some(view) = self.run(run) else { return };
                view.examples.set((step, examples));
            }
            FromWorker::Snapshot(snapshot) => {
                let Some(view) = self.run(snapshot.run) else { return };
                view.snapshots.update(|s| s.push(snapshot));
                self.save_after(view);
            }
            FromWorker::Cka { step, runs, matrix } => {
                let present: Vec<RunId> = self.runs.with_untracked(|r| r.iter().map(|r| r.id).collect());
                if runs.iter().any(|r| !present.contains(r)) {
                    return;
                }
                self.cka.update(|all| {
                    // a comparison of fewer runs at the same step does not replace a larger one
                    if all.iter().any(|(s, r, _)| *s == step && r.len() > runs.len()) {
                        return;
                    }
                    all.retain(|(s, _, _)| *s != step);
                    let at = all.iter().position(|(s, _, _)| *s > step).unwrap_or(all.len());
                    all.insert(at, (step, runs, matrix));
                });
            }
            // maps asked for just before their run was removed have nothing left to show
            FromWorker::Attention { run, tokens, reads, layers, heads, weights } => {
                if self.run(run).is_some() {
                    self.attention.set(Some(AttentionView { run, tokens, reads, layers, heads, weights }));
                }
            }
            // an answer to the question still shown (not to one since replaced or removed)
            FromWorker::Answers { run, text, answers } => self.answered(run, &text, Ok(answers)),
            FromWorker::AskFailed { run, text, message } => self.answered(run, &text, Err(message)),
            FromWorker::BenchmarkProgress { done, steps } => self.benchmark.set(Benchmark::Running { done, steps }),
            FromWorker::Benchmark(report) => self.benchmark.set(Benchmark::Done(Box::new(report))),
            FromWorker::BenchmarkFailed { message } => {
                self.benchmark.set(Benchmark::Idle);
                self.push_error(message);
            }
            FromWorker::Error { run, message } => {
                if let Some(view) = run.and_then(|r| self.run(r)) {
                    view.failure.set(Some(message.clone()));
                }
                self.push_error(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{smoothed_rate, waited_ready, with_next_free_seed};
    use objlab_engine::spec::ExperimentSpec;

    #[test]
    fn a_duplicate_takes_the_next_seed_no_run_has() {
        let first = ExperimentSpec::default_experiment();
        let mut runs = vec![first.clone()];
        for expected in [1338, 1339, 1340] {
            let next = with_next_free_seed(&first, &runs);
            assert_eq!(next.seed, expected);
            runs.push(next);
        }
        // a seed taken by another experiment is free for this one
        let mut other = first.clone();
        other.set("preset", "tiny").unwrap();
        other.seed = 1338;
        assert_eq!(with_next_free_seed(&first, &[first.clone(), other]).seed, 1338);
    }

    #[test]
    fn the_first_step_figure_leaves_out_the_wait_before_start() {
        assert_eq!(waited_ready(Some(800.0), 30_800.0), 30_000.0, "read for 30 s, then pressed Start");
        assert_eq!(waited_ready(Some(800.0), 500.0), 0.0, "pressed before the worker was ready");
        assert_eq!(waited_ready(None, 500.0), 0.0, "no ready worker yet: nothing waited");
    }

    #[test]
    fn the_shown_rate_forgets_with_time() {
        assert_eq!(smoothed_rate(0.0, 50.0, 1), 50.0, "the first report is shown as it is");
        // one step at 100 steps/s is 10 ms of a one-second average: barely moves it
        let after_one = smoothed_rate(50.0, 100.0, 1);
        assert!((after_one - 50.5).abs() < 0.01, "{after_one}");
        // a hundred reports of one step each (one second) move it as far as one report of a
        // hundred steps
        let many = (0..100).fold(50.0, |shown, _| smoothed_rate(shown, 100.0, 1));
        let once = smoothed_rate(50.0, 100.0, 100);
        assert!((many - once).abs() < 1e-9, "{many} vs {once}");
        assert!((once - (100.0 - 50.0 * (-1.0f64).exp())).abs() < 1e-9);
    }
}
