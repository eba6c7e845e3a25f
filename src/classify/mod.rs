//! The appeal classifier: normalize → segment with jieba → match intent rules → label, priority, evidence.
//!
//! Pure and synchronous: no I/O after loading, safe to share between threads.

pub mod cache;
pub mod entities;
pub mod lexicon;
pub mod matcher;
pub mod model;
pub mod normalize;
pub mod rules;
pub mod source;
pub mod taxonomy;
mod vocabulary;

use std::sync::Arc;

use jieba_rs::Jieba;
use rustc_hash::FxHashSet;
use serde::Serialize;

pub use entities::Entity;
pub use matcher::Evidence;
pub use normalize::{Truncation, MAX_CHARS};
pub use rules::{Example, RuleSet, Settings};
use source::SourceFile;
pub use source::{RuleError, RuleErrors, Sources};
pub use taxonomy::{Category, Label, Priority};

use cache::ModelCache;
use lexicon::{Dictionaries, Lexicon};
use matcher::{is_break, round, CategoryScore, Marks, Matcher, Penalty, Token};
use model::{Model, Trained, Trainer};
use normalize::Normalizer;
use vocabulary::Vocabulary;

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
    normalizer: Arc<Normalizer>,
    lexicon: Arc<Lexicon>,
    rules: Arc<RuleSet>,
    /// The words the dictionaries, the rules and the model mark, for one lookup a token.
    marks: Arc<Vocabulary>,
    /// The name of the model's evidence for each label (see [`model::slot`]).
    model_rules: Arc<[Arc<str>]>,
    /// Trained on the labelled corpus; `None` when there are no labelled messages.
    model: Option<Model>,
}

impl Classifier {
    /// The classifier with the rules and dictionaries built into the binary.
    pub fn builtin() -> Result<Classifier, RuleErrors> {
        Classifier::from_sources(&Sources::builtin())
    }

    /// The classifier of `sources`, its model trained on their corpus.
    pub fn from_sources(sources: &Sources) -> Result<Classifier, RuleErrors> {
        Classifier::from_sources_cached(sources, None)
    }

    /// [`Classifier::from_sources`] with its model read from `cache` when this program trained it on the
    /// same corpus and dictionaries before (see [`cache`]), trained and kept there otherwise.
    pub fn from_sources_cached(sources: &Sources, cache: Option<&ModelCache>) -> Result<Classifier, RuleErrors> {
        let mut errors = Vec::new();
        let (lexicon, normalizer, rules, corpus) = std::thread::scope(|scope| {
            // jieba's default dictionary takes a third of a start: it is built while the rules compile.
            let jieba = scope.spawn(Jieba::new);
            let dictionaries = Dictionaries::read(&sources.dictionaries, &mut errors);
            let normalizer = Normalizer::new(dictionaries.synonyms());
            let rules = RuleSet::compile(&sources.intents, &normalizer, &mut errors);
            let corpus = read_corpus(&sources.corpus, &mut errors);
            let jieba = jieba.join().expect("jieba builds its own dictionary");
            (dictionaries.into_lexicon(jieba), normalizer, rules, corpus)
        });
        match rules {
            Some(rules) if errors.is_empty() => {
                let marks = Arc::new(marks(&lexicon, &rules));
                let labels = Category::ALL.iter().map(|&c| Label::Appeal(c)).chain([Label::None]);
                let untrained = Classifier {
                    marks,
                    model_rules: labels.map(|label| Arc::from(format!("{label}/model"))).collect(),
                    normalizer: Arc::new(normalizer),
                    lexicon: Arc::new(lexicon),
                    rules: Arc::new(rules),
                    model: None,
                };
                let trained = cache.and_then(ModelCache::load).or_else(|| {
                    let trained = untrained.train(&corpus);
                    if let (Some(cache), Some(trained)) = (cache, &trained) {
                        cache.store(trained);
                    }
                    trained
                });
                Ok(untrained.with_model(trained))
            }
            _ => Err(RuleErrors(errors)),
        }
    }

    /// The same rules and dictionaries with a model learned from `labelled` instead: cross-validation
    /// retrains without loading anything again.
    pub fn trained_on(&self, labelled: &[(String, Label)]) -> Classifier {
        self.with_model(self.train(labelled))
    }

    fn train(&self, labelled: &[(String, Label)]) -> Option<Trained> {
        let mut trainer = Trainer::default();
        for (text, label) in labelled {
            let text = self.normalizer.normalize(text).text;
            trainer.learn(&self.segment(&text), *label);
        }
        trainer.finish()
    }

    /// The same rules and dictionaries with `trained`'s model, its words marked with their rows in place of
    /// this classifier's model's.
    fn with_model(&self, trained: Option<Trained>) -> Classifier {
        let mut marks = marks(&self.lexicon, &self.rules);
        let model = trained.map(|Trained { model, words }| {
            for (word, row) in words {
                marks.mark(&word).learned = Some(row);
            }
            model
        });
        marks.update(|word, marks| marks.walked = matcher::walked(&self.rules.index, word));
        Classifier {
            normalizer: self.normalizer.clone(),
            lexicon: self.lexicon.clone(),
            rules: self.rules.clone(),
            marks: Arc::new(marks),
            model_rules: self.model_rules.clone(),
            model,
        }
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// jieba with the dictionaries, shared with the search index so that they are loaded once.
    pub fn lexicon(&self) -> Arc<Lexicon> {
        self.lexicon.clone()
    }

    pub fn classify(&self, text: &str) -> Classification {
        self.analyze(text, true, |_, _, _, classification| classification)
    }

    /// What the rules alone make of `text`, without the model: the rule files' examples are checked so.
    pub fn classify_by_rules(&self, text: &str) -> Classification {
        self.analyze(text, false, |_, _, _, classification| classification)
    }

    pub fn explain(&self, text: &str) -> Explanation {
        self.analyze(text, true, |normalized, tokens, scores, classification| Explanation {
            normalized: normalized.to_owned(),
            tokens: tokens
                .iter()
                .filter(|t| !t.is_break)
                .map(|t| t.text.to_owned())
                .collect(),
            scores: scores.iter().map(|c| (c.category, c.score)).collect(),
            classification,
        })
    }

    /// Classifies `text` and hands the intermediate steps to `finish`, which keeps what it needs.
    fn analyze<R>(
        &self,
        text: &str,
        with_model: bool,
        finish: impl FnOnce(&str, &[Token<'_>], &[CategoryScore], Classification) -> R,
    ) -> R {
        let normalized = self.normalizer.normalize(text);
        let tokens = self.segment(&normalized.text);
        let mut matcher = Matcher::new(&self.rules, &normalized.text, &tokens);
        let rule_scores = matcher.score();
        let settings = &self.rules.settings;
        let judgement = self
            .model
            .as_ref()
            .filter(|_| with_model && settings.model_weight > 0.0)
            .map(|m| m.judge(&tokens));
        // A short message gives the model little to go on: it counts in proportion to what it knew.
        let weight = judgement.as_ref().map_or(0.0, |j| {
            let full = settings.model_full_grams.max(1) as f32;
            settings.model_weight * (j.known() as f32 / full).min(1.0)
        });
        let scores = match &judgement {
            Some(j) => combine(
                &rule_scores.categories,
                rule_scores.penalty,
                &j.scores,
                weight,
                settings,
            ),
            None => rule_scores.categories,
        };

        // Several matters: the label is the most urgent one that passes; the others become secondary.
        let passing = scores.iter().filter(|c| c.score >= settings.threshold_of(c.category));
        // The best-scoring category when it is urgent; otherwise the most urgent with decisive evidence, since
        // weak words alone must not put an urgent category ahead of a clear matter; otherwise the best.
        let top = passing.clone().next();
        let best = match top {
            Some(top) if top.category.is_urgent() => Some(top),
            _ => passing.clone().find(|c| c.category.is_urgent() && c.decisive).or(top),
        };
        let mut evidence = Vec::new();
        let (label, priority, score) = match best {
            Some(best) => {
                let (priority, urgent) = matcher.priority(best.category);
                evidence.extend(urgent);
                (Label::Appeal(best.category), Some(priority), best.score)
            }
            None => (Label::None, None, scores.first().map_or(0.0, |c| c.score)),
        };

        // A secondary matter needs words of its own: the model's lift alone carries every category of a message
        // that is plainly an appeal over the threshold.
        let secondary: Vec<Category> = passing
            .filter(|c| c.ruled && Some(c.category) != label.category())
            .map(|c| c.category)
            .collect();
        // The winner's evidence (or, for chatter, the nearest miss's), the secondaries', then what bore on all.
        let shown_first = best.or(scores.first());
        let shown = shown_first
            .into_iter()
            .chain(scores.iter().filter(|c| secondary.contains(&c.category)));
        for c in shown {
            evidence.extend(matcher.evidence(c.category));
        }
        evidence.extend(rule_scores.shared);
        if let (Some(model), Some(j)) = (&self.model, &judgement) {
            let (l, none) = (model::slot(label), model::slot(Label::None));
            let lift = match label {
                Label::Appeal(_) => j.scores[l] - j.scores[none],
                Label::None => j.scores[none] - scores.first().map_or(0.0, |c| j.scores[c.category as usize]),
            };
            evidence.push(Evidence {
                rule: self.model_rules[model::slot(label)].clone(),
                words: model
                    .reasons(j, &normalized.text, label, 3)
                    .into_iter()
                    .map(Arc::from)
                    .collect(),
                weight: round(weight * lift),
            });
        }

        let entities = entities::extract(&normalized.text, &tokens);
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
            let marks = match is_break {
                true => Marks::default(),
                false => self.marks.get(t.word),
            };
            tokens.push(Token {
                text: t.word,
                start: t.byte_start,
                pos,
                is_break,
                marks,
            });
            if !is_break && !marks.stop {
                pos += 1;
            }
        }
        tokens
    }

    /// Runs every example in the rule files through the rules alone (the examples say what a file's rules
    /// match; the model is measured on the corpus); each failure names the file and line of the example.
    pub fn check_examples(&self) -> Vec<RuleError> {
        self.rules
            .examples
            .iter()
            .filter_map(|ex| {
                let got = self.classify_by_rules(&ex.text).label;
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

/// The marks of every word the dictionaries or the rules name.
fn marks(lexicon: &Lexicon, rules: &RuleSet) -> Vocabulary {
    let mut marks = Vocabulary::default();
    let mut mark = |words: &FxHashSet<String>, set: fn(&mut Marks)| {
        for w in words {
            set(marks.mark(w));
        }
    };
    mark(&lexicon.stopwords, |m| m.stop = true);
    mark(&rules.negators, |m| m.negator = true);
    mark(&lexicon.platforms, |m| m.platform = true);
    mark(&lexicon.highways, |m| m.highway = true);
    marks
}

/// The rules' scores and the model's, as one score a category on the rules' scale: the rules' own (capped, so
/// that a pile of keywords cannot drown the model out, and floored by the `rule_floor` setting) plus the model's
/// margin for the category over chatter. Categories the rules found nothing for take part too: the model may know
/// them by other words, and what the chatter patterns found weighs against them all the same (an advert, a load
/// offer).
fn combine(
    rules: &[CategoryScore],
    penalty: Penalty,
    model: &[f32; model::LABELS],
    weight: f32,
    settings: &Settings,
) -> Vec<CategoryScore> {
    let none = model[model::slot(Label::None)];
    let mut combined: Vec<CategoryScore> = Category::ALL
        .iter()
        .map(|&category| {
            let rule = rules.iter().find(|c| c.category == category);
            let rule_score = rule
                .map_or(-penalty.of(category), |c| c.score)
                .clamp(settings.rule_floor_of(category), RULE_CAP);
            CategoryScore {
                category,
                score: round(rule_score + weight * (model[category as usize] - none)),
                decisive: rule.is_some_and(|c| c.decisive),
                ruled: rule.is_some(),
            }
        })
        .collect();
    combined.sort_by(|a, b| b.score.total_cmp(&a.score));
    combined
}

/// The most a rule score counts beside the model (the least is a setting, [`Settings::rule_floor`]).
const RULE_CAP: f32 = 3.0;

/// The labelled messages of the corpus files; a line that cannot be read is an error naming it.
pub fn read_corpus(files: &[SourceFile], errors: &mut Vec<RuleError>) -> Vec<(String, Label)> {
    let mut examples = Vec::new();
    for file in files {
        if !file.name.ends_with(".jsonl") {
            if !file.name.ends_with(".md") {
                errors.push(file.error(0, "unknown corpus file (expected *.jsonl)"));
            }
            continue;
        }
        match crate::eval::parse_jsonl(&file.text) {
            Ok(labelled) => examples.extend(labelled.into_iter().map(|l| (l.text, l.label))),
            Err(e) => errors.push(file.error(e.line, e.message)),
        }
    }
    examples
}
