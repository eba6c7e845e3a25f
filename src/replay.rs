//! `suqiu replay FILE`: imports a JSONL chat export through the same intake as live messages, for migrations
//! and demos. Each line is an inbound message with the ingest API's fields; a line that cannot be read is
//! reported with its number and skipped, and the others are stored all the same.

use std::collections::VecDeque;
use std::io::BufRead;

use indicatif::ProgressBar;

use crate::tickets::intake::{Disposition, InboundMessage, Intake, Outcome, Pending};

/// How many messages may wait for their outcome: enough to fill the intake's batches.
const IN_FLIGHT: usize = 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: usize,
    pub opened: usize,
    pub attached: usize,
    pub chatter: usize,
    pub duplicates: usize,
    pub errors: usize,
}

impl ReplayStats {
    fn count(&mut self, outcome: &Outcome) {
        let counter = match outcome.disposition {
            _ if outcome.duplicate => &mut self.duplicates,
            Disposition::Opened => &mut self.opened,
            Disposition::Attached => &mut self.attached,
            Disposition::Chatter => &mut self.chatter,
        };
        *counter += 1;
    }
}

/// Replays every line of `input` in order; `progress` advances by the bytes read, and `report` hears of every
/// line that failed (its 1-based number and why).
pub async fn replay(
    intake: &Intake,
    input: impl BufRead,
    progress: &ProgressBar,
    mut report: impl FnMut(usize, String),
) -> std::io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut pending: VecDeque<(usize, Pending)> = VecDeque::new();
    let mut settle = |stats: &mut ReplayStats, line: usize, outcome: Result<Outcome, String>| match outcome {
        Ok(outcome) => stats.count(&outcome),
        Err(e) => {
            stats.errors += 1;
            report(line, e);
        }
    };
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line?;
        progress.inc(line.len() as u64 + 1);
        let number = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        stats.lines += 1;
        let message = std::str::from_utf8(&line)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|text| serde_json::from_str::<InboundMessage>(text).map_err(|e| format!("not a message: {e}")));
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                settle(&mut stats, number, Err(e));
                continue;
            }
        };
        match intake.send(message).await {
            Ok(p) => pending.push_back((number, p)),
            Err(e) => settle(&mut stats, number, Err(e.to_string())),
        }
        if pending.len() >= IN_FLIGHT {
            let (number, p) = pending.pop_front().expect("not empty");
            settle(&mut stats, number, p.outcome().await.map_err(|e| e.to_string()));
        }
    }
    while let Some((number, p)) = pending.pop_front() {
        settle(&mut stats, number, p.outcome().await.map_err(|e| e.to_string()));
    }
    Ok(stats)
}
