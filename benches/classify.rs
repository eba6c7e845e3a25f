//! Classification throughput against the cost of segmentation alone, on every message of the labelled corpus
//! (at least a few thousand realistic messages: pairs of them are added below that).
//!
//! The target: `classify` takes at most 3× the plain jieba baseline (default dictionary, no HMM) measured in
//! the same run, on the same machine. Segmentation is the one step every Chinese classifier pays for, so
//! the ratio says what normalization, rule matching and entity extraction add on top of it, independently
//! of how fast the machine is. The HMM baseline is shown for scale: it is what jieba costs with its default
//! settings; so is jieba with our dictionaries, the segmentation the classifier itself runs.
//!
//! Run: `cargo bench --bench classify`.

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use jieba_rs::Jieba;
use suqiu::classify::Classifier;
use suqiu::eval::read_labelled;

const MESSAGES: usize = 3_000;

/// Every corpus text, then pairs of them joined by a space (a driver sending two matters at once) until
/// there are [`MESSAGES`].
fn messages() -> Vec<String> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let labelled = read_labelled(&corpus).unwrap_or_else(|e| panic!("tests/corpus: {e}"));
    let mut texts: Vec<String> = labelled.into_iter().map(|l| l.text).collect();
    let originals = texts.len();
    assert!(originals > 1, "the corpus is empty");
    // A stride coprime with most corpus sizes pairs messages from different files and categories.
    let mut i = 0;
    while texts.len() < MESSAGES {
        let (a, b) = (i % originals, (i * 7 + 3) % originals);
        texts.push(format!("{} {}", texts[a], texts[b]));
        i += 1;
    }
    texts
}

fn classify_against_segmentation(c: &mut Criterion) {
    let messages = messages();
    let jieba = Jieba::new();
    let classifier = Classifier::builtin().expect("the built-in rules load");
    let lexicon = classifier.lexicon();
    let segment_all = |jieba: &Jieba, hmm: bool| {
        messages
            .iter()
            .map(|m| jieba.cut(black_box(m), hmm).len())
            .sum::<usize>()
    };
    let classify_all = || {
        messages
            .iter()
            .map(|m| classifier.classify(black_box(m)).evidence.len())
            .sum::<usize>()
    };

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(messages.len() as u64));
    // One iteration is thousands of messages: run each sample once rather than a growing number of times.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("jieba_cut_baseline", |b| b.iter(|| segment_all(&jieba, false)));
    group.bench_function("jieba_cut_hmm_baseline", |b| b.iter(|| segment_all(&jieba, true)));
    group.bench_function("jieba_cut_our_dictionaries", |b| {
        b.iter(|| segment_all(&lexicon.jieba, false))
    });
    group.bench_function("classifier_classify", |b| b.iter(classify_all));

    // The ratio itself, measured so that a noisy machine disturbs it least: plain jieba and the classifier take
    // turns over the same messages, round after round, and each keeps its fastest round. A neighbour's load slows
    // a round down and never speeds one up, so the fastest rounds of turns taken side by side are the fairest
    // pair; the figures above measure each alone, seconds apart. Criterion times a round of both.
    let fastest = Cell::new((0, Duration::MAX, Duration::MAX));
    group.bench_function("interleaved", |b| {
        b.iter_custom(|rounds| {
            let timed = |work: &dyn Fn() -> usize| {
                let start = Instant::now();
                black_box(work());
                start.elapsed()
            };
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let segmenting = timed(&|| segment_all(&jieba, false));
                let classifying = timed(&classify_all);
                let (n, s, c) = fastest.get();
                fastest.set((n + 1, s.min(segmenting), c.min(classifying)));
                total += segmenting + classifying;
            }
            total
        })
    });
    group.finish();
    let (rounds, segmenting, classifying) = fastest.get();
    if rounds > 0 {
        println!(
            "classify/interleaved: {} messages, fastest of {rounds} rounds each: plain jieba {:.1} ms, classifier {:.1} ms: {:.2}× plain jieba",
            messages.len(),
            segmenting.as_secs_f64() * 1e3,
            classifying.as_secs_f64() * 1e3,
            classifying.as_secs_f64() / segmenting.as_secs_f64(),
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = classify_against_segmentation
}
criterion_main!(benches);
