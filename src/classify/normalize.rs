//! Text normalization before segmentation: one canonical spelling of each message.
//!
//! Order matters: NFKC folds full-width forms first, so that the emoji, punctuation and synonym steps see
//! half-width text; traditional characters are converted before synonyms so that one synonym line covers both.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use ferrous_opencc::{config::BuiltinConfig, OpenCC};
use serde::Serialize;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};
use unicode_properties::UnicodeEmoji;

/// Messages longer than this many characters are cut to it before classification; the result says so.
/// Telegram's own limit for a message is 4,096 characters, so real messages are never cut.
pub const MAX_CHARS: usize = 4096;

/// What laughing emoji become in the normalized text, so that rules can name them.
pub const LAUGH_WORD: &str = " [笑] ";
const LAUGHING: &[char] = &['😂', '🤣', '😆', '😁', '😄', '😅', '😹', '🙈'];

/// What normalization did to a message that the caller should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Truncation {
    pub original_chars: usize,
    pub kept_chars: usize,
}

#[derive(Debug, Clone)]
pub struct Normalized {
    pub text: String,
    pub truncated: Option<Truncation>,
    pub emoji: usize,
}

/// Folds colloquial variants, typos and pinyin initials onto one canonical word (`dictionaries/synonyms.txt`).
pub struct Synonyms {
    automaton: Option<AhoCorasick>,
    canonical: Vec<String>,
    ascii: Vec<bool>,
}

impl Synonyms {
    /// `pairs` are (variant, canonical); variants are matched leftmost-longest.
    pub fn new(pairs: &[(String, String)]) -> Synonyms {
        let automaton = (!pairs.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .build(pairs.iter().map(|(variant, _)| variant))
                .expect("synonym variants are validated non-empty strings")
        });
        Synonyms {
            automaton,
            ascii: pairs.iter().map(|(v, _)| v.is_ascii()).collect(),
            canonical: pairs.iter().map(|(_, c)| c.clone()).collect(),
        }
    }

    pub fn apply(&self, text: String) -> String {
        let Some(automaton) = &self.automaton else {
            return text;
        };
        let mut matches = automaton.find_iter(&text).peekable();
        if matches.peek().is_none() {
            return text;
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut copied = 0;
        for m in matches {
            let id = m.pattern().as_usize();
            // ASCII variants (pinyin initials such as `lb`) only count as whole ASCII words.
            if self.ascii[id] && !is_whole_ascii_word(&text, m.start(), m.end()) {
                continue;
            }
            out.push_str(&text[copied..m.start()]);
            out.push_str(&self.canonical[id]);
            copied = m.end();
        }
        out.push_str(&text[copied..]);
        out
    }
}

fn is_whole_ascii_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}

pub struct Normalizer {
    t2s: OpenCC,
    /// The characters of the CJK blocks that conversion changes: a message with none of them is already
    /// simplified, and most messages are, so most skip the conversion.
    traditional: Vec<u64>,
    synonyms: Synonyms,
}

/// The blocks whose traditional characters are looked up at start-up: CJK Extension A, the Unified
/// Ideographs and the Compatibility Ideographs. A character outside them always goes through conversion.
pub(crate) const CJK_BLOCKS: [(char, char); 3] = [
    ('\u{3400}', '\u{4DBF}'),
    ('\u{4E00}', '\u{9FFF}'),
    ('\u{F900}', '\u{FAFF}'),
];
pub(crate) const CJK_END: u32 = 0xFB00;

/// The CJK Unified Ideographs: the characters of almost every Chinese word a driver writes.
pub const HAN: std::ops::RangeInclusive<char> = '\u{4E00}'..='\u{9FFF}';

pub fn is_han(c: char) -> bool {
    HAN.contains(&c)
}

/// One bit per code point below [`CJK_END`]: does converting the character alone change it?
pub(crate) fn traditional_characters(t2s: &OpenCC) -> Vec<u64> {
    let chars: Vec<char> = CJK_BLOCKS.iter().flat_map(|&(from, to)| from..=to).collect();
    // One conversion of every character on a line of its own: phrases never span a line break.
    let lines: String = chars.iter().flat_map(|&c| [c, '\n']).collect();
    let converted = t2s.convert(&lines);
    let mut bits = vec![0u64; (CJK_END as usize).div_ceil(64)];
    for (&c, out) in chars.iter().zip(converted.split('\n')) {
        if out.chars().ne(std::iter::once(c)) {
            bits[c as usize / 64] |= 1 << (c as usize % 64);
        }
    }
    bits
}

impl Normalizer {
    pub fn new(synonyms: Synonyms) -> Normalizer {
        let t2s = OpenCC::from_config(BuiltinConfig::T2s).expect("the built-in traditional-to-simplified tables load");
        let traditional = traditional_characters(&t2s);
        Normalizer {
            t2s,
            traditional,
            synonyms,
        }
    }

    /// Whether conversion could change the character: a known traditional character, or one beyond the
    /// blocks looked up at start-up.
    fn may_be_traditional(&self, c: char) -> bool {
        let code = c as u32;
        code >= 0x3400 && (code >= CJK_END || self.traditional[code as usize / 64] & (1 << (code % 64)) != 0)
    }

    pub fn normalize(&self, raw: &str) -> Normalized {
        // A character takes a byte at least: a text of no more bytes than the limit has no more characters.
        let cut = (raw.len() > MAX_CHARS)
            .then(|| raw.char_indices().nth(MAX_CHARS))
            .flatten();
        let (kept, truncated) = match cut {
            Some((cut, _)) => (
                &raw[..cut],
                Some(Truncation {
                    original_chars: raw.chars().count(),
                    kept_chars: MAX_CHARS,
                }),
            ),
            None => (raw, None),
        };

        // Most messages are Chinese characters, ASCII and full-width punctuation, whose NFKC forms are known
        // one character at a time; the normalization tables are for the rest.
        let mut common = true;
        let only_common = kept.chars().map_while(|c| {
            let nfkc = common_nfkc(c);
            common &= nfkc.is_some();
            nfkc
        });
        let mut folded = self.fold(only_common, kept.len());
        if !common {
            folded = if is_nfkc_quick(kept.chars()) == IsNormalized::Yes {
                self.fold(kept.chars(), kept.len())
            } else {
                self.fold(kept.nfkc(), kept.len())
            };
        }
        let Folded {
            mut text,
            emoji,
            traditional,
        } = folded;
        text.truncate(text.trim_end().len());
        let text = join_spaced_words(text);
        let simplified = if traditional { self.t2s.convert(&text) } else { text };
        let text = self.synonyms.apply(simplified);
        Normalized { text, truncated, emoji }
    }
}

/// The NFKC form of the characters most messages are made of, or `None` for any other: ASCII, the CJK
/// Unified Ideographs and the common Chinese punctuation are their own forms, full-width ASCII and the
/// ideographic space become half-width. None of them composes with a neighbour, so a text of them alone
/// normalizes character by character.
fn common_nfkc(c: char) -> Option<char> {
    match c {
        '\0'..='\x7F' | '\u{4E00}'..='\u{9FFF}' | '、' | '。' | '〈'..='】' | '—' | '‘' | '’' | '“' | '”' | '·' => {
            Some(c)
        }
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

/// A message typed a word at a time, a space after each (我 不想 活 了, 车 翻 了 人 卡 在 里面), joined back
/// where a space parts two Chinese characters: the words of a rule are found whole only within a token.
/// Spaces that part clauses (老板不给运费 三个月了) are kept: a message is taken for one typed so when it
/// has four pieces or more and three in five of them are one or two Chinese characters.
fn join_spaced_words(text: String) -> String {
    // Most messages have fewer than three spaces: counting bytes settles them without looking at the pieces.
    if text.bytes().filter(|&b| b == b' ').count() < 3 {
        return text;
    }
    // A Chinese character takes three bytes: one or two of them take three or six.
    let is_short = |piece: &str| matches!(piece.len(), 3 | 6) && piece.chars().all(is_han);
    let (mut pieces, mut short) = (0, 0);
    for piece in text.split(' ') {
        pieces += 1;
        short += usize::from(is_short(piece));
    }
    if short * 5 < pieces * 3 {
        return text;
    }
    let mut joined = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut before = None;
    while let Some(c) = chars.next() {
        let parts_han = c == ' ' && before.is_some_and(is_han) && chars.peek().is_some_and(|&next| is_han(next));
        if !parts_han {
            joined.push(c);
        }
        before = Some(c);
    }
    joined
}

/// A text folded by [`Normalizer::fold`].
struct Folded {
    text: String,
    emoji: usize,
    /// Whether converting it to simplified characters could change it.
    traditional: bool,
}

impl Normalizer {
    /// Spaces for control characters and emoji (laughter becomes a word), lower-case ASCII, and runs of one
    /// punctuation mark or of spaces folded to one; on the way, the emoji are counted and the characters that
    /// conversion may change noticed.
    fn fold(&self, chars: impl Iterator<Item = char>, capacity: usize) -> Folded {
        let mut emoji = 0;
        let mut traditional = false;
        let mut folded = String::with_capacity(capacity);
        let mut last: Option<char> = None;
        for c in chars {
            // Chinese characters, most of every message, are kept as they are.
            if is_han(c) {
                traditional |= self.may_be_traditional(c);
                folded.push(c);
                last = Some(c);
                continue;
            }
            let c = if c.is_control() || c.is_whitespace() {
                ' '
            } else if is_emoji(c) {
                emoji += usize::from(!c.is_emoji_component());
                // Laughter is the one emoji meaning the rules use (jokes are chatter): it becomes a word.
                if LAUGHING.contains(&c) {
                    if !folded.ends_with(LAUGH_WORD) {
                        let word = if last.is_none() || last == Some(' ') {
                            LAUGH_WORD.trim_start()
                        } else {
                            LAUGH_WORD
                        };
                        folded.push_str(word);
                    }
                    last = Some(' ');
                    continue;
                }
                ' '
            } else {
                traditional |= self.may_be_traditional(c);
                c.to_ascii_lowercase()
            };
            // Runs of one punctuation mark or of spaces ("！！！", "。。。") say no more than one.
            if last == Some(c) && (c == ' ' || is_punctuation(c)) {
                continue;
            }
            if c == ' ' && last.is_none() {
                continue;
            }
            folded.push(c);
            last = Some(c);
        }
        Folded {
            text: folded,
            emoji,
            traditional,
        }
    }
}

/// Emoji and their joiners and modifiers; ASCII digits and `#`/`*` are emoji components too, but text.
fn is_emoji(c: char) -> bool {
    // Chinese characters, the bulk of every message, are never emoji: skip the table lookup for them.
    !c.is_ascii()
        && !('\u{3000}'..'\u{A000}').contains(&c)
        && c.is_emoji_char_or_emoji_component()
        && !matches!(c, '©' | '®' | '‼' | '⁉')
}

pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '，' | '。'
                | '、'
                | '；'
                | '：'
                | '？'
                | '！'
                | '…'
                | '—'
                | '～'
                | '“'
                | '”'
                | '‘'
                | '’'
                | '「'
                | '」'
                | '【'
                | '】'
                | '《'
                | '》'
                | '·'
                | '•'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalizer() -> Normalizer {
        Normalizer::new(Synonyms::new(&[
            ("托欠".into(), "拖欠".into()),
            ("lb".into(), "老板".into()),
        ]))
    }

    #[test]
    fn full_width_forms_become_half_width_and_lowercase() {
        assert_eq!(normalizer().normalize("Ｇ５　京昆高速，ＥＴＣ").text, "g5 京昆高速,etc");
    }

    #[test]
    fn traditional_characters_become_simplified() {
        assert_eq!(
            normalizer().normalize("運費拖了兩個月 老闆說下週給").text,
            "运费拖了两个月 老板说下周给"
        );
    }

    #[test]
    fn emoji_are_counted_and_kept_out_of_the_text() {
        let n = normalizer().normalize("车着火了🔥🔥 快来人👍🏻");
        assert_eq!(n.text, "车着火了 快来人");
        assert_eq!(n.emoji, 3);
        assert_eq!(normalizer().normalize("笑死🤣🤣").text, "笑死 [笑]");
    }

    #[test]
    fn repeated_punctuation_and_control_characters_collapse() {
        assert_eq!(
            normalizer().normalize("救命！！！\u{0}\u{7}咋办？？？").text,
            "救命! 咋办?"
        );
    }

    #[test]
    fn a_message_typed_a_word_at_a_time_is_joined_but_spaces_between_clauses_stay() {
        let n = normalizer();
        assert_eq!(n.normalize("我 真的 不想 活 了 太累了").text, "我真的不想活了太累了");
        assert_eq!(n.normalize("车 翻 了 人 卡 在 G5 上").text, "车翻了人卡在 g5 上");
        for kept in [
            "老板不给运费 三个月了 找谁",
            "有货吗 太原 到 石家庄",
            "车 坏了",
            "救命 救命 快来人 高速上翻车了 司机卡在里面",
        ] {
            assert_eq!(n.normalize(kept).text, kept, "spaces between clauses are kept");
        }
    }

    #[test]
    fn synonyms_fold_typos_and_whole_word_pinyin() {
        let n = normalizer();
        assert_eq!(n.normalize("被托欠运费 lb不给").text, "被拖欠运费 老板不给");
        assert_eq!(
            n.normalize("club里").text,
            "club里",
            "lb inside a longer word is not 老板"
        );
    }

    #[test]
    fn the_common_characters_take_their_nfkc_forms() {
        let blocks = [
            '\0'..='\u{7F}',
            '\u{2000}'..='\u{206F}',
            '\u{3000}'..='\u{303F}',
            '\u{4E00}'..='\u{9FFF}',
        ];
        let common: Vec<char> = blocks
            .into_iter()
            .flatten()
            .chain('\u{FF00}'..='\u{FFEF}')
            .chain(['·'])
            .filter(|&c| common_nfkc(c).is_some())
            .collect();
        assert!(common.len() > 21_000 && common.contains(&'，') && common.contains(&'【'));
        for c in common {
            let nfkc: String = c.to_string().nfkc().collect();
            assert_eq!(
                Some(nfkc.as_str()),
                common_nfkc(c).map(String::from).as_deref(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn an_oversized_message_is_cut_and_says_so() {
        let n = normalizer().normalize(&"欠".repeat(MAX_CHARS + 10));
        assert_eq!(
            n.truncated,
            Some(Truncation {
                original_chars: MAX_CHARS + 10,
                kept_chars: MAX_CHARS
            })
        );
        assert_eq!(n.text.chars().count(), MAX_CHARS);
    }
}
