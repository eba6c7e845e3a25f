//! Intent rules: the `intents/*.toml` files, validated and compiled into one matcher.
//!
//! Every word of every rule is interned once; the matcher finds them by walking the message's tokens through
//! the word index, and rules then look their words up by id. The file format is in the README ("How the rules
//! work").

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use toml::Spanned;

use super::normalize::{is_han, Normalizer, HAN};
use super::source::{RuleError, SourceFile};
use super::taxonomy::{Category, Label, Priority};

pub type WordId = u32;

/// The name of the file that holds the chatter patterns and the global settings.
pub const CHATTER_FILE: &str = "chatter";

const DEFAULT_WINDOW: u32 = 8;

// ---- the files as people write them ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    category: Spanned<String>,
    name: String,
    priority: Option<Priority>,
    ack: String,
    /// Whether a negation word cancels this category's keywords: yes for incidents (没出事 is no accident),
    /// no for grievances, where the negation is the complaint (没交社保, 会员卡没收到).
    #[serde(default = "yes")]
    negation: bool,
    #[serde(default)]
    keywords: Vec<KeywordGroupDef>,
    #[serde(default)]
    phrase: Vec<PatternDef>,
    #[serde(default)]
    exclude: Vec<PatternDef>,
    #[serde(default)]
    urgent: Vec<UrgentDef>,
    examples: ExamplesDef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatterFile {
    settings: Settings,
    negation: NegationDef,
    /// Named word lists (`[lists]`), which a pattern or an urgent group of any file names as `"@name"` among its
    /// words.
    #[serde(default)]
    lists: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    #[serde(default)]
    help: Vec<KeywordGroupDef>,
    #[serde(default)]
    pattern: Vec<PatternDef>,
    examples: ExamplesDef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordGroupDef {
    weight: Spanned<f32>,
    words: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    negatable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternDef {
    name: Spanned<String>,
    weight: Spanned<f32>,
    #[serde(default)]
    any: Vec<Spanned<String>>,
    #[serde(default)]
    all: Vec<Vec<Spanned<String>>>,
    window: Option<u32>,
    #[serde(default)]
    unless: Vec<Spanned<String>>,
    /// Chatter patterns only: whether a plea for help in the same message outweighs this pattern.
    help_cancels: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrgentDef {
    priority: Priority,
    words: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NegationDef {
    scope: usize,
    words: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExamplesDef {
    #[serde(rename = "match", default)]
    matches: Vec<Spanned<String>>,
    #[serde(default)]
    no_match: Vec<Spanned<String>>,
}

/// Global decision settings, in `intents/chatter.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The score an appeal needs, after chatter penalties.
    pub threshold: f32,
    /// The score an accident, a threat to safety or a crisis needs: a missed one costs far more than a false
    /// alarm. The same as `threshold` when not set.
    #[serde(default)]
    pub urgent_threshold: Option<f32>,
    /// Added to every category with evidence when the sender asks for help.
    pub help_boost: f32,
    /// The most that pleas for help can take off the chatter penalty.
    pub help_cap: f32,
    /// Each keyword after a category's strongest counts this fraction of its weight.
    pub extra_keyword_factor: f32,
    /// The share of the chatter penalty that counts against the urgent categories.
    pub urgent_penalty_factor: f32,
    /// How much the model trained on the labelled corpus counts beside the rules; 0 leaves the rules alone.
    #[serde(default)]
    pub model_weight: f32,
    /// How many known words and word pairs a message needs for the model to count in full; shorter ones count in
    /// proportion.
    #[serde(default = "default_model_full_grams")]
    pub model_full_grams: u32,
    /// The lowest a category's rule score counts beside the model: how far exclusions and chatter can hold
    /// back a category the model reads into a message.
    #[serde(default = "default_rule_floor", deserialize_with = "floor")]
    pub rule_floor: f32,
    /// The same for accident, safety and crisis; `rule_floor` when not set.
    #[serde(default, deserialize_with = "urgent_floor")]
    pub urgent_rule_floor: Option<f32>,
}

impl Settings {
    /// The score `category` needs to make an appeal.
    pub fn threshold_of(&self, category: Category) -> f32 {
        match self.urgent_threshold {
            Some(urgent) if category.is_urgent() => urgent,
            _ => self.threshold,
        }
    }

    /// The lowest `category`'s rule score counts beside the model.
    pub fn rule_floor_of(&self, category: Category) -> f32 {
        match self.urgent_rule_floor {
            Some(urgent) if category.is_urgent() => urgent,
            _ => self.rule_floor,
        }
    }
}

fn default_model_full_grams() -> u32 {
    1
}

fn default_rule_floor() -> f32 {
    -1.0
}

/// A floor above zero would lift every category the rules found nothing for; NaN is refused with it, for no
/// score can be clamped to it.
fn floor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let floor = f32::deserialize(d)?;
    match floor <= 0.0 {
        true => Ok(floor),
        false => Err(serde::de::Error::custom(format!(
            "a rule floor must be zero or below, not {floor}"
        ))),
    }
}

fn urgent_floor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    floor(d).map(Some)
}

// ---- the compiled form ----

#[derive(Debug)]
pub struct Keyword {
    pub word: WordId,
    pub weight: f32,
    pub negatable: bool,
}

#[derive(Debug)]
pub struct Pattern {
    /// What its evidence is called: `chatter:ad`, `accident/phrase:driver_hurt`.
    pub rule: Arc<str>,
    pub weight: f32,
    pub any: Vec<WordId>,
    pub all: Vec<Vec<WordId>>,
    pub window: u32,
    pub unless: Vec<WordId>,
    /// The [`CharSet::ends`] of each word of `unless`.
    pub unless_ends: Vec<[u16; 2]>,
    pub help_cancels: bool,
    /// The [`signature`] of `any` and of each group of `all`: a group whose signature shares no bit with the
    /// message's words has none of them.
    pub any_signature: u64,
    pub all_signatures: Vec<u64>,
}

impl Pattern {
    /// Its groups of words, each with its [`signature`]: `any` when it has words, then each group of `all`. A word
    /// of every group must be found for the pattern to fire.
    pub fn groups(&self) -> impl Iterator<Item = (&[WordId], u64)> {
        let any = (!self.any.is_empty()).then_some((self.any.as_slice(), self.any_signature));
        let all = self
            .all
            .iter()
            .map(Vec::as_slice)
            .zip(self.all_signatures.iter().copied());
        any.into_iter().chain(all)
    }
}

/// A summary of a set of words in 64 bits: two sets with a word in common have a bit in common.
pub fn signature(words: impl IntoIterator<Item = WordId>) -> u64 {
    words.into_iter().fold(0, |sig, w| sig | 1 << hashed(w, 6))
}

/// `x` hashed to a number of `bits` bits (Fibonacci hashing): the quick rejections' summaries of words and
/// characters.
fn hashed(x: u32, bits: u32) -> u32 {
    x.wrapping_mul(0x9E37_79B1) >> (32 - bits)
}

#[derive(Debug)]
pub struct Urgent {
    /// What its evidence is called: `accident/urgent:P1`.
    pub rule: Arc<str>,
    pub priority: Priority,
    pub words: Vec<WordId>,
}

#[derive(Debug)]
pub struct Intent {
    pub category: Category,
    pub name: String,
    pub priority: Priority,
    pub ack: String,
    pub keywords: Vec<Keyword>,
    pub phrases: Vec<Pattern>,
    pub excludes: Vec<Pattern>,
    pub urgent: Vec<Urgent>,
    /// What the evidence of its keywords, found and negated, is called: `accident/keyword`, `accident/negated`.
    pub keyword_rule: Arc<str>,
    pub negated_rule: Arc<str>,
}

/// Where a pattern stands in the rule files, which names its evidence.
#[derive(Clone, Copy)]
enum PatternKind {
    Phrase(Category),
    Exclude(Category),
    Chatter,
}

impl PatternKind {
    fn rule(self, name: &str) -> String {
        match self {
            PatternKind::Phrase(c) => format!("{c}/phrase:{name}"),
            PatternKind::Exclude(c) => format!("{c}/exclude:{name}"),
            PatternKind::Chatter => format!("chatter:{name}"),
        }
    }
}

/// An example message from a rule file, and what the classifier must make of it.
#[derive(Debug, Clone)]
pub struct Example {
    pub file: String,
    pub line: usize,
    pub text: String,
    pub expect: Label,
    /// `true`: the label must be `expect`; `false`: it must not be.
    pub should_match: bool,
}

/// Where a rule word is used: matching starts from the words found, so its cost follows the message, not
/// the size of the rules. A kind of rule, the intent it belongs to and its index there, packed in one number
/// that sorts by kind, then intent, then index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Posting(u32);

/// The kinds of rule a word can lead to, in the order their postings sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Keyword = 0,
    Phrase = 1,
    Exclude = 2,
    Chatter = 3,
    Help = 4,
}

impl Posting {
    /// Rule indices below 2¹⁶ and intents below 2¹² (the taxonomy has a dozen categories): checked once, as the
    /// rules load.
    pub fn new(kind: RuleKind, intent: usize, index: usize) -> Posting {
        assert!(
            intent < 1 << 12 && index < 1 << 16,
            "rule {index} of intent {intent}: a category holds at most 65,536 rules of a kind"
        );
        Posting((kind as u32) << 28 | (intent as u32) << 16 | index as u32)
    }

    /// Where the postings of `kind` begin and end in a sorted list.
    pub fn bounds(kind: RuleKind) -> (Posting, Posting) {
        (Posting((kind as u32) << 28), Posting((kind as u32 + 1) << 28))
    }

    pub fn intent(self) -> u16 {
        (self.0 >> 16 & 0xFFF) as u16
    }

    pub fn index(self) -> usize {
        (self.0 & 0xFFFF) as usize
    }
}

/// The postings of every word, laid out flat: a word's are `items[from[word]..from[word + 1]]`, each with the
/// [`signature`] of another group of words its rule needs (all bits for a keyword, a plea for help or a pattern
/// of one group, which need nothing more): a message whose words share no bit with it cannot make the rule fire,
/// which is known without reading the rule.
pub struct Postings {
    from: Vec<u32>,
    items: Vec<(Posting, u64)>,
}

impl Postings {
    pub fn of(&self, word: WordId) -> &[(Posting, u64)] {
        let w = word as usize;
        &self.items[self.from[w] as usize..self.from[w + 1] as usize]
    }
}

pub struct RuleSet {
    /// Shared with the evidence that names them.
    pub words: Vec<Arc<str>>,
    /// For each word, the rules that use it (not counting `unless` lists).
    pub postings: Postings,
    /// The rule words as a trie, for the matcher's walk from each token.
    pub index: WordIndex,
    /// One per category, in [`Category::ALL`] order.
    pub intents: Vec<Intent>,
    pub chatter: Vec<Pattern>,
    pub help: Vec<Keyword>,
    /// What the evidence of pleas for help, found and negated, is called: `help`, `help/negated`.
    pub help_rule: Arc<str>,
    pub help_negated_rule: Arc<str>,
    pub negators: FxHashSet<String>,
    pub negation_scope: usize,
    pub settings: Settings,
    pub examples: Vec<Example>,
}

/// The rule words as a trie of characters: the matcher walks it from each token, and most walks end after a
/// character or two. The root's children are a table indexed by Chinese character (thousands of first
/// characters) and hashed for the rest, a deeper node's are a short slice; the whole trie is a few hundred
/// kilobytes, small enough to stay in cache.
pub struct WordIndex {
    nodes: Vec<Node>,
    /// The child of the root for each CJK Unified Ideograph, 0 (the root itself) for none.
    root_han: Box<[u32]>,
    root: FxHashMap<char, u32>,
    /// `edges[node.from..node.to]`: a node's children with their characters, sorted.
    edges: Vec<(char, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The rule word spelled by the path to this node.
    word: Option<WordId>,
    from: u32,
    to: u32,
}

/// The number of Chinese characters in [`HAN`], and a character's place among them.
const HANS: usize = *HAN.end() as usize - *HAN.start() as usize + 1;

fn han_index(c: char) -> Option<usize> {
    is_han(c).then(|| c as usize - *HAN.start() as usize)
}

impl WordIndex {
    pub(crate) fn new(words: &[String]) -> WordIndex {
        // Built with maps of children, then laid out flat.
        let mut children: Vec<BTreeMap<char, u32>> = vec![BTreeMap::new()];
        let mut ends: Vec<Option<WordId>> = vec![None];
        for (id, word) in words.iter().enumerate() {
            let mut node = 0;
            for c in word.chars() {
                let next = children.len() as u32;
                node = *children[node].entry(c).or_insert(next) as usize;
                if node == children.len() {
                    children.push(BTreeMap::new());
                    ends.push(None);
                }
            }
            ends[node] = Some(id as WordId);
        }
        let mut edges = Vec::new();
        let nodes = children
            .iter()
            .zip(&ends)
            .enumerate()
            .map(|(n, (kids, &word))| {
                let from = edges.len() as u32;
                if n != 0 {
                    edges.extend(kids.iter().map(|(&c, &child)| (c, child)));
                }
                Node {
                    word,
                    from,
                    to: edges.len() as u32,
                }
            })
            .collect();
        let mut root_han = vec![0; HANS].into_boxed_slice();
        let mut root = FxHashMap::default();
        for (&c, &child) in &children[0] {
            match han_index(c) {
                Some(i) => root_han[i] = child,
                None => _ = root.insert(c, child),
            }
        }
        WordIndex {
            nodes,
            root_han,
            root,
            edges,
        }
    }

    fn root_child(&self, c: char) -> Option<u32> {
        match han_index(c) {
            Some(i) => Some(self.root_han[i]).filter(|&child| child != 0),
            None => self.root.get(&c).copied(),
        }
    }

    /// Hands `each` every rule word that `text` has at byte `from`, shortest first, with where it ends.
    pub fn walk(&self, text: &str, from: usize, each: impl FnMut(WordId, usize)) {
        let mut chars = text[from..].chars();
        if let Some(node) = chars.next().and_then(|c| self.root_child(c)) {
            self.walk_on(node, text, text.len() - chars.as_str().len(), each);
        }
    }

    /// The node a walk of all of `word` ends on, or `None` when no rule word begins with it.
    pub fn node_of(&self, word: &str) -> Option<u32> {
        let mut chars = word.chars();
        let root = self.root_child(chars.next()?)?;
        chars.try_fold(root, |node, c| self.child(node, c))
    }

    /// The child of `node` on `c`. Most nodes have a child or two, for which a scan beats a search; the first
    /// characters of common words (车, 没, 不) have hundreds.
    fn child(&self, node: u32, c: char) -> Option<u32> {
        let n = self.nodes[node as usize];
        let kids = &self.edges[n.from as usize..n.to as usize];
        if kids.len() <= 8 {
            return kids.iter().find(|&&(k, _)| k == c).map(|&(_, child)| child);
        }
        kids.binary_search_by_key(&c, |&(k, _)| k).ok().map(|i| kids[i].1)
    }

    /// [`WordIndex::walk`] from a walk already at `node` having read `text` up to byte `end`: the rule words
    /// that end there and further on.
    pub fn walk_on(&self, node: u32, text: &str, end: usize, mut each: impl FnMut(WordId, usize)) {
        if let Some(word) = self.nodes[node as usize].word {
            each(word, end);
        }
        self.walk_past(node, text, end, each);
    }

    /// [`WordIndex::walk_on`] without the word at `node` itself: the rule words that end further on.
    pub fn walk_past(&self, mut node: u32, text: &str, mut end: usize, mut each: impl FnMut(WordId, usize)) {
        let mut chars = text[end..].chars();
        loop {
            let Some(c) = chars.next() else { return };
            let Some(child) = self.child(node, c) else { return };
            node = child;
            end += c.len_utf8();
            if let Some(word) = self.nodes[node as usize].word {
                each(word, end);
            }
        }
    }

    /// What a walk standing at `node` needs to know to go on, kept beside a word that ends there.
    pub fn onward(&self, node: u32) -> Onward {
        let n = self.nodes[node as usize];
        let kids = &self.edges[n.from as usize..n.to as usize];
        Onward {
            node,
            word: n.word,
            next: kids.iter().fold(0, |next, &(c, _)| next | Onward::bit(c)),
        }
    }
}

/// A walk of the rule words standing at the end of a word: the node, the rule word that ends there, and the
/// characters that go on from it, hashed to sixteen bits. Most words are the end of every rule word they start,
/// and most that are not are followed by none of the characters that go on: known without reading the trie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onward {
    pub node: u32,
    pub word: Option<WordId>,
    next: u16,
}

impl Onward {
    fn bit(c: char) -> u16 {
        1 << hashed(c as u32, 4)
    }

    /// Whether a rule word may go on with `c`; none does when `false`.
    pub fn may_go_on(self, c: char) -> bool {
        self.next & Onward::bit(c) != 0
    }
}

impl RuleSet {
    pub fn intent(&self, category: Category) -> &Intent {
        &self.intents[category as usize]
    }

    /// Compiles the intent files; every problem found is pushed to `errors`.
    pub fn compile(files: &[SourceFile], normalizer: &Normalizer, errors: &mut Vec<RuleError>) -> Option<RuleSet> {
        let mut b = Builder {
            normalizer,
            words: Vec::new(),
            ids: FxHashMap::default(),
            errors,
            examples: Vec::new(),
            lists: FxHashMap::default(),
            rule_names: FxHashMap::default(),
        };
        let mut intents: Vec<Option<(Intent, String)>> = Category::ALL.iter().map(|_| None).collect();
        let mut decisive: HashMap<WordId, (Category, String)> = HashMap::new();

        // The chatter file first: its settings say what a decisive keyword is.
        let chatter_file = files
            .iter()
            .find(|f| f.stem() == CHATTER_FILE && f.name.ends_with(".toml"));
        let chatter = chatter_file.and_then(|f| b.parse::<ChatterFile>(f).map(|def| b.chatter(f, def)));
        let threshold = chatter.as_ref().map_or(1.0, |c| c.4.threshold);
        for file in files {
            if !file.name.ends_with(".toml") || file.stem() == CHATTER_FILE {
                continue;
            }
            let Some(def) = b.parse::<IntentFile>(file) else {
                continue;
            };
            let Some(intent) = b.intent(file, def, threshold, &mut decisive) else {
                continue;
            };
            let slot = &mut intents[intent.category as usize];
            if let Some((_, first)) = slot {
                let message = format!("category {} is already defined in {first}", intent.category);
                b.errors.push(file.error(0, message));
            } else {
                *slot = Some((intent, file.name.clone()));
            }
        }

        for (category, slot) in Category::ALL.iter().zip(&intents) {
            if slot.is_none() {
                b.errors.push(RuleError {
                    file: format!("intents/{category}.toml"),
                    line: 0,
                    message: format!("no rules for category {category}"),
                });
            }
        }
        let Some(chatter) = chatter else {
            if !files.iter().any(|f| f.stem() == CHATTER_FILE) {
                b.errors.push(RuleError {
                    file: format!("intents/{CHATTER_FILE}.toml"),
                    line: 0,
                    message: "missing: it holds the chatter patterns and the settings".into(),
                });
            }
            return None;
        };
        if !b.errors.is_empty() {
            return None;
        }
        let (patterns, help, negators, negation_scope, settings) = chatter;
        let intents: Vec<Intent> = intents.into_iter().map(|slot| slot.expect("checked above").0).collect();
        let postings = postings(b.words.len(), &intents, &patterns, &help);
        Some(RuleSet {
            postings,
            index: WordIndex::new(&b.words),
            words: b.words.into_iter().map(Arc::from).collect(),
            intents,
            chatter: patterns,
            help,
            help_rule: Arc::from("help"),
            help_negated_rule: Arc::from("help/negated"),
            negators,
            negation_scope,
            settings,
            examples: b.examples,
        })
    }
}

fn postings(words: usize, intents: &[Intent], chatter: &[Pattern], help: &[Keyword]) -> Postings {
    let mut postings = vec![Vec::new(); words];
    // A pattern fires only when a word of each of its groups is found: it is a candidate when a word of
    // its smallest group is, and the other groups' words need not lead to it. The signature of the other group
    // with the fewest bits rules out most candidates that lack it.
    let pattern_words = |p: &Pattern| {
        let groups: Vec<(&[WordId], u64)> = p.groups().collect();
        let Some(smallest) = (0..groups.len()).min_by_key(|&i| groups[i].0.len()) else {
            return (Vec::new(), u64::MAX);
        };
        let needed = (0..groups.len())
            .filter(|&i| i != smallest)
            .map(|i| groups[i].1)
            .min_by_key(|signature| signature.count_ones())
            .unwrap_or(u64::MAX);
        (groups[smallest].0.to_vec(), needed)
    };
    for (i, intent) in intents.iter().enumerate() {
        for (index, k) in intent.keywords.iter().enumerate() {
            postings[k.word as usize].push((Posting::new(RuleKind::Keyword, i, index), u64::MAX));
        }
        for (kind, patterns) in [
            (RuleKind::Phrase, &intent.phrases),
            (RuleKind::Exclude, &intent.excludes),
        ] {
            for (index, p) in patterns.iter().enumerate() {
                let (words, needed) = pattern_words(p);
                for w in words {
                    postings[w as usize].push((Posting::new(kind, i, index), needed));
                }
            }
        }
    }
    for (index, p) in chatter.iter().enumerate() {
        let (words, needed) = pattern_words(p);
        for w in words {
            postings[w as usize].push((Posting::new(RuleKind::Chatter, 0, index), needed));
        }
    }
    for (index, k) in help.iter().enumerate() {
        postings[k.word as usize].push((Posting::new(RuleKind::Help, 0, index), u64::MAX));
    }
    let mut from = Vec::with_capacity(words + 1);
    from.push(0);
    let mut items = Vec::new();
    for list in postings {
        items.extend(list);
        from.push(items.len() as u32);
    }
    Postings { from, items }
}

/// The characters of a text, hashed to one of 1,024 bits: a word whose characters are not all among them is
/// not in the text, which most `unless` words are not.
#[derive(Default)]
pub struct CharSet([u64; 16]);

impl CharSet {
    pub fn of(text: &str) -> CharSet {
        let mut set = CharSet::default();
        for c in text.chars() {
            let bit = char_bit(c);
            set.0[bit / 64] |= 1 << (bit % 64);
        }
        set
    }

    /// Whether a word with these [`CharSet::ends`] may be in the text; it is not when `false`.
    pub fn may_hold(&self, ends: [u16; 2]) -> bool {
        ends.iter()
            .all(|&bit| self.0[bit as usize / 64] & (1 << (bit % 64)) != 0)
    }

    /// The bits of the first and the last character of `word`: kept beside the word, they say whether a text
    /// may hold it without reading the word itself.
    pub fn ends(word: &str) -> [u16; 2] {
        debug_assert!(!word.is_empty(), "rule words are validated non-empty");
        let bit = |c: Option<char>| c.map_or(0, char_bit) as u16;
        [bit(word.chars().next()), bit(word.chars().next_back())]
    }
}

fn char_bit(c: char) -> usize {
    hashed(c as u32, 10) as usize
}

struct Builder<'a> {
    normalizer: &'a Normalizer,
    words: Vec<String>,
    ids: FxHashMap<String, WordId>,
    errors: &'a mut Vec<RuleError>,
    examples: Vec<Example>,
    /// The named word lists of the chatter file, by name.
    lists: FxHashMap<String, Vec<WordId>>,
    /// Where in the file being read each pattern's rule name (`accident/phrase:trapped`) was first given, as a
    /// byte offset. Evidence names a rule by it, so two patterns of a file may not share one.
    rule_names: FxHashMap<Arc<str>, usize>,
}

type ChatterParts = (Vec<Pattern>, Vec<Keyword>, FxHashSet<String>, usize, Settings);

impl Builder<'_> {
    fn parse<T: for<'de> Deserialize<'de>>(&mut self, file: &SourceFile) -> Option<T> {
        toml::from_str(&file.text)
            .map_err(|e| {
                let message = e.message().trim().to_owned();
                let err = match e.span() {
                    Some(span) => file.error_at(span.start, message),
                    None => file.error(0, message),
                };
                self.errors.push(err);
            })
            .ok()
    }

    /// The id of a rule word, written as the normalized text will contain it.
    fn word(&mut self, file: &SourceFile, word: &Spanned<String>) -> Option<WordId> {
        let normalized = self.normalizer.normalize(word.get_ref().trim()).text;
        if normalized.is_empty() {
            self.errors
                .push(file.error_at(word.span().start, format!("empty word {:?}", word.get_ref())));
            return None;
        }
        if let Some(&id) = self.ids.get(&normalized) {
            return Some(id);
        }
        let id = self.words.len() as WordId;
        self.ids.insert(normalized.clone(), id);
        self.words.push(normalized);
        Some(id)
    }

    /// The ids of a pattern's words, a named list (`"@name"`) standing for all of its words.
    fn word_list(&mut self, file: &SourceFile, words: &[Spanned<String>]) -> Vec<WordId> {
        let mut ids = Vec::with_capacity(words.len());
        for word in words {
            match list_name(word) {
                Some(name) => match self.lists.get(name) {
                    Some(list) => ids.extend_from_slice(list),
                    None => {
                        let message =
                            format!("no word list {name:?} (lists are named under [lists] in {CHATTER_FILE}.toml)");
                        self.errors.push(file.error_at(word.span().start, message));
                    }
                },
                None => ids.extend(self.word(file, word)),
            }
        }
        ids
    }

    /// Whether `word`, which must be one word (`what`), names a list instead: an error.
    fn names_a_list(&mut self, file: &SourceFile, word: &Spanned<String>, what: &str) -> bool {
        let names = list_name(word).is_some();
        if names {
            let message = format!("{what} is one word: word lists belong to patterns");
            self.errors.push(file.error_at(word.span().start, message));
        }
        names
    }

    /// Reads the named word lists; a list's words are words, not names of other lists.
    fn read_lists(&mut self, file: &SourceFile, lists: &BTreeMap<Spanned<String>, Vec<Spanned<String>>>) {
        for (spanned, words) in lists {
            let (name, at) = (spanned.get_ref(), spanned.span().start);
            if !is_list_name(name) {
                let message = format!("word list {name:?}: a list's name is lower-case ASCII letters, digits and `_`");
                self.errors.push(file.error_at(at, message));
            }
            if words.is_empty() {
                self.errors
                    .push(file.error_at(at, format!("word list {name:?} is empty")));
            }
            let mut ids = Vec::with_capacity(words.len());
            for word in words {
                if list_name(word).is_some() {
                    let message = format!("word list {name:?} names another list: a list holds words only");
                    self.errors.push(file.error_at(word.span().start, message));
                    continue;
                }
                ids.extend(self.word(file, word));
            }
            self.lists.insert(name.clone(), ids);
        }
    }

    fn keywords(&mut self, file: &SourceFile, groups: &[KeywordGroupDef]) -> Vec<(Keyword, usize)> {
        let mut out: Vec<(Keyword, usize)> = Vec::new();
        for group in groups {
            let weight = *group.weight.get_ref();
            if !(weight > 0.0 && weight.is_finite()) {
                self.errors
                    .push(file.error_at(group.weight.span().start, format!("weight {weight} must be positive")));
            }
            for spanned in &group.words {
                if self.names_a_list(file, spanned, "a keyword") {
                    continue;
                }
                let Some(word) = self.word(file, spanned) else { continue };
                if out.iter().any(|(k, _)| k.word == word) {
                    let message = format!("keyword {:?} is listed twice in this file", spanned.get_ref());
                    self.errors.push(file.error_at(spanned.span().start, message));
                    continue;
                }
                out.push((
                    Keyword {
                        word,
                        weight,
                        negatable: group.negatable,
                    },
                    spanned.span().start,
                ));
            }
        }
        out
    }

    fn pattern(&mut self, file: &SourceFile, def: &PatternDef, kind: PatternKind) -> Pattern {
        let at = def.name.span().start;
        if def.any.is_empty() && def.all.is_empty() {
            self.errors.push(file.error_at(
                at,
                format!("pattern {:?} needs `any` or `all` words", def.name.get_ref()),
            ));
        }
        if def.all.iter().any(Vec::is_empty) {
            self.errors.push(file.error_at(
                at,
                format!("pattern {:?} has an empty group in `all`", def.name.get_ref()),
            ));
        }
        if def.help_cancels.is_some() && !matches!(kind, PatternKind::Chatter) {
            self.errors
                .push(file.error_at(at, "`help_cancels` belongs to chatter patterns only"));
        }
        let weight = *def.weight.get_ref();
        if !(weight > 0.0 && weight.is_finite()) {
            self.errors
                .push(file.error_at(def.weight.span().start, format!("weight {weight} must be positive")));
        }
        let rule: Arc<str> = kind.rule(def.name.get_ref()).into();
        match self.rule_names.entry(rule.clone()) {
            Entry::Vacant(first) => {
                first.insert(at);
            }
            Entry::Occupied(first) => {
                let message = format!(
                    "pattern {:?} is named as the one at line {}: evidence could not tell them apart",
                    def.name.get_ref(),
                    file.line_numbers().at(*first.get())
                );
                self.errors.push(file.error_at(at, message));
            }
        }
        let any = self.word_list(file, &def.any);
        let all: Vec<Vec<WordId>> = def.all.iter().map(|group| self.word_list(file, group)).collect();
        let unless = self.word_list(file, &def.unless);
        Pattern {
            rule,
            weight,
            any_signature: signature(any.iter().copied()),
            all_signatures: all.iter().map(|group| signature(group.iter().copied())).collect(),
            any,
            all,
            window: def.window.unwrap_or(DEFAULT_WINDOW),
            unless_ends: unless.iter().map(|&w| CharSet::ends(&self.words[w as usize])).collect(),
            unless,
            help_cancels: def.help_cancels.unwrap_or(true),
        }
    }

    fn examples(&mut self, file: &SourceFile, def: &ExamplesDef, label: Label) {
        if def.matches.is_empty() || def.no_match.is_empty() {
            self.errors
                .push(file.error(0, "needs examples that must match and examples that must not"));
        }
        let mut lines = file.line_numbers();
        for (list, should_match) in [(&def.matches, true), (&def.no_match, false)] {
            for text in list {
                let line = lines.at(text.span().start);
                self.examples.push(Example {
                    file: file.name.clone(),
                    line,
                    text: text.get_ref().clone(),
                    expect: label,
                    should_match,
                });
            }
        }
    }

    fn intent(
        &mut self,
        file: &SourceFile,
        def: IntentFile,
        threshold: f32,
        decisive: &mut HashMap<WordId, (Category, String)>,
    ) -> Option<Intent> {
        self.rule_names.clear();
        let category: Category = match def.category.get_ref().parse() {
            Ok(c) => c,
            Err(e) => {
                self.errors
                    .push(file.error_at(def.category.span().start, e.to_string()));
                return None;
            }
        };
        if file.stem() != category.id() {
            let message = format!("category {category} belongs in intents/{category}.toml");
            self.errors.push(file.error_at(def.category.span().start, message));
        }
        if def.ack.trim().is_empty() {
            self.errors
                .push(file.error(0, "`ack` (the driver's acknowledgement) is empty"));
        }
        // A keyword that alone decides the label must decide it for one category only.
        let mut keywords = self.keywords(file, &def.keywords);
        if !def.negation {
            keywords.iter_mut().for_each(|(k, _)| k.negatable = false);
        }
        for (keyword, offset) in &keywords {
            if keyword.weight < threshold {
                continue;
            }
            let place = file.error_at(*offset, "");
            match decisive.get(&keyword.word) {
                Some((other, at)) if *other != category => {
                    let message = format!(
                        "keyword {:?} decides both {category} and {other} ({at}): lower one weight below {threshold} or drop it",
                        self.words[keyword.word as usize]
                    );
                    self.errors.push(file.error(place.line, message));
                }
                _ => {
                    decisive.insert(keyword.word, (category, format!("{}:{}", place.file, place.line)));
                }
            }
        }
        let intent = Intent {
            category,
            name: def.name,
            priority: def.priority.unwrap_or(category.default_priority()),
            ack: def.ack,
            keywords: keywords.into_iter().map(|(k, _)| k).collect(),
            phrases: def
                .phrase
                .iter()
                .map(|p| self.pattern(file, p, PatternKind::Phrase(category)))
                .collect(),
            excludes: def
                .exclude
                .iter()
                .map(|p| self.pattern(file, p, PatternKind::Exclude(category)))
                .collect(),
            urgent: def
                .urgent
                .iter()
                .map(|u| Urgent {
                    rule: format!("{category}/urgent:{}", u.priority).into(),
                    priority: u.priority,
                    words: self.word_list(file, &u.words),
                })
                .collect(),
            keyword_rule: format!("{category}/keyword").into(),
            negated_rule: format!("{category}/negated").into(),
        };
        self.examples(file, &def.examples, Label::Appeal(category));
        Some(intent)
    }

    fn chatter(&mut self, file: &SourceFile, def: ChatterFile) -> ChatterParts {
        self.rule_names.clear();
        self.read_lists(file, &def.lists);
        let patterns = def
            .pattern
            .iter()
            .map(|p| self.pattern(file, p, PatternKind::Chatter))
            .collect();
        let help = self.keywords(file, &def.help).into_iter().map(|(k, _)| k).collect();
        for word in &def.negation.words {
            self.names_a_list(file, word, "a negation word");
        }
        let negators = def
            .negation
            .words
            .iter()
            .map(|w| self.normalizer.normalize(w.get_ref()).text)
            .collect();
        self.examples(file, &def.examples, Label::None);
        (patterns, help, negators, def.negation.scope, def.settings)
    }
}

/// The list a word of a pattern names (`"@name"`), if it names one. A word such as `@所有人` (a mention of
/// everyone in a group chat) is a word, not a name.
fn list_name(word: &Spanned<String>) -> Option<&str> {
    word.get_ref()
        .trim()
        .strip_prefix('@')
        .filter(|name| is_list_name(name))
}

fn is_list_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_rejections_never_reject_what_is_there() {
        let text = "老板不给运费 已经三个月了";
        let chars = CharSet::of(text);
        for word in ["运费", "不给", "三个月", "了", "老板不给运费"] {
            assert!(chars.may_hold(CharSet::ends(word)), "{word}");
        }
        // Only the ends are kept: a word whose ends are in the text passes, and the search of the text decides.
        assert!(chars.may_hold(CharSet::ends("老板给运费")));
        let absent = ["工伤认定", "着火", "救命", "高速", "扣分", "医院", "押金", "平台"];
        assert!(
            absent.iter().filter(|w| chars.may_hold(CharSet::ends(w))).count() < absent.len() / 2,
            "most words of other characters are ruled out"
        );

        let message = signature([3, 17, 420, 9000]);
        assert_ne!(signature([420, 12_000]) & message, 0, "a word in common");
        let others: Vec<u64> = (10_000..10_200).map(|w| signature([w])).collect();
        assert!(
            others.iter().filter(|&&s| s & message != 0).count() < 40,
            "most single words not in the message are ruled out"
        );
    }

    #[test]
    fn postings_sort_by_kind_then_intent_then_index() {
        let mut postings = [
            Posting::new(RuleKind::Help, 0, 1),
            Posting::new(RuleKind::Phrase, 2, 0),
            Posting::new(RuleKind::Keyword, 3, 7),
            Posting::new(RuleKind::Keyword, 3, 2),
            Posting::new(RuleKind::Keyword, 1, 900),
            Posting::new(RuleKind::Chatter, 0, 65_535),
        ];
        postings.sort_unstable();
        let unpacked: Vec<(u16, usize)> = postings.iter().map(|p| (p.intent(), p.index())).collect();
        assert_eq!(unpacked, [(1, 900), (3, 2), (3, 7), (2, 0), (0, 65_535), (0, 1)]);
        let (first, end) = Posting::bounds(RuleKind::Keyword);
        assert!(postings[..3].iter().all(|&p| first <= p && p < end));
        assert!(postings[3..].iter().all(|&p| p >= end));
    }

    #[test]
    fn the_word_trie_finds_every_word_at_a_place_shortest_first() {
        let words = ["事故", "事故车", "车", "着火", "g5", "120"].map(String::from);
        let index = WordIndex::new(&words);
        let text = "g5事故车着火打120";
        let found_at = |from: usize| {
            let mut found = Vec::new();
            index.walk(text, from, |word, end| found.push((words[word as usize].as_str(), end)));
            found
        };
        assert_eq!(found_at(0), [("g5", 2)]);
        assert_eq!(found_at(2), [("事故", 8), ("事故车", 11)]);
        assert_eq!(found_at(5), [], "故 starts no word");
        assert_eq!(found_at(8), [("车", 11)]);
        assert_eq!(found_at(text.len() - 3), [("120", text.len())]);
        // The rule word spelled exactly `text`.
        let spelled = |text: &str| {
            let mut found = None;
            index.walk(text, 0, |word, end| {
                found = found.or((end == text.len()).then_some(word))
            });
            found
        };
        assert_eq!(spelled("事故车"), Some(1));
        assert_eq!(spelled("事故车着"), None);
        assert_eq!(spelled("事"), None, "the start of a word is no word");
    }
}
