//! The SLA scheduler with 100,000 open tickets and their 400,000 pending timers: how late deadlines fire on
//! the real clock (the target: within a second), and how much memory the scheduler adds while it runs.
//!
//! The database is a SQLite file of the real schema. Of the timers, `DUE` come due over the run, spread over
//! `SPREAD` seconds, in bursts as real deadlines do (tickets opened together come due together); the rest are
//! days away. Lateness is what each fired deadline recorded in its event (`late_ms`: firing time less due
//! time). Memory is the process's resident set before the scheduler starts and at its largest while it runs.
//!
//! Run: `cargo bench --bench scheduler`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use suqiu::clock::{SharedClock, SystemClock};
use suqiu::sla::{Scheduler, SlaConfig};
use suqiu::store::{values, Db};

const TICKETS: usize = 100_000;
const DUE: usize = 2_000;
const SPREAD: i64 = 20;
/// Deadlines that share a due time: tickets opened in the same second.
const BURST: usize = 50;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn fill(db: &Db, start: i64) {
    let far = start + 3 * 24 * 3_600_000;
    let mut tx = db.pool().begin().await.unwrap();
    for chunk in (0..TICKETS).collect::<Vec<_>>().chunks(500) {
        let sql = format!(
            "INSERT INTO tickets (id, channel, chat, driver, category, priority, status, opened_at, \
             last_message_at, first_response_due, resolution_due) VALUES {}",
            values(chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            q = q
                .bind(i as i64 + 1)
                .bind("bench")
                .bind(format!("group-{}", i % 40))
                .bind(format!("driver-{i}"))
                .bind("breakdown")
                .bind("P2")
                .bind("open")
                .bind(start)
                .bind(start)
                .bind(far)
                .bind(far);
        }
        q.execute(&mut *tx).await.unwrap();
    }
    // Four timers a ticket; the first DUE of them come due during the run, in bursts.
    let timers: Vec<(i64, &str, &str, i64)> = (0..TICKETS)
        .flat_map(|i| {
            let ticket = i as i64 + 1;
            [
                ("first_response", "warning"),
                ("first_response", "breach"),
                ("resolution", "warning"),
                ("resolution", "breach"),
            ]
            .into_iter()
            .enumerate()
            .map(move |(k, (target, stage))| {
                let n = i * 4 + k;
                let due = if n < DUE {
                    let bursts = (DUE / BURST) as i64;
                    start + 2_000 + (n / BURST) as i64 * SPREAD * 1000 / bursts
                } else {
                    far + n as i64
                };
                (ticket, target, stage, due)
            })
        })
        .collect();
    for chunk in timers.chunks(500) {
        let sql = format!(
            "INSERT INTO deadlines (ticket_id, target, stage, due_at) VALUES {}",
            values(chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for (ticket, target, stage, due) in chunk {
            q = q.bind(*ticket).bind(*target).bind(*stage).bind(*due);
        }
        q.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("bench.db").display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let start = clock.now_ms();
    let filling = Instant::now();
    fill(&db, start).await;
    // Due times count from when the scheduler starts, not from before the filling.
    sqlx::query("UPDATE deadlines SET due_at = due_at + $1")
        .bind(clock.now_ms() - start)
        .execute(db.pool())
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deadlines")
        .fetch_one(db.pool())
        .await
        .unwrap();
    eprintln!(
        "{TICKETS} open tickets, {pending} pending timers written in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let before = rss_kib();
    let scheduler = Scheduler::new(
        db.clone(),
        clock.clone(),
        Arc::new(SlaConfig::default()),
        Default::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(SPREAD as u64 + 30);
    let fired = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_kib());
        let fired: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ticket_events WHERE kind IN ('sla_warning', 'sla_breached')")
                .fetch_one(db.pool())
                .await
                .unwrap();
        if fired as usize >= DUE || Instant::now() > deadline {
            break fired;
        }
    };
    let _ = stop.send(());
    running.await.unwrap();

    let rows: Vec<String> =
        sqlx::query_scalar("SELECT data FROM ticket_events WHERE kind IN ('sla_warning', 'sla_breached')")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut late: Vec<i64> = rows
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["late_ms"]
                .as_i64()
                .unwrap()
        })
        .collect();
    late.sort_unstable();
    let at = |p: f64| late[((p * late.len() as f64).ceil() as usize).clamp(1, late.len()) - 1];
    println!(
        "scheduler: {fired} of {DUE} due deadlines fired among {pending} pending; lateness p50 {} ms, p99 {} ms, max {} ms; \
         resident memory {:.1} MiB before the scheduler started, {:.1} MiB at most while it ran (+{:.1} MiB)",
        at(0.5),
        at(0.99),
        late[late.len() - 1],
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - before) as f64 / 1024.0
    );
}
