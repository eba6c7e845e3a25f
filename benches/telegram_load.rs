//! How soon a driver on Telegram is acknowledged when many groups write at once.
//!
//! The service runs as deployed (a SQLite file, teloxide's throttle with Telegram's limits, long polling)
//! against the fake Bot API server of the tests on loopback. Drivers' messages come from the project's corpus,
//! each from a different driver, so that every appeal opens a ticket. The latency of an acknowledgement is the
//! time from the message's arrival at the fake server to the fake receiving the reply to it.
//!
//! Three runs, each on a fresh service:
//! - `quiet`: appeals one at a time, far apart: the baseline, in this process, that the others are read against.
//! - `burst`: one appeal in each of 30 groups at the same instant (an accident on a road many groups drive).
//! - `busy`: 40 groups, 5 messages a second for a minute, one in five an appeal: 60 tickets a minute, far
//!   beyond a union's day. Cards to the responders' chat outrun what Telegram lets a bot post in one group
//!   (about 20 a minute), so they queue; acknowledgements must not queue behind them.
//!
//! The target: every acknowledgement within a second (p99 < 1 s). Telegram's own limits bound it: a bot
//! sends at most 30 messages a second overall and one a second per chat, so a burst of more than about 30
//! appeals, or two appeals in one group within a second, waits for the throttle.
//!
//! Run: `cargo bench --bench telegram_load`.

#[path = "../tests/support/telegram.rs"]
#[allow(dead_code)]
mod fake;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake::{FakeTelegram, Person, Sent, TOKEN};
use suqiu::app::Application;
use suqiu::classify::{Classifier, Label};
use suqiu::clock::SystemClock;
use suqiu::config::{Config, TelegramConfig};
use suqiu::store::Db;
use tokio::sync::oneshot;

/// Supergroup ids, as Telegram gives them.
const RESPONDERS: i64 = -1_009_000_000_001;
const SUPERVISORS: i64 = -1_009_000_000_002;
const FIRST_GROUP: i64 = -1_001_000_000_000;

/// A message to post: to which group, after how long since the run began.
struct Post {
    group: i64,
    after: Duration,
    text: String,
}

struct Report {
    name: &'static str,
    posted: usize,
    tickets: i64,
    acks: Vec<Duration>,
    cards: Vec<Duration>,
}

impl Report {
    fn print(&self, baseline: Option<Duration>) {
        let acks = percentiles(&self.acks);
        let cards = percentiles(&self.cards);
        let ratio = baseline
            .map(|b| format!(" = {:.1}× the quiet median", acks.1.as_secs_f64() / b.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{:<6} {} messages, {} tickets, {} acknowledged: ack p50 {} ms, p99 {} ms{ratio}, max {} ms; \
             {} cards, card p50 {} ms, max {} ms",
            self.name,
            self.posted,
            self.tickets,
            self.acks.len(),
            acks.0.as_millis(),
            acks.1.as_millis(),
            acks.2.as_millis(),
            self.cards.len(),
            cards.0.as_millis(),
            cards.2.as_millis(),
        );
    }
}

/// p50, p99 and the largest.
fn percentiles(values: &[Duration]) -> (Duration, Duration, Duration) {
    let mut sorted = values.to_vec();
    sorted.sort();
    let at = |q: usize| sorted.get((sorted.len() * q).div_ceil(100).saturating_sub(1)).copied();
    (
        at(50).unwrap_or_default(),
        at(99).unwrap_or_default(),
        sorted.last().copied().unwrap_or_default(),
    )
}

/// Messages from the project's corpus, appeals and chatter apart, in a fixed shuffled order.
fn corpus() -> (Vec<String>, Vec<String>) {
    let classifier = Classifier::builtin().expect("the built-in rules load");
    let (mut appeals, mut chatter) = (Vec::new(), Vec::new());
    for file in ["appeals", "chatter", "voices", "voices2", "voices3"] {
        let path = format!("{}/tests/corpus/{file}.jsonl", env!("CARGO_MANIFEST_DIR"));
        for line in std::fs::read_to_string(&path).expect("the corpus is readable").lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(text) = value["text"].as_str() else { continue };
            // Sorted by what the service will do with it, not by its label: the point is the load.
            if classifier.classify(text).label != Label::None {
                appeals.push(text.to_owned());
            } else {
                chatter.push(text.to_owned());
            }
        }
    }
    shuffle(&mut appeals);
    shuffle(&mut chatter);
    (appeals, chatter)
}

fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        items.swap(i, (state >> 33) as usize % (i + 1));
    }
}

async fn run(name: &'static str, posts: Vec<Post>) -> Report {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("suqiu.db").display());
    let tg = FakeTelegram::start().await;
    let config = Config {
        database_url: Some(url.clone()),
        search_dir: Some(dir.path().join("search")),
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
    let classifier = Arc::new(Classifier::builtin().expect("the built-in rules load"));
    let app = Application::build(&config, classifier, Arc::new(SystemClock))
        .await
        .expect("the service starts");
    let (stop, stopped) = oneshot::channel::<()>();
    let service = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    // The bot is polling once it has asked for updates.
    while tg.calls("getUpdates") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let start = tokio::time::Instant::now();
    let mut written: HashMap<(i64, i64), Instant> = HashMap::new();
    for (i, post) in posts.iter().enumerate() {
        tokio::time::sleep_until(start + post.after).await;
        let driver = Person {
            id: 10_000 + i as i64,
            name: "师傅",
        };
        let id = tg.write(post.group, &driver, &post.text, None);
        written.insert((post.group, id), Instant::now());
    }

    // Done when every ticket has its acknowledgement and nothing has been sent for a few seconds.
    let db = Db::connect(&url).await.expect("the database opens");
    let mut last = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let sent = tg.sent().len();
        if sent != last.0 {
            last = (sent, Instant::now());
        }
        let acks = tg.sent().iter().filter(|s| s.reply_to.is_some()).count() as i64;
        let quiet = last.1.elapsed() > Duration::from_secs(3);
        if (quiet && acks >= tickets(&db).await) || last.1.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let sent = tg.sent();
    let report = Report {
        name,
        posted: posts.len(),
        tickets: tickets(&db).await,
        acks: latencies(&sent, &written, |s| s.reply_to.map(|r| (s.chat, r))),
        cards: cards(&sent, &written),
    };
    let _ = stop.send(());
    let _ = service.await;
    report
}

async fn tickets(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
        .fetch_one(db.pool())
        .await
        .expect("tickets are counted")
}

/// Each reply's delay after the message it answers.
fn latencies(
    sent: &[Sent],
    written: &HashMap<(i64, i64), Instant>,
    answers: impl Fn(&Sent) -> Option<(i64, i64)>,
) -> Vec<Duration> {
    sent.iter()
        .filter_map(|s| Some(s.at - *written.get(&answers(s)?)?))
        .collect()
}

/// Each card's delay after the appeal: cards go out in ticket order, as appeals were acknowledged.
fn cards(sent: &[Sent], written: &HashMap<(i64, i64), Instant>) -> Vec<Duration> {
    let mut acked: Vec<&Sent> = sent.iter().filter(|s| s.reply_to.is_some()).collect();
    acked.sort_by_key(|s| s.at);
    let cards = sent
        .iter()
        .filter(|s| s.chat == RESPONDERS && s.text.contains("工单 #"));
    cards
        .zip(acked)
        .filter_map(|(card, ack)| Some(card.at - *written.get(&(ack.chat, ack.reply_to?))?))
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (appeals, chatter) = corpus();
    let mut appeals = appeals.into_iter().cycle();
    let mut chatter = chatter.into_iter().cycle();

    let quiet = (0..10)
        .map(|i| Post {
            group: FIRST_GROUP - i,
            after: Duration::from_millis(1_500 * i as u64),
            text: appeals.next().unwrap(),
        })
        .collect();
    let burst = (0..30)
        .map(|i| Post {
            group: FIRST_GROUP - i,
            after: Duration::ZERO,
            text: appeals.next().unwrap(),
        })
        .collect();
    let busy = (0..300)
        .map(|i| Post {
            group: FIRST_GROUP - (i * 7 % 40),
            after: Duration::from_millis(200 * i as u64),
            text: if i % 5 == 0 { appeals.next() } else { chatter.next() }.unwrap(),
        })
        .collect();

    runtime.block_on(async {
        let quiet = run("quiet", quiet).await;
        quiet.print(None);
        let baseline = percentiles(&quiet.acks).0;
        run("burst", burst).await.print(Some(baseline));
        run("busy", busy).await.print(Some(baseline));
    });
}
