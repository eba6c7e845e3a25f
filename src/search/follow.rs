//! Following a table by its id: which rows have been read, and which ids may still appear.
//!
//! Ids are taken when a row is inserted but become visible when its transaction commits, and on PostgreSQL
//! transactions commit in any order: a row can appear below the highest id already read. So the ids skipped
//! over are kept as gaps and looked for again until they turn up or are old enough to be ids that were never
//! used (a rolled-back transaction, a duplicate that `ON CONFLICT DO NOTHING` turned away).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Gaps looked for at most: past this the lowest are given up, with a warning.
const MAX_GAPS: usize = 10_000;

/// What is kept with each commit of the index: where reading resumes after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Every id up to this one has been read, except the gaps.
    pub high: i64,
    /// Ids below `high` not seen yet that may still appear.
    pub gaps: Vec<i64>,
    /// Ids at or below this are never gaps: rows older than a rebuild's start are all visible.
    pub floor: i64,
}

/// A [`Watermark`] being followed, with when each gap was first noticed.
#[derive(Debug)]
pub struct Follower {
    high: i64,
    floor: i64,
    gaps: BTreeMap<i64, Instant>,
    timeout: Duration,
}

impl Follower {
    /// Resumes from `mark`; its gaps count as just noticed.
    pub fn new(mark: &Watermark, timeout: Duration, now: Instant) -> Follower {
        Follower {
            high: mark.high,
            floor: mark.floor,
            gaps: mark.gaps.iter().map(|&id| (id, now)).collect(),
            timeout,
        }
    }

    pub fn high(&self) -> i64 {
        self.high
    }

    /// The gaps still looked for, lowest first.
    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    pub fn mark(&self) -> Watermark {
        Watermark {
            high: self.high,
            gaps: self.gaps(),
            floor: self.floor,
        }
    }

    /// Rows above `high` were read, in ascending order: the ids jumped over become gaps.
    pub fn saw(&mut self, ids: impl IntoIterator<Item = i64>, now: Instant) {
        for id in ids {
            debug_assert!(id > self.high, "rows above the watermark come in order");
            let first_gap = (self.high + 1).max(self.floor + 1);
            for gap in first_gap..id {
                self.gaps.insert(gap, now);
            }
            self.high = self.high.max(id);
        }
        while self.gaps.len() > MAX_GAPS {
            if let Some((gap, _)) = self.gaps.pop_first() {
                tracing::warn!(gap, "search index: too many ids missing; giving up the oldest");
            }
        }
    }

    /// A gap's row turned up.
    pub fn filled(&mut self, id: i64) {
        self.gaps.remove(&id);
    }

    /// Gives up the gaps older than the timeout: their ids were never used. Returns whether any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.gaps.len();
        self.gaps
            .retain(|_, noticed| now.saturating_duration_since(*noticed) < self.timeout);
        self.gaps.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn ids_jumped_over_become_gaps_until_they_turn_up() {
        let t0 = Instant::now();
        let mut f = Follower::new(&Watermark::default(), TIMEOUT, t0);
        f.saw([1, 2, 5, 6], t0);
        assert_eq!((f.high(), f.gaps()), (6, vec![3, 4]));
        f.filled(4);
        assert_eq!(f.gaps(), [3]);
    }

    #[test]
    fn a_gap_that_never_turns_up_is_given_up_after_the_timeout() {
        let t0 = Instant::now();
        let mut f = Follower::new(&Watermark::default(), TIMEOUT, t0);
        f.saw([2], t0);
        assert!(!f.expire(t0 + TIMEOUT / 2));
        assert_eq!(f.gaps(), [1]);
        assert!(f.expire(t0 + TIMEOUT));
        assert!(f.gaps().is_empty());
    }

    #[test]
    fn the_mark_resumes_where_it_stopped_with_its_gaps() {
        let t0 = Instant::now();
        let mut f = Follower::new(&Watermark::default(), TIMEOUT, t0);
        f.saw([1, 3], t0);
        let resumed = Follower::new(&f.mark(), TIMEOUT, t0 + TIMEOUT);
        assert_eq!((resumed.high(), resumed.gaps()), (3, vec![2]));
    }

    #[test]
    fn ids_at_or_below_the_floor_are_never_gaps() {
        let t0 = Instant::now();
        let start = Watermark {
            high: 0,
            gaps: Vec::new(),
            floor: 100,
        };
        let mut f = Follower::new(&start, TIMEOUT, t0);
        f.saw([7, 99, 103], t0);
        assert_eq!(f.gaps(), [101, 102]);
    }
}
