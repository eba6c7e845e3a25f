//! The vocabulary: jieba with our user dictionaries, the synonym map and the stop words.
//!
//! File formats (all UTF-8, `#` starts a comment line):
//! - `*.dict`: `word [freq] [tag]`, jieba's user-dictionary format. Tag `plat` marks a freight platform and
//!   `hwy` a highway or road name: both are extracted as entities.
//! - `synonyms.txt`: `canonical = variant variant …`.
//! - `stopwords.txt`: one word a line.

use std::collections::HashSet;

use rustc_hash::FxHashSet;

use jieba_rs::Jieba;

use super::normalize::Synonyms;
use super::source::{RuleError, SourceFile};

pub struct Lexicon {
    pub jieba: Jieba,
    pub stopwords: FxHashSet<String>,
    pub platforms: FxHashSet<String>,
    pub highways: FxHashSet<String>,
}

/// The dictionary files read, before their words join jieba's own: building jieba's default dictionary takes a
/// third of a start, and the classifier builds it while its rules compile (see [`Dictionaries::into_lexicon`]).
#[derive(Default)]
pub struct Dictionaries {
    words: Vec<(String, Option<usize>, Option<String>)>,
    synonyms: Vec<(String, String)>,
    stopwords: FxHashSet<String>,
}

impl Lexicon {
    pub fn load(files: &[SourceFile], errors: &mut Vec<RuleError>) -> Lexicon {
        Dictionaries::read(files, errors).into_lexicon(Jieba::new())
    }
}

impl Dictionaries {
    pub fn read(files: &[SourceFile], errors: &mut Vec<RuleError>) -> Dictionaries {
        let mut dictionaries = Dictionaries::default();
        for file in files {
            match file.name.rsplit('.').next() {
                Some("dict") => parse_dict(file, &mut dictionaries, errors),
                _ if file.stem() == "synonyms" => parse_synonyms(file, &mut dictionaries, errors),
                _ if file.stem() == "stopwords" => parse_stopwords(file, &mut dictionaries),
                _ if file.name.ends_with(".md") => {}
                _ => errors.push(file.error(
                    0,
                    "unknown dictionary file (expected *.dict, synonyms.txt or stopwords.txt)",
                )),
            }
        }
        check_synonyms(&dictionaries.synonyms, errors);
        dictionaries
    }

    /// The synonym map, for the normalizer: the lexicon keeps only the canonical words, as jieba's.
    pub fn synonyms(&self) -> Synonyms {
        Synonyms::new(&self.synonyms)
    }

    /// The lexicon: `jieba` (from `Jieba::new()`, its default dictionary) with these dictionaries' words added.
    pub fn into_lexicon(self, mut jieba: Jieba) -> Lexicon {
        let mut platforms = FxHashSet::default();
        let mut highways = FxHashSet::default();
        for (word, freq, tag) in &self.words {
            jieba.add_word(word, *freq, tag.as_deref());
            match tag.as_deref() {
                Some("plat") => platforms.insert(word.clone()),
                Some("hwy") => highways.insert(word.clone()),
                _ => false,
            };
        }
        // A canonical synonym is what the text will contain: it must come out of jieba whole.
        for (_, canonical) in &self.synonyms {
            if !canonical.is_ascii() && !jieba.has_word(canonical) {
                jieba.add_word(canonical, None, None);
            }
        }
        Lexicon {
            jieba,
            stopwords: self.stopwords,
            platforms,
            highways,
        }
    }
}

/// Non-comment lines with their 1-based numbers.
fn lines(file: &SourceFile) -> impl Iterator<Item = (usize, &str)> {
    file.text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn parse_dict(file: &SourceFile, dictionaries: &mut Dictionaries, errors: &mut Vec<RuleError>) {
    for (n, line) in lines(file) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (word, freq, tag) = match fields[..] {
            [word] => (word, None, None),
            [word, second] => match second.parse::<usize>() {
                Ok(freq) => (word, Some(freq), None),
                Err(_) => (word, None, Some(second)),
            },
            [word, freq, tag] => match freq.parse::<usize>() {
                Ok(freq) => (word, Some(freq), Some(tag)),
                Err(_) => {
                    errors.push(file.error(n, format!("frequency {freq:?} is not a whole number")));
                    continue;
                }
            },
            _ => {
                errors.push(file.error(n, "expected `word [freq] [tag]`"));
                continue;
            }
        };
        if freq == Some(0) {
            errors.push(file.error(n, format!("frequency of {word:?} must be positive")));
            continue;
        }
        dictionaries.words.push((word.to_owned(), freq, tag.map(str::to_owned)));
    }
}

fn parse_synonyms(file: &SourceFile, dictionaries: &mut Dictionaries, errors: &mut Vec<RuleError>) {
    for (n, line) in lines(file) {
        let Some((canonical, variants)) = line.split_once('=') else {
            errors.push(file.error(n, "expected `canonical = variant variant …`"));
            continue;
        };
        let canonical = canonical.trim();
        if canonical.is_empty() || canonical.contains(char::is_whitespace) {
            errors.push(file.error(n, "the canonical word must be one word"));
            continue;
        }
        let variants: Vec<&str> = variants.split_whitespace().collect();
        if variants.is_empty() {
            errors.push(file.error(n, format!("{canonical:?} has no variants")));
        }
        for variant in variants {
            if variant.chars().count() < 2 {
                errors.push(file.error(
                    n,
                    format!("variant {variant:?} is a single character: too unsafe to replace everywhere"),
                ));
            } else if variant == canonical {
                errors.push(file.error(n, format!("variant {variant:?} is the canonical word itself")));
            } else {
                dictionaries
                    .synonyms
                    .push((variant.to_lowercase(), canonical.to_owned()));
            }
        }
    }
}

/// A stop word is any line: nothing in it can be wrong.
fn parse_stopwords(file: &SourceFile, dictionaries: &mut Dictionaries) {
    for (_, line) in lines(file) {
        dictionaries.stopwords.insert(line.to_owned());
    }
}

fn check_synonyms(pairs: &[(String, String)], errors: &mut Vec<RuleError>) {
    let canonicals: HashSet<&str> = pairs.iter().map(|(_, c)| c.as_str()).collect();
    let mut seen = HashSet::new();
    for (variant, _) in pairs {
        if canonicals.contains(variant.as_str()) {
            errors.push(RuleError {
                file: "dictionaries/synonyms.txt".into(),
                line: 0,
                message: format!("{variant:?} is both a variant and a canonical word"),
            });
        }
        if !seen.insert(variant) {
            errors.push(RuleError {
                file: "dictionaries/synonyms.txt".into(),
                line: 0,
                message: format!("variant {variant:?} is listed twice"),
            });
        }
    }
}
