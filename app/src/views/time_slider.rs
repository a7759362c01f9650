//! One slider that scrubs every run's representation views through training together: it
//! moves over the steps at which snapshots were taken; at its right end it follows the latest.

use leptos::prelude::*;

use crate::lab::Lab;

/// Every step at which some run took a snapshot, in order (tracked).
pub fn snapshot_steps(lab: Lab) -> Vec<usize> {
    let mut steps: Vec<usize> =
        lab.runs.with(|runs| runs.iter().flat_map(|r| r.snapshots.with(|s| s.iter().map(|x| x.step).collect::<Vec<_>>())).collect());
    steps.sort_unstable();
    steps.dedup();
    steps
}

#[component]
pub fn TimeSlider(lab: Lab) -> impl IntoView {
    let steps = Memo::new(move |_| snapshot_steps(lab));
    let index = move || {
        let steps = steps.get();
        match lab.time.get() {
            None => steps.len().saturating_sub(1),
            Some(t) => steps.iter().rposition(|s| *s <= t).unwrap_or(0),
        }
    };
    let on_input = move |ev| {
        let steps = steps.get_untracked();
        let i: usize = event_target_value(&ev).parse().unwrap_or(0);
        lab.time.set(if i + 1 >= steps.len() { None } else { steps.get(i).copied() });
    };
    let shown = move || {
        let steps = steps.get();
        match (lab.time.get(), steps.last()) {
            (_, None) => "no snapshot yet".to_string(),
            (None, Some(last)) => format!("step {last} (latest)"),
            (Some(t), _) => format!("step {t}"),
        }
    };
    view! {
        <section class="time">
            <h2>"What the runs have learned"</h2>
            <p class="hint">"Every few steps each run's representations are snapshotted. Slide to scrub all runs through training together."</p>
            <label>"training time "
                <input type="range" data-testid="time-slider" min="0"
                    prop:max=move || steps.get().len().saturating_sub(1).to_string()
                    prop:value=move || index().to_string()
                    prop:disabled=move || steps.get().len() < 2
                    on:input=on_input on:change=on_input />
                <span data-testid="time-step">{shown}</span>
            </label>
        </section>
    }
}
