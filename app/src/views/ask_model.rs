//! "Ask the model": type a line and see what one run's model makes of it, in the terms of the
//! objectives it trained on. A next-token model continues the line; a masked model fills in
//! each `_`; a detector flags the characters it thinks were swapped in; swapped LM names the
//! character it expects everywhere (a wrong letter may come back put right); position
//! prediction names each character's place; span corruption (T5) and UL2 write the stretch of
//! text behind each run of `_`. Asking the same line of a GPT-style and a
//! BERT-style run shows a class what each can do, which their loss curves cannot.

use std::collections::HashMap;
use leptos::prelude::*;
use objlab_engine::model::Head;
use objlab_engine::objectives::{Answers, BLANK, Example, Mark, before_blank, find};
use objlab_engine::protocol::RunId;
use objlab_engine::digits::{PIXELS, SIDE};
use super::attention_map::{DEFAULT_TEXT, offer, own_opening};
use super::pixel_image::{Cell, PixelImage, TextImages, images_of_cells, moved};
use super::model_view::{answer_score, mark_name, short_target, show};
use crate::lab::{Lab, label_in};

/// The line offered for a run: the start of its own text (or Shakespeare's), with a blank
/// put in where one of its objectives fills blanks. On the digits, a held-out image: its top
/// half to continue, or the whole of it with four pixels of its stroke hidden.
fn suggested_line(own_opening: Option<String>, fills_blanks: bool, on_digits: bool) -> String {
    let line = own_opening.unwrap_or_else(|| DEFAULT_TEXT.to_string());
    if on_digits {
        // (the new line, then the pixels: 20, 21, 28 and 29 lie on the 3's upper stroke)
        return match fills_blanks {
            true => line.chars().enumerate().map(|(k, c)| if [21, 22, 29, 30].contains(&k) { BLANK } else { c }).collect(),
            false => line.chars().take(1 + PIXELS / 2).collect(),
        };
    }
    if !fills_blanks {
        return line;
    }
    // hide the first letter after the middle that is inside a word ("To be, or n_t to be"):
    // the word around it gives the model something to go on
    let chars: Vec<char> = line.chars().collect();
    match (chars.len() / 2 + 1..chars.len()).find(|&i| chars[i].is_alphabetic() && chars[i - 1].is_alphabetic()) {
        Some(i) => chars.iter().enumerate().map(|(k, &c)| if k == i { BLANK } else { c }).collect(),
        None => line,
    }
}

/// How many answers' certainties the one line lists.
const SURE_LISTED: usize = 8;

/// One line that sums up an objective's answers: the text as the model reads it back (each
/// asked character replaced by its answer), how many characters it flags as swapped in, or
/// how many positions it names right.
fn summary(example: &Example) -> String {
    let Some(row) = example.rows.first() else { return String::new() };
    match example.head {
        Head::Binary => {
            let flagged = example.answers.iter().filter(|a| *a == "replaced").count();
            format!("flags {flagged} of {} characters as swapped in", row.tokens.len())
        }
        Head::Position => {
            let (right, all) = answer_score(example);
            format!("names {right} of {all} positions right")
        }
        _ => {
            // (a mode token such as UL2's [R] is not part of the line)
            let text: String = row.tokens.iter().zip(&example.answers).zip(&row.marks).zip(&row.targets).filter(|((_, m), _)| **m != Mark::Control)
                .map(|(((t, a), _), y)| if a.is_empty() && !wrote_nothing(y, a) { t.as_str() } else { a.as_str() }).collect();
            // how sure it is of what it writes behind each [MASK] or sentinel (nothing, too)
            let sure: Vec<String> = row.tokens.iter().zip(&example.answers).zip(&example.confidence).zip(&row.targets)
                .filter(|(((t, a), _), y)| t.chars().count() > 1 && (!a.is_empty() || wrote_nothing(y, a)))
                .map(|(((t, a), p), _)| match a.is_empty() {
                    true => format!("nothing behind {t}, {:.0} % sure", 100.0 * p),
                    false => format!("{} {:.0} % sure", show(a), 100.0 * p),
                }).collect();
            // (many answers, as half an image hidden gives: the first few, then how many more)
            let listed = match sure.len() > SURE_LISTED {
                true => format!("{}, and {} more", sure[..SURE_LISTED].join(", "), sure.len() - SURE_LISTED),
                false => sure.join(", "),
            };
            if sure.is_empty() { format!("reads it as: {text:?}") } else { format!("reads it as: {text:?} ({listed})") }
        }
    }
}

/// Whether an asked position was answered with nothing: a stretch a span-corruption model
/// writes nothing into (it closes the gap at once), which must read as an answer, not as none.
fn wrote_nothing(target: &str, answer: &str) -> bool {
    target == "?" && answer.is_empty()
}

/// On the digits, a question read back as images, cell by cell, as [`summary`] reads it back
/// as text: each pixel as asked, a hidden one (or a sentinel's stretch) as the model fills it
/// in (outlined), a pixel the model would change as its answer (outlined in another colour).
/// Only for objectives that answer in pixels (a vocabulary head).
fn answered_images(example: &Example) -> Option<Vec<Vec<Cell>>> {
    let row = example.rows.first().filter(|_| example.head == Head::Vocab)?;
    let mut cells = Vec::new();
    for (k, (t, m)) in row.tokens.iter().zip(&row.marks).enumerate() {
        if *m == Mark::Control {
            continue;
        }
        let a = example.answers.get(k).map(String::as_str).unwrap_or_default();
        // (a [MASK] or a sentinel is not a pixel: what it stands for is what the model writes)
        let class = match (t.chars().count() > 1, a.is_empty() || a == t) {
            (true, _) => "filled",
            (false, false) => "changed",
            (false, true) => "",
        };
        match class {
            "" => cells.push(Cell::of(t, "")),
            _ => cells.extend(a.chars().map(|c| Cell::of(&c.to_string(), class))),
        }
    }
    Some(images_of_cells(cells))
}

/// Where the pixels of the first image in a typed line are: the places of the characters
/// after its first new line sign (or from its start, without one), at most an image's worth.
fn pixel_places(line: &str) -> Vec<usize> {
    let chars: Vec<char> = line.chars().collect();
    let from = chars.iter().position(|&c| c == objlab_engine::tokenizer::NEW_LINE_SIGN).map_or(0, |i| i + 1);
    (from..chars.len()).take_while(|&i| chars[i] != objlab_engine::tokenizer::NEW_LINE_SIGN).take(PIXELS).collect()
}

/// The typed line's first image, drawn for clicking: a hidden pixel ([`BLANK`]) empty and
/// outlined.
fn line_cells(line: &str) -> Vec<Cell> {
    let chars: Vec<char> = line.chars().collect();
    pixel_places(line).into_iter().map(|i| match chars[i] {
        BLANK => Cell { ink: None, class: "mark-masked", title: "hidden".into() },
        c => Cell::of(&c.to_string(), ""),
    }).collect()
}

/// Pixel `p` of the typed line's first image hidden, or shown again (as the grey level it had
/// when it was hidden, kept in `was`, else background).
fn toggle_pixel(line: &str, p: usize, was: &mut HashMap<usize, char>) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    if let Some(&i) = pixel_places(line).get(p) {
        chars[i] = match chars[i] {
            BLANK => was.remove(&i).unwrap_or(objlab_engine::digits::PALETTE[0]),
            c => {
                was.insert(i, c);
                BLANK
            }
        };
    }
    chars.into_iter().collect()
}

/// Pixels of the typed line's first image hidden at once where `hide` says (by pixel number),
/// every other one shown again: the quick choices under the line's image.
fn hide_only(line: &str, hide: impl Fn(usize) -> bool, was: &mut HashMap<usize, char>) -> String {
    let mut line = line.to_string();
    for p in 0..pixel_places(&line).len() {
        let hidden = line_cells(&line)[p].class == "mark-masked";
        if hidden != hide(p) {
            line = toggle_pixel(&line, p, was);
        }
    }
    line
}

/// Which pixels (by number) a quick choice hides.
type Hides = fn(usize) -> bool;

/// The quick choices under the line's image: a name and which pixels each hides.
const QUICK_HIDES: [(&str, Hides); 3] = [
    ("hide the bottom half", |p| p >= PIXELS / 2),
    ("hide the right half", |p| p % SIDE >= SIDE / 2),
    ("show every pixel", |_| false),
];

/// How an answer reads beside the character it answers: right or wrong where the right answer
/// is known, a change where the model would write another character, a flag, or plain.
fn verdict(head: Head, token: &str, target: &str, answer: &str) -> &'static str {
    match head {
        Head::Binary if answer == "replaced" => "flagged",
        Head::Binary => "plain",
        _ if target != "?" => if answer == target { "right" } else { "wrong" },
        // (a character answered by another; not a [MASK] or a sentinel filled in)
        _ if answer != token && token.chars().count() == 1 => "changed",
        _ => "plain",
    }
}

#[component]
fn AnsweredRow(example: Example, pixels: bool) -> impl IntoView {
    let name = find(&example.objective).map(|o| o.info().name).unwrap_or_default();
    let line = summary(&example);
    // on the digits, the question as the model reads it back, drawn
    let images = pixels.then(|| answered_images(&example)).flatten().map(|images| view! {
        <div class="pixel-row" data-testid="ask-answer-images">
            {images.into_iter().enumerate().map(|(i, cells)| view! {
                <PixelImage cells=cells caption=format!("read back, image {}", i + 1) />
            }).collect_view()}
        </div>
    });
    let row = example.rows.first().cloned();
    let head = example.head;
    view! {
        <article class="asked" data-testid="ask-example" data-objective=example.objective.clone()>
            <h3>{name}</h3>
            <p data-testid="ask-summary">{line}</p>
            {images}
            <div class="tokens">
                {row.map(|row| row.tokens.iter().zip(&row.marks).zip(&row.targets).enumerate().map(|(k, ((t, m), y))| {
                    // a detector's verdicts: only the flagged ones, so that they stand out
                    let answer = example.answers.get(k).filter(|a| !((a.is_empty() && !wrote_nothing(y, a)) || (head == Head::Binary && *a == "original"))).map(|a| {
                        let p = example.confidence.get(k).copied().unwrap_or(0.0);
                        let v = verdict(head, t, y, a);
                        let (shown, title) = match a.is_empty() {
                            true => ("∅".to_string(), format!("the model writes nothing here: it closes the stretch at once ({:.0} % sure)", 100.0 * p)),
                            false => (short_target(a), format!("the model's answer: {} ({:.0} % sure)", show(a), 100.0 * p)),
                        };
                        view! {
                            <span class=format!("tok answer {v}") data-answer=v title=title>{shown}</span>
                        }
                    });
                    view! {
                        <span class="col">
                            <span class=format!("tok mark-{}", mark_name(*m))>{show(t)}</span>
                            {answer}
                        </span>
                    }
                }).collect_view())}
            </div>
        </article>
    }
}

#[component]
fn Reply(text: String, answers: Answers, pixels: bool) -> impl IntoView {
    // a generator continues what comes before the first blank
    let prompt = before_blank(&text).to_string();
    view! {
        {answers.continuation.map(|c| view! {
            <p class="row-label">"continues it (next-token prediction, sampled):"</p>
            <pre class="continuation" data-testid="ask-continuation"><b>{prompt.clone()}</b>{c.clone()}</pre>
            // on the digits, the line and its continuation drawn as the images they are
            {pixels.then(|| view! {
                <TextImages text=format!("{prompt}{c}").replace(objlab_engine::tokenizer::NEW_LINE_SIGN, "\n") testid="ask-images" given=prompt.chars().count() />
                <p class="hint">"faint: the pixels it was given; the rest it wrote"</p>
            })}
        })}
        {answers.examples.into_iter().map(|e| view! { <AnsweredRow example=e pixels=pixels /> }).collect_view()}
        {answers.notes.into_iter().map(|n| view! { <p class="hint" data-testid="ask-note">{n}</p> }).collect_view()}
    }
}

/// Which runs a question goes to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Asking {
    /// the run chosen in the list (or the selected one)
    One(RunId),
    /// every run of the workspace, answers one under another
    Every,
}

/// The `value` of the run list's "every run" option.
const EVERY: &str = "every";

#[component]
pub fn AskModel(lab: Lab) -> impl IntoView {
    let chosen = RwSignal::new(None::<Asking>);
    // a chosen run since removed gives way to the selected one
    let asking = move || match chosen.get() {
        Some(Asking::Every) if lab.labels().len() > 1 => Some(Asking::Every),
        Some(Asking::One(id)) if lab.run(id).is_some() => Some(Asking::One(id)),
        _ => lab.selected.get().map(Asking::One),
    };
    let runs = move || match asking() {
        Some(Asking::Every) => lab.labels().into_iter().map(|(id, _)| id).collect(),
        Some(Asking::One(id)) => vec![id],
        None => Vec::new(),
    };
    let objectives = move || {
        let mut all: Vec<String> = Vec::new();
        for o in runs().into_iter().filter_map(|id| lab.run(id)).flat_map(|r| r.spec.get_value().runs[0].objectives.clone()) {
            if !all.contains(&o.id) {
                all.push(o.id);
            }
        }
        all
    };
    // what these runs' objectives do with a typed line, from the registry
    let asks = move || {
        let said: Vec<String> = objectives().iter().filter_map(|id| find(id).ok()).map(|o| o.info())
            .filter(|i| !i.asks.is_empty()).map(|i| format!("{}: {}", i.name, i.asks)).collect();
        said
    };
    // whether the (first) asked run trains on the digits
    let on_digits = move || runs().first().and_then(|id| lab.run(*id)).is_some_and(|r| r.on_digits());
    let text = RwSignal::new(DEFAULT_TEXT.to_string());
    // the offered line follows the run (its own text's opening, a blank for a masked model)
    // until the user types one of their own
    let suggested = StoredValue::new(DEFAULT_TEXT.to_string());
    Effect::new(move |_| {
        let own = runs().first().and_then(|id| own_opening(lab, *id));
        // (an objective that answers blanks says so in the registry's words: its `asks` names `_`)
        let fills = objectives().iter().filter_map(|id| find(id).ok()).any(|o| o.info().asks.contains(BLANK));
        offer(text, suggested, suggested_line(own, fills, on_digits()));
    });
    // the grey levels of the pixels hidden by a click, to show them again (a line typed
    // since may leave an old level here: it is only ever a plausible pixel)
    let hidden_was = StoredValue::new(HashMap::<usize, char>::new());
    // the keyboard's pixel on the line's image
    let cursor = RwSignal::new(0usize);
    // a run kept from an earlier visit has no weights in the worker to ask
    let kept = move || {
        let asked: Vec<bool> = runs().iter().filter_map(|id| lab.run(*id)).map(|r| r.restored).collect();
        // (no run at all is not a kept one: `all` of nothing would say it is)
        !asked.is_empty() && asked.into_iter().all(|restored| restored)
    };
    // (never disabled while waiting: a question asked again, or of another run, replaces the
    // one before, whose late answer is then dropped; a worker that never answers cannot lock it)
    let ask = move || {
        // (runs kept from a last visit have no weights to ask)
        let live: Vec<RunId> = runs().into_iter().filter(|id| lab.run(*id).is_some_and(|r| !r.restored)).collect();
        lab.ask(&live, text.get_untracked());
    };
    let replies = move || lab.asked.get().into_iter().map(|asked| {
        let heading = format!("run {}: {} — asked {:?}", asked.run, label_in(&lab.labels(), asked.run), asked.text);
        let body = match asked.reply {
            None => view! { <p class="hint" data-testid="ask-waiting">"asking…"</p> }.into_any(),
            Some(Err(message)) => view! { <p class="error" data-testid="ask-error">{message}</p> }.into_any(),
            Some(Ok(answers)) => {
                let pixels = lab.run(asked.run).is_some_and(|r| r.on_digits());
                view! { <Reply text=asked.text.clone() answers=answers pixels=pixels /> }.into_any()
            }
        };
        view! {
            <div class="ask-reply" data-testid="ask-reply" data-run=asked.run.to_string()>
                <p class="caption">{heading}</p>
                {body}
            </div>
        }
    }).collect_view();
    view! {
        <section class="ask-model">
            <h2>"Ask the model"</h2>
            <p class="hint">{format!("Type a line and see what the model makes of it now, in the terms of what it was trained on. {BLANK} stands for a hidden character.")}
                {move || on_digits().then(|| format!(
                    " On the digits, {} starts an image and {} are its grey levels, from background to ink: an image is {} and its {PIXELS} pixels, row by row.",
                    objlab_engine::tokenizer::NEW_LINE_SIGN,
                    objlab_engine::digits::PALETTE.iter().collect::<String>(),
                    objlab_engine::tokenizer::NEW_LINE_SIGN,
                ))}
            </p>
            <ul class="hint" data-testid="ask-hint">
                {move || asks().into_iter().map(|a| view! { <li>{a}</li> }).collect_view()}
            </ul>
            <label>"run "
                <select data-testid="ask-run" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    chosen.set(if v == EVERY { Some(Asking::Every) } else { v.parse().ok().map(Asking::One) });
                }>
                    {move || lab.labels().into_iter().map(|(id, label)| view! {
                        <option value=id.to_string() prop:selected=move || asking() == Some(Asking::One(id))>{format!("{id}: {label}")}</option>
                    }).collect_view()}
                    <Show when=move || { lab.labels().len() > 1 }>
                        <option value=EVERY prop:selected=move || asking() == Some(Asking::Every)>"every run (answers one under another)"</option>
                    </Show>
                </select>
            </label>
            <label>" line "
                <input data-testid="ask-text" type="text" maxlength="256" prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                    on:keydown=move |ev: web_sys::KeyboardEvent| if ev.key() == "Enter" { ask() } />
            </label>
            <button data-testid="ask" on:click=move |_| ask() prop:disabled=move || runs().is_empty() || kept()>"Ask"</button>
            // on the digits, the line's image, each pixel hidden or shown again by a click (or
            // the keyboard: arrows move a cursor, Enter or Space hides or shows its pixel; the
            // element that holds the focus stays while the image in it is drawn anew)
            {move || on_digits().then(|| {
                // the line edited by `change`, with the levels of the pixels it hides kept
                let edit = move |change: &dyn Fn(&str, &mut HashMap<usize, char>) -> String| {
                    let mut was = hidden_was.get_value();
                    text.set(change(&text.get_untracked(), &mut was));
                    hidden_was.set_value(was);
                };
                let pick = Callback::new(move |p: usize| edit(&|line, was| toggle_pixel(line, p, was)));
                let on_key = move |ev: web_sys::KeyboardEvent| {
                    let (key, pixels) = (ev.key(), pixel_places(&text.get_untracked()).len());
                    if key == "Enter" || key == " " {
                        ev.prevent_default();
                        pick.run(cursor.get_untracked());
                    } else if let Some(p) = moved(cursor.get_untracked().min(pixels.saturating_sub(1)), &key, pixels) {
                        ev.prevent_default();
                        cursor.set(p);
                    }
                };
                view! {
                    <div class="image-read">
                        <div class="keyed" tabindex="0" data-testid="ask-keys" on:keydown=on_key
                            aria-label="the line's image: arrow keys move a cursor, Enter or Space hides its pixel or shows it again">
                            {move || view! {
                                <PixelImage cells=line_cells(&text.get()) on_pick=pick cursor=cursor.get() testid="ask-line-image" caption="the line".to_string() />
                            }}
                        </div>
                        <div>
                            <p class="hint">{format!("Click a pixel (or move to it with the arrow keys and press Enter) to hide it ({BLANK}) or show it again: a masked model fills in what is hidden, a generator continues from before the first hidden pixel.")}</p>
                            {QUICK_HIDES.into_iter().enumerate().map(|(i, (name, hide))| view! {
                                <button data-testid=format!("ask-hide-{i}") on:click=move |_| edit(&|line, was| hide_only(line, hide, was))>{name}</button>
                            }).collect_view()}
                        </div>
                    </div>
                }
            })}
            <Show when=kept>
                <span class="hint" data-testid="ask-kept">" a run kept from your last visit has its curves, not its weights: train it again to ask it"</span>
            </Show>
            {replies}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use super::{QUICK_HIDES, answered_images, hide_only, line_cells, summary, suggested_line, toggle_pixel, verdict};
    use crate::views::attention_map::digits_line;
    use objlab_engine::model::Head;
    use objlab_engine::objectives::{Example, ExampleRow, Mark};

    #[test]
    fn a_masked_model_is_offered_a_line_with_a_blank() {
        assert_eq!(suggested_line(None, false, false), "To be, or not to be");
        assert_eq!(suggested_line(None, true, false), "To be, or n_t to be");
        assert_eq!(suggested_line(Some("Hello world".into()), true, false), "Hello w_rld");
        assert_eq!(suggested_line(Some("1 2 3".into()), true, false), "1 2 3", "no letter to hide");
        // on the digits: the top half of a held-out 3 to continue, or four of its pixels
        // hidden, as much as the model reads at once
        let three = digits_line(64);
        assert_eq!(three.chars().count(), 64);
        assert_eq!(digits_line(32).chars().count(), 32);
        assert_eq!(suggested_line(Some(three.clone()), false, true).chars().collect::<Vec<_>>(), three.chars().take(33).collect::<Vec<_>>());
        assert_eq!(suggested_line(Some(digits_line(16)), false, true), digits_line(16));
        let blanked = suggested_line(Some(three.clone()), true, true);
        assert_eq!(blanked.chars().count(), 64);
        let hidden: Vec<char> = three.chars().zip(blanked.chars()).filter(|(_, b)| *b == '_').map(|(a, _)| a).collect();
        assert_eq!(hidden, ['█', '█', '█', '░'], "pixels of the stroke, not the background");
    }

    #[test]
    fn answers_read_as_right_wrong_changed_or_flagged() {
        assert_eq!(verdict(Head::Position, "a", "3", "3"), "right");
        assert_eq!(verdict(Head::Position, "a", "3", "4"), "wrong");
        assert_eq!(verdict(Head::Vocab, "[MASK]", "?", "o"), "plain");
        assert_eq!(verdict(Head::Vocab, "a", "?", "o"), "changed");
        assert_eq!(verdict(Head::Vocab, "o", "?", "o"), "plain");
        assert_eq!(verdict(Head::Vocab, "<S0>", "?", "not"), "plain", "a stretch written behind a sentinel");
        assert_eq!(verdict(Head::Binary, "a", "?", "replaced"), "flagged");
        assert_eq!(verdict(Head::Binary, "a", "?", "original"), "plain");
    }

    #[test]
    fn a_stretch_written_empty_reads_as_nothing_not_as_no_answer() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let example = Example {
            objective: "span_corruption".into(),
            head: Head::Vocab,
            attention: Vec::new(),
            rows: vec![ExampleRow {
                tokens: strings(&["a", "<S0>", "b", "<S1>"]),
                marks: vec![Mark::Plain, Mark::Sentinel, Mark::Plain, Mark::Sentinel],
                targets: strings(&["", "?", "", "?"]),
            }],
            note: String::new(),
            answers: strings(&["", "", "", "xy"]),
            confidence: vec![0.0, 0.6, 0.0, 0.5],
        };
        assert_eq!(summary(&example), "reads it as: \"abxy\" (nothing behind <S0>, 60 % sure, xy 50 % sure)");
        // many answers: the first eight, then how many more
        let n = 11;
        let many = Example {
            objective: "masked_lm".into(),
            head: Head::Vocab,
            attention: Vec::new(),
            rows: vec![ExampleRow { tokens: vec!["[MASK]".to_string(); n], marks: vec![Mark::Masked; n], targets: vec!["?".to_string(); n] }],
            note: String::new(),
            answers: vec!["a".to_string(); n],
            confidence: vec![0.5; n],
        };
        let line = summary(&many);
        assert_eq!(line.matches("% sure").count(), 8, "{line}");
        assert!(line.ends_with("a 50 % sure, and 3 more)"), "{line}");
    }

    #[test]
    fn a_pixel_is_hidden_by_a_click_and_shown_again_as_it_was() {
        let mut was = HashMap::new();
        let line = "⏎·█▒";
        let hidden = toggle_pixel(line, 1, &mut was);
        assert_eq!(hidden, "⏎·_▒", "pixel 2 is the third character: after the new line");
        let cells = line_cells(&hidden);
        assert_eq!(cells.iter().map(|c| (c.ink, c.class)).collect::<Vec<_>>(), [(Some(0.0), ""), (None, "mark-masked"), (Some(0.5), "")]);
        assert_eq!(toggle_pixel(&hidden, 1, &mut was), line, "shown again at its grey level");
        assert_eq!(toggle_pixel("⏎_", 0, &mut was), "⏎·", "a pixel typed hidden comes back as background");
        assert_eq!(toggle_pixel(line, 9, &mut was), line, "a click beyond the line changes nothing");
        assert_eq!(line_cells("·█▒").len(), 3, "without a new line, the pixels from the start");
        // the quick choices: half of a held-out 3 hidden, then every pixel shown as it was
        let three = crate::views::attention_map::digits_line(65);
        let bottom = hide_only(&three, QUICK_HIDES[0].1, &mut was);
        assert_eq!(bottom.chars().skip(1).collect::<String>(), format!("{}{}", &three.chars().skip(1).take(32).collect::<String>(), "_".repeat(32)));
        let right = hide_only(&bottom, QUICK_HIDES[1].1, &mut was);
        assert_eq!(right.chars().nth(1 + 8 * 6 + 1), three.chars().nth(1 + 8 * 6 + 1), "the bottom left shown again");
        assert_eq!(right.chars().filter(|&c| c == '_').count(), 32);
        assert_eq!(hide_only(&right, QUICK_HIDES[2].1, &mut was), three, "every pixel back at its grey level");
        assert_eq!(line_cells("⏎·█⏎▒").len(), 2, "the first image only");
    }

    #[test]
    fn a_question_on_the_digits_is_read_back_as_images_with_the_filled_pixels_outlined() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let example = |objective: &str, head: Head, tokens: &[&str], marks: Vec<Mark>, answers: &[&str]| Example {
            objective: objective.into(),
            head,
            attention: Vec::new(),
            rows: vec![ExampleRow { tokens: strings(tokens), marks, targets: strings(&vec!["?"; tokens.len()]) }],
            note: String::new(),
            answers: strings(answers),
            confidence: vec![0.5; tokens.len()],
        };
        let masked = example("masked_lm", Head::Vocab, &["\n", "·", "[MASK]", "▒"], vec![Mark::Plain, Mark::Plain, Mark::Masked, Mark::Plain], &["", "", "█", ""]);
        let images = answered_images(&masked).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].iter().map(|c| (c.ink, c.class)).collect::<Vec<_>>(), [(Some(0.0), ""), (Some(1.0), "filled"), (Some(0.5), "")]);
        // a span's sentinel is as many pixels as the model writes behind it; UL2's mode token is no pixel
        let span = example("ul2_mixture", Head::Vocab, &["[R]", "\n", "<S0>", "▒"], vec![Mark::Control, Mark::Plain, Mark::Sentinel, Mark::Plain], &["", "", "░░", ""]);
        assert_eq!(answered_images(&span).unwrap()[0].iter().map(|c| c.class).collect::<Vec<_>>(), ["filled", "filled", ""]);
        // a swapped-LM model's answer that differs from the pixel asked
        let swapped = example("swapped_lm", Head::Vocab, &["\n", "·", "█"], vec![Mark::Plain; 3], &["", "·", "▓"]);
        assert_eq!(answered_images(&swapped).unwrap()[0].iter().map(|c| (c.ink, c.class)).collect::<Vec<_>>(), [(Some(0.0), ""), (Some(0.75), "changed")]);
        let detector = example("random_token_detection", Head::Binary, &["\n", "·"], vec![Mark::Plain; 2], &["original", "replaced"]);
        assert!(answered_images(&detector).is_none(), "a detector answers in flags, not pixels");
    }
}
