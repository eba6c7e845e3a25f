//! Scoring one segmented message against the compiled rules.
//!
//! A category's score is its strongest keyword, plus a fraction of each further keyword, plus the phrase rules
//! that fired, minus its exclusions. Chatter patterns (ads, load offers, road reports, reassurance) take from
//! every category; a plea for help takes back from the chatter penalty, except for patterns such as ads
//! that no plea can redeem.

use std::cell::{Cell, OnceCell};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::normalize::{is_han, is_punctuation};
use super::rules::{signature, CharSet, Keyword, Onward, Pattern, Posting, RuleKind, RuleSet, WordId, WordIndex};
use super::taxonomy::{Category, Priority};

/// One segment of the normalized text.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    pub text: &'a str,
    pub start: usize,
    /// Position among content tokens (not stop words, spaces or punctuation): windows are measured in it.
    pub pos: u32,
    /// Spaces and punctuation: negation does not reach across them.
    pub is_break: bool,
    /// What the dictionaries and the rules know the token's text as.
    pub marks: Marks,
}

/// What a word is known as, looked up once for each token: a stop word, a negator (没, 不是…), the name of
/// a freight platform or of a highway, a word the model learned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    pub stop: bool,
    pub negator: bool,
    pub platform: bool,
    pub highway: bool,
    /// The word's row in the model (see [`super::model::Trained`]).
    pub learned: Option<u32>,
    /// Where the rule words starting at the word stand at its end (see [`walked`]).
    pub walked: Walked,
}

/// What a walk of the rule words over a word's own text finds, worked out once for each word of the
/// vocabulary, so that a token of it needs no walk of its own characters: most tokens are such words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Walked {
    /// Not worked out: a word outside the vocabulary, or one with rule words inside it. Walk it.
    #[default]
    Unknown,
    /// No rule word starts at the word, nor lies inside it.
    Nothing,
    /// The rule words starting at the word go on from there; none ends or lies inside it.
    At(Onward),
}

/// What [`find_words`] finds within `word` as a token of its own: [`Walked::Unknown`] when that is more than
/// the word itself (a rule word ending inside it, or the head of it as a compound), which the full walk of
/// the token handles.
pub fn walked(index: &WordIndex, word: &str) -> Walked {
    let alone = [Token {
        text: word,
        start: 0,
        pos: 0,
        is_break: false,
        marks: Marks::default(),
    }];
    let inside = find_words(index, word, &alone)
        .iter()
        .any(|h| (h.start, h.end as usize) != (0, word.len()));
    match (inside, index.node_of(word)) {
        (true, _) => Walked::Unknown,
        (false, Some(node)) => Walked::At(index.onward(node)),
        (false, None) => Walked::Nothing,
    }
}

thread_local! {
    /// The bits of [`Matcher::found`], kept from one message to the next: a message finds a few dozen of the
    /// thousands of rule words, and clearing the words of those is cheaper than a new table zeroed whole.
    static FOUND: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// A rule word found at a token boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    word: WordId,
    token: u32,
    pos: u32,
    /// Byte range in the normalized text.
    start: u32,
    end: u32,
}

/// Why a message got its label: one rule that fired, the words that made it fire, and what it weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub rule: Arc<str>,
    pub words: Vec<Arc<str>>,
    pub weight: f32,
}

pub struct CategoryScore {
    pub category: Category,
    pub score: f32,
    /// Whether a keyword that decides on its own, or a phrase rule, fired: weak words alone are not enough
    /// to put an urgent category ahead of the strongest one.
    pub decisive: bool,
    /// Whether the rules found words for the category, rather than the model alone.
    pub ruled: bool,
}

pub struct Scores {
    /// Categories with any evidence, best first.
    pub categories: Vec<CategoryScore>,
    /// Chatter, help and negation evidence, which bears on every category.
    pub shared: Vec<Evidence>,
    /// What the chatter found takes from every category, those without words of their own included: the
    /// model may speak for them, and chatter weighs against its word as against the rules'.
    pub penalty: Penalty,
}

/// The chatter penalty of a message, after pleas for help.
#[derive(Debug, Clone, Copy)]
pub struct Penalty {
    amount: f32,
    urgent_factor: f32,
}

impl Penalty {
    /// What chatter takes from `category`'s score. Missing an urgent appeal costs far more than a false
    /// alarm: chatter weighs less against it.
    pub fn of(self, category: Category) -> f32 {
        match category.is_urgent() {
            true => self.amount * self.urgent_factor,
            false => self.amount,
        }
    }
}

/// What one category's rules make of the message, before the chatter penalty.
struct Judgement {
    score: f32,
    decisive: bool,
}

/// A rule of a category that bore on the message, kept while scoring: the evidence of the categories shown is
/// made of these, without judging them again.
struct Fired<'r> {
    category: Category,
    rule: &'r Arc<str>,
    /// `Matcher::fired_words[words]`.
    words: std::ops::Range<usize>,
    weight: f32,
}

/// Rules that a message's words could make fire: their postings, sorted by kind, then intent, then index.
struct Candidates(Vec<Posting>);

impl Candidates {
    fn new(postings: impl Iterator<Item = Posting>) -> Candidates {
        let mut list: Vec<Posting> = postings.collect();
        list.sort_unstable();
        list.dedup();
        Candidates(list)
    }

    /// The candidates of one kind.
    fn of(&self, kind: RuleKind) -> &[Posting] {
        let (first, end) = Posting::bounds(kind);
        let from = self.0.partition_point(|&p| p < first);
        let to = self.0.partition_point(|&p| p < end);
        &self.0[from..to]
    }

    /// The indices of `intent`'s rules of one kind.
    fn of_intent(&self, kind: RuleKind, intent: u16) -> impl Iterator<Item = usize> + '_ {
        let list = self.of(kind);
        let from = list.partition_point(|&p| p.intent() < intent);
        list[from..]
            .iter()
            .take_while(move |p| p.intent() == intent)
            .map(|p| p.index())
    }
}

pub struct Matcher<'r, 't> {
    rules: &'r RuleSet,
    text: &'t str,
    tokens: &'t [Token<'t>],
    hits: Vec<Hit>,
    /// One bit per rule word, set for the words found: most words a rule asks about are not in the message,
    /// and this says so without searching the hits.
    found: Vec<u64>,
    /// The [`signature`] of the words found.
    signature: u64,
    /// The rules that use a word found in the message, by kind, sorted: only they can fire.
    candidates: Candidates,
    /// The characters of the text, gathered when a pattern's `unless` words are first looked for.
    chars: OnceCell<CharSet>,
    /// Pleas for help, computed once in [`Matcher::score`].
    help: f32,
    /// The rules of every category that bore on the message, in the order their evidence is shown, and the
    /// words that made them fire.
    fired: Vec<Fired<'r>>,
    fired_words: Vec<WordId>,
}

impl<'r, 't> Matcher<'r, 't> {
    pub fn new(rules: &'r RuleSet, text: &'t str, tokens: &'t [Token<'t>]) -> Self {
        let mut hits = find_words(&rules.index, text, tokens);
        hits.sort_unstable();
        hits.dedup();
        let mut found = FOUND.take();
        found.resize(found.len().max(rules.words.len().div_ceil(64)), 0);
        for h in &hits {
            found[h.word as usize / 64] |= 1 << (h.word % 64);
        }
        let signature = signature(hits.iter().map(|h| h.word));
        let candidates = Candidates::new(
            hits.chunk_by(|a, b| a.word == b.word)
                .flat_map(|h| rules.postings.of(h[0].word))
                .filter(|&&(_, needed)| needed & signature != 0)
                .map(|&(posting, _)| posting),
        );
        Matcher {
            rules,
            text,
            tokens,
            signature,
            hits,
            found,
            candidates,
            chars: OnceCell::new(),
            help: 0.0,
            fired: Vec::new(),
            fired_words: Vec::new(),
        }
    }

    fn of(&self, word: WordId) -> &[Hit] {
        if !self.has(word) {
            return &[];
        }
        let from = self.hits.partition_point(|h| h.word < word);
        let to = self.hits.partition_point(|h| h.word <= word);
        &self.hits[from..to]
    }

    fn has(&self, word: WordId) -> bool {
        self.found[word as usize / 64] & (1 << (word % 64)) != 0
    }

    fn text(&self, word: WordId) -> Arc<str> {
        self.rules.words[word as usize].clone()
    }

    /// Whether a negator (没, 不是…) stands shortly before the token, with no break in between.
    fn negated(&self, token: u32) -> bool {
        let mut seen = 0;
        let before = &self.tokens[..token as usize];
        for (i, t) in before.iter().enumerate().rev() {
            if t.is_break {
                return false;
            }
            // 没了 is "gone" (油箱盖没了), not "not".
            let gone = before.get(i + 1).is_some_and(|next| next.text == "了");
            if t.marks.negator && !gone {
                return true;
            }
            if !t.marks.stop {
                seen += 1;
                if seen >= self.rules.negation_scope {
                    return false;
                }
            }
        }
        false
    }

    /// The keywords found, strongest first, and those found only under negation.
    fn keywords<'k>(&self, keywords: impl Iterator<Item = &'k Keyword>) -> (Vec<(f32, WordId)>, Vec<WordId>) {
        let mut found = Vec::new();
        let mut negated = Vec::new();
        for k in keywords {
            let hits = self.of(k.word);
            if hits.is_empty() {
                continue;
            }
            if k.negatable && hits.iter().all(|h| self.negated(h.token)) {
                negated.push(k.word);
            } else {
                found.push((k.weight, k.word));
            }
        }
        // A keyword found only inside a longer one of the same list (退押金 in 不退押金) adds nothing.
        if found.len() < 2 {
            return (found, negated);
        }
        let spans: Vec<(u32, u32)> = found
            .iter()
            .flat_map(|&(_, w)| self.of(w).iter().map(|h| (h.start, h.end)))
            .collect();
        let inside = |h: &Hit| {
            spans
                .iter()
                .any(|&(s, e)| s <= h.start && h.end <= e && e - s > h.end - h.start)
        };
        found.retain(|&(_, w)| !self.of(w).iter().all(inside));
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        (found, negated)
    }

    /// The words that made a pattern fire, or `None`.
    fn fires(&self, p: &Pattern) -> Option<Vec<WordId>> {
        // Most candidates lack a word of some group: that is known from the bits of the words found alone,
        // and most often from their signature.
        if p.groups().any(|(_, signature)| signature & self.signature == 0) {
            return None;
        }
        if !p.all.iter().all(|group| group.iter().any(|&w| self.has(w))) {
            return None;
        }
        let mut words = Vec::new();
        if !p.any.is_empty() {
            // "不是开玩笑" is no joke: a negated word does not make the pattern fire.
            let present = |w: WordId| self.of(w).iter().any(|h| !self.negated(h.token));
            words.push(*p.any.iter().find(|&&w| present(w))?);
        }
        if let Some((first, rest)) = p.all.split_first() {
            // The first word of each group found within the window of `pos`.
            let near = |group: &[WordId], pos: u32| {
                group
                    .iter()
                    .copied()
                    .find(|&w| self.of(w).iter().any(|h| h.pos.abs_diff(pos) <= p.window))
            };
            let (w0, pos) = first
                .iter()
                .flat_map(|&w| self.of(w).iter().map(move |h| (w, h.pos)))
                .find(|&(_, pos)| rest.iter().all(|g| near(g, pos).is_some()))?;
            words.push(w0);
            words.extend(rest.iter().filter_map(|g| near(g, pos)));
        }
        // A word that only vetoes is safe to find anywhere, word boundary or not (工伤 in 工伤认定).
        if !p.unless.is_empty() {
            let chars = self.chars.get_or_init(|| CharSet::of(self.text));
            let vetoed = p
                .unless
                .iter()
                .zip(&p.unless_ends)
                .any(|(&w, &ends)| chars.may_hold(ends) && self.text.contains(&*self.rules.words[w as usize]));
            if vetoed {
                return None;
            }
        }
        Some(words)
    }

    fn evidence_of(&self, rule: &Arc<str>, words: &[WordId], weight: f32) -> Evidence {
        Evidence {
            rule: rule.clone(),
            words: words.iter().map(|&w| self.text(w)).collect(),
            weight: round(weight),
        }
    }

    /// Scores every category with evidence. Evidence itself is only built for the categories shown, by
    /// [`Matcher::evidence`]: most of the work of a message is not spent on text nobody reads.
    pub fn score(&mut self) -> Scores {
        let rules = self.rules;
        let settings = &rules.settings;
        let mut shared = Vec::new();

        let pleas = self
            .candidates
            .of(RuleKind::Help)
            .iter()
            .map(|p| &rules.help[p.index()]);
        let (pleas, help_negated) = self.keywords(pleas);
        let help: f32 = pleas.iter().map(|(w, _)| w).sum::<f32>().min(settings.help_cap);
        if help > 0.0 {
            let words: Vec<WordId> = pleas.iter().map(|(_, w)| *w).collect();
            shared.push(self.evidence_of(&rules.help_rule, &words, help));
        }
        if !help_negated.is_empty() {
            shared.push(self.evidence_of(&rules.help_negated_rule, &help_negated, 0.0));
        }

        let (mut hard, mut soft) = (0.0, 0.0);
        let chatter = self
            .candidates
            .of(RuleKind::Chatter)
            .iter()
            .map(|p| &rules.chatter[p.index()]);
        for p in chatter {
            if let Some(words) = self.fires(p) {
                *(if p.help_cancels { &mut soft } else { &mut hard }) += p.weight;
                shared.push(self.evidence_of(&p.rule, &words, -p.weight));
            }
        }
        self.help = help;
        let penalty = Penalty {
            amount: hard + (soft - help).max(0.0),
            urgent_factor: settings.urgent_penalty_factor,
        };

        let mut with_evidence: Vec<u16> = self
            .candidates
            .of(RuleKind::Keyword)
            .iter()
            .chain(self.candidates.of(RuleKind::Phrase))
            .map(|p| p.intent())
            .collect();
        with_evidence.sort_unstable();
        with_evidence.dedup();
        let (mut fired, mut fired_words) = (Vec::new(), Vec::new());
        let mut categories: Vec<CategoryScore> = with_evidence
            .into_iter()
            .filter_map(|i| {
                let judgement = self.judge(i, &mut fired, &mut fired_words)?;
                let category = rules.intents[i as usize].category;
                Some(CategoryScore {
                    category,
                    score: round(judgement.score - penalty.of(category)),
                    decisive: judgement.decisive,
                    ruled: true,
                })
            })
            .collect();
        self.fired = fired;
        self.fired_words = fired_words;
        // Stable sort: equal scores keep taxonomy order, most urgent first.
        categories.sort_by(|a, b| b.score.total_cmp(&a.score));
        Scores {
            categories,
            shared,
            penalty,
        }
    }

    /// What bears on one category: its keywords, phrases and exclusions that fired.
    pub fn evidence(&self, category: Category) -> impl Iterator<Item = Evidence> + '_ {
        self.fired
            .iter()
            .filter(move |f| f.category == category)
            .map(|f| self.evidence_of(f.rule, &self.fired_words[f.words.clone()], f.weight))
    }

    /// One category's score before the chatter penalty, or `None` when nothing speaks for it; the rules that
    /// bore on it are pushed to `fired`.
    fn judge(&self, i: u16, fired: &mut Vec<Fired<'r>>, fired_words: &mut Vec<WordId>) -> Option<Judgement> {
        let rules = self.rules;
        let settings = &rules.settings;
        let intent = &rules.intents[i as usize];
        let mut record = |rule: &'r Arc<str>, words: &[WordId], weight: f32| {
            let from = fired_words.len();
            fired_words.extend_from_slice(words);
            fired.push(Fired {
                category: intent.category,
                rule,
                words: from..fired_words.len(),
                weight,
            });
        };
        let keywords = self
            .candidates
            .of_intent(RuleKind::Keyword, i)
            .map(|k| &intent.keywords[k]);
        let (found, negated) = self.keywords(keywords);
        let mut score = 0.0;
        let mut decisive = found.first().is_some_and(|&(weight, _)| weight >= settings.threshold);
        for (n, &(weight, word)) in found.iter().enumerate() {
            let counted = if n == 0 {
                weight
            } else {
                weight * settings.extra_keyword_factor
            };
            score += counted;
            record(&intent.keyword_rule, &[word], counted);
        }
        if !negated.is_empty() {
            record(&intent.negated_rule, &negated, 0.0);
        }
        let phrases = self
            .candidates
            .of_intent(RuleKind::Phrase, i)
            .map(|k| &intent.phrases[k]);
        for p in phrases {
            if let Some(words) = self.fires(p) {
                score += p.weight;
                decisive = true;
                record(&p.rule, &words, p.weight);
            }
        }
        if score <= 0.0 {
            return None;
        }
        let excludes = self
            .candidates
            .of_intent(RuleKind::Exclude, i)
            .map(|k| &intent.excludes[k]);
        for p in excludes {
            if let Some(words) = self.fires(p) {
                // A context that says "not this category" leaves no evidence decisive.
                decisive = false;
                score -= p.weight;
                record(&p.rule, &words, -p.weight);
            }
        }
        if score > 0.0 && self.help > 0.0 {
            score += settings.help_boost * self.help.min(1.0);
        }
        Some(Judgement { score, decisive })
    }

    /// The priority of a ticket in `category`: its default, raised by the urgency words present.
    pub fn priority(&self, category: Category) -> (Priority, Option<Evidence>) {
        let intent = self.rules.intent(category);
        let mut priority = intent.priority;
        let mut evidence = None;
        for u in &intent.urgent {
            let words: Vec<WordId> = u.words.iter().copied().filter(|&w| self.has(w)).collect();
            if !words.is_empty() && u.priority < priority {
                priority = u.priority;
                evidence = Some(self.evidence_of(&u.rule, &words, 0.0));
            }
        }
        (priority, evidence)
    }
}

impl Drop for Matcher<'_, '_> {
    /// Hands the table of words found back for the next message, cleared.
    fn drop(&mut self) {
        let mut found = std::mem::take(&mut self.found);
        for h in &self.hits {
            found[h.word as usize / 64] = 0;
        }
        FOUND.set(found);
    }
}

/// Particles that segmentation sometimes glues to a word (活不下去了): they do not hide it.
const TRAILING_PARTICLES: &[char] = &['了', '啦', '啊', '呀', '吧', '嘛', '呢', '哦', '的', '么'];

/// The rule words in the text where segmentation agrees they are words, found by walking the word trie from
/// each token.
///
/// A word counts where it spans whole tokens; where only particles follow it inside its last token (活不下去
/// in 活不下去了); and where it ends a compound of which it is the head (开锅 in 水箱开锅), unless the compound
/// is a rule word of its own (着火 does not count in 打不着火). It never counts as the start of a longer word:
/// 事故 is not in 事故车.
fn find_words(index: &WordIndex, text: &str, tokens: &[Token<'_>]) -> Vec<Hit> {
    // The token holding byte `at`, and where a token ends.
    let token_of = |at: usize| tokens.partition_point(|t| t.start <= at) - 1;
    let token_end = |t: usize| tokens.get(t + 1).map_or(text.len(), |next| next.start);
    let mut hits = Vec::with_capacity(tokens.len());
    for (first, t) in tokens.iter().enumerate() {
        let mut hit = |word: WordId, start: usize, end: usize| {
            hits.push(Hit {
                word,
                token: first as u32,
                pos: t.pos,
                start: start as u32,
                end: end as u32,
            })
        };
        let own_end = token_end(first);
        let mut is_word = false;
        let mut each = |word: WordId, end: usize| {
            is_word |= end == own_end;
            let last_end = token_end(token_of(end - 1));
            // Whole tokens, or whole tokens but for the particles that close the last one.
            let counts = end == last_end
                || (text[end..last_end].chars().all(|c| TRAILING_PARTICLES.contains(&c))
                    && text[t.start..end].chars().nth(1).is_some());
            if counts {
                hit(word, t.start, end);
            }
        };
        match t.marks.walked {
            Walked::Nothing => continue,
            // Nothing ends inside the word, and it is the head of no compound: on from its end.
            Walked::At(onward) => {
                if let Some(word) = onward.word {
                    each(word, own_end);
                }
                if text[own_end..].chars().next().is_some_and(|c| onward.may_go_on(c)) {
                    index.walk_past(onward.node, text, own_end, &mut each);
                }
                continue;
            }
            Walked::Unknown => index.walk(text, t.start, &mut each),
        }
        // The heads of a compound of three characters or more that is no rule word itself: its endings of
        // two characters or more.
        let compound = &text[t.start..own_end];
        if is_word || compound.chars().nth(2).is_none() {
            continue;
        }
        let heads = compound.char_indices().skip(1).map(|(at, _)| t.start + at);
        for start in heads.take_while(|&at| text[at..own_end].chars().nth(1).is_some()) {
            index.walk(&text[..own_end], start, |word, end| {
                if end == own_end {
                    hit(word, start, end);
                }
            });
        }
    }
    hits
}

pub fn round(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

/// Whether a token is only spaces and punctuation.
pub fn is_break(token: &str) -> bool {
    // Most tokens start with a Chinese character.
    !token.starts_with(is_han) && token.chars().all(|c| c.is_whitespace() || is_punctuation(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE_WORDS: &[&str] = &[
        "运费",
        "不给运费",
        "不给",
        "开锅",
        "着火",
        "打不着火",
        "活不下去",
        "司机之家",
        "压车",
    ];

    fn index() -> WordIndex {
        WordIndex::new(&RULE_WORDS.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    /// The tokens of a text whose words are parted by `/`, each marked with what is worked out of its word
    /// when `worked_out`, as the vocabulary marks them.
    fn tokens(marked: &str, index: &WordIndex, worked_out: bool) -> (String, Vec<Token<'static>>) {
        let text: &'static str = Box::leak(marked.replace('/', "").into_boxed_str());
        let mut at = 0;
        let mut tokens = Vec::new();
        for (pos, word) in marked.split('/').enumerate() {
            let mut marks = Marks::default();
            if worked_out {
                marks.walked = walked(index, word);
            }
            tokens.push(Token {
                text: &text[at..at + word.len()],
                start: at,
                pos: pos as u32,
                is_break: false,
                marks,
            });
            at += word.len();
        }
        (text.to_owned(), tokens)
    }

    fn found(marked: &str, worked_out: bool) -> Vec<String> {
        let index = index();
        let (text, tokens) = tokens(marked, &index, worked_out);
        let hits = find_words(&index, &text, &tokens);
        let mut words: Vec<String> = hits
            .iter()
            .map(|h| text[h.start as usize..h.end as usize].to_owned())
            .collect();
        words.sort_unstable();
        words
    }

    #[test]
    fn what_is_worked_out_of_a_word_is_what_walking_it_finds() {
        let index = index();
        assert_eq!(
            walked(&index, "运费"),
            Walked::At(index.onward(index.node_of("运费").unwrap()))
        );
        assert_eq!(
            walked(&index, "不给"),
            Walked::At(index.onward(index.node_of("不给").unwrap())),
            "a word and the start of another"
        );
        assert_eq!(walked(&index, "你好"), Walked::Nothing);
        assert_eq!(
            walked(&index, "活不下去了"),
            Walked::Unknown,
            "a rule word ends inside it"
        );
        assert_eq!(walked(&index, "水箱开锅"), Walked::Unknown, "a rule word is its head");
        for marked in [
            "不给/运费",
            "老板/不给/运费/三个月",
            "水箱开锅/了",
            "车/打不着火/了",
            "活不下去了",
            "司机/之家/没/车位",
            "压/车/两天",
            "你好/运费/不给",
        ] {
            assert_eq!(found(marked, true), found(marked, false), "{marked}");
        }
        assert_eq!(found("老板/不给/运费", true), ["不给", "不给运费", "运费"]);
        assert_eq!(found("水箱开锅/了", true), ["开锅"]);
        assert_eq!(found("车/打不着火/了", true), ["打不着火"]);
    }
}
