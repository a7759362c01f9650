//! The page's reactive state: one signal per thing the page shows, updated from worker messages.

use leptos::prelude::*;
use objlab_engine::protocol::{DeviceKind, FromWorker, RunState};
use objlab_engine::spec::ExperimentSpec;

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
    /// Messages for the error element, newest last.
    pub errors: RwSignal<Vec<String>>,
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
            errors: RwSignal::new(errors),
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
    }

    pub fn push_error(&self, message: String) {
        self.errors.update(|e| e.push(message));
    }

    pub fn apply(&self, message: FromWorker) {
        // After a reset the page is idle at once; progress still in flight from the old run
        // must not repaint the cleared page.
        let idle = self.state.get_untracked() == RunState::Idle;
        if idle && matches!(message, FromWorker::Metrics { .. } | FromWorker::Validation { .. } | FromWorker::Sample { .. }) {
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
            FromWorker::Sample { step, text } => self.sample.set(Some((step, text))),
            FromWorker::Error { message } => self.push_error(message),
        }
    }
}
