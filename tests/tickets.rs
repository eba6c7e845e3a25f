//! Intake, threading and the responders' desk, on a real SQLite file and a real PostgreSQL server.

mod support;

use support::{desk, intake, message, ticket_of, TestDb, MINUTE, T0};
use suqiu::auth::{self, Role};
use suqiu::classify::Category;
use suqiu::store::Backend;
use suqiu::tickets::desk::{self, DeskError, Filter};
use suqiu::tickets::intake::InboundMessage;
use suqiu::tickets::intake::{Disposition, IntakeError};
use suqiu::tickets::state::{Action, Actor, Refusal};
use suqiu::tickets::{ResponderId, Status, TicketId};

const ACCIDENT: &str = "我的车在京昆高速侧翻了，人受伤了，快来人";
const BREAKDOWN: &str = "车坏在半路了，发动机打不着火，需要拖车";
const ARREARS: &str = "老板拖欠运费三个月了，八千多块一直不给";
const CHATTER: &str = "有货去太原，运费到付";

on_both_backends!(
    an_appeal_opens_a_ticket_with_its_deadlines_and_an_acknowledgement,
    chatter_is_kept_without_a_ticket,
    the_same_message_delivered_twice_changes_nothing_the_second_time,
    follow_ups_within_the_window_attach_and_later_appeals_open_new_tickets,
    a_reply_to_the_appeal_attaches_after_the_window,
    repeating_the_same_appeal_does_not_open_a_second_ticket,
    another_drivers_message_never_attaches,
    claim_is_exclusive_under_concurrency,
    the_first_reply_is_the_first_response_and_a_note_is_not,
    an_illegal_action_is_refused_and_changes_nothing,
    the_queue_puts_priority_first_then_the_nearest_deadline,
    reopening_sets_new_resolution_deadlines,
    the_event_log_is_append_only,
    a_message_the_database_refuses_does_not_undo_the_others_of_its_batch,
    a_conversation_threads_the_same_in_one_batch_as_one_message_at_a_time,
);

async fn responder(t: &TestDb, name: &str) -> ResponderId {
    auth::add_responder(&t.db, name, Role::Responder, T0)
        .await
        .unwrap()
        .0
        .id
}

async fn an_appeal_opens_a_ticket_with_its_deadlines_and_an_acknowledgement(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let outcome = intake.submit(message("1", "d1", ACCIDENT, T0)).await.unwrap();

    assert_eq!(outcome.disposition, Disposition::Opened);
    assert!(!outcome.duplicate);
    assert_eq!(outcome.classification["label"], "accident");
    let ticket = outcome.ticket.expect("a ticket");
    assert_eq!((ticket.category.as_str(), ticket.priority.as_str()), ("accident", "P1"));
    let summary = desk::summary_of(&t.db, ticket.id).await.unwrap();
    // Accident: first response within 5 minutes, resolution within 4 hours.
    assert_eq!(summary.first_response_due.as_deref(), Some("2026-11-02T08:05:00Z"));
    assert_eq!(summary.resolution_due.as_deref(), Some("2026-11-02T12:00:00Z"));
    assert_eq!(t.count("deadlines").await, 4);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM ticket_events ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(kinds, ["created", "classified"]);
    let outbox: Vec<(String, String)> = sqlx::query_as("SELECT audience, kind FROM outbox ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(
        outbox,
        [
            ("driver".into(), "ack".into()),
            ("responders".into(), "new_ticket".into())
        ]
    );
    t.finish().await;
}

async fn chatter_is_kept_without_a_ticket(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let outcome = intake.submit(message("1", "d1", CHATTER, T0)).await.unwrap();
    assert_eq!(outcome.disposition, Disposition::Chatter);
    assert!(outcome.ticket.is_none());
    assert_eq!(outcome.message.text, CHATTER);
    assert_eq!((t.count("messages").await, t.count("tickets").await), (1, 0));
    t.finish().await;
}

async fn the_same_message_delivered_twice_changes_nothing_the_second_time(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let first = intake.submit(message("7", "d1", BREAKDOWN, T0)).await.unwrap();
    let before = counts(&t).await;
    clock.advance(MINUTE);
    let mut again = message("7", "d1", "重发的内容不同也不算新消息", T0 + MINUTE);
    again.sender_name = None;
    let second = intake.submit(again).await.unwrap();

    assert!(second.duplicate);
    assert_eq!(second.message.id, first.message.id);
    assert_eq!(
        second.message.text, BREAKDOWN,
        "the first delivery is what stays stored"
    );
    assert_eq!(second.ticket.unwrap().id, first.ticket.unwrap().id);
    assert_eq!(counts(&t).await, before);
    t.finish().await;
}

async fn counts(t: &TestDb) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["messages", "tickets", "ticket_events", "deadlines", "outbox"] {
        counts.push(t.count(table).await);
    }
    counts
}

async fn follow_ups_within_the_window_attach_and_later_appeals_open_new_tickets(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let opened = intake.submit(message("1", "d1", BREAKDOWN, T0)).await.unwrap();
    let ticket = opened.ticket.unwrap().id;

    let follow_up = intake
        .submit(message("2", "d1", "在哪呢，怎么还没人来", T0 + 10 * MINUTE))
        .await
        .unwrap();
    assert_eq!(follow_up.disposition, Disposition::Attached);
    assert_eq!(follow_up.ticket.unwrap().id, ticket);

    // Forty minutes after the driver's last message, a different matter is a new ticket.
    let later = intake
        .submit(message("3", "d1", ARREARS, T0 + 50 * MINUTE))
        .await
        .unwrap();
    assert_eq!(later.disposition, Disposition::Opened);
    assert_ne!(later.ticket.unwrap().id, ticket);

    let detail = desk::detail(&t.db, ticket).await.unwrap();
    assert_eq!(detail.messages.len(), 2);
    assert!(detail.events.iter().any(|e| e.kind == "attached"));
    t.finish().await;
}

async fn a_reply_to_the_appeal_attaches_after_the_window(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let opened = intake.submit(message("1", "d1", ARREARS, T0)).await.unwrap();
    let mut reply = message("2", "d1", "还是没消息", T0 + 5 * 60 * MINUTE);
    reply.reply_to = Some("1".into());
    let outcome = intake.submit(reply).await.unwrap();
    assert_eq!(outcome.disposition, Disposition::Attached);
    assert_eq!(outcome.ticket.unwrap().id, opened.ticket.unwrap().id);
    t.finish().await;
}

async fn repeating_the_same_appeal_does_not_open_a_second_ticket(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let first = intake.submit(message("1", "d1", ARREARS, T0)).await.unwrap();
    let repeat = intake
        .submit(message(
            "2",
            "d1",
            "货主说回单没到不给结账，已经拖了两个月",
            T0 + 24 * 60 * MINUTE,
        ))
        .await
        .unwrap();
    assert_eq!(repeat.disposition, Disposition::Attached);
    assert_eq!(repeat.ticket.unwrap().id, first.ticket.unwrap().id);
    assert_eq!(t.count("tickets").await, 1);
    t.finish().await;
}

async fn another_drivers_message_never_attaches(t: TestDb) {
    let (intake, _) = intake(&t.db);
    intake.submit(message("1", "d1", BREAKDOWN, T0)).await.unwrap();
    let mut other = message("2", "d2", "师傅们早上好", T0 + MINUTE);
    other.reply_to = Some("1".into());
    let outcome = intake.submit(other).await.unwrap();
    assert_eq!(outcome.disposition, Disposition::Chatter);
    let theirs = intake
        .submit(message("3", "d2", BREAKDOWN, T0 + 2 * MINUTE))
        .await
        .unwrap();
    assert_eq!(theirs.disposition, Disposition::Opened);
    assert_eq!(t.count("tickets").await, 2);
    t.finish().await;
}

async fn claim_is_exclusive_under_concurrency(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", ACCIDENT, T0)).await;
    let mut responders = Vec::new();
    for i in 0..50 {
        responders.push(responder(&t, &format!("responder-{i}")).await);
    }
    let desk = desk(&t.db);
    let claims = responders.iter().map(|&r| {
        let desk = desk.clone();
        tokio::spawn(async move {
            desk.act(T0 + MINUTE, ticket, Actor::Responder(r), Action::Claim, None)
                .await
        })
    });
    let results: Vec<_> = futures_join(claims).await;

    let winners: Vec<ResponderId> = results.iter().filter_map(|r| r.as_ref().ok()?.assignee).collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        let refused = matches!(
            r,
            Err(DeskError::Refused {
                refusal: Refusal::AlreadyClaimed(_),
                ..
            })
        );
        assert!(refused, "a losing claim is refused as already claimed: {r:?}");
    }
    let ticket = desk::summary_of(&t.db, ticket).await.unwrap();
    assert_eq!(ticket.assignee, Some(winners[0]));
    let claimed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ticket_events WHERE kind = 'claimed'")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(claimed, 1);
    t.finish().await;
}

async fn futures_join<T: Send + 'static>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

async fn the_first_reply_is_the_first_response_and_a_note_is_not(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", BREAKDOWN, T0)).await;
    let me = Actor::Responder(responder(&t, "王师傅").await);
    let desk = desk(&t.db);
    desk.act(T0 + MINUTE, ticket, me, Action::Claim, None).await.unwrap();
    let noted = desk
        .act(T0 + 2 * MINUTE, ticket, me, Action::Note, Some("已联系救援"))
        .await
        .unwrap();
    assert_eq!(noted.first_response_at, None);
    assert_eq!(t.count("deadlines").await, 4);

    let replied = desk
        .act(T0 + 3 * MINUTE, ticket, me, Action::Reply, Some("救援车半小时到"))
        .await
        .unwrap();
    assert_eq!(replied.status, "responded");
    assert_eq!(replied.first_response_at.as_deref(), Some("2026-11-02T08:03:00Z"));
    let left: Vec<String> = sqlx::query_scalar("SELECT target FROM deadlines ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(left, ["resolution", "resolution"], "the first-response timers are met");
    let to_driver: (String, Option<String>, String) =
        sqlx::query_as("SELECT chat, reply_to, text FROM outbox WHERE kind = 'reply'")
            .fetch_one(t.db.pool())
            .await
            .unwrap();
    assert_eq!(to_driver, ("group-1".into(), Some("1".into()), "救援车半小时到".into()));

    let again = desk
        .act(T0 + 9 * MINUTE, ticket, me, Action::Reply, Some("到了吗"))
        .await
        .unwrap();
    assert_eq!(again.first_response_at, replied.first_response_at);
    t.finish().await;
}

async fn an_illegal_action_is_refused_and_changes_nothing(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", ARREARS, T0)).await;
    let me = Actor::Responder(responder(&t, "a").await);
    let other = Actor::Responder(responder(&t, "b").await);
    let desk = desk(&t.db);
    desk.act(T0, ticket, me, Action::Claim, None).await.unwrap();
    desk.act(T0, ticket, me, Action::Reply, Some("在处理")).await.unwrap();
    desk.act(T0, ticket, me, Action::Resolve, None).await.unwrap();
    let before = desk::detail(&t.db, ticket).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT version FROM tickets")
        .fetch_one(t.db.pool())
        .await
        .unwrap();

    let refused = desk.act(T0 + MINUTE, ticket, other, Action::Claim, None).await;
    assert!(
        matches!(
            &refused,
            Err(DeskError::Refused {
                refusal: Refusal::Finished(Status::Resolved),
                ..
            })
        ),
        "{refused:?}"
    );
    let unknown = desk.act(T0, TicketId(999), me, Action::Claim, None).await;
    assert!(
        matches!(unknown, Err(DeskError::NotFound(TicketId(999)))),
        "{unknown:?}"
    );
    let empty = desk.act(T0, ticket, me, Action::Note, Some("  ")).await;
    assert!(matches!(empty, Err(DeskError::Invalid(_))), "{empty:?}");

    let after = desk::detail(&t.db, ticket).await.unwrap();
    assert_eq!(after.events.len(), before.events.len());
    assert_eq!(after.ticket.status, "resolved");
    let version_after: i64 = sqlx::query_scalar("SELECT version FROM tickets")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(version_after, version);
    t.finish().await;
}

async fn the_queue_puts_priority_first_then_the_nearest_deadline(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    // A rest-stop request (P3), two arrears (P2, opened a minute apart) and an accident (P1), in that order.
    let rest = intake
        .submit(message("1", "d1", "服务区停车费太贵了，司机之家能不能免费停车", T0))
        .await
        .unwrap();
    clock.advance(MINUTE);
    let arrears_1 = intake.submit(message("2", "d2", ARREARS, T0 + MINUTE)).await.unwrap();
    clock.advance(MINUTE);
    let arrears_2 = intake
        .submit(message("3", "d3", ARREARS, T0 + 2 * MINUTE))
        .await
        .unwrap();
    clock.advance(MINUTE);
    let accident = intake
        .submit(message("4", "d4", ACCIDENT, T0 + 3 * MINUTE))
        .await
        .unwrap();
    let id = |o: &suqiu::tickets::intake::Outcome| o.ticket.as_ref().unwrap().id;
    assert_eq!(rest.classification["label"], "rest_stop");

    let queue: Vec<TicketId> = desk::list(&t.db, &Filter::default())
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(queue, [id(&accident), id(&arrears_1), id(&arrears_2), id(&rest)]);

    let p2 = Filter {
        priority: Some(suqiu::classify::Priority::P2),
        ..Filter::default()
    };
    assert_eq!(desk::list(&t.db, &p2).await.unwrap().len(), 2);
    let due_soon = Filter {
        due_before: Some(T0 + 10 * MINUTE),
        ..Filter::default()
    };
    let soon: Vec<TicketId> = desk::list(&t.db, &due_soon)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(soon, [id(&accident)]);
    let by_category = Filter {
        category: Some(Category::FreightArrears),
        ..Filter::default()
    };
    assert_eq!(desk::list(&t.db, &by_category).await.unwrap().len(), 2);
    t.finish().await;
}

async fn reopening_sets_new_resolution_deadlines(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = ticket_of(&intake, message("1", "d1", BREAKDOWN, T0)).await;
    let me = Actor::Responder(responder(&t, "a").await);
    let desk = desk(&t.db);
    desk.act(T0, ticket, me, Action::Claim, None).await.unwrap();
    desk.act(T0, ticket, me, Action::Reply, Some("马上到")).await.unwrap();
    desk.act(T0 + 60 * MINUTE, ticket, me, Action::Resolve, None)
        .await
        .unwrap();
    assert_eq!(t.count("deadlines").await, 0);

    let reopened = desk
        .act(T0 + 120 * MINUTE, ticket, me, Action::Reopen, None)
        .await
        .unwrap();
    assert_eq!((reopened.status.as_str(), reopened.assignee), ("open", None));
    assert_eq!(reopened.resolved_at, None);
    // Breakdown: resolution within 8 hours, counted from the reopening.
    assert_eq!(reopened.resolution_due.as_deref(), Some("2026-11-02T18:00:00Z"));
    assert_eq!(t.count("deadlines").await, 2);
    t.finish().await;
}

async fn the_event_log_is_append_only(t: TestDb) {
    let (intake, _) = intake(&t.db);
    intake.submit(message("1", "d1", BREAKDOWN, T0)).await.unwrap();
    let update = sqlx::query("UPDATE ticket_events SET kind = 'resolved'")
        .execute(t.db.pool())
        .await;
    let delete = sqlx::query("DELETE FROM ticket_events").execute(t.db.pool()).await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    assert_eq!(t.count("ticket_events").await, 2);
    t.finish().await;
}

async fn a_message_the_database_refuses_does_not_undo_the_others_of_its_batch(t: TestDb) {
    // A trigger stands in for any storage failure of one message.
    let poison = match t.db.backend() {
        Backend::Sqlite => vec![
            "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.text = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    for sql in poison {
        sqlx::query(sql).execute(t.db.pool()).await.unwrap();
    }
    let (intake, _) = intake(&t.db);
    // Queued together, so that they share a batch.
    let mut pending = Vec::new();
    for i in 0..20 {
        let text = if i == 10 { "poison" } else { BREAKDOWN };
        let sender = format!("d{i}");
        pending.push(intake.send(message(&i.to_string(), &sender, text, T0)).await.unwrap());
    }
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.push(p.outcome().await);
    }

    assert!(matches!(outcomes[10], Err(IntakeError::Store(_))), "{:?}", outcomes[10]);
    let stored = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(stored, 19);
    assert_eq!((t.count("messages").await, t.count("tickets").await), (19, 19));
    t.finish().await;
}

/// A conversation in one chat: appeals, follow-ups in and out of the window, replies, repeats, another
/// driver replying, and the same message delivered twice.
fn conversation() -> Vec<InboundMessage> {
    let hour = 60 * MINUTE;
    let mut script = vec![
        message("1", "d1", ARREARS, T0),
        message("2", "d1", "都三个月了", T0 + MINUTE),
        message("3", "d2", CHATTER, T0 + 2 * MINUTE),
        message("4", "d2", BREAKDOWN, T0 + 3 * MINUTE),
        message("5", "d1", BREAKDOWN, T0 + 2 * hour),
        message("6", "d1", "货主说回单没到不给结账，已经拖了两个月", T0 + 5 * hour),
        message("7", "d3", ACCIDENT, T0 + 5 * hour),
        message("8", "d2", "师傅们早上好", T0 + 9 * hour),
        message("9", "d1", "还是没消息", T0 + 9 * hour),
        message("4", "d2", BREAKDOWN, T0 + 3 * MINUTE),
    ];
    script[7].reply_to = Some("7".into()); // another driver's appeal: never attaches
    script[8].reply_to = Some("5".into()); // their own breakdown, after the window
    script
}

async fn a_conversation_threads_the_same_in_one_batch_as_one_message_at_a_time(t: TestDb) {
    let one_by_one = {
        let (intake, _) = intake(&t.db);
        let mut outcomes = Vec::new();
        for mut m in conversation() {
            m.channel = "one-by-one".into();
            outcomes.push(intake.submit(m).await.unwrap());
        }
        outcomes
    };
    let batched = {
        let (intake, _) = intake(&t.db);
        let mut pending = Vec::new();
        for mut m in conversation() {
            m.channel = "batched".into();
            pending.push(intake.send(m).await.unwrap());
        }
        let mut outcomes = Vec::new();
        for p in pending {
            outcomes.push(p.outcome().await.unwrap());
        }
        outcomes
    };

    let shape = |outcomes: &[suqiu::tickets::intake::Outcome]| {
        // Tickets numbered in order of first appearance, so that the two runs compare.
        let mut seen = Vec::new();
        outcomes
            .iter()
            .map(|o| {
                let ticket = o.ticket.as_ref().map(|t| {
                    let n = seen.iter().position(|&s| s == t.id).unwrap_or_else(|| {
                        seen.push(t.id);
                        seen.len() - 1
                    });
                    (n, t.category.clone())
                });
                (o.disposition, ticket, o.duplicate)
            })
            .collect::<Vec<_>>()
    };
    let expected = shape(&one_by_one);
    assert_eq!(
        expected.iter().map(|(d, _, _)| *d).collect::<Vec<_>>(),
        [
            Disposition::Opened,
            Disposition::Attached,
            Disposition::Chatter,
            Disposition::Opened,
            Disposition::Opened,
            Disposition::Attached,
            Disposition::Opened,
            Disposition::Chatter,
            Disposition::Attached,
            Disposition::Opened,
        ]
    );
    assert!(expected[9].2, "the message delivered again is a duplicate");
    assert_eq!(shape(&batched), expected);
    t.finish().await;
}
