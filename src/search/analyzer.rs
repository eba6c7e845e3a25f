//! The search analyzer: the classifier's normalization and jieba with the project's dictionaries, keeping
//! where each word came from in the driver's own text, so that a snippet highlights the words as written.
//!
//! A message is read as the classifier reads it — full-width forms folded (NFKC), lower case, traditional
//! characters made simplified, colloquial variants folded onto their canonical word (`synonyms.txt`) — and
//! then segmented; each word keeps the byte range of the original text it came from. Messages are segmented
//! in jieba's search mode (a long word also yields the dictionary words inside it, so `压车` finds `压车费`),
//! queries in its precise mode. Punctuation, emoji and stop words are not words.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use crate::classify::lexicon::Lexicon;
use crate::classify::source::SourceFile;
use crate::classify::{RuleErrors, Sources};

use super::normalize::Normalizer;

/// The name the analyzer is registered under in the index.
pub const TOKENIZER: &str = "suqiu_jieba";

/// Bumped whenever the analysis changes, so that an index built by an older one is rebuilt.
const VERSION: u32 = 1;

/// Words longer than this (a URL, a pasted code) are not indexed.
const MAX_WORD_BYTES: usize = 64;

/// How text is segmented: messages yield the words inside long words too, queries only the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Index,
    Query,
}

pub struct Analyzer {
    lexicon: Arc<Lexicon>,
    normalizer: Normalizer,
    fingerprint: String,
}

impl Analyzer {
    /// The analyzer of the dictionaries in `sources`; their problems are the classifier's, reported the same way.
    pub fn from_sources(sources: &Sources) -> Result<Analyzer, RuleErrors> {
        let mut errors = Vec::new();
        let lexicon = Lexicon::load(&sources.dictionaries, &mut errors);
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        Ok(Analyzer::new(Arc::new(lexicon), &sources.dictionaries))
    }

    /// The analyzer over a loaded `lexicon` (the classifier's); `dictionaries` are the files it was loaded from.
    pub fn new(lexicon: Arc<Lexicon>, dictionaries: &[SourceFile]) -> Analyzer {
        let mut hash = Sha256::new();
        hash.update(VERSION.to_le_bytes());
        for file in dictionaries {
            hash.update(file.name.as_bytes());
            hash.update([0]);
            hash.update(file.text.as_bytes());
            hash.update([0]);
        }
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Analyzer {
            lexicon,
            normalizer: Normalizer::new(dictionaries),
            fingerprint,
        }
    }

    /// Identifies the analysis (its version and the dictionaries): an index built by another is rebuilt.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The words of `text`, normalized, with their byte ranges in `text`; in order of where they start.
    pub fn tokens(&self, text: &str, mode: Mode) -> Vec<Token> {
        let mapped = self.normalizer.normalize(text);
        let cut = match mode {
            Mode::Index => self.lexicon.jieba.cut_for_search(&mapped.text, false),
            Mode::Query => self.lexicon.jieba.cut(&mapped.text, false),
        };
        let mut tokens: Vec<Token> = cut
            .into_iter()
            .filter(|t| {
                t.word.len() <= MAX_WORD_BYTES
                    && t.word.chars().any(char::is_alphanumeric)
                    && !self.lexicon.stopwords.contains(t.word)
            })
            .map(|t| Token {
                offset_from: mapped.from[t.byte_start] as usize,
                offset_to: mapped.to[t.byte_end - 1] as usize,
                position: 0,
                text: t.word.to_owned(),
                position_length: 1,
            })
            .collect();
        // Search mode gives the words inside a long word before the word itself; snippets want them in order.
        tokens.sort_by_key(|t| (t.offset_from, t.offset_to));
        for (position, token) in tokens.iter_mut().enumerate() {
            token.position = position;
        }
        tokens
    }

    /// The words of `text` to highlight `terms` in: its words as a query reads them, except that a word
    /// which is not one of the terms but holds some (as search mode finds inside it: `压车` in `压车费`)
    /// gives way to them. Unlike search mode's words these never overlap and come in order of both start
    /// and end, as tantivy's snippets need.
    pub fn highlight_tokens(&self, text: &str, terms: &HashSet<String>) -> Vec<Token> {
        let inner = self.tokens(text, Mode::Index);
        let mut tokens: Vec<Token> = Vec::new();
        let mut next_inner = 0;
        for word in self.tokens(text, Mode::Query) {
            // Where the words of the normalized text came from: several words of a synonym's canonical
            // form (干甚 read as 干啥) all come from the whole variant, and only the first is kept.
            let covered = tokens.last().map_or(0, |t| t.offset_to);
            if word.offset_from < covered {
                continue;
            }
            if terms.contains(&word.text) {
                tokens.push(word);
                continue;
            }
            while next_inner < inner.len() && inner[next_inner].offset_from < word.offset_from {
                next_inner += 1;
            }
            let mut held: Vec<&Token> = inner[next_inner..]
                .iter()
                .take_while(|t| t.offset_from < word.offset_to)
                .filter(|t| t.offset_to <= word.offset_to && terms.contains(&t.text))
                .collect();
            held.sort_by_key(|t| (t.offset_from, std::cmp::Reverse(t.offset_to)));
            let before = tokens.len();
            let mut end = word.offset_from;
            for t in held {
                if t.offset_from >= end {
                    end = t.offset_to;
                    tokens.push(t.clone());
                }
            }
            if tokens.len() == before {
                tokens.push(word);
            }
        }
        for (position, token) in tokens.iter_mut().enumerate() {
            token.position = position;
        }
        tokens
    }
}

/// The tantivy tokenizer over the [`Analyzer`]: cheap to clone, as tantivy wants.
#[derive(Clone)]
pub struct JiebaTokenizer {
    analyzer: Arc<Analyzer>,
    mode: Mode,
}

impl JiebaTokenizer {
    pub fn new(analyzer: Arc<Analyzer>, mode: Mode) -> JiebaTokenizer {
        JiebaTokenizer { analyzer, mode }
    }
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = Words;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Words {
        Words {
            tokens: self.analyzer.tokens(text, self.mode),
            next: 0,
        }
    }
}

/// The tokenizer of a search's snippets: see [`Analyzer::highlight_tokens`].
#[derive(Clone)]
pub struct HighlightTokenizer {
    analyzer: Arc<Analyzer>,
    terms: Arc<HashSet<String>>,
}

impl HighlightTokenizer {
    pub fn new(analyzer: Arc<Analyzer>, terms: Arc<HashSet<String>>) -> HighlightTokenizer {
        HighlightTokenizer { analyzer, terms }
    }
}

impl Tokenizer for HighlightTokenizer {
    type TokenStream<'a> = Words;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Words {
        Words {
            tokens: self.analyzer.highlight_tokens(text, &self.terms),
            next: 0,
        }
    }
}

/// The words of one text, as tantivy reads them.
pub struct Words {
    tokens: Vec<Token>,
    /// One past the current token.
    next: usize,
}

impl TokenStream for Words {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn analyzer() -> &'static Analyzer {
        static ANALYZER: OnceLock<Analyzer> = OnceLock::new();
        ANALYZER.get_or_init(|| Analyzer::from_sources(&Sources::builtin()).expect("the built-in dictionaries load"))
    }

    fn words(text: &str, mode: Mode) -> Vec<String> {
        analyzer().tokens(text, mode).into_iter().map(|t| t.text).collect()
    }

    /// Each word with the original text it came from.
    fn origins(text: &str) -> Vec<(String, String)> {
        analyzer()
            .tokens(text, Mode::Query)
            .into_iter()
            .map(|t| (t.text, text[t.offset_from..t.offset_to].to_owned()))
            .collect()
    }

    #[test]
    fn the_fields_words_come_out_whole() {
        let query = words("运满满把我封号了 治超站罚了两千 压车三天", Mode::Query);
        for word in ["运满满", "治超站", "压车"] {
            assert!(query.contains(&word.to_owned()), "{word} in {query:?}");
        }
        let index = words("运满满把我封号了 治超站罚了两千 压车三天", Mode::Index);
        for word in ["运满满", "治超站", "压车"] {
            assert!(index.contains(&word.to_owned()), "{word} in {index:?}");
        }
    }

    #[test]
    fn search_mode_adds_the_words_inside_a_long_word() {
        let query = words("压车费谁出", Mode::Query);
        let index = words("压车费谁出", Mode::Index);
        assert!(
            query.contains(&"压车费".to_owned()) && !query.contains(&"压车".to_owned()),
            "{query:?}"
        );
        assert!(
            index.contains(&"压车费".to_owned()) && index.contains(&"压车".to_owned()),
            "{index:?}"
        );
    }

    #[test]
    fn traditional_full_width_and_upper_case_text_reads_as_simplified_lower_case() {
        assert_eq!(
            words("運費拖了兩個月", Mode::Query),
            words("运费拖了两个月", Mode::Query)
        );
        assert_eq!(words("ＥＴＣ扣費", Mode::Query), words("etc扣费", Mode::Query));
    }

    #[test]
    fn each_word_points_at_the_text_it_came_from() {
        assert_eq!(
            origins("運費，ＥＴＣ"),
            [("运费".into(), "運費".into()), ("etc".into(), "ＥＴＣ".into())]
        );
    }

    #[test]
    fn a_variant_becomes_its_canonical_word_and_keeps_its_place() {
        let got = origins("被托欠运费 lb不给");
        assert!(got.contains(&("拖欠".into(), "托欠".into())), "{got:?}");
        assert!(got.contains(&("老板".into(), "lb".into())), "{got:?}");
        assert!(
            !words("club里", Mode::Query).contains(&"老板".to_owned()),
            "lb inside a longer word is not 老板"
        );
    }

    #[test]
    fn punctuation_emoji_and_stop_words_are_not_words() {
        assert_eq!(words("！！！😂😂 的 了 吗", Mode::Index), Vec::<String>::new());
    }

    #[test]
    fn offsets_are_character_boundaries_of_the_original_and_in_order() {
        let text = "老板🙏拖欠運費３個月了！lb说下週給 <script>alert(1)</script>";
        let tokens = analyzer().tokens(text, Mode::Index);
        assert!(!tokens.is_empty());
        for pair in tokens.windows(2) {
            assert!(pair[0].offset_from <= pair[1].offset_from);
        }
        for t in &tokens {
            assert!(
                text.is_char_boundary(t.offset_from) && text.is_char_boundary(t.offset_to),
                "{t:?}"
            );
            assert!(t.offset_from < t.offset_to);
        }
    }

    #[test]
    fn search_mode_words_overlap_but_highlight_words_do_not() {
        let text = "真的活不下去了 压车费谁出";
        let index = analyzer().tokens(text, Mode::Index);
        assert!(
            index.windows(2).any(|w| w[1].offset_to < w[0].offset_to),
            "a word and the words inside it: {index:?}"
        );
        let terms: HashSet<String> = ["下去", "压车"].map(String::from).into();
        let highlight = analyzer().highlight_tokens(text, &terms);
        for pair in highlight.windows(2) {
            assert!(pair[0].offset_to <= pair[1].offset_from, "{highlight:?}");
        }
        let shown: Vec<&str> = highlight
            .iter()
            .filter(|t| terms.contains(&t.text))
            .map(|t| &text[t.offset_from..t.offset_to])
            .collect();
        assert_eq!(shown, ["下去", "压车"]);
    }

    #[test]
    fn a_synonym_read_as_two_words_is_highlighted_once() {
        // 干甚 is read as 干啥: every word of 干啥 comes from the same two characters of the text.
        let text = "我真不知道还能干甚 干脆算了";
        let analyzer = analyzer();
        let words: Vec<String> = analyzer.tokens(text, Mode::Query).into_iter().map(|t| t.text).collect();
        assert!(words.contains(&"啥".to_owned()), "{words:?}");
        let variant = text.find("干甚").unwrap();
        let variant = variant..variant + "干甚".len();
        for terms in [vec!["啥"], vec!["干"], vec!["啥", "能干", "还"], vec![]] {
            let terms: HashSet<String> = terms.into_iter().map(String::from).collect();
            let highlight = analyzer.highlight_tokens(text, &terms);
            for pair in highlight.windows(2) {
                assert!(pair[0].offset_to <= pair[1].offset_from, "{highlight:?}");
            }
            let on_variant = highlight
                .iter()
                .filter(|t| t.offset_from < variant.end && variant.start < t.offset_to)
                .count();
            assert_eq!(on_variant, 1, "{terms:?}: {highlight:?}");
        }
    }

    #[test]
    fn highlight_words_of_any_text_are_in_order_for_any_terms() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let texts: Vec<String> = crate::eval::read_labelled(&corpus)
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        for (i, text) in texts.iter().enumerate() {
            // The terms: every other word search mode finds in another message and in this one.
            let other = &texts[(i * 7 + 3) % texts.len()];
            let terms: HashSet<String> = analyzer()
                .tokens(&format!("{text} {other}"), Mode::Index)
                .into_iter()
                .step_by(2)
                .map(|t| t.text)
                .collect();
            let tokens = analyzer().highlight_tokens(text, &terms);
            for pair in tokens.windows(2) {
                assert!(pair[0].offset_to <= pair[1].offset_from, "{text}: {tokens:?}");
            }
        }
    }

    #[test]
    fn the_fingerprint_follows_the_dictionaries() {
        let mut sources = Sources::builtin();
        let builtin = Analyzer::from_sources(&sources).unwrap();
        assert_eq!(builtin.fingerprint(), analyzer().fingerprint());
        sources.dictionaries[0].text.push_str("\n新词语\n");
        assert_ne!(
            Analyzer::from_sources(&sources).unwrap().fingerprint(),
            builtin.fingerprint()
        );
    }
}
