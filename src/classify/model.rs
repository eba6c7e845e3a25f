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

use rustc_hash::FxHashMap;

use super::taxonomy::{Category, Label};

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
    /// The n-grams seen in training, by key (see [`for_each_ngram`]), to their row in `weights`.
    index: FxHashMap<u64, u32>,
    /// One row of [`LABELS`] weights a known n-gram: how much more its presence speaks for each label than for
    /// the average one.
    weights: Vec<[f32; LABELS]>,
    /// How many messages it learned from.
    messages: usize,
}

/// What the model makes of one message.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Per label (see [`slot`]), standardized across labels: mean 0, standard deviation 1.
    pub scores: [f32; LABELS],
    /// The known n-grams of the message, for [`Model::reasons`].
    grams: Vec<(u32, usize, usize)>,
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
        let mut index: FxHashMap<u64, u32> = FxHashMap::default();
        let mut counts: Vec<[u32; LABELS]> = Vec::new();
        let mut messages = 0;
        let mut grams = Vec::new();
        for (text, label) in examples {
            let l = slot(label);
            messages += 1;
            grams.clear();
            for_each_ngram(text.as_ref(), |key, _, _| {
                grams.push(key);
                true
            });
            grams.sort_unstable();
            grams.dedup();
            for &key in &grams {
                let next = counts.len() as u32;
                let row = *index.entry(key).or_insert(next);
                if row == next {
                    counts.push([0; LABELS]);
                }
                counts[row as usize][l] += 1;
            }
        }
        if counts.is_empty() {
            return None;
        }

        // The complement of a label: every message of the other labels. An n-gram speaks for a label when
        // it is rare in its complement.
        let complement = |row: &[u32; LABELS], l: usize| (row.iter().sum::<u32>() - row[l]) as f32 + ALPHA;
        let mut totals = [0.0f64; LABELS];
        for row in &counts {
            for (l, total) in totals.iter_mut().enumerate() {
                *total += f64::from(complement(row, l));
            }
        }
        // Each row is centred on its mean: a judgement is standardized across labels, which a shift common to
        // all of them does not change, and a weight then says at once how much the n-gram favours its label
        // over the average one.
        let weights = counts
            .iter()
            .map(|row| {
                let w: [f64; LABELS] = std::array::from_fn(|l| totals[l].ln() - f64::from(complement(row, l)).ln());
                let mean = w.iter().sum::<f64>() / LABELS as f64;
                w.map(|w| (w - mean) as f32)
            })
            .collect();
        Some(Model {
            index,
            weights,
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
        let mut grams: Vec<(u32, usize, usize)> = Vec::with_capacity(text.len());
        for_each_ngram(text, |key, start, end| {
            let row = self.index.get(&key);
            if let Some(&row) = row {
                grams.push((row, start, end));
            }
            row.is_some()
        });
        grams.sort_unstable_by_key(|&(row, _, _)| row);
        grams.dedup_by_key(|&mut (row, _, _)| row);
        let mut sums = [0.0f32; LABELS];
        for &(row, _, _) in &grams {
            for (sum, w) in sums.iter_mut().zip(&self.weights[row as usize]) {
                *sum += w;
            }
        }
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
        let mut lift: Vec<(f32, usize, usize)> = judgement
            .grams
            .iter()
            .map(|&(row, start, end)| (self.weights[row as usize][l], start, end))
            .filter(|&(lift, start, end)| lift > 0.0 && text[start..end].chars().nth(1).is_some())
            .collect();
        // The strongest first (the earlier, then the shorter, of equals): a few picks, no need to sort them all.
        let order = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
            a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
        };
        let mut chosen: Vec<(usize, usize)> = Vec::with_capacity(n);
        while chosen.len() < n {
            let Some(at) = (0..lift.len()).max_by(|&a, &b| order(&lift[a], &lift[b])) else {
                break;
            };
            let (_, start, end) = lift.swap_remove(at);
            // Overlapping n-grams say the same thing twice: keep the stronger.
            if chosen.iter().all(|&(s, e)| end <= s || e <= start) {
                chosen.push((start, end));
            }
        }
        chosen.into_iter().map(|(s, e)| &text[s..e]).collect()
    }
}

/// Whether `c` is a common Chinese character. The model learns from these alone: Latin letters and digits
/// in driver messages are mostly plates, phone numbers, amounts and English words, which say little about the
/// matter and much about the writer (rules and entities handle them).
fn is_han(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// Hands `each` every run of one to [`MAX_GRAM`] Chinese characters in `text`, as (key, byte start, byte end).
/// The key packs the characters' code points, 21 bits each: it names the run exactly, with no string to hash.
/// Runs that end at the same character come shortest first, and `each` says whether to go on to the longer
/// ones: a run the model never saw cannot end a longer run it saw.
fn for_each_ngram(text: &str, mut each: impl FnMut(u64, usize, usize) -> bool) {
    // The run of Chinese characters that ends at the current one, as (code point, byte start), newest first.
    let mut run = [(0u64, 0usize); MAX_GRAM];
    let mut len = 0;
    for (start, c) in text.char_indices() {
        if !is_han(c) {
            len = 0;
            continue;
        }
        run.copy_within(..MAX_GRAM - 1, 1);
        run[0] = (u64::from(c), start);
        len = (len + 1).min(MAX_GRAM);
        let end = start + c.len_utf8();
        let mut key = 0;
        for (n, &(code, from)) in run[..len].iter().enumerate() {
            key |= code << (21 * n);
            if !each(key, from, end) {
                break;
            }
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
        for_each_ngram(text, |_, s, e| {
            grams.push(&text[s..e]);
            true
        });
        grams.sort_unstable();
        assert_eq!(grams, ["欠", "欠款", "款", "货", "车"]);
        let mut keys = std::collections::HashSet::new();
        for_each_ngram("运满满", |key, _, _| {
            keys.insert(key);
            true
        });
        assert_eq!(keys.len(), 5, "运, 满, 运满, 满满, 运满满: the repeated 满 is one");
    }
}
