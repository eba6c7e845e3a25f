//! The search index at scale: building it from 1,000,000 ticket messages in the database, its size on disk,
//! and how long searches and similar-case look-ups take (the target: p99 under 50 ms).
//!
//! The messages are the corpus's 1,807 (`tests/corpus`) varied so that they are not copies: other plates,
//! places and amounts, a greeting or a plea before, a time or an urgency after, now and then two joined.
//! They are written straight into a SQLite file of the real schema (about 2.5 messages a ticket, categories
//! from the corpus labels, statuses as a working queue has them), then `rebuild` indexes them as
//! `suqiu reindex` does. The baseline, measured in the same run on the same messages, is plain jieba (default
//! dictionary, no HMM, one thread) segmenting them: indexing is reported as a ratio to it. Searches are a few
//! hundred realistic queries (one to three of the field's words, some in traditional characters, a third
//! with filters), measured after one warm-up pass; their baseline is the same words as SQLite `LIKE` scans.
//!
//! Run: `cargo bench --bench search`; `SUQIU_BENCH_MESSAGES=50000 cargo bench --bench search` for a quick one.

use std::path::Path;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, MatchKind};
use jieba_rs::Jieba;
use regex::Regex;
use suqiu::classify::{Label, Sources};
use suqiu::eval::read_labelled;
use suqiu::search::{self, Analyzer, IndexerSettings, SearchIndex, SearchRequest};
use suqiu::store::{values, Db};
use suqiu::tickets::{Status, TicketId};

const QUERIES: usize = 300;
const SIMILAR: usize = 200;
const LIKE_QUERIES: usize = 20;
/// Rows per insert: sqlx looks up SQLite parameters by name, which grows with their square.
const ROWS: usize = 100;
/// 2026-01-01 UTC: messages are spread over the year after it.
const START: i64 = 1_767_225_600_000;
const YEAR: i64 = 365 * 24 * 3_600_000;

/// splitmix64: the same messages and queries on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const PROVINCES: &[&str] = &["晋", "冀", "豫", "陕", "蒙", "鲁", "京", "津", "甘", "宁"];
const BEFORE: &[&str] = &[
    "师傅们",
    "兄弟们",
    "各位老哥",
    "工会的同志",
    "谁能帮帮我",
    "急急急",
    "求助",
    "在吗",
];
const AFTER: &[&str] = &[
    "在线等",
    "咋办啊",
    "太难了",
    "谢谢大家",
    "今天早上的事",
    "昨天晚上",
    "刚才",
    "急",
];
const AMOUNTS: &[&str] = &["三千", "五千多", "八千", "一万二", "两万", "四千五", "六百", "一千八"];

/// Varies corpus texts: plates, places and amounts replaced, words added before and after.
struct Variations {
    texts: Vec<(String, Label)>,
    places: Vec<String>,
    place_finder: AhoCorasick,
    plate: Regex,
    digits: Regex,
    amount: Regex,
}

impl Variations {
    fn new() -> Variations {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let texts = read_labelled(&corpus).unwrap_or_else(|e| panic!("tests/corpus: {e}"));
        let dict =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dictionaries/roads_places.dict"))
                .expect("the places dictionary");
        let places: Vec<String> = dict
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(" ns"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        let place_finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&places)
            .unwrap();
        Variations {
            texts: texts.into_iter().map(|l| (l.text, l.label)).collect(),
            places,
            place_finder,
            plate: Regex::new(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z]·?[A-Z0-9]{5}")
                .unwrap(),
            digits: Regex::new(r"[0-9]{2,}").unwrap(),
            amount: Regex::new(r"[一二三四五六七八九两][千万][一二三四五六七八九]?多?").unwrap(),
        }
    }

    fn plate(&self, rng: &mut Rng) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
        let tail: String = (0..5).map(|_| *rng.pick(ALNUM) as char).collect();
        format!("{}{}{tail}", rng.pick(PROVINCES), (b'A' + rng.below(12) as u8) as char)
    }

    /// A varied message and its corpus label.
    fn message(&self, rng: &mut Rng) -> (String, Label) {
        let (text, label) = rng.pick(&self.texts).clone();
        let mut text = self
            .plate
            .replace_all(&text, |_: &regex::Captures| self.plate(rng))
            .into_owned();
        text = self
            .digits
            .replace_all(&text, |c: &regex::Captures| {
                let n = c[0].len().min(9) as u32;
                (10u64.pow(n - 1) + rng.next() % (9 * 10u64.pow(n - 1))).to_string()
            })
            .into_owned();
        text = self
            .amount
            .replace_all(&text, |_: &regex::Captures| rng.pick(AMOUNTS).to_string())
            .into_owned();
        let mut varied = String::with_capacity(text.len() + 32);
        let mut copied = 0;
        for m in self.place_finder.find_iter(&text) {
            varied.push_str(&text[copied..m.start()]);
            let place: &str = if rng.chance(60) {
                rng.pick(&self.places).as_str()
            } else {
                &text[m.start()..m.end()]
            };
            varied.push_str(place);
            copied = m.end();
        }
        varied.push_str(&text[copied..]);
        if rng.chance(30) {
            varied = format!("{} {varied}", rng.pick(BEFORE));
        }
        if rng.chance(30) {
            varied = format!("{varied} {}", rng.pick(AFTER));
        }
        if rng.chance(10) {
            varied = format!("{varied} 车牌{}", self.plate(rng));
        }
        if rng.chance(8) {
            varied = format!("{varied} {}", rng.pick(&self.texts).0);
        }
        (varied, label)
    }
}

/// A ticket message as it is written into the database.
struct Row {
    ticket: i64,
    text: String,
    sent_at: i64,
}

/// `count` messages on about `count / 2.5` tickets, written into `db`; returns the texts.
async fn fill(db: &Db, variations: &Variations, count: usize, rng: &mut Rng) -> Vec<String> {
    let mut tickets: Vec<(String, String, String, i64)> = Vec::new();
    let mut rows: Vec<Row> = Vec::with_capacity(count);
    while rows.len() < count {
        let (first, label) = variations.message(rng);
        let category = match label {
            Label::Appeal(c) => c.id().to_owned(),
            Label::None => "other".to_owned(),
        };
        let status = match rng.below(100) {
            0..20 => Status::Open,
            20..30 => Status::Claimed,
            30..50 => Status::Responded,
            50..95 => Status::Resolved,
            _ => Status::Closed,
        };
        let opened = START + (rng.next() % YEAR as u64) as i64;
        tickets.push((
            format!("group-{}", rng.below(50)),
            category,
            status.id().to_owned(),
            opened,
        ));
        let ticket = tickets.len() as i64;
        rows.push(Row {
            ticket,
            text: first,
            sent_at: opened,
        });
        // Follow-ups: one ticket in two has more messages, minutes apart.
        let more = if rng.chance(50) { 1 + rng.below(5) } else { 0 };
        for k in 0..more.min(count - rows.len()) {
            rows.push(Row {
                ticket,
                text: variations.message(rng).0,
                sent_at: opened + (k as i64 + 1) * 120_000,
            });
        }
    }
    let mut tx = db.pool().begin().await.unwrap();
    for (n, chunk) in tickets.chunks(ROWS).enumerate() {
        let sql = format!(
            "INSERT INTO tickets (id, channel, chat, driver, category, priority, status, opened_at, last_message_at) \
             VALUES {}",
            values(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for (i, (chat, category, status, opened)) in chunk.iter().enumerate() {
            let id = (n * ROWS + i + 1) as i64;
            q = q
                .bind(id)
                .bind("telegram")
                .bind(chat)
                .bind(format!("driver-{id}"))
                .bind(category)
                .bind("P2")
                .bind(status)
                .bind(*opened)
                .bind(*opened);
        }
        q.execute(&mut *tx).await.unwrap();
    }
    for (n, chunk) in rows.chunks(ROWS).enumerate() {
        let sql = format!(
            "INSERT INTO messages (id, channel, chat, external_id, sender, text, sent_at, received_at, label, score, \
             classification, ticket_id, disposition) VALUES {}",
            values(chunk.len(), 13)
        );
        let mut q = sqlx::query(&sql);
        for (i, row) in chunk.iter().enumerate() {
            let id = (n * ROWS + i + 1) as i64;
            let (chat, category, _, _) = &tickets[row.ticket as usize - 1];
            q = q
                .bind(id)
                .bind("telegram")
                .bind(chat)
                .bind(id.to_string())
                .bind(format!("driver-{}", row.ticket))
                .bind(&row.text)
                .bind(row.sent_at)
                .bind(row.sent_at)
                .bind(category)
                .bind(1.5)
                .bind("{}")
                .bind(row.ticket)
                .bind("attached");
        }
        q.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    rows.into_iter().map(|r| r.text).collect()
}

/// Realistic searches: the field's words, a place now and then, some in traditional characters, a third
/// with filters.
fn queries(analyzer: &Analyzer, texts: &[String], places: &[String], rng: &mut Rng) -> Vec<SearchRequest> {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for text in texts.iter().take(50_000) {
        for t in analyzer.tokens(text, search::Mode::Query) {
            if t.text.chars().count() >= 2 && !t.text.is_ascii() {
                *counts.entry(t.text).or_default() += 1;
            }
        }
    }
    let mut vocabulary: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= 20).collect();
    vocabulary.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    vocabulary.truncate(1500);
    let traditional = [
        "運費 拖欠",
        "壓車 三天",
        "貨拉拉 封號",
        "罰款 治超站",
        "車禍 受傷",
        "服務區 偷油",
    ];
    let mut queries = Vec::with_capacity(QUERIES);
    while queries.len() < QUERIES {
        let words = match rng.below(100) {
            0..5 => rng.pick(&traditional).to_string(),
            // One of the field's common words.
            5..35 => rng.pick(&vocabulary).0.clone(),
            // Words of a case someone remembers: one to three of a message's words, a place now and then.
            _ => {
                let message = analyzer.tokens(rng.pick(texts).as_str(), search::Mode::Query);
                let mut words: Vec<String> = message
                    .into_iter()
                    .map(|t| t.text)
                    .filter(|w| w.chars().count() >= 2 && !w.is_ascii())
                    .collect();
                if words.is_empty() {
                    continue;
                }
                let n = 1 + rng.below(3);
                let picked: Vec<String> = (0..n).map(|_| rng.pick(&words).clone()).collect();
                words = picked;
                if rng.chance(10) {
                    words.push(rng.pick(places).clone());
                }
                words.join(" ")
            }
        };
        let mut request = SearchRequest {
            words,
            ..SearchRequest::default()
        };
        match rng.below(9) {
            0 => request.statuses = vec![Status::Open, Status::Claimed, Status::Responded],
            1 => request.categories = vec![*rng.pick(&suqiu::classify::Category::ALL)],
            2 => {
                let from = START + (rng.next() % YEAR as u64) as i64;
                request.sent_from = Some(from);
                request.sent_before = Some(from + 30 * 24 * 3_600_000);
            }
            _ => {}
        }
        queries.push(request);
    }
    queries
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let count: usize = std::env::var("SUQIU_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(2026);

    let variations = Variations::new();
    let started = Instant::now();
    let db = runtime.block_on(async {
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("bench.db").display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    });
    let texts = runtime.block_on(fill(&db, &variations, count, &mut rng));
    let bytes: usize = texts.iter().map(String::len).sum();
    eprintln!(
        "{count} messages ({:.1} MB of text, {:.0} bytes on average) written in {:.1} s",
        bytes as f64 / 1e6,
        bytes as f64 / count as f64,
        started.elapsed().as_secs_f64()
    );

    // The baseline: plain jieba over the same messages, one thread.
    let jieba = Jieba::new();
    let started = Instant::now();
    let mut words = 0;
    for text in &texts {
        words += std::hint::black_box(jieba.cut(text, false)).len();
    }
    let jieba_s = started.elapsed().as_secs_f64();
    let analyzer = std::sync::Arc::new(Analyzer::from_sources(&Sources::builtin()).unwrap());
    let started = Instant::now();
    for text in &texts {
        std::hint::black_box(analyzer.tokens(text, search::Mode::Index));
    }
    let analyzer_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let read: i64 = runtime.block_on(async {
        sqlx::query_scalar(
            "SELECT COUNT(*) + SUM(LENGTH(m.text) + LENGTH(t.status)) * 0 FROM messages m \
             LEFT JOIN tickets t ON t.id = m.ticket_id",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    });
    let read_s = started.elapsed().as_secs_f64();
    assert_eq!(read as usize, count);

    let index_dir = dir.path().join("search");
    let index = SearchIndex::open(&index_dir, analyzer.clone()).unwrap();
    let rebuilt = runtime
        .block_on(search::rebuild(&index, &db, IndexerSettings::rebuild()))
        .unwrap();
    assert_eq!(rebuilt.messages as usize, count);
    let size = index.size_on_disk().unwrap();

    let queries = queries(&analyzer, &texts, &variations.places, &mut rng);
    let mut matched = 0;
    for q in &queries {
        matched += index.search_blocking(q).map_or(0, |r| r.hits.len());
    }
    let mut latencies: Vec<Duration> = queries
        .iter()
        .map(|q| {
            let started = Instant::now();
            std::hint::black_box(index.search_blocking(q).unwrap());
            started.elapsed()
        })
        .collect();
    latencies.sort();
    let tickets = (count as f64 / 2.5) as usize;
    let mut similar: Vec<Duration> = (0..SIMILAR)
        .map(|_| {
            let ticket = TicketId(1 + rng.below(tickets) as i64);
            let started = Instant::now();
            std::hint::black_box(index.similar_blocking(ticket, 10).unwrap());
            started.elapsed()
        })
        .collect();
    similar.sort();
    let mut like: Vec<Duration> = queries
        .iter()
        .take(LIKE_QUERIES)
        .map(|q| {
            let words: Vec<String> = q.words.split_whitespace().map(|w| format!("%{w}%")).collect();
            let conditions: Vec<String> = (1..=words.len()).map(|i| format!("text LIKE ${i}")).collect();
            let sql = format!("SELECT COUNT(*) FROM messages WHERE {}", conditions.join(" AND "));
            let started = Instant::now();
            runtime.block_on(async {
                let mut query = sqlx::query_scalar::<_, i64>(&sql);
                for w in &words {
                    query = query.bind(w);
                }
                query.fetch_one(db.pool()).await.unwrap()
            });
            started.elapsed()
        })
        .collect();
    like.sort();

    let per_s = |seconds: f64| count as f64 / seconds;
    println!(
        "search index, {count} ticket messages ({words} jieba words), {} cores",
        num_cores()
    );
    println!(
        "  rebuild (read, analyze, index, merge)   {:>8.1} s   {:>9.0} messages/s",
        rebuilt.seconds,
        per_s(rebuilt.seconds)
    );
    println!(
        "  baseline: plain jieba, one thread       {:>8.1} s   {:>9.0} messages/s   rebuild takes {:.1}× as long",
        jieba_s,
        per_s(jieba_s),
        rebuilt.seconds / jieba_s
    );
    println!(
        "  the analyzer alone, one thread          {:>8.1} s   {:>9.0} messages/s   {:.1}× plain jieba",
        analyzer_s,
        per_s(analyzer_s),
        analyzer_s / jieba_s
    );
    println!("  reading the rows from SQLite alone      {:>8.2} s", read_s);
    println!(
        "  on disk {:.1} MiB ({:.0} bytes a message; the text itself {:.1} MB)",
        size as f64 / (1 << 20) as f64,
        size as f64 / count as f64,
        bytes as f64 / 1e6
    );
    println!(
        "  search, {} queries (limit 20, snippets; {} hits): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        matched,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!(
        "  similar, {} tickets (limit 10): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        similar.len(),
        ms(percentile(&similar, 0.5)),
        ms(percentile(&similar, 0.99)),
        ms(percentile(&similar, 1.0))
    );
    let like_p50 = percentile(&like, 0.5);
    println!(
        "  baseline: the same words as SQLite LIKE scans, {} queries: p50 {:.1} ms ({:.0}× the search's p50)",
        like.len(),
        ms(like_p50),
        like_p50.as_secs_f64() / percentile(&latencies, 0.5).as_secs_f64()
    );
    runtime.block_on(db.close());
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
