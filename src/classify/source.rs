//! Where rules and dictionaries come from: the copies built into the binary, or a directory a union edits.
//!
//! A directory given with `--rules DIR` holds `intents/`, `dictionaries/` and/or `corpus/` (the labelled
//! messages the model learns from, `tests/corpus/` in this repository); a part it does not have is taken from
//! the built-in copy.

use std::fmt;
use std::path::Path;

use include_dir::{include_dir, Dir};

static BUILTIN_INTENTS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/intents");
static BUILTIN_DICTIONARIES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/dictionaries");
/// The project's labelled corpus: the test suite measures the classifier on it, and the model learns from it.
static BUILTIN_CORPUS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/tests/corpus");

/// One rule or dictionary file, named as a person would look for it (`intents/accident.toml`).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    /// The file name without folder and extension: `accident` for `intents/accident.toml`.
    pub fn stem(&self) -> &str {
        let base = self.name.rsplit('/').next().unwrap_or(&self.name);
        base.split('.').next().unwrap_or(base)
    }

    pub fn error(&self, line: usize, message: impl Into<String>) -> RuleError {
        RuleError {
            file: self.name.clone(),
            line,
            message: message.into(),
        }
    }

    /// The error for a position in the file, given as a byte offset.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> RuleError {
        self.error(self.line_numbers().at(offset), message)
    }

    /// Line numbers of positions in the file, for positions taken in the file's order.
    pub fn line_numbers(&self) -> LineNumbers<'_> {
        LineNumbers {
            text: self.text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }
}

/// Line numbers of byte offsets in a file, counted on from the last offset asked about: a file's examples,
/// taken in order, cost one pass over the file rather than one each.
pub struct LineNumbers<'f> {
    text: &'f [u8],
    offset: usize,
    line: usize,
}

impl LineNumbers<'_> {
    /// The 1-based line of a byte offset.
    pub fn at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            (self.offset, self.line) = (0, 1);
        }
        self.line += self.text[self.offset..offset].iter().filter(|&&b| b == b'\n').count();
        self.offset = offset;
        self.line
    }
}

/// A problem in a rule or dictionary file, with the place to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Every problem found while loading, so that one `suqiu check` shows them all.
#[derive(Debug, Clone, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Sources {
    pub intents: Vec<SourceFile>,
    pub dictionaries: Vec<SourceFile>,
    /// Labelled messages in JSONL, as in evaluation files: what the model learns from.
    pub corpus: Vec<SourceFile>,
}

impl Sources {
    pub fn builtin() -> Sources {
        Sources {
            intents: builtin_files(&BUILTIN_INTENTS, "intents"),
            dictionaries: builtin_files(&BUILTIN_DICTIONARIES, "dictionaries"),
            corpus: builtin_files(&BUILTIN_CORPUS, "corpus"),
        }
    }

    /// The rules in `dir`, falling back to the built-in copy of a part the directory lacks.
    pub fn from_dir(dir: &Path) -> Result<Sources, RuleErrors> {
        let fail = |message: String| {
            RuleErrors(vec![RuleError {
                file: dir.display().to_string(),
                line: 0,
                message,
            }])
        };
        if !dir.is_dir() {
            return Err(fail("is not a directory".into()));
        }
        let builtin = Sources::builtin();
        let intents = dir.join("intents");
        let dictionaries = dir.join("dictionaries");
        let corpus = dir.join("corpus");
        if !intents.is_dir() && !dictionaries.is_dir() && !corpus.is_dir() {
            return Err(fail("has no intents/, dictionaries/ or corpus/ folder".into()));
        }
        Ok(Sources {
            intents: if intents.is_dir() {
                read_files(&intents, "intents")?
            } else {
                builtin.intents
            },
            dictionaries: if dictionaries.is_dir() {
                read_files(&dictionaries, "dictionaries")?
            } else {
                builtin.dictionaries
            },
            corpus: if corpus.is_dir() {
                read_files(&corpus, "corpus")?
            } else {
                builtin.corpus
            },
        })
    }
}

fn builtin_files(dir: &Dir<'_>, folder: &str) -> Vec<SourceFile> {
    let mut files: Vec<SourceFile> = dir
        .files()
        .filter_map(|f| {
            let text = f.contents_utf8()?.to_owned();
            Some(SourceFile {
                name: format!("{folder}/{}", f.path().display()),
                text,
            })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn read_files(dir: &Path, folder: &str) -> Result<Vec<SourceFile>, RuleErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        RuleErrors(vec![RuleError {
            file: dir.display().to_string(),
            line: 0,
            message: format!("cannot list: {e}"),
        }])
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_file() || base.starts_with('.') {
            continue;
        }
        let name = format!("{folder}/{base}");
        match std::fs::read(&path).map(String::from_utf8) {
            Ok(Ok(text)) => files.push(SourceFile { name, text }),
            Ok(Err(_)) => errors.push(RuleError {
                file: name,
                line: 0,
                message: "is not valid UTF-8".into(),
            }),
            Err(e) => errors.push(RuleError {
                file: name,
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(RuleErrors(errors));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_count_on_in_order_and_start_over_when_asked_backwards() {
        let file = SourceFile {
            name: "intents/accident.toml".into(),
            text: "a = 1\nb = [\n  \"翻车\",\n]\n".into(),
        };
        let at = |needle: &str| file.text.find(needle).unwrap();
        let mut lines = file.line_numbers();
        assert_eq!(lines.at(0), 1);
        assert_eq!(lines.at(at("b")), 2);
        assert_eq!(lines.at(at("翻车")), 3);
        assert_eq!(lines.at(at("]")), 4);
        assert_eq!(lines.at(at("b")), 2, "backwards");
        assert_eq!(lines.at(usize::MAX), 5, "past the end: the last line");
        assert_eq!(file.error_at(at("翻车"), "x").line, 3);
    }
}
