//! Prometheus metrics at `/metrics`: counters kept by the service's parts as things happen (messages by
//! label, tickets opened, SLA warnings and breaches, request latencies), and gauges read from the database when
//! scraped (open tickets by priority, the outbox's backlog and failures), so that every instance of a
//! multi-instance deployment reports the same state.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Db;

pub const MESSAGES: &str = "suqiu_messages_ingested_total";
pub const TICKETS_OPENED: &str = "suqiu_tickets_opened_total";
pub const SLA_EVENTS: &str = "suqiu_sla_events_total";
const REQUEST_SECONDS: &str = "suqiu_http_request_duration_seconds";

/// The process's recorder, installed the first time it is asked for.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), &buckets)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (a test harness): this one's handle still renders what it records.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Times each request by its route (not its path, so that ticket numbers do not become labels).
pub async fn time_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_SECONDS, "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The exposition: the counters and histograms, then the gauges read now.
pub async fn render(db: &Db) -> Result<String, sqlx::Error> {
    let handle = handle();
    handle.run_upkeep();
    let mut text = handle.render();
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT priority, COUNT(*) FROM tickets WHERE status IN ('open', 'claimed', 'responded') GROUP BY priority",
    )
    .fetch_all(db.pool())
    .await?;
    text.push_str("# TYPE suqiu_tickets_open gauge\n");
    for priority in ["P1", "P2", "P3"] {
        let count = open.iter().find(|(p, _)| p == priority).map_or(0, |(_, c)| *c);
        text.push_str(&format!("suqiu_tickets_open{{priority=\"{priority}\"}} {count}\n"));
    }
    let (backlog, failed): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) FROM outbox",
    )
    .fetch_one(db.pool())
    .await?;
    text.push_str(&format!(
        "# TYPE suqiu_outbox_backlog gauge\nsuqiu_outbox_backlog {backlog}\n\
         # TYPE suqiu_outbox_failed gauge\nsuqiu_outbox_failed {failed}\n"
    ));
    Ok(text)
}
