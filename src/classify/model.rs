//! The learned half of the classifier: complement naive Bayes over the characters of labelled messages.
//!
//! Rules know the words somebody thought of; the model knows the messages drivers wrote. It is trained each
//! time the classifier loads, from the labelled corpus (`tests/corpus/*.jsonl`, or `corpus/` in a rules
//! directory), so a message added there with its right label teaches the next start without a separate
//! training step.
//!
//! Features are the character 1-, 2- and 3-grams of the normalized text, counted once a message: they need
//! no segmentation, so words jieba splits, typos that keep a character or two, and phrasings nobody wrote a
//! rule for still carry weight. Complement naive Bayes (Rennie et al., 2003) suits short texts and few
//! examples a class, and trains by counting: a few thousand messages take milliseconds. The model is small
//! enough to write here; the learners of the Rust ecosystem take dense matrices, which for tens of thousands
//! of n-grams would cost gigabytes.

mod runs;

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use super::taxonomy::{Category, Label};
use runs::{han, Han, Run, Runs};

thread_local! {
    /// One bit a row, set while a message's runs are counted and cleared after: which runs it has had.
    static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The labels the model scores: the categories in taxonomy order, then `none`.
pub const LABELS: usize = Category::ALL.len() + 1;

/// Smoothing added to every complement count.
const ALPHA: f32 = 1.0;

/// The longest n-gram, in characters.
const MAX_GRAM: usize = 3;

/// Where a label's score sits in the model's arrays.
pub fn slot(label: Label) -> usize {
    match label {
        Label::Appeal(category) => category as usize,
        Label::None => Category::ALL.len(),
    }
}

pub struct Model {
    /// The runs seen in training, each with its row in `weights`.
    runs: Runs,
    /// One row a known run: how much more its presence speaks for each label than for the average one, in
    /// fixed point (see `scale`). A byte a weight keeps a row in a quarter of a cache line and all of them
    /// in 1.6 MB for a hundred thousand runs: judging a message is a lookup of a row for each of its runs, and the
    /// fewer of them miss the cache the better. Cross-validation measured no loss against 16 bits.
    weights: Vec<Row>,
    /// A weight is `row[label] as f32 / scale`.
    scale: f32,
    /// How many messages it learned from.
    messages: usize,
}

/// The weights of one run, a label a slot (see [`slot`]); the slots past [`LABELS`] stay zero.
#[derive(Clone, Copy)]
#[repr(align(16))]
struct Row([i8; 16]);

const _: () = assert!(LABELS <= 16, "a row holds a weight per label");

/// What the model makes of one message.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Per label (see [`slot`]), standardized across labels: mean 0, standard deviation 1.
    pub scores: [f32; LABELS],
    /// The known runs of the message, for [`Model::reasons`].
    grams: Vec<Gram>,
}

/// A known run of a message: its row, and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Gram {
    row: u32,
    start: u32,
    end: u32,
}

impl Judgement {
    /// How many of the message's n-grams the model knew: what the judgement rests on.
    pub fn known(&self) -> usize {
        self.grams.len()
    }
}

impl Model {
    /// Trains on normalized texts with their labels; `None` when there is nothing to learn from.
    pub fn train<S: AsRef<str>>(examples: impl IntoIterator<Item = (S, Label)>) -> Option<Model> {
        let mut index: FxHashMap<Run, u32> = FxHashMap::default();
        let mut counts: Vec<[u32; LABELS]> = Vec::new();
        // The last message that counted each row: a run counts once a message however often it comes.
        let mut counted_in: Vec<usize> = Vec::new();
        let mut messages = 0;
        for (text, label) in examples {
            let l = slot(label);
            messages += 1;
            for_each_ngram(text.as_ref(), |run, _, _| {
                let next = counts.len() as u32;
                let row = *index.entry(run).or_insert(next) as usize;
                if row == counts.len() {
                    counts.push([0; LABELS]);
                    counted_in.push(0);
                }
                if counted_in[row] != messages {
                    counted_in[row] = messages;
                    counts[row][l] += 1;
                }
            });
        }
        if counts.is_empty() {
            return None;
        }

        // The complement of a label: every message of the other labels. An n-gram speaks for a label when
        // it is rare in its complement.
        let complements = |row: &[u32; LABELS]| {
            let sum = row.iter().sum::<u32>();
            row.map(|count| sum - count)
        };
        let smoothed = |complement: u32| f64::from(complement as f32 + ALPHA);
        let mut totals = [0.0f64; LABELS];
        for row in &counts {
            for (total, complement) in totals.iter_mut().zip(complements(row)) {
                *total += smoothed(complement);
            }
        }
        // Each row is centred on its mean: a judgement is standardized across labels, which a shift common to
        // all of them does not change, and a weight then says at once how much the n-gram favours its label
        // over the average one.
        // Complement counts are whole numbers up to the number of messages: their logarithms are looked up,
        // not computed for each of a hundred thousand rows and every label twice.
        let ln_totals = totals.map(f64::ln);
        let ln_smoothed: Vec<f64> = (0..=messages as u32).map(|n| smoothed(n).ln()).collect();
        let centred = |row: &[u32; LABELS]| -> [f64; LABELS] {
            let complements = complements(row);
            let w: [f64; LABELS] = std::array::from_fn(|l| ln_totals[l] - ln_smoothed[complements[l] as usize]);
            let mean = w.iter().sum::<f64>() / LABELS as f64;
            w.map(|w| w - mean)
        };
        let largest = counts.iter().flat_map(centred).fold(0.0f64, |m, w| m.max(w.abs()));
        let scale = if largest > 0.0 {
            f64::from(i8::MAX) / largest
        } else {
            1.0
        };

        let (known, rows): (Vec<Run>, Vec<u32>) = index.into_iter().unzip();
        let (runs, order) = Runs::build(&known);
        let weights = order
            .iter()
            .map(|&i| {
                let mut row = Row([0; 16]);
                for (fixed, w) in row.0.iter_mut().zip(centred(&counts[rows[i] as usize])) {
                    *fixed = (w * scale).round() as i8;
                }
                row
            })
            .collect();
        Some(Model {
            runs,
            weights,
            scale: scale as f32,
            messages,
        })
    }

    /// The number of labelled messages it learned from.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// The number of distinct n-grams learned.
    pub fn features(&self) -> usize {
        self.weights.len()
    }

    pub fn judge(&self, text: &str) -> Judgement {
        let mut grams: Vec<Gram> = Vec::with_capacity(text.len() / 2);
        let mut push = |row: u32, start: usize, end: usize| {
            grams.push(Gram {
                row,
                start: start as u32,
                end: end as u32,
            })
        };
        // The character before the current one and the known pair that ends with it, with where they start.
        let mut before: Option<(Han, usize)> = None;
        let mut pair_before: Option<(runs::Pair, usize)> = None;
        for (start, character) in text.char_indices() {
            let Some(c) = han(character) else {
                (before, pair_before) = (None, None);
                continue;
            };
            let end = start + character.len_utf8();
            // A run the model never saw cannot end a longer run it saw.
            let pair = match self.runs.character(c) {
                Some(row) => {
                    push(row, start, end);
                    before.and_then(|(b, from)| Some((self.runs.pair(b, c)?, from)))
                }
                None => None,
            };
            if let Some((pair, from)) = pair {
                push(self.runs.pair_row(pair), from, end);
                if let Some((row, from)) = pair_before.and_then(|(p, from)| Some((self.runs.triple(p, c)?, from))) {
                    push(row, from, end);
                }
            }
            (before, pair_before) = (Some((c, start)), pair);
        }
        // A run counts once however often it comes, as in training.
        let mut fixed = [0i32; 16];
        SEEN.with_borrow_mut(|seen| {
            seen.resize(seen.len().max(self.weights.len().div_ceil(64)), 0);
            grams.retain(|g| {
                let (word, bit) = (g.row as usize / 64, 1u64 << (g.row % 64));
                let first = seen[word] & bit == 0;
                seen[word] |= bit;
                first
            });
            for g in &grams {
                seen[g.row as usize / 64] = 0;
            }
        });
        // Sixteen-bit sums of up to 256 weights of a byte cannot overflow, and add up a row in one instruction.
        for chunk in grams.chunks(256) {
            let mut part = [0i16; 16];
            for g in chunk {
                for (sum, &w) in part.iter_mut().zip(&self.weights[g.row as usize].0) {
                    *sum += i16::from(w);
                }
            }
            for (sum, part) in fixed.iter_mut().zip(part) {
                *sum += i32::from(part);
            }
        }
        let sums: [f32; LABELS] = std::array::from_fn(|l| fixed[l] as f32 / self.scale);
        let mean = sums.iter().sum::<f32>() / LABELS as f32;
        let variance = sums.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / LABELS as f32;
        let sd = variance.sqrt();
        let scores = if sd > f32::EPSILON {
            sums.map(|s| (s - mean) / sd)
        } else {
            [0.0; LABELS]
        };
        Judgement { scores, grams }
    }

    /// The n-grams of the message (two characters or more) that speak most for `label` against the average
    /// label, strongest first, at most `n`.
    pub fn reasons<'t>(&self, judgement: &Judgement, text: &'t str, label: Label, n: usize) -> Vec<&'t str> {
        let l = slot(label);
        // Chinese characters take three bytes each: a run of more than three bytes has two or more.
        let mut candidates: Vec<(i8, u32, u32)> = Vec::with_capacity(judgement.grams.len());
        candidates.extend(
            judgement
                .grams
                .iter()
                .map(|g| (self.weights[g.row as usize].0[l], g.start, g.end))
                .filter(|&(lift, start, end)| lift > 0 && end - start > 3),
        );
        // Overlapping runs say the same thing twice: each pick is the strongest run (the earlier, then the
        // shorter, of equals) that overlaps none picked before. A few picks: no need to sort them all.
        let order = |a: &&(i8, u32, u32), b: &&(i8, u32, u32)| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2));
        let mut chosen: Vec<(u32, u32)> = Vec::with_capacity(n);
        while chosen.len() < n {
            let apart = |&&(_, start, end): &&(i8, u32, u32)| chosen.iter().all(|&(s, e)| end <= s || e <= start);
            let Some(&(_, start, end)) = candidates.iter().filter(apart).max_by(order) else {
                break;
            };
            chosen.push((start, end));
        }
        chosen.into_iter().map(|(s, e)| &text[s as usize..e as usize]).collect()
    }
}

/// Hands `each` every run of one to [`MAX_GRAM`] Chinese characters in `text`, with its byte range. The
/// model learns from these alone: Latin letters and digits in driver messages are mostly plates, phone
/// numbers, amounts and English words, which say little about the matter and much about the writer (rules
/// and entities handle them).
fn for_each_ngram(text: &str, mut each: impl FnMut(Run, usize, usize)) {
    // The Chinese characters up to the current one and where each starts, oldest first.
    let mut chars: [Han; MAX_GRAM] = [0; MAX_GRAM];
    let mut starts = [0usize; MAX_GRAM];
    let mut len = 0;
    for (start, c) in text.char_indices() {
        let Some(h) = han(c) else {
            len = 0;
            continue;
        };
        if len == MAX_GRAM {
            chars.copy_within(1.., 0);
            starts.copy_within(1.., 0);
            len -= 1;
        }
        (chars[len], starts[len]) = (h, start);
        len += 1;
        let end = start + c.len_utf8();
        for from in (0..len).rev() {
            each(Run::new(&chars[from..len]), starts[from], end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Model {
        let examples = [
            ("车翻了人受伤", Label::Appeal(Category::Accident)),
            ("追尾了腿受伤了", Label::Appeal(Category::Accident)),
            ("侧翻 司机受伤", Label::Appeal(Category::Accident)),
            ("运费拖了三个月", Label::Appeal(Category::FreightArrears)),
            ("老板不给运费", Label::Appeal(Category::FreightArrears)),
            ("有货去太原", Label::None),
            ("早上好兄弟们", Label::None),
            ("有车吗 去大同", Label::None),
        ];
        Model::train(examples).expect("examples")
    }

    fn label_at(slot: usize) -> Label {
        Category::ALL.get(slot).map_or(Label::None, |&c| Label::Appeal(c))
    }

    fn best(model: &Model, text: &str) -> Label {
        let j = model.judge(text);
        let at = (0..LABELS)
            .max_by(|&a, &b| j.scores[a].total_cmp(&j.scores[b]))
            .unwrap();
        label_at(at)
    }

    #[test]
    fn it_learns_from_phrasings_it_has_not_seen_whole() {
        let model = toy();
        assert_eq!(best(&model, "兄弟翻车了 受伤很重"), Label::Appeal(Category::Accident));
        assert_eq!(
            best(&model, "三个月运费还没结"),
            Label::Appeal(Category::FreightArrears)
        );
        assert_eq!(best(&model, "有货吗 去太原"), Label::None);
    }

    #[test]
    fn its_reasons_are_the_words_that_decided() {
        let model = toy();
        let text = "兄弟翻车了 受伤很重";
        let j = model.judge(text);
        let reasons = model.reasons(&j, text, Label::Appeal(Category::Accident), 3);
        assert!(reasons.contains(&"受伤"), "{reasons:?}");
        assert!(reasons.iter().all(|r| r.chars().count() >= 2));
    }

    #[test]
    fn a_message_is_judged_on_exactly_the_runs_seen_in_training() {
        let trained = ["车翻了人受伤", "追尾了腿受伤了", "有货去太原"];
        let model = Model::train(trained.map(|t| (t, Label::None))).expect("examples");
        let mut seen = std::collections::HashSet::new();
        for text in trained {
            for_each_ngram(text, |_, s, e| {
                seen.insert(&text[s..e]);
            });
        }
        // Known runs of one, two and three characters, unknown ones between them, and a break.
        let text = "腿受伤了去太原 车翻人受伤了吧";
        let mut expected: Vec<&str> = Vec::new();
        for_each_ngram(text, |_, s, e| {
            if seen.contains(&text[s..e]) && !expected.contains(&&text[s..e]) {
                expected.push(&text[s..e]);
            }
        });
        let mut judged: Vec<&str> = model
            .judge(text)
            .grams
            .iter()
            .map(|g| &text[g.start as usize..g.end as usize])
            .collect();
        expected.sort_unstable();
        judged.sort_unstable();
        assert_eq!(judged, expected);
        assert!(judged.contains(&"受伤了") && judged.contains(&"去太原") && !judged.contains(&"翻人"));
    }

    #[test]
    fn a_run_counts_once_a_message_in_training_and_in_judging() {
        let repeated = Model::train([
            ("受伤 受伤 受伤了", Label::Appeal(Category::Accident)),
            ("有货 有货", Label::None),
        ])
        .expect("examples");
        let once = Model::train([
            ("受伤 受伤了", Label::Appeal(Category::Accident)),
            ("有货", Label::None),
        ])
        .expect("examples");
        for text in ["受伤了", "受伤 受伤 有货", "有货吗"] {
            assert_eq!(repeated.judge(text).scores, once.judge(text).scores, "{text}");
        }
    }

    #[test]
    fn judging_one_message_leaves_nothing_behind_for_the_next() {
        let model = toy();
        let first = model.judge("兄弟翻车了 受伤很重");
        model.judge("运费拖了三个月 有货去太原 车翻了");
        let again = model.judge("兄弟翻车了 受伤很重");
        assert_eq!(first.scores, again.scores);
        assert_eq!(first.known(), again.known());
    }

    #[test]
    fn text_it_never_saw_scores_nothing() {
        let model = toy();
        let j = model.judge("🙂 xyz");
        assert_eq!(j.scores, [0.0; LABELS]);
        assert_eq!(model.judge("").scores, [0.0; LABELS]);
    }

    #[test]
    fn no_examples_is_no_model() {
        assert!(Model::train(Vec::<(&str, Label)>::new()).is_none());
    }

    #[test]
    fn ngrams_are_runs_of_chinese_characters_counted_in_characters_not_bytes() {
        let text = "货 车a欠款3800";
        let mut grams: Vec<&str> = Vec::new();
        for_each_ngram(text, |_, s, e| grams.push(&text[s..e]));
        grams.sort_unstable();
        assert_eq!(grams, ["欠", "欠款", "款", "货", "车"]);
        let mut keys = std::collections::HashSet::new();
        for_each_ngram("运满满", |run, _, _| {
            keys.insert(run);
        });
        assert_eq!(keys.len(), 5, "运, 满, 运满, 满满, 运满满: the repeated 满 is one");
    }
}
