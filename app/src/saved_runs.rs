//! The workspace's curves kept in the browser (`localStorage`), so that a reload, a closed tab
//! or a crash does not lose what the runs showed: the next visit offers them back ("Show
//! them"). Kept per run: its experiment (as its address query), state, progress, failure, its
//! training and validation curves (thinned to [`MAX_POINTS`] points), its latest sample and up
//! to [`MAX_SNAPSHOTS`] representation snapshots; and the CKA comparisons between the runs. Weights stay in the
//! worker and are not kept; a kept run can be trained again in its place.
//!
//! Saved when a run ends and at most every [`SAVE_EVERY_MS`] while runs train; Reset forgets.
//! Storage that is missing (a private window may have none) or full only means nothing is
//! kept; a stored value this page cannot read is ignored.

use objlab_engine::protocol::{RunState, Snapshot};
use objlab_engine::spec::ExperimentSpec;
use serde::{Deserialize, Serialize};

/// The `localStorage` key.
const KEY: &str = "objlab.saved-runs";
/// Bump when the stored shape changes: an older value is then ignored, not misread.
const VERSION: u32 = 1;
/// Training points kept per run (the chart draws fewer; validation points are few and all kept).
pub const MAX_POINTS: usize = 2000;
/// Snapshots kept per run (its probe curve and its projections to scrub through): ~7 kB each.
pub const MAX_SNAPSHOTS: usize = 24;
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
    /// The latest text sample (step, text), for runs that generate.
    #[serde(default)]
    pub sample: Option<(usize, String)>,
    /// Representation snapshots ([`thin_snapshots`]), dropped first where storage is short.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedWorkspace {
    pub version: u32,
    /// When it was saved, in ms since 1970 (JavaScript's `Date.now()`).
    pub saved_at: f64,
    pub runs: Vec<SavedRun>,
    /// Linear CKA between the runs by step: (step, the runs compared as positions in `runs`,
    /// their matrix), at most [`MAX_SNAPSHOTS`] steps.
    #[serde(default)]
    pub cka: Vec<(usize, Vec<usize>, Vec<f32>)>,
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

/// At most `max` of `snapshots` whose numbers are all finite (JSON has no NaN), evenly spaced,
/// the latest always kept.
pub fn thin_snapshots(snapshots: &[Snapshot], max: usize) -> Vec<Snapshot> {
    let finite = |s: &&Snapshot| {
        let points = s.token_points.iter().chain(&s.probe_points).flatten();
        s.probe_accuracy.is_finite() && s.effective_rank.is_finite() && s.millis.is_finite() && s.stall_ms.is_finite() && points.clone().all(|x| x.is_finite())
    };
    let kept: Vec<&Snapshot> = snapshots.iter().filter(finite).collect();
    if kept.len() <= max || max < 2 {
        return kept.into_iter().cloned().collect();
    }
    let last = kept.len() - 1;
    (0..max).map(|i| kept[i * last / (max - 1)].clone()).collect()
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
    SavedWorkspace { version: VERSION, saved_at, runs, cka: Vec::new() }
}

/// The CKA entries to keep of `cka` ((step, run ids, matrix)) for a workspace whose runs are
/// `order`: those that compare only its runs and hold no NaN, at most [`MAX_SNAPSHOTS`], the
/// latest kept; the runs as positions in `order`.
pub fn keep_cka(cka: &[(usize, Vec<u32>, Vec<f32>)], order: &[u32]) -> Vec<(usize, Vec<usize>, Vec<f32>)> {
    let kept: Vec<(usize, Vec<usize>, Vec<f32>)> = cka
        .iter()
        .filter(|(_, _, m)| m.iter().all(|x| x.is_finite()))
        .filter_map(|(step, runs, m)| {
            let at: Option<Vec<usize>> = runs.iter().map(|r| order.iter().position(|o| o == r)).collect();
            Some((*step, at?, m.clone()))
        })
        .collect();
    let skip = kept.len().saturating_sub(MAX_SNAPSHOTS);
    kept.into_iter().skip(skip).collect()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The workspace the last visit kept, if any this page can read.
pub fn load() -> Option<SavedWorkspace> {
    decode(&storage()?.get_item(KEY).ok().flatten()?)
}

/// Keeps `workspace` (forgets what was kept where it has no runs); where storage is too short
/// for it, keeps it without snapshots, else forgets (never leaves an older one to be offered as
/// this one). Returns whether it was kept.
pub fn store(workspace: &SavedWorkspace) -> bool {
    let Some(storage) = storage() else { return false };
    if workspace.runs.is_empty() {
        return storage.remove_item(KEY).is_ok();
    }
    if storage.set_item(KEY, &encode(workspace)).is_ok() {
        return true;
    }
    let mut smaller = workspace.clone();
    smaller.runs.iter_mut().for_each(|r| r.snapshots.clear());
    if storage.set_item(KEY, &encode(&smaller)).is_ok() {
        return true;
    }
    let _ = storage.remove_item(KEY);
    false
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
            sample: Some((50, "to be".into())),
            snapshots: vec![snapshot(50, 0.5)],
        }
    }

    fn snapshot(step: usize, accuracy: f32) -> Snapshot {
        Snapshot {
            run: 1,
            step,
            tokens: vec!["a".into(), "b".into()],
            token_points: vec![[0.5, -0.25], [1.0, 2.0]],
            probe_points: vec![[0.0, 1.0]],
            probe_labels: vec![0],
            probe_accuracy: accuracy,
            probe_confusion: Vec::new(),
            probe_classes: 4,
            effective_rank: 3.5,
            millis: 12.0,
            stall_ms: 4.0,
            analyser: "cpu".into(),
        }
    }

    #[test]
    fn snapshots_are_thinned_and_never_hold_a_nan() {
        let many: Vec<Snapshot> = (1..=100).map(|k| snapshot(k * 10, 0.5)).collect();
        let kept = thin_snapshots(&many, MAX_SNAPSHOTS);
        assert_eq!(kept.len(), MAX_SNAPSHOTS);
        assert_eq!((kept[0].step, kept[MAX_SNAPSHOTS - 1].step), (10, 1000), "the first and the latest");
        let mut odd = snapshot(20, 0.5);
        odd.token_points[1][0] = f32::NAN;
        let kept = thin_snapshots(&[snapshot(10, 0.5), odd, snapshot(30, f32::NAN)], MAX_SNAPSHOTS);
        assert_eq!(kept.iter().map(|s| s.step).collect::<Vec<_>>(), [10]);
        // an older stored value without samples or snapshots still reads
        let w = new_workspace(1.0, vec![run(RunState::Finished, 3)]);
        let older = encode(&w).replace(",\"sample\":[50,\"to be\"]", "");
        assert!(!older.contains("sample"), "{older}");
        assert_eq!(decode(&older).expect("reads").runs[0].sample, None);
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
    fn cka_is_kept_by_position_for_the_workspaces_own_runs() {
        let cka = vec![
            (10, vec![4, 7], vec![1.0, 0.5, 0.5, 1.0]),
            (20, vec![4, 9], vec![1.0, 0.3, 0.3, 1.0]),     // run 9 is gone
            (30, vec![7, 4], vec![1.0, f32::NAN, 0.2, 1.0]), // a NaN
            (40, vec![7], vec![1.0]),
        ];
        assert_eq!(keep_cka(&cka, &[7, 4]), vec![(10, vec![1, 0], vec![1.0, 0.5, 0.5, 1.0]), (40, vec![0], vec![1.0])]);
        let many: Vec<_> = (0..100).map(|s| (s, vec![1], vec![1.0])).collect();
        let kept = keep_cka(&many, &[1]);
        assert_eq!((kept.len(), kept.last().unwrap().0), (MAX_SNAPSHOTS, 99), "the latest steps");
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
