//! Scoring one segmented message against the compiled rules.
//!
//! A category's score is its strongest keyword, plus a fraction of each further keyword, plus the phrase rules
//! that fired, minus its exclusions. Chatter patterns (ads, load offers, road reports, reassurance) take from
//! every category; a plea for help takes back from the chatter penalty, except for patterns such as ads
//! that no plea can redeem.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::normalize::{is_han, is_punctuation};
use super::rules::{Keyword, Pattern, Posting, RuleSet, WordId};
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
}

/// What one category's rules make of the message, before the chatter penalty.
struct Judgement {
    score: f32,
    decisive: bool,
}

/// Rules that a message's words could make fire; per category, as (intent, index) sorted by intent.
#[derive(Default)]
struct Candidates {
    keywords: Vec<(u16, u16)>,
    phrases: Vec<(u16, u16)>,
    excludes: Vec<(u16, u16)>,
    chatter: Vec<u16>,
    help: Vec<u16>,
}

impl Candidates {
    fn new(postings: impl Iterator<Item = Posting>) -> Candidates {
        let mut c = Candidates::default();
        for p in postings {
            match p {
                Posting::Keyword { intent, index } => c.keywords.push((intent, index)),
                Posting::Phrase { intent, index } => c.phrases.push((intent, index)),
                Posting::Exclude { intent, index } => c.excludes.push((intent, index)),
                Posting::Chatter(index) => c.chatter.push(index),
                Posting::Help(index) => c.help.push(index),
            }
        }
        for list in [&mut c.keywords, &mut c.phrases, &mut c.excludes] {
            list.sort_unstable();
            list.dedup();
        }
        for list in [&mut c.chatter, &mut c.help] {
            list.sort_unstable();
            list.dedup();
        }
        c
    }
}

/// The indices of `intent`'s rules in a list sorted by intent.
fn of_intent(list: &[(u16, u16)], intent: u16) -> impl Iterator<Item = usize> + '_ {
    let from = list.partition_point(|&(i, _)| i < intent);
    list[from..]
        .iter()
        .take_while(move |&&(i, _)| i == intent)
        .map(|&(_, index)| index as usize)
}

pub struct Matcher<'r, 't> {
    rules: &'r RuleSet,
    text: &'t str,
    tokens: &'t [Token<'t>],
    hits: Vec<Hit>,
    /// One bit per rule word, set for the words found: most words a rule asks about are not in the message,
    /// and this says so without searching the hits.
    found: Vec<u64>,
    /// The rules that use a word found in the message, by kind, sorted: only they can fire.
    candidates: Candidates,
    /// Pleas for help and the chatter penalty, computed once in [`Matcher::score`].
    help: f32,
    penalty: f32,
}

impl<'r, 't> Matcher<'r, 't> {
    pub fn new(rules: &'r RuleSet, text: &'t str, tokens: &'t [Token<'t>]) -> Self {
        let mut hits = find_words(rules, text, tokens);
        hits.sort_unstable();
        hits.dedup();
        let mut found = vec![0u64; rules.words.len().div_ceil(64)];
        for h in &hits {
            found[h.word as usize / 64] |= 1 << (h.word % 64);
        }
        let candidates = Candidates::new(
            hits.chunk_by(|a, b| a.word == b.word)
                .flat_map(|h| rules.postings[h[0].word as usize].iter().copied()),
        );
        Matcher {
            rules,
            text,
            tokens,
            hits,
            found,
            candidates,
            help: 0.0,
            penalty: 0.0,
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
        // Most candidates lack a word of some group: that is known from the bits of the words found alone.
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
        if p.unless
            .iter()
            .any(|&w| self.text.contains(&*self.rules.words[w as usize]))
        {
            return None;
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

        let pleas = self.candidates.help.iter().map(|&i| &rules.help[i as usize]);
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
        let chatter = self.candidates.chatter.iter().map(|&i| &rules.chatter[i as usize]);
        for p in chatter {
            if let Some(words) = self.fires(p) {
                *(if p.help_cancels { &mut soft } else { &mut hard }) += p.weight;
                shared.push(self.evidence_of(&p.rule, &words, -p.weight));
            }
        }
        self.help = help;
        self.penalty = hard + (soft - help).max(0.0);

        let mut with_evidence: Vec<u16> = self
            .candidates
            .keywords
            .iter()
            .chain(&self.candidates.phrases)
            .map(|&(intent, _)| intent)
            .collect();
        with_evidence.sort_unstable();
        with_evidence.dedup();
        let mut categories: Vec<CategoryScore> = with_evidence
            .into_iter()
            .filter_map(|i| {
                let judgement = self.judge(i, None)?;
                let category = rules.intents[i as usize].category;
                Some(CategoryScore {
                    category,
                    score: round(self.after_penalty(category, judgement.score)),
                    decisive: judgement.decisive,
                    ruled: true,
                })
            })
            .collect();
        // Stable sort: equal scores keep taxonomy order, most urgent first.
        categories.sort_by(|a, b| b.score.total_cmp(&a.score));
        Scores { categories, shared }
    }

    /// What bears on one category: its keywords, phrases and exclusions that fired.
    pub fn evidence(&self, category: Category) -> Vec<Evidence> {
        let mut evidence = Vec::new();
        self.judge(category as u16, Some(&mut evidence));
        evidence
    }

    fn after_penalty(&self, category: Category, score: f32) -> f32 {
        // Missing an urgent appeal costs far more than a false alarm: chatter weighs less against it.
        let factor = if category.is_urgent() {
            self.rules.settings.urgent_penalty_factor
        } else {
            1.0
        };
        score - self.penalty * factor
    }

    /// One category's score before the chatter penalty, or `None` when nothing speaks for it.
    fn judge(&self, i: u16, mut evidence: Option<&mut Vec<Evidence>>) -> Option<Judgement> {
        let settings = &self.rules.settings;
        let intent = &self.rules.intents[i as usize];
        let keywords = of_intent(&self.candidates.keywords, i).map(|k| &intent.keywords[k]);
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
            if let Some(ev) = evidence.as_deref_mut() {
                ev.push(self.evidence_of(&intent.keyword_rule, &[word], counted));
            }
        }
        if let (Some(ev), false) = (evidence.as_deref_mut(), negated.is_empty()) {
            ev.push(self.evidence_of(&intent.negated_rule, &negated, 0.0));
        }
        let phrases = of_intent(&self.candidates.phrases, i).map(|k| &intent.phrases[k]);
        for p in phrases {
            if let Some(words) = self.fires(p) {
                score += p.weight;
                decisive = true;
                if let Some(ev) = evidence.as_deref_mut() {
                    ev.push(self.evidence_of(&p.rule, &words, p.weight));
                }
            }
        }
        if score <= 0.0 {
            return None;
        }
        let excludes = of_intent(&self.candidates.excludes, i).map(|k| &intent.excludes[k]);
        for p in excludes {
            if let Some(words) = self.fires(p) {
                // A context that says "not this category" leaves no evidence decisive.
                decisive = false;
                score -= p.weight;
                if let Some(ev) = evidence.as_deref_mut() {
                    ev.push(self.evidence_of(&p.rule, &words, -p.weight));
                }
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

/// Particles that segmentation sometimes glues to a word (活不下去了): they do not hide it.
const TRAILING_PARTICLES: &[char] = &['了', '啦', '啊', '呀', '吧', '嘛', '呢', '哦', '的', '么'];

/// The rule words in the text where segmentation agrees they are words, found by walking the word trie from
/// each token.
///
/// A word counts where it spans whole tokens; where only particles follow it inside its last token (活不下去
/// in 活不下去了); and where it ends a compound of which it is the head (开锅 in 水箱开锅), unless the compound
/// is a rule word of its own (着火 does not count in 打不着火). It never counts as the start of a longer word:
/// 事故 is not in 事故车.
fn find_words(rules: &RuleSet, text: &str, tokens: &[Token<'_>]) -> Vec<Hit> {
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
        rules.index.walk(text, t.start, |word, end| {
            is_word |= end == own_end;
            let last_end = token_end(token_of(end - 1));
            // Whole tokens, or whole tokens but for the particles that close the last one.
            let counts = end == last_end
                || (text[end..last_end].chars().all(|c| TRAILING_PARTICLES.contains(&c))
                    && text[t.start..end].chars().nth(1).is_some());
            if counts {
                hit(word, t.start, end);
            }
        });
        // The heads of a compound of three characters or more that is no rule word itself: its endings of
        // two characters or more.
        let compound = &text[t.start..own_end];
        if is_word || compound.chars().nth(2).is_none() {
            continue;
        }
        let heads = compound.char_indices().skip(1).map(|(at, _)| t.start + at);
        for start in heads.take_while(|&at| text[at..own_end].chars().nth(1).is_some()) {
            rules.index.walk(&text[..own_end], start, |word, end| {
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
