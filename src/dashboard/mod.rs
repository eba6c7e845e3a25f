//! The team's dashboard: server-rendered pages in Chinese (askama templates in `templates/`, escaped by
//! default), behind a log-in. Responders work the queue here as in Telegram; supervisors read response times.
//!
//! Like the API, handlers only translate: a form in, a call to the desk or a report, a page out.

mod charts;
mod error;
mod pages;
mod search;
mod session;

use std::sync::Arc;

use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Router};
use jiff::tz::TimeZone;

pub use error::PageError;
pub use session::{Attempts, COOKIE};

use crate::classify::Classifier;
use crate::clock::SharedClock;
use crate::search::SearchIndex;
use crate::tickets::desk::Desk;

#[derive(Clone)]
pub struct DashState {
    pub desk: Desk,
    pub clock: SharedClock,
    pub classifier: Arc<Classifier>,
    pub time_zone: TimeZone,
    /// Mark cookies Secure: the dashboard is served over HTTPS.
    pub secure_cookies: bool,
    pub attempts: Arc<Attempts>,
    /// The instance's search index, kept current by the service's indexer.
    pub search: SearchIndex,
}

pub fn router(state: DashState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(session::login_form).post(session::log_in))
        .route("/login/link", get(session::link_form).post(session::use_link))
        .route("/logout", post(session::log_out))
        .route("/queue", get(pages::queue))
        .route("/tickets/{id}", get(pages::ticket))
        .route("/tickets/{id}/{action}", post(pages::act))
        .route("/search", get(search::search))
        .route("/responders", get(pages::responders))
        .route("/exports/{file}", get(pages::export))
        .layer(middleware::map_response(guarded))
        .with_state(state)
}

/// What the browser is told about every page: the pages run no script at all (a driver's text that slipped
/// past escaping could not run either), load nothing from elsewhere, post forms only here and are never
/// framed; and no address leaves in a `Referer` (a log-in link's carries its token).
async fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
