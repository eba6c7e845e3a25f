//! Full-text search over the drivers' messages of every ticket: words with filters, ranked, with highlighted
//! snippets, and the past cases most like a ticket.
//!
//! The index is a tantivy index in a local directory, one document per ticket message, that follows the
//! database ([`Indexer`]): each instance keeps its own, so several instances on one PostgreSQL each search
//! a copy that is seconds behind. It holds nothing the database does not, so it can always be rebuilt
//! ([`rebuild`], `suqiu reindex`); an index built by another version or other dictionaries rebuilds itself.

mod analyzer;
mod follow;
mod indexer;
mod normalize;
mod query;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tantivy::directory::MmapDirectory;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STORED, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexSettings, ReloadPolicy};

use crate::classify::lexicon::Lexicon;
use crate::classify::{RuleErrors, Sources};
use crate::config::Config;
use crate::tickets::TicketId;

pub use analyzer::{Analyzer, HighlightTokenizer, JiebaTokenizer, Mode, TOKENIZER};
pub use indexer::{rebuild, Indexer, IndexerSettings, Rebuilt};
pub use query::{SearchRequest, SimilarCase};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the search index in {0} is in use by another process (stop it before rebuilding)")]
    Locked(String),
    #[error("failed to prepare the search index directory {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Rules(#[from] RuleErrors),
    #[error("nothing to search for in {0:?}: only punctuation or common words")]
    NoWords(String),
    #[error("search task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One ticket that matched a search: its best-matching message.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub ticket: TicketId,
    /// The matching message's id in `messages`.
    pub message: i64,
    pub chat: String,
    /// The ticket's category and status when the index last followed it.
    pub category: String,
    pub status: String,
    /// When the driver sent the message, RFC 3339.
    pub sent_at: String,
    /// BM25; comparable within one search only.
    pub score: f32,
    /// The best passage of the message as HTML: the driver's text escaped, the words found in `<mark>`.
    pub snippet: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// One hit per ticket, best first.
    pub hits: Vec<SearchHit>,
    /// The messages that match, in all tickets.
    pub matched_messages: usize,
}

/// The schema's fields.
#[derive(Debug, Clone, Copy)]
struct Fields {
    message: Field,
    ticket: Field,
    chat: Field,
    category: Field,
    status: Field,
    sent_at: Field,
    text: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let id = NumericOptions::default().set_indexed().set_stored();
        let text = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            message: builder.add_i64_field("message", id.clone()),
            ticket: builder.add_i64_field("ticket", id.set_fast()),
            chat: builder.add_text_field("chat", STRING | STORED),
            category: builder.add_text_field("category", STRING | STORED),
            status: builder.add_text_field("status", STRING | STORED),
            sent_at: builder.add_i64_field("sent_at", NumericOptions::default().set_stored().set_fast()),
            text: builder.add_text_field("text", text),
        };
        (builder.build(), fields)
    }
}

/// The index, opened for searching; cheap to clone. The [`Indexer`] writes to it.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    analyzer: Arc<Analyzer>,
    dir: PathBuf,
}

impl SearchIndex {
    /// The index in the configured directory, analyzing with `lexicon`: the classifier's, loaded from the
    /// configured dictionaries.
    pub fn from_config(config: &Config, lexicon: Arc<Lexicon>) -> Result<SearchIndex, SearchError> {
        let sources = match &config.rules {
            Some(dir) => Sources::from_dir(dir)?,
            None => Sources::builtin(),
        };
        let analyzer = Analyzer::new(lexicon, &sources.dictionaries);
        SearchIndex::open(&config.search_dir(), Arc::new(analyzer))
    }

    /// Opens the index in `dir`, creating it if there is none. An index of another schema is removed and
    /// created anew: the indexer fills it from the database.
    pub fn open(dir: &Path, analyzer: Arc<Analyzer>) -> Result<SearchIndex, SearchError> {
        let (schema, fields) = Fields::schema();
        let directory = open_directory(dir)?;
        let index = match Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
            true => {
                let index = Index::open(directory)?;
                if index.schema() == schema {
                    index
                } else {
                    tracing::warn!(dir = %dir.display(), "search index: another schema; starting a new index");
                    drop(index);
                    std::fs::remove_dir_all(dir).map_err(|source| directory_error(dir, source))?;
                    Index::create(open_directory(dir)?, schema, IndexSettings::default())?
                }
            }
            false => Index::create(directory, schema, IndexSettings::default())?,
        };
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::from(JiebaTokenizer::new(analyzer.clone(), Mode::Index)),
        );
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(SearchIndex {
            inner: Arc::new(Inner {
                index,
                reader,
                fields,
                analyzer,
                dir: dir.to_owned(),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn analyzer(&self) -> &Arc<Analyzer> {
        &self.inner.analyzer
    }

    /// The messages searchable now.
    pub fn num_messages(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    /// The files of the index and their size in bytes.
    pub fn size_on_disk(&self) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    /// Makes the last commit searchable.
    fn reload(&self) -> Result<(), SearchError> {
        Ok(self.inner.reader.reload()?)
    }
}

fn open_directory(dir: &Path) -> Result<MmapDirectory, SearchError> {
    std::fs::create_dir_all(dir).map_err(|source| directory_error(dir, source))?;
    MmapDirectory::open(dir).map_err(|e| directory_error(dir, std::io::Error::other(e)))
}

fn directory_error(dir: &Path, source: std::io::Error) -> SearchError {
    SearchError::Directory {
        path: dir.display().to_string(),
        source,
    }
}
