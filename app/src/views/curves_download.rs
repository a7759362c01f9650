//! "Download CSV": every run's loss curves as one table, for a spreadsheet or a notebook
//! (`pandas.read_csv`): one row per point, `run,label,split,step,loss`, where `label` names
//! what differs between the runs as the page does and `split` is `train` or `validation`. The
//! table is the engine's `results::curves_csv`, which `objlab train --csv` writes too.
//!
//! Why a `data:` link made at the click rather than a `Blob`: nothing is built while the runs
//! train, and no web-sys feature is added for it (the curves of eight runs of 10,000 steps are
//! ~2 MB, which Chromium and Firefox download from a `data:` link).

use leptos::html::A;
use leptos::prelude::*;
use objlab_engine::results::{RunCurves, curves_csv};

use crate::lab::Lab;

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
