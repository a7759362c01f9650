//! The results table an ablation reports: one row per experiment, the runs that differ only
//! in their seed gathered into one row, with the training loss, the validation loss and the
//! linear probe's accuracy as mean ± standard deviation over the seeds, every run read at the
//! same step. Without it a reader compares curves by eye at different steps and cannot tell a
//! difference from seed noise. The page shows it ("Results side by side") and `objlab train
//! --link` prints it for a page's link trained natively; both print the same Markdown. And
//! the runs' loss curves as one CSV table ([`curves_csv`]), which both write too.
//!
//! Steps count updates: a run's validations and snapshots after its n-th update are labelled
//! n, its training readings before each update (0 to n − 1), so a finished run of N steps is
//! read at N, where its final validation and snapshot lie.

use crate::protocol::RunId;
use crate::spec::{ExperimentSpec, numbered_repeats, objective_mix_text, run_labels};

/// Training readings averaged into the table's training loss: one batch's loss is noisy, and
/// an average over the last few says where the curve is.
pub const TRAIN_WINDOW: usize = 10;

/// Said under a table whose rows train on different objective mixes.
pub const DIFFERENT_TASKS: &str = "These rows train on different objectives: their losses score different tasks, so compare them down a row's own curve, not across rows. The probe accuracy compares what they learned on one footing.";

/// One run's figures at the compared step (`at`): the mean of its last [`TRAIN_WINDOW`]
/// training readings at or before it, its latest validation loss at or before it, and its
/// latest probe snapshot at or before it (accuracy, classes).
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub train: Option<f64>,
    pub val: Option<f64>,
    pub probe: Option<(f64, usize)>,
}

/// `train` and `val` in step order, `probes` as (step, accuracy, classes) in step order.
pub fn figures_at(train: &[(usize, f32)], val: &[(usize, f32)], probes: &[(usize, f32, usize)], at: usize) -> Figures {
    let upto = train.partition_point(|p| p.0 <= at);
    let window = &train[upto.saturating_sub(TRAIN_WINDOW)..upto];
    let train = (!window.is_empty()).then(|| window.iter().map(|p| p.1 as f64).sum::<f64>() / window.len() as f64);
    let val = val[..val.partition_point(|p| p.0 <= at)].last().map(|p| p.1 as f64);
    let probe = probes[..probes.partition_point(|p| p.0 <= at)].last().map(|p| (p.1 as f64, p.2));
    Figures { train, val, probe }
}

/// The step every run is compared at when the time slider follows the latest: the furthest
/// step that every run has reached, given (the steps each has trained, whether it failed). A
/// run that failed, or has not trained a step yet, does not hold the others back; where every
/// run that trained has failed, the furthest any of them reached, so that the table still
/// shows them and says why they stopped.
pub fn common_step(runs: &[(Option<usize>, bool)]) -> Option<usize> {
    let going = runs.iter().filter(|r| !r.1).filter_map(|r| r.0).min();
    going.or_else(|| runs.iter().filter_map(|r| r.0).max())
}

/// Mean ± standard deviation of one column over a row's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// The sample standard deviation (n − 1), with two or more values.
    pub sd: Option<f64>,
    /// Values that counted, and the row's runs: a diverged run's value (not finite) or a run
    /// that has not reached the step leaves `n` below `of`.
    pub n: usize,
    pub of: usize,
}

impl Stat {
    /// `None` when no value counts.
    pub fn of(values: &[Option<f64>]) -> Option<Stat> {
        let xs: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
        if xs.is_empty() {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = (n >= 2).then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Stat { mean, sd, n, of: values.len() })
    }

    /// `2.514 ± 0.012`, `scale` 100 and `unit` " %" for accuracies; "(2 of 3 runs)" where
    /// some runs did not count.
    pub fn show(&self, scale: f64, digits: usize, unit: &str) -> String {
        let mut s = format!("{:.*}", digits, self.mean * scale);
        if let Some(sd) = self.sd {
            s.push_str(&format!(" ± {:.*}", digits, sd * scale));
        }
        s.push_str(unit);
        if self.n < self.of {
            s.push_str(&format!(" ({} of {} runs)", self.n, self.of));
        }
        s
    }
}

/// What the table needs of one shown run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub id: RunId,
    pub spec: ExperimentSpec,
    /// The steps it has trained (none before its first).
    pub latest: Option<usize>,
    /// Why it stopped, if it failed (a divergence, a lost device).
    pub failure: Option<String>,
    pub figures: Figures,
    /// Its model's vocabulary (the text's characters and the special tokens), where known: its
    /// parameter count follows from it.
    pub vocab: Option<usize>,
}

/// One experiment: the runs that differ only in their seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What differs from the other rows (as the run list labels runs, the seed left out).
    pub label: String,
    /// Its runs, in workspace order.
    pub runs: Vec<RunId>,
    pub seeds: Vec<u64>,
    pub train: Option<Stat>,
    pub val: Option<Stat>,
    pub probe: Option<Stat>,
    /// The probe's chance level (1 / classes).
    pub chance: Option<f64>,
    /// Runs of the row that do not count at this step, and why.
    pub left_out: Vec<String>,
    /// Runs of the row that stopped at this step (a divergence, a lost device) and still count,
    /// with their figures from before they stopped, and why.
    pub stopped_here: Vec<String>,
    /// Whether a run of the row failed, counted or not: the row is marked.
    pub failed: bool,
    /// Its model's trainable parameters, where the vocabulary is known.
    pub params: Option<usize>,
}

impl Row {
    /// Why some of its runs are left out or stopped, for the row's title and the Markdown.
    pub fn notes(&self) -> Vec<String> {
        self.left_out.iter().chain(&self.stopped_here).cloned().collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub at: usize,
    pub rows: Vec<Row>,
    /// Every row trains on the same objective mix, so their losses score the same task.
    pub losses_compare: bool,
}

/// A spec with its seed (and the preset's name, a label only) set aside: two runs whose specs
/// are equal this way are one experiment.
fn experiment(spec: &ExperimentSpec) -> ExperimentSpec {
    ExperimentSpec { seed: 0, preset: String::new(), ..spec.clone() }
}

impl Table {
    /// The runs in workspace order, compared at step `at`.
    pub fn build(runs: &[RunResult], at: usize) -> Table {
        let mut groups: Vec<(ExperimentSpec, Vec<&RunResult>)> = Vec::new();
        for run in runs {
            let key = experiment(&run.spec);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(run),
                None => groups.push((key, vec![run])),
            }
        }
        let keys: Vec<&ExperimentSpec> = groups.iter().map(|(k, _)| k).collect();
        // a row is numbered by its first run where two rows read the same
        let labels = numbered_repeats(groups.iter().map(|(_, members)| members[0].id).zip(run_labels(&keys)).collect());
        let rows = groups
            .iter()
            .zip(labels)
            .map(|((_, members), (_, label))| {
                // a run counts where it has reached the step and did not stop before it
                let counts = |r: &RunResult| r.latest.is_some_and(|l| l >= at) && r.failure.as_ref().is_none_or(|_| r.latest == Some(at));
                let column = |f: &dyn Fn(&Figures) -> Option<f64>| -> Vec<Option<f64>> {
                    members.iter().map(|r| if counts(r) { f(&r.figures) } else { None }).collect()
                };
                let left_out = members
                    .iter()
                    .filter(|r| !counts(r))
                    .map(|r| match (&r.failure, r.latest) {
                        (Some(why), Some(l)) => format!("run {} stopped at step {l}: {why}", r.id),
                        (Some(why), None) => format!("run {} stopped: {why}", r.id),
                        (None, Some(l)) => format!("run {} is at step {l}", r.id),
                        (None, None) => format!("run {} has not trained yet", r.id),
                    })
                    .collect();
                let stopped_here = members
                    .iter()
                    .filter(|r| counts(r))
                    .filter_map(|r| r.failure.as_ref().map(|why| format!("run {} stopped at step {at}: {why}", r.id)))
                    .collect();
                Row {
                    label,
                    runs: members.iter().map(|r| r.id).collect(),
                    seeds: members.iter().map(|r| r.spec.seed).collect(),
                    train: Stat::of(&column(&|f| f.train)),
                    val: Stat::of(&column(&|f| f.val)),
                    probe: Stat::of(&column(&|f| f.probe.map(|p| p.0))),
                    chance: members.iter().find_map(|r| r.figures.probe.map(|p| 1.0 / p.1.max(1) as f64)),
                    left_out,
                    stopped_here,
                    failed: members.iter().any(|r| r.failure.is_some()),
                    params: members[0].vocab.map(|v| members[0].spec.model.n_params(v)),
                }
            })
            .collect();
        let mixes: Vec<String> = groups.iter().map(|(k, _)| objective_mix_text(&k.runs[0].objectives)).collect();
        Table { at, rows, losses_compare: mixes.iter().all(|m| *m == mixes[0]) }
    }

    /// The row with the best mean in a column (`lower` for losses), where two or more rows
    /// have one.
    fn best(&self, of: impl Fn(&Row) -> Option<&Stat>, lower: bool) -> Option<usize> {
        let with: Vec<(usize, f64)> = self.rows.iter().enumerate().filter_map(|(i, r)| of(r).map(|s| (i, s.mean))).collect();
        if with.len() < 2 {
            return None;
        }
        let pick = |a: &(usize, f64), b: &(usize, f64)| a.1.total_cmp(&b.1);
        if lower { with.iter().min_by(|a, b| pick(a, b)) } else { with.iter().max_by(|a, b| pick(a, b)) }.map(|p| p.0)
    }

    /// (best validation row, best probe row): the validation loss only where the losses compare.
    pub fn bests(&self) -> (Option<usize>, Option<usize>) {
        let val = if self.losses_compare { self.best(|r| r.val.as_ref(), true) } else { None };
        (val, self.best(|r| r.probe.as_ref(), false))
    }

    /// Whether the rows' models differ in size: the table then has a parameters column (an
    /// ablation over depth or width reports what each model weighs).
    pub fn sizes_differ(&self) -> bool {
        let mut sizes = self.rows.iter().filter_map(|r| r.params);
        let first = sizes.next();
        sizes.any(|p| Some(p) != first)
    }

    /// The probe's chance level where every row that has one shares it (one probe set, so
    /// always, unless a run trains on a text of its own).
    pub fn chance(&self) -> Option<f64> {
        let mut levels = self.rows.iter().filter_map(|r| r.chance);
        let first = levels.next()?;
        levels.all(|c| c == first).then_some(first)
    }

    /// The table as Markdown, for a notebook or an issue.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut md = format!(
            "At step {}. Training loss: the mean of the last {TRAIN_WINDOW} readings; ± is the standard deviation over seeds.\n\n",
            self.at
        );
        let sizes = self.sizes_differ();
        let (size_header, size_rule) = if sizes { (" parameters |", " --- |") } else { ("", "") };
        md.push_str(&format!(
            "| run | seeds |{size_header} training loss | validation loss | {} |\n| --- | --- |{size_rule} --- | --- | --- |\n",
            probe_header(self)
        ));
        let shared = self.chance().is_some();
        for r in &self.rows {
            let size = if sizes { format!(" {} |", r.params.map_or_else(|| "—".into(), params_text)) } else { String::new() };
            md.push_str(&format!(
                "| {}{} | {} |{size} {} | {} | {} |\n",
                cell(&r.label),
                if r.failed { " ⚠" } else { "" },
                seeds_text(&r.seeds),
                loss_text(&r.train),
                loss_text(&r.val),
                probe_text(r, shared)
            ));
        }
        if !self.losses_compare {
            md.push_str(&format!("\n{DIFFERENT_TASKS}\n"));
        }
        let notes: Vec<String> = self.rows.iter().flat_map(|r| r.notes().into_iter().map(move |n| format!("- {}: {n}\n", r.label))).collect();
        if !notes.is_empty() {
            md.push('\n');
            md.push_str(&notes.concat());
        }
        md
    }
}

/// A parameter count as people write it: "0.83 M", "31 k".
pub fn params_text(n: usize) -> String {
    if n >= 100_000 { format!("{:.2} M", n as f64 / 1e6) } else { format!("{:.0} k", n as f64 / 1e3) }
}

pub fn seeds_text(seeds: &[u64]) -> String {
    seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

pub fn loss_text(stat: &Option<Stat>) -> String {
    stat.as_ref().map_or_else(|| "—".into(), |s| s.show(1.0, 3, ""))
}

/// A row's probe accuracy, with its chance level unless the table's header gives it.
pub fn probe_text(row: &Row, chance_in_header: bool) -> String {
    match (&row.probe, row.chance) {
        (Some(s), Some(c)) if !chance_in_header => format!("{} (chance {:.0} %)", s.show(100.0, 1, " %"), 100.0 * c),
        (Some(s), _) => s.show(100.0, 1, " %"),
        (None, _) => "—".into(),
    }
}

/// The probe column's header: with the chance level where every row shares it.
pub fn probe_header(table: &Table) -> String {
    match table.chance() {
        Some(c) => format!("probe accuracy (chance {:.0} %)", 100.0 * c),
        None => "probe accuracy".into(),
    }
}

/// One run's curves as the table holds them.
pub struct RunCurves<'a> {
    pub run: u32,
    pub label: &'a str,
    pub train: &'a [(usize, f32)],
    pub validation: &'a [(usize, f32)],
}

/// Quotes a CSV field where it needs it (a label may hold commas: "decoder, seed 1338").
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// Every run's loss curves as one CSV table (the page's "download CSV", `objlab train --csv`)
/// for a spreadsheet or `pandas.read_csv`: a header, then one row per point,
/// `run,label,split,step,loss`, each run's training points and validation points in step order.
pub fn curves_csv(runs: &[RunCurves]) -> String {
    let mut csv = String::from("run,label,split,step,loss\n");
    for r in runs {
        let label = field(r.label);
        for (split, points) in [("train", r.train), ("validation", r.validation)] {
            for (step, loss) in points {
                csv.push_str(&format!("{},{label},{split},{step},{loss}\n", r.run));
            }
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExperimentSpec;

    fn spec(query: &str) -> ExperimentSpec {
        let (s, errors) = ExperimentSpec::from_query(query);
        assert!(errors.is_empty(), "{errors:?}");
        s
    }

    fn run(id: RunId, query: &str, latest: usize, val: f64, probe: f64) -> RunResult {
        RunResult {
            id,
            spec: spec(query),
            latest: Some(latest),
            failure: None,
            figures: Figures { train: Some(val + 0.1), val: Some(val), probe: Some((probe, 4)) },
            vocab: crate::spec::builtin_vocab("tiny-shakespeare"),
        }
    }

    #[test]
    fn a_runs_figures_are_read_at_the_compared_step() {
        let train: Vec<(usize, f32)> = (0..=30).map(|s| (s, s as f32)).collect();
        let val = [(0, 9.0), (10, 8.0), (20, 7.0)];
        let probes = [(0, 0.25, 4), (10, 0.5, 4), (20, 0.75, 4)];
        let f = figures_at(&train, &val, &probes, 25);
        assert_eq!(f.train, Some((16..=25).sum::<usize>() as f64 / 10.0), "the mean of the last ten readings up to step 25");
        assert_eq!((f.val, f.probe), (Some(7.0), Some((0.75, 4))));
        let early = figures_at(&train, &val, &probes, 3);
        assert_eq!((early.train, early.val, early.probe), (Some(1.5), Some(9.0), Some((0.25, 4))), "fewer readings than the window");
        let none = figures_at(&[], &[], &[], 5);
        assert_eq!((none.train, none.val, none.probe), (None, None, None));
        let before = figures_at(&[(5, 1.0)], &[(5, 1.0)], &[(5, 0.5, 2)], 4);
        assert_eq!((before.train, before.val, before.probe), (None, None, None), "nothing read after the step counts");
    }

    /// A run of 40 steps reads its training losses before each update (steps 0–39) and its
    /// validation and snapshot after the last (step 40): compared at the 40 steps it trained,
    /// the table has its final validation and probe, not the ones before.
    #[test]
    fn a_finished_run_is_read_at_the_steps_it_trained() {
        let train: Vec<(usize, f32)> = (0..40).map(|s| (s, s as f32)).collect();
        let val = [(20, 2.0), (40, 1.0)];
        let probes = [(0, 0.25, 4), (20, 0.5, 4), (40, 0.75, 4)];
        let at = common_step(&[(Some(40), false)]).unwrap();
        let f = figures_at(&train, &val, &probes, at);
        assert_eq!((f.train, f.val, f.probe), (Some((30..40).sum::<usize>() as f64 / 10.0), Some(1.0), Some((0.75, 4))));
    }

    #[test]
    fn runs_are_compared_at_the_furthest_step_they_all_reached() {
        assert_eq!(common_step(&[(Some(300), false), (Some(120), false), (Some(2000), false)]), Some(120));
        assert_eq!(common_step(&[(Some(300), false), (None, false)]), Some(300), "an unstarted run does not hold the others back");
        assert_eq!(common_step(&[(Some(300), false), (Some(4), true)]), Some(300), "nor does a failed one");
        assert_eq!(common_step(&[(Some(4), true), (Some(9), true), (None, false)]), Some(9), "every run failed: the furthest");
        assert_eq!(common_step(&[(None, false)]), None);
        assert_eq!(common_step(&[]), None);
    }

    #[test]
    fn mean_and_sample_deviation_over_the_seeds_that_count() {
        let s = Stat::of(&[Some(2.0), Some(4.0), Some(6.0)]).unwrap();
        assert_eq!((s.mean, s.sd, s.n, s.of), (4.0, Some(2.0), 3, 3));
        assert_eq!(s.show(1.0, 3, ""), "4.000 ± 2.000");
        let one = Stat::of(&[Some(2.5)]).unwrap();
        assert_eq!((one.sd, one.show(1.0, 3, "")), (None, "2.500".to_string()), "one seed: no spread to show");
        let partial = Stat::of(&[Some(0.5), Some(f64::NAN), None, Some(0.7)]).unwrap();
        assert_eq!((partial.n, partial.of), (2, 4));
        assert_eq!(partial.show(100.0, 1, " %"), "60.0 ± 14.1 % (2 of 4 runs)");
        assert_eq!(Stat::of(&[None, Some(f64::INFINITY)]), None);
    }

    #[test]
    fn seeds_of_one_experiment_make_one_row_and_the_rows_are_named_by_what_differs() {
        let runs = [
            run(1, "preset=tiny&seed=1", 100, 2.0, 0.5),
            run(2, "preset=tiny&objective=masked_lm", 100, 3.0, 0.75),
            run(3, "preset=tiny&seed=2", 100, 2.2, 0.6),
            run(4, "preset=tiny&seed=3", 150, 2.4, 0.7),
        ];
        let t = Table::build(&runs, 100);
        assert_eq!(t.rows.len(), 2);
        let (gpt, bert) = (&t.rows[0], &t.rows[1]);
        assert_eq!((gpt.label.as_str(), bert.label.as_str()), ("causal_lm", "masked_lm"));
        assert_eq!((gpt.seeds.clone(), bert.seeds.clone()), (vec![1, 2, 3], vec![1337]));
        let val = gpt.val.clone().unwrap();
        assert!((val.mean - 2.2).abs() < 1e-9 && (val.sd.unwrap() - 0.2).abs() < 1e-9, "{val:?}");
        assert_eq!(gpt.chance, Some(0.25));
        assert_eq!((probe_header(&t), probe_text(bert, true)), ("probe accuracy (chance 25 %)".into(), "75.0 %".into()));
        // rows whose probes have other chance levels say each their own
        let mut other = t.clone();
        other.rows[1].chance = Some(0.5);
        assert_eq!((other.chance(), probe_header(&other)), (None, "probe accuracy".into()));
        assert_eq!(probe_text(&other.rows[1], false), "75.0 % (chance 50 %)");
        assert!(!t.losses_compare, "two objectives: their losses score different tasks");
        assert_eq!(t.bests(), (None, Some(1)), "no best loss across tasks; the probe compares");
        // one objective: the lowest validation loss is the best
        let same = Table::build(&[runs[0].clone(), run(5, "preset=tiny&lr=0.01", 100, 1.5, 0.4)], 100);
        assert!(same.losses_compare);
        assert_eq!(same.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["lr 0.003", "lr 0.01"]);
        assert_eq!(same.bests(), (Some(1), Some(0)));
        // rows that differ where the labels do not look (the gradient clip) keep apart by number
        let clip = Table::build(&[runs[0].clone(), run(6, "preset=tiny&grad_clip=0.5", 100, 1.5, 0.4)], 100);
        assert_eq!(clip.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["causal_lm #1", "causal_lm #6"]);
        // the batch is told apart by the labels
        let batch = Table::build(&[runs[0].clone(), run(6, "preset=tiny&batch=4", 100, 1.5, 0.4)], 100);
        assert_eq!(batch.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["batch 8", "batch 4"]);
    }

    #[test]
    fn a_run_that_stopped_or_lags_is_left_out_of_its_rows_figures_and_said_why() {
        let mut diverged = run(2, "preset=tiny&seed=2", 5, 2.0, 0.5);
        diverged.failure = Some("diverged at step 5".into());
        diverged.figures.val = Some(f64::NAN);
        let mut new = run(3, "preset=tiny&seed=3", 0, 9.0, 0.1);
        new.latest = None;
        let t = Table::build(&[run(1, "preset=tiny&seed=1", 300, 2.5, 0.5), diverged, new], 300);
        let row = &t.rows[0];
        assert_eq!(loss_text(&row.val), "2.500 (1 of 3 runs)");
        assert_eq!(row.left_out, ["run 2 stopped at step 5: diverged at step 5", "run 3 has not trained yet"]);
        // a run that failed at the compared step itself still counts: its readings reach it
        let mut lost = run(4, "preset=tiny&seed=4", 300, 2.7, 0.5);
        lost.failure = Some("the GPU device was lost".into());
        let t = Table::build(&[run(1, "preset=tiny&seed=1", 300, 2.5, 0.5), lost], 300);
        assert_eq!((t.rows[0].val.as_ref().unwrap().n, t.rows[0].left_out.len()), (2, 0));
        assert_eq!(t.rows[0].stopped_here, ["run 4 stopped at step 300: the GPU device was lost"], "and the row says it stopped");
        assert!(t.rows[0].failed);
        assert!(t.markdown().ends_with("| causal_lm ⚠ | 1, 4 | 2.700 ± 0.141 | 2.600 ± 0.141 | 50.0 ± 0.0 % |\n\n- causal_lm: run 4 stopped at step 300: the GPU device was lost\n"), "{}", t.markdown());
        // a run still training is not marked
        assert!(!Table::build(&[run(1, "preset=tiny&seed=1", 300, 2.5, 0.5)], 300).rows[0].failed);
    }

    #[test]
    fn the_markdown_table_has_a_row_per_experiment() {
        let runs = [run(1, "preset=tiny&seed=1", 100, 2.0, 0.5), run(2, "preset=tiny&seed=2", 100, 2.2, 0.7)];
        let md = Table::build(&runs, 100).markdown();
        assert_eq!(
            md,
            "At step 100. Training loss: the mean of the last 10 readings; ± is the standard deviation over seeds.\n\n\
             | run | seeds | training loss | validation loss | probe accuracy (chance 25 %) |\n\
             | --- | --- | --- | --- | --- |\n\
             | causal_lm | 1, 2 | 2.200 ± 0.141 | 2.100 ± 0.141 | 60.0 ± 14.1 % |\n"
        );
        // rows of two sizes: what each model weighs, in a column of its own
        let deeper = [runs[0].clone(), run(3, "preset=tiny&layers=4&width=64", 100, 1.8, 0.6)];
        let table = Table::build(&deeper, 100);
        assert!(table.sizes_differ() && !Table::build(&runs, 100).sizes_differ());
        let md = table.markdown();
        assert!(md.contains("| run | seeds | parameters | training loss |") && md.contains("| --- | --- | --- | --- | --- | --- |"), "{md}");
        let tiny = params_text(table.rows[0].params.unwrap());
        let big = params_text(table.rows[1].params.unwrap());
        assert!(tiny.ends_with(" k") && big.ends_with(" M"), "{tiny} {big}");
        assert!(md.contains(&format!("| 2L×32 | 1 | {tiny} | 2.100 |")) && md.contains(&format!("| 4L×64 | 1337 | {big} | 1.900 |")), "{md}");
        // a row whose vocabulary is not known has no figure there
        let mut unknown = deeper.clone();
        unknown[1].vocab = None;
        assert!(!Table::build(&unknown, 100).sizes_differ(), "one size known: nothing to compare");
    }

    #[test]
    fn parameter_counts_read_as_people_write_them() {
        assert_eq!((params_text(834_560), params_text(31_488), params_text(2_500_000)), ("0.83 M".into(), "31 k".into(), "2.50 M".into()));
    }

    #[test]
    fn one_row_per_point_with_labels_quoted_where_they_hold_commas() {
        let runs = [
            RunCurves { run: 1, label: "causal_lm", train: &[(1, 4.5), (2, 4.25)], validation: &[(2, 4.375)] },
            RunCurves { run: 3, label: "decoder, seed \"7\"", train: &[(1, 3.5)], validation: &[] },
        ];
        assert_eq!(
            curves_csv(&runs),
            "run,label,split,step,loss\n\
             1,causal_lm,train,1,4.5\n1,causal_lm,train,2,4.25\n1,causal_lm,validation,2,4.375\n\
             3,\"decoder, seed \"\"7\"\"\",train,1,3.5\n"
        );
        assert_eq!(curves_csv(&[]), "run,label,split,step,loss\n", "no run: the header alone");
    }
}
