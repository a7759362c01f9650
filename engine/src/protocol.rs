//! The typed messages between the page (main thread) and the training worker.
//! Both sides serialise them as JSON strings over `postMessage`.

use serde::{Deserialize, Serialize};

use crate::objectives::Example;
use crate::spec::ExperimentSpec;

/// Page → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ToWorker {
    /// Start a new run of `spec` from step 0 (replacing any run there is).
    Start { spec: ExperimentSpec },
    Pause,
    Resume,
    /// End the run where it is; its curves stay on the page.
    Stop,
    /// End the run and forget it.
    Reset,
}

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
    /// The device the run trains on. `note` says why it is not the one asked for.
    Device { kind: DeviceKind, name: String, note: Option<String> },
    State { state: RunState },
    /// Training progress since the last `Metrics`.
    Metrics {
        step: usize,
        steps: usize,
        /// (step, training loss) pairs, read from the device in one go.
        train: Vec<(usize, f32)>,
        steps_per_s: f64,
        tokens_per_s: f64,
        learning_rate: f64,
    },
    Validation { step: usize, loss: f32 },
    /// Generated text; for conditional training, `bad_words` = (bad-word occurrences, words).
    Sample {
        step: usize,
        text: String,
        #[serde(default)]
        bad_words: Option<(usize, usize)>,
    },
    /// One example of the current batch per objective, as the model sees it.
    Examples { step: usize, examples: Vec<Example> },
    /// A failure the page shows in its error element.
    Error { message: String },
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
        let start = ToWorker::Start { spec: ExperimentSpec::default_experiment() };
        assert_eq!(ToWorker::from_json(&start.to_json()).unwrap(), start);
        let m = FromWorker::Metrics { step: 3, steps: 10, train: vec![(2, 4.1)], steps_per_s: 1.5, tokens_per_s: 99.0, learning_rate: 1e-3 };
        assert_eq!(FromWorker::from_json(&m.to_json()).unwrap(), m);
        assert!(ToWorker::from_json("{\"type\":\"Explode\"}").unwrap_err().contains("malformed"));
    }
}
