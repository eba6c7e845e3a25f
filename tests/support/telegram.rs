//! A fake Telegram Bot API server on loopback: it speaks the Bot API's JSON over HTTP to the real teloxide
//! client, keeps the chats' messages as Telegram would, queues updates for `getUpdates`, and can be told to
//! fail the next sends with 429, 500 or a dropped connection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub const TOKEN: &str = "123456:TEST-token";
pub const BOT_ID: i64 = 123456;
pub const BOT_USERNAME: &str = "suqiu_test_bot";

/// How the next send fails.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 429 with `retry_after` seconds.
    TooManyRequests(u32),
    /// 500 Internal Server Error.
    ServerError,
    /// The connection is closed before any answer: Telegram never saw the request.
    Drop,
}

/// A message the bot sent, as the fake stored it (edits change it in place).
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i64,
    pub text: String,
    pub reply_to: Option<i64>,
    /// The inline buttons' callback data, row by row.
    pub buttons: Vec<Vec<String>>,
    pub edits: usize,
    /// When the fake received it.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    next_update: i64,
    updates: Vec<Value>,
    /// Every update ever queued, for redelivery.
    history: Vec<Value>,
    next_message: HashMap<i64, i64>,
    sent: Vec<Sent>,
    /// Faults for the next sends to each chat.
    faults: HashMap<i64, VecDeque<Fault>>,
    /// Every method called, in order.
    calls: Vec<String>,
    callback_answers: Vec<(String, Option<String>)>,
}

#[derive(Clone, Default)]
struct Fake {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

pub struct FakeTelegram {
    pub url: String,
    fake: Fake,
}

/// A person on Telegram.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: i64,
    pub name: &'static str,
}

impl Person {
    fn json(&self) -> Value {
        json!({ "id": self.id, "is_bot": false, "first_name": self.name })
    }
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let fake = Fake::default();
        let router = Router::new()
            .route("/{bot}/{method}", post(api))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeTelegram { url, fake }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.fake.inner.lock().unwrap()
    }

    /// Fails the next sends to `chat`, one fault each.
    pub fn fail_next(&self, chat: i64, faults: &[Fault]) {
        self.inner()
            .faults
            .entry(chat)
            .or_default()
            .extend(faults.iter().copied());
    }

    /// `person` writes `text` in `chat` (a group if negative, their private chat if positive); returns the
    /// message's id.
    pub fn write(&self, chat: i64, person: &Person, text: &str, reply_to: Option<i64>) -> i64 {
        self.post_message(chat, person, json!({ "text": text }), reply_to)
    }

    /// Posts a message with any content (`{"text": …}`, `{"sticker": …}`, `{"photo": …, "caption": …}`).
    pub fn post_message(&self, chat: i64, person: &Person, content: Value, reply_to: Option<i64>) -> i64 {
        let mut inner = self.inner();
        let id = next_message(&mut inner, chat);
        let mut message = json!({
            "message_id": id,
            "from": person.json(),
            "chat": chat_json(chat),
            "date": now(),
        });
        merge(&mut message, content);
        if let Some(reply) = reply_to {
            message["reply_to_message"] = stored_message(&inner, chat, reply, person);
        }
        push_update(&mut inner, "message", message);
        drop(inner);
        self.fake.changed.notify_waiters();
        id
    }

    /// Queues an update of any kind as is (`{"edited_message": …}`), numbering it.
    pub fn push(&self, kind: &str, body: Value) {
        push_update(&mut self.inner(), kind, body);
        self.fake.changed.notify_waiters();
    }

    /// `person` presses the button with `data` under the bot's message `message_id` in `chat`.
    pub fn press(&self, chat: i64, message_id: i64, person: &Person, data: &str) {
        let mut inner = self.inner();
        let message = stored_message(&inner, chat, message_id, person);
        let id = format!("cq{}", inner.next_update);
        let query = json!({
            "id": id,
            "from": person.json(),
            "message": message,
            "chat_instance": "1",
            "data": data,
        });
        push_update(&mut inner, "callback_query", query);
        drop(inner);
        self.fake.changed.notify_waiters();
    }

    /// Forgets that the bot confirmed any update: the next `getUpdates` without an offset (a bot that has just
    /// started) gets every update again, as Telegram redelivers after a restart.
    pub fn unconfirm_all(&self) {
        let mut inner = self.inner();
        inner.updates = inner.history.clone();
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner().sent.clone()
    }

    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.sent().into_iter().filter(|s| s.chat == chat).collect()
    }

    /// How often `method` was called (any case: `sendMessage`).
    pub fn calls(&self, method: &str) -> usize {
        let method = method.to_ascii_lowercase();
        self.inner().calls.iter().filter(|c| **c == method).count()
    }

    pub fn callback_answers(&self) -> Vec<(String, Option<String>)> {
        self.inner().callback_answers.clone()
    }

    /// Waits until `check` holds of what was sent, or panics with `what` after `seconds`.
    pub async fn until<T>(&self, seconds: u64, what: &str, check: impl Fn(&[Sent]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let changed = self.fake.changed.notified();
            let sent = self.sent();
            if let Some(found) = check(&sent) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let sent = self.sent();
                panic!("timed out waiting for {what}; sent so far: {sent:#?}");
            }
        }
    }

    /// Waits until a button press is answered with `text`.
    pub async fn until_answered(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let changed = self.fake.changed.notified();
            let answers = self.callback_answers();
            if answers.iter().any(|(_, t)| t.as_deref() == Some(text)) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("no button press was answered {text:?}; answers: {answers:?}");
            }
        }
    }

    /// Waits until the bot has fetched every queued update (its next `getUpdates` asks past them).
    pub async fn until_consumed(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.fake.changed.notified();
            if self.inner().updates.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("the bot did not fetch its updates");
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

fn next_message(inner: &mut Inner, chat: i64) -> i64 {
    let next = inner.next_message.entry(chat).or_insert(0);
    *next += 1;
    *next
}

fn push_update(inner: &mut Inner, kind: &str, body: Value) {
    inner.next_update += 1;
    let update = json!({ "update_id": inner.next_update, kind: body });
    inner.history.push(update.clone());
    inner.updates.push(update);
}

fn chat_json(chat: i64) -> Value {
    if chat > 0 {
        json!({ "id": chat, "type": "private", "first_name": "司机" })
    } else if chat <= -1_000_000_000_000 {
        json!({ "id": chat, "type": "supergroup", "title": format!("群{}", -chat % 1_000_000) })
    } else {
        json!({ "id": chat, "type": "group", "title": format!("群{}", -chat) })
    }
}

/// A message as Telegram includes it in a reply or a button press: the bot's if it sent it, else someone's.
fn stored_message(inner: &Inner, chat: i64, id: i64, person: &Person) -> Value {
    match inner.sent.iter().find(|s| s.chat == chat && s.message_id == id) {
        Some(sent) => json!({
            "message_id": id,
            "from": bot_user(),
            "chat": chat_json(chat),
            "date": now(),
            "text": sent.text,
        }),
        None => json!({
            "message_id": id,
            "from": person.json(),
            "chat": chat_json(chat),
            "date": now(),
            "text": "…",
        }),
    }
}

fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "诉求助手", "username": BOT_USERNAME })
}

fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

fn buttons(body: &Value) -> Vec<Vec<String>> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn api(State(fake): State<Fake>, Path((bot, method)): Path<(String, String)>, body: Bytes) -> Response {
    if bot != format!("bot{TOKEN}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })),
        )
            .into_response();
    }
    // JSON for most methods; `setWebhook` comes as a multipart form, whose fields the fake does not need.
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Method names are case-insensitive in the Bot API (teloxide writes `SendMessage`).
    let method = method.to_ascii_lowercase();
    if method == "getupdates" {
        return get_updates(fake, body).await;
    }
    let response = {
        let mut inner = fake.inner.lock().unwrap();
        inner.calls.push(method.clone());
        answer(&mut inner, &method, &body)
    };
    // Unwinding out of the handler (with the lock released) makes the server close the connection unanswered.
    let Some(response) = response else {
        std::panic::resume_unwind(Box::new("fake Bot API: dropping the connection"))
    };
    fake.changed.notify_waiters();
    response
}

/// The answer to a call; `None` to drop the connection instead.
fn answer(inner: &mut Inner, method: &str, body: &Value) -> Option<Response> {
    Some(match method {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "诉求助手", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": true, "supports_inline_queries": false,
            "has_main_web_app": false,
        })),
        "sendmessage" => {
            let chat = body["chat_id"].as_i64().expect("chat_id is a number");
            match inner.faults.get_mut(&chat).and_then(VecDeque::pop_front) {
                Some(Fault::TooManyRequests(after)) => {
                    return Some(
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            Json(json!({
                                "ok": false, "error_code": 429,
                                "description": format!("Too Many Requests: retry after {after}"),
                                "parameters": { "retry_after": after },
                            })),
                        )
                            .into_response(),
                    )
                }
                Some(Fault::ServerError) => {
                    return Some(
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            Json(json!({ "ok": false, "error_code": 500, "description": "Internal Server Error" })),
                        )
                            .into_response(),
                    )
                }
                Some(Fault::Drop) => return None,
                None => {}
            }
            let id = next_message(inner, chat);
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            let reply_to = body["reply_parameters"]["message_id"].as_i64();
            inner.sent.push(Sent {
                chat,
                message_id: id,
                text: text.clone(),
                reply_to,
                buttons: buttons(body),
                edits: 0,
                at: std::time::Instant::now(),
            });
            ok(json!({
                "message_id": id, "from": bot_user(), "chat": chat_json(chat), "date": now(), "text": text,
            }))
        }
        "editmessagetext" | "editmessagereplymarkup" => {
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            let id = body["message_id"].as_i64().unwrap_or_default();
            let Some(sent) = inner.sent.iter_mut().find(|s| s.chat == chat && s.message_id == id) else {
                return Some(
                    (
                        StatusCode::BAD_REQUEST,
                        Json(json!({ "ok": false, "error_code": 400, "description": "Bad Request: message to edit not found" })),
                    )
                        .into_response(),
                );
            };
            if let Some(text) = body["text"].as_str() {
                sent.text = text.to_owned();
            }
            sent.buttons = buttons(body);
            sent.edits += 1;
            ok(json!({
                "message_id": id, "from": bot_user(), "chat": chat_json(chat), "date": now(), "text": sent.text,
            }))
        }
        "answercallbackquery" => {
            let id = body["callback_query_id"].as_str().unwrap_or_default().to_owned();
            let text = body["text"].as_str().map(str::to_owned);
            inner.callback_answers.push((id, text));
            ok(json!(true))
        }
        "setmycommands" | "deletewebhook" | "setwebhook" | "deletemycommands" => ok(json!(true)),
        "getwebhookinfo" => ok(json!({ "url": "", "has_custom_certificate": false, "pending_update_count": 0 })),
        other => (
            StatusCode::NOT_FOUND,
            Json(json!({ "ok": false, "error_code": 404, "description": format!("Not Found: method {other}") })),
        )
            .into_response(),
    })
}

/// Long polling: confirms the updates before `offset`, answers those after it, or waits for one.
async fn get_updates(fake: Fake, body: Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = body["timeout"].as_u64().unwrap_or(0).min(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let changed = fake.changed.notified();
        let (confirmed, updates) = {
            let mut inner = fake.inner.lock().unwrap();
            inner.calls.push("getupdates".into());
            let before = inner.updates.len();
            inner.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            (inner.updates.len() < before, inner.updates.clone())
        };
        if confirmed {
            fake.changed.notify_waiters();
        }
        if !updates.is_empty() {
            return ok(Value::Array(updates));
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return ok(json!([]));
        }
    }
}
