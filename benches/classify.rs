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

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
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

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(messages.len() as u64));
    // One iteration is thousands of messages: run each sample once rather than a growing number of times.
    group.sampling_mode(SamplingMode::Flat);
    for (name, hmm) in [("jieba_cut_baseline", false), ("jieba_cut_hmm_baseline", true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                messages
                    .iter()
                    .map(|m| jieba.cut(black_box(m), hmm).len())
                    .sum::<usize>()
            })
        });
    }
    let lexicon = classifier.lexicon();
    group.bench_function("jieba_cut_our_dictionaries", |b| {
        b.iter(|| {
            messages
                .iter()
                .map(|m| lexicon.jieba.cut(black_box(m), false).len())
                .sum::<usize>()
        })
    });
    group.bench_function("classifier_classify", |b| {
        b.iter(|| {
            messages
                .iter()
                .map(|m| classifier.classify(black_box(m)).evidence.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// The ratio itself, measured so that a noisy machine disturbs it least: the classifier and plain jieba take
/// turns over the same messages, round after round, and each keeps its fastest round. A neighbour's load slows a
/// round down and never speeds one up, so the fastest rounds of two turns taken side by side are the fairest
/// pair; criterion's figures above measure each alone, seconds apart.
fn interleaved_ratio() {
    const ROUNDS: usize = 15;
    let messages = messages();
    let jieba = Jieba::new();
    let classifier = Classifier::builtin().expect("the built-in rules load");
    let (mut segmenting, mut classifying) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        black_box(
            messages
                .iter()
                .map(|m| jieba.cut(black_box(m), false).len())
                .sum::<usize>(),
        );
        segmenting = segmenting.min(start.elapsed());
        let start = Instant::now();
        black_box(
            messages
                .iter()
                .map(|m| classifier.classify(black_box(m)).evidence.len())
                .sum::<usize>(),
        );
        classifying = classifying.min(start.elapsed());
    }
    println!(
        "classify/interleaved: {} messages, fastest of {ROUNDS} rounds each: plain jieba {:.1} ms, classifier {:.1} ms: {:.2}× plain jieba",
        messages.len(),
        segmenting.as_secs_f64() * 1e3,
        classifying.as_secs_f64() * 1e3,
        classifying.as_secs_f64() / segmenting.as_secs_f64(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = classify_against_segmentation
}

/// Criterion's options that take a value: the argument after one is not a filter.
const VALUED: &[&str] = &[
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--color",
    "--format",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
    "--profile-time",
];

fn main() {
    benches();
    // The ratio is the benchmark's point: it runs with no filter, or with a filter that is part of its name
    // (`cargo bench --bench classify -- interleaved`); not when criterion only lists, tests or profiles.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = ["--list", "--test", "--profile-time"];
    let filter = args
        .iter()
        .enumerate()
        .find(|&(i, a)| !a.starts_with('-') && (i == 0 || !VALUED.contains(&args[i - 1].as_str())))
        .map(|(_, a)| a.as_str());
    if !args.iter().any(|a| only.contains(&a.as_str())) && filter.is_none_or(|f| "classify/interleaved".contains(f)) {
        interleaved_ratio();
    }
    Criterion::default().configure_from_args().final_summary();
}
