//! The indexer: follows the database into the index, within seconds of each new message.
//!
//! It reads new `messages` rows by id (a ticket's messages become documents, chatter is passed over) and new
//! `ticket_events` rows by id: after an event that may change a ticket's category or status, the ticket's
//! documents are checked against the database and written again if they differ. Where it stopped is saved in
//! each commit's payload, so the index and its watermarks always agree, and a restart resumes from there.
//! Reading is async; writing and committing run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use tantivy::{Searcher, TantivyError};
use tokio::sync::Notify;

use crate::store::{Db, ROWS};
use crate::tickets::EventKind;

use super::follow::{Follower, Watermark};
use super::write::{message_row, MessageRow, Writing};
use super::{Fields, SearchError, SearchIndex};

/// Bumped when what the payload or the documents hold changes: an index of another format is rebuilt.
const FORMAT: u32 = 1;
/// On a rebuild, ids this far below the newest are taken as settled: the rows of transactions still open
/// then are above it.
const SETTLED: i64 = 10_000;
/// Events that never change a ticket's category or status: the others make the indexer check the ticket.
const STATE_KEPT: [EventKind; 8] = [
    EventKind::Created,
    EventKind::Classified,
    EventKind::Attached,
    EventKind::Noted,
    EventKind::SlaWarning,
    EventKind::SlaBreached,
    EventKind::Escalated,
    EventKind::Rated,
];

#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// How often the database is asked for new rows when there is no backlog.
    pub poll_interval: Duration,
    /// Rows read per query.
    pub page: i64,
    /// With a backlog, what has been read is committed (and becomes searchable) at least this often.
    pub commit_every: Duration,
    /// How long an id skipped over may still turn up as a late-committed row.
    pub gap_timeout: Duration,
    /// The writer's indexing threads and their memory in all.
    pub threads: usize,
    pub memory: usize,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        IndexerSettings {
            poll_interval: Duration::from_secs(1),
            page: 1000,
            commit_every: Duration::from_secs(2),
            gap_timeout: Duration::from_secs(300),
            threads: 1,
            memory: 32 << 20,
        }
    }
}

impl IndexerSettings {
    /// For a rebuild: every core and a larger memory budget, and fewer commits.
    pub fn rebuild() -> IndexerSettings {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        IndexerSettings {
            page: 5000,
            commit_every: Duration::from_secs(30),
            threads,
            memory: threads * (64 << 20),
            ..IndexerSettings::default()
        }
    }
}

/// What each commit saves with the index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    format: u32,
    analyzer: String,
    messages: Watermark,
    events: Watermark,
    /// Messages a ticket's rewrite indexed before the messages watermark reached them: replaced, not added
    /// again, when it does.
    ahead: Vec<i64>,
}

const MESSAGES: &str = "SELECT m.id, m.ticket_id, m.chat, m.sent_at, \
                        CASE WHEN m.ticket_id IS NULL THEN '' ELSE m.text END AS text, t.category, t.status \
                        FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id";
const EVENTS: &str = "SELECT e.id, e.ticket_id, e.kind, t.category, t.status \
                      FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id";

/// Follows the database into a [`SearchIndex`]. Holds the index's writer lock: one indexer per directory.
pub struct Indexer {
    index: SearchIndex,
    db: Db,
    settings: IndexerSettings,
    writing: Arc<Mutex<Writing>>,
    messages: Follower,
    events: Follower,
    /// The progress of the last commit: where a failed round goes back to.
    committed: Progress,
    /// Changes since the last commit: documents written, or watermarks moved.
    changes: usize,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    /// Messages in the index.
    pub messages: u64,
    pub seconds: f64,
}

/// Empties the index and indexes every ticket message in the database again, then waits for the index's
/// segments to be merged. Fails with [`SearchError::Locked`] while a service indexes into the directory.
pub async fn rebuild(index: &SearchIndex, db: &Db, settings: IndexerSettings) -> Result<Rebuilt, SearchError> {
    let started = Instant::now();
    let mut indexer = Indexer::with_settings(index, db.clone(), settings).await?;
    indexer.reset().await?;
    while indexer.catch_up().await? {}
    let Indexer { writing, index, .. } = indexer;
    let writing = Arc::try_unwrap(writing).unwrap_or_else(|_| unreachable!("the indexer owns its writer"));
    let writer = writing.into_inner().unwrap_or_else(|e| e.into_inner()).writer;
    tokio::task::spawn_blocking(move || writer.wait_merging_threads()).await??;
    index.reload()?;
    Ok(Rebuilt {
        messages: index.num_messages(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl Indexer {
    /// Takes the index's writer lock and resumes from the index's last commit; an index built by another
    /// format or other dictionaries is emptied, to be filled from the database.
    pub async fn new(index: &SearchIndex, db: Db) -> Result<Indexer, SearchError> {
        Indexer::with_settings(index, db, IndexerSettings::default()).await
    }

    pub async fn with_settings(index: &SearchIndex, db: Db, settings: IndexerSettings) -> Result<Indexer, SearchError> {
        let inner = &index.inner;
        let writer = inner
            .index
            .writer_with_num_threads(settings.threads.max(1), settings.memory)
            .map_err(|e| match e {
                TantivyError::LockFailure(..) => SearchError::Locked(inner.dir.display().to_string()),
                e => SearchError::Index(e),
            })?;
        let payload = inner.index.load_metas()?.payload;
        let progress: Option<Progress> = payload.as_deref().and_then(|p| serde_json::from_str(p).ok());
        let current = progress.filter(|p| p.format == FORMAT && p.analyzer == inner.analyzer.fingerprint());
        let now = Instant::now();
        let committed = current.clone().unwrap_or_default();
        let mut indexer = Indexer {
            index: index.clone(),
            db,
            messages: Follower::new(&committed.messages, settings.gap_timeout, now),
            events: Follower::new(&committed.events, settings.gap_timeout, now),
            writing: Arc::new(Mutex::new(Writing {
                writer,
                pending: HashMap::new(),
                ahead: committed.ahead.iter().copied().collect(),
            })),
            settings,
            committed,
            changes: 0,
        };
        if current.is_none() {
            tracing::info!(dir = %inner.dir.display(), "search index: new, or built another way; indexing from the database");
            indexer.reset().await?;
        }
        Ok(indexer)
    }

    /// Follows the database until `stop` is notified: reads, indexes and commits whatever is new, then
    /// waits the poll interval. Uncommitted work is read again on the next start.
    pub async fn run(mut self, stop: Arc<Notify>) {
        let stopped = stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        let mut failures = 0u32;
        loop {
            let wait = match self.catch_up().await {
                Ok(true) => Duration::ZERO,
                Ok(false) => {
                    failures = 0;
                    self.settings.poll_interval
                }
                Err(e) => {
                    failures += 1;
                    let wait =
                        (self.settings.poll_interval * 2u32.saturating_pow(failures)).min(Duration::from_secs(30));
                    tracing::error!(error = %e, retry_in = ?wait, "search indexer: failed to follow the database");
                    wait
                }
            };
            tokio::select! {
                () = &mut stopped => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        // Dropping the writer joins its threads: off the runtime.
        let writing = self.writing;
        let _ = tokio::task::spawn_blocking(move || drop(writing)).await;
    }

    /// Reads and indexes what is new, committing at least every `commit_every`; returns whether there was
    /// more to read than one pass took. After a failure the index is back at its last commit.
    pub async fn catch_up(&mut self) -> Result<bool, SearchError> {
        let started = Instant::now();
        let mut more = true;
        while more && started.elapsed() < self.settings.commit_every {
            more = match self.round().await {
                Ok(more) => more,
                Err(e) => {
                    self.roll_back().await?;
                    return Err(e);
                }
            };
        }
        if self.changes > 0 {
            if let Err(e) = self.commit().await {
                self.roll_back().await?;
                return Err(e);
            }
        }
        Ok(more)
    }

    /// One page of new messages and one of new events, and the rows of their gaps.
    async fn round(&mut self) -> Result<bool, SearchError> {
        let now = Instant::now();
        let page = self.settings.page;
        let pool = self.db.pool();
        let sql = format!("{MESSAGES} WHERE m.id > $1 ORDER BY m.id LIMIT $2");
        let new_messages = sqlx::query(&sql)
            .bind(self.messages.high())
            .bind(page)
            .fetch_all(pool)
            .await?;
        let late_messages = by_ids(&self.db, MESSAGES, "m.id", &self.messages.gaps()).await?;
        let sql = format!("{EVENTS} WHERE e.id > $1 ORDER BY e.id LIMIT $2");
        let new_events = sqlx::query(&sql)
            .bind(self.events.high())
            .bind(page)
            .fetch_all(pool)
            .await?;
        let late_events = by_ids(&self.db, EVENTS, "e.id", &self.events.gaps()).await?;
        let more = new_messages.len() as i64 == page || new_events.len() as i64 == page;

        let messages: Vec<MessageRow> = new_messages
            .iter()
            .chain(&late_messages)
            .map(message_row)
            .collect::<Result<_, _>>()?;
        // Each ticket's state as this read saw it (one statement sees one state of a ticket).
        let mut checks: HashMap<i64, (String, String)> = HashMap::new();
        for row in new_events.iter().chain(&late_events) {
            let kind: String = row.try_get("kind")?;
            if !STATE_KEPT.iter().any(|k| k.id() == kind) {
                checks.insert(
                    row.try_get("ticket_id")?,
                    (row.try_get("category")?, row.try_get("status")?),
                );
            }
        }

        // The watermarks move first: a failure later rolls everything back to the last commit.
        self.messages.saw(ids(&new_messages)?, now);
        for id in ids(&late_messages)? {
            self.messages.filled(id);
        }
        self.events.saw(ids(&new_events)?, now);
        for id in ids(&late_events)? {
            self.events.filled(id);
        }
        let expired = self.messages.expire(now) | self.events.expire(now);
        let read = new_messages.len() + late_messages.len() + new_events.len() + late_events.len();
        self.changes += read + usize::from(expired);

        let stale = self
            .write(move |w, searcher, f| w.add_and_check(searcher, f, messages, checks))
            .await?;
        if !stale.is_empty() {
            let rows = by_ids(&self.db, MESSAGES, "m.ticket_id", &stale).await?;
            let rows: Vec<MessageRow> = rows.iter().map(message_row).collect::<Result<_, _>>()?;
            let unseen = self.unseen(&rows);
            self.write(move |w, _, f| w.rewrite(f, &stale, rows, unseen)).await?;
        }
        Ok(more)
    }

    /// The messages among `rows` the messages watermark has not reached.
    fn unseen(&self, rows: &[MessageRow]) -> Vec<i64> {
        let gaps: HashSet<i64> = self.messages.gaps().into_iter().collect();
        rows.iter()
            .map(|r| r.id)
            .filter(|id| *id > self.messages.high() || gaps.contains(id))
            .collect()
    }

    /// Runs `work` with the writer on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Writing, &Searcher, &Fields) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let writing = self.writing.clone();
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = writing.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut w, &index.inner.reader.searcher(), &index.inner.fields)
        })
        .await?
    }

    /// Commits what was written with the watermarks, and makes it searchable.
    async fn commit(&mut self) -> Result<(), SearchError> {
        let progress = self.progress();
        let payload = serde_json::to_string(&progress).expect("the progress serializes");
        self.write(move |w, _, _| {
            let mut commit = w.writer.prepare_commit()?;
            commit.set_payload(&payload);
            commit.commit()?;
            w.pending.clear();
            Ok(())
        })
        .await?;
        self.index.reload()?;
        self.committed = progress;
        self.changes = 0;
        Ok(())
    }

    /// Drops everything since the last commit, and reads it again from there.
    async fn roll_back(&mut self) -> Result<(), SearchError> {
        let ahead = self.committed.ahead.clone();
        self.write(move |w, _, _| {
            w.writer.rollback()?;
            w.pending.clear();
            w.ahead = ahead.into_iter().collect();
            Ok(())
        })
        .await?;
        let now = Instant::now();
        self.messages = Follower::new(&self.committed.messages, self.settings.gap_timeout, now);
        self.events = Follower::new(&self.committed.events, self.settings.gap_timeout, now);
        self.changes = 0;
        Ok(())
    }

    fn progress(&self) -> Progress {
        let ahead = self
            .writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ahead
            .iter()
            .copied()
            .collect();
        Progress {
            format: FORMAT,
            analyzer: self.index.inner.analyzer.fingerprint().to_owned(),
            messages: self.messages.mark(),
            events: self.events.mark(),
            ahead,
        }
    }

    /// Empties the index and starts again from the first message. Events already in the database are
    /// settled: every message read from now on carries their outcome. Only ids near the newest, whose
    /// transactions may still be open, are watched as gaps.
    async fn reset(&mut self) -> Result<(), SearchError> {
        let pool = self.db.pool();
        let newest = |table: &str| format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
        let last_event: i64 = sqlx::query_scalar(&newest("ticket_events")).fetch_one(pool).await?;
        let last_message: i64 = sqlx::query_scalar(&newest("messages")).fetch_one(pool).await?;
        let floor = last_event - SETTLED;
        let present: Vec<i64> = sqlx::query_scalar("SELECT id FROM ticket_events WHERE id > $1 AND id <= $2")
            .bind(floor)
            .bind(last_event)
            .fetch_all(pool)
            .await?;
        let present: HashSet<i64> = present.into_iter().collect();
        let events = Watermark {
            high: last_event,
            gaps: (floor.max(0) + 1..=last_event)
                .filter(|id| !present.contains(id))
                .collect(),
            floor,
        };
        let messages = Watermark {
            high: 0,
            gaps: Vec::new(),
            floor: last_message - SETTLED,
        };
        self.write(|w, _, _| {
            w.writer.delete_all_documents()?;
            w.pending.clear();
            w.ahead.clear();
            Ok(())
        })
        .await?;
        let now = Instant::now();
        self.messages = Follower::new(&messages, self.settings.gap_timeout, now);
        self.events = Follower::new(&events, self.settings.gap_timeout, now);
        self.commit().await
    }
}

fn ids(rows: &[AnyRow]) -> Result<Vec<i64>, sqlx::Error> {
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// The rows of `select` whose `column` is one of `ids`, in chunks.
async fn by_ids(db: &Db, select: &str, column: &str, ids: &[i64]) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(ROWS) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("{select} WHERE {column} IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        rows.extend(query.fetch_all(db.pool()).await?);
    }
    Ok(rows)
}
