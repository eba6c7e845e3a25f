//! Nothing accepted is lost: the real `suqiu serve` process is killed (SIGKILL) in the middle of a load of
//! concurrent ingests, then started again on the same database while the clients send everything once more.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Client;
use serde_json::{json, Value};
use support::TestDb;
use suqiu::auth;

on_both_backends!(a_server_killed_mid_load_loses_nothing_it_accepted,);

/// Messages in the load; a third of them appeals, each from its own driver in its own chat.
const MESSAGES: usize = 1_500;
const CLIENTS: usize = 16;
/// The server is killed once this many messages have been answered 2xx.
const KILL_AFTER: usize = 300;

const APPEALS: [&str; 4] = [
    "车坏在半路了，发动机打不着火，需要拖车",
    "运费拖了三个月还没结，老板电话也不接",
    "平台把我账号封了，申诉也没人理",
    "高速上追尾了，司机腿受伤了，快来人",
];
const CHATTER: [&str; 4] = [
    "早上好兄弟们",
    "今天太原到石家庄的高速堵不堵",
    "收到，谢谢",
    "晚上一起吃饭",
];

/// `suqiu serve` on a random port, its output drained by a thread so that it never blocks on a full pipe.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(database_url: &str, dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_suqiu"))
            .arg("serve")
            .current_dir(dir)
            .env("SUQIU_DATABASE_URL", database_url)
            .env("SUQIU_LISTEN", "127.0.0.1:0")
            .env_remove("SUQIU_CONFIG")
            .env_remove("SUQIU_RULES")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("suqiu serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("suqiu serve printed its address before exiting")
                .expect("stderr is readable");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, base }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed server is reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(i: usize) -> Value {
    let text = if i.is_multiple_of(3) {
        APPEALS[i / 3 % APPEALS.len()]
    } else {
        CHATTER[i % CHATTER.len()]
    };
    json!({
        "channel": "bridge", "chat": format!("group-{i}"), "message_id": i.to_string(),
        "sender": format!("driver-{i}"), "text": text, "sent_at": "2026-11-02T08:00:00Z"
    })
}

/// Sends messages `0..MESSAGES` from `CLIENTS` concurrent clients; answers the 2xx results by message.
/// `answered` counts them as they come, for whoever waits to kill the server.
async fn load(base: &str, key: &str, answered: Arc<AtomicUsize>) -> HashMap<usize, Value> {
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(HashMap::new()));
    let http = Client::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, accepted, answered) = (next.clone(), accepted.clone(), answered.clone());
            let (http, url, key) = (http.clone(), format!("{base}/api/v1/messages"), key.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MESSAGES {
                        return;
                    }
                    let sent = http.post(&url).bearer_auth(&key).json(&message(i)).send().await;
                    let Ok(response) = sent else { continue };
                    if !response.status().is_success() {
                        continue;
                    }
                    if let Ok(body) = response.json::<Value>().await {
                        accepted.lock().unwrap().insert(i, body);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

async fn a_server_killed_mid_load_loses_nothing_it_accepted(t: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let key = auth::add_ingest_key(&t.db, "bridge", 0).await.unwrap();
    let mut server = Server::start(&t.url, dir.path());

    let answered = Arc::new(AtomicUsize::new(0));
    let base = server.base.clone();
    let loading = tokio::spawn({
        let (key, answered) = (key.clone(), answered.clone());
        async move { load(&base, &key, answered).await }
    });
    while answered.load(Ordering::Relaxed) < KILL_AFTER {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    server.kill();
    let first = loading.await.unwrap();
    assert!(first.len() >= KILL_AFTER, "{} answered before the kill", first.len());
    assert!(
        first.len() < MESSAGES,
        "the server was killed mid-load, yet all {MESSAGES} were answered"
    );

    // Started again, the server receives every message once more, as a bridge retrying would send them.
    let server = Server::start(&t.url, dir.path());
    let second = load(&server.base, &key, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(second.len(), MESSAGES, "every message is accepted after the restart");
    for (i, before) in &first {
        let again = &second[i];
        assert_eq!(
            again["duplicate"], true,
            "message {i} was stored before the kill: {again}"
        );
        assert_eq!(again["message"]["id"], before["message"]["id"], "message {i}");
        assert_eq!(again["ticket"], before["ticket"], "message {i} keeps its ticket");
    }

    assert_eq!(
        t.count("messages").await,
        MESSAGES as i64,
        "each message stored exactly once"
    );
    let appeals: i64 = scalar(&t, "SELECT COUNT(*) FROM messages WHERE label <> 'none'").await;
    assert!(
        appeals >= (MESSAGES / 3) as i64 - 1,
        "the appeals were recognised: {appeals}"
    );
    assert_eq!(t.count("tickets").await, appeals, "one ticket per appeal");
    let unticketed = "SELECT COUNT(*) FROM messages WHERE label <> 'none' AND ticket_id IS NULL";
    assert_eq!(scalar(&t, unticketed).await, 0);
    let shared = "SELECT COUNT(*) FROM (SELECT ticket_id FROM messages WHERE ticket_id IS NOT NULL \
                  GROUP BY ticket_id HAVING COUNT(*) <> 1) AS s";
    assert_eq!(
        scalar(&t, shared).await,
        0,
        "no appeal attached to another driver's ticket"
    );
    let without_timers = "SELECT COUNT(*) FROM tickets t WHERE \
                          (SELECT COUNT(*) FROM deadlines d WHERE d.ticket_id = t.id) <> 4";
    assert_eq!(
        scalar(&t, without_timers).await,
        0,
        "every ticket keeps its four timers"
    );
    let without_event = "SELECT COUNT(*) FROM tickets t WHERE NOT EXISTS \
                         (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id AND e.kind = 'created')";
    assert_eq!(scalar(&t, without_event).await, 0, "every ticket has its created event");
    let without_ack = "SELECT COUNT(*) FROM tickets t WHERE NOT EXISTS \
                       (SELECT 1 FROM outbox o WHERE o.ticket_id = t.id AND o.audience = 'driver')";
    assert_eq!(scalar(&t, without_ack).await, 0, "every driver is acknowledged");
    drop(server);
    t.finish().await;
}

async fn scalar(t: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(t.db.pool()).await.unwrap()
}
