//! Reading the index: a search by words and filters, one hit per ticket with a highlighted snippet; and the
//! past cases most like a ticket, found with a query made of that ticket's most telling words.
//!
//! Searching is CPU work on memory-mapped files: the async methods run it on the blocking pool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::classify::Category;
use crate::clock::rfc3339;
use crate::tickets::{Status, TicketId};

use super::{HighlightTokenizer, Mode, SearchError, SearchHit, SearchIndex, SearchResults};

/// The longest passage a snippet shows, in bytes (tantivy counts bytes): about 80 Chinese characters.
const SNIPPET_BYTES: usize = 240;
const MARK: (&str, &str) = ("<mark>", "</mark>");
/// Text this short before or after the passage is shown rather than cut: a particle, a full stop.
const EDGE_BYTES: usize = 24;
/// The most tickets one search or one `similar` returns, and the deepest page a search reaches.
const MAX_LIMIT: usize = 100;
const MAX_OFFSET: usize = 1000;
/// The words of a ticket that make the query for similar cases: its most telling ones.
const SIMILAR_WORDS: usize = 12;
/// A similar case must score at least this share of what the ticket itself scores on the same query: below
/// it, a case shares a word or two by chance.
const SIMILAR_SHARE: f32 = 0.2;
/// The messages of a ticket read to find its words.
const OWN_MESSAGES: usize = 200;

/// What to search for. Empty filters let everything through.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The words: a message matches when it has every one (traditional, full-width or simplified alike).
    pub words: String,
    /// Tickets in any of these categories.
    pub categories: Vec<Category>,
    /// Tickets in any of these states.
    pub statuses: Vec<Status>,
    /// Messages of this chat.
    pub chat: Option<String>,
    /// Messages sent at or after this time, in milliseconds since the epoch.
    pub sent_from: Option<i64>,
    /// Messages sent before this time, in milliseconds since the epoch.
    pub sent_before: Option<i64>,
    /// Tickets to return, at most 100.
    pub limit: usize,
    /// Tickets to skip, for the next page; at most 1,000.
    pub offset: usize,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            words: String::new(),
            categories: Vec::new(),
            statuses: Vec::new(),
            chat: None,
            sent_from: None,
            sent_before: None,
            limit: 20,
            offset: 0,
        }
    }
}

/// A past case like the ticket asked about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimilarCase {
    pub ticket: TicketId,
    /// BM25 of its best message on the query made of the ticket's words; comparable within one answer.
    pub score: f32,
}

impl SearchIndex {
    /// Searches on the blocking pool: see [`SearchIndex::search_blocking`].
    pub async fn search(&self, request: SearchRequest) -> Result<SearchResults, SearchError> {
        let index = self.clone();
        tokio::task::spawn_blocking(move || index.search_blocking(&request)).await?
    }

    /// The tickets whose messages have all the words and pass the filters, best first, one hit per ticket
    /// (its best message). Fails with [`SearchError::NoWords`] when the words are all punctuation or stop
    /// words.
    pub fn search_blocking(&self, request: &SearchRequest) -> Result<SearchResults, SearchError> {
        let f = self.inner.fields;
        let words = self.words_of(&request.words);
        if words.is_empty() {
            return Err(SearchError::NoWords(request.words.clone()));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            words.iter().map(|w| (Occur::Must, text_term(f.text, w))).collect();
        clauses.extend(self.filters(request).into_iter().map(|q| (Occur::Must, q)));
        let query = BooleanQuery::new(clauses);

        let searcher = self.inner.reader.searcher();
        let limit = request.limit.clamp(1, MAX_LIMIT);
        let offset = request.offset.min(MAX_OFFSET);
        let (best, matched_messages) = self.best_per_ticket(&searcher, &query, offset + limit)?;
        let snippets = self.snippets(&searcher, words)?;
        let mut hits = Vec::with_capacity(limit);
        for (score, address, ticket) in best.into_iter().skip(offset) {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = str_of(&doc, f.text);
            hits.push(SearchHit {
                ticket,
                message: doc.get_first(f.message).and_then(|v| v.as_i64()).unwrap_or_default(),
                chat: str_of(&doc, f.chat).to_owned(),
                category: str_of(&doc, f.category).to_owned(),
                status: str_of(&doc, f.status).to_owned(),
                sent_at: rfc3339(doc.get_first(f.sent_at).and_then(|v| v.as_i64()).unwrap_or_default()),
                score,
                snippet: snippet(&snippets, text),
            });
        }
        Ok(SearchResults { hits, matched_messages })
    }

    /// Finds similar cases on the blocking pool: see [`SearchIndex::similar_blocking`].
    pub async fn similar(&self, ticket: TicketId, limit: usize) -> Result<Vec<SimilarCase>, SearchError> {
        let index = self.clone();
        tokio::task::spawn_blocking(move || index.similar_blocking(ticket, limit)).await?
    }

    /// Other tickets like `ticket`, best first: those whose messages share its most telling words (frequent
    /// in its messages, rare elsewhere). Empty when the ticket is not indexed yet or has no telling words.
    pub fn similar_blocking(&self, ticket: TicketId, limit: usize) -> Result<Vec<SimilarCase>, SearchError> {
        let f = self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let own =
            || -> Box<dyn Query> { Box::new(TermQuery::new(id_term(f.ticket, ticket.0), IndexRecordOption::Basic)) };
        let words = self.telling_words(&searcher, &own())?;
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let any_word = || -> Box<dyn Query> {
            let should = words.iter().map(|w| (Occur::Should, text_term(f.text, w))).collect();
            Box::new(BooleanQuery::new(should))
        };
        // What the ticket scores on its own words is the measure of a close match.
        let itself = BooleanQuery::new(vec![
            (Occur::Must, any_word()),
            (Occur::Must, Box::new(ConstScoreQuery::new(own(), 0.0))),
        ]);
        let Some(&(own_score, _)) = searcher.search(&itself, &TopDocs::with_limit(1))?.first() else {
            return Ok(Vec::new());
        };
        let others = BooleanQuery::new(vec![(Occur::Must, any_word()), (Occur::MustNot, own())]);
        let (mut best, _) = self.best_per_ticket(&searcher, &others, limit.clamp(1, MAX_LIMIT))?;
        // Scores are sums over segments: the same messages laid out in other segments (an index rebuilt, or
        // merged at another moment) may round the last bits differently, and tied cases would swap places.
        // Cases whose scores agree but for those bits are ordered by ticket.
        best.sort_by(|a, b| coarse(b.0).total_cmp(&coarse(a.0)).then(a.2.cmp(&b.2)));
        Ok(best
            .into_iter()
            .filter(|(score, _, _)| *score >= SIMILAR_SHARE * own_score)
            .map(|(score, _, ticket)| SimilarCase { ticket, score })
            .collect())
    }

    /// What draws the snippets of a search for `words`. tantivy's `SnippetGenerator::create` would use the
    /// field's own tokenizer, whose words overlap (a word and the words inside it) where tantivy's fragments
    /// expect words in order: the highlight tokenizer gives it words that do not overlap.
    fn snippets(&self, searcher: &Searcher, words: Vec<String>) -> Result<SnippetGenerator, SearchError> {
        let mut terms = BTreeMap::new();
        for word in &words {
            let messages = searcher.doc_freq(&Term::from_field_text(self.inner.fields.text, word))?;
            // tantivy's own weighing: rarer words make the better passage.
            terms.insert(word.clone(), 1.0 / (1.0 + messages as f32));
        }
        let terms_set = Arc::new(words.into_iter().collect::<HashSet<String>>());
        let tokenizer = HighlightTokenizer::new(self.inner.analyzer.clone(), terms_set);
        Ok(SnippetGenerator::new(
            terms,
            TextAnalyzer::from(tokenizer),
            self.inner.fields.text,
            SNIPPET_BYTES,
        ))
    }

    /// The distinct words of `text` as a query reads them.
    fn words_of(&self, text: &str) -> Vec<String> {
        let mut seen = HashSet::new();
        self.inner
            .analyzer
            .tokens(text, Mode::Query)
            .into_iter()
            .map(|t| t.text)
            .filter(|w| seen.insert(w.clone()))
            .collect()
    }

    /// The filters of `request`, each a clause that matches without adding to the score.
    fn filters(&self, request: &SearchRequest) -> Vec<Box<dyn Query>> {
        let f = self.inner.fields;
        let any_of = |field, values: Vec<&str>| -> Box<dyn Query> {
            let should = values
                .into_iter()
                .map(|v| {
                    let term = TermQuery::new(Term::from_field_text(field, v), IndexRecordOption::Basic);
                    (Occur::Should, Box::new(term) as Box<dyn Query>)
                })
                .collect();
            Box::new(BooleanQuery::new(should))
        };
        let mut filters = Vec::new();
        if !request.categories.is_empty() {
            filters.push(any_of(f.category, request.categories.iter().map(|c| c.id()).collect()));
        }
        if !request.statuses.is_empty() {
            filters.push(any_of(f.status, request.statuses.iter().map(|s| s.id()).collect()));
        }
        if let Some(chat) = &request.chat {
            filters.push(any_of(f.chat, vec![chat.as_str()]));
        }
        if request.sent_from.is_some() || request.sent_before.is_some() {
            let bound = |ms: Option<i64>, bound: fn(Term) -> Bound<Term>| {
                ms.map_or(Bound::Unbounded, |ms| bound(Term::from_field_i64(f.sent_at, ms)))
            };
            filters.push(Box::new(RangeQuery::new(
                bound(request.sent_from, Bound::Included),
                bound(request.sent_before, Bound::Excluded),
            )));
        }
        filters
            .into_iter()
            .map(|q| Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>)
            .collect()
    }

    /// The best `wanted` tickets for `query`, each with its best message; and how many messages match.
    #[allow(clippy::type_complexity)]
    fn best_per_ticket(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        wanted: usize,
    ) -> Result<(Vec<(f32, DocAddress, TicketId)>, usize), SearchError> {
        // A ticket's messages often match together: read a few times more messages than tickets wanted,
        // and more again when that was not enough.
        let mut fetch = (wanted * 4).max(32);
        loop {
            let (top, count) = searcher.search(query, &(TopDocs::with_limit(fetch), Count))?;
            let mut seen = HashSet::new();
            let mut best = Vec::with_capacity(wanted);
            let mut columns = HashMap::new();
            for &(score, address) in &top {
                let column = match columns.entry(address.segment_ord) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        searcher
                            .segment_reader(address.segment_ord)
                            .fast_fields()
                            .i64("ticket")?,
                    ),
                };
                let ticket = TicketId(column.first(address.doc_id).unwrap_or_default());
                if seen.insert(ticket) {
                    best.push((score, address, ticket));
                    if best.len() == wanted {
                        break;
                    }
                }
            }
            if best.len() == wanted || top.len() < fetch {
                return Ok((best, count));
            }
            fetch *= 4;
        }
    }

    /// The most telling words of the messages `own` matches: weighed by how often they come in those
    /// messages and how rare they are in the others; words found in no other message are left out.
    fn telling_words(&self, searcher: &Searcher, own: &dyn Query) -> Result<Vec<String>, SearchError> {
        let f = self.inner.fields;
        let mut frequency: HashMap<String, (u32, u64)> = HashMap::new();
        for (_, address) in searcher.search(own, &TopDocs::with_limit(OWN_MESSAGES))? {
            let doc: TantivyDocument = searcher.doc(address)?;
            let mut in_this = HashSet::new();
            for token in self.inner.analyzer.tokens(str_of(&doc, f.text), Mode::Query) {
                let entry = frequency.entry(token.text.clone()).or_default();
                entry.0 += 1;
                if in_this.insert(token.text) {
                    entry.1 += 1;
                }
            }
        }
        let total = searcher.num_docs() as f32;
        let mut weighted = Vec::with_capacity(frequency.len());
        for (word, (count, own_messages)) in frequency {
            let messages = searcher.doc_freq(&Term::from_field_text(f.text, &word))?;
            if messages <= own_messages {
                continue;
            }
            let idf = (1.0 + (total - messages as f32 + 0.5) / (messages as f32 + 0.5)).ln();
            weighted.push((word, (1.0 + (count as f32).ln()) * idf));
        }
        weighted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        weighted.truncate(SIMILAR_WORDS);
        Ok(weighted.into_iter().map(|(word, _)| word).collect())
    }
}

/// A score without its ten lowest bits of mantissa (a relative precision of about 1e-4).
fn coarse(score: f32) -> f32 {
    f32::from_bits(score.to_bits() & !0x3FF)
}

fn text_term(field: tantivy::schema::Field, word: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, word),
        IndexRecordOption::WithFreqs,
    ))
}

pub(super) fn id_term(field: tantivy::schema::Field, id: i64) -> Term {
    Term::from_field_i64(field, id)
}

fn str_of(doc: &TantivyDocument, field: tantivy::schema::Field) -> &str {
    doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default()
}

/// The best passage of `text` as HTML. tantivy's `Snippet::to_html` escapes the text (`&`, `<`, `>`, `"`,
/// `'`) around and inside the highlights, so the only markup is the highlight tags. The passage ends at a
/// word: a few characters left before or after it are shown (escaped the same way), more become an ellipsis.
fn snippet(generator: &SnippetGenerator, text: &str) -> String {
    let mut snippet = generator.snippet(text);
    if snippet.is_empty() {
        let start: String = text.chars().take(SNIPPET_BYTES / 3).collect();
        let more = if start.len() < text.len() { "…" } else { "" };
        return format!("{}{more}", escape(&start));
    }
    let fragment = snippet.fragment();
    let at = text.find(fragment).unwrap_or(0);
    let (head, tail) = (&text[..at], &text[at + fragment.len()..]);
    let edge = |s: &str| {
        if s.len() <= EDGE_BYTES {
            escape(s)
        } else {
            "…".to_owned()
        }
    };
    let (head, tail) = (edge(head), edge(tail));
    snippet.set_snippet_prefix_postfix(MARK.0, MARK.1);
    format!("{head}{}{tail}", snippet.to_html())
}

/// `text` escaped for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}
