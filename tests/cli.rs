//! The `suqiu` binary as a user runs it: from a scratch working directory, to show that nothing depends on
//! being started inside the repository.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::{RulesDir, ScratchDir};

/// `suqiu ARGS…` run in `dir`, with `stdin` piped in; the environment cannot point it at other rules.
fn suqiu_in(dir: &ScratchDir, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_suqiu"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("SUQIU_RULES")
        .env_remove("SUQIU_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start suqiu");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // Write from a thread: a large input would otherwise deadlock against a full stdout pipe.
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().expect("failed to wait for suqiu");
    // A command refused before it reads its input closes the pipe: that is its answer, not a test failure.
    match writer.join().expect("stdin writer") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("failed to write suqiu's stdin: {e}"),
        _ => {}
    }
    output
}

fn suqiu(args: &[&str]) -> Output {
    suqiu_in(&ScratchDir::new("cli"), args, b"")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---- classify ----

#[test]
fn classify_text_prints_the_label_and_the_tokens() {
    let output = suqiu(&["classify", "车在高速上追尾了 司机受伤了 快来人"]);

    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("label").contains("accident"), "{text}");
    assert!(line("tokens").contains("追尾"), "{text}");
    assert!(
        line("reply").contains("120"),
        "the driver's acknowledgement gives the emergency number: {text}"
    );
}

#[test]
fn classify_json_has_label_priority_score_evidence_and_entities() {
    let output = suqiu(&["classify", "晋A·3F521在G5追尾了 司机受伤了", "--json"]);

    assert!(output.status.success(), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).expect("classify --json prints JSON");
    assert_eq!(json["label"], "accident");
    assert_eq!(json["priority"], "P1");
    assert!(json["score"].as_f64().is_some_and(|s| s >= 1.0), "{json}");
    assert!(json["evidence"].as_array().is_some_and(|e| !e.is_empty()), "{json}");
    let kinds: Vec<&str> = json["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"plate") && kinds.contains(&"highway"), "{json}");
}

#[test]
fn classify_stdin_answers_every_line_in_order_even_the_unreadable_ones() {
    let mut input = Vec::new();
    input.extend_from_slice("{\"id\": \"msg-1\", \"text\": \"老板拖欠运费三个月了 怎么办\"}\n".as_bytes());
    input.extend_from_slice("车翻了 人卡在里面 快来人\n".as_bytes());
    input.extend_from_slice(b"{\"id\": 3, \"body\": \"no text field\"}\n");
    input.extend_from_slice(b"{\"text\": \"unterminated\n");
    input.extend_from_slice(b"\xff\xfe invalid \xc3\x28 utf-8\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice("欠运费".repeat((1 << 20) / 9).as_bytes());
    input.push(b'\n');

    let output = suqiu_in(&ScratchDir::new("stdin"), &["classify", "--stdin"], &input);

    assert!(output.status.success(), "{}", stderr(&output));
    let results: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(results.len(), 7, "one result per input line");
    let numbers: Vec<u64> = results.iter().filter_map(|r| r["line"].as_u64()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    let errors: Vec<bool> = results.iter().map(|r| r.get("error").is_some()).collect();
    assert_eq!(errors, [false, false, true, true, true, false, false]);
    assert_eq!(results[0]["id"], "msg-1");
    assert_eq!(results[0]["label"], "freight_arrears");
    assert_eq!(results[1]["label"], "accident");
    assert_eq!(results[5]["label"], "none", "an empty line is chatter");
    assert_eq!(
        results[6]["truncated"]["kept_chars"], 4096,
        "{}",
        results[6]["truncated"]
    );
}

// ---- eval ----

const LABELLED: &str = r#"{"text": "车在高速上追尾了 司机受伤了 快来人", "label": "accident"}
{"text": "老板拖欠运费三个月了 怎么办", "label": "freight_arrears"}
{"text": "早上好各位师傅 出车注意安全", "label": "none"}
{"text": "晚安 明天四点起来装车", "label": "crisis", "note": "deliberately mislabelled"}
"#;

#[test]
fn eval_prints_macro_f1_and_json_on_request() {
    let dir = ScratchDir::new("eval");
    dir.write("labelled.jsonl", LABELLED);

    let text = suqiu_in(&dir, &["eval", "labelled.jsonl"], b"");
    let json = suqiu_in(&dir, &["eval", "labelled.jsonl", "--json"], b"");

    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("macro-F1"), "{}", stdout(&text));
    let report: Value = serde_json::from_slice(&json.stdout).expect("eval --json prints JSON");
    assert_eq!(report["messages"], 4);
    assert!(report["macro_f1"].as_f64().is_some_and(|f| f < 1.0), "{report}");
}

#[test]
fn eval_below_the_required_macro_f1_fails_and_says_why() {
    let dir = ScratchDir::new("eval-min");
    dir.write("labelled.jsonl", LABELLED);

    let output = suqiu_in(&dir, &["eval", "labelled.jsonl", "--min-macro-f1", "0.99"], b"");

    assert!(!output.status.success(), "a mislabelled file cannot reach 0.99");
    assert!(stderr(&output).contains("below the required"), "{}", stderr(&output));
}

#[test]
fn eval_names_the_line_with_an_unknown_label() {
    let dir = ScratchDir::new("eval-bad");
    dir.write(
        "labelled.jsonl",
        "{\"text\": \"你好\", \"label\": \"none\"}\n{\"text\": \"车坏了\", \"label\": \"brekdown\"}\n",
    );

    let output = suqiu_in(&dir, &["eval", "labelled.jsonl"], b"");

    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("line 2") && err.contains("brekdown"), "{err}");
}

// ---- check ----

#[test]
fn check_accepts_the_builtin_rules() {
    let output = suqiu(&["check"]);

    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("ok"), "{}", stdout(&output));
    let labelled = common::corpus().len();
    assert!(
        stdout(&output).contains(&format!("a model of {labelled} labelled messages")),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_with_a_broken_rules_dir_fails_and_names_the_file_and_line() {
    let rules = RulesDir::copy_of_intents("cli-broken");
    let line = rules.edit_line("health.toml", "weight = ", |l| l.replacen("weight", "wieght", 1));
    let dir = rules.path().to_str().expect("temp paths are UTF-8");

    let output = suqiu(&["--rules", dir, "check"]);

    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&format!("intents/health.toml:{line}:")), "{err}");
}

// ---- the service's commands ----

#[test]
fn replay_stores_every_readable_line_once_and_names_the_unreadable_ones() {
    let dir = ScratchDir::new("replay");
    let line = |id: u32, sender: &str, text: &str| {
        serde_json::json!({
            "channel": "telegram", "chat": "group-1", "message_id": id.to_string(), "sender": sender, "text": text
        })
        .to_string()
    };
    let export = [
        line(1, "d1", "车坏在半路了，发动机打不着火，需要拖车"),
        "{\"channel\": broken".to_owned(),
        line(2, "d1", "在哪呢，怎么还没人来"),
        line(3, "d2", "师傅们早上好"),
        line(1, "d1", "车坏在半路了，发动机打不着火，需要拖车"),
    ]
    .join("\n");
    std::fs::write(dir.path().join("export.jsonl"), export).unwrap();

    let first = suqiu_in(&dir, &["replay", "export.jsonl"], b"");
    assert!(!first.status.success(), "a line failed, so the command says so");
    assert!(
        stderr(&first).contains("export.jsonl:2: not a message"),
        "{}",
        stderr(&first)
    );
    assert!(
        stdout(&first).contains("5 lines")
            && stdout(&first).contains("1 tickets opened, 1 attached, 1 chatter, 1 already stored, 1 errors"),
        "{}",
        stdout(&first)
    );
    assert!(
        dir.path().join("data/suqiu.db").exists(),
        "the embedded database is in ./data"
    );

    let again = suqiu_in(&dir, &["replay", "export.jsonl"], b"");
    assert!(
        stdout(&again).contains("0 tickets opened, 0 attached, 0 chatter, 4 already stored"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn responder_add_prints_a_token_and_refuses_a_second_with_the_same_name() {
    let dir = ScratchDir::new("responder");
    let added = suqiu_in(&dir, &["responder", "add", "王师傅"], b"");
    assert!(added.status.success(), "{}", stderr(&added));
    let token = stdout(&added).trim().to_owned();
    assert!(token.starts_with("sqr_") && token.len() == 68, "{token}");
    let again = suqiu_in(&dir, &["responder", "add", "王师傅"], b"");
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("responder \"王师傅\" already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn user_add_reads_the_password_from_stdin_and_the_member_can_log_in_with_it() {
    let dir = ScratchDir::new("user");
    let short = suqiu_in(&dir, &["user", "add", "老周", "--role", "admin"], b"secret\n");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 10 characters"), "{}", stderr(&short));
    let unknown = suqiu_in(
        &dir,
        &["user", "add", "老周", "--role", "boss"],
        b"long enough password\n",
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("\"boss\" is not a role"),
        "{}",
        stderr(&unknown)
    );

    // Neither refusal left anything behind: the name is still free.
    let added = suqiu_in(
        &dir,
        &["user", "add", "老周", "--role", "admin"],
        b"long enough password\n",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stderr(&added).contains("admin \"老周\" added"), "{}", stderr(&added));
    let changed = suqiu_in(&dir, &["user", "password", "老周"], b"a new long password\n");
    assert!(changed.status.success(), "{}", stderr(&changed));
    let nobody = suqiu_in(&dir, &["user", "password", "老吴"], b"a new long password\n");
    assert!(!nobody.status.success());
    assert!(
        stderr(&nobody).contains("no team member is called \"老吴\""),
        "{}",
        stderr(&nobody)
    );

    let url = format!("sqlite://{}", dir.path().join("data/suqiu.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = suqiu::store::Db::connect(&url).await.unwrap();
        let login = |password: &'static str| {
            let db = db.clone();
            async move { suqiu::auth::login::check_password(&db, "老周", password).await.unwrap() }
        };
        assert!(
            login("long enough password").await.is_none(),
            "the old password no longer works"
        );
        let me = login("a new long password").await.expect("the new password works");
        assert_eq!(me.role, suqiu::auth::Role::Admin);
    });
}

#[test]
fn a_bad_configuration_file_is_named_and_nothing_starts() {
    let dir = ScratchDir::new("config");
    std::fs::write(dir.path().join("suqiu.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let output = suqiu_in(&dir, &["--config", "suqiu.toml", "migrate"], b"");
    assert!(!output.status.success());
    assert!(stderr(&output).contains("listn"), "{}", stderr(&output));
    assert!(!dir.path().join("data").exists(), "no database was created");
}

#[test]
fn serve_without_a_telegram_token_says_so_once_and_serves() {
    use std::io::{BufRead, BufReader};
    let dir = ScratchDir::new("cli");
    let mut child = Command::new(env!("CARGO_BIN_EXE_suqiu"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SUQIU_LISTEN", "127.0.0.1:0")
        .env_remove("SUQIU_TELEGRAM_TOKEN")
        .env_remove("SUQIU_DATABASE_URL")
        .env_remove("SUQIU_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start suqiu serve");
    let mut log = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("stderr is piped")).lines() {
        let line = line.expect("stderr is text");
        let listening = line.contains("listening on http://");
        log.push(line);
        if listening {
            break;
        }
    }
    child.kill().expect("serve stops");
    let _ = child.wait();
    let said = log.iter().filter(|l| l.contains("running without Telegram")).count();
    assert_eq!(said, 1, "{log:#?}");
}

#[tokio::test]
async fn at_info_level_the_log_names_ids_not_what_drivers_wrote() {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    let dir = ScratchDir::new("cli");
    let key = stdout(&suqiu_in(&dir, &["ingest-key", "add", "bridge"], b""))
        .trim()
        .to_owned();
    let token = stdout(&suqiu_in(&dir, &["responder", "add", "王干事"], b""))
        .trim()
        .to_owned();
    /// The service, stopped when the test ends however it ends.
    struct Serving(std::process::Child);
    impl Drop for Serving {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Serving(
        Command::new(env!("CARGO_BIN_EXE_suqiu"))
            .arg("serve")
            .current_dir(dir.path())
            .env("SUQIU_LISTEN", "127.0.0.1:0")
            .env("SUQIU_LOG", "info")
            .env_remove("SUQIU_TELEGRAM_TOKEN")
            .env_remove("SUQIU_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start suqiu serve"),
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    let (address, lines) = std::sync::mpsc::channel();
    let reader = {
        let log = log.clone();
        let stderr = child.0.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on ".len()..];
                    let _ = address.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                log.lock().unwrap().push(line);
            }
        })
    };
    let base = lines
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("serve says where it listens");

    let http = reqwest::Client::new();
    let phone = "13912345678";
    let words = "车被扣在晋城收费站了，说我证件不全";
    let appeal = serde_json::json!({
        "channel": "telegram", "chat": "group-1", "message_id": "1", "sender": "driver-7",
        "sender_name": "张师傅", "text": format!("{words}，急，电话 {phone}"), "sent_at": "2026-11-02T08:00:00Z",
    });
    let outcome: Value = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&key)
        .json(&appeal)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = outcome["ticket"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the appeal opened no ticket: {outcome}"));
    for (action, body) in [
        ("claim", serde_json::json!({})),
        (
            "reply",
            serde_json::json!({"text": format!("已联系，{phone} 请保持畅通")}),
        ),
    ] {
        let answer = http
            .post(format!("{base}/api/v1/tickets/{ticket}/{action}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{action}: {}", answer.status());
    }
    // A message the intake refuses, written by a driver, is logged by its ids too.
    let refused = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"channel": "telegram", "chat": "", "message_id": "2", "sender": "d", "text": phone}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error());

    drop(child);
    reader.join().unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("INFO"), "the service logged at info level:\n{log}");
    assert!(
        !log.contains(phone) && !log.contains(words) && !log.contains("张师傅"),
        "{log}"
    );
}
