//! The learned half of the classifier: complement naive Bayes over the words of labelled messages.
//!
//! Rules know the words somebody thought of; the model knows the messages drivers wrote. It is trained each
//! time the classifier loads, from the labelled corpus (`tests/corpus/*.jsonl`, or `corpus/` in a rules
//! directory), so a message added there with its right label teaches the next start without a separate
//! training step.
//!
//! Features are the Chinese words jieba cuts the normalized text into and each pair of them side by side,
//! counted once a message. Segmentation runs without its guesser for unknown words, so text the dictionaries
//! do not know comes out one character a token, and pairs of such characters still carry its meaning;
//! segmentation is paid for once, by the rules and the model together. Complement naive Bayes (Rennie et al.,
//! 2003) suits short texts and few examples a class, and trains by counting: a few thousand messages take
//! milliseconds. The model is small enough to write here; the learners of the Rust ecosystem take dense
//! matrices, which for tens of thousands of words and pairs would cost gigabytes.

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::matcher::Marks;
use super::matcher::Token;
use super::normalize::is_han;
use super::taxonomy::{Category, Label};

thread_local! {
    /// One bit a row, set while a message's words are counted and cleared after: which it has had.
    static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The labels the model scores: the categories in taxonomy order, then `none`.
pub const LABELS: usize = Category::ALL.len() + 1;

/// Smoothing added to every complement count.
const ALPHA: f32 = 1.0;

/// Where a label's score sits in the model's arrays.
pub fn slot(label: Label) -> usize {
    match label {
        Label::Appeal(category) => category as usize,
        Label::None => Category::ALL.len(),
    }
}

#[derive(Serialize, Deserialize)]
pub struct Model {
    /// The pairs of words seen side by side (see [`pair_key`]), each with its row.
    pairs: FxHashMap<u64, u32>,
    /// One row a known word or pair: how much more its presence speaks for each label than for the average
    /// one, in fixed point (see `scale`). A byte a weight keeps a row in a quarter of a cache line: judging a
    /// message is a lookup of a row for each of its words and pairs, and the fewer of them miss the cache the
    /// better. Cross-validation measured no loss against 16 bits.
    weights: Vec<Row>,
    /// A weight is `row[label] as f32 / scale`.
    scale: f32,
    /// How many messages it learned from.
    messages: usize,
}

/// The weights of one word or pair, a label a slot (see [`slot`]); the slots past [`LABELS`] stay zero.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[repr(align(16))]
struct Row([i8; 16]);

const _: () = assert!(LABELS <= 16, "a row holds a weight per label");

/// The key of two words side by side, by their rows.
fn pair_key(first: u32, second: u32) -> u64 {
    u64::from(first) << 32 | u64::from(second)
}

/// Whether the model reads a token: Chinese words only. Latin letters and digits in driver messages are
/// mostly plates, phone numbers, amounts and English words, which say little about the matter and much about
/// the writer (rules and entities handle them); they, spaces and punctuation part the words on either side.
fn is_read(token: &Token<'_>) -> bool {
    !token.is_break && token.text.starts_with(is_han)
}

/// What the model makes of one message.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Per label (see [`slot`]), standardized across labels: mean 0, standard deviation 1.
    pub scores: [f32; LABELS],
    /// The known words and pairs of the message, for [`Model::reasons`].
    grams: Vec<Gram>,
}

/// A known word or pair of a message: its row, and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gram {
    row: u32,
    start: u32,
    end: u32,
}

impl Judgement {
    /// How many of the message's words and pairs the model knew: what the judgement rests on.
    pub fn known(&self) -> usize {
        self.grams.len()
    }
}

/// A model with the words it learned, each with its row: the classifier marks the tokens of a message with
/// their rows when it looks up what else their words are (see [`Marks`]), and the model reads them there.
#[derive(Serialize, Deserialize)]
pub struct Trained {
    pub model: Model,
    pub words: FxHashMap<String, u32>,
}

impl Trained {
    /// Whether every word and pair has a row: a model read back from elsewhere is checked before use.
    pub fn is_whole(&self) -> bool {
        let has_row = |row: u32| (row as usize) < self.model.weights.len();
        self.words.values().all(|&row| has_row(row))
            && self
                .model
                .pairs
                .iter()
                .all(|(&key, &row)| has_row(row) && has_row((key >> 32) as u32) && has_row(key as u32))
    }
}

/// Counts the words and pairs of labelled messages, one message at a time; [`Trainer::finish`] makes the model.
#[derive(Default)]
pub struct Trainer {
    words: FxHashMap<String, u32>,
    pairs: FxHashMap<u64, u32>,
    /// Per row, the messages of each label that had it.
    counts: Vec<[u32; LABELS]>,
    /// The last message that counted each row: a word counts once a message however often it comes.
    counted_in: Vec<usize>,
    messages: usize,
}

impl Trainer {
    /// Counts one segmented message with its label.
    pub fn learn(&mut self, tokens: &[Token<'_>], label: Label) {
        self.messages += 1;
        let l = slot(label);
        let mut before = None;
        for t in tokens {
            if !is_read(t) {
                before = None;
                continue;
            }
            let next = self.counts.len() as u32;
            let row = match self.words.get(t.text) {
                Some(&row) => row,
                None => *self.words.entry(t.text.into()).or_insert(next),
            };
            self.count(row, l);
            if let Some(first) = before {
                let next = self.counts.len() as u32;
                let pair = *self.pairs.entry(pair_key(first, row)).or_insert(next);
                self.count(pair, l);
            }
            before = Some(row);
        }
    }

    fn count(&mut self, row: u32, label: usize) {
        let row = row as usize;
        if row == self.counts.len() {
            self.counts.push([0; LABELS]);
            self.counted_in.push(0);
        }
        if self.counted_in[row] != self.messages {
            self.counted_in[row] = self.messages;
            self.counts[row][label] += 1;
        }
    }

    /// The model of the messages learned; `None` when there was nothing to learn from.
    pub fn finish(self) -> Option<Trained> {
        let Trainer {
            words,
            pairs,
            counts,
            messages,
            ..
        } = self;
        if counts.is_empty() {
            return None;
        }
        // The complement of a label: every message of the other labels. A word speaks for a label when it is
        // rare in its complement.
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
        // all of them does not change, and a weight then says at once how much the word favours its label
        // over the average one.
        // Complement counts are whole numbers up to the number of messages: their logarithms are looked up,
        // not computed for each of tens of thousands of rows and every label twice.
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
        let weights = counts
            .iter()
            .map(|row| {
                let mut fixed = Row([0; 16]);
                for (fixed, w) in fixed.0.iter_mut().zip(centred(row)) {
                    *fixed = (w * scale).round() as i8;
                }
                fixed
            })
            .collect();
        let model = Model {
            pairs,
            weights,
            scale: scale as f32,
            messages,
        };
        Some(Trained { model, words })
    }
}

impl Model {
    /// The number of labelled messages it learned from.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// The number of distinct words and pairs learned.
    pub fn features(&self) -> usize {
        self.weights.len()
    }

    /// Judges a segmented message (the tokens of its normalized text, marked with the rows of the words this
    /// model learned).
    pub fn judge(&self, tokens: &[Token<'_>]) -> Judgement {
        let mut grams: Vec<Gram> = Vec::with_capacity(tokens.len() * 2);
        // The known word before the current one, with where it starts.
        let mut before: Option<(u32, u32)> = None;
        for t in tokens {
            // Only Chinese words are learned: anything else parts the words on either side.
            let Some(row) = t.marks.learned else {
                // A word the model never saw is in no pair it saw.
                before = None;
                continue;
            };
            let (start, end) = (t.start as u32, (t.start + t.text.len()) as u32);
            grams.push(Gram { row, start, end });
            if let Some((first, from)) = before {
                if let Some(&pair) = self.pairs.get(&pair_key(first, row)) {
                    grams.push(Gram {
                        row: pair,
                        start: from,
                        end,
                    });
                }
            }
            before = Some((row, start));
        }
        // A word counts once however often it comes, as in training: its first place is kept.
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
        let mut fixed = [0i32; 16];
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

    /// The words and pairs of the message (two characters or more) that speak most for `label` against the
    /// average label, strongest first, at most `n`.
    pub fn reasons<'t>(&self, judgement: &Judgement, text: &'t str, label: Label, n: usize) -> Vec<&'t str> {
        let l = slot(label);
        // Chinese characters take three bytes each: a span of more than three bytes has two or more.
        let mut candidates: Vec<(i8, u32, u32)> = Vec::with_capacity(judgement.grams.len());
        candidates.extend(
            judgement
                .grams
                .iter()
                .map(|g| (self.weights[g.row as usize].0[l], g.start, g.end))
                .filter(|&(lift, start, end)| lift > 0 && end - start > 3),
        );
        // Overlapping spans say the same thing twice: each pick is the strongest (the earlier, then the
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::matcher::Marks;

    fn token(text: &str, start: usize, is_break: bool) -> Token<'_> {
        Token {
            text,
            start,
            pos: 0,
            is_break,
            marks: Marks::default(),
        }
    }

    /// Words are separated by `/`, breaks by spaces: "车/翻/了 人/受伤".
    fn train(examples: &[(&str, Label)]) -> Trained {
        let mut trainer = Trainer::default();
        for (text, label) in examples {
            trainer.learn(&words(text).1, *label);
        }
        trainer.finish().expect("examples")
    }

    /// The text of `marked`, and what the model makes of its words, marked as the classifier marks them.
    fn judge(trained: &Trained, marked: &str) -> (String, Judgement) {
        let (text, mut tokens) = words(marked);
        for t in &mut tokens {
            t.marks.learned = trained.words.get(t.text).copied();
        }
        let judgement = trained.model.judge(&tokens);
        (text, judgement)
    }

    /// The text without its `/` marks, and its tokens.
    fn words(marked: &str) -> (String, Vec<Token<'static>>) {
        let text: &'static str = Box::leak(marked.replace('/', "").into_boxed_str());
        let mut tokens = Vec::new();
        let mut at = 0;
        for part in marked.split(' ') {
            for word in part.split('/').filter(|w| !w.is_empty()) {
                tokens.push(token(&text[at..at + word.len()], at, false));
                at += word.len();
            }
            if at < text.len() {
                tokens.push(token(&text[at..at + 1], at, true));
                at += 1;
            }
        }
        (text.to_owned(), tokens)
    }

    fn toy() -> Trained {
        train(&[
            ("车/翻/了/人/受伤", Label::Appeal(Category::Accident)),
            ("追尾/了/腿/受伤/了", Label::Appeal(Category::Accident)),
            ("侧翻 司机/受伤", Label::Appeal(Category::Accident)),
            ("运费/拖/了/三个月", Label::Appeal(Category::FreightArrears)),
            ("老板/不/给/运费", Label::Appeal(Category::FreightArrears)),
            ("有/货/去/太原", Label::None),
            ("早上好/兄弟们", Label::None),
            ("有/车/吗 去/大同", Label::None),
        ])
    }

    fn label_at(slot: usize) -> Label {
        Category::ALL.get(slot).map_or(Label::None, |&c| Label::Appeal(c))
    }

    fn best(model: &Trained, marked: &str) -> Label {
        let (_, j) = judge(model, marked);
        let at = (0..LABELS)
            .max_by(|&a, &b| j.scores[a].total_cmp(&j.scores[b]))
            .unwrap();
        label_at(at)
    }

    /// The text of each word and pair the model knew in `marked`, sorted.
    fn known(model: &Trained, marked: &str) -> Vec<String> {
        let (text, j) = judge(model, marked);
        let mut known: Vec<String> = j
            .grams
            .iter()
            .map(|g| text[g.start as usize..g.end as usize].to_owned())
            .collect();
        known.sort_unstable();
        known
    }

    #[test]
    fn it_learns_from_phrasings_it_has_not_seen_whole() {
        let model = toy();
        assert_eq!(
            best(&model, "兄弟/翻/车/了 受伤/很/重"),
            Label::Appeal(Category::Accident)
        );
        assert_eq!(
            best(&model, "三个月/运费/还/没/结"),
            Label::Appeal(Category::FreightArrears)
        );
        assert_eq!(best(&model, "有/货/吗 去/太原"), Label::None);
    }

    #[test]
    fn its_reasons_are_the_words_that_decided() {
        let trained = toy();
        let (text, j) = judge(&trained, "兄弟/翻/车/了 受伤/很/重");
        let reasons = trained.model.reasons(&j, &text, Label::Appeal(Category::Accident), 3);
        assert!(reasons.contains(&"受伤"), "{reasons:?}");
        assert!(reasons.iter().all(|r| r.chars().count() >= 2));
    }

    #[test]
    fn a_message_is_judged_on_the_words_and_neighbouring_pairs_seen_in_training() {
        let model = train(&[
            ("车/翻/了/人/受伤", Label::Appeal(Category::Accident)),
            ("有/货/去/太原", Label::None),
        ]);
        // Known words, a known pair, a pair of known words never seen together, an unknown word that parts
        // its neighbours, and a break that does too.
        let mut expected = [
            "车",
            "翻",
            "车翻",
            "人",
            "受伤",
            "人受伤",
            "了",
            "去",
            "太原",
            "去太原",
            "货",
        ];
        expected.sort_unstable();
        assert_eq!(known(&model, "车/翻/人/受伤/了 去/太原 货/雨/去"), expected);
    }

    #[test]
    fn a_word_counts_once_a_message_in_training_and_in_judging() {
        let repeated = train(&[
            ("受伤 受伤 受伤/了", Label::Appeal(Category::Accident)),
            ("有/货 有/货", Label::None),
        ]);
        let once = train(&[
            ("受伤 受伤/了", Label::Appeal(Category::Accident)),
            ("有/货", Label::None),
        ]);
        for text in ["受伤/了", "受伤 受伤 有/货", "有/货/吗"] {
            let (r, o) = (judge(&repeated, text).1, judge(&once, text).1);
            assert_eq!(r.scores, o.scores, "{text}");
            assert_eq!(r.known(), o.known(), "{text}");
        }
    }

    #[test]
    fn latin_letters_digits_and_breaks_are_not_read_and_part_their_neighbours() {
        let model = train(&[
            ("欠/款/3800/运费 司机/g5/受伤", Label::Appeal(Category::FreightArrears)),
            ("司机/受伤", Label::Appeal(Category::Accident)),
        ]);
        // 司机受伤 is a known pair, but not across the digits; 款 and 运费 were never side by side.
        assert_eq!(
            known(&model, "欠/款 司机/3800/受伤"),
            ["受伤", "司机", "欠", "欠款", "款"]
        );
        assert_eq!(known(&model, "款/运费"), ["款", "运费"]);
        assert!(known(&model, "3800 g5").is_empty());
    }

    #[test]
    fn text_it_never_saw_scores_nothing() {
        let model = toy().model;
        assert_eq!(model.judge(&words("🙂 xyz").1).scores, [0.0; LABELS]);
        assert_eq!(model.judge(&[]).scores, [0.0; LABELS]);
    }

    #[test]
    fn no_examples_is_no_model() {
        assert!(Trainer::default().finish().is_none());
        let mut trainer = Trainer::default();
        trainer.learn(&words("hello 123").1, Label::None);
        assert!(trainer.finish().is_none(), "no Chinese word, nothing learned");
    }
}
