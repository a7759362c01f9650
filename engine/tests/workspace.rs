//! A workspace of runs: a run's numbers do not depend on what trains beside it, and the
//! representation views read what they need.

use std::sync::Arc;

use objlab_engine::burn::tensor::Device;
use objlab_engine::data::Corpus;
use objlab_engine::probe_set::ProbeSet;
use objlab_engine::scheduler::Scheduler;
use objlab_engine::spec::ExperimentSpec;
use objlab_engine::train::Trainer;

fn corpus() -> Arc<Corpus> {
    let text = std::fs::read_to_string(objlab_engine::repo_root().join("assets/tinyshakespeare.txt")).unwrap();
    Arc::new(Corpus::from_text("tiny-shakespeare", &text[..200_000]).unwrap())
}

fn spec(objective: &str, seed: u64) -> ExperimentSpec {
    let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
    spec.set("objective", objective).unwrap();
    spec.seed = seed;
    spec.model.block_size = 16;
    spec
}

#[test]
fn a_run_is_the_same_alone_and_beside_others() {
    let corpus = corpus();
    let probe = ProbeSet::markov(&corpus.tokenizer, 16, 8).unwrap();
    let steps = 6;
    let mut alone = Trainer::new(&spec("masked_lm", 5), 0, corpus.clone(), Device::flex()).unwrap();
    for _ in 0..steps {
        alone.step();
    }
    let alone_losses = pollster::block_on(alone.read_losses()).unwrap();
    let alone_features = pollster::block_on(alone.features(&probe)).unwrap();

    // the same run, added second, beside two others, stepped by the scheduler
    let mut runs = vec![
        (1, Trainer::new(&spec("causal_lm", 1), 0, corpus.clone(), Device::flex()).unwrap()),
        (2, Trainer::new(&spec("masked_lm", 5), 0, corpus.clone(), Device::flex()).unwrap()),
        (3, Trainer::new(&spec("span_corruption", 9), 0, corpus.clone(), Device::flex()).unwrap()),
    ];
    let mut scheduler = Scheduler::default();
    for (id, _) in &runs {
        scheduler.add(*id);
    }
    for _ in 0..3 * steps {
        let id = scheduler.next().unwrap();
        runs.iter_mut().find(|(r, _)| *r == id).unwrap().1.step();
        scheduler.stepped(id);
    }
    assert!(runs.iter().all(|(_, t)| t.step_count() == steps), "the curves advance together");
    let beside = &mut runs[1].1;
    assert_eq!(pollster::block_on(beside.read_losses()).unwrap(), alone_losses, "same seed → same numbers");
    let beside_features = pollster::block_on(beside.features(&probe)).unwrap();
    assert_eq!(beside_features.pooled, alone_features.pooled);
    assert_eq!(beside_features.embeddings, alone_features.embeddings);
}

#[test]
fn features_and_attention_maps_have_their_shapes() {
    let corpus = corpus();
    let probe = ProbeSet::markov(&corpus.tokenizer, 16, 4).unwrap();
    let t = Trainer::new(&spec("causal_lm", 1), 0, corpus.clone(), Device::flex()).unwrap();
    let f = pollster::block_on(t.features(&probe)).unwrap();
    let (n_chars, d) = (corpus.tokenizer.n_chars(), f.d_model);
    assert_eq!(f.tokens.len(), n_chars);
    assert_eq!(f.embeddings.len(), n_chars * d);
    assert_eq!(f.pooled.len(), probe.rows.len() * d);
    assert!(f.pooled.iter().all(|v| v.is_finite()));

    let maps = pollster::block_on(t.attention_maps("to be or not")).unwrap();
    let s = maps.tokens.len();
    assert_eq!((maps.layers, maps.heads, s), (2, 2, 12));
    assert_eq!(maps.weights.len(), 2 * 2 * s * s);
    for (row, chunk) in maps.weights.chunks(s).enumerate() {
        let q = row % s;
        assert!((chunk.iter().sum::<f32>() - 1.0).abs() < 1e-4, "each query's weights sum to 1");
        assert!(chunk[q + 1..].iter().all(|&w| w == 0.0), "a causal model's query {q} sees no later key");
    }
    // a masked-LM run is read bidirectionally: later keys get weight too
    let mlm = Trainer::new(&spec("masked_lm", 1), 0, corpus, Device::flex()).unwrap();
    let maps = pollster::block_on(mlm.attention_maps("to be or not")).unwrap();
    assert!(maps.weights[1..s].iter().all(|&w| w > 0.0));
    assert!(pollster::block_on(mlm.attention_maps("")).is_err());
    assert!(pollster::block_on(mlm.attention_maps("\u{1F600}")).is_err(), "characters outside the corpus are refused");
}

#[test]
fn a_diverging_run_stops_alone_and_the_others_go_on() {
    use objlab_engine::scheduler::Slot;
    use objlab_engine::train::divergence;
    let corpus = corpus();
    let mut bad = spec("causal_lm", 2);
    bad.set("nan_at", "3").unwrap();
    let mut runs = [
        (1, Trainer::new(&spec("causal_lm", 1), 0, corpus.clone(), Device::flex()).unwrap()),
        (2, Trainer::new(&bad, 0, corpus.clone(), Device::flex()).unwrap()),
    ];
    let mut scheduler = Scheduler::default();
    scheduler.add(1);
    scheduler.add(2);
    let mut message = None;
    for _ in 0..16 {
        let Some(id) = scheduler.next() else { break };
        let trainer = &mut runs.iter_mut().find(|(r, _)| *r == id).unwrap().1;
        trainer.step();
        scheduler.stepped(id);
        if let Some(why) = divergence(&pollster::block_on(trainer.read_losses()).unwrap()) {
            scheduler.set(id, Slot::Diverged);
            message = Some((id, why));
        }
    }
    let (id, why) = message.expect("run 2 diverges");
    assert_eq!(id, 2);
    assert!(why.contains("step 3") && why.contains("NaN"), "{why}");
    assert_eq!(runs[1].1.step_count(), 3, "the diverged run stopped");
    assert_eq!(runs[0].1.step_count(), 13, "the other run took every remaining turn");
    assert_eq!(scheduler.slot(1), Some(Slot::Active));
}
