//! The search page: the drivers' messages of every ticket, by words, with the queue's filters.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::error::{page, PageError};
use super::pages::{choices, Choice, Frame};
use super::session::Member;
use super::DashState;
use crate::classify::Category;
use crate::search::{SearchError, SearchRequest};
use crate::telegram::cards::{category_name, status_name};
use crate::tickets::Status;

pub struct Hit {
    pub ticket: i64,
    pub category: String,
    pub status: String,
    pub chat: String,
    pub sent: String,
    /// HTML from the index: the driver's text escaped, the words found in `<mark>`.
    pub snippet: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    frame: Frame,
    q: String,
    categories: Vec<Choice>,
    statuses: Vec<Choice>,
    hits: Vec<Hit>,
    matched: usize,
    note: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    status: String,
}

pub async fn search(
    State(state): State<DashState>,
    member: Member,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let rules = state.classifier.rules();
    let category = super::pages::chosen::<Category>("类别", &query.category)?;
    let status = super::pages::chosen::<Status>("状态", &query.status)?;
    let (mut hits, mut matched, mut note) = (Vec::new(), 0, None);
    if !query.q.trim().is_empty() {
        let request = SearchRequest {
            words: query.q.clone(),
            categories: category.into_iter().collect(),
            statuses: status.into_iter().collect(),
            limit: 50,
            ..SearchRequest::default()
        };
        match state.search.search(request).await {
            Ok(results) => {
                matched = results.matched_messages;
                hits = results
                    .hits
                    .into_iter()
                    .map(|h| Hit {
                        ticket: h.ticket.0,
                        category: category_name(rules, &h.category).to_owned(),
                        status: status_name(&h.status).to_owned(),
                        chat: h.chat,
                        sent: state.local(&h.sent_at),
                        snippet: h.snippet,
                    })
                    .collect();
            }
            Err(SearchError::NoWords(_)) => note = Some("请输入要找的词，不只是标点或常用字。".to_owned()),
            Err(e) => return Err(PageError::Internal(format!("search: {e}"))),
        }
    }
    let statuses = ["open", "claimed", "responded", "resolved", "closed"].map(|s| (s, status_name(s).to_owned()));
    page(SearchPage {
        frame: Frame::of(&member),
        q: query.q,
        categories: choices(super::pages::category_names(&state), &query.category),
        statuses: choices(statuses, &query.status),
        hits,
        matched,
        note,
    })
}
