//! The PostgreSQL sink: a model's rows in a table. A table model's rows are upserted by its key
//! (`INSERT ... ON CONFLICT (key) DO UPDATE`) and its tombstones delete; a stream model's rows
//! are appended. Rows go in batches, one statement per batch (the rows as one JSON array,
//! expanded by `jsonb_to_recordset` into the table's column types). With a `route` transform
//! each row goes to the table its routed name gives, in the sink table's schema: a table model's
//! row written there leaves the other routed tables (its route field may have changed), and a
//! tombstone deletes its key in each table the sink has routed to (listed in [`ROUTES_TABLE`]).
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

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use super::postgres_sql::{
    beside, create_table_sql, delete_sql, offsets_table_sql, pg_type, routed_table, routes_table_sql, table_names,
    write_sql, ROUTES_TABLE,
};
use super::{skip_transaction_markers, transform, DeadLetters, SinkOutcome, SinkRun};
use crate::compile::{CompiledModel, CompiledProject};
use crate::jinja::Jinja;
use crate::project::config::{RelationKind, SinkConnector, SinkTransform};
use crate::project::SinkDecl;
use crate::runtime::codec::{InputCodec, Record};
use crate::runtime::worker::RunControl;

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

/// The table's columns: the model's after the sink's transforms (dropped ones left out,
/// renamed ones under their new name, cast or converted ones of their new type), with their
/// PostgreSQL types.
fn columns_after(model: &CompiledModel, transforms: &[SinkTransform]) -> Vec<(String, String)> {
    let columns = model.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    transform::columns_after(transforms, columns).into_iter().map(|(n, t)| (n, pg_type(&t))).collect()
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
    write: String,
    /// `None` for a stream.
    delete: Option<String>,
}

/// Where a sink's rows go: its table, or with a `route` transform the tables routed to so far.
struct Tables {
    offsets: String,
    /// The key columns a table model's rows are upserted by (after the transforms); none for a
    /// stream.
    key: Vec<String>,
    /// The tables written, by their `table` setting or routed name (`schema.name`).
    by_name: BTreeMap<String, Target>,
    /// Where rows without a route go: the sink table, unless the sink routes.
    sink_table: Option<String>,
    /// The sink's routes table, when it routes.
    routes: Option<String>,
}

impl Tables {
    /// The tables, for messages.
    fn shown(&self) -> String {
        let names: Vec<&str> = self.by_name.values().map(|t| t.table.as_str()).collect();
        match (names.as_slice(), &self.routes) {
            ([one], None) => one.to_string(),
            (_, Some(_)) => format!("the routed tables ({})", names.join(", ")),
            _ => names.join(", "),
        }
    }
}

/// The key columns a table model's rows are upserted by, under their names after the transforms.
fn sink_key(model: &CompiledModel, transforms: &[SinkTransform]) -> Result<Vec<String>, String> {
    let key_of_model: &[String] = if model.kind == RelationKind::Table { &model.key } else { &[] };
    key_of_model
        .iter()
        .map(|k| {
            transform::column_after(transforms, k)
                .ok_or_else(|| format!("the sink's transforms drop `{k}`, a key column of model `{}`", model.name))
        })
        .collect()
}

/// Creates the bookkeeping tables that are missing: the offsets table and, for a routed sink,
/// the routes table.
async fn prepare_bookkeeping(client: &mut Client, offsets: &str, routes: Option<&str>) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    // Two sinks creating tables at once would collide in the catalog.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id("streamctl ddl")])
        .await
        .map_err(|e| pg_err("locking", &e))?;
    tx.batch_execute(&offsets_table_sql(offsets)).await.map_err(|e| pg_err(&format!("creating {offsets}"), &e))?;
    if let Some(routes) = routes {
        tx.batch_execute(&routes_table_sql(routes)).await.map_err(|e| pg_err(&format!("creating {routes}"), &e))?;
    }
    tx.commit().await.map_err(|e| pg_err("creating the tables", &e))
}

/// Creates the table with `create_table` when it is missing, then checks that it has the
/// model's columns and, for a table model, a unique key on its key.
async fn prepare(
    client: &mut Client,
    model: &CompiledModel,
    table_setting: &str,
    create: bool,
    transforms: &[SinkTransform],
) -> Result<Target, String> {
    let table = table_names(table_setting).0;
    let key = sink_key(model, transforms)?;
    let columns = columns_after(model, transforms);
    if create {
        let tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id("streamctl ddl")])
            .await
            .map_err(|e| pg_err("locking", &e))?;
        tx.batch_execute(&create_table_sql(&table, &columns, &key))
            .await
            .map_err(|e| pg_err(&format!("creating {table}"), &e))?;
        tx.commit().await.map_err(|e| pg_err(&format!("creating {table}"), &e))?;
    }

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
    })
}

/// Adds a routed table the batch needs: created (with `create_table`) and checked like the sink
/// table, and recorded in the routes table so that later tombstones reach it.
async fn add_route(
    client: &mut Client,
    tables: &mut Tables,
    model: &CompiledModel,
    name: &str,
    create: bool,
    transforms: &[SinkTransform],
    sink_id: &str,
) -> Result<(), String> {
    let Some(routes) = tables.routes.clone() else { return Ok(()) };
    let target = prepare(client, model, name, create, transforms).await?;
    client
        .execute(
            format!("INSERT INTO {routes} (sink, table_name) VALUES ($1, $2) ON CONFLICT DO NOTHING").as_str(),
            &[&sink_id, &name],
        )
        .await
        .map_err(|e| pg_err(&format!("recording {} in {routes}", target.table), &e))?;
    eprintln!("[sink {sink_id}] writes rows routed to {} (created if missing)", target.table);
    tables.by_name.insert(name.to_string(), target);
    Ok(())
}

/// What a batch's changes (at most one per key, each with the table it goes to) do to each of
/// `tables`: the keys to delete and the rows to write. A table model's row goes to its table and
/// its key leaves every other table; a tombstone deletes its key in all of them.
fn plan_writes(
    key: &[String],
    tables: &[&str],
    changes: &[(&Change, &str)],
) -> BTreeMap<String, (Vec<Value>, Vec<Value>)> {
    let mut plan: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for (change, to) in changes {
        match change {
            Change::Upsert(row) => {
                plan.entry(to.to_string()).or_default().1.push(Value::Object(row.clone()));
                if !key.is_empty() {
                    let k: Map<String, Value> =
                        key.iter().map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null))).collect();
                    for other in tables.iter().filter(|t| *t != to) {
                        plan.entry(other.to_string()).or_default().0.push(Value::Object(k.clone()));
                    }
                }
            }
            Change::Delete(k) if !key.is_empty() => {
                for t in tables {
                    plan.entry(t.to_string()).or_default().0.push(Value::Object(k.clone()));
                }
            }
            Change::Delete(_) => {}
        }
    }
    plan
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
/// One record of a batch: what it changes in which table (the sink table, or a routed one), `None`
/// when it was dead-lettered as read (its offset still moves with the batch).
pub(crate) type BatchEntry = (Record, Option<(Change, String)>);

/// Writes one batch and the offsets it ends at in one transaction. `stored` holds the offsets
/// this process last read or wrote; a row moved by anyone else fails the batch. With a
/// dead-letter topic, a batch the server refuses for its rows is written again row by row (each
/// in a savepoint): the rows it refuses go to the dead-letter topic, flushed before the commit.
async fn write_batch(
    client: &mut Client,
    tables: &Tables,
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
    let changes: Vec<(&Record, &Change, &str)> =
        batch.iter().filter_map(|(r, c)| c.as_ref().map(|(c, to)| (r, c, to.as_str()))).collect();
    let kept: Vec<(&Record, &Change, &str)> =
        kept(&tables.key, &changes.iter().map(|(_, c, _)| *c).collect::<Vec<_>>())
            .into_iter()
            .map(|i| changes[i])
            .collect();
    let table = tables.shown();
    let mut tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    let mut refused: Vec<(&Record, String)> = Vec::new();
    let all: Vec<(&Change, &str)> = kept.iter().map(|(_, c, to)| (*c, *to)).collect();
    if let Err(e) = write_changes(&tx, tables, &all).await {
        if dead_letters.is_none() || !refused_for_the_rows(&e) {
            return Err(pg_err(&format!("writing {rows} rows to {table}"), &e));
        }
        // Which rows: one at a time, each in a savepoint.
        tx.rollback().await.map_err(|e| pg_err("rolling back", &e))?;
        tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
        for (record, change, to) in &kept {
            let sp = tx.savepoint("streamctl_row").await.map_err(|e| pg_err("starting a savepoint", &e))?;
            match write_changes(&sp, tables, &[(*change, *to)]).await {
                Ok(()) => sp.commit().await.map_err(|e| pg_err("releasing a savepoint", &e))?,
                Err(e) if refused_for_the_rows(&e) => {
                    sp.rollback().await.map_err(|e| pg_err("rolling back a savepoint", &e))?;
                    refused.push((*record, pg_err(&format!("writing a row to {table}"), &e)));
                }
                Err(e) => return Err(pg_err(&format!("writing a row to {table}"), &e)),
            }
        }
    }
    let offsets = &tables.offsets;
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

/// The statements that apply `changes` (at most one per key, each with its table) inside a
/// transaction: per table, the deletes, then the writes.
async fn write_changes(
    tx: &tokio_postgres::Transaction<'_>,
    tables: &Tables,
    changes: &[(&Change, &str)],
) -> Result<(), tokio_postgres::Error> {
    let names: Vec<&str> = tables.by_name.keys().map(String::as_str).collect();
    for (name, (deletes, rows)) in plan_writes(&tables.key, &names, changes) {
        let Some(target) = tables.by_name.get(&name) else { continue };
        if let (Some(sql), false) = (&target.delete, deletes.is_empty()) {
            tx.execute(sql.as_str(), &[&Value::Array(deletes).to_string()]).await?;
        }
        if !rows.is_empty() {
            tx.execute(target.write.as_str(), &[&Value::Array(rows).to_string()]).await?;
        }
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
    let route = transforms.iter().find_map(|t| match t {
        SinkTransform::Route { to } => Some(to.clone()),
        _ => None,
    });
    let location = match &route {
        Some(to) => format!("{} tables routed by `{to}` (beside {})", conn.shown(), table_names(table).0),
        None => format!("{} table {}", conn.shown(), table_names(table).0),
    };
    // A tombstone carries only the key: it is not routed (it leaves every routed table).
    let key_transforms: Vec<SinkTransform> =
        transforms.iter().filter(|t| !matches!(t, SinkTransform::Route { .. })).cloned().collect();
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
    let mut tables =
        rt.block_on(open_tables(&mut pg, model, table, route.is_some(), *create_table, transforms, &sink_id))?;
    if fresh {
        rt.block_on(forget(&mut pg, &tables, &sink_id))?;
        eprintln!(
            "[sink {name}] emptied {} (the embedded broker starts empty: the rows are written anew)",
            tables.shown()
        );
    }

    let topic = &model.topic;
    let (consumer, partitions) = super::output_consumer(cp, client, name, model_name)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let mut stored = rt.block_on(stored_offsets(&pg, &tables.offsets, &sink_id, topic))?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (p, low, high) in &partitions {
        let from_table = stored.get(p).copied();
        if from_table.is_some_and(|n| n > *high) {
            return Err(format!(
                "{} says partition {p} of {topic} was written up to offset {}, but the topic ends at {high}: it was \
                 recreated, or is another cluster's. Delete the sink's rows from {} (sink = '{sink_id}') to deliver \
                 this topic there",
                tables.offsets,
                from_table.unwrap_or_default(),
                tables.offsets
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
        eprintln!("[sink {name}] resuming {topic} at {:?} (the offsets in {})", stored, tables.offsets);
    }

    let ends: BTreeMap<i32, i64> = partitions.iter().map(|(p, _, high)| (*p, *high)).collect();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let mut records = 0u64;
    let mut batch: Vec<BatchEntry> = Vec::new();
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client)?;
    let mut batch_started = Instant::now();
    let mut waiting = super::BoundedWait::new(how);
    loop {
        let stopping = control.stop.load(Ordering::SeqCst);
        let done = how == SinkRun::UntilCaughtUp && caught_up(&next);
        if !batch.is_empty() && (stopping || done || batch.len() >= batch_records || batch_started.elapsed() >= LINGER)
        {
            let n = batch.len() as u64;
            let batch = std::mem::take(&mut batch);
            rt.block_on(write_batch(&mut pg, &tables, &sink_id, topic, batch, &mut stored, dead_letters.as_mut()))?;
            records += n;
        }
        if stopping || done {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let record = super::record_of(&m);
                let names = transform::Names { project: &cp.project.config.name, model: model_name, sink: name };
                let change = match m.payload() {
                    Some(v) => codec
                        .value_as_json(v)
                        .ok_or_else(|| "not a value of the model's output format".to_string())
                        .and_then(|r| transform::apply_all(transforms, r, names))
                        .and_then(|t| match (&t.route, &tables.sink_table) {
                            (None, Some(sink_table)) => Ok((Change::Upsert(t.row), sink_table.clone())),
                            (Some(to), _) => routed_table(table, to)
                                .map(|to| (Change::Upsert(t.row), to))
                                .ok_or_else(|| format!("route `{to}` gives no table name")),
                            (None, None) => Err("the row has no route".to_string()),
                        }),
                    None => tombstone_key(m.key(), &model.key)
                        .and_then(|k| transform::apply(&key_transforms, k))
                        .map(|k| (Change::Delete(k), tables.sink_table.clone().unwrap_or_default())),
                };
                if let Ok((Change::Upsert(_), to)) = &change {
                    if !tables.by_name.contains_key(to) {
                        let to = to.clone();
                        rt.block_on(add_route(&mut pg, &mut tables, model, &to, *create_table, transforms, &sink_id))?;
                    }
                }
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
                waiting.record_arrived();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                waiting.nothing_polled((name, topic), &consumer, &next, &ends)?;
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

/// Opens the sink's tables: the bookkeeping ones, then the sink table, or for a routed sink the
/// tables it routed to before.
async fn open_tables(
    client: &mut Client,
    model: &CompiledModel,
    table_setting: &str,
    routed: bool,
    create: bool,
    transforms: &[SinkTransform],
    sink_id: &str,
) -> Result<Tables, String> {
    let offsets = table_names(table_setting).1;
    let routes = routed.then(|| beside(table_setting, ROUTES_TABLE));
    prepare_bookkeeping(client, &offsets, routes.as_deref()).await?;
    let mut tables = Tables {
        offsets,
        key: sink_key(model, transforms)?,
        by_name: BTreeMap::new(),
        sink_table: (!routed).then(|| table_setting.to_string()),
        routes: routes.clone(),
    };
    let names: Vec<String> = match &routes {
        None => vec![table_setting.to_string()],
        Some(routes) => client
            .query(format!("SELECT table_name FROM {routes} WHERE sink = $1 ORDER BY 1").as_str(), &[&sink_id])
            .await
            .map_err(|e| pg_err(&format!("reading {routes}"), &e))?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    for name in names {
        let target = prepare(client, model, &name, create, transforms).await?;
        tables.by_name.insert(name, target);
    }
    Ok(tables)
}

/// Empties the sink's tables and its offsets (the embedded broker's offsets start over).
async fn forget(client: &mut Client, tables: &Tables, sink_id: &str) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| pg_err("starting a transaction", &e))?;
    tx.execute(format!("DELETE FROM {} WHERE sink = $1", tables.offsets).as_str(), &[&sink_id])
        .await
        .map_err(|e| pg_err(&format!("clearing {}", tables.offsets), &e))?;
    for target in tables.by_name.values() {
        tx.batch_execute(&format!("DELETE FROM {}", target.table))
            .await
            .map_err(|e| pg_err(&format!("emptying {}", target.table), &e))?;
    }
    tx.commit().await.map_err(|e| pg_err(&format!("emptying {}", tables.shown()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn a_routed_row_leaves_the_other_tables_and_a_tombstone_leaves_all() {
        let key = vec!["id".to_string()];
        let up = |v: Value| Change::Upsert(row(v));
        let (a, b, c) =
            (up(json!({"id": 1, "m": "a"})), up(json!({"id": 2, "m": "b"})), Change::Delete(row(json!({"id": 3}))));
        let plan = plan_writes(&key, &["t_a", "t_b"], &[(&a, "t_a"), (&b, "t_b"), (&c, "t_a")]);
        let want =
            |deletes: Value, rows: Value| (deletes.as_array().unwrap().clone(), rows.as_array().unwrap().clone());
        assert_eq!(plan["t_a"], want(json!([{"id": 2}, {"id": 3}]), json!([{"id": 1, "m": "a"}])));
        assert_eq!(plan["t_b"], want(json!([{"id": 1}, {"id": 3}]), json!([{"id": 2, "m": "b"}])));
        // Not routed: one table, whose rows are upserted in place; a stream only appends.
        let plan = plan_writes(&key, &["t"], &[(&a, "t"), (&c, "t")]);
        assert_eq!(plan["t"], want(json!([{"id": 3}]), json!([{"id": 1, "m": "a"}])));
        let plan = plan_writes(&[], &["t_a", "t_b"], &[(&a, "t_a"), (&c, "t_a")]);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan["t_a"], want(json!([]), json!([{"id": 1, "m": "a"}])));
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
    fn a_connection_shows_no_password() {
        let c = Connection { config: "postgresql://alice:hunter2@db.example.com:6543/sales".parse().unwrap() };
        let shown = format!("{c:?} {c:#?} {}", c.shown());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgresql://alice@db.example.com:6543/sales"), "{shown}");
    }
}
