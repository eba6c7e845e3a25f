//! The HTTP API, served on a random local port, against a real SQLite file and a real PostgreSQL server.

mod support;

use std::sync::Arc;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::{Served, TestDb, T0};
use suqiu::auth::{self, Role};
use suqiu::clock::ManualClock;

on_both_backends!(
    a_driver_appeal_goes_from_ingest_to_resolution_over_http,
    bad_requests_get_json_errors_and_store_nothing,
    a_responders_token_cannot_act_for_another,
    the_queue_filters_by_status_and_deadline,
    supervisors_read_response_times_by_category_and_responder,
    prometheus_scrapes_metrics_with_a_supervisors_token,
);

struct TestApp {
    base: String,
    http: Client,
    ingest_key: String,
    tokens: Vec<String>,
    ids: Vec<i64>,
    t: TestDb,
    clock: Arc<ManualClock>,
}

impl TestApp {
    async fn spawn(t: TestDb) -> TestApp {
        let Served {
            base,
            clock,
            ingest_key,
        } = support::serve(&t, T0).await;
        let (mut tokens, mut ids) = (Vec::new(), Vec::new());
        for name in ["王师傅", "李师傅"] {
            let (responder, token) = auth::add_responder(&t.db, name, Role::Responder, T0).await.unwrap();
            tokens.push(token);
            ids.push(responder.id.0);
        }
        let (_, supervisor) = auth::add_responder(&t.db, "赵主任", Role::Supervisor, T0)
            .await
            .unwrap();
        tokens.push(supervisor);
        TestApp {
            base,
            http: Client::new(),
            ingest_key,
            tokens,
            ids,
            t,
            clock,
        }
    }

    async fn ingest(&self, body: Value) -> (StatusCode, Value) {
        support::ingest(&self.base, &self.ingest_key, &body).await
    }

    /// POST `path` as responder `who` (an index into the tokens).
    async fn post(&self, who: usize, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/tickets{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get(&self, who: usize, path: &str) -> (StatusCode, Value) {
        self.get_url(who, &format!("/api/v1/tickets{path}")).await
    }

    async fn report(&self, who: usize, query: &str) -> (StatusCode, Value) {
        self.get_url(who, &format!("/api/v1/reports/response-times?{query}"))
            .await
    }

    async fn get_url(&self, who: usize, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

/// The responders' tokens, then the supervisor's.
const SUPERVISOR: usize = 2;

fn appeal(id: &str, text: &str) -> Value {
    json!({
        "channel": "telegram", "chat": "group-1", "message_id": id, "sender": "d1",
        "sender_name": "张师傅", "text": text, "sent_at": "2026-11-02T08:00:00Z"
    })
}

async fn a_driver_appeal_goes_from_ingest_to_resolution_over_http(t: TestDb) {
    let app = TestApp::spawn(t).await;
    let (status, body) = app.ingest(appeal("1", "车坏在半路了，发动机打不着火，需要拖车")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disposition"], "opened");
    assert_eq!(body["classification"]["label"], "breakdown");
    let id = body["ticket"]["id"].as_i64().unwrap();

    let (status, again) = app.ingest(appeal("1", "车坏在半路了，发动机打不着火，需要拖车")).await;
    assert_eq!(
        (status, &again["duplicate"], &again["ticket"]["id"]),
        (StatusCode::OK, &json!(true), &json!(id))
    );

    let (status, claimed) = app.post(0, &format!("/{id}/claim"), json!({})).await;
    assert_eq!((status, claimed["status"].as_str()), (StatusCode::OK, Some("claimed")));
    assert_eq!(claimed["assignee_name"], "王师傅");
    let (status, replied) = app
        .post(0, &format!("/{id}/reply"), json!({ "text": "救援车已出发" }))
        .await;
    assert_eq!(
        (status, replied["status"].as_str()),
        (StatusCode::OK, Some("responded"))
    );
    let (status, noted) = app
        .post(0, &format!("/{id}/note"), json!({ "text": "司机电话已联系" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{noted}");
    let (status, resolved) = app.post(0, &format!("/{id}/resolve"), json!({})).await;
    assert_eq!(
        (status, resolved["status"].as_str()),
        (StatusCode::OK, Some("resolved"))
    );

    let (status, detail) = app.get(1, &format!("/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["created", "classified", "claimed", "replied", "noted", "resolved"]
    );
    assert_eq!(detail["messages"][0]["text"], "车坏在半路了，发动机打不着火，需要拖车");
    app.t.finish().await;
}

async fn bad_requests_get_json_errors_and_store_nothing(t: TestDb) {
    let app = TestApp::spawn(t).await;
    let url = format!("{}/api/v1/messages", app.base);
    let send = |body: Vec<u8>, key: Option<String>| {
        let mut request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    let key = Some(app.ingest_key.clone());
    // (what, body, credential, status, error code)
    type Case<'a> = (&'a str, Vec<u8>, Option<String>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed",
            b"{\"channel\": ".to_vec(),
            key.clone(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "missing field",
            br#"{"channel":"telegram","chat":"g","message_id":"1","text":"hi"}"#.to_vec(),
            key.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "a NUL character in the text",
            br#"{"channel":"telegram","chat":"g","message_id":"1","sender":"d","text":"hi\u0000"}"#.to_vec(),
            key.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "empty id",
            br#"{"channel":"telegram","chat":"g","message_id":" ","sender":"d","text":"hi"}"#.to_vec(),
            key.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "not UTF-8",
            b"{\"channel\":\"t\",\"chat\":\"g\",\"message_id\":\"1\",\"sender\":\"d\",\"text\":\"\xff\xfe\"}".to_vec(),
            key.clone(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            "no key",
            br#"{"channel":"t","chat":"g","message_id":"1","sender":"d","text":"hi"}"#.to_vec(),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "a responder token is not an ingest key",
            br#"{"channel":"t","chat":"g","message_id":"1","sender":"d","text":"hi"}"#.to_vec(),
            Some(app.tokens[0].clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (name, body, key, status, code) in cases {
        assert_eq!(send(body, key).await, (status, code.to_owned()), "{name}");
    }
    let (status, body) = announce_ten_megabytes(&app.base, &app.ingest_key).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(body.contains("\"payload_too_large\""), "{body}");
    let (status, body) = stream_ten_megabytes(&app.base, &app.ingest_key).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(body.contains("\"payload_too_large\""), "{body}");
    assert_eq!(app.t.count("messages").await, 0, "nothing stored from bad requests");

    let (status, body) = app.post(0, "/999/claim", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = app.get(0, "/1/nothing-here").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = app.get(0, "/abc").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = app.get(0, "?status=pending").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );

    let (_, opened) = app.ingest(appeal("1", "老板拖欠运费三个月了，八千多块一直不给")).await;
    let id = opened["ticket"]["id"].as_i64().unwrap();
    app.post(0, &format!("/{id}/claim"), json!({})).await;
    app.post(0, &format!("/{id}/resolve"), json!({})).await;
    let events = app.t.count("ticket_events").await;
    let (status, body) = app.post(1, &format!("/{id}/claim"), json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("illegal_transition"))
    );
    let (status, body) = app
        .post(0, &format!("/{id}/reclassify"), json!({ "category": "acident" }))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    assert_eq!(
        app.t.count("ticket_events").await,
        events,
        "refused actions record nothing"
    );
    app.t.finish().await;
}

/// Announces a 10 MB message body and waits for the answer before sending it, as a well-behaved client does
/// (`Expect: 100-continue`): the server refuses on the announced length alone. Returns the status line and
/// the body of the answer.
async fn announce_ten_megabytes(base: &str, key: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: suqiu\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        10 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_string(&mut answer)).await;
    read.expect("the server answers without waiting for the body").unwrap();
    status_and_body(&answer)
}

/// Sends 10 MB of message without announcing its length (chunked), reading the answer as it comes: the
/// server stops reading at its limit and answers at once.
async fn stream_ten_megabytes(base: &str, key: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: suqiu\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
        writer.write_all(b"6\r\n{\"a\":\"\r\n").await?;
        for _ in 0..160 {
            writer.write_all(chunk.as_bytes()).await?;
        }
        writer.write_all(b"0\r\n\r\n").await
    });
    let mut answer = Vec::new();
    // The server may close (or reset) the connection once it has answered: what was read is the answer.
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), reader.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers and closes");
    sending.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    status_and_body(&answer)
}

/// The status line and the body of a raw HTTP answer.
fn status_and_body(answer: &str) -> (String, String) {
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn a_responders_token_cannot_act_for_another(t: TestDb) {
    let app = TestApp::spawn(t).await;
    let (_, opened) = app.ingest(appeal("1", "车坏在半路了，发动机打不着火，需要拖车")).await;
    let id = opened["ticket"]["id"].as_i64().unwrap();
    app.post(0, &format!("/{id}/claim"), json!({})).await;

    let (status, body) = app.post(1, &format!("/{id}/reply"), json!({ "text": "我来" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = app.post(1, &format!("/{id}/resolve"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let response = app
        .http
        .post(format!("{}/api/v1/tickets/{id}/resolve", app.base))
        .bearer_auth("sqr_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Transferred, the ticket is the other responder's to work, and the log says who did what.
    let (me, other) = (app.ids[0], app.ids[1]);
    let (status, moved) = app.post(0, &format!("/{id}/transfer"), json!({ "to": other })).await;
    assert_eq!(
        (status, moved["assignee_name"].as_str()),
        (StatusCode::OK, Some("李师傅"))
    );
    let (status, _) = app
        .post(1, &format!("/{id}/reply"), json!({ "text": "我来处理" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, detail) = app.get(0, &format!("/{id}")).await;
    let actors: Vec<Value> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].clone())
        .collect();
    assert_eq!(actors, [Value::Null, Value::Null, json!(me), json!(me), json!(other)]);
    app.t.finish().await;
}

async fn the_queue_filters_by_status_and_deadline(t: TestDb) {
    let app = TestApp::spawn(t).await;
    let (_, accident) = app
        .ingest(appeal("1", "我的车在京昆高速侧翻了，人受伤了，快来人"))
        .await;
    let mut second = appeal("2", "老板拖欠运费三个月了，八千多块一直不给");
    second["sender"] = json!("d2");
    let (_, arrears) = app.ingest(second).await;
    let (status, open) = app.get(0, "?status=open").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&Value> = open.as_array().unwrap().iter().map(|t| &t["id"]).collect();
    assert_eq!(ids, [&accident["ticket"]["id"], &arrears["ticket"]["id"]]);
    let (_, soon) = app.get(0, "?due_before=2026-11-02T08:10:00Z").await;
    assert_eq!(soon.as_array().unwrap().len(), 1);
    let (_, by_category) = app.get(0, "?category=freight_arrears&priority=P2").await;
    assert_eq!(by_category[0]["id"], arrears["ticket"]["id"]);
    app.t.finish().await;
}

async fn supervisors_read_response_times_by_category_and_responder(t: TestDb) {
    const MINUTE: i64 = 60_000;
    let app = TestApp::spawn(t).await;
    let open = |id: &str, driver: &str, text: &str| {
        let mut body = appeal(id, text);
        body["sender"] = json!(driver);
        body
    };
    let (_, breakdown) = app
        .ingest(open("1", "d1", "车坏在半路了，发动机打不着火，需要拖车"))
        .await;
    let (_, arrears) = app
        .ingest(open("2", "d2", "运费拖了三个月还没结，老板电话也不接"))
        .await;
    let (_, platform) = app.ingest(open("3", "d3", "平台把我账号封了，申诉也没人理")).await;
    let [breakdown, arrears] = [&breakdown, &arrears].map(|b| b["ticket"]["id"].as_i64().unwrap());
    assert!(platform["ticket"]["id"].is_i64(), "{platform}");

    // The breakdown is claimed after 2 minutes, answered after 5 (within its 15) and resolved after an hour.
    // The arrears are claimed after 10 minutes and answered after 40 (past their 30). Nobody answers the
    // platform ban, which is past due too.
    let steps = [
        (2, 0, breakdown, "claim"),
        (5, 0, breakdown, "reply"),
        (10, 1, arrears, "claim"),
        (40, 1, arrears, "reply"),
        (60, 0, breakdown, "resolve"),
    ];
    for (minute, who, id, action) in steps {
        app.clock.set(T0 + minute * MINUTE);
        let (status, body) = app
            .post(who, &format!("/{id}/{action}"), json!({ "text": "已处理" }))
            .await;
        assert_eq!(status, StatusCode::OK, "{action} {id}: {body}");
    }

    let (status, report) = app.report(SUPERVISOR, "group_by=category").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let group = |key: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == key)
            .cloned()
            .unwrap_or_default()
    };
    let b = group("breakdown");
    assert_eq!(b["tickets"], 1);
    assert_eq!(b["to_claim"]["median_seconds"], 120.0);
    assert_eq!(b["to_first_response"]["p90_seconds"], 300.0);
    assert_eq!(b["to_resolution"]["median_seconds"], 3600.0);
    assert_eq!(b["first_response_sla"]["rate"], 1.0);
    let a = group("freight_arrears");
    assert_eq!(a["to_first_response"]["median_seconds"], 2400.0);
    assert_eq!(
        (&a["first_response_sla"]["met"], &a["first_response_sla"]["missed"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(a["to_resolution"]["count"], 0);
    let total = &report["total"];
    assert_eq!(total["tickets"], 3);
    assert_eq!(total["first_response_sla"]["met"], 1);
    assert_eq!(
        total["first_response_sla"]["missed"], 2,
        "the unanswered platform ban is past due"
    );
    let backlog = &report["backlog"];
    assert_eq!((&backlog["open"], &backlog["responded"]), (&json!(1), &json!(1)));
    assert_eq!(backlog["overdue"], 1);

    let (_, by_responder) = app.report(SUPERVISOR, "group_by=responder").await;
    let keys: Vec<&str> = by_responder["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["unassigned", "李师傅", "王师傅"]);

    // A period before the tickets has none of them, and the backlog is still today's.
    let (_, empty) = app
        .report(SUPERVISOR, "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(empty["total"]["tickets"], 0);
    assert_eq!(empty["total"]["to_claim"]["median_seconds"], Value::Null);
    assert_eq!(empty["backlog"]["open"], 1);

    let (status, body) = app.report(0, "group_by=category").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    for bad in [
        "group_by=week",
        "from=yesterday",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "group_by=day&time_zone=Mars/Olympus",
    ] {
        let (status, body) = app.report(SUPERVISOR, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, by_day) = app.report(SUPERVISOR, "group_by=day&time_zone=Asia/Shanghai").await;
    assert_eq!(by_day["groups"][0]["key"], "2026-11-02");
    app.t.finish().await;
}

async fn prometheus_scrapes_metrics_with_a_supervisors_token(t: TestDb) {
    let app = TestApp::spawn(t).await;
    let (status, body) = app.ingest(appeal("1", "车坏在半路了，发动机打不着火，需要拖车")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.ingest(appeal("2", "今天太原到晋中路况怎么样")).await;
    let scrape = |token: Option<usize>| {
        let mut request = app.http.get(format!("{}/metrics", app.base));
        if let Some(who) = token {
            request = request.bearer_auth(&app.tokens[who]);
        }
        request.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(Some(0)).await.unwrap().status(), StatusCode::FORBIDDEN);
    let response = scrape(Some(SUPERVISOR)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    // The counters are the process's (other tests' services count too); the gauges are this database's.
    for expected in [
        "suqiu_messages_ingested_total{label=\"breakdown\"}",
        "suqiu_messages_ingested_total{label=\"none\"}",
        "suqiu_tickets_opened_total{category=\"breakdown\"",
        "suqiu_tickets_open{priority=\"P2\"} 1\n",
        "suqiu_tickets_open{priority=\"P1\"} 0\n",
        "suqiu_outbox_backlog ",
        "suqiu_outbox_failed 0\n",
        "suqiu_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/messages\",status=\"200\"",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    assert!(!text.contains("发动机"), "no driver's text in the metrics");
    app.t.finish().await;
}
