//! The PostgreSQL sink against a real PostgreSQL (Debian's packages, started by the test in a
//! temporary directory) and Apache Kafka (started by the test, see `e2e_common::kafka`): the
//! example project with three postgres sinks, a stream model appended (`logon_prime_loyal`),
//! a running aggregate upserted by key (`orders_by_mode`, a table the sink creates) and a
//! windowed aggregate upserted by its composite key (`orders_agg_hourly`, into a table the user
//! created with other column types). A long-running `streamctl run` is killed with SIGKILL
//! while it delivers, more input arrives, a second one resumes: the tables then hold exactly the
//! rows `tests/e2e/expected.py` computes from the sample data (none lost, none twice), read back
//! with psql. Meanwhile one table refuses rows for a while (a check constraint): its sink stalls,
//! logs the refusal and retries, and drops nothing. The password comes from `env_var()` and
//! appears in no log. Last, a tombstone on the table model's topic deletes its row.

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::postgres::{self, Postgres};
use e2e_common::*;
use serde_json::Value;

const PASSWORD: &str = "pg-Secret-7731";

/// The sink tables and the model each holds.
const TABLES: [(&str, &str); 3] = [
    ("prime_logons", "logon_prime_loyal"),
    ("sales.orders_by_mode", "orders_by_mode"),
    ("sales.orders_hourly", "orders_agg_hourly"),
];

/// A copy of the example project whose sinks also go to PostgreSQL on `port`.
fn project(port: u16, batch: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let file = dir.path().join("sinks/downstream.yml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let connect = format!(
        "host: 127.0.0.1\n      port: {port}\n      dbname: postgres\n      user: streamctl\n      password: \
         \"{{{{ env_var('PG_SINK_PASSWORD') }}}}\""
    );
    text.push_str(&format!(
        "
  - name: prime_logons_pg
    from: logon_prime_loyal
    connector:
      type: postgres
      {connect}
      table: prime_logons
      create_table: true
      batch_records: {batch}

  - name: orders_by_mode_pg
    from: orders_by_mode
    connector:
      type: postgres
      url: postgresql://streamctl@127.0.0.1:{port}/postgres
      password: \"{{{{ env_var('PG_SINK_PASSWORD') }}}}\"
      table: sales.orders_by_mode
      create_table: true
      batch_records: {batch}

  - name: orders_hourly_pg
    from: orders_agg_hourly
    connector:
      type: postgres
      {connect}
      table: sales.orders_hourly
      batch_records: {batch}
"
    ));
    std::fs::write(&file, text).unwrap();
    dir
}

/// The schema and the table the user creates (the sink creates the other two).
fn prepare(pg: &Postgres) {
    pg.psql(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders_hourly (order_status integer, order_count bigint, \
         max_order_total numeric, sum_order_total double precision, window_start_ts text, windowstart bigint, \
         windowend bigint, PRIMARY KEY (order_status, windowstart, windowend))",
    );
}

/// Rows of `want` not in `got` and rows of `got` not in `want`, counting repeats.
fn diff(want: &[Value], got: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for w in want {
        match (0..got.len()).find(|i| !used[*i] && same(w, &got[*i])) {
            Some(i) => used[i] = true,
            None => missing.push(w.clone()),
        }
    }
    let extra = got.iter().zip(&used).filter(|(_, u)| !**u).map(|(g, _)| g.clone()).collect();
    (missing, extra)
}

/// What differs between the sink tables and the reference, one line per table; empty when equal.
fn problems(pg: &Postgres, expected: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    TABLES
        .iter()
        .filter_map(|(table, model)| {
            let Some(got) = pg.rows(table) else { return Some(format!("{table}: no such table")) };
            let (missing, extra) = diff(&expected[*model], &got);
            (!missing.is_empty() || !extra.is_empty()).then(|| {
                format!(
                    "{table}: {} rows, {} expected; {} missing (first {:?}), {} not expected or twice (first {:?})",
                    got.len(),
                    expected[*model].len(),
                    missing.len(),
                    missing.first(),
                    extra.len(),
                    extra.first()
                )
            })
        })
        .collect()
}

fn count(pg: &Postgres, table: &str) -> usize {
    pg.rows(table).map_or(0, |r| r.len())
}

#[test]
fn postgres_sinks_hold_exactly_the_models_rows_after_a_sigkill() {
    let Some(kcat) = tools() else { return };
    let Some(bin) = postgres::available() else { return };
    let pg = Postgres::start(&bin, PASSWORD);
    prepare(&pg);
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    // Small batches: many transactions, so the kill lands among them.
    let project = project(pg.port, 5);
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..0.5);
    let logs = tempfile::tempdir().unwrap();
    let worker = |name: &str| {
        let log = std::fs::File::create(logs.path().join(name)).unwrap();
        Killed(
            streamctl()
                .args(["run", "--project-dir"])
                .arg(project.path())
                .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--checkpoint-interval-ms", "500"])
                .env("PG_SINK_PASSWORD", PASSWORD)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();

    let mut first = worker("first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&pg, "prime_logons") == 0 {
        assert!(Instant::now() < deadline, "no row in prime_logons within 120 s\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL while delivering: a transaction may be open, none is finished by hand.
    first.0.kill().unwrap();
    let _ = first.0.wait();
    // Counted once the counts stand still: a COMMIT the server had when the worker died still
    // completes.
    let at_kill = once_still(|| TABLES.iter().map(|(t, _)| count(&pg, t)).collect::<Vec<usize>>());

    // The table refuses new rows for a while (a constraint they break, not checked on the rows it
    // holds): the sink must stall and retry, not drop them.
    pg.psql("ALTER TABLE sales.orders_hourly ADD CONSTRAINT hold CHECK (windowstart < 0) NOT VALID");
    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let mut second = worker("second.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log("second.log").contains("violates check constraint \"hold\"") {
        assert!(Instant::now() < deadline, "the refused batch is not logged within 120 s\n{}", log("second.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let while_refused = count(&pg, "sales.orders_hourly");
    assert_eq!(while_refused, at_kill[2], "rows arrived past the constraint");
    pg.psql("ALTER TABLE sales.orders_hourly DROP CONSTRAINT hold");
    let expected = expected();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let p = problems(&pg, &expected);
        if p.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink tables differ from the reference after 180 s:\n{}\n--- first (killed)\n{}\n--- second\n{}",
            p.join("\n"),
            log("first.log"),
            log("second.log")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // SIGTERM: the sinks write what they hold and the process exits 0.
    assert!(Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = second.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", log("second.log"));
    let p = problems(&pg, &expected);
    assert!(p.is_empty(), "after the stop: {}", p.join("\n"));
    // The offsets of every sink are in Postgres, next to the rows.
    let offsets = pg.psql(
        "SELECT sink || ' ' || topic || ' ' || partition || ' ' || next_offset FROM streamctl_sink_offsets ORDER BY 1",
    );
    assert!(offsets.contains("soe_demo.prime_logons_pg soe.logon-prime-loyal 0 "), "{offsets}");
    let sales = pg.psql("SELECT sink FROM sales.streamctl_sink_offsets ORDER BY 1");
    assert_eq!(sales.lines().collect::<Vec<_>>(), ["soe_demo.orders_by_mode_pg", "soe_demo.orders_hourly_pg"]);
    for n in ["first.log", "second.log"] {
        assert!(!log(n).contains(PASSWORD), "{n} shows the password");
    }

    // A tombstone on the table model's topic deletes its row (and only it): written here with
    // kcat, delivered by a bounded run.
    let modes = |pg: &Postgres| {
        let mut m: Vec<String> =
            pg.psql("SELECT order_mode FROM sales.orders_by_mode").lines().map(String::from).collect();
        m.sort();
        m
    };
    assert_eq!(modes(&pg), ["direct", "online"]);
    let mut kcat_p = Command::new(&kcat)
        .args(["-P", "-b", &bootstrap, "-t", "soe.orders-by-mode", "-K", "\t", "-Z"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(kcat_p.stdin.as_mut().unwrap(), "\"direct\"\t").unwrap();
    }
    assert!(kcat_p.wait().unwrap().success());
    let out = streamctl()
        .args(["run", "--until-caught-up", "--select", "orders_by_mode", "--project-dir"])
        .arg(project.path())
        .args(["--target", "local", "--bootstrap-servers", &bootstrap])
        .env("PG_SINK_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(modes(&pg), ["online"], "{}", String::from_utf8_lossy(&out.stdout));
    eprintln!(
        "rows at the kill: {at_kill:?}; after the restart: {:?}; offsets:\n{offsets}restart log:\n{}",
        TABLES.iter().map(|(t, _)| count(&pg, t)).collect::<Vec<_>>(),
        log("second.log").lines().filter(|l| l.contains("sink")).collect::<Vec<_>>().join("\n")
    );
}

/// On the embedded target the run delivers after the jobs have caught up; a second run starts
/// the tables over (the in-process broker starts empty) instead of doubling the stream's rows.
#[test]
fn embedded_runs_fill_the_postgres_tables_and_a_rerun_replaces_them() {
    let Some(bin) = postgres::available() else { return };
    let pg = Postgres::start(&bin, PASSWORD);
    prepare(&pg);
    let project = project(pg.port, 50);
    let expected = expected();
    for round in 1..=2 {
        let out = streamctl()
            .args(["run", "--project-dir"])
            .arg(project.path())
            .env("PG_SINK_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "run {round}:\n{stdout}\n{stderr}");
        let p = problems(&pg, &expected);
        assert!(p.is_empty(), "run {round}: {}\n{stderr}", p.join("\n"));
        let shown = format!(
            "sink prime_logons_pg (logon_prime_loyal → postgresql://streamctl@127.0.0.1:{}/postgres table \
             \"prime_logons\"): {} records written",
            pg.port,
            expected["logon_prime_loyal"].len()
        );
        assert!(stdout.contains(&shown), "run {round} does not say `{shown}`:\n{stdout}");
        assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD), "run {round} shows the password");
        if round == 2 {
            assert!(stderr.contains("emptied \"prime_logons\""), "{stderr}");
            let sinks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("sink ")).collect();
            eprintln!(
                "{}\n{}",
                sinks.join("\n"),
                stderr.lines().filter(|l| l.contains("emptied")).collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Without a server: a password written in the file and a url with a password are errors at
/// their place.
#[test]
fn validate_rejects_passwords_written_in_sink_files() {
    let project = project(5432, 10);
    let file = project.path().join("sinks/downstream.yml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "password: \"{{ env_var('PG_SINK_PASSWORD') }}\"\n      table: sales.orders_by_mode",
        "password: hunter2\n      table: sales.orders_by_mode",
    );
    let text = text.replacen(
        "host: 127.0.0.1\n      port: 5432\n      dbname: postgres\n      user: streamctl",
        "url: postgresql://streamctl:hunter3@127.0.0.1/postgres",
        1,
    );
    std::fs::write(&file, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let out = streamctl().args(["validate", "--project-dir"]).arg(project.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = |needle: &str, column: usize| format!("sinks/downstream.yml:{}:{column}", line_of(needle));
    assert!(stderr.contains(&at("password: hunter2", 17)), "{stderr}");
    assert!(stderr.contains("a password is given only through env_var()"), "{stderr}");
    assert!(stderr.contains(&at("hunter3", 12)), "{stderr}");
    assert!(stderr.contains("the url holds a password"), "{stderr}");
    assert!(Path::new(&file).exists());
}

/// `plan` ends with the sinks `run` delivers.
#[test]
fn plan_lists_the_sinks_run_delivers() {
    let project = project(5432, 10);
    let out = streamctl().args(["plan", "--project-dir"]).arg(project.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let listed = stdout.split("Sinks delivered by `streamctl run`:\n").nth(1);
    assert_eq!(
        listed.map(|l| l.lines().map(str::trim).collect::<Vec<_>>()),
        Some(vec![
            "prime_logons_out    logon_prime_loyal → topic soe.prime-logons.v1",
            "prime_logons_files  logon_prime_loyal → files in target/sinks/prime_logons",
            "prime_logons_pg     logon_prime_loyal → PostgreSQL table prime_logons",
            "orders_by_mode_pg   orders_by_mode → PostgreSQL table sales.orders_by_mode",
            "orders_hourly_pg    orders_agg_hourly → PostgreSQL table sales.orders_hourly",
        ]),
        "{stdout}"
    );
}

/// The example with the same transforms on its file sink and on a postgres sink: a masked
/// email, a dropped name, a renamed column.
fn project_with_transforms(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let transforms = "
      transforms:
        - type: mask_field
          fields: [cust_email]
        - type: drop_field
          fields: [cust_full_name]
        - type: rename_field
          renames: {customer_since_yrs: loyal_years}";
    let file = dir.path().join("sinks/downstream.yml");
    let text = std::fs::read_to_string(&file).unwrap().replace("format: jsonl", &format!("format: jsonl{transforms}"));
    let text = format!(
        "{text}
  - name: prime_logons_masked
    from: logon_prime_loyal
    connector:
      type: postgres
      url: postgresql://streamctl@127.0.0.1:{port}/postgres
      password: \"{{{{ env_var('PG_SINK_PASSWORD') }}}}\"
      table: prime_logons_masked
      create_table: true{transforms}
"
    );
    std::fs::write(&file, text).unwrap();
    dir
}

/// The reference rows after the transforms, computed here from expected.py's rows.
fn transformed(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.as_object().unwrap().clone();
            if r["cust_email"].is_string() {
                r.insert("cust_email".into(), Value::from("****"));
            }
            r.remove("cust_full_name").unwrap();
            let years = r.remove("customer_since_yrs").unwrap();
            r.insert("loyal_years".into(), years);
            Value::Object(r)
        })
        .collect()
}

/// An embedded run delivers the rows after the sink's transforms, to the files and to a table
/// the sink creates with the transformed columns.
#[test]
fn embedded_run_applies_the_sinks_transforms_to_files_and_tables() {
    let Some(bin) = postgres::available() else { return };
    let pg = Postgres::start(&bin, PASSWORD);
    let project = project_with_transforms(pg.port);
    let out = streamctl()
        .args(["run", "--project-dir"])
        .arg(project.path())
        .env("PG_SINK_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let want = transformed(&expected()["logon_prime_loyal"]);
    assert!(want.iter().any(|r| r["cust_email"] == "****"), "the sample has emails to mask");

    let table = pg.rows("prime_logons_masked").expect("the sink creates its table");
    let (missing, extra) = diff(&want, &table);
    assert!(missing.is_empty() && extra.is_empty(), "table: missing {missing:?}\nnot expected {extra:?}");
    let columns = pg.psql(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
         WHERE table_name = 'prime_logons_masked'",
    );
    assert_eq!(
        columns.trim(),
        "logon_id,logon_date,customer_id,cust_email,customer_class,loyal_years",
        "the table has the columns after the transforms"
    );

    let mut files = Vec::new();
    for e in std::fs::read_dir(project.path().join("target/sinks/prime_logons")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".jsonl") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            files.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    let (missing, extra) = diff(&want, &files);
    assert!(missing.is_empty() && extra.is_empty(), "files: missing {missing:?}\nnot expected {extra:?}");
    eprintln!("{} rows, first delivered to the table: {}", table.len(), table[0]);
}

/// Without a server: an unknown transform type (the file does not load) and, once it is fixed,
/// fields the model's rows do not have at that point are errors at their place.
#[test]
fn validate_rejects_unknown_transforms_and_fields() {
    let project = project_with_transforms(5432);
    let file = project.path().join("sinks/downstream.yml");
    let original = std::fs::read_to_string(&file).unwrap();
    let validate = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = streamctl().args(["validate", "--project-dir"]).arg(project.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    // Where the `nth` line holding `needle` is, at `column`.
    let at = |text: &str, needle: &str, nth: usize, column: usize| {
        let line = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(nth).unwrap().0 + 1;
        format!("sinks/downstream.yml:{line}:{column}")
    };
    let text = original.replacen("- type: mask_field", "- type: mask_fields", 1);
    let stderr = validate(&text);
    assert!(stderr.contains(&at(&text, "type: mask_fields", 0, 17)), "{stderr}");
    assert!(stderr.contains("unknown transform type `mask_fields`"), "{stderr}");
    assert!(stderr.contains("did you mean `mask_field`?"), "{stderr}");

    // The postgres sink's: a typo, and a rename of a column an earlier transform dropped.
    let text = original.replacen("fields: [cust_email]", "fields: [cust_emial]", 2).replacen(
        "renames: {customer_since_yrs: loyal_years}",
        "renames: {cust_full_name: name}",
        2,
    );
    let stderr = validate(&text);
    assert!(stderr.contains(&at(&text, "fields: [cust_emial]", 1, 20)), "{stderr}");
    assert!(stderr.contains("mask_field names `cust_emial`, not a column of model"), "{stderr}");
    assert!(stderr.contains(&at(&text, "renames: {cust_full_name", 1, 21)), "{stderr}");
    assert!(stderr.contains("rename_field renames `cust_full_name`, not a column of model"), "{stderr}");

    // A table model's key masked, and a rename onto a column the row has.
    let text = format!(
        "{original}
  - name: orders_by_mode_files
    from: orders_by_mode
    connector:
      type: file
      path: target/sinks/orders_by_mode
      transforms:
        - type: mask_field
          fields: [order_mode]
        - type: rename_field
          renames: {{total: order_count}}
"
    );
    let stderr = validate(&text);
    assert!(stderr.contains(&at(&text, "fields: [order_mode]", 0, 20)), "{stderr}");
    assert!(stderr.contains("mask_field of `order_mode`, a key column of table model"), "{stderr}");
    assert!(stderr.contains(&at(&text, "renames: {total: order_count}", 0, 28)), "{stderr}");
    assert!(stderr.contains("rename_field renames `total` to `order_count`"), "{stderr}");
}

fn dead_letters(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(BTreeMap<String, String>, String)> {
    kcat_records(kcat, bootstrap, topic).into_iter().map(|r| (r.headers, r.payload)).collect()
}

/// A sink with `on_error: dead_letter` on real Kafka and PostgreSQL: rows the table refuses for
/// their own sake (a check constraint) go to the dead-letter topic with the reason in headers,
/// every other row is in the table, none twice; a table that is away for a while (not the rows'
/// fault) still stalls the sink, and nothing of that goes to the dead-letter topic. Then a value
/// the model's format cannot read is copied aside by the postgres, file and kafka sinks.
#[test]
fn rows_a_table_refuses_go_to_the_dead_letter_topic_and_a_missing_table_stalls() {
    let Some(kcat) = tools() else { return };
    let Some(bin) = postgres::available() else { return };
    let pg = Postgres::start(&bin, PASSWORD);
    pg.psql(
        "CREATE TABLE prime_checked (logon_id bigint, logon_date text, customer_id bigint, cust_full_name text, \
         cust_email text, customer_class text, customer_since_yrs double precision, CHECK (customer_id % 2 = 0))",
    );
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let file = dir.path().join("sinks/downstream.yml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "      path: target/sinks/prime_logons\n      format: jsonl\n",
        "      path: target/sinks/prime_logons\n      format: jsonl\n    on_error: dead_letter\n",
    );
    // The example's kafka sink reads the same topic: it copies the bad record aside too.
    let text = text.replace(
        "      topic: soe.prime-logons.v1\n      format: json\n",
        "      topic: soe.prime-logons.v1\n      format: json\n    on_error: dead_letter\n",
    );
    assert_eq!(text.matches("on_error: dead_letter").count(), 2, "the example's sinks changed");
    let text = format!(
        "{text}
  - name: prime_checked
    from: logon_prime_loyal
    on_error: dead_letter
    dead_letter_topic: prime-checked-refused
    connector:
      type: postgres
      url: postgresql://streamctl@127.0.0.1:{}/postgres
      password: \"{{{{ env_var('PG_SINK_PASSWORD') }}}}\"
      table: prime_checked
      batch_records: 5
",
        pg.port
    );
    std::fs::write(&file, text).unwrap();
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..0.5);
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("run.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let mut worker = Killed(
        streamctl()
            .args(["run", "--project-dir"])
            .arg(dir.path())
            .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--checkpoint-interval-ms", "500"])
            .env("PG_SINK_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&pg, "prime_checked") == 0 {
        assert!(Instant::now() < deadline, "no row in prime_checked within 120 s\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The table goes away for a while: the database's state, not the rows'.
    pg.psql("ALTER TABLE prime_checked RENAME TO prime_checked_away");
    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log().contains("relation \"prime_checked\" does not exist")
        && !log().contains("prime_checked\" does not exist")
    {
        assert!(Instant::now() < deadline, "the missing table is not logged within 120 s\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log().contains("retrying in"), "{}", log());
    pg.psql("ALTER TABLE prime_checked_away RENAME TO prime_checked");

    let all = expected()["logon_prime_loyal"].clone();
    let (even, odd): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|r| r["customer_id"].as_i64().unwrap() % 2 == 0);
    assert!(!even.is_empty() && !odd.is_empty(), "the sample has both");
    let deadline = Instant::now() + Duration::from_secs(180);
    let refused = loop {
        let rows = pg.rows("prime_checked").unwrap_or_default();
        let refused = dead_letters(&kcat, &bootstrap, "prime-checked-refused");
        let (missing, extra) = diff(&even, &rows);
        if missing.is_empty() && extra.is_empty() && refused.len() >= odd.len() {
            break refused;
        }
        assert!(
            Instant::now() < deadline,
            "after 180 s: table missing {} (first {:?}), not expected {} (first {:?}); {} dead letters, {} expected\n{}",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first(),
            refused.len(),
            odd.len(),
            log()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let values: Vec<Value> = refused.iter().map(|(_, v)| serde_json::from_str(v).unwrap()).collect();
    let lower =
        |v: &Value| Value::Object(v.as_object().unwrap().iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect());
    let values: Vec<Value> = values.iter().map(lower).collect();
    let (missing, extra) = diff(&odd, &values);
    assert!(missing.is_empty() && extra.is_empty(), "dead letters: missing {missing:?}\nnot expected {extra:?}");
    for (h, _) in &refused {
        assert!(h["streamctl.error"].contains("violates check constraint"), "{h:?}");
        assert_eq!(h["streamctl.sink"], "prime_checked");
        assert_eq!(h["streamctl.job"], "logon_prime_loyal");
        assert_eq!(h["streamctl.source.topic"], "soe.logon-prime-loyal");
        assert!(h["streamctl.source.offset"].parse::<i64>().is_ok(), "{h:?}");
    }
    assert!(Command::new("kill").args(["-TERM", &worker.0.id().to_string()]).status().unwrap().success());
    let _ = worker.0.wait();

    // A record of the model's topic that is not JSON: both sinks copy it aside and go on.
    kcat_produce(&kcat, &bootstrap, "soe.logon-prime-loyal", &["not json".to_string()], false);
    let out = streamctl()
        .args(["run", "--until-caught-up", "--project-dir"])
        .arg(dir.path())
        .args(["--target", "local", "--bootstrap-servers", &bootstrap])
        .env("PG_SINK_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 record to the dead-letter topic"), "{stdout}");
    let bad = |topic: &str| {
        dead_letters(&kcat, &bootstrap, topic)
            .into_iter()
            .filter(|(h, v)| v == "not json" && h["streamctl.error"] == "not a value of the model's output format")
            .count()
    };
    assert_eq!(bad("prime-checked-refused"), 1);
    assert_eq!(bad("soe.logon-prime-loyal.prime_logons_files.dlq"), 1, "the file sink's default dead-letter topic");
    assert_eq!(bad("soe.logon-prime-loyal.prime_logons_out.dlq"), 1, "the kafka sink's");
    eprintln!("{} rows in the table, {} dead letters; first: {:?}", even.len(), refused.len(), refused[0].0);
}

/// A `route` on a postgres sink: a table model whose route field changes for a key (a customer's
/// tier goes from basic to gold as logons add up) holds each key in exactly the table its latest
/// row routes to, equal to an unrouted sink of the same model; a second embedded run empties the
/// routed tables it knows from the routes table and writes them anew.
#[test]
fn a_routed_postgres_sink_keeps_each_key_in_the_table_its_latest_row_routes_to() {
    let Some(bin) = postgres::available() else { return };
    let pg = Postgres::start(&bin, PASSWORD);
    pg.psql("CREATE SCHEMA tiers");
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    std::fs::write(
        dir.path().join("models/customer_tiers.sql"),
        "{{ config(materialized='table', topic='soe.customer-tiers', partitions=1, key=['CUSTOMER_ID']) }}\n\
         SELECT CUSTOMER_ID, CASE WHEN COUNT(*) >= 8 THEN 'gold' ELSE 'basic' END AS TIER, COUNT(*) AS LOGONS\n\
         FROM {{ source('soe', 'logon') }}\nGROUP BY CUSTOMER_ID\n",
    )
    .unwrap();
    let url = format!("postgresql://streamctl@127.0.0.1:{}/postgres", pg.port);
    let sink = |name: &str, table: &str, route: &str| {
        format!(
            "\n  - name: {name}\n    from: customer_tiers\n    connector:\n      type: postgres\n      url: {url}\n      \
             password: \"{{{{ env_var('PG_SINK_PASSWORD') }}}}\"\n      table: {table}\n      create_table: true\n      \
             batch_records: 5\n{route}"
        )
    };
    let file = dir.path().join("sinks/downstream.yml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&sink("tiers_all", "tiers.customers", ""));
    text.push_str(&sink(
        "tiers_routed",
        "tiers.customers",
        "      transforms:\n        - type: route\n          to: \"customers_{{tier}}\"\n",
    ));
    std::fs::write(&file, text).unwrap();

    for round in 1..=2 {
        let out = streamctl()
            .args(["run", "--max-batch-records", "10", "--project-dir"])
            .arg(dir.path())
            .env("PG_SINK_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "run {round}:\n{stdout}\n{stderr}");
        let all = pg.rows("tiers.customers").expect("the unrouted table");
        let (gold, basic) = (pg.rows("tiers.customers_gold").unwrap(), pg.rows("tiers.customers_basic").unwrap());
        assert!(all.len() > 20, "run {round}: {} customers", all.len());
        let id = |r: &Value| r["customer_id"].as_i64().unwrap();
        for (table, rows, tier) in [("customers_gold", &gold, "gold"), ("customers_basic", &basic, "basic")] {
            assert!(!rows.is_empty(), "run {round}: {table} is empty");
            let wrong: Vec<&Value> = rows.iter().filter(|r| r["tier"] != tier).collect();
            assert!(wrong.is_empty(), "run {round}: rows of {table} that route elsewhere: {wrong:?}");
        }
        let both: Vec<i64> = gold.iter().map(id).filter(|g| basic.iter().any(|b| id(b) == *g)).collect();
        assert!(both.is_empty(), "run {round}: customers in both tables (a moved key was not deleted): {both:?}");
        let routed: Vec<Value> = gold.iter().chain(&basic).cloned().collect();
        let (missing, extra) = diff(&all, &routed);
        assert!(missing.is_empty() && extra.is_empty(), "run {round}: missing {missing:?}, extra {extra:?}");
        let tiers_out: u64 = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("[customer_tiers] caught up: ")?.split(" in, ").nth(1)?.split(' ').next()?.parse().ok()
            })
            .expect("customer_tiers caught up");
        // Small micro-batches: a customer's row changes many times, its tier at least once.
        assert!(tiers_out as usize > 2 * all.len(), "run {round}: {tiers_out} rows for {} customers", all.len());
        if round == 1 {
            assert!(stderr.contains("writes rows routed to \"tiers\".\"customers_gold\""), "{stderr}");
        } else {
            assert!(stderr.contains("emptied the routed tables"), "{stderr}");
        }
    }
    let routes = pg.rows("tiers.streamctl_sink_routes").unwrap();
    assert_eq!(routes.len(), 2, "{routes:?}");
}
