//! `streamctl shell` on the embedded target (the example project's sample data): driven through
//! a real terminal (tmux: typing, Tab completion, rows on the screen, errors at positions in the
//! line typed, history, `exit`), and scripted (statements on a standard input that is not a
//! terminal). The shell on a real broker, with Ctrl-C cancelling a push query:
//! `tests/e2e_explore.rs`.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::copy_dir;
use common::tmux::Tmux;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project")
}

/// The example project in a temporary directory (the shell writes its history under target/).
fn project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&example(), tmp.path(), &["target"]);
    tmp
}

#[test]
fn a_terminal_session_completes_names_shows_rows_and_leaves() {
    let dir = project();
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let Some(t) = Tmux::start(
        "embedded",
        Path::new(env!("CARGO_BIN_EXE_streamctl")),
        &["--project-dir", &dir_arg, "--target", "embedded", "shell"],
        &[("NO_COLOR", "1")],
    ) else {
        return;
    };
    t.wait_for_count("streamctl> ", 1, 60);

    // A model's name completed with Tab, then its records.
    t.type_text("PEEK logon_enr");
    t.keys(&["Tab"]);
    t.wait_until("the completed name", 10, |s| s.contains("streamctl> PEEK logon_enriched"));
    t.type_text(" 3");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 2, 120);
    assert!(screen.contains("PART  OFFSET  TIMESTAMP"), "{screen}");
    assert_eq!(screen.matches("\"cust_full_name\"").count(), 3, "{screen}");

    // A keyword and a column completed too.
    t.type_text("sel");
    t.keys(&["Tab"]);
    t.type_text(" order_mo");
    t.keys(&["Tab"]);
    t.wait_until("the completed keyword and column", 10, |s| s.contains("streamctl> select order_mode"));
    t.type_text(", order_count FROM orders_by_mode WHERE order_mode = 'online'");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 3, 120);
    let online = std::fs::read_to_string(example().join("data/orders.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"ORDER_MODE\": \"online\""))
        .count();
    assert!(online > 0);
    assert!(screen.contains("order_mode  order_count"), "{screen}");
    assert!(screen.contains(&format!("online      {online}")), "{screen}");
    assert!(screen.contains("1 row\n"), "{screen}");

    // A push query: rows as they come, ending at LIMIT.
    t.type_text("SELECT order_id, order_total FROM soe.orders WHERE order_total > 5000 EMIT CHANGES LIMIT 2");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 4, 120);
    assert!(screen.contains("2 rows"), "{screen}");

    // SHOW and DESCRIBE.
    t.type_text("show models");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 5, 30);
    assert!(screen.contains("NAME"), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with("orders_by_mode") && l.contains(" table ")), "{screen}");
    t.type_text("DESCRIBE soe.orders");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 6, 30);
    assert!(screen.contains("soe.orders (source stream)"), "{screen}");
    assert!(screen.contains("topic:       ora-ogg-SOE-ORDERS-json"), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with("order_total") && l.contains("DOUBLE")), "{screen}");

    // An error points into the line typed; the shell goes on.
    t.type_text("SELECT nosuch FROM soe.orders EMIT CHANGES");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 7, 60);
    assert!(screen.contains("<query>:1:8"), "{screen}");
    assert!(screen.contains("unknown column `nosuch`"), "{screen}");
    t.type_text("DESCRIBE orders_by_mod");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 8, 30);
    assert!(screen.contains("<query>:1:10"), "{screen}");
    assert!(screen.contains("did you mean `orders_by_mode`?"), "{screen}");

    // History: the line before comes back with Up.
    t.keys(&["Up"]);
    t.wait_until("the last line recalled", 10, |s| s.trim_end().ends_with("streamctl> DESCRIBE orders_by_mod"));
    t.keys(&["C-u"]);
    t.type_text("exit");
    t.keys(&["Enter"]);
    assert_eq!(t.wait_exit(30), 0, "{}", t.screen());
    let history = std::fs::read_to_string(dir.path().join("target/shell_history")).unwrap();
    assert!(history.contains("show models"), "{history}");
    assert!(history.contains("PEEK logon_enriched 3"), "{history}");
}

#[test]
fn statements_from_a_pipe_run_one_per_line() {
    let dir = project();
    let script = "\
SHOW SOURCES;
describe customers
PEEK soe.orders 2
SELECT order_mode, order_count FROM orders_by_mode WHERE order_mode = 'direct'
SELEKT 1
PEEK orders two
SELECT customer_id FROM soe.orders EMIT CHANGES LIMIT 3
exit
SHOW MODELS
";
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .arg("--project-dir")
        .arg(dir.path())
        .arg("shell")
        .write_stdin(script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Two statements failed: exit 1, after running the others.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("streamctl>"), "no prompt when not on a terminal: {stdout}");

    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("TOPIC"), "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with("soe.customers") && l.contains("table") && l.contains("customer_id")),
        "{stdout}"
    );
    assert!(stdout.contains("soe.customers (source table)"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("customer_id") && l.contains("INT")), "{stdout}");
    let peeked = stdout.lines().filter(|l| l.contains("\"order_id\"")).count();
    assert_eq!(peeked, 2, "{stdout}");
    let direct = std::fs::read_to_string(example().join("data/orders.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"ORDER_MODE\": \"direct\""))
        .count();
    assert!(stdout.contains(&format!("direct      {direct}")), "{stdout}");
    assert!(stderr.contains("unknown statement `SELEKT`"), "{stderr}");
    assert!(stderr.contains("<query>:1:1"), "{stderr}");
    assert!(stderr.contains("`two` is not a number of records"), "{stderr}");
    assert!(stderr.contains("<query>:1:13"), "{stderr}");
    assert!(stderr.contains("3 rows"), "{stderr}");
    // Nothing after `exit` runs.
    assert!(!stdout.contains("READS"), "{stdout}");
}

#[test]
fn the_shell_refuses_json_output() {
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .env("NO_COLOR", "1")
        .arg("--project-dir")
        .arg(example())
        .args(["shell", "--format", "json"])
        .write_stdin("SHOW SOURCES\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("streamctl query"), "{doc}");
}
