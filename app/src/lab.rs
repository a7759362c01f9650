//! The page's reactive state: one signal per thing the page shows, updated from worker messages.

use leptos::prelude::*;
use objlab_engine::objectives::Example;
use objlab_engine::protocol::{DeviceKind, FromWorker, RunState};
use objlab_engine::spec::{ExperimentSpec, objective_mix_text};

#[derive(Clone, Copy)]
pub struct Lab {
    pub spec: RwSignal<ExperimentSpec>,
    pub state: RwSignal<RunState>,
    pub step: RwSignal<usize>,
    pub steps: RwSignal<usize>,
    /// (step, loss) of every training step read so far.
    pub train: RwSignal<Vec<(usize, f32)>>,
    pub val: RwSignal<Vec<(usize, f32)>>,
    pub steps_per_s: RwSignal<f64>,
    pub tokens_per_s: RwSignal<f64>,
    pub learning_rate: RwSignal<f64>,
    /// What the device element says ("WebGPU — …" or "CPU — …").
    pub device: RwSignal<String>,
    pub sample: RwSignal<Option<(usize, String)>>,
    /// Conditional training: (bad-word occurrences, words) in the latest sample.
    pub sample_bad_words: RwSignal<Option<(usize, usize)>>,
    /// "What the model sees": one example per objective of the latest batch.
    pub examples: RwSignal<(usize, Vec<Example>)>,
    /// An experiment change that waits for the user to agree to reset the running run.
    pub pending: RwSignal<Option<ExperimentSpec>>,
    /// Messages for the error element, newest last.
    pub errors: RwSignal<Vec<String>>,
    /// Why the last change at a control was refused (shown beside the controls).
    pub control_error: RwSignal<Option<String>>,
}

/// Writes the experiment's choices into the page address, so the link reproduces it.
pub fn write_url(spec: &ExperimentSpec) {
    let (device, arch) = (spec.device.name(), spec.model.arch.name());
    let objective = objective_mix_text(&spec.runs[0].objectives);
    let encoded = js_sys::encode_uri_component(&objective).as_string().unwrap_or(objective);
    let query = format!(
        "?preset={}&objective={encoded}&arch={arch}&device={device}&seed={}&steps={}",
        spec.preset, spec.seed, spec.train.steps
    );
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&query));
    }
}

impl Lab {
    pub fn new(spec: ExperimentSpec, errors: Vec<String>) -> Self {
        Self {
            spec: RwSignal::new(spec),
            state: RwSignal::new(RunState::Idle),
            step: RwSignal::new(0),
            steps: RwSignal::new(0),
            train: RwSignal::new(Vec::new()),
            val: RwSignal::new(Vec::new()),
            steps_per_s: RwSignal::new(0.0),
            tokens_per_s: RwSignal::new(0.0),
            learning_rate: RwSignal::new(0.0),
            device: RwSignal::new("not started".into()),
            sample: RwSignal::new(None),
            sample_bad_words: RwSignal::new(None),
            examples: RwSignal::new((0, Vec::new())),
            pending: RwSignal::new(None),
            errors: RwSignal::new(errors),
            control_error: RwSignal::new(None),
        }
    }

    /// Clears the curves and counters for a new run.
    pub fn clear_run(&self) {
        self.step.set(0);
        self.train.set(Vec::new());
        self.val.set(Vec::new());
        self.steps_per_s.set(0.0);
        self.tokens_per_s.set(0.0);
        self.sample.set(None);
        self.sample_bad_words.set(None);
        self.examples.set((0, Vec::new()));
    }

    /// The experiment the controls show: the pending change if there is one (tracked).
    pub fn shown(&self) -> ExperimentSpec {
        self.pending.get().unwrap_or_else(|| self.spec.get())
    }

    /// Whether a run is under way (a change to its objective must then wait for a reset).
    pub fn busy(&self) -> bool {
        matches!(self.state.get_untracked(), RunState::Loading | RunState::Running | RunState::Paused)
    }

    /// Applies a change to the experiment, checked in full. While a run is under way the
    /// change waits in `pending` until the user agrees to reset the run (never mixing two
    /// objectives into one curve). A refused change is explained beside the controls.
    pub fn change(&self, f: impl FnOnce(&mut ExperimentSpec) -> Result<(), String>) {
        let busy = self.busy();
        let mut spec = if busy { self.pending.get_untracked().unwrap_or_else(|| self.spec.get_untracked()) } else { self.spec.get_untracked() };
        match f(&mut spec).and_then(|_| spec.validate()) {
            Ok(()) => {
                self.control_error.set(None);
                if busy {
                    self.pending.set(Some(spec));
                } else {
                    write_url(&spec);
                    self.spec.set(spec);
                }
            }
            Err(e) => {
                self.control_error.set(Some(e));
                // Controls show the spec's values: repaint them so the refused value goes away.
                self.spec.update(|_| {});
            }
        }
    }

    /// Ends the run (a crashed worker is replaced; a live one forgets its run), clears the
    /// page, and applies a change that waited for the reset.
    pub fn reset(&self) {
        if self.state.get_untracked() == RunState::Failed {
            crate::worker_link::connect(*self);
        } else {
            crate::worker_link::send(*self, &objlab_engine::protocol::ToWorker::Reset);
        }
        self.state.set(RunState::Idle);
        self.clear_run();
        self.errors.set(Vec::new());
        self.device.set("not started".into());
        if let Some(spec) = self.pending.get_untracked() {
            write_url(&spec);
            self.spec.set(spec);
            self.pending.set(None);
        }
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
        // After a reset the page is idle at once; progress still in flight from the old run
        // must not repaint the cleared page.
        let idle = self.state.get_untracked() == RunState::Idle;
        if idle
            && matches!(
                message,
                FromWorker::Metrics { .. } | FromWorker::Validation { .. } | FromWorker::Sample { .. } | FromWorker::Examples { .. }
            )
        {
            return;
        }
        match message {
            FromWorker::Ready => {}
            FromWorker::Device { kind, name, note } => {
                let text = match (kind, note) {
                    (DeviceKind::WebGpu, _) => format!("WebGPU — {name}"),
                    (DeviceKind::Cpu, Some(note)) => format!("CPU — {note} ({name})"),
                    (DeviceKind::Cpu, None) => format!("CPU — {name}"),
                };
                self.device.set(text);
            }
            FromWorker::State { state } => self.state.set(state),
            FromWorker::Metrics { step, steps, train, steps_per_s, tokens_per_s, learning_rate } => {
                self.step.set(step);
                self.steps.set(steps);
                self.steps_per_s.set(steps_per_s);
                self.tokens_per_s.set(tokens_per_s);
                self.learning_rate.set(learning_rate);
                self.train.update(|t| t.extend(train));
            }
            FromWorker::Validation { step, loss } => self.val.update(|v| v.push((step, loss))),
            FromWorker::Sample { step, text, bad_words } => {
                self.sample.set(Some((step, text)));
                self.sample_bad_words.set(bad_words);
            }
            FromWorker::Examples { step, examples } => self.examples.set((step, examples)),
            FromWorker::Error { message } => self.push_error(message),
        }
    }
}
