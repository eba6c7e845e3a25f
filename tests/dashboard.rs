//! The dashboard over HTTP, as a browser uses it (forms, cookies, redirects), on a random local port against a
//! real SQLite file and a real PostgreSQL server.

mod support;

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::json;
use support::{Served, TestDb, T0};
use suqiu::auth::{self, login, Role};
use suqiu::clock::ManualClock;

on_both_backends!(
    every_page_needs_a_session_and_forms_need_their_token,
    a_responder_logs_in_claims_and_answers_from_the_browser,
    a_drivers_html_is_shown_as_text,
    supervisors_see_the_team_and_export_and_responders_cannot,
    log_in_attempts_are_limited_and_links_work_once,
    the_overview_and_the_queue_show_what_the_team_watches,
);

const PASSWORD: &str = "工会干事的登录密码二〇二六";

struct Browser {
    base: String,
    http: Client,
    ingest_key: String,
    cookies: Vec<(String, String)>,
    clock: Arc<ManualClock>,
    t: TestDb,
}

impl Browser {
    async fn open(t: TestDb) -> Browser {
        support::logs();
        let Served {
            base,
            clock,
            ingest_key,
        } = support::serve(&t, T0).await;
        login::add_user(&t.db, "王干事", Role::Responder, &format!("{PASSWORD}一"), T0)
            .await
            .unwrap();
        login::add_user(&t.db, "赵主任", Role::Supervisor, &format!("{PASSWORD}二"), T0)
            .await
            .unwrap();
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            base,
            http,
            ingest_key,
            cookies: Vec::new(),
            clock,
            t,
        }
    }

    /// Another browser on the same service: nobody logged in.
    fn without_cookies(self) -> Browser {
        Browser {
            cookies: Vec::new(),
            ..self
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the cookies a response sets (and forgets the ones it removes).
    fn keep(&mut self, response: &Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let pair = header.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    async fn page(&mut self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// The value of the hidden `csrf` field of a page's forms.
    async fn csrf(&mut self, path: &str) -> String {
        let html = self.page(path).await;
        let at = html.find("name=\"csrf\" value=\"").expect("the page has a form") + 19;
        html[at..at + html[at..].find('"').unwrap()].to_owned()
    }

    async fn log_in(&mut self, name: &str, password: &str) -> Response {
        let csrf = self.csrf("/login").await;
        self.post("/login", &[("name", name), ("password", password), ("csrf", &csrf)])
            .await
    }

    async fn ingest(&self, id: &str, text: &str) -> i64 {
        let body = json!({
            "channel": "telegram", "chat": "group-1", "message_id": id, "sender": format!("d{id}"),
            "sender_name": "张师傅", "text": text, "sent_at": "2026-11-02T08:00:00Z"
        });
        let (_, answer) = support::ingest(&self.base, &self.ingest_key, &body).await;
        answer["ticket"]["id"].as_i64().expect("the appeal opened a ticket")
    }
}

fn location(response: &Response) -> &str {
    response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
}

async fn every_page_needs_a_session_and_forms_need_their_token(t: TestDb) {
    let mut browser = Browser::open(t).await;
    let id = browser.ingest("1", "车坏在半路了，发动机打不着火，需要拖车").await;

    for path in [
        "/",
        "/queue",
        "/queue?mine=1",
        &format!("/tickets/{id}"),
        "/search?q=拖车",
        "/responders",
        "/exports/tickets.xlsx",
        "/exports/tickets.csv",
        "/exports/report.xlsx",
        "/exports/report.csv",
    ] {
        let response = browser.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {path} without a session");
        assert_eq!(location(&response), "/login", "GET {path}");
    }
    for action in [
        "claim",
        "reply",
        "note",
        "resolve",
        "reopen",
        "transfer",
        "reclassify",
        "not-an-appeal",
    ] {
        let response = browser.post(&format!("/tickets/{id}/{action}"), &[("text", "x")]).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "POST {action} without a session"
        );
    }
    let response = browser.post("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The log-in form itself needs the token its page set.
    let response = browser
        .post(
            "/login",
            &[
                ("name", "王干事"),
                ("password", &format!("{PASSWORD}一")),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = browser.log_in("王干事", &format!("{PASSWORD}一")).await;
    assert_eq!((response.status(), location(&response)), (StatusCode::SEE_OTHER, "/"));
    for (token, expected) in [("", StatusCode::FORBIDDEN), ("forged", StatusCode::FORBIDDEN)] {
        let response = browser.post(&format!("/tickets/{id}/claim"), &[("csrf", token)]).await;
        assert_eq!(response.status(), expected, "claim with token {token:?}");
    }
    let status: String = sqlx::query_scalar("SELECT status FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_one(browser.t.db.pool())
        .await
        .unwrap();
    assert_eq!(status, "open", "a refused form changed nothing");
    browser.t.finish().await;
}

async fn a_responder_logs_in_claims_and_answers_from_the_browser(t: TestDb) {
    let mut browser = Browser::open(t).await;
    let id = browser.ingest("1", "车坏在半路了，发动机打不着火，需要拖车").await;

    let wrong = browser.log_in("王干事", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("用户名或密码不对"));
    let response = browser.log_in("王干事", &format!("{PASSWORD}一")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let overview = browser.page("/").await;
    assert!(overview.contains("王干事（干事）"), "{overview}");
    assert!(
        !overview.contains("干事与导出"),
        "a responder is not offered the supervisors' pages"
    );
    let queue = browser.page("/queue").await;
    assert!(queue.contains(&format!("href=\"/tickets/{id}\"")), "{queue}");
    assert!(
        queue.contains("车辆故障") || queue.contains("故障"),
        "the category's name: {queue}"
    );
    assert!(queue.contains("认领"));

    let csrf = browser.csrf("/queue").await;
    let claimed = browser.post(&format!("/tickets/{id}/claim"), &[("csrf", &csrf)]).await;
    assert_eq!(
        (claimed.status(), location(&claimed)),
        (StatusCode::SEE_OTHER, &*format!("/tickets/{id}"))
    );
    let replied = browser
        .post(
            &format!("/tickets/{id}/reply"),
            &[("csrf", &csrf), ("text", "救援车已出发，二十分钟到")],
        )
        .await;
    assert_eq!(replied.status(), StatusCode::SEE_OTHER);
    let empty = browser
        .post(&format!("/tickets/{id}/note"), &[("csrf", &csrf), ("text", "  ")])
        .await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let resolved = browser
        .post(&format!("/tickets/{id}/resolve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(resolved.status(), StatusCode::SEE_OTHER);

    let page = browser.page(&format!("/tickets/{id}")).await;
    assert!(page.contains("已办结"), "{page}");
    assert!(
        page.contains("救援车已出发，二十分钟到"),
        "the reply is in the ticket's history: {page}"
    );
    assert!(page.contains("发动机打不着火"));
    let mine = browser.page("/queue?mine=1&status=resolved").await;
    assert!(mine.contains(&format!("#{id}")), "{mine}");

    // The driver is told in the group: the reply went to the outbox.
    let replies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE ticket_id = $1 AND kind = 'reply'")
        .bind(id)
        .fetch_one(browser.t.db.pool())
        .await
        .unwrap();
    assert_eq!(replies, 1);

    // Logging out ends the session on the server, not only in this browser.
    let session = browser
        .cookies
        .iter()
        .find(|(k, _)| k == "suqiu_session")
        .unwrap()
        .1
        .clone();
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status(), location(&out)), (StatusCode::SEE_OTHER, "/login"));
    browser.cookies.push(("suqiu_session".into(), session));
    assert_eq!(browser.get("/queue").await.status(), StatusCode::SEE_OTHER);
    browser.t.finish().await;
}

async fn a_drivers_html_is_shown_as_text(t: TestDb) {
    let mut browser = Browser::open(t).await;
    let hostile = "<script>alert('x')</script><b>运费</b>拖欠三个月了，老板不给钱 &amp; 不接电话";
    let id = browser.ingest("1", hostile).await;
    browser.log_in("王干事", &format!("{PASSWORD}一")).await;
    for path in [format!("/tickets/{id}"), "/queue".to_owned()] {
        let html = browser.page(&path).await;
        assert!(!html.contains("<script>alert"), "{path} shows the script as markup");
        assert!(!html.contains("<b>运费</b>"), "{path}");
    }
    // And were anything to slip through, the browser is told to run no script on these pages.
    let response = browser.get(&format!("/tickets/{id}")).await;
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'") && !policy.contains("script-src"),
        "{policy}"
    );
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;"),
        "{html}"
    );
    assert!(html.contains("&#38;amp;"), "an entity in the text is shown as typed");

    // Found by search within seconds of arriving, the words marked and the rest still text.
    let mut found = String::new();
    for _ in 0..100 {
        found = browser.page("/search?q=运费+拖欠").await;
        if found.contains(&format!("href=\"/tickets/{id}\"")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found.contains(&format!("href=\"/tickets/{id}\"")), "{found}");
    assert!(
        found.contains("<mark>运费</mark>") && found.contains("<mark>拖欠</mark>"),
        "{found}"
    );
    assert!(
        !found.contains("<script>alert") && !found.contains("<b>运费"),
        "{found}"
    );
    let nothing = browser.page("/search?q=！！").await;
    assert!(nothing.contains("请输入要找的词"), "{nothing}");
    browser.t.finish().await;
}

async fn supervisors_see_the_team_and_export_and_responders_cannot(t: TestDb) {
    let mut responder = Browser::open(t).await;
    let id = responder.ingest("1", "车坏在半路了，发动机打不着火，需要拖车").await;
    responder.log_in("王干事", &format!("{PASSWORD}一")).await;
    for path in [
        "/responders",
        "/exports/tickets.xlsx",
        "/exports/tickets.csv",
        "/exports/report.xlsx",
        "/exports/report.csv",
    ] {
        assert_eq!(
            responder.get(path).await.status(),
            StatusCode::FORBIDDEN,
            "a responder opens {path}"
        );
    }

    let mut supervisor = responder.without_cookies();
    supervisor.log_in("赵主任", &format!("{PASSWORD}二")).await;
    let team = supervisor.page("/responders").await;
    assert!(team.contains("未分配") && team.contains("导出"), "{team}");
    let xlsx = supervisor.get("/exports/tickets.xlsx?days=30").await;
    assert_eq!(xlsx.status(), StatusCode::OK);
    assert_eq!(
        xlsx.headers()[CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = xlsx.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK"), "an XLSX is a zip");
    let csv = supervisor.get("/exports/tickets.csv?days=30").await;
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap();
    assert!(text.contains("发动机打不着火"), "{text}");
    assert!(text.lines().count() >= 2 && text.contains(&id.to_string()));
    assert_eq!(
        supervisor.get("/exports/secrets.xlsx").await.status(),
        StatusCode::NOT_FOUND
    );
    supervisor.t.finish().await;
}

async fn log_in_attempts_are_limited_and_links_work_once(t: TestDb) {
    let mut browser = Browser::open(t).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(browser.log_in("赵主任", "guessing a password").await.status());
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[6], StatusCode::TOO_MANY_REQUESTS);
    // Even the right password waits out the limit.
    let right = browser.log_in("赵主任", &format!("{PASSWORD}二")).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);

    let member = auth::telegram_member(&browser.t.db, "8001", "李干事", Role::Responder, T0)
        .await
        .unwrap();
    let token = login::new_link(&browser.t.db, member.id, T0).await.unwrap();
    // Opening the link (as a chat's link preview does) does not use it up.
    let mut preview = browser.without_cookies();
    preview.page(&format!("/login/link?token={token}")).await;
    let csrf = preview.csrf(&format!("/login/link?token={token}")).await;
    let used = preview.post("/login/link", &[("token", &token), ("csrf", &csrf)]).await;
    assert_eq!((used.status(), location(&used)), (StatusCode::SEE_OTHER, "/"));
    assert!(preview.page("/").await.contains("李干事（干事）"));
    // Another browser with the same link: used up.
    preview.cookies.clear();
    let csrf = preview.csrf(&format!("/login/link?token={token}")).await;
    let again = preview.post("/login/link", &[("token", &token), ("csrf", &csrf)]).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("已用过或已过期"));
    preview.t.finish().await;
}

/// The number on the overview's card with `label`.
fn card(html: &str, label: &str) -> String {
    let at = html
        .find(&format!("<div class=\"label\">{label}"))
        .unwrap_or_else(|| panic!("no card {label}"));
    let value = &html[..at];
    let value = &value[..value.rfind("</div>").unwrap()];
    value[value.rfind('>').unwrap() + 1..].to_owned()
}

async fn the_overview_and_the_queue_show_what_the_team_watches(t: TestDb) {
    let mut browser = Browser::open(t).await;
    let accident = browser.ingest("1", "追尾了，车头撞坏了，人没事，在高速上等交警").await;
    let wages = browser.ingest("2", "运费拖了两个月还没结，老板电话也不接").await;
    let fine = browser.ingest("3", "在服务区被罚款两百，说我超载，我没有超").await;
    browser.log_in("王干事", &format!("{PASSWORD}一")).await;
    let csrf = browser.csrf("/queue").await;
    let claimed = browser
        .post(&format!("/tickets/{wages}/claim"), &[("csrf", &csrf)])
        .await;
    assert_eq!(claimed.status(), StatusCode::SEE_OTHER);
    let db = &browser.t.db;
    for (ticket, score) in [(accident, 5), (wages, 2)] {
        sqlx::query("INSERT INTO ratings (ticket_id, score, rated_at) VALUES ($1, $2, $3)")
            .bind(ticket)
            .bind(score)
            .bind(T0)
            .execute(db.pool())
            .await
            .unwrap();
    }

    // The queue by responder: only what 王干事 holds.
    let team = auth::team(db).await.unwrap();
    let wang = team.iter().find(|r| r.name == "王干事").unwrap().id.0;
    let held = browser.page(&format!("/queue?responder={wang}")).await;
    let link = |id: i64| format!("href=\"/tickets/{id}\"");
    assert!(held.contains(&link(wages)), "{held}");
    assert!(!held.contains(&link(accident)) && !held.contains(&link(fine)), "{held}");
    // By deadline: the accident's first response is due first, the fine's last.
    let by_deadline = browser.page("/queue?order=deadline").await;
    let position = |id: i64| by_deadline.find(&link(id)).unwrap();
    assert!(
        position(accident) < position(wages) && position(wages) < position(fine),
        "{by_deadline}"
    );
    for bad in ["/queue?order=sideways", "/queue?responder=someone"] {
        assert_eq!(browser.get(bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let overview = browser.page("/").await;
    assert_eq!(card(&overview, "待认领"), "2");
    assert_eq!(card(&overview, "处理中"), "1");
    assert_eq!(card(&overview, "今日新工单"), "3");
    assert_eq!(card(&overview, "即将超时"), "0");
    assert_eq!(card(&overview, "司机评分（2 条）"), "3.5 / 5");
    assert!(
        overview.contains("每日新工单") && overview.contains("星期"),
        "the charts are drawn"
    );

    // Four minutes on, the accident's first-response warning fires: the ticket is at risk, then overdue.
    browser.clock.advance(4 * 60_000 + 1_000);
    let mut at_risk = String::new();
    for _ in 0..100 {
        at_risk = card(&browser.page("/").await, "即将超时");
        if at_risk == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(at_risk, "1", "the warned ticket is at risk");
    browser.clock.advance(60_000);
    let overview = browser.page("/").await;
    assert_eq!(card(&overview, "即将超时"), "0");
    assert_eq!(card(&overview, "已超时"), "1");
    assert!(overview.contains(&link(accident)), "{overview}");
    browser.t.finish().await;
}
