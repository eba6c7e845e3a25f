//! Full-text search over ticket messages, fed by the real intake, on a SQLite file and on PostgreSQL.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use support::{desk, intake, message, ticket_of, TestDb, MINUTE, T0};
use suqiu::auth::{self, Role};
use suqiu::classify::source::SourceFile;
use suqiu::classify::{Category, Sources};
use suqiu::search::{Analyzer, Indexer, IndexerSettings, SearchError, SearchIndex, SearchRequest};
use suqiu::tickets::intake::{InboundMessage, Intake};
use suqiu::tickets::state::{Action, Actor};
use suqiu::tickets::{Status, TicketId};
use tempfile::TempDir;
use tokio::sync::Notify;

const ARREARS: &str = "运满满上接的单 货主拖欠运费三个月了 八千多块一直不给";
const ARREARS_TOO: &str = "运满满的货主到现在还拖欠我运费 一万二 打电话也不接";
const ARREARS_BOSS: &str = "老板拖欠运费两个月了 说下周给";
const ACCIDENT: &str = "我的车在京昆高速侧翻了，人受伤了，快来人";
const BREAKDOWN: &str = "车坏在路上了 一直打不着火 需要拖车";
const FINE: &str = "治超站罚了两千 说我超载 其实没超";
const PLATFORM: &str = "货拉拉平台把我封号了 申诉也没人理";
const CHATTER: &str = "有货去太原，运费到付";
const HOSTILE: &str = "<script>alert('x')</script> 在厂里压车三天了 没人管 压车费也不给 & 老板说\"等着\"";

on_both_backends!(
    a_new_message_is_searchable_within_seconds,
    filters_narrow_by_category_status_chat_and_period,
    a_traditional_or_full_width_query_finds_simplified_text,
    snippets_escape_the_drivers_text_and_mark_only_the_words_found,
    similar_finds_the_related_cases_and_not_the_unrelated_ones,
    the_indexer_resumes_after_a_restart_without_duplicates,
    a_ticket_written_again_before_its_newest_message_is_read_keeps_one_document_a_message,
    reindex_from_scratch_gives_the_same_results,
    an_index_built_with_other_dictionaries_is_built_again,
);

fn analyzer() -> Arc<Analyzer> {
    static ANALYZER: OnceLock<Arc<Analyzer>> = OnceLock::new();
    ANALYZER
        .get_or_init(|| Arc::new(Analyzer::from_sources(&Sources::builtin()).expect("the built-in dictionaries load")))
        .clone()
}

fn settings() -> IndexerSettings {
    IndexerSettings {
        poll_interval: Duration::from_millis(50),
        ..IndexerSettings::default()
    }
}

/// An index in a fresh directory, and its indexer on `t`'s database.
async fn indexed(t: &TestDb) -> (SearchIndex, Indexer, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(&dir.path().join("search"), analyzer()).unwrap();
    let indexer = Indexer::with_settings(&index, t.db.clone(), settings()).await.unwrap();
    (index, indexer, dir)
}

/// A message from its own driver (so that it opens its own ticket), in `chat`, sent at `at`.
fn from(driver: &str, chat: &str, text: &str, at: i64) -> InboundMessage {
    let mut m = message(&format!("{driver}-{at}"), driver, text, at);
    m.chat = chat.into();
    m
}

async fn open(intake: &Intake, driver: &str, text: &str) -> TicketId {
    ticket_of(intake, from(driver, "group-1", text, T0)).await
}

fn words(words: &str) -> SearchRequest {
    SearchRequest {
        words: words.into(),
        ..SearchRequest::default()
    }
}

async fn tickets(index: &SearchIndex, request: SearchRequest) -> Vec<TicketId> {
    let results = index.search(request).await.unwrap();
    results.hits.iter().map(|h| h.ticket).collect()
}

async fn a_new_message_is_searchable_within_seconds(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let (index, indexer, _dir) = indexed(&t).await;
    let stop = Arc::new(Notify::new());
    let running = tokio::spawn(indexer.run(stop.clone()));

    let sent = Instant::now();
    let ticket = open(&intake, "d1", ARREARS).await;
    intake.submit(from("d2", "group-1", CHATTER, T0)).await.unwrap();
    let mut found = Vec::new();
    while found.is_empty() && sent.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        found = tickets(&index, words("拖欠运费")).await;
    }

    assert_eq!(found, [ticket]);
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
    assert_eq!(
        tickets(&index, words("太原")).await,
        [],
        "chatter has no ticket and is not indexed"
    );
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the indexer stops when told")
        .unwrap();
    t.finish().await;
}

async fn filters_narrow_by_category_status_chat_and_period(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let early = ticket_of(&intake, from("d1", "group-1", ARREARS, T0)).await;
    let later = ticket_of(&intake, from("d2", "group-1", ARREARS_BOSS, T0 + 60 * MINUTE)).await;
    let elsewhere = ticket_of(&intake, from("d3", "group-2", ARREARS_TOO, T0 + 120 * MINUTE)).await;
    let fine = ticket_of(&intake, from("d4", "group-2", FINE, T0)).await;
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();

    let all: HashSet<TicketId> = tickets(&index, words("拖欠运费")).await.into_iter().collect();
    assert_eq!(all, HashSet::from([early, later, elsewhere]));
    let first_page = SearchRequest {
        limit: 2,
        ..words("拖欠运费")
    };
    let second_page = SearchRequest {
        offset: 2,
        ..first_page.clone()
    };
    let (first, second) = (tickets(&index, first_page).await, tickets(&index, second_page).await);
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(!first.contains(&second[0]));
    let in_group_2 = SearchRequest {
        chat: Some("group-2".into()),
        ..words("拖欠运费")
    };
    assert_eq!(tickets(&index, in_group_2).await, [elsewhere]);
    let second_hour = SearchRequest {
        sent_from: Some(T0 + 30 * MINUTE),
        sent_before: Some(T0 + 90 * MINUTE),
        ..words("拖欠运费")
    };
    assert_eq!(tickets(&index, second_hour).await, [later]);

    // A responder works the tickets: the index follows their status and category.
    let me = Actor::Responder(
        auth::add_responder(&t.db, "王师傅", Role::Responder, T0)
            .await
            .unwrap()
            .0
            .id,
    );
    let desk = desk(&t.db);
    desk.act(T0, early, me, Action::Claim, None).await.unwrap();
    desk.act(T0, early, me, Action::Reply, Some("已联系货主"))
        .await
        .unwrap();
    desk.act(T0, early, me, Action::Resolve, None).await.unwrap();
    desk.act(T0, fine, me, Action::Claim, None).await.unwrap();
    let labor = Action::Reclassify {
        category: Category::Labor,
    };
    desk.act(T0, fine, me, labor, None).await.unwrap();
    indexer.catch_up().await.unwrap();

    let resolved = SearchRequest {
        statuses: vec![Status::Resolved],
        ..words("运费")
    };
    assert_eq!(tickets(&index, resolved).await, [early]);
    let unfinished = SearchRequest {
        statuses: vec![Status::Open, Status::Claimed, Status::Responded],
        ..words("拖欠运费")
    };
    let unfinished: HashSet<TicketId> = tickets(&index, unfinished).await.into_iter().collect();
    assert_eq!(unfinished, HashSet::from([later, elsewhere]));
    let fines = SearchRequest {
        categories: vec![Category::Enforcement],
        ..words("治超站")
    };
    assert_eq!(tickets(&index, fines).await, [], "reclassified away from enforcement");
    let labor = SearchRequest {
        categories: vec![Category::Labor, Category::Cargo],
        statuses: vec![Status::Claimed],
        ..words("治超站")
    };
    assert_eq!(tickets(&index, labor).await, [fine]);
    assert_eq!(index.num_messages(), 4, "a ticket written again replaces its documents");
    t.finish().await;
}

async fn a_traditional_or_full_width_query_finds_simplified_text(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = open(&intake, "d1", ARREARS_BOSS).await;
    let platform = open(&intake, "d2", PLATFORM).await;
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();

    assert_eq!(tickets(&index, words("老闆拖欠運費")).await, [ticket]);
    assert_eq!(tickets(&index, words("貨拉拉 封號")).await, [platform]);
    let results = index.search(words("運費")).await.unwrap();
    assert!(
        results.hits[0].snippet.contains("<mark>运费</mark>"),
        "the snippet shows the driver's own characters: {}",
        results.hits[0].snippet
    );
    assert!(matches!(
        index.search(words("的了吗！！")).await,
        Err(SearchError::NoWords(_))
    ));
    t.finish().await;
}

async fn snippets_escape_the_drivers_text_and_mark_only_the_words_found(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = open(&intake, "d1", HOSTILE).await;
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();

    let results = index.search(words("压车 老板")).await.unwrap();
    assert_eq!(results.hits.len(), 1);
    let hit = &results.hits[0];
    assert_eq!(
        (hit.ticket, hit.chat.as_str(), hit.status.as_str()),
        (ticket, "group-1", "open")
    );
    assert_eq!(hit.category, "cargo");
    assert_eq!(hit.sent_at, "2026-11-02T08:00:00Z");
    assert_eq!(
        hit.snippet,
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; 在厂里<mark>压车</mark>三天了 没人管 \
         <mark>压车</mark>费也不给 &amp; <mark>老板</mark>说&quot;等着&quot;"
    );
    let tags: Vec<&str> = hit.snippet.match_indices('<').map(|(i, _)| &hit.snippet[i..]).collect();
    assert!(
        tags.iter().all(|t| t.starts_with("<mark>") || t.starts_with("</mark>")),
        "only highlights are markup: {}",
        hit.snippet
    );

    // Words found inside a longer word are marked where they are, in a passage cut from a long message.
    let long = format!(
        "{} 老板拖欠运费 真的活不下去了 {}",
        "车队的事说来话长 ".repeat(12),
        "家里老人孩子都等着用 ".repeat(12)
    );
    let crisis = open(&intake, "d2", &long).await;
    indexer.catch_up().await.unwrap();
    let results = index.search(words("下去 拖欠")).await.unwrap();
    assert_eq!(results.hits.len(), 1);
    let hit = &results.hits[0];
    assert_eq!(hit.ticket, crisis);
    assert!(hit.snippet.contains("活不<mark>下去</mark>了"), "{}", hit.snippet);
    assert!(
        hit.snippet.starts_with('…') && hit.snippet.ends_with('…'),
        "{}",
        hit.snippet
    );
    t.finish().await;
}

async fn similar_finds_the_related_cases_and_not_the_unrelated_ones(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let arrears = open(&intake, "d1", ARREARS).await;
    let same_platform = open(&intake, "d2", ARREARS_TOO).await;
    let same_matter = open(&intake, "d3", ARREARS_BOSS).await;
    let mut unrelated = Vec::new();
    for (driver, text) in [("d4", ACCIDENT), ("d5", BREAKDOWN), ("d6", FINE), ("d7", PLATFORM)] {
        unrelated.push(open(&intake, driver, text).await);
    }
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();

    let similar = index.similar(arrears, 10).await.unwrap();
    let found: Vec<TicketId> = similar.iter().map(|c| c.ticket).collect();
    assert_eq!(found.first(), Some(&same_platform), "{similar:?}");
    assert!(found.contains(&same_matter), "{similar:?}");
    assert!(!found.contains(&arrears), "the ticket itself is not a similar case");
    for ticket in &unrelated {
        assert!(!found.contains(ticket), "{ticket} is unrelated: {similar:?}");
    }
    assert!(similar.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(index.similar(TicketId(9999), 10).await.unwrap(), []);
    t.finish().await;
}

async fn the_indexer_resumes_after_a_restart_without_duplicates(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let ticket = open(&intake, "d1", BREAKDOWN).await;
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();
    drop(indexer);

    clock.advance(MINUTE);
    let follow_up = message("d1-2", "d1", "拖车到现在还没来 等了两个小时", T0 + MINUTE);
    assert_eq!(ticket_of(&intake, follow_up).await, ticket);
    let other = open(&intake, "d2", FINE).await;
    let mut restarted = Indexer::with_settings(&index, t.db.clone(), settings()).await.unwrap();
    restarted.catch_up().await.unwrap();
    restarted.catch_up().await.unwrap();

    assert_eq!(index.num_messages(), 3);
    assert_eq!(tickets(&index, words("拖车")).await, [ticket]);
    assert_eq!(tickets(&index, words("超载")).await, [other]);
    t.finish().await;
}

async fn a_ticket_written_again_before_its_newest_message_is_read_keeps_one_document_a_message(t: TestDb) {
    let (intake, clock) = intake(&t.db);
    let ticket = open(&intake, "d1", BREAKDOWN).await;
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), analyzer()).unwrap();
    let small_pages = IndexerSettings { page: 2, ..settings() };
    let mut indexer = Indexer::with_settings(&index, t.db.clone(), small_pages).await.unwrap();
    indexer.catch_up().await.unwrap();

    for driver in ["d2", "d3", "d4"] {
        intake.submit(from(driver, "group-1", CHATTER, T0)).await.unwrap();
    }
    let me = Actor::Responder(
        auth::add_responder(&t.db, "王师傅", Role::Responder, T0)
            .await
            .unwrap()
            .0
            .id,
    );
    desk(&t.db).act(T0, ticket, me, Action::Claim, None).await.unwrap();
    clock.advance(MINUTE);
    let follow_up = message("d1-2", "d1", "拖车到现在还没来 等了两个小时", T0 + MINUTE);
    assert_eq!(ticket_of(&intake, follow_up).await, ticket);
    // Two rows a read: the claim is read, and the ticket written again with its follow-up, while the
    // messages watermark is still among the chatter; then the follow-up is read.
    indexer.catch_up().await.unwrap();

    assert_eq!(index.num_messages(), 2);
    let claimed = SearchRequest {
        statuses: vec![Status::Claimed],
        ..words("拖车")
    };
    let results = index.search(claimed).await.unwrap();
    assert_eq!((results.hits.len(), results.matched_messages), (1, 2));
    assert_eq!(results.hits[0].ticket, ticket);
    t.finish().await;
}

async fn reindex_from_scratch_gives_the_same_results(t: TestDb) {
    let (intake, _) = intake(&t.db);
    for (i, text) in [
        ARREARS,
        ARREARS_TOO,
        ARREARS_BOSS,
        ACCIDENT,
        BREAKDOWN,
        FINE,
        PLATFORM,
        HOSTILE,
    ]
    .into_iter()
    .enumerate()
    {
        open(&intake, &format!("d{i}"), text).await;
    }
    let (index, mut indexer, dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();

    let busy = reindex(&t.url, index.dir()).await;
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );

    let fresh_dir = dir.path().join("rebuilt");
    let rebuilt = reindex(&t.url, &fresh_dir).await;
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("8 messages indexed"));
    let fresh = SearchIndex::open(&fresh_dir, analyzer()).unwrap();
    assert_same_answers(&index, &fresh).await;

    // With the indexer stopped, the index rebuilds in place: emptied first, nothing twice.
    drop(indexer);
    let in_place = reindex(&t.url, index.dir()).await;
    assert!(
        in_place.status.success(),
        "{}",
        String::from_utf8_lossy(&in_place.stderr)
    );
    let in_place = SearchIndex::open(index.dir(), analyzer()).unwrap();
    assert_eq!(in_place.num_messages(), 8);
    assert_same_answers(&in_place, &fresh).await;
    t.finish().await;
}

async fn assert_same_answers(a: &SearchIndex, b: &SearchIndex) {
    for query in ["拖欠运费", "運費", "压车", "侧翻", "老板"] {
        let (a, b) = (
            a.search(words(query)).await.unwrap(),
            b.search(words(query)).await.unwrap(),
        );
        let view = |r: &suqiu::search::SearchResults| -> Vec<(TicketId, i64, String)> {
            r.hits
                .iter()
                .map(|h| (h.ticket, h.message, h.snippet.clone()))
                .collect()
        };
        assert!(!a.hits.is_empty(), "{query}");
        assert_eq!(view(&a), view(&b), "{query}");
    }
    for ticket in 1..=8 {
        let ticket = TicketId(ticket);
        let (a, b) = (a.similar(ticket, 5).await.unwrap(), b.similar(ticket, 5).await.unwrap());
        let cases = |s: &[suqiu::search::SimilarCase]| s.iter().map(|c| c.ticket).collect::<Vec<_>>();
        assert_eq!(cases(&a), cases(&b), "{ticket}");
        // Scores are sums over segments: another layout may round the last bit differently.
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a.score - b.score).abs() <= 1e-4 * a.score),
            "{a:?} {b:?}"
        );
    }
}

async fn an_index_built_with_other_dictionaries_is_built_again(t: TestDb) {
    let (intake, _) = intake(&t.db);
    let ticket = open(&intake, "d1", "工会帮我看看这个拖欠运费案 老板八千块一直不给").await;
    let (index, mut indexer, _dir) = indexed(&t).await;
    indexer.catch_up().await.unwrap();
    drop(indexer);

    let mut sources = Sources::builtin();
    sources.dictionaries.push(SourceFile {
        name: "dictionaries/cases.dict".into(),
        text: "拖欠运费案\n".into(),
    });
    let edited = Arc::new(Analyzer::from_sources(&sources).unwrap());
    let reopened = SearchIndex::open(index.dir(), edited).unwrap();
    assert_eq!(
        tickets(&reopened, words("拖欠运费案")).await,
        [],
        "segmented with the old dictionaries, the new word is not in the index"
    );
    let mut indexer = Indexer::with_settings(&reopened, t.db.clone(), settings())
        .await
        .unwrap();
    indexer.catch_up().await.unwrap();

    assert_eq!(tickets(&reopened, words("拖欠运费案")).await, [ticket]);
    assert_eq!(reopened.num_messages(), 1);
    t.finish().await;
}

/// `suqiu reindex` on the database at `url` into `dir`.
async fn reindex(url: &str, dir: &Path) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_suqiu"));
    command
        .arg("reindex")
        .env("SUQIU_DATABASE_URL", url)
        .env("SUQIU_SEARCH_DIR", dir)
        .env_remove("SUQIU_RULES")
        .env_remove("SUQIU_CONFIG");
    tokio::task::spawn_blocking(move || command.output().expect("suqiu runs"))
        .await
        .unwrap()
}

/// On PostgreSQL a transaction that took its ids first may commit last: its message turns up below the
/// highest id already indexed, and is indexed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_after_a_later_one_is_still_indexed() {
    let t = TestDb::postgres().await;
    let (intake, _) = intake(&t.db);
    let (index, mut indexer, _dir) = indexed(&t).await;

    let mut slow = t.db.pool().begin().await.unwrap();
    let ticket: i64 = sqlx::query_scalar(
        "INSERT INTO tickets (channel, chat, driver, category, priority, status, opened_at, last_message_at) \
         VALUES ('telegram', 'group-1', 'slow', 'cargo', 'P2', 'open', $1, $1) RETURNING id",
    )
    .bind(T0)
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO messages (channel, chat, external_id, sender, text, sent_at, received_at, label, score, \
         classification, ticket_id, disposition) \
         VALUES ('telegram', 'group-1', 'slow-1', 'slow', '在厂里压车三天了 没人管', $1, $1, 'cargo', 2.0, '{}', $2, 'opened')",
    )
    .bind(T0)
    .bind(ticket)
    .execute(&mut *slow)
    .await
    .unwrap();
    let fast = open(&intake, "d1", ACCIDENT).await;
    indexer.catch_up().await.unwrap();
    assert_eq!(tickets(&index, words("侧翻")).await, [fast]);
    assert_eq!(tickets(&index, words("压车")).await, []);

    slow.commit().await.unwrap();
    indexer.catch_up().await.unwrap();
    assert_eq!(tickets(&index, words("压车")).await, [TicketId(ticket)]);
    t.finish().await;
}
