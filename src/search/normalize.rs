//! The classifier's normalization, keeping for each character of the result the byte range of the original
//! character it came from: a word found in the normalized text can be pointed at in the driver's own text.
//!
//! The steps are the classifier's (`crate::classify::normalize`): compatibility forms folded (NFKC), lower
//! case, traditional characters made simplified, colloquial variants folded onto their canonical word. They
//! work a character at a time here, so runs of punctuation are not collapsed and emoji stay (they are not
//! words anyway), and a long message is not cut.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use ferrous_opencc::{config::BuiltinConfig, OpenCC};
use unicode_normalization::UnicodeNormalization;

use crate::classify::normalize::{is_han, traditional_characters, CJK_END};
use crate::classify::source::SourceFile;

pub(super) struct Normalizer {
    t2s: OpenCC,
    /// One bit per code point below [`CJK_END`]: whether converting the character alone changes it.
    traditional: Vec<u64>,
    synonyms: Option<SynonymMap>,
}

impl Normalizer {
    /// The normalizer with the synonyms of `dictionaries`.
    pub(super) fn new(dictionaries: &[SourceFile]) -> Normalizer {
        let t2s = OpenCC::from_config(BuiltinConfig::T2s).expect("the built-in traditional-to-simplified tables load");
        let traditional = traditional_characters(&t2s);
        Normalizer {
            t2s,
            traditional,
            synonyms: SynonymMap::parse(dictionaries),
        }
    }

    pub(super) fn normalize(&self, raw: &str) -> Mapped {
        let folded = fold(raw);
        let simplified = self.simplify(folded);
        match &self.synonyms {
            Some(synonyms) => synonyms.apply(simplified),
            None => simplified,
        }
    }

    /// Traditional characters to simplified. Conversion works on phrases but keeps the number of
    /// characters, so each converted character keeps its origin; should a conversion change the count,
    /// each character is converted on its own.
    fn simplify(&self, text: Mapped) -> Mapped {
        if !self.may_be_traditional(&text.text) {
            return text;
        }
        let converted = self.t2s.convert(&text.text);
        let mut out = Mapped::with_capacity(converted.len());
        if converted.chars().count() == text.text.chars().count() {
            for ((at, _), c) in text.text.char_indices().zip(converted.chars()) {
                out.push(c, text.from[at], text.to[at]);
            }
        } else {
            let mut buf = [0; 4];
            for (at, c) in text.text.char_indices() {
                for d in self.t2s.convert(c.encode_utf8(&mut buf)).chars() {
                    out.push(d, text.from[at], text.to[at]);
                }
            }
        }
        out
    }

    fn may_be_traditional(&self, text: &str) -> bool {
        text.chars().any(|c| {
            let code = c as u32;
            code >= 0x3400 && (code >= CJK_END || self.traditional[code as usize / 64] & (1 << (code % 64)) != 0)
        })
    }
}

/// Normalized text with, for each of its bytes, the byte range of the original character it came from.
pub(super) struct Mapped {
    pub(super) text: String,
    pub(super) from: Vec<u32>,
    pub(super) to: Vec<u32>,
}

impl Mapped {
    fn with_capacity(bytes: usize) -> Mapped {
        Mapped {
            text: String::with_capacity(bytes),
            from: Vec::with_capacity(bytes),
            to: Vec::with_capacity(bytes),
        }
    }

    fn push(&mut self, c: char, from: u32, to: u32) {
        self.text.push(c);
        for _ in 0..c.len_utf8() {
            self.from.push(from);
            self.to.push(to);
        }
    }
}

/// The classifier's folding, a character at a time: compatibility forms (full-width letters, digits and
/// punctuation) to their plain form, spaces for whitespace and control characters, lower case.
fn fold(raw: &str) -> Mapped {
    let mut out = Mapped::with_capacity(raw.len());
    for (at, c) in raw.char_indices() {
        let (from, to) = (at as u32, (at + c.len_utf8()) as u32);
        if c.is_ascii() {
            let c = if c.is_ascii_whitespace() || c.is_ascii_control() {
                ' '
            } else {
                c.to_ascii_lowercase()
            };
            out.push(c, from, to);
        } else if is_han(c) {
            // Unified ideographs are NFKC-stable and have no case: most of every message.
            out.push(c, from, to);
        } else {
            for d in std::iter::once(c).nfkc() {
                if d.is_whitespace() || d.is_control() {
                    out.push(' ', from, to);
                } else {
                    for l in d.to_lowercase() {
                        out.push(l, from, to);
                    }
                }
            }
        }
    }
    out
}

/// `synonyms.txt` read as the classifier reads it, applied with each canonical word taking the place (and
/// the origin) of the variant it replaces.
struct SynonymMap {
    automaton: AhoCorasick,
    canonical: Vec<String>,
    ascii: Vec<bool>,
}

impl SynonymMap {
    /// The pairs of every `synonyms` file; lines the classifier rejects (and reports) are left out.
    fn parse(files: &[SourceFile]) -> Option<SynonymMap> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let lines = files
            .iter()
            .filter(|f| f.stem() == "synonyms" && !f.name.ends_with(".dict"))
            .flat_map(|f| f.text.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        for line in lines {
            let Some((canonical, variants)) = line.split_once('=') else {
                continue;
            };
            let canonical = canonical.trim();
            if canonical.is_empty() || canonical.contains(char::is_whitespace) {
                continue;
            }
            for variant in variants.split_whitespace() {
                if variant.chars().count() >= 2 && variant != canonical {
                    pairs.push((variant.to_lowercase(), canonical.to_owned()));
                }
            }
        }
        if pairs.is_empty() {
            return None;
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(pairs.iter().map(|(variant, _)| variant))
            .expect("synonym variants are non-empty strings");
        Some(SynonymMap {
            automaton,
            ascii: pairs.iter().map(|(v, _)| v.is_ascii()).collect(),
            canonical: pairs.into_iter().map(|(_, c)| c).collect(),
        })
    }

    fn apply(&self, text: Mapped) -> Mapped {
        let mut out = Mapped::with_capacity(text.text.len() + 8);
        let mut copied = 0;
        let copy = |out: &mut Mapped, from: usize, to: usize| {
            for (at, c) in text.text[from..to].char_indices() {
                out.push(c, text.from[from + at], text.to[from + at]);
            }
        };
        for m in self.automaton.find_iter(&text.text) {
            let id = m.pattern().as_usize();
            // ASCII variants (pinyin initials such as `lb`) only count as whole ASCII words.
            if self.ascii[id] && !is_whole_ascii_word(&text.text, m.start(), m.end()) {
                continue;
            }
            copy(&mut out, copied, m.start());
            let (from, to) = (text.from[m.start()], text.to[m.end() - 1]);
            for c in self.canonical[id].chars() {
                out.push(c, from, to);
            }
            copied = m.end();
        }
        copy(&mut out, copied, text.text.len());
        out
    }
}

fn is_whole_ascii_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}
