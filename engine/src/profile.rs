//! Where a training step's time goes, part by part: the benchmark's profile.
//!
//! Why: steps/s alone does not say what to speed up. On the CPU backend every tensor operation
//! computes as it is called, so a clock read between the step's parts times each part (on a
//! GPU the same reads would time only the launches, which is why the benchmark reports this
//! profile for the CPU alone). The clock is passed in ([`crate::train::Trainer::set_clock`]):
//! `std::time::Instant` does not exist in the browser.

use serde::{Deserialize, Serialize};

/// Milliseconds per step, averaged over [`StepProfile::steps`] steps. A step split with the
/// tab's helper workers (`train::Trainer::split_step_among`) also has the exchange's parts; for
/// the others they are 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepProfile {
    pub steps: usize,
    /// Sampling and corrupting the batch, and the forward pass (of this worker's rows).
    pub forward_ms: f64,
    /// The backward pass (of this worker's rows).
    pub backward_ms: f64,
    /// Gradient clipping and the AdamW update.
    pub update_ms: f64,
    /// Split steps: handing the helpers their jobs (the rows, and the run's state where a copy
    /// is missing) and the gradients (this worker's to one helper, the whole batch's to
    /// several), and drawing the next step's batch and sending its jobs ahead.
    #[serde(default)]
    pub send_ms: f64,
    /// Split steps: waiting for the helpers' answers once this worker's share is done.
    #[serde(default)]
    pub wait_ms: f64,
    /// Split steps: the helper's own time, from receiving the work to sending its answer (as it
    /// reports it; 0 where it does not); with several helpers, the slowest's.
    #[serde(default)]
    pub helper_ms: f64,
    /// Split steps: from handing the work over to having the answer, the time the helper did
    /// not spend computing: the messages' copies and delivery, and the wait for its thread
    /// (0 for a job sent ahead, with the step before: its sending is not timed by this step;
    /// and 0 with several helpers, whose waits overlap).
    #[serde(default)]
    pub messaging_ms: f64,
    /// Split steps: adding the helpers' gradients to this worker's.
    #[serde(default)]
    pub add_ms: f64,
}

// (the page's build, without `training`, only reads profiles)
#[cfg_attr(not(feature = "training"), allow(dead_code))]
impl StepProfile {
    /// Adds one step's parts.
    pub(crate) fn add(&mut self, step: &StepProfile) {
        self.steps += step.steps;
        self.forward_ms += step.forward_ms;
        self.backward_ms += step.backward_ms;
        self.update_ms += step.update_ms;
        self.send_ms += step.send_ms;
        self.wait_ms += step.wait_ms;
        self.helper_ms += step.helper_ms;
        self.messaging_ms += step.messaging_ms;
        self.add_ms += step.add_ms;
    }

    /// The totals divided by the step count (per step).
    pub(crate) fn averaged(mut self) -> StepProfile {
        let n = self.steps.max(1) as f64;
        for v in [
            &mut self.forward_ms,
            &mut self.backward_ms,
            &mut self.update_ms,
            &mut self.send_ms,
            &mut self.wait_ms,
            &mut self.helper_ms,
            &mut self.messaging_ms,
            &mut self.add_ms,
        ] {
            *v /= n;
        }
        self
    }

    /// The whole step as measured here.
    pub fn total_ms(&self) -> f64 {
        self.forward_ms + self.backward_ms + self.update_ms + self.send_ms + self.wait_ms + self.add_ms
    }
}
