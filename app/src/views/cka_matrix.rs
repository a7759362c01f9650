//! Comparing runs: linear CKA (Kornblith et al., 2019) between every pair of runs'
//! representations of the probe set at the time the slider shows — 1 means the same
//! representation up to rotation and scale — and each run's effective rank.

use leptos::prelude::*;
use objlab_engine::protocol::NOT_COMPARABLE;

use crate::lab::Lab;

#[component]
pub fn CkaMatrix(lab: Lab) -> impl IntoView {
    // The CKA entry at the slider's time: among those at or before it, the one that compares
    // the most runs (a run added later reaches a step later), latest first.
    let entry = Memo::new(move |_| {
        let time = lab.time.get();
        lab.cka.with(|all| {
            let upto: Vec<_> = all.iter().filter(|(s, _, _)| time.is_none_or(|t| *s <= t)).collect();
            let pick = if upto.is_empty() { all.first() } else { upto.into_iter().max_by_key(|(s, runs, _)| (runs.len(), *s)) };
            pick.cloned()
        })
    });
    let table = move || {
        let (step, runs, matrix) = entry.get()?;
        let m = runs.len();
        let labels = lab.labels();
        let views = lab.runs.get();
        let name = |id: u32| labels.iter().find(|(r, _)| *r == id).map(|(_, l)| l.clone()).unwrap_or_else(|| format!("run {id}"));
        let colour = |id: u32| views.iter().find(|r| r.id == id).map_or("#999", |r| r.colour);
        let rank = |id: u32| {
            views.iter().find(|r| r.id == id).and_then(|r| r.snapshots.with_untracked(|s| s.iter().find(|x| x.step == step).map(|x| x.effective_rank)))
        };
        Some(view! {
            <p class="caption" data-testid="cka-step">{format!("step {step}")}</p>
            <table data-testid="cka-matrix" data-size=m.to_string()>
                <tr>
                    <th></th>
                    {runs.iter().map(|&r| view! { <th title=name(r)><span class="swatch" style=format!("background:{}", colour(r))></span></th> }).collect_view()}
                    <th>"effective rank"</th>
                </tr>
                {runs.iter().enumerate().map(|(i, &r)| view! {
                    <tr>
                        <th class="row-label"><span class="swatch" style=format!("background:{}", colour(r))></span>{name(r)}</th>
                        {(0..m).map(|j| {
                            let v = matrix[i * m + j];
                            if v == NOT_COMPARABLE {
                                return view! { <td data-testid="cka-cell" data-value="" title="different texts: their probe sequences differ">"—"</td> }.into_any();
                            }
                            let shade = (255.0 * (1.0 - v.clamp(0.0, 1.0))) as u8;
                            let style = format!("background: rgb({shade}, {shade}, 255); color: {}", if v > 0.6 { "#fff" } else { "#000" });
                            view! { <td data-testid="cka-cell" data-value=format!("{v:.4}") style=style>{format!("{v:.2}")}</td> }.into_any()
                        }).collect_view()}
                        <td data-testid="effective-rank">{rank(r).map(|e| format!("{e:.1}")).unwrap_or_else(|| "—".into())}</td>
                    </tr>
                }).collect_view()}
            </table>
        })
    };
    view! {
        <section class="cka">
            <h2>"How alike are the runs' representations?"</h2>
            <p class="hint">"Linear CKA between runs on the probe set (1 = the same up to rotation and scale), and each run's effective rank (how many directions its representations really use)."</p>
            {move || table().map(|t| t.into_any()).unwrap_or_else(|| view! { <p class="caption">"appears at the first snapshot"</p> }.into_any())}
        </section>
    }
}
