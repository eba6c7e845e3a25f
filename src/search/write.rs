//! The indexer's writing side: documents added and written again, and whether a ticket's documents still
//! carry its category and status. It runs on the blocking pool, holding the index's writer.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::Row;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{doc, IndexWriter, Searcher, Term};

use super::query::id_term;
use super::{Fields, SearchError};

/// A message row as the index needs it, with its ticket's category and status at the time of reading.
pub(super) struct MessageRow {
    pub(super) id: i64,
    ticket: Option<i64>,
    chat: String,
    sent_at: i64,
    text: String,
    state: Option<(String, String)>,
}

/// What the writer holds between commits.
pub(super) struct Writing {
    pub(super) writer: IndexWriter,
    /// The (category, status) the documents added since the last commit carry, per ticket; `None` when they
    /// were added with different ones.
    pub(super) pending: HashMap<i64, Option<(String, String)>>,
    /// Messages indexed by a ticket's rewrite before the messages watermark reached them.
    pub(super) ahead: HashSet<i64>,
}

impl Writing {
    /// Adds the ticket messages among `rows`; returns the tickets of `checks` (each with the state the
    /// database has) whose documents carry another state.
    pub(super) fn add_and_check(
        &mut self,
        searcher: &Searcher,
        f: &Fields,
        rows: Vec<MessageRow>,
        checks: HashMap<i64, (String, String)>,
    ) -> Result<Vec<i64>, SearchError> {
        for row in rows {
            if self.ahead.remove(&row.id) {
                self.writer.delete_term(id_term(f.message, row.id));
            }
            self.add(f, row)?;
        }
        let mut stale = Vec::new();
        for (ticket, state) in checks {
            let pending_differs = match self.pending.get(&ticket) {
                Some(added) => added.as_ref() != Some(&state),
                None => false,
            };
            if pending_differs || committed_differs(searcher, f, ticket, &state)? {
                stale.push(ticket);
            }
        }
        Ok(stale)
    }

    /// Writes the documents of `tickets` again from `rows`, all their messages.
    pub(super) fn rewrite(
        &mut self,
        f: &Fields,
        tickets: &[i64],
        rows: Vec<MessageRow>,
        unseen: Vec<i64>,
    ) -> Result<(), SearchError> {
        for &ticket in tickets {
            self.writer.delete_term(id_term(f.ticket, ticket));
            self.pending.remove(&ticket);
        }
        for row in rows {
            self.add(f, row)?;
        }
        self.ahead.extend(unseen);
        Ok(())
    }

    fn add(&mut self, f: &Fields, row: MessageRow) -> Result<(), SearchError> {
        let (Some(ticket), Some((category, status))) = (row.ticket, row.state) else {
            return Ok(());
        };
        match self.pending.get_mut(&ticket) {
            Some(added) if added.as_ref().is_some_and(|s| s.0 != category || s.1 != status) => *added = None,
            Some(_) => {}
            None => {
                self.pending.insert(ticket, Some((category.clone(), status.clone())));
            }
        }
        self.writer.add_document(doc!(
            f.message => row.id,
            f.ticket => ticket,
            f.chat => row.chat,
            f.category => category,
            f.status => status,
            f.sent_at => row.sent_at,
            f.text => row.text,
        ))?;
        Ok(())
    }
}

/// Whether any committed document of `ticket` has another category or status than `state`.
fn committed_differs(
    searcher: &Searcher,
    f: &Fields,
    ticket: i64,
    state: &(String, String),
) -> Result<bool, SearchError> {
    let term = |field, value: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    };
    let same = BooleanQuery::new(vec![
        (Occur::Must, term(f.category, &state.0)),
        (Occur::Must, term(f.status, &state.1)),
    ]);
    let other = BooleanQuery::new(vec![
        (
            Occur::Must,
            Box::new(TermQuery::new(id_term(f.ticket, ticket), IndexRecordOption::Basic)),
        ),
        (Occur::MustNot, Box::new(same)),
    ]);
    Ok(searcher.search(&other, &Count)? > 0)
}

pub(super) fn message_row(row: &AnyRow) -> Result<MessageRow, sqlx::Error> {
    let category: Option<String> = row.try_get("category")?;
    let status: Option<String> = row.try_get("status")?;
    Ok(MessageRow {
        id: row.try_get("id")?,
        ticket: row.try_get("ticket_id")?,
        chat: row.try_get("chat")?,
        sent_at: row.try_get("sent_at")?,
        text: row.try_get("text")?,
        state: category.zip(status),
    })
}
