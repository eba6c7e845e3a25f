//! SLA timers: warnings and breaches fire once, escalate, survive restarts and several instances; on a real
//! SQLite file and a real PostgreSQL server, with a clock the tests move.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{desk, intake, message, ticket_of, TestDb, MINUTE, T0};
use suqiu::auth::{self, Role};
use suqiu::clock::{ManualClock, SharedClock};
use suqiu::sla::{Scheduler, SlaConfig};
use suqiu::store::Db;
use suqiu::tickets::desk;
use suqiu::tickets::state::{Action, Actor};
use suqiu::tickets::TicketId;

const ACCIDENT: &str = "我的车在京昆高速侧翻了，人受伤了，快来人";
const REST_STOP: &str = "服务区停车费太贵了，司机之家能不能免费停车";
const HOUR: i64 = 60 * MINUTE;

on_both_backends!(
    a_warning_then_a_breach_each_fire_once_and_raise_the_priority,
    a_first_response_in_time_cancels_its_timers,
    what_came_due_while_the_service_was_down_fires_once_after_a_restart,
    two_instances_fire_every_deadline_exactly_once,
    the_scheduler_wakes_when_the_clock_reaches_the_next_deadline,
);

fn scheduler(db: &Db, clock: &Arc<ManualClock>) -> Scheduler {
    let shared: SharedClock = clock.clone();
    Scheduler::new(db.clone(), shared, Arc::new(SlaConfig::default()), Default::default())
}

async fn kinds(t: &TestDb, ticket: TicketId) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM ticket_events WHERE ticket_id = $1 ORDER BY id")
        .bind(ticket.0)
        .fetch_all(t.db.pool())
        .await
        .unwrap()
}

async fn a_warning_then_a_breach_each_fire_once_and_raise_the_priority(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let ticket = intake
        .submit(message("1", "d1", REST_STOP, T0))
        .await
        .unwrap()
        .ticket
        .unwrap();
    assert_eq!(ticket.priority, "P3");
    let scheduler = scheduler(&t.db, &clock);
    assert_eq!(scheduler.fire_due().await.unwrap(), 0);

    // Rest stop: first response within 4 hours, so the warning comes at 80 %: 3 h 12 min.
    clock.set(T0 + 3 * HOUR + 12 * MINUTE - 1);
    assert_eq!(scheduler.fire_due().await.unwrap(), 0);
    clock.set(T0 + 3 * HOUR + 12 * MINUTE);
    assert_eq!(scheduler.fire_due().await.unwrap(), 1);
    assert_eq!(scheduler.fire_due().await.unwrap(), 0, "a warning fires once");
    assert_eq!(desk::summary_of(&t.db, ticket.id).await.unwrap().priority, "P2");

    clock.set(T0 + 4 * HOUR);
    assert_eq!(scheduler.fire_due().await.unwrap(), 1);
    assert_eq!(desk::summary_of(&t.db, ticket.id).await.unwrap().priority, "P1");
    assert_eq!(
        kinds(&t, ticket.id).await,
        [
            "created",
            "classified",
            "sla_warning",
            "escalated",
            "sla_breached",
            "escalated"
        ]
    );
    let alerts: Vec<String> = sqlx::query_scalar("SELECT text FROM outbox WHERE audience = 'supervisors' ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts[0].starts_with("首次响应即将超时") && alerts[1].starts_with("首次响应已超时"),
        "{alerts:?}"
    );
    assert!(
        alerts[1].contains("服务区停车费"),
        "the alert quotes the appeal: {alerts:?}"
    );
    t.finish().await;
}

async fn a_first_response_in_time_cancels_its_timers(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", ACCIDENT, T0)).await;
    let (responder, _) = auth::add_responder(&t.db, "王师傅", Role::Responder, T0).await.unwrap();
    let me = Actor::Responder(responder.id);
    let desk = desk(&t.db);
    desk.act(T0 + MINUTE, ticket, me, Action::Claim, None).await.unwrap();
    desk.act(T0 + 2 * MINUTE, ticket, me, Action::Reply, Some("已报警，救护车在路上"))
        .await
        .unwrap();

    let scheduler = scheduler(&t.db, &clock);
    clock.set(T0 + 10 * MINUTE);
    assert_eq!(scheduler.fire_due().await.unwrap(), 0);
    // Resolution is still due within 4 hours: its warning at 3 h 12 min.
    clock.set(T0 + 3 * HOUR + 12 * MINUTE);
    assert_eq!(scheduler.fire_due().await.unwrap(), 1);
    desk.act(T0 + 3 * HOUR + 20 * MINUTE, ticket, me, Action::Resolve, None)
        .await
        .unwrap();
    clock.set(T0 + 10 * HOUR);
    assert_eq!(
        scheduler.fire_due().await.unwrap(),
        0,
        "a resolved ticket has no timers"
    );
    let sla_events: Vec<String> = kinds(&t, ticket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("sla_"))
        .collect();
    assert_eq!(sla_events, ["sla_warning"]);
    t.finish().await;
}

async fn what_came_due_while_the_service_was_down_fires_once_after_a_restart(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let first = ticket_of(&intake, message("1", "d1", ACCIDENT, T0)).await;
    let second = ticket_of(&intake, message("2", "d2", ACCIDENT, T0)).await;
    drop(intake);
    t.db.close().await;

    // Five hours later the service starts again on the same database.
    let db = Db::connect(&t.url).await.unwrap();
    db.migrate().await.unwrap();
    let clock = ManualClock::at(T0 + 5 * HOUR);
    let scheduler = scheduler(&db, &clock);
    assert_eq!(
        scheduler.fire_due().await.unwrap(),
        8,
        "two targets × warning and breach × two tickets"
    );
    assert_eq!(scheduler.fire_due().await.unwrap(), 0);
    for ticket in [first, second] {
        let fired: Vec<(String, String)> = sqlx::query_as(
            "SELECT kind, data FROM ticket_events WHERE ticket_id = $1 AND kind LIKE 'sla_%' ORDER BY id",
        )
        .bind(ticket.0)
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(fired.len(), 4);
        assert!(fired[0].1.contains("\"late_ms\""), "{fired:?}");
    }
    db.close().await;
    t.finish().await;
}

async fn two_instances_fire_every_deadline_exactly_once(t: TestDb) {
    let (intake, _) = intake(&t.db);
    for i in 0..30 {
        intake
            .submit(message(&i.to_string(), &format!("d{i}"), ACCIDENT, T0))
            .await
            .unwrap();
    }
    let other = Db::connect(&t.url).await.unwrap();
    let clock = ManualClock::at(T0 + 5 * HOUR);
    let (a, b) = (scheduler(&t.db, &clock), scheduler(&other, &clock));
    let (fired_a, fired_b) = tokio::join!(
        tokio::spawn(async move { a.fire_due().await.unwrap() }),
        tokio::spawn(async move { b.fire_due().await.unwrap() })
    );
    assert_eq!(fired_a.unwrap() + fired_b.unwrap(), 30 * 4);
    let per_deadline: Vec<i64> =
        sqlx::query_scalar("SELECT COUNT(*) FROM ticket_events WHERE kind LIKE 'sla_%' GROUP BY ticket_id, kind, data")
            .fetch_all(t.db.pool())
            .await
            .unwrap();
    assert_eq!(per_deadline.len(), 30 * 4);
    assert!(per_deadline.iter().all(|&n| n == 1));
    let escalations = t.count("outbox WHERE audience = 'supervisors'").await;
    assert_eq!(escalations, 30 * 4);
    other.close().await;
    t.finish().await;
}

async fn the_scheduler_wakes_when_the_clock_reaches_the_next_deadline(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", ACCIDENT, T0)).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let running = {
        let (scheduler, stop) = (scheduler(&t.db, &clock), stop.clone());
        tokio::spawn(async move { scheduler.run(stop.notified()).await })
    };
    // Accident: the first-response warning is due at 4 minutes.
    clock.set(T0 + 4 * MINUTE);
    let fired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if kinds(&t, ticket).await.contains(&"sla_warning".to_owned()) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(fired.is_ok(), "the warning fired once the clock reached it");
    stop.notify_one();
    running.await.unwrap();
    let warnings = kinds(&t, ticket).await.iter().filter(|k| *k == "sla_warning").count();
    assert_eq!(warnings, 1);
    t.finish().await;
}
