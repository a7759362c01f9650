//! The workspace's curves kept in the browser (`localStorage`), so that a reload, a closed tab
//! or a crash does not lose what the runs showed: the next visit offers them back ("Show
//! them"). Kept per run: its experiment (as its address query), state, progress, failure and
//! its training and validation curves, thinned to [`MAX_POINTS`] points. Weights stay in the
//! worker and are not kept; a kept run can be duplicated to train again.
//!
//! Saved when a run ends and at most every [`SAVE_EVERY_MS`] while runs train; Reset forgets.
//! Storage that is missing (a private window may have none) or full only means nothing is
//! kept; a stored value this page cannot read is ignored.

use objlab_engine::protocol::RunState;
use objlab_engine::spec::ExperimentSpec;
use serde::{Deserialize, Serialize};

/// The `localStorage` key.
const KEY: &str = "objlab.saved-runs";
/// Bump when the stored shape changes: an older value is then ignored, not misread.
const VERSION: u32 = 1;
/// Training points kept per run (the chart draws fewer; validation points are few and all kept).
pub const MAX_POINTS: usize = 2000;
/// Least time between two saves while runs train.
pub const SAVE_EVERY_MS: f64 = 5000.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    /// The run's experiment, as `ExperimentSpec::to_query` writes it.
    pub query: String,
    pub state: RunState,
    pub step: usize,
    pub steps: usize,
    pub failure: Option<String>,
    pub train: Vec<(usize, f32)>,
    pub val: Vec<(usize, f32)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedWorkspace {
    pub version: u32,
    /// When it was saved, in ms since 1970 (JavaScript's `Date.now()`).
    pub saved_at: f64,
    pub runs: Vec<SavedRun>,
}

impl SavedRun {
    /// The run's experiment, if this page still reads its query.
    pub fn spec(&self) -> Option<ExperimentSpec> {
        let (spec, problems) = ExperimentSpec::from_query(&self.query);
        (problems.is_empty() && spec.validate().is_ok()).then_some(spec)
    }

    /// The state a kept run is shown in: one that was under way when the page closed stopped
    /// there.
    pub fn shown_state(&self) -> RunState {
        match self.state {
            RunState::Finished | RunState::Failed => self.state,
            _ => RunState::Stopped,
        }
    }
}

/// At most `max` of the finite `points`, evenly spaced, the first and the last always kept.
/// (A diverged run's NaN losses are left out: JSON has no NaN, and one would spoil the whole
/// stored value.)
pub fn thin(points: &[(usize, f32)], max: usize) -> Vec<(usize, f32)> {
    let points: Vec<(usize, f32)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    if points.len() <= max || max < 2 {
        return points;
    }
    let last = points.len() - 1;
    (0..max).map(|i| points[i * last / (max - 1)]).collect()
}

/// The stored text of `workspace`.
pub fn encode(workspace: &SavedWorkspace) -> String {
    serde_json::to_string(workspace).unwrap_or_default()
}

/// A stored text read back: None for anything this page did not write, an older version, or a
/// workspace without runs.
pub fn decode(text: &str) -> Option<SavedWorkspace> {
    let w: SavedWorkspace = serde_json::from_str(text).ok()?;
    (w.version == VERSION && !w.runs.is_empty()).then_some(w)
}

pub fn new_workspace(saved_at: f64, runs: Vec<SavedRun>) -> SavedWorkspace {
    SavedWorkspace { version: VERSION, saved_at, runs }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The workspace the last visit kept, if any this page can read.
pub fn load() -> Option<SavedWorkspace> {
    decode(&storage()?.get_item(KEY).ok().flatten()?)
}

/// Keeps `workspace` (forgets what was kept where it has no runs). Returns whether it was kept.
pub fn store(workspace: &SavedWorkspace) -> bool {
    let Some(storage) = storage() else { return false };
    if workspace.runs.is_empty() {
        return storage.remove_item(KEY).is_ok();
    }
    storage.set_item(KEY, &encode(workspace)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: RunState, points: usize) -> SavedRun {
        SavedRun {
            query: ExperimentSpec::from_preset("tiny").unwrap().to_query(),
            state,
            step: points,
            steps: 100,
            failure: None,
            train: (1..=points).map(|s| (s, 4.0 / s as f32)).collect(),
            val: vec![(50, 2.5)],
        }
    }

    #[test]
    fn a_kept_workspace_reads_back_as_it_was() {
        let w = new_workspace(1.7e12, vec![run(RunState::Finished, 100), run(RunState::Running, 40)]);
        let back = decode(&encode(&w)).expect("reads back");
        assert_eq!(back, w);
        assert_eq!(back.runs[0].spec().unwrap().preset, "tiny");
        assert_eq!(back.runs[0].shown_state(), RunState::Finished);
        assert_eq!(back.runs[1].shown_state(), RunState::Stopped, "under way when the page closed");
    }

    #[test]
    fn anything_else_in_storage_is_ignored() {
        for text in ["", "null", "{", "[1,2]", "{\"version\":1}", "{\"version\":99,\"saved_at\":0,\"runs\":[]}"] {
            assert_eq!(decode(text), None, "{text:?}");
        }
        let empty = new_workspace(0.0, Vec::new());
        assert_eq!(decode(&encode(&empty)), None, "no runs: nothing to offer");
        let mut old = new_workspace(0.0, vec![run(RunState::Finished, 3)]);
        old.version = VERSION + 1;
        assert_eq!(decode(&encode(&old)), None, "another version is not misread");
        let mut odd = run(RunState::Finished, 3);
        odd.query = "preset=huge&colour=red".into();
        assert_eq!(odd.spec(), None, "a run whose experiment this page cannot read is left out");
    }

    #[test]
    fn thinning_keeps_the_ends_and_at_most_max_points() {
        let points: Vec<(usize, f32)> = (0..10_000).map(|s| (s, s as f32)).collect();
        let thin = thin(&points, MAX_POINTS);
        assert_eq!(thin.len(), MAX_POINTS);
        assert_eq!(thin.first(), points.first());
        assert_eq!(thin.last(), points.last());
        assert!(thin.windows(2).all(|w| w[0].0 < w[1].0), "in step order");
        assert_eq!(super::thin(&points[..10], MAX_POINTS).len(), 10, "a short curve is kept whole");
        let diverged = [(1, 3.0), (2, f32::NAN), (3, f32::INFINITY)];
        assert_eq!(super::thin(&diverged, MAX_POINTS), [(1, 3.0)], "no NaN in the stored value");
    }
}
