//! The appeal classifier: normalize → segment with jieba → match intent rules → label, priority, evidence.
//!
//! Pure and synchronous: no I/O after loading, safe to share between threads.

pub mod entities;
pub mod lexicon;
pub mod matcher;
pub mod normalize;
pub mod rules;
pub mod source;
pub mod taxonomy;

use std::sync::Arc;

use serde::Serialize;

pub use entities::Entity;
pub use matcher::Evidence;
pub use normalize::{Truncation, MAX_CHARS};
pub use rules::{Example, RuleSet};
pub use source::{RuleError, RuleErrors, Sources};
pub use taxonomy::{Category, Label, Priority};

use lexicon::Lexicon;
use matcher::{is_break, round, Matcher, Scores, Token};
use normalize::{Normalizer, Synonyms};

/// What the classifier makes of one message.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub label: Label,
    /// `null` for chatter.
    pub priority: Option<Priority>,
    /// The winning category's score after chatter penalties; an appeal needs the configured threshold.
    pub score: f32,
    /// Other matters in the same message that would have made an appeal on their own.
    pub secondary: Vec<Category>,
    pub evidence: Vec<Evidence>,
    pub entities: Vec<Entity>,
    /// Present when the message was longer than [`MAX_CHARS`] and only its start was classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// A classification with the intermediate steps, for people reading why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub normalized: String,
    pub tokens: Vec<String>,
    /// Every category with evidence and its score, best first.
    pub scores: Vec<(Category, f32)>,
    #[serde(flatten)]
    pub classification: Classification,
}

pub struct Classifier {
    normalizer: Normalizer,
    lexicon: Arc<Lexicon>,
    rules: RuleSet,
}

impl Classifier {
    /// The classifier with the rules and dictionaries built into the binary.
    pub fn builtin() -> Result<Classifier, RuleErrors> {
        Classifier::from_sources(&Sources::builtin())
    }

    pub fn from_sources(sources: &Sources) -> Result<Classifier, RuleErrors> {
        let mut errors = Vec::new();
        let mut lexicon = Lexicon::load(&sources.dictionaries, &mut errors);
        let synonyms = std::mem::replace(&mut lexicon.synonyms, Synonyms::new(Vec::new()));
        let normalizer = Normalizer::new(synonyms);
        let rules = RuleSet::compile(&sources.intents, &normalizer, &mut errors);
        match rules {
            Some(rules) if errors.is_empty() => Ok(Classifier {
                normalizer,
                lexicon: Arc::new(lexicon),
                rules,
            }),
            _ => Err(RuleErrors(errors)),
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// jieba with the dictionaries, shared with the search index so that they are loaded once.
    pub fn lexicon(&self) -> Arc<Lexicon> {
        self.lexicon.clone()
    }

    pub fn classify(&self, text: &str) -> Classification {
        self.analyze(text, |_, _, _, classification| classification)
    }

    pub fn explain(&self, text: &str) -> Explanation {
        self.analyze(text, |normalized, tokens, scores, classification| Explanation {
            normalized: normalized.to_owned(),
            tokens: tokens
                .iter()
                .filter(|t| !t.is_break)
                .map(|t| t.text.to_owned())
                .collect(),
            scores: scores.categories.iter().map(|c| (c.category, c.score)).collect(),
            classification,
        })
    }

    /// Classifies `text` and hands the intermediate steps to `finish`, which keeps what it needs.
    fn analyze<R>(&self, text: &str, finish: impl FnOnce(&str, &[Token<'_>], &Scores, Classification) -> R) -> R {
        let normalized = self.normalizer.normalize(text);
        let tokens = self.segment(&normalized.text);
        let mut matcher = Matcher::new(&self.rules, &normalized.text, &tokens);
        let scores = matcher.score();
        let threshold = self.rules.settings.threshold;

        // Several matters: the label is the most urgent one that passes; the others become secondary.
        let passing = scores.categories.iter().filter(|c| c.score >= threshold);
        let best = passing
            .clone()
            .find(|c| c.category.is_urgent() && c.decisive)
            .or_else(|| passing.clone().next());
        let mut evidence = Vec::new();
        let (label, priority, score) = match best {
            Some(best) => {
                let (priority, urgent) = matcher.priority(best.category);
                evidence.extend(urgent);
                (Label::Appeal(best.category), Some(priority), best.score)
            }
            None => (Label::None, None, scores.categories.first().map_or(0.0, |c| c.score)),
        };

        let secondary: Vec<Category> = passing
            .filter(|c| Some(c.category) != label.category())
            .map(|c| c.category)
            .collect();
        // The winner's evidence (or, for chatter, the nearest miss's), the secondaries', then what bore on all.
        let shown_first = best.or(scores.categories.first());
        let shown = shown_first
            .into_iter()
            .chain(scores.categories.iter().filter(|c| secondary.contains(&c.category)));
        for c in shown {
            evidence.extend(matcher.evidence(c.category));
        }
        evidence.extend(scores.shared.iter().cloned());

        let entities = entities::extract(
            &normalized.text,
            &tokens,
            &self.lexicon.platforms,
            &self.lexicon.highways,
        );
        let classification = Classification {
            label,
            priority,
            score: round(score),
            secondary,
            evidence,
            entities,
            truncated: normalized.truncated,
        };
        finish(&normalized.text, &tokens, &scores, classification)
    }

    /// jieba without its HMM guesser: unknown runs stay single characters, so rule words still align with
    /// token boundaries; the user dictionaries supply the field's words.
    fn segment<'t>(&self, text: &'t str) -> Vec<Token<'t>> {
        let mut pos = 0;
        let cut = self.lexicon.jieba.cut(text, false);
        let mut tokens = Vec::with_capacity(cut.len());
        for t in cut {
            let is_break = is_break(t.word);
            let is_stop = !is_break && self.lexicon.stopwords.contains(t.word);
            tokens.push(Token {
                text: t.word,
                start: t.byte_start,
                pos,
                is_break,
                is_stop,
            });
            if !is_break && !is_stop {
                pos += 1;
            }
        }
        tokens
    }

    /// Runs every example in the rule files; each failure names the file and line of the example.
    pub fn check_examples(&self) -> Vec<RuleError> {
        self.rules
            .examples
            .iter()
            .filter_map(|ex| {
                let got = self.classify(&ex.text).label;
                let ok = (got == ex.expect) == ex.should_match;
                (!ok).then(|| {
                    let wanted = if ex.should_match {
                        format!("must be {}", ex.expect)
                    } else {
                        format!("must not be {}", ex.expect)
                    };
                    RuleError {
                        file: ex.file.clone(),
                        line: ex.line,
                        message: format!("example {:?} {wanted}, got {got}", ex.text),
                    }
                })
            })
            .collect()
    }
}
