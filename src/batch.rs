//! Batch classification: one input a line in, one JSON result a line out, in input order.
//!
//! A line is a JSON object with a `text` field (an `id` field, if any, is echoed back) or plain text. A line
//! that cannot be read gets a JSON error object of its own and the batch goes on.

use std::io::{self, BufRead, Write};
use std::thread;

use serde::Serialize;
use serde_json::Value;

use crate::classify::{Classification, Classifier};

/// Lines classified together; each chunk is split across the available cores.
const CHUNK: usize = 4096;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub lines: usize,
    pub classified: usize,
    pub errors: usize,
}

#[derive(Serialize)]
struct Output<'a> {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
    #[serde(flatten)]
    classification: &'a Classification,
}

#[derive(Serialize)]
struct ErrorOutput<'a> {
    line: usize,
    error: &'a str,
}

/// What one input line asks for: its text and optional id, or why it cannot be read.
fn read_line(raw: &[u8]) -> Result<(String, Option<Value>), String> {
    let line = std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim_start().starts_with('{') {
        let mut object: serde_json::Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let id = object.remove("id");
        return match object.remove("text") {
            Some(Value::String(text)) => Ok((text, id)),
            Some(_) => Err("field `text` is not a string".into()),
            None => Err("JSON object has no `text` field".into()),
        };
    }
    Ok((line.to_owned(), None))
}

/// The JSON line for one input line, and whether it was classified (rather than refused).
fn render(classifier: &Classifier, number: usize, raw: &[u8]) -> (String, bool) {
    let (json, classified) = match read_line(raw) {
        Ok((text, id)) => {
            let classification = classifier.classify(&text);
            (
                serde_json::to_string(&Output {
                    line: number,
                    id,
                    classification: &classification,
                }),
                true,
            )
        }
        Err(error) => (
            serde_json::to_string(&ErrorOutput {
                line: number,
                error: &error,
            }),
            false,
        ),
    };
    (json.expect("results serialize to JSON"), classified)
}

pub fn classify_lines(
    classifier: &Classifier,
    mut input: impl BufRead,
    mut output: impl Write,
) -> io::Result<BatchStats> {
    let workers = thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let mut stats = BatchStats::default();
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
    loop {
        chunk.clear();
        let mut eof = false;
        while chunk.len() < CHUNK {
            let mut buf = Vec::new();
            if input.read_until(b'\n', &mut buf)? == 0 {
                eof = true;
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            chunk.push(buf);
        }
        let first = stats.lines + 1;
        let per_worker = chunk.len().div_ceil(workers).max(1);
        let results: Vec<(String, bool)> = thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per_worker)
                .enumerate()
                .map(|(w, part)| {
                    s.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(i, raw)| render(classifier, first + w * per_worker + i, raw))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("classification does not panic"))
                .collect()
        });
        for (line, ok) in results {
            output.write_all(line.as_bytes())?;
            output.write_all(b"\n")?;
            stats.lines += 1;
            if ok {
                stats.classified += 1;
            } else {
                stats.errors += 1;
            }
        }
        if eof {
            output.flush()?;
            return Ok(stats);
        }
    }
}
