//! What a run's linear probe reads, label by label: a grid of the held-out probe rows, each
//! row of the grid one true label (a digit, or a Markov source) and each column what the probe
//! read, darker for more. The probe's accuracy says how often it is right; this says which
//! labels the representation mixes up (a 3 read as an 8, two sources it cannot tell apart).

use leptos::prelude::*;
use objlab_engine::protocol::Snapshot;

/// The name of label `k`: a digit is itself; the Markov sources are numbered from 1.
fn label_name(k: usize, on_digits: bool) -> String {
    if on_digits { k.to_string() } else { (k + 1).to_string() }
}

/// Each cell of the grid: (count, share of its row), row by row; `None` without a grid to draw
/// (a snapshot of a run kept from before the page drew it, or counts that are not a square of
/// the classes).
fn shares(s: &Snapshot) -> Option<Vec<Vec<(u32, f32)>>> {
    let k = s.probe_classes;
    (k > 0 && s.probe_confusion.len() == k * k).then(|| {
        s.probe_confusion.chunks(k).map(|row| {
            let total = row.iter().sum::<u32>().max(1) as f32;
            row.iter().map(|&c| (c, c as f32 / total)).collect()
        }).collect()
    })
}

#[component]
pub fn ProbeConfusion(shown: Memo<Option<Snapshot>>, on_digits: bool) -> impl IntoView {
    let what = if on_digits { "digit" } else { "source" };
    move || {
        let s = shown.get()?;
        let grid = shares(&s)?;
        let k = grid.len();
        Some(view! {
            <figure class="confusion-figure">
                <table class="confusion" data-testid="probe-confusion" data-classes=k.to_string()
                    aria-label=format!("what the probe reads at step {}: a row per true {what}, a column per {what} read", s.step)>
                    <tr><th title=format!("true {what} ↓, read as →")>"↓→"</th>
                        {(0..k).map(|c| view! { <th>{label_name(c, on_digits)}</th> }).collect_view()}
                    </tr>
                    {grid.into_iter().enumerate().map(|(r, row)| view! {
                        <tr>
                            <th>{label_name(r, on_digits)}</th>
                            {row.into_iter().enumerate().map(|(c, (count, share))| {
                                let g = (255.0 * (1.0 - share)).round() as u8;
                                let ink = if share > 0.5 { "#fff" } else { "#333" };
                                let class = if r == c { "right" } else { "" };
                                view! {
                                    <td class=class style=format!("background:rgb({g},{g},255);color:{ink}")
                                        title=format!("{what} {} read as {}: {count}", label_name(r, on_digits), label_name(c, on_digits))>
                                        {(count > 0).then(|| count.to_string())}
                                    </td>
                                }
                            }).collect_view()}
                        </tr>
                    }).collect_view()}
                </table>
                <figcaption>{format!("what the probe reads: a row per true {what}, a column per {what} read")}</figcaption>
            </figure>
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(classes: usize, confusion: Vec<u32>) -> Snapshot {
        Snapshot {
            run: 1,
            step: 10,
            tokens: Vec::new(),
            token_points: Vec::new(),
            probe_points: Vec::new(),
            probe_labels: Vec::new(),
            probe_accuracy: 0.5,
            probe_confusion: confusion,
            probe_classes: classes,
            effective_rank: 1.0,
            millis: 1.0,
            stall_ms: 1.0,
            analyser: "cpu".into(),
        }
    }

    #[test]
    fn each_cell_is_a_share_of_its_true_labels_rows() {
        let grid = shares(&snapshot(2, vec![3, 1, 0, 0])).unwrap();
        assert_eq!(grid, vec![vec![(3, 0.75), (1, 0.25)], vec![(0, 0.0), (0, 0.0)]], "a label with no rows is all blank");
        assert_eq!(shares(&snapshot(4, Vec::new())), None, "a kept run's snapshot has no grid");
        assert_eq!(shares(&snapshot(3, vec![1; 4])), None, "counts that are not classes × classes");
        assert_eq!((label_name(0, true), label_name(0, false)), ("0".to_string(), "1".to_string()));
    }
}
