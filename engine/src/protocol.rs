//! The typed messages between the page (main thread) and the training worker.
//! Both sides serialise them as JSON strings over `postMessage`.

use serde::{Deserialize, Serialize};

use crate::objectives::{Answers, Example};
use crate::spec::ExperimentSpec;

/// A run of the workspace, numbered by the page.
pub type RunId = u32;

/// Page → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ToWorker {
    /// Add run `run` (its own spec: objective mix, architecture, seed, sizes) and start it
    /// beside the others. Refused, before anything is allocated, when the workspace would not
    /// fit the device's memory budget.
    AddRun { run: RunId, spec: ExperimentSpec },
    /// A text of one's own, chosen on the page (checked there by `data::check_upload`): runs
    /// whose spec names corpus `name` train on it. Sent before those runs, and again to a fresh
    /// worker.
    AddCorpus { name: String, text: String },
    /// Forget run `run` (the others go on).
    RemoveRun { run: RunId },
    PauseRun { run: RunId },
    ResumeRun { run: RunId },
    /// Pause / resume every run.
    Pause,
    Resume,
    /// End every run where it is; the curves stay on the page.
    Stop,
    /// End every run and forget them.
    Reset,
    /// Attention weights of run `run` for `text` (answered by `Attention`).
    Attention { run: RunId, text: String },
    /// "Ask the model": what run `run`'s model answers about `text`, typed by a person, `_`
    /// for a hidden character (answered by `Answers` or `AskFailed`; `Trainer::ask`).
    Ask { run: RunId, text: String },
    /// The page's "benchmark" button: train a fresh model of `spec`'s first run alone for
    /// `steps` steps on the device it asks for (the workspace's runs wait meanwhile) and
    /// report its speed, kernel launches and host reads (answered by `Benchmark`).
    Benchmark { spec: ExperimentSpec, steps: usize },
}

/// A CKA entry between runs that read different probe sequences (runs on different texts).
pub const NOT_COMPARABLE: f32 = -1.0;

/// What the run is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Idle,
    /// Loading the corpus, acquiring the device, building the model.
    Loading,
    Running,
    Paused,
    Stopped,
    Finished,
    /// Stopped by an error (see the accompanying `Error`).
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    WebGpu,
    Cpu,
}

/// Worker → page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FromWorker {
    /// The worker has started and listens.
    Ready,
    /// The device the runs train on. `note` says why it is not the one asked for.
    Device { kind: DeviceKind, name: String, note: Option<String> },
    State { run: RunId, state: RunState },
    /// Training progress since the last `Metrics`.
    Metrics {
        run: RunId,
        step: usize,
        steps: usize,
        /// (step, training loss) pairs, read from the device in one go.
        train: Vec<(usize, f32)>,
        steps_per_s: f64,
        tokens_per_s: f64,
        learning_rate: f64,
    },
    Validation { run: RunId, step: usize, loss: f32 },
    /// Generated text; for conditional training, `bad_words` = (bad-word occurrences, words).
    Sample {
        run: RunId,
        step: usize,
        text: String,
        #[serde(default)]
        bad_words: Option<(usize, usize)>,
    },
    /// One example of the current batch per objective, as the model sees it.
    Examples { run: RunId, step: usize, examples: Vec<Example> },
    /// The representation views of one run at one step.
    Snapshot(Snapshot),
    /// Linear CKA between the runs' probe-set representations at `step` ([runs, runs]); −1
    /// ([`NOT_COMPARABLE`]) between two runs on different texts, whose probe sets differ.
    Cka { step: usize, runs: Vec<RunId>, matrix: Vec<f32> },
    /// Attention weights for the text the page asked about.
    Attention {
        run: RunId,
        tokens: Vec<String>,
        /// how the maps read the text: which stack and mask (`train::reading_words`)
        reads: String,
        layers: usize,
        heads: usize,
        /// weights: [layers, heads, seq, seq]
        weights: Vec<f32>,
    },
    /// The model's answers to the text the page asked about ("ask the model").
    Answers { run: RunId, text: String, answers: Answers },
    /// The text could not be asked about (a character the run's text never had, too long, …).
    AskFailed { run: RunId, text: String, message: String },
    /// How far a benchmark has come (`done` of `steps` timed steps; 0 while warming up).
    BenchmarkProgress { done: usize, steps: usize },
    Benchmark(BenchmarkReport),
    /// The benchmark could not run (the workspace's runs go on).
    BenchmarkFailed { message: String },
    /// A failure the page shows in its error element (`run`: the run it stopped, if one).
    Error {
        #[serde(default)]
        run: Option<RunId>,
        message: String,
    },
}

/// What the benchmark measured: the figures that say where a small model's time goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkReport {
    pub preset: String,
    /// The device as the page names it (adapter, or the CPU backend).
    pub device: String,
    pub steps: usize,
    pub steps_per_s: f64,
    pub tokens_per_s: f64,
    /// Achieved training TFLOP/s (`ModelConfig::train_flops_per_token`).
    pub tflops: f64,
    /// Before the timed steps: building the model and two steps (shader compilation on a GPU).
    pub warmup_ms: f64,
    /// GPU kernels launched per training step (0 on the CPU backend, which has none).
    pub dispatches_per_step: f64,
    /// Device → host reads per step, the training loop's round trips (losses every
    /// `log_every` steps; a step itself reads nothing).
    pub host_reads_per_step: f64,
    /// Workers that computed each step (2 where the tab's helper worker took half the rows).
    #[serde(default = "one")]
    pub workers: usize,
    /// Where a timed step's time went, per part (CPU backend only: see `crate::profile`).
    #[serde(default)]
    pub profile: Option<crate::profile::StepProfile>,
    /// On a GPU: milliseconds the host spent per timed step handing the step to the device
    /// (burn's autodiff and fusion, cubecl's launches, the WebGPU calls), which a fast GPU
    /// leaves as the step's floor. It carries over between devices where steps/s does not: in
    /// the tab it was ~0.6 s per `tiny` step while every call into the worker reran its static
    /// constructors (docs/performance.md, "In the tab"). Measured as the wall time inside the
    /// timed steps, which is the host's work in the browser, where cubecl runs on the worker's
    /// one thread and nothing waits for the device inside a step; natively cubecl serves on a
    /// device thread of its own and makes a step wait once the device falls 512 launches
    /// behind, so there this figure would include the device's time. `None` on the CPU
    /// backend, whose step is the arithmetic itself (see `profile`).
    #[serde(default)]
    pub host_ms_per_step: Option<f64>,
    /// Of `dispatches_per_step`, those a captured graph replays (the whole step: forward,
    /// backward and AdamW, `train::captured_step`): re-encoded, without burn's and cubecl's per-launch
    /// bookkeeping. 0 where the step is not captured (the CPU, `capture=0`, the first steps
    /// before the capture).
    #[serde(default)]
    pub replayed_per_step: f64,
    /// Recordings the run's captured step took (0 where nothing was captured): 1 when the
    /// first captured, 2 when a failed one made the run start over (`Trainer::start_over`).
    #[serde(default)]
    pub capture_recordings: usize,
}

fn one() -> usize {
    1
}

/// One run's representation snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub run: RunId,
    pub step: usize,
    /// The character tokens and their embeddings projected on the first two principal axes.
    pub tokens: Vec<String>,
    pub token_points: Vec<[f32; 2]>,
    /// The probe set's pooled representations on their first two principal axes, and labels.
    pub probe_points: Vec<[f32; 2]>,
    pub probe_labels: Vec<usize>,
    /// Held-out accuracy of a linear probe for the probe label (chance = 1 / classes).
    pub probe_accuracy: f32,
    pub probe_classes: usize,
    /// What the probe read: [classes (label), classes (read)], counts of held-out rows (empty
    /// in runs kept from before it was sent).
    #[serde(default)]
    pub probe_confusion: Vec<u32>,
    /// Effective rank of the probe representations (exp of the singular-value entropy).
    pub effective_rank: f32,
    /// Milliseconds the snapshot took in all (device read, PCA, probe, CKA).
    pub millis: f64,
    /// The longest piece of it (the worker runs the pieces between training steps): how long
    /// training waited at most.
    pub stall_ms: f64,
    /// Where PCA and CKA ran: the WGSL kernels on the GPU, or their CPU references.
    pub analyser: String,
}

impl ToWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("malformed message to the worker: {e}"))
    }
}

impl FromWorker {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| format!("malformed message from the worker: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let start = ToWorker::AddRun { run: 2, spec: ExperimentSpec::default_experiment() };
        assert_eq!(ToWorker::from_json(&start.to_json()).unwrap(), start);
        let m = FromWorker::Metrics { run: 2, step: 3, steps: 10, train: vec![(2, 4.1)], steps_per_s: 1.5, tokens_per_s: 99.0, learning_rate: 1e-3 };
        assert_eq!(FromWorker::from_json(&m.to_json()).unwrap(), m);
        assert!(ToWorker::from_json("{\"type\":\"Explode\"}").unwrap_err().contains("malformed"));
    }
}
