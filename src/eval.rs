//! Measuring the classifier on labelled messages: per-label precision, recall and F1, appeal detection,
//! urgent recall and the confusion matrix.
//!
//! Macro-F1 averages F1 over every label that occurs in the gold labels or the predictions (`none` included).

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classify::{read_corpus, Classifier, Label, RuleErrors, Sources};

/// One line of an evaluation file (format in the taxonomy): `{"text": …, "label": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    pub text: String,
    pub label: Label,
    #[serde(default)]
    pub also: Vec<Label>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Reads JSONL; blank lines are skipped, any other unreadable line is an error naming it.
pub fn parse_jsonl(text: &str) -> Result<Vec<Labelled>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ParseError {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Reads a labelled JSONL file, or every `*.jsonl` file of a directory in name order.
pub fn read_labelled(path: &Path) -> Result<Vec<Labelled>, ParseError> {
    let unreadable = |e: std::io::Error| ParseError {
        line: 0,
        message: format!("cannot read {}: {e}", path.display()),
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut labelled = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(unreadable)?;
        let parsed = parse_jsonl(&text).map_err(|e| ParseError {
            line: e.line,
            message: format!("{}: {}", file.display(), e.message),
        })?;
        labelled.extend(parsed);
    }
    Ok(labelled)
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelScores {
    pub label: Label,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub text: String,
    pub expected: Label,
    pub got: Label,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub messages: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_label: Vec<LabelScores>,
    /// Appeal detection: any label but `none` counts as an appeal.
    pub appeal_precision: f64,
    pub appeal_recall: f64,
    /// Of the messages labelled accident, safety or crisis, the share given exactly that label.
    pub urgent_recall: f64,
    /// `confusion[expected][predicted]` = count.
    pub confusion: BTreeMap<Label, BTreeMap<Label, usize>>,
    pub misses: Vec<Miss>,
}

pub fn evaluate(classifier: &Classifier, data: &[Labelled]) -> Report {
    let pairs: Vec<(Label, Label, &str)> = data
        .iter()
        .map(|d| (d.label, classifier.classify(&d.text).label, d.text.as_str()))
        .collect();
    report(&pairs)
}

/// Measures the classifier on messages its model never learned from: `data` is split into `folds` parts,
/// and each part is classified by a model trained on the corpus of `sources` without that part's messages
/// (and with the other parts'). The rules stay as they are: they may have been written from these messages.
pub fn cross_validate(sources: &Sources, data: &[Labelled], folds: usize) -> Result<Report, RuleErrors> {
    let folds = folds.clamp(2, data.len().max(2));
    let classifier = Classifier::from_sources(sources)?;
    // The corpus loaded without errors just above.
    let corpus = read_corpus(&sources.corpus, &mut Vec::new());
    let in_corpus: HashSet<&str> = corpus.iter().map(|(text, _)| text.as_str()).collect();
    let mut pairs: Vec<(usize, Label)> = Vec::with_capacity(data.len());
    for fold in 0..folds {
        let held: Vec<(usize, &Labelled)> = data.iter().enumerate().filter(|(i, _)| i % folds == fold).collect();
        let unseen: HashSet<&str> = held.iter().map(|(_, d)| d.text.as_str()).collect();
        // The other parts, unless the corpus has them already (cross-validating the corpus itself): a message
        // learned twice would weigh double.
        let others = data
            .iter()
            .filter(|d| !in_corpus.contains(d.text.as_str()))
            .map(|d| (d.text.clone(), d.label));
        let training: Vec<(String, Label)> = corpus
            .iter()
            .cloned()
            .chain(others)
            .filter(|(text, _)| !unseen.contains(text.as_str()))
            .collect();
        let fold_classifier = classifier.trained_on(&training);
        pairs.extend(held.iter().map(|&(i, d)| (i, fold_classifier.classify(&d.text).label)));
    }
    pairs.sort_unstable_by_key(|&(i, _)| i);
    let triples: Vec<(Label, Label, &str)> = pairs
        .iter()
        .map(|&(i, got)| (data[i].label, got, data[i].text.as_str()))
        .collect();
    Ok(report(&triples))
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The report for (expected, predicted, text) triples.
pub fn report(pairs: &[(Label, Label, &str)]) -> Report {
    let mut confusion: BTreeMap<Label, BTreeMap<Label, usize>> = BTreeMap::new();
    for &(expected, got, _) in pairs {
        *confusion.entry(expected).or_default().entry(got).or_default() += 1;
    }
    let count = |f: &dyn Fn(Label, Label) -> bool| pairs.iter().filter(|(e, g, _)| f(*e, *g)).count();

    let per_label: Vec<LabelScores> = Label::all()
        .filter(|&l| pairs.iter().any(|&(e, g, _)| e == l || g == l))
        .map(|l| {
            let tp = count(&|e, g| e == l && g == l);
            let predicted = count(&|_, g| g == l);
            let support = count(&|e, _| e == l);
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            LabelScores {
                label: l,
                precision,
                recall,
                f1: f1(precision, recall),
                support,
            }
        })
        .collect();
    let macro_f1 = if per_label.is_empty() {
        0.0
    } else {
        per_label.iter().map(|s| s.f1).sum::<f64>() / per_label.len() as f64
    };

    let appeal_tp = count(&|e, g| e != Label::None && g != Label::None);
    let urgent = |l: Label| l.category().is_some_and(|c| c.is_urgent());
    Report {
        messages: pairs.len(),
        accuracy: ratio(count(&|e, g| e == g), pairs.len()),
        macro_f1,
        per_label,
        appeal_precision: ratio(appeal_tp, count(&|_, g| g != Label::None)),
        appeal_recall: ratio(appeal_tp, count(&|e, _| e != Label::None)),
        urgent_recall: ratio(count(&|e, g| urgent(e) && e == g), count(&|e, _| urgent(e))),
        confusion,
        misses: pairs
            .iter()
            .filter(|(e, g, _)| e != g)
            .map(|&(expected, got, text)| Miss {
                text: text.to_owned(),
                expected,
                got,
            })
            .collect(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>9} {:>9} {:>9} {:>8}",
            "label", "precision", "recall", "f1", "support"
        )?;
        for s in &self.per_label {
            writeln!(
                f,
                "{:<16} {:>9.3} {:>9.3} {:>9.3} {:>8}",
                s.label.id(),
                s.precision,
                s.recall,
                s.f1,
                s.support
            )?;
        }
        writeln!(f)?;
        writeln!(f, "messages            {}", self.messages)?;
        writeln!(f, "accuracy            {:.3}", self.accuracy)?;
        writeln!(f, "macro-F1            {:.3}", self.macro_f1)?;
        writeln!(f, "appeal precision    {:.3}", self.appeal_precision)?;
        writeln!(f, "appeal recall       {:.3}", self.appeal_recall)?;
        writeln!(f, "urgent recall       {:.3}", self.urgent_recall)?;
        writeln!(f)?;
        writeln!(f, "confusion (rows: expected, columns: predicted)")?;
        let labels: Vec<Label> = self.per_label.iter().map(|s| s.label).collect();
        let short = |l: Label| l.id().chars().take(5).collect::<String>();
        let mut header = format!("{:<16}", "");
        for &l in &labels {
            let _ = write!(header, " {:>5}", short(l));
        }
        writeln!(f, "{header}")?;
        for &e in &labels {
            let mut row = format!("{:<16}", e.id());
            for &g in &labels {
                let n = self.confusion.get(&e).and_then(|r| r.get(&g)).copied().unwrap_or(0);
                let cell = if n == 0 { ".".to_owned() } else { n.to_string() };
                let _ = write!(row, " {cell:>5}");
            }
            writeln!(f, "{row}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Category::*;

    #[test]
    fn metrics_match_a_hand_computed_case() {
        let a = Label::Appeal(Accident);
        let s = Label::Appeal(Safety);
        let n = Label::None;
        // accident: tp 1, fp 1 (a none), fn 1 (predicted safety)
        let r = report(&[(a, a, ""), (a, s, ""), (n, a, ""), (n, n, ""), (s, s, "")]);
        let acc = &r.per_label[0];
        assert_eq!((acc.label, acc.support), (a, 2));
        assert!((acc.precision - 0.5).abs() < 1e-9 && (acc.recall - 0.5).abs() < 1e-9);
        assert!(
            (r.appeal_precision - 0.75).abs() < 1e-9,
            "3 of 4 predicted appeals are appeals"
        );
        assert!((r.appeal_recall - 1.0).abs() < 1e-9);
        assert!((r.urgent_recall - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.misses.len(), 2);
        assert_eq!(r.confusion[&a][&s], 1);
    }

    #[test]
    fn an_unreadable_line_is_named() {
        let err =
            parse_jsonl("{\"text\":\"a\",\"label\":\"none\"}\n\n{\"text\":\"b\",\"label\":\"bogus\"}").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("bogus"), "{}", err.message);
    }
}
