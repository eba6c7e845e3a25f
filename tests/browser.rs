//! The dashboard in a real headless Chromium, driven through WebDriver (chromedriver): a responder logs in,
//! sees an appeal that just came in through the API, claims it, answers it, resolves it and finds it by search;
//! a supervisor downloads the XLSX export and looks at the overview, of which a screenshot is saved.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); `SUQIU_CHROMIUM` and
//! `SUQIU_CHROMEDRIVER` point elsewhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calamine::{Reader, Xlsx};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use support::{Served, TestDb, T0};
use suqiu::auth::{self, login, Role};
use suqiu::clock::ManualClock;
use suqiu::tickets::state::{Action, Actor};
use suqiu::tickets::TicketId;

on_both_backends!(a_responder_and_a_supervisor_work_in_chromium);

const HOUR: i64 = 3_600_000;
const RESPONDER_PASSWORD: &str = "干事的登录密码二〇二六";
const SUPERVISOR_PASSWORD: &str = "主任的登录密码二〇二六";

/// chromedriver on a free local port, and a Chromium session through it.
struct Chromium {
    client: Client,
    downloads: PathBuf,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// The chromedriver process, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chromium {
    async fn start() -> Chromium {
        let chromedriver = std::env::var("SUQIU_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("SUQIU_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Driver)
            .unwrap_or_else(|e| {
                panic!("cannot start {chromedriver} ({e}): install chromium and chromium-driver (.ci/run does)")
            });
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir(&downloads).unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // Without the background-networking flags Chromium keeps trying hosts a closed network refuses.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,2600", "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    return Chromium {
                        client,
                        downloads,
                        _driver: driver,
                        _profile: profile,
                    }
                }
                // chromedriver is still starting.
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session from {chromedriver}: {last_error}");
    }

    async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.url().await),
        }
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The text the page shows (not its markup).
    async fn text(&self) -> String {
        self.find("body").await.text().await.unwrap()
    }

    async fn log_in(&self, base: &str, name: &str, password: &str) {
        self.client.goto(&format!("{base}/login")).await.unwrap();
        self.find("input[name=name]").await.send_keys(name).await.unwrap();
        self.find("input[name=password]")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.find("form[action='/login'] button").await.click().await.unwrap();
        self.find("header .who").await;
        assert!(self.text().await.contains(name), "logged in as {name}");
    }

    async fn log_out(&self) {
        self.find("form[action='/logout'] button").await.click().await.unwrap();
        self.find("input[name=password]").await;
    }

    /// Clicks the submit button of the form posting to `action`, and waits for the page it leads to.
    async fn submit(&self, action: &str) {
        let before = self.find("html").await;
        self.find(&format!("form[action='{action}'] button[type=submit]"))
            .await
            .click()
            .await
            .unwrap();
        // The old page's element goes stale once the next page has loaded.
        for _ in 0..100 {
            if before.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("submitting {action} led nowhere");
    }

    /// The file that finishes downloading into the profile's download folder.
    async fn downloaded(&self, suffix: &str) -> PathBuf {
        for _ in 0..200 {
            let done = std::fs::read_dir(&self.downloads)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.to_string_lossy().ends_with(suffix));
            if let Some(path) = done {
                return path;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {suffix} file arrived in {}", self.downloads.display());
    }
}

struct Service {
    base: String,
    ingest_key: String,
    clock: std::sync::Arc<ManualClock>,
    t: TestDb,
}

impl Service {
    async fn start(t: TestDb) -> Service {
        support::logs();
        let Served {
            base,
            clock,
            ingest_key,
        } = support::serve(&t, T0 - 6 * 24 * HOUR).await;
        Service {
            base,
            ingest_key,
            clock,
            t,
        }
    }

    /// A driver's message through the ingest API, as the bridge of a group sends it; the ticket it opened.
    async fn ingest(&self, id: &str, chat: &str, text: &str) -> Option<TicketId> {
        let body = json!({
            "channel": "telegram", "chat": chat, "message_id": id, "sender": format!("driver-{id}"),
            "sender_name": "张师傅", "text": text,
            "sent_at": jiff::Timestamp::from_millisecond(self.clock_now()).unwrap().to_string(),
        });
        let (status, answer) = support::ingest(&self.base, &self.ingest_key, &body).await;
        assert!(status.is_success(), "ingest: {status} {answer}");
        answer["ticket"]["id"].as_i64().map(TicketId)
    }

    fn clock_now(&self) -> i64 {
        suqiu::clock::Clock::now_ms(&*self.clock)
    }

    /// A week of the groups' appeals at different hours, most of them answered and some rated, so that the
    /// overview's figures and charts have something to show.
    async fn a_week_of_appeals(&self, responder: auth::Responder) {
        let desk = support::desk(&self.t.db);
        let appeals = [
            "车在高速上坏了，发动机打不着火，需要拖车",
            "运费拖了两个月还没结，老板电话也不接",
            "平台无故封号，账号申诉三次都没回音",
            "在服务区被罚款两百，说我超载，我没有超",
            "追尾了，对方全责但不肯赔，交警让自己协商",
        ];
        for day in 0..6 {
            for (n, text) in appeals.iter().enumerate().take(2 + day % 3) {
                self.clock
                    .set(T0 - (6 - day as i64) * 24 * HOUR + (7 + 3 * n as i64) * HOUR);
                let id = format!("week-{day}-{n}");
                let Some(ticket) = self.ingest(&id, &format!("group-{}", n % 2 + 1), text).await else {
                    continue;
                };
                let at = self.clock_now();
                let actor = Actor::Responder(responder.id);
                desk.act(at + 4 * 60_000, ticket, actor, Action::Claim, None)
                    .await
                    .unwrap();
                desk.act(
                    at + (6 + n as i64 * 3) * 60_000,
                    ticket,
                    actor,
                    Action::Reply,
                    Some("已收到，正在联系"),
                )
                .await
                .unwrap();
                if (day + n) % 3 != 0 {
                    desk.act(at + 5 * HOUR, ticket, actor, Action::Resolve, None)
                        .await
                        .unwrap();
                    sqlx::query("INSERT INTO ratings (ticket_id, score, rated_at) VALUES ($1, $2, $3)")
                        .bind(ticket.0)
                        .bind(3 + ((day + n) % 3) as i64)
                        .bind(at + 6 * HOUR)
                        .execute(self.t.db.pool())
                        .await
                        .unwrap();
                }
            }
        }
        self.clock.set(T0);
    }
}

/// Reads every cell of the first sheet of an XLSX file as text.
fn xlsx_text(path: &Path) -> String {
    let mut book: Xlsx<_> = calamine::open_workbook(path).unwrap();
    let sheet = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&sheet).unwrap();
    range
        .rows()
        .map(|row| row.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn a_responder_and_a_supervisor_work_in_chromium(t: TestDb) {
    let service = Service::start(t).await;
    let db = &service.t.db;
    let responder = login::add_user(db, "王干事", Role::Responder, RESPONDER_PASSWORD, T0)
        .await
        .unwrap();
    login::add_user(db, "赵主任", Role::Supervisor, SUPERVISOR_PASSWORD, T0)
        .await
        .unwrap();
    service.a_week_of_appeals(responder).await;
    let base = service.base.clone();
    let chromium = Chromium::start().await;
    let browser = &chromium.client;

    // The responder logs in and opens the queue; then a driver's appeal arrives through the API.
    chromium.log_in(&base, "王干事", RESPONDER_PASSWORD).await;
    browser.goto(&format!("{base}/queue")).await.unwrap();
    let appeal = "<script>document.title='pwned'</script>车被扣在晋城收费站了，说我证件不全，货主催着卸货，急";
    let ticket = service.ingest("live-1", "group-3", appeal).await.expect("an appeal");
    let row = format!("a[href='/tickets/{}']", ticket.0);
    let mut seen = false;
    for _ in 0..50 {
        browser.refresh().await.unwrap();
        if browser.find(Locator::Css(&row)).await.is_ok() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the new ticket is in the queue");

    // It is claimed from the list.
    chromium.submit(&format!("/tickets/{}/claim", ticket.0)).await;
    browser.goto(&format!("{base}/tickets/{}", ticket.0)).await.unwrap();
    let page = chromium.text().await;
    assert!(page.contains("处理中") && page.contains("负责人 王干事"), "{page}");
    // The driver's markup is shown as text, and no script of it ran.
    assert!(page.contains("<script>document.title='pwned'</script>"), "{page}");
    assert_ne!(browser.title().await.unwrap(), "pwned");

    // A reply, then resolution.
    let reply = "已联系晋城站，带上行驶证复印件去三号窗口办理";
    chromium
        .find("form[action$='/reply'] textarea")
        .await
        .send_keys(reply)
        .await
        .unwrap();
    chromium.submit(&format!("/tickets/{}/reply", ticket.0)).await;
    let page = chromium.text().await;
    assert!(page.contains(reply) && page.contains("已回复"), "{page}");
    chromium.submit(&format!("/tickets/{}/resolve", ticket.0)).await;
    assert!(chromium.text().await.contains("已办结"));

    // Found by search, with the matched word marked in the snippet; the indexer takes a moment.
    let mut found = false;
    for _ in 0..50 {
        browser.goto(&format!("{base}/search?q=收费站")).await.unwrap();
        if browser.find(Locator::Css(&row)).await.is_ok() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found, "the ticket is found by a word of its message");
    let marked = chromium.find("td.text mark").await.text().await.unwrap();
    assert!(marked.contains("收费站"), "the snippet marks {marked:?}");

    // A responder has no exports; a supervisor downloads the ticket list as XLSX.
    assert!(browser.find(Locator::Css("a[href='/responders']")).await.is_err());
    chromium.log_out().await;
    chromium.log_in(&base, "赵主任", SUPERVISOR_PASSWORD).await;
    browser.goto(&format!("{base}/responders")).await.unwrap();
    let team = chromium.text().await;
    assert!(team.contains("王干事"), "{team}");
    chromium
        .find("a[href^='/exports/tickets.xlsx']")
        .await
        .click()
        .await
        .unwrap();
    let xlsx = xlsx_text(&chromium.downloaded(".xlsx").await);
    assert!(
        xlsx.contains(&ticket.0.to_string()) && xlsx.contains("晋城收费站"),
        "{xlsx}"
    );
    assert!(xlsx.contains("王干事"), "{xlsx}");

    // The overview draws its figures and charts; a screenshot is kept for people to look at.
    browser.goto(&format!("{base}/")).await.unwrap();
    let overview = chromium.text().await;
    for expected in ["待认领", "即将超时", "今日新工单", "首次回复达标率", "司机评分"] {
        assert!(
            overview.contains(expected),
            "{expected} missing from the overview: {overview}"
        );
    }
    // The page's own styles apply under its content security policy.
    let card = chromium.find(".card").await;
    assert_eq!(card.css_value("border-top-style").await.unwrap(), "solid");
    let charts = browser.find_all(Locator::Css(".chart svg")).await.unwrap();
    assert_eq!(charts.len(), 3, "volume, response times and the heat map");
    let heat = charts[2].text().await.unwrap();
    assert!(heat.contains("星期") && heat.contains("23"), "{heat}");
    let png = browser.screenshot().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("overview-{}.png", service.t.backend_name()));
    std::fs::write(&out, &png).unwrap();
    eprintln!("overview screenshot: {}", out.display());

    browser.clone().close().await.unwrap();
    service.t.finish().await;
}
