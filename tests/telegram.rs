//! The Telegram bot end to end: the real teloxide client, long polling a fake Bot API server on loopback,
//! with the service on a real SQLite file or PostgreSQL database.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::telegram::{FakeTelegram, Fault, Person, Sent, TOKEN};
use support::{classifier, TestDb};
use suqiu::app::Application;
use suqiu::clock::{ManualClock, SharedClock, SystemClock};
use suqiu::config::{Config, TelegramConfig, UpdateMode};
use tokio::sync::oneshot;

on_both_backends!(
    a_driver_reports_an_accident_and_is_helped_from_the_responders_chat,
    every_message_arrives_once_through_429_500_and_dropped_connections,
    redelivered_updates_change_nothing,
    odd_updates_are_handled_or_ignored_on_purpose,
    drivers_talk_to_the_bot_in_private,
    supervisors_hear_of_deadlines_as_they_pass_and_get_a_daily_digest,
    in_webhook_mode_updates_arrive_through_the_services_own_server_with_the_secret,
    what_a_stopped_service_left_in_the_outbox_is_sent_when_it_starts,
    the_team_works_tickets_with_commands_and_buttons,
    with_a_list_of_driver_groups_other_groups_are_left_alone,
    a_team_member_gets_a_one_time_log_in_link_in_private,
    a_team_members_notice_in_a_driver_group_is_no_appeal,
);

const GROUP: i64 = -1001;
const RESPONDERS: i64 = -200;
const SUPERVISORS: i64 = -300;

const DRIVER: Person = Person {
    id: 7001,
    name: "张师傅",
};
const OTHER_DRIVER: Person = Person {
    id: 7002,
    name: "刘师傅",
};
const RESPONDER: Person = Person {
    id: 8001,
    name: "王干事",
};
const TEAMMATE: Person = Person {
    id: 8002,
    name: "李干事",
};

const ACCIDENT: &str = "兄弟们救命，G5京昆高速追尾了，车头撞烂了，副驾受伤在流血，晋A3F521";

/// The service with the bot, talking to `tg`; stops when the sender is dropped or sent to.
async fn spawn(t: &TestDb, tg: &FakeTelegram, tune: impl FnOnce(&mut Config)) -> oneshot::Sender<()> {
    spawn_with(t, tg, Arc::new(SystemClock), tune).await.0
}

/// [`spawn`] on `clock`, also returning the service's address.
async fn spawn_with(
    t: &TestDb,
    tg: &FakeTelegram,
    clock: SharedClock,
    tune: impl FnOnce(&mut Config),
) -> (oneshot::Sender<()>, String) {
    support::logs();
    let mut config = Config {
        database_url: Some(t.url.clone()),
        search_dir: Some(t.search_dir()),
        listen: "127.0.0.1:0".parse().unwrap(),
        telegram: TelegramConfig {
            token: Some(TOKEN.into()),
            api_url: Some(tg.url.clone()),
            responders_chat: Some(RESPONDERS),
            supervisors_chat: Some(SUPERVISORS),
            ..TelegramConfig::default()
        },
        ..Config::default()
    };
    tune(&mut config);
    let app = Application::build(&config, classifier(), clock).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    (stop, base)
}

/// The rows of `what` once none are left, or after five seconds: the sender records a delivery just after it.
async fn settled_count(t: &TestDb, what: &str) -> i64 {
    let mut count = t.count(what).await;
    for _ in 0..50 {
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        count = t.count(what).await;
    }
    count
}

fn replying_to(chat: i64, message: i64) -> impl Fn(&[Sent]) -> Option<Sent> {
    move |sent| {
        sent.iter()
            .find(|s| s.chat == chat && s.reply_to == Some(message))
            .cloned()
    }
}

fn card_of(ticket: i64) -> impl Fn(&[Sent]) -> Option<Sent> {
    move |sent| {
        sent.iter()
            .find(|s| s.chat == RESPONDERS && s.text.contains(&format!("工单 #{ticket} ")))
            .cloned()
    }
}

async fn a_driver_reports_an_accident_and_is_helped_from_the_responders_chat(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;

    let chatter = tg.write(GROUP, &OTHER_DRIVER, "今天太原到晋中路况怎么样，堵不堵", None);
    let written = std::time::Instant::now();
    let appeal = tg.write(GROUP, &DRIVER, ACCIDENT, None);

    // The driver is acknowledged with a reply to their message: the ticket, the promised time, safety advice.
    let ack = tg.until(10, "the acknowledgement", replying_to(GROUP, appeal)).await;
    eprintln!(
        "acknowledged {} ms after the message was posted",
        written.elapsed().as_millis()
    );
    assert!(ack.text.contains("工单 #1"), "{}", ack.text);
    assert!(ack.text.contains("5 分钟"), "the promised first response: {}", ack.text);
    assert!(ack.text.contains("120") && ack.text.contains("122"), "{}", ack.text);
    assert!(!ack.text.contains('{'), "every placeholder is filled: {}", ack.text);

    // The responders get a card with what they need and the buttons to act.
    let card = tg.until(10, "the ticket card", card_of(1)).await;
    for expected in [
        "P1",
        "交通事故",
        "张师傅",
        "群1001",
        "副驾受伤在流血",
        "晋A·3F521",
        "依据",
        "待认领",
    ] {
        assert!(card.text.contains(expected), "the card shows {expected}: {}", card.text);
    }
    assert_eq!(card.buttons, [["claim:1", "none:1", "cats:1"]]);

    // A responder claims it with the button: the card shows who took it, and the driver is told.
    tg.press(RESPONDERS, card.message_id, &RESPONDER, "claim:1");
    let claimed = tg
        .until(10, "the card to show the claim", |sent| {
            card_of(1)(sent).filter(|c| c.text.contains("王干事 已认领"))
        })
        .await;
    assert!(claimed.text.contains("等了"), "how long it waited: {}", claimed.text);
    assert_eq!(claimed.buttons, [["none:1", "cats:1"]], "nothing left to claim");
    let told = tg
        .until(10, "the driver to hear of the claim", |sent| {
            sent.iter()
                .find(|s| s.chat == GROUP && s.text.contains("王干事受理"))
                .cloned()
        })
        .await;
    assert_eq!(told.reply_to, Some(appeal));

    // A second claimer is told it is taken.
    tg.press(RESPONDERS, card.message_id, &TEAMMATE, "claim:1");
    tg.until_answered("工单 #1 已被 王干事 认领").await;

    // Replying to the card answers the driver, in the group, as a reply to their appeal.
    let answer = "救援车和交警已经在路上了，先把人撤到护栏外，120 马上到";
    tg.write(RESPONDERS, &RESPONDER, answer, Some(card.message_id));
    let delivered = tg
        .until(10, "the answer in the group", |sent| {
            sent.iter().find(|s| s.chat == GROUP && s.text == answer).cloned()
        })
        .await;
    assert_eq!(delivered.reply_to, Some(appeal));
    let first_response: Option<i64> = sqlx::query_scalar("SELECT first_response_at FROM tickets WHERE id = 1")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert!(first_response.is_some(), "the answer is the first response");

    // Resolved from the chat with a command; the driver is asked to rate the help, and does.
    tg.write(RESPONDERS, &RESPONDER, "/resolve 1 人已送医，保险公司已报案", None);
    let rating = tg
        .until(10, "the request for a rating", |sent| {
            sent.iter()
                .find(|s| s.chat == GROUP && s.text.contains("已办结"))
                .cloned()
        })
        .await;
    assert_eq!(
        rating.buttons,
        [["rate:1:1", "rate:1:2", "rate:1:3", "rate:1:4", "rate:1:5"]]
    );
    tg.press(GROUP, rating.message_id, &OTHER_DRIVER, "rate:1:1");
    tg.press(GROUP, rating.message_id, &DRIVER, "rate:1:5");
    tg.until_answered("谢谢您的评分：5 分").await;
    let score: i64 = sqlx::query_scalar("SELECT score FROM ratings WHERE ticket_id = 1")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(score, 5, "only the driver's own rating counts");
    let events: Vec<String> = sqlx::query_scalar("SELECT kind FROM ticket_events WHERE ticket_id = 1 ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            "created",
            "classified",
            "claimed",
            "replied",
            "noted",
            "resolved",
            "rated"
        ]
    );

    // The card ends resolved, without buttons; chatter got no reply, and the group got nothing else.
    tg.until(10, "the card to show the resolution", |sent| {
        card_of(1)(sent).filter(|c| c.text.contains("已办结") && c.buttons.is_empty())
    })
    .await;
    assert!(
        tg.sent().iter().all(|s| s.reply_to != Some(chatter)),
        "chatter gets no reply"
    );
    let to_group: Vec<String> = tg.sent_to(GROUP).into_iter().map(|s| s.text).collect();
    assert_eq!(to_group.len(), 4, "ack, claim, answer, resolution: {to_group:#?}");
    t.finish().await;
}

async fn every_message_arrives_once_through_429_500_and_dropped_connections(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |c| c.telegram.max_attempts = 3).await;

    for (i, fault) in [Fault::TooManyRequests(1), Fault::ServerError, Fault::Drop]
        .into_iter()
        .enumerate()
    {
        tg.fail_next(GROUP, &[fault]);
        tg.fail_next(RESPONDERS, &[fault]);
        let driver = Person {
            id: 7100 + i as i64,
            name: "赵师傅",
        };
        let appeal = tg.write(GROUP, &driver, "平台拖欠我运费三千八两个月了，打电话也不接", None);
        tg.until(
            30,
            &format!("the acknowledgement after {fault:?}"),
            replying_to(GROUP, appeal),
        )
        .await;
        // Let anything duplicated arrive before counting.
        tg.until(30, &format!("the card after {fault:?}"), card_of(i as i64 + 1))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acks = tg.sent().iter().filter(|s| s.reply_to == Some(appeal)).count();
        assert_eq!(acks, 1, "after {fault:?} the acknowledgement arrives once");
        let cards = tg
            .sent()
            .iter()
            .filter(|s| card_of(i as i64 + 1)(std::slice::from_ref(*s)).is_some())
            .count();
        assert_eq!(cards, 1, "after {fault:?} the card arrives once");
    }

    // A message Telegram never takes is marked failed after the configured tries and shown to supervisors.
    tg.fail_next(GROUP, &[Fault::Drop, Fault::Drop, Fault::Drop]);
    let appeal = tg.write(GROUP, &DRIVER, "被治超站罚了两千，说我超载，可我过磅单是合格的", None);
    let alert = tg
        .until(30, "the supervisors to hear of the failure", |sent| {
            sent.iter()
                .find(|s| s.chat == SUPERVISORS && s.text.contains("发送失败"))
                .cloned()
        })
        .await;
    assert!(alert.text.contains("工单 #4"), "{}", alert.text);
    let failed: (i32, Option<i64>) =
        sqlx::query_as("SELECT attempts, failed_at FROM outbox WHERE kind = 'ack' AND reply_to = $1")
            .bind(appeal.to_string())
            .fetch_one(t.db.pool())
            .await
            .unwrap();
    assert_eq!(failed.0, 3);
    assert!(failed.1.is_some());
    assert!(tg.sent().iter().all(|s| s.reply_to != Some(appeal)), "it never arrived");

    let unsent = settled_count(&t, "outbox WHERE sent_at IS NULL AND failed_at IS NULL").await;
    assert_eq!(unsent, 0, "everything else was delivered");
    t.finish().await;
}

async fn redelivered_updates_change_nothing(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let first = spawn(&t, &tg, |_| {}).await;
    let appeal = tg.write(GROUP, &DRIVER, ACCIDENT, None);
    let card = tg.until(10, "the ticket card", card_of(1)).await;
    tg.write(RESPONDERS, &RESPONDER, "/claim 1", None);
    tg.write(RESPONDERS, &RESPONDER, "/reply 1 救援车二十分钟到", None);
    tg.press(RESPONDERS, card.message_id, &RESPONDER, "none:1");
    tg.until(10, "the answer in the group", |sent| {
        sent.iter()
            .find(|s| s.chat == GROUP && s.text == "救援车二十分钟到")
            .cloned()
    })
    .await;
    tg.until_consumed().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = first.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let tables = [
        "messages",
        "tickets",
        "ticket_events",
        "outbox",
        "handled",
        "responders",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(t.count(table).await);
    }
    let sent_before = tg.sent().len();

    // A restarted bot is sent every update again.
    tg.unconfirm_all();
    let _second = spawn(&t, &tg, |_| {}).await;
    tg.until_consumed().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut after = Vec::new();
    for table in tables {
        after.push(t.count(table).await);
    }
    assert_eq!(after, before, "rows in {tables:?}");
    assert_eq!(tg.sent().len(), sent_before, "nothing is sent twice");
    assert!(tg.sent().iter().filter(|s| s.reply_to == Some(appeal)).count() >= 1);
    t.finish().await;
}

async fn odd_updates_are_handled_or_ignored_on_purpose(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;
    let sticker = json!({ "sticker": {
        "file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512,
        "is_animated": false, "is_video": false,
    }});
    tg.post_message(GROUP, &DRIVER, sticker, None);
    let photo = json!({
        "photo": [{ "file_id": "p1", "file_unique_id": "pu1", "width": 90, "height": 90 }],
        "caption": "装货时叉车把我的车厢撞坏了，货主不认账，这是照片",
    });
    let captioned = tg.post_message(GROUP, &DRIVER, photo, None);
    // Someone else's bot, a post in a channel's name, a channel post and an edit: nobody to answer.
    let person = |id: i64, bot: bool| json!({ "id": id, "is_bot": bot, "first_name": "x" });
    let group = json!({ "id": GROUP, "type": "group", "title": "群1001" });
    tg.push(
        "message",
        json!({
            "message_id": 900, "from": person(42, true), "chat": group, "date": 1_790_000_000,
            "text": "我是另一个机器人：欠运费的找我，车祸了找我",
        }),
    );
    tg.push(
        "message",
        json!({
            "message_id": 901, "from": person(1087968824, false), "sender_chat": group, "chat": group,
            "date": 1_790_000_000, "text": "群管理员：被扣车了的在群里说一声",
        }),
    );
    tg.push(
        "channel_post",
        json!({
            "message_id": 5, "chat": { "id": -1009, "type": "channel", "title": "路况频道" }, "date": 1_790_000_000,
            "text": "G5 出了车祸",
        }),
    );
    tg.push(
        "edited_message",
        json!({
            "message_id": captioned, "from": person(DRIVER.id, false), "chat": group, "date": 1_790_000_000,
            "edit_date": 1_790_000_100, "text": "改一下：货主已经赔了",
        }),
    );
    // A huge message, a driver trying the team's commands, and a responder getting them wrong.
    let huge = "平台欠我运费不给，".repeat(600);
    tg.write(GROUP, &OTHER_DRIVER, &huge, None);
    tg.write(GROUP, &OTHER_DRIVER, "/claim 1", None);
    let wrong = tg.write(RESPONDERS, &RESPONDER, "/claim 一", None);
    let missing = tg.write(RESPONDERS, &RESPONDER, "/reply 99 你好", None);

    let usage = tg
        .until(10, "the usage of /claim", replying_to(RESPONDERS, wrong))
        .await;
    assert_eq!(usage.text, "“一”不是工单号。发送 /help 查看命令用法。");
    let unknown = tg
        .until(10, "the answer to /reply 99", replying_to(RESPONDERS, missing))
        .await;
    assert_eq!(unknown.text, "没有工单 #99");
    tg.until(
        10,
        "the captioned photo's acknowledgement",
        replying_to(GROUP, captioned),
    )
    .await;
    tg.until_consumed().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stored: Vec<(String, String)> = sqlx::query_as("SELECT external_id, disposition FROM messages ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        2,
        "only the caption and the huge message are drivers' words: {stored:?}"
    );
    assert_eq!(stored[0], (captioned.to_string(), "opened".to_owned()));
    let text: String = sqlx::query_scalar("SELECT text FROM messages WHERE id = 2")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(text, huge, "a huge message is stored whole");
    let first: String = sqlx::query_scalar("SELECT text FROM messages WHERE id = 1")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert!(first.contains("叉车"), "the edit did not replace the appeal: {first}");
    let to_group = tg.sent_to(GROUP);
    assert!(
        to_group
            .iter()
            .all(|s| s.reply_to == Some(captioned) || s.reply_to == Some(3)),
        "the group hears only acknowledgements: {to_group:#?}"
    );
    t.finish().await;
}

async fn drivers_talk_to_the_bot_in_private(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;
    let private = DRIVER.id;
    tg.write(private, &DRIVER, "/start", None);
    let help = tg
        .until(10, "the welcome", |sent| {
            sent.iter().find(|s| s.chat == private).cloned()
        })
        .await;
    assert!(
        help.text.contains("/status") && help.text.contains("122"),
        "{}",
        help.text
    );

    let appeal = tg.write(
        private,
        &DRIVER,
        "我在物流园卸货，老板扣了我八千多运费不给，说回单丢了",
        None,
    );
    let ack = tg.until(10, "the acknowledgement", replying_to(private, appeal)).await;
    assert!(ack.text.contains("工单 #1"), "{}", ack.text);
    tg.write(private, &DRIVER, "/status", None);
    let status = tg
        .until(10, "the driver's tickets", |sent| {
            sent.iter()
                .find(|s| s.chat == private && s.text.starts_with("您的工单"))
                .cloned()
        })
        .await;
    assert!(
        status.text.contains("#1") && status.text.contains("待认领"),
        "{}",
        status.text
    );

    // Someone else's /status shows only their own.
    tg.write(OTHER_DRIVER.id, &OTHER_DRIVER, "/status", None);
    let none = tg
        .until(10, "the other driver's answer", |sent| {
            sent.iter().find(|s| s.chat == OTHER_DRIVER.id).cloned()
        })
        .await;
    assert!(none.text.starts_with("您还没有工单"), "{}", none.text);
    t.finish().await;
}

async fn supervisors_hear_of_deadlines_as_they_pass_and_get_a_daily_digest(t: TestDb) {
    let tg = FakeTelegram::start().await;
    // 2026-11-01 16:00 in Shanghai; the digest is at 16:01.
    let clock = ManualClock::at(support::T0 - 24 * 60 * support::MINUTE);
    let (_running, _) = spawn_with(&t, &tg, clock.clone(), |c| {
        c.telegram.digest_at = Some("16:01".into());
    })
    .await;
    let appeal = tg.write(GROUP, &DRIVER, ACCIDENT, None);
    tg.until(10, "the acknowledgement", replying_to(GROUP, appeal)).await;

    // Four minutes on, the first response (due in five) is near; then it is missed.
    clock.advance(4 * support::MINUTE);
    let warning = tg
        .until(10, "the warning", |sent| {
            sent.iter()
                .find(|s| s.chat == SUPERVISORS && s.text.contains("即将超时"))
                .cloned()
        })
        .await;
    assert!(
        warning.text.starts_with("首次响应即将超时 #1 [P1 accident]"),
        "{}",
        warning.text
    );
    clock.advance(2 * support::MINUTE);
    tg.until(10, "the breach", |sent| {
        sent.iter()
            .find(|s| s.chat == SUPERVISORS && s.text.starts_with("首次响应已超时 #1"))
            .cloned()
    })
    .await;

    // At 16:01 each day, the day before's digest: 31 October's went out while the clock passed 16:01.
    clock.set(support::T0 + support::MINUTE + 30_000);
    let digest = tg
        .until(10, "the digest", |sent| {
            sent.iter()
                .find(|s| s.chat == SUPERVISORS && s.text.contains("11月1日日报"))
                .cloned()
        })
        .await;
    assert!(
        digest.text.starts_with("📊 11月1日日报：新工单 1 个"),
        "{}",
        digest.text
    );
    assert!(digest.text.contains("交通事故/人身伤亡 1"), "{}", digest.text);
    assert!(digest.text.contains("已超时 1"), "{}", digest.text);
    t.finish().await;
}

async fn in_webhook_mode_updates_arrive_through_the_services_own_server_with_the_secret(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let (_running, base) = spawn_with(&t, &tg, Arc::new(SystemClock), |c| {
        c.telegram.mode = UpdateMode::Webhook;
        c.telegram.webhook_url = Some("https://bot.example.org/telegram/hook".into());
        c.telegram.webhook_secret = Some("hook-secret".into());
    })
    .await;
    assert_eq!(tg.calls("setWebhook"), 1);
    assert_eq!(tg.calls("getUpdates"), 0, "no polling");
    let update = json!({ "update_id": 1, "message": {
        "message_id": 77, "from": { "id": DRIVER.id, "is_bot": false, "first_name": DRIVER.name },
        "chat": { "id": GROUP, "type": "group", "title": "群1001" }, "date": 1_790_000_000, "text": ACCIDENT,
    }});
    let http = reqwest::Client::new();
    let hook = format!("{base}/telegram/hook");
    let forged = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", "guess")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    let genuine = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", "hook-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(genuine.status(), reqwest::StatusCode::OK);
    tg.until(10, "the acknowledgement", replying_to(GROUP, 77)).await;
    assert_eq!(t.count("messages").await, 1, "the forged update was not taken in");
    t.finish().await;
}

async fn what_a_stopped_service_left_in_the_outbox_is_sent_when_it_starts(t: TestDb) {
    // A service without a bot took the appeal in: its acknowledgement and card wait in the outbox.
    let (intake, _) = support::intake(&t.db);
    let mut appeal = support::message("55", &DRIVER.id.to_string(), ACCIDENT, support::T0);
    appeal.chat = GROUP.to_string();
    intake.submit(appeal).await.unwrap();
    assert_eq!(t.count("outbox WHERE sent_at IS NULL").await, 2);

    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;
    let ack = tg.until(10, "the acknowledgement", replying_to(GROUP, 55)).await;
    assert!(ack.text.contains("工单 #1"), "{}", ack.text);
    tg.until(10, "the card", card_of(1)).await;
    assert_eq!(settled_count(&t, "outbox WHERE sent_at IS NULL AND id <= 2").await, 0);
    t.finish().await;
}

async fn the_team_works_tickets_with_commands_and_buttons(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;
    tg.write(GROUP, &DRIVER, "平台拖欠我运费三千八两个月了，打电话也不接", None);
    tg.write(GROUP, &OTHER_DRIVER, "车在高速上爆胎了走不了，在G20青银高速", None);
    let arrears = tg.until(10, "the first card", card_of(1)).await;
    let breakdown = tg.until(10, "the second card", card_of(2)).await;

    // Ask a command, wait for the answer to it.
    let ask = |text: &'static str| {
        let asked = tg.write(RESPONDERS, &RESPONDER, text, None);
        tg.until(10, text, replying_to(RESPONDERS, asked))
    };
    let queue = ask("/queue").await;
    assert!(queue.text.contains("#1") && queue.text.contains("#2"), "{}", queue.text);
    assert_eq!(ask("/mine").await.text, "您手上没有未办结的工单。");
    assert_eq!(ask("/claim 2").await.text, "已认领 #2");
    let mine = ask("/mine").await;
    assert!(mine.text.contains("#2") && !mine.text.contains("#1 "), "{}", mine.text);
    assert_eq!(ask("/note 2 司机说备胎也坏了").await.text, "已记下备注 #2");
    // The teammate is enrolled by acting; then the ticket is handed to them by name.
    tg.press(RESPONDERS, arrears.message_id, &TEAMMATE, "claim:1");
    tg.until_answered("已认领 #1").await;
    assert_eq!(ask("/transfer 2 李干事").await.text, "已转交 #2");
    assert_eq!(ask("/reply 2 我来跟").await.text, "工单 #2 由 李干事 负责");
    assert_eq!(ask("/transfer 2 没这个人").await.text, "没有叫“没这个人”的同事");

    // Buttons: a card's category is changed with the picker, another ticket is closed as not an appeal.
    tg.press(RESPONDERS, breakdown.message_id, &TEAMMATE, "cats:2");
    let picker = tg
        .until(10, "the category picker", |sent| {
            card_of(2)(sent).filter(|c| c.buttons.iter().flatten().any(|b| b == "cat:2:accident"))
        })
        .await;
    assert_eq!(picker.buttons.last().unwrap(), &["back:2"]);
    tg.press(RESPONDERS, breakdown.message_id, &TEAMMATE, "cat:2:accident");
    tg.until(10, "the card in its new category", |sent| {
        card_of(2)(sent).filter(|c| c.text.contains("交通事故") && c.buttons == [["none:2", "cats:2"]])
    })
    .await;
    tg.press(RESPONDERS, arrears.message_id, &TEAMMATE, "none:1");
    tg.until(10, "the closed card", |sent| {
        card_of(1)(sent).filter(|c| c.text.contains("不是诉求") && c.buttons.is_empty())
    })
    .await;
    assert_eq!(ask("/reopen 1").await.text, "已重新打开 #1");
    let stats = ask("/stats").await;
    assert!(stats.text.starts_with("📊 今天：新工单 2 个"), "{}", stats.text);
    let help = ask("/help").await;
    assert!(help.text.contains("/transfer"), "{}", help.text);

    let category: String = sqlx::query_scalar("SELECT category FROM tickets WHERE id = 2")
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(category, "accident");
    let team: Vec<(String, String)> = sqlx::query_as("SELECT name, role FROM responders ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(
        team,
        [
            ("王干事".to_owned(), "responder".to_owned()),
            ("李干事".to_owned(), "responder".to_owned())
        ]
    );
    t.finish().await;
}

async fn with_a_list_of_driver_groups_other_groups_are_left_alone(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |c| c.telegram.driver_groups = Some(vec![GROUP])).await;
    tg.write(-1002, &DRIVER, ACCIDENT, None);
    let listed = tg.write(GROUP, &DRIVER, ACCIDENT, None);
    tg.until(
        10,
        "the acknowledgement in the listed group",
        replying_to(GROUP, listed),
    )
    .await;
    tg.until_consumed().await;
    let chats: Vec<String> = sqlx::query_scalar("SELECT chat FROM messages")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    assert_eq!(chats, [GROUP.to_string()]);
    assert!(
        tg.sent_to(-1002).is_empty(),
        "nothing is said in a group that is not listed"
    );
    t.finish().await;
}

async fn a_team_member_gets_a_one_time_log_in_link_in_private(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let clock: SharedClock = Arc::new(SystemClock);
    let _running = spawn_with(&t, &tg, clock, |c| c.public_url = Some("https://suqiu.example/".into())).await;

    let asked = tg.write(RESPONDERS, &RESPONDER, "/login", None);
    let answer = tg
        .until(10, "the answer to /login", replying_to(RESPONDERS, asked))
        .await;
    assert_eq!(answer.text, "登录链接已私信给您。");
    let private = tg
        .until(10, "the private link", |sent| {
            sent.iter().find(|s| s.chat == RESPONDER.id).cloned()
        })
        .await;
    let at = private
        .text
        .find("https://suqiu.example/login/link?token=")
        .expect("the link")
        + 39;
    let token = private.text[at..].split_whitespace().next().unwrap().to_owned();
    assert!(
        tg.sent_to(RESPONDERS).iter().all(|s| !s.text.contains("token=")),
        "the link is never posted in the group"
    );

    let member = suqiu::auth::login::use_link(&t.db, &token, suqiu::clock::Clock::now_ms(&SystemClock))
        .await
        .unwrap()
        .expect("the link logs its member in");
    assert_eq!(member.name, RESPONDER.name);
    t.finish().await;
}

async fn a_team_members_notice_in_a_driver_group_is_no_appeal(t: TestDb) {
    let tg = FakeTelegram::start().await;
    let _running = spawn(&t, &tg, |_| {}).await;
    // What a staff member says of a driver's case reads as the appeal itself.
    const NOTICE: &str = "刘师傅的运费老板还拖着没给，明天我陪他去劳动监察大队";
    // Before the responder has acted in the team's chat, the bot cannot tell them from a driver.
    let before = tg.write(GROUP, &RESPONDER, NOTICE, None);
    tg.until(
        10,
        "the acknowledgement of the unknown sender",
        replying_to(GROUP, before),
    )
    .await;
    let asked = tg.write(RESPONDERS, &RESPONDER, "/mine", None);
    tg.until(10, "the answer to /mine", replying_to(RESPONDERS, asked))
        .await;

    let notice = tg.write(GROUP, &RESPONDER, NOTICE, None);
    let appeal = tg.write(GROUP, &DRIVER, ACCIDENT, None);
    tg.until(
        10,
        "the acknowledgement of the driver's appeal",
        replying_to(GROUP, appeal),
    )
    .await;
    tg.until_consumed().await;
    let taken: Vec<(String, String)> = sqlx::query_as("SELECT sender, external_id FROM messages ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap();
    let sender = |p: &Person| p.id.to_string();
    assert_eq!(
        taken,
        [
            (sender(&RESPONDER), before.to_string()),
            (sender(&DRIVER), appeal.to_string())
        ],
        "the team member's notice is not taken in once they are known"
    );
    assert_eq!(t.count("tickets").await, 2);
    assert!(
        replying_to(GROUP, notice)(&tg.sent()).is_none(),
        "nothing answers the notice"
    );
    t.finish().await;
}
