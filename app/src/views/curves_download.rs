//! "Download CSV": every run's loss curves as one table, for a spreadsheet or a notebook
//! (`pandas.read_csv`): one row per point, `run,label,split,step,loss`, where `label` names
//! what differs between the runs as the page does and `split` is `train` or `validation`.
//!
//! Why a `data:` link made at the click rather than a `Blob`: nothing is built while the runs
//! train, and no web-sys feature is added for it (the curves of eight runs of 10,000 steps are
//! ~2 MB, which Chromium and Firefox download from a `data:` link).

use leptos::html::A;
use leptos::prelude::*;

use crate::lab::Lab;

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

/// The table: a header, then each run's training points and validation points in step order.
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

#[component]
pub fn CurvesDownload(lab: Lab) -> impl IntoView {
    let link = NodeRef::<A>::new();
    // the link's target is made as it is followed (the click's default action reads it after)
    let on_click = move |_| {
        let labels = lab.labels();
        let runs = lab.runs.get_untracked();
        let (trains, validations): (Vec<_>, Vec<_>) = runs.iter().map(|r| (r.train.get_untracked(), r.val.get_untracked())).unzip();
        let tables: Vec<RunCurves> = runs
            .iter()
            .zip(trains.iter().zip(&validations))
            .map(|(r, (train, validation))| RunCurves {
                run: r.id,
                label: labels.iter().find(|(id, _)| *id == r.id).map_or("", |(_, l)| l.as_str()),
                train,
                validation,
            })
            .collect();
        let csv = curves_csv(&tables);
        let href = format!("data:text/csv;charset=utf-8,{}", js_sys::encode_uri_component(&csv));
        if let Some(a) = link.get_untracked() {
            let _ = a.set_attribute("href", &href);
        }
    };
    let any = move || lab.runs.with(|runs| runs.iter().any(|r| r.train.with(|t| !t.is_empty())));
    view! {
        <Show when=any>
            <a data-testid="curves-csv" node_ref=link href="#" download="objective-lab-curves.csv"
                title="every run's training and validation loss, one row per point" on:click=on_click>"download CSV"</a>
        </Show>
    }
}

#[cfg(test)]
mod tests {
    use super::{RunCurves, curves_csv};

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
