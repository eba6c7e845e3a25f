//! The HTTP API (axum): ingest for bridges, the ticket API for responders, reports for supervisors, health.
//!
//! Handlers only translate: HTTP in, a call to intake or the desk, JSON out. No SQL and no rules here.

mod error;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub use error::ApiError;

use crate::auth::{self, IngestKeys, Responder, Role};
use crate::classify::{Category, Label, Priority};
use crate::clock::SharedClock;
use crate::reports::{self, GroupBy, Period, Report};
use crate::tickets::desk::{self, Desk, Filter, Order, TicketDetail, TicketSummary};
use crate::tickets::intake::{InboundMessage, Intake, Outcome};
use crate::tickets::state::Action;
use crate::tickets::{ResponderId, Status, TicketId};

/// The largest request body accepted: a message is at most 64 KiB of text.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub intake: Intake,
    pub ingest_keys: Arc<IngestKeys>,
    pub desk: Desk,
    pub clock: SharedClock,
}

pub fn router(state: AppState) -> Router {
    let tickets = Router::new()
        .route("/", get(list_tickets))
        .route("/{id}", get(ticket))
        .route("/{id}/claim", post(claim))
        .route("/{id}/reply", post(reply))
        .route("/{id}/note", post(note))
        .route("/{id}/transfer", post(transfer))
        .route("/{id}/reclassify", post(reclassify))
        .route("/{id}/resolve", post(resolve))
        .route("/{id}/reopen", post(reopen));
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/messages", post(ingest))
        .nest("/api/v1/tickets", tickets)
        .route("/api/v1/reports/response-times", get(response_times))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// JSON bodies whose errors are answered as API errors.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // Refused on the announced length, before a byte of it is read (a client that sent
        // `Expect: 100-continue` never has to send it); a body without a length is cut off at the limit.
        let announced = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|len| len > MAX_BODY as u64) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than the {MAX_BODY} bytes accepted"),
            ));
        }
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer …` header"))
}

/// The responder a request's token belongs to.
struct Caller(Responder);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        auth::responder_by_token(state.desk.db(), token)
            .await?
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("unknown responder token"))
    }
}

/// A request made with an ingest key.
struct Ingester;

impl FromRequestParts<AppState> for Ingester {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)?;
        if state.ingest_keys.check(key).await? {
            Ok(Ingester)
        } else {
            Err(ApiError::unauthorized("unknown ingest key"))
        }
    }
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such resource: {}", uri.path()),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    sqlx::query("SELECT 1").execute(state.desk.db().pool()).await?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

async fn ingest(
    State(state): State<AppState>,
    _: Ingester,
    Body(message): Body<InboundMessage>,
) -> Result<Json<Outcome>, ApiError> {
    Ok(Json(state.intake.submit(message).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    category: Option<String>,
    priority: Option<String>,
    chat: Option<String>,
    /// RFC 3339.
    due_before: Option<String>,
    /// `urgency` (the default), `deadline` or `newest`.
    order: Option<String>,
    limit: Option<u32>,
}

async fn list_tickets(
    State(state): State<AppState>,
    _: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<TicketSummary>>, ApiError> {
    let Query(q) = query?;
    let filter = Filter {
        status: q
            .status
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(ApiError::invalid)?,
        category: q
            .category
            .map(|c| c.parse::<Category>())
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        priority: q
            .priority
            .map(|p| p.parse::<Priority>())
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        chat: q.chat,
        assignee: None,
        due_before: q
            .due_before
            .as_deref()
            .map(|t| timestamp("due_before", t))
            .transpose()?,
        at_risk: None,
        order: q
            .order
            .map(|o| o.parse::<Order>())
            .transpose()
            .map_err(ApiError::invalid)?
            .unwrap_or_default(),
        limit: q.limit,
    };
    Ok(Json(desk::list(state.desk.db(), &filter).await?))
}

type TicketPath = Result<Path<i64>, axum::extract::rejection::PathRejection>;

async fn ticket(State(state): State<AppState>, _: Caller, id: TicketPath) -> Result<Json<TicketDetail>, ApiError> {
    let Path(id) = id?;
    Ok(Json(desk::detail(state.desk.db(), TicketId(id)).await?))
}

async fn act(
    state: &AppState,
    caller: &Responder,
    id: TicketPath,
    action: Action,
    text: Option<&str>,
) -> Result<Json<TicketSummary>, ApiError> {
    let Path(id) = id?;
    let now = state.clock.now_ms();
    let summary = state.desk.act(now, TicketId(id), caller.actor(), action, text).await?;
    Ok(Json(summary))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReclassifyBody {
    /// A category id, or `none` for "not an appeal".
    category: String,
}

async fn claim(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
) -> Result<Json<TicketSummary>, ApiError> {
    act(&state, &me, id, Action::Claim, None).await
}

async fn reply(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
    Body(body): Body<TextBody>,
) -> Result<Json<TicketSummary>, ApiError> {
    act(&state, &me, id, Action::Reply, Some(&body.text)).await
}

async fn note(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
    Body(body): Body<TextBody>,
) -> Result<Json<TicketSummary>, ApiError> {
    act(&state, &me, id, Action::Note, Some(&body.text)).await
}

async fn transfer(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
    Body(body): Body<TransferBody>,
) -> Result<Json<TicketSummary>, ApiError> {
    let to = ResponderId(body.to);
    if !auth::responder_exists(state.desk.db(), to).await? {
        return Err(ApiError::invalid(format!("responder {} does not exist", body.to)));
    }
    act(&state, &me, id, Action::Transfer { to }, None).await
}

async fn reclassify(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
    Body(body): Body<ReclassifyBody>,
) -> Result<Json<TicketSummary>, ApiError> {
    let action = match body.category.parse::<Label>() {
        Ok(Label::None) => Action::NotAnAppeal,
        Ok(Label::Appeal(category)) => Action::Reclassify { category },
        Err(e) => return Err(ApiError::invalid(e.to_string())),
    };
    act(&state, &me, id, action, None).await
}

async fn resolve(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
) -> Result<Json<TicketSummary>, ApiError> {
    act(&state, &me, id, Action::Resolve, None).await
}

async fn reopen(
    State(state): State<AppState>,
    Caller(me): Caller,
    id: TicketPath,
) -> Result<Json<TicketSummary>, ApiError> {
    act(&state, &me, id, Action::Reopen, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// RFC 3339; seven days before `to` when absent.
    from: Option<String>,
    /// RFC 3339; now when absent.
    to: Option<String>,
    group_by: Option<String>,
    /// IANA zone for `group_by=day`; UTC when absent.
    time_zone: Option<String>,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Prometheus's scrape, with a supervisor's API token (`Authorization: Bearer …`).
async fn metrics(State(state): State<AppState>, Caller(me): Caller) -> Result<String, ApiError> {
    if !me.role.includes(Role::Supervisor) {
        return Err(ApiError::forbidden("metrics are for supervisors"));
    }
    crate::metrics::render(state.desk.db())
        .await
        .map_err(ApiError::internal)
}

async fn response_times(
    State(state): State<AppState>,
    Caller(me): Caller,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Report>, ApiError> {
    if !me.role.includes(Role::Supervisor) {
        return Err(ApiError::forbidden("reports are for supervisors"));
    }
    let Query(q) = query?;
    let now = state.clock.now_ms();
    let to = q.to.as_deref().map(|t| timestamp("to", t)).transpose()?.unwrap_or(now);
    let from = q
        .from
        .as_deref()
        .map(|t| timestamp("from", t))
        .transpose()?
        .unwrap_or(to - WEEK_MS);
    if from >= to {
        return Err(ApiError::invalid("`from` must come before `to`"));
    }
    let group_by = q
        .group_by
        .as_deref()
        .map_or(Ok(GroupBy::Category), str::parse)
        .map_err(ApiError::invalid)?;
    let time_zone = match q.time_zone.as_deref() {
        None => jiff::tz::TimeZone::UTC,
        Some(name) => jiff::tz::TimeZone::get(name)
            .map_err(|e| ApiError::invalid(format!("time_zone {name:?} is not a known time zone: {e}")))?,
    };
    let period = Period {
        from,
        to,
        group_by,
        time_zone,
    };
    Ok(Json(reports::response_times(state.desk.db(), &period, now).await?))
}

/// Milliseconds since the epoch of an RFC 3339 query parameter.
fn timestamp(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| ApiError::invalid(format!("{name} {value:?} is not an RFC 3339 time: {e}")))
}
