//! Alternated rounds for `cargo xtask bench`: two programs timed in turns on one machine, each
//! round's ratio, and the ratio of their medians.
//!
//! Why: the 2-core dev VM's speed moves by ±20 % within minutes (docs/performance.md), so a
//! ratio means something only between runs taken in the same minutes, and a single pair of runs
//! can land on either side of a target. Whichever program runs first in a round also tends to
//! run faster, so the order swaps every round. Issue 5's CPU figures are read this way: the
//! median of one side's rounds against the median of the other's.

/// The middle value (the mean of the two middle ones for an even count); `None` when empty.
/// NaN and infinite values are left out.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// Whether "ours" runs first in round `r` (counted from 0): in even rounds, then in turns.
pub fn ours_first(r: usize) -> bool {
    r.is_multiple_of(2)
}

/// Round `r`'s two figures, the programs run in [`ours_first`]'s order. Where ours runs first
/// and has no figure (no such device here), theirs is not run: the round is lost either way.
pub fn one_round(r: usize, ours: impl FnOnce() -> Option<f64>, theirs: impl FnOnce() -> Option<f64>) -> (Option<f64>, Option<f64>) {
    if ours_first(r) {
        let a = ours();
        (a, a.and_then(|_| theirs()))
    } else {
        let b = theirs();
        (ours(), b)
    }
}

/// Steps/s of two programs from alternated rounds. A round keeps both figures or neither, so
/// that every ratio compares runs taken in the same minutes.
#[derive(Default, Debug)]
pub struct Rounds {
    pairs: Vec<(f64, f64)>,
}

impl Rounds {
    /// Adds one round's figures; a round missing either one is left out.
    pub fn push(&mut self, ours: Option<f64>, theirs: Option<f64>) {
        if let (Some(a), Some(b)) = (ours, theirs)
            && a.is_finite()
            && b.is_finite()
            && b > 0.0
        {
            self.pairs.push((a, b));
        }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Median of ours against median of theirs, and each median.
    pub fn ratio_of_medians(&self) -> Option<(f64, f64, f64)> {
        let ours = median(&self.pairs.iter().map(|p| p.0).collect::<Vec<_>>())?;
        let theirs = median(&self.pairs.iter().map(|p| p.1).collect::<Vec<_>>())?;
        Some((ours / theirs, ours, theirs))
    }

    /// The lowest and highest of the rounds' own ratios.
    pub fn ratio_range(&self) -> Option<(f64, f64)> {
        let ratios = self.pairs.iter().map(|(a, b)| a / b);
        let lo = ratios.clone().fold(f64::INFINITY, f64::min);
        let hi = ratios.fold(f64::NEG_INFINITY, f64::max);
        (!self.pairs.is_empty()).then_some((lo, hi))
    }

    /// One line: both medians, their ratio and the rounds' range, against `target` (a ratio to
    /// reach, as issue 5 sets them), e.g. "tab 18.38 | native 40.64 steps/s | 0.45× median
    /// against median (0.43–0.47× in 6 rounds) | target ≥ 0.50×: not met".
    pub fn summary(&self, ours: &str, theirs: &str, target: f64) -> String {
        let (Some((ratio, a, b)), Some((lo, hi))) = (self.ratio_of_medians(), self.ratio_range()) else {
            return format!("{ours} against {theirs}: no round with both figures");
        };
        let rounds = match self.len() {
            1 => "1 round".to_string(),
            n => format!("{lo:.2}–{hi:.2}× in {n} rounds"),
        };
        let met = if ratio >= target { "met" } else { "not met" };
        format!("{ours} {a:.2} | {theirs} {b:.2} steps/s | {ratio:.2}× median against median ({rounds}) | target ≥ {target:.2}×: {met}")
    }
}

/// The tab's speed from one `browser-bench <preset> cpu button N` run, whose stdout has a JSON
/// line per press (`{…,"press":3,…,"steps_per_s":18.2,…}`, its keys in any order): the median
/// steps/s of the presses numbered `first_press` and later, and those presses' figures in
/// order. The first presses are left out because they still pay for V8 compiling the worker's
/// hot loops.
pub fn tab_speed(stdout: &str, first_press: usize) -> Option<(f64, Vec<f64>)> {
    let presses: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter(|l| crate::json_number(l, "press").is_some_and(|p| p >= first_press as f64))
        .filter_map(|l| crate::json_number(l, "steps_per_s"))
        .collect();
    Some((median(&presses)?, presses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_order_swaps_every_round() {
        assert_eq!((0..4).map(ours_first).collect::<Vec<_>>(), [true, false, true, false]);
    }

    #[test]
    fn a_round_runs_both_in_its_order_and_skips_theirs_after_ours_failed_first() {
        let order = &std::cell::RefCell::new(Vec::new());
        let ours = |v: Option<f64>| move || {
            order.borrow_mut().push("ours");
            v
        };
        let theirs = || {
            order.borrow_mut().push("theirs");
            Some(2.0)
        };
        assert_eq!(one_round(0, ours(Some(1.0)), theirs), (Some(1.0), Some(2.0)));
        assert_eq!(one_round(1, ours(Some(1.0)), theirs), (Some(1.0), Some(2.0)));
        assert_eq!(one_round(2, ours(None), theirs), (None, None));
        assert_eq!(one_round(3, ours(None), theirs), (None, Some(2.0)));
        assert_eq!(*order.borrow(), ["ours", "theirs", "theirs", "ours", "ours", "theirs", "ours"]);
    }

    #[test]
    fn rounds_compare_medians_and_leave_out_rounds_missing_a_figure() {
        let mut r = Rounds::default();
        r.push(Some(18.0), Some(40.0));
        r.push(Some(19.0), None);
        r.push(Some(20.0), Some(38.0));
        r.push(Some(17.0), Some(42.0));
        r.push(Some(1.0), Some(0.0));
        assert_eq!(r.len(), 3);
        let (ratio, ours, theirs) = r.ratio_of_medians().unwrap();
        assert_eq!((ours, theirs), (18.0, 40.0));
        assert!((ratio - 0.45).abs() < 1e-12);
        let (lo, hi) = r.ratio_range().unwrap();
        assert!((lo - 17.0 / 42.0).abs() < 1e-12 && (hi - 20.0 / 38.0).abs() < 1e-12);
        let line = r.summary("tab", "native", 0.5);
        assert!(line.contains("0.45× median against median (0.40–0.53× in 3 rounds)"), "{line}");
        assert!(line.ends_with("target ≥ 0.50×: not met"), "{line}");
        assert!(Rounds::default().summary("tab", "native", 0.5).contains("no round with both figures"));
    }

    #[test]
    fn the_tab_speed_is_the_median_of_the_later_presses() {
        let out = [
            r#"{"press":1,"profile":{"steps":20},"steps_per_s":9.5,"workers":"2"}"#,
            r#"{"press":2,"profile":{"steps":20},"steps_per_s":16.0,"workers":"2"}"#,
            "a line that is not a press",
            r#"{"press":3,"profile":{"steps":20},"steps_per_s":18.2,"workers":"2"}"#,
            r#"{"press":4,"profile":{"steps":20},"steps_per_s":17.9,"workers":"2"}"#,
            r#"{"press":5,"profile":{"steps":20},"steps_per_s":18.8,"workers":"2"}"#,
            r#"{"press":6,"profile":{"steps":20},"steps_per_s":18.4,"workers":"2"}"#,
        ]
        .join("\n");
        let (speed, presses) = tab_speed(&out, 3).unwrap();
        assert_eq!(presses, [18.2, 17.9, 18.8, 18.4]);
        assert!((speed - 18.3).abs() < 1e-12);
        assert_eq!(tab_speed("no presses at all", 3), None);
    }

    #[test]
    fn the_tab_speed_is_read_whatever_the_order_of_a_press_lines_keys() {
        // browser-bench's lines as printed since the chart's redraw joined them (serde_json
        // sorts the keys, so "press" no longer comes first), shortened
        let press = |n: usize, speed: f64| {
            format!(
                r#"{{"chart_redraw":"loss chart: 6 runs × 10000 points redraw in 4.7 ms","chart_redraw_median_ms":4.7,"press":{n},"profile":{{"add_ms":0.6,"steps":20}},"steps_per_s":{speed},"text":"baby-gpt (2 workers): {speed} steps/s","workers":"2"}}"#
            )
        };
        let out = [press(1, 18.9), press(2, 18.8), press(3, 19.7), press(4, 20.0), press(5, 18.9), press(6, 19.8)].join("\n");
        let (speed, presses) = tab_speed(&out, 3).unwrap();
        assert_eq!(presses, [19.7, 20.0, 18.9, 19.8]);
        assert!((speed - 19.75).abs() < 1e-12);
    }
}
