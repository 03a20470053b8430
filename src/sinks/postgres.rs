//! The PostgreSQL sink: a model's rows in a table. A table model's rows are upserted by its key
//! (`INSERT ... ON CONFLICT (key) DO UPDATE`) and its tombstones delete; a stream model's rows
//! are appended. Rows go in batches, one statement per batch (the rows as one JSON array,
//! expanded by `jsonb_to_recordset` into the table's column types).
//!
//! Exactly the model's rows after a crash: each batch is written in one transaction together
//! with the Kafka offsets it ends at (table [`OFFSETS_TABLE`]), and a sink resumes from the
//! offsets Postgres holds, so a batch is either in the table with its offsets or not at all.
//! The offsets row is moved only from the value this process read (a compare-and-set), and one
//! process at a time delivers a sink (a session advisory lock, released when its connection
//! ends, a SIGKILL included): a second writer cannot double rows either.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use super::{skip_transaction_markers, transform, DeadLetters, SinkOutcome, SinkRun};
use crate::compile::{CompiledModel, CompiledProject};
use crate::jinja::Jinja;
use crate::project::config::{RelationKind, SinkConnector, SinkTransform};
use crate::project::SinkDecl;
use crate::runtime::codec::{InputCodec, Record};
use crate::runtime::worker::RunControl;

/// The table holding, per sink and partition, the offset after the last row written.
pub const OFFSETS_TABLE: &str = "streamctl_sink_offsets";
const DEFAULT_BATCH_RECORDS: usize = 1000;
/// How long a record waits in a batch that is not full.
const LINGER: Duration = Duration::from_millis(200);

/// Where a sink connects, password included; its Debug form shows no password.
pub struct Connection {
    config: tokio_postgres::Config,
}

impl Connection {
    /// `postgresql://user@host:port/dbname`, without the password.
    pub fn shown(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
        format!("postgresql://{user}{host}:{port}/{}", self.config.get_dbname().unwrap_or_default())
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("to", &self.shown()).field("password", &"<redacted>").finish()
    }
}

/// The connection settings of a postgres sink, with `env_var()` rendered.
pub fn connection(cp: &CompiledProject, sink: &SinkDecl) -> Result<Connection, String> {
    let SinkConnector::Postgres { url, host, port, dbname, user, password, .. } = &sink.sink.connector else {
        return Err("not a postgres sink".into());
    };
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let render = |field: &str, v: &str| {
        jinja
            .render_str(v)
            .map_err(|e| format!("connector.{field}: {}", e.detail().unwrap_or("cannot render the value")))
    };
    let mut config = match url {
        Some(u) => render("url", u)?
            .parse::<tokio_postgres::Config>()
            .map_err(|e| format!("connector.url is not a PostgreSQL connection string: {e}"))?,
        None => tokio_postgres::Config::new(),
    };
    if let Some(h) = host {
        config.host(&render("host", h)?);
    }
    if let Some(p) = port {
        config.port(*p);
    }
    if let Some(d) = dbname {
        config.dbname(&render("dbname", d)?);
    }
    if let Some(u) = user {
        config.user(&render("user", u)?);
    }
    if let Some(p) = password {
        config.password(render("password", p)?);
    }
    if config.get_hosts().is_empty() {
        return Err("no host to connect to (set `url` or `host`)".into());
    }
    config.application_name(format!("streamctl sink {}", sink.sink.name));
    config.connect_timeout(Duration::from_secs(10));
    Ok(Connection { config })
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `table` setting (`name` or `schema.name`, folded to lower case like unquoted SQL names)
/// as a quoted name, and the offsets table beside it (same schema).
fn table_names(table: &str) -> (String, String) {
    let parts: Vec<String> = table.split('.').map(|p| p.to_lowercase()).collect();
    let quoted = parts.iter().map(|p| ident(p)).collect::<Vec<_>>().join(".");
    let offsets = match parts.as_slice() {
        [schema, _] => format!("{}.{}", ident(schema), ident(OFFSETS_TABLE)),
        _ => ident(OFFSETS_TABLE),
    };
    (quoted, offsets)
}

/// The PostgreSQL type a model column gets in a table the sink creates.
pub fn pg_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => format!("numeric({p},{s})"),
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..) => "jsonb".into(),
        _ => "text".into(),
    }
}

/// The table's columns: the model's after the sink's transforms (dropped ones left out,
/// renamed ones under their new name, cast or converted ones of their new type), with their
/// PostgreSQL types.
fn columns_after(model: &CompiledModel, transforms: &[SinkTransform]) -> Vec<(String, String)> {
    let columns = model.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    transform::columns_after(transforms, columns).into_iter().map(|(n, t)| (n, pg_type(&t))).collect()
}

/// `CREATE TABLE IF NOT EXISTS` with the model's columns; `key` becomes the primary key.
fn create_table_sql(table: &str, columns: &[(String, String)], key: &[String]) -> String {
    let mut defs: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}{}", ident(n), if key.contains(n) { " NOT NULL" } else { "" }))
        .collect();
    if !key.is_empty() {
        defs.push(format!("PRIMARY KEY ({})", key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", defs.join(", "))
}

fn offsets_table_sql(offsets: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (sink text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \
         next_offset bigint NOT NULL, PRIMARY KEY (sink, topic, \"partition\"))"
    )
}

/// The rows of parameter `$1` (a JSON array of objects) as a relation `r` with these columns.
fn rows_of_param(columns: &[(String, String)]) -> String {
    let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{} {t}", ident(n))).collect();
    format!("jsonb_to_recordset($1::text::jsonb) AS r({})", defs.join(", "))
}

/// The statement that writes a batch: an upsert by `key`, or (no key) an append.
fn write_sql(table: &str, columns: &[(String, String)], key: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|(n, _)| ident(n)).collect();
    let from_r: Vec<String> = names.iter().map(|n| format!("r.{n}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {}",
        names.join(", "),
        from_r.join(", "),
        rows_of_param(columns)
    );
    if key.is_empty() {
        return insert;
    }
    let keys: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let sets: Vec<String> = columns
        .iter()
        .filter(|(n, _)| !key.contains(n))
        .map(|(n, _)| format!("{0} = EXCLUDED.{0}", ident(n)))
        .collect();
    let action = if sets.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
    format!("{insert} ON CONFLICT ({}) DO {action}", keys.join(", "))
}

/// The statement that deletes the rows whose keys are in `$1`.
fn delete_sql(table: &str, key_columns: &[(String, String)]) -> String {
    let matches: Vec<String> = key_columns.iter().map(|(n, _)| format!("t.{0} = r.{0}", ident(n))).collect();
    format!("DELETE FROM {table} AS t USING {} WHERE {}", rows_of_param(key_columns), matches.join(" AND "))
}

/// A record of the model's topic as a change of the sink table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Map<String, Value>),
    /// A tombstone: the key columns of the row to delete.
    Delete(Map<String, Value>),
}

/// A tombstone's key (a bare JSON value for one key column, an object for several) as the key
/// columns.
fn tombstone_key(key: Option<&[u8]>, columns: &[String]) -> Result<Map<String, Value>, String> {
    let key = key.ok_or("a tombstone without a key")?;
    let v: Value = serde_json::from_slice(key).map_err(|e| format!("a tombstone's key is not JSON: {e}"))?;
    let mut out = Map::new();
    match (&v, columns) {
        (Value::Object(m), cols) => {
            for c in cols {
                let found = m.iter().find(|(k, _)| k.eq_ignore_ascii_case(c)).map(|(_, v)| v.clone());
                out.insert(c.clone(), found.ok_or_else(|| format!("a tombstone's key has no `{c}`"))?);
            }
        }
        (scalar, [c]) => {
            out.insert(c.clone(), scalar.clone());
        }
        _ => return Err("a tombstone's key does not match the key columns".into()),
    }
    Ok(out)
}

/// The changes a batch leaves to write, by index, in order: for a table, the last change of each
/// key (an upsert or a delete: one statement cannot touch a row twice); for a stream, every row
/// (tombstones, which streams do not have, are skipped).
pub fn kept(key: &[String], changes: &[&Change]) -> Vec<usize> {
    if key.is_empty() {
        return (0..changes.len()).filter(|i| matches!(changes[*i], Change::Upsert(_))).collect();
    }
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        let row = match c {
            Change::Upsert(r) | Change::Delete(r) => r,
        };
        let k: Vec<&Value> = key.iter().map(|k| row.get(k).unwrap_or(&Value::Null)).collect();
        last.insert(serde_json::to_string(&k).unwrap_or_default(), i);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    kept
}

/// A Postgres error with the server's message and detail.
fn pg_err(what: &str, e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{what}: {} {}{detail}", db.severity(), db.message())
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{what}: {e}: {cause}"),
            None => format!("{what}: {e}"),
        },
    }
}

/// Whether the server refused a statement for the rows it wrote: a data exception (SQLSTATE class
/// 22: a value out of range, a string too long, a bad date) or an integrity constraint (class 23:
/// a check, not-null, unique or foreign key). Anything else (no connection, no privilege, no
/// table, a deadlock, a full disk) is the database's state, not the rows'.
fn refused_for_the_rows(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// The sink table as the sink writes it.
struct Target {
    table: String,
    offsets: String,
    write: String,
    /// `None` for a stream.
    delete: Option<String>,
    key: Vec<String>,
}

/// Creates what is missing (the offsets table; the sink table with `create_table`), then checks
/// that the table has the model's columns and, for a table model, a unique key on its key.
async fn prepare(
    client: &mut Client,
    model: &CompiledModel,
    table_setting: &str,
    create: bool,
    transforms: &[SinkTransform],
) -> Result<Target, String> {
    let (table, offsets) = table_names(table_setting);
    let key_of_model: &[String] = if model.kind == RelationKind::Table { &model.key } else { &[] };
    let key = key_of_model
        .iter()
        .map(|k| {
            transform::column_after(transforms, k)
                .ok_or_else(|| format!("the sink's transforms drop `{k}`, a key column of model `{}`", model.name))
        })
        .collect::<Result<Vec<String>, String>>()?;
    let columns = columns_after(model, transforms);
    let tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    // Two sinks creating tables at once would collide in the catalog.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id("streamctl ddl")])
        .await
        .map_err(|e| pg_err("locking", &e))?;
    tx.batch_execute(&offsets_table_sql(&offsets)).await.map_err(|e| pg_err(&format!("creating {offsets}"), &e))?;
    if create {
        tx.batch_execute(&create_table_sql(&table, &columns, &key))
            .await
            .map_err(|e| pg_err(&format!("creating {table}"), &e))?;
    }
    tx.commit().await.map_err(|e| pg_err("creating the tables", &e))?;

    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1::text)::text", &[&table])
        .await
        .map_err(|e| pg_err(&format!("looking up {table}"), &e))?
        .get(0);
    if exists.is_none() {
        return Err(format!("table {table} does not exist: create it, or set `create_table: true` on the sink"));
    }
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await
        .map_err(|e| pg_err(&format!("reading the columns of {table}"), &e))?;
    let in_table: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing: Vec<&str> =
        columns.iter().filter(|(n, _)| !in_table.contains_key(n)).map(|(n, _)| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(format!("table {table} has no column {} of model `{}`", missing.join(", "), model.name));
    }
    // The rows are read into the table's own column types.
    let typed: Vec<(String, String)> = columns.iter().map(|(n, _)| (n.clone(), in_table[n].clone())).collect();
    if !key.is_empty() {
        let uniques = client
            .query(
                "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1::text) AND i.indisunique GROUP BY i.indexrelid",
                &[&table],
            )
            .await
            .map_err(|e| pg_err(&format!("reading the unique keys of {table}"), &e))?;
        let mut want = key.clone();
        want.sort();
        let found = uniques.iter().any(|r| {
            let mut cols: Vec<String> = r.get(0);
            cols.sort();
            cols == want
        });
        if !found {
            return Err(format!(
                "table {table} has no primary key or unique constraint on ({}), the key of model `{}` that the \
                 sink upserts by",
                key.join(", "),
                model.name
            ));
        }
    }
    let key_columns: Vec<(String, String)> = typed.iter().filter(|(n, _)| key.contains(n)).cloned().collect();
    Ok(Target {
        write: write_sql(&table, &typed, &key),
        delete: (!key.is_empty()).then(|| delete_sql(&table, &key_columns)),
        table,
        offsets,
        key,
    })
}

/// A stable advisory lock id for a name.
fn lock_id(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// One record of a batch: what it changes in the table, `None` when it was dead-lettered as read
/// (its offset still moves with the batch).
pub(crate) type BatchEntry = (Record, Option<Change>);

/// Writes one batch and the offsets it ends at in one transaction. `stored` holds the offsets
/// this process last read or wrote; a row moved by anyone else fails the batch. With a
/// dead-letter topic, a batch the server refuses for its rows is written again row by row (each
/// in a savepoint): the rows it refuses go to the dead-letter topic, flushed before the commit.
async fn write_batch(
    client: &mut Client,
    target: &Target,
    sink_id: &str,
    topic: &str,
    batch: Vec<BatchEntry>,
    stored: &mut BTreeMap<i32, i64>,
    dead_letters: Option<&mut DeadLetters>,
) -> Result<(), String> {
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (r, _) in &batch {
        let e = ends.entry(r.partition).or_insert(r.offset + 1);
        *e = (*e).max(r.offset + 1);
    }
    let rows = batch.len();
    let changes: Vec<(&Record, &Change)> = batch.iter().filter_map(|(r, c)| c.as_ref().map(|c| (r, c))).collect();
    let kept: Vec<(&Record, &Change)> = kept(&target.key, &changes.iter().map(|(_, c)| *c).collect::<Vec<_>>())
        .into_iter()
        .map(|i| changes[i])
        .collect();
    let table = &target.table;
    let mut tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    let mut refused: Vec<(&Record, String)> = Vec::new();
    if let Err(e) = write_changes(&tx, target, kept.iter().map(|(_, c)| *c)).await {
        if dead_letters.is_none() || !refused_for_the_rows(&e) {
            return Err(pg_err(&format!("writing {rows} rows to {table}"), &e));
        }
        // Which rows: one at a time, each in a savepoint.
        tx.rollback().await.map_err(|e| pg_err("rolling back", &e))?;
        tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
        for (record, change) in &kept {
            let sp = tx.savepoint("streamctl_row").await.map_err(|e| pg_err("starting a savepoint", &e))?;
            match write_changes(&sp, target, std::iter::once(*change)).await {
                Ok(()) => sp.commit().await.map_err(|e| pg_err("releasing a savepoint", &e))?,
                Err(e) if refused_for_the_rows(&e) => {
                    sp.rollback().await.map_err(|e| pg_err("rolling back a savepoint", &e))?;
                    refused.push((*record, pg_err(&format!("writing a row to {table}"), &e)));
                }
                Err(e) => return Err(pg_err(&format!("writing a row to {table}"), &e)),
            }
        }
    }
    let offsets = &target.offsets;
    for (p, next) in &ends {
        let moved = match stored.get(p) {
            Some(old) => tx
                .execute(
                    format!(
                        "UPDATE {offsets} SET next_offset = $1 WHERE sink = $2 AND topic = $3 AND \"partition\" = $4 \
                         AND next_offset = $5"
                    )
                    .as_str(),
                    &[next, &sink_id, &topic, p, old],
                )
                .await
                .map_err(|e| pg_err(&format!("updating {offsets}"), &e))?,
            None => tx
                .execute(
                    format!(
                        "INSERT INTO {offsets} (sink, topic, \"partition\", next_offset) VALUES ($2, $3, $4, $1) \
                         ON CONFLICT DO NOTHING"
                    )
                    .as_str(),
                    &[next, &sink_id, &topic, p],
                )
                .await
                .map_err(|e| pg_err(&format!("updating {offsets}"), &e))?,
        };
        if moved != 1 {
            // Rolled back: another process wrote this partition since the offsets were read.
            return Err(format!(
                "the offset of partition {p} in {offsets} moved since this sink read it: another process delivers \
                 sink {sink_id}; starting over from the stored offsets"
            ));
        }
    }
    // The copies are in Kafka before the offsets that pass their records are.
    if let Some(d) = dead_letters {
        for (record, reason) in &refused {
            d.send(topic, record, reason)?;
        }
        d.flush()?;
    }
    tx.commit().await.map_err(|e| pg_err(&format!("committing {rows} rows to {table}"), &e))?;
    if !refused.is_empty() {
        let first = refused.first().map(|(_, r)| r.as_str()).unwrap_or_default();
        eprintln!(
            "[sink {sink_id}] {} of {rows} rows refused by {table}, copied to the dead-letter topic (first: {first})",
            refused.len()
        );
    }
    stored.extend(ends);
    Ok(())
}

/// The statements that apply `changes` (at most one per key) inside a transaction.
async fn write_changes<'a>(
    tx: &tokio_postgres::Transaction<'_>,
    target: &Target,
    changes: impl Iterator<Item = &'a Change>,
) -> Result<(), tokio_postgres::Error> {
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    for c in changes {
        match c {
            Change::Upsert(r) => upserts.push(Value::Object(r.clone())),
            Change::Delete(k) => deletes.push(Value::Object(k.clone())),
        }
    }
    if let (Some(sql), false) = (&target.delete, deletes.is_empty()) {
        tx.execute(sql.as_str(), &[&Value::Array(deletes).to_string()]).await?;
    }
    if !upserts.is_empty() {
        tx.execute(target.write.as_str(), &[&Value::Array(upserts).to_string()]).await?;
    }
    Ok(())
}

/// The offsets stored for this sink and topic.
async fn stored_offsets(
    client: &Client,
    offsets: &str,
    sink_id: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, String> {
    let rows = client
        .query(
            format!("SELECT \"partition\", next_offset FROM {offsets} WHERE sink = $1 AND topic = $2").as_str(),
            &[&sink_id, &topic],
        )
        .await
        .map_err(|e| pg_err(&format!("reading {offsets}"), &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Runs a postgres sink task. tokio-postgres needs a runtime of its own and the caller may be
/// inside one (the embedded run), so the delivery runs on a thread of its own.
pub fn run(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(format!("pg-{}", sink.sink.name))
            .spawn_scoped(s, || deliver(cp, sink, client, how, control, fresh))
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .unwrap_or_else(|_| Err("the sink thread panicked".into()))
    })
}

fn deliver(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    let model_name = &sink.sink.from;
    let SinkConnector::Postgres { table, create_table, batch_records, transforms, .. } = &sink.sink.connector else {
        return Err("not a postgres sink".into());
    };
    let model = cp.models.get(model_name).ok_or_else(|| format!("no model `{model_name}`"))?;
    let codec = InputCodec::for_model_output(cp, model_name, control.registry.as_ref())
        .ok_or_else(|| format!("cannot decode the output of `{model_name}`"))?;
    let conn = connection(cp, sink)?;
    let location = format!("{} table {}", conn.shown(), table_names(table).0);
    let batch_records = batch_records.map_or(DEFAULT_BATCH_RECORDS, |b| b.max(1) as usize);
    let sink_id = format!("{}.{name}", cp.project.config.name);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (mut pg, connection) =
        rt.block_on(conn.config.connect(NoTls)).map_err(|e| pg_err(&format!("connecting to {}", conn.shown()), &e))?;
    let log_name = name.clone();
    rt.spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("[sink {log_name}] {}", pg_err("the connection to PostgreSQL ended", &e));
        }
    });
    let outcome = |records: u64, dead_lettered: u64| SinkOutcome {
        sink: name.clone(),
        model: model_name.clone(),
        location: location.clone(),
        records: records.saturating_sub(dead_lettered),
        dead_lettered,
        to_files: false,
        files: Vec::new(),
    };
    if !wait_for_lock(&rt, &pg, &sink_id, how, control)? {
        return Ok(outcome(0, 0));
    }
    let target = rt.block_on(prepare(&mut pg, model, table, *create_table, transforms))?;
    if fresh {
        rt.block_on(forget(&mut pg, &target, &sink_id))?;
        eprintln!(
            "[sink {name}] emptied {} (the embedded broker starts empty: the rows are written anew)",
            target.table
        );
    }

    let topic = &model.topic;
    let (consumer, partitions) = super::output_consumer(cp, client, name, model_name)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let mut stored = rt.block_on(stored_offsets(&pg, &target.offsets, &sink_id, topic))?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (p, low, high) in &partitions {
        let from_table = stored.get(p).copied();
        if from_table.is_some_and(|n| n > *high) {
            return Err(format!(
                "{} says partition {p} of {topic} was written up to offset {}, but the topic ends at {high}: it was \
                 recreated, or is another cluster's. Delete the sink's rows from {} (sink = '{sink_id}') to deliver \
                 this topic there",
                target.offsets,
                from_table.unwrap_or_default(),
                target.offsets
            ));
        }
        let resume = from_table.unwrap_or(*low).max(*low);
        next.insert(*p, resume);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(resume))
            .map_err(|e| format!("assigning {topic}: {e}"))?;
    }
    consumer.assign(&assignment).map_err(|e| format!("assigning {topic}: {e}"))?;
    if !stored.is_empty() {
        eprintln!("[sink {name}] resuming {topic} at {:?} (the offsets in {})", stored, target.offsets);
    }

    let ends: BTreeMap<i32, i64> = partitions.iter().map(|(p, _, high)| (*p, *high)).collect();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let mut records = 0u64;
    let mut batch: Vec<BatchEntry> = Vec::new();
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client)?;
    let mut batch_started = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        let stopping = control.stop.load(Ordering::SeqCst);
        let done = how == SinkRun::UntilCaughtUp && caught_up(&next);
        if !batch.is_empty() && (stopping || done || batch.len() >= batch_records || batch_started.elapsed() >= LINGER)
        {
            let n = batch.len() as u64;
            let batch = std::mem::take(&mut batch);
            rt.block_on(write_batch(&mut pg, &target, &sink_id, topic, batch, &mut stored, dead_letters.as_mut()))?;
            records += n;
        }
        if stopping || done {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let record = super::record_of(&m);
                let change = match m.payload() {
                    Some(v) => codec
                        .value_as_json(v)
                        .ok_or_else(|| "not a value of the model's output format".to_string())
                        .and_then(|r| transform::apply(transforms, r))
                        .map(Change::Upsert),
                    None => tombstone_key(m.key(), &model.key)
                        .and_then(|k| transform::apply(transforms, k))
                        .map(Change::Delete),
                };
                let change = match (change, dead_letters.as_mut()) {
                    (Ok(c), _) => Some(c),
                    (Err(reason), Some(d)) => {
                        d.send(topic, &record, &reason)?;
                        None
                    }
                    (Err(reason), None) => {
                        return Err(format!(
                            "offset {} of partition {} of {topic}: {reason} (the sink stalls here; with `on_error: \
                             dead_letter` such records are copied to a dead-letter topic)",
                            m.offset(),
                            m.partition()
                        ))
                    }
                };
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                batch.push((record, change));
                next.insert(m.partition(), m.offset() + 1);
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                if how == SinkRun::UntilCaughtUp && last_progress.elapsed() > Duration::from_secs(120) {
                    return Err(format!(
                        "no record of {topic} arrived for 120 s before its end offsets {ends:?} (at {next:?})"
                    ));
                }
            }
        }
    }
    Ok(outcome(records, dead_letters.as_ref().map_or(0, |d| d.count)))
}

/// Holds the sink's advisory lock: one process at a time delivers a sink. A long-running sink
/// stands by while another process holds it (and takes over when that one's connection ends);
/// a bounded one waits up to two minutes. `false`: a stop came first.
fn wait_for_lock(rt: &Runtime, pg: &Client, sink_id: &str, how: SinkRun, control: &RunControl) -> Result<bool, String> {
    let started = Instant::now();
    let mut told = false;
    let id = lock_id(&format!("streamctl sink {sink_id}"));
    loop {
        let got: bool = rt
            .block_on(pg.query_one("SELECT pg_try_advisory_lock($1)", &[&id]))
            .map_err(|e| pg_err("taking the sink's advisory lock", &e))?
            .get(0);
        if got {
            if told {
                eprintln!("[sink {sink_id}] took over");
            }
            return Ok(true);
        }
        if !told {
            eprintln!("[sink {sink_id}] another streamctl process delivers this sink: standing by");
            told = true;
        }
        if how == SinkRun::UntilCaughtUp && started.elapsed() > Duration::from_secs(120) {
            return Err("another streamctl process has delivered this sink for 120 s".into());
        }
        for _ in 0..10 {
            if control.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Empties the sink table and its offsets (the embedded broker's offsets start over).
async fn forget(client: &mut Client, target: &Target, sink_id: &str) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    tx.execute(format!("DELETE FROM {} WHERE sink = $1", target.offsets).as_str(), &[&sink_id])
        .await
        .map_err(|e| pg_err(&format!("clearing {}", target.offsets), &e))?;
    tx.batch_execute(&format!("DELETE FROM {}", target.table))
        .await
        .map_err(|e| pg_err(&format!("emptying {}", target.table), &e))?;
    tx.commit().await.map_err(|e| pg_err(&format!("emptying {}", target.table), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_batch_keeps_the_last_change_of_each_key() {
        let key = vec!["id".to_string()];
        let changes = [
            Change::Upsert(row(serde_json::json!({"id": 1, "n": "a"}))),
            Change::Upsert(row(serde_json::json!({"id": 2, "n": "b"}))),
            Change::Delete(row(serde_json::json!({"id": 1}))),
            Change::Upsert(row(serde_json::json!({"id": 3, "n": "c"}))),
            Change::Upsert(row(serde_json::json!({"id": 2, "n": "B"}))),
            Change::Delete(row(serde_json::json!({"id": 4}))),
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        // The last change of keys 1, 3, 2 and 4, in the order they came.
        assert_eq!(kept(&key, &refs), vec![2, 3, 4, 5]);
        // A stream appends every row, in order.
        assert_eq!(kept(&[], &refs), vec![0, 1, 3, 4]);
    }

    #[test]
    fn tombstone_keys_become_key_columns() {
        let one = vec!["customer_id".to_string()];
        assert_eq!(tombstone_key(Some(b"42"), &one).unwrap(), row(serde_json::json!({"customer_id": 42})));
        let two = vec!["order_status".to_string(), "windowstart".to_string()];
        assert_eq!(
            tombstone_key(Some(br#"{"ORDER_STATUS": 1, "windowstart": 7}"#), &two).unwrap(),
            row(serde_json::json!({"order_status": 1, "windowstart": 7}))
        );
        assert!(tombstone_key(Some(b"42"), &two).is_err());
        assert!(tombstone_key(None, &one).is_err());
        assert!(tombstone_key(Some(b"{"), &one).is_err());
    }

    #[test]
    fn statements_quote_names_and_upsert_by_the_key() {
        let (table, offsets) = table_names("Sales.Prime_Logons");
        assert_eq!(table, "\"sales\".\"prime_logons\"");
        assert_eq!(offsets, "\"sales\".\"streamctl_sink_offsets\"");
        assert_eq!(table_names("t").1, "\"streamctl_sink_offsets\"");
        let cols = vec![("id".to_string(), "bigint".to_string()), ("n".to_string(), "text".to_string())];
        let key = vec!["id".to_string()];
        assert_eq!(
            write_sql("\"t\"", &cols, &key),
            "INSERT INTO \"t\" (\"id\", \"n\") SELECT r.\"id\", r.\"n\" FROM jsonb_to_recordset($1::text::jsonb) AS \
             r(\"id\" bigint, \"n\" text) ON CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\""
        );
        assert!(write_sql("\"t\"", &cols[..1], &key).ends_with("ON CONFLICT (\"id\") DO NOTHING"));
        assert!(!write_sql("\"t\"", &cols, &[]).contains("ON CONFLICT"));
        assert_eq!(
            delete_sql("\"t\"", &cols[..1]),
            "DELETE FROM \"t\" AS t USING jsonb_to_recordset($1::text::jsonb) AS r(\"id\" bigint) WHERE t.\"id\" = r.\"id\""
        );
        assert_eq!(
            create_table_sql("\"t\"", &cols, &key),
            "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" bigint NOT NULL, \"n\" text, PRIMARY KEY (\"id\"))"
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn a_connection_shows_no_password() {
        let c = Connection { config: "postgresql://alice:hunter2@db.example.com:6543/sales".parse().unwrap() };
        let shown = format!("{c:?} {c:#?} {}", c.shown());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgresql://alice@db.example.com:6543/sales"), "{shown}");
    }

    #[test]
    fn column_types_map_to_postgres_types() {
        use datafusion::arrow::datatypes::TimeUnit;
        assert_eq!(pg_type(&DataType::Int64), "bigint");
        assert_eq!(pg_type(&DataType::Float64), "double precision");
        assert_eq!(pg_type(&DataType::Utf8), "text");
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), "numeric(10,2)");
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, None)), "timestamp");
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))), "timestamptz");
    }
}
