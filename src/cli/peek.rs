use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args as ClapArgs;

use super::common::{compiled_or_exit, GlobalArgs, OutputFormat};
use crate::compile::CompiledProject;
use crate::jinja::Jinja;
use crate::ops::peek::{
    peek, resolve_peek_target, stop_flag, PeekOptions, PeekedRecord, PeekedValue, ReadTarget, Relation, StartAt,
};

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Shows the records of a source's, a model's or any topic's partitions: partition, offset,
timestamp, key, headers and the value decoded with the relation's format (JSON, Avro, Debezium),
as the jobs decode it. A record that does not decode is shown as MALFORMED with the reason. A
name that is neither a source nor a model (nor their topic) is read as a topic, undecoded.

On the embedded target the broker starts empty with the command: a source's sample data is
loaded first, and a model's upstream jobs run on it until caught up.

Examples:
  streamctl peek soe.orders                        the first 10 records of the source's topic
  streamctl peek logon -n 3 --from latest          the last 3 records (by timestamp)
  streamctl peek logon_enriched --target local --follow     then every new record, until Ctrl-C
  streamctl peek ora-ogg-SOE-LOGON-avro.dlq --target local --from 2024-01-31T00:00:00Z
  streamctl peek soe.orders --partition 1 --format json     JSON lines")]
pub struct Args {
    /// A source (`group.table`, or the table name), a model, or a topic.
    pub name: String,
    /// Records to show (default 10; with --follow from earliest or a time: no limit).
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// Where to start: earliest, latest (the last N records), an RFC 3339 time, or epoch ms.
    #[arg(long, default_value = "earliest", value_name = "earliest|latest|TIME")]
    pub from: String,
    /// Only this partition.
    #[arg(long, value_name = "P")]
    pub partition: Option<i32>,
    /// Keep showing new records until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let start = match StartAt::parse(&args.from) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let cp = match compiled_or_exit(global, "peeking") {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let target = match cp.project.resolve_target(&global.overrides(), &jinja) {
        Ok(t) => t,
        Err(d) => {
            eprint!("{}", crate::diagnostics::render(&d, super::common::use_color()));
            return Ok(ExitCode::from(1));
        }
    };
    let relation = resolve_peek_target(&cp, &args.name);
    let reads: Vec<_> = relation.node().into_iter().collect();
    let reader = match ReadTarget::open(&cp, &target, &reads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let opts = PeekOptions { limit: args.limit, start, partition: args.partition, follow: args.follow };
    let stop = stop_flag();
    match print_records(&cp, &reader, &relation, &opts, &stop, global.format == OutputFormat::Json)? {
        Ok(n) => {
            if n == 0 && !stop.load(Ordering::SeqCst) {
                eprintln!("no records");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Reads the records `opts` asks for and prints them to stdout: an aligned table (as they come
/// when following) or JSON lines. Returns the records shown, or the reading error; `Err` when
/// stdout cannot be written.
pub(super) fn print_records(
    cp: &CompiledProject,
    reader: &ReadTarget,
    relation: &Relation,
    opts: &PeekOptions,
    stop: &AtomicBool,
    json: bool,
) -> std::io::Result<Result<usize, String>> {
    // Aligned columns: widths from what is shown, or fixed ones when following.
    let mut table = TableOut::new(opts.follow);
    let mut out = std::io::stdout();
    let result = peek(cp, &reader.client, relation, reader.registry.as_ref(), opts, stop, &mut |r| {
        if json {
            writeln!(out, "{}", serde_json::to_string(&record_json(r)).unwrap_or_default())?;
            out.flush()
        } else {
            table.push(r, &mut out)
        }
    });
    if !json {
        table.finish(&mut out)?;
    }
    Ok(result)
}

/// One JSON line per record.
pub fn record_json(r: &PeekedRecord) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> =
        r.headers.iter().map(|(k, v)| (k.clone(), v.clone().map_or(serde_json::Value::Null, Into::into))).collect();
    let mut doc = serde_json::json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": r.key,
        "headers": headers,
    });
    match &r.value {
        PeekedValue::Row { row } => doc["value"] = serde_json::Value::Object(row.clone()),
        PeekedValue::Tombstone => doc["value"] = serde_json::Value::Null,
        PeekedValue::Raw { raw } => doc["value"] = raw.clone(),
        PeekedValue::Malformed { reason, raw } => {
            doc["value"] = serde_json::Value::Null;
            doc["malformed"] = serde_json::json!({"reason": reason, "raw": raw});
        }
    }
    doc
}

/// The text form of a value.
pub fn value_text(v: &PeekedValue) -> String {
    match v {
        PeekedValue::Row { row } => serde_json::to_string(row).unwrap_or_default(),
        PeekedValue::Tombstone => "(tombstone)".into(),
        PeekedValue::Raw { raw } => match raw {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        PeekedValue::Malformed { reason, raw } => {
            let raw = raw.as_deref().map(|r| truncate(r, 120)).unwrap_or_else(|| "null".into());
            format!("MALFORMED ({reason}): {raw}")
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Rows as an aligned table: buffered to size the columns, or printed as they come (fixed
/// widths) when following.
struct TableOut {
    streaming: bool,
    rows: Vec<[String; 5]>,
    header_done: bool,
}

impl TableOut {
    fn new(streaming: bool) -> TableOut {
        TableOut { streaming, rows: Vec::new(), header_done: false }
    }

    fn cells(r: &PeekedRecord) -> [String; 5] {
        let mut value = value_text(&r.value);
        if !r.headers.is_empty() {
            let hs: Vec<String> =
                r.headers.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null"))).collect();
            value = format!("{value}  headers: {}", hs.join(" "));
        }
        [
            r.partition.to_string(),
            r.offset.to_string(),
            time_text(r.timestamp),
            r.key.as_deref().map_or_else(|| "-".to_string(), |k| truncate(k, 40)),
            value,
        ]
    }

    fn push(&mut self, r: &PeekedRecord, out: &mut impl Write) -> std::io::Result<()> {
        let cells = TableOut::cells(r);
        if self.streaming {
            let widths = [4, 8, 24, 16];
            if !self.header_done {
                self.header_done = true;
                write_row(out, &HEADER.map(String::from), &widths)?;
            }
            write_row(out, &cells, &widths)?;
            out.flush()
        } else {
            self.rows.push(cells);
            Ok(())
        }
    }

    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.streaming || self.rows.is_empty() {
            return Ok(());
        }
        let header = HEADER.map(String::from);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            for (w, c) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        write_row(out, &header, &widths)?;
        for row in &self.rows {
            write_row(out, row, &widths)?;
        }
        out.flush()
    }
}

const HEADER: [&str; 5] = ["PART", "OFFSET", "TIMESTAMP", "KEY", "VALUE"];

fn write_row(out: &mut impl Write, cells: &[String; 5], widths: &[usize; 4]) -> std::io::Result<()> {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let value = if color && cells[4].starts_with("MALFORMED") {
        format!("\x1b[31m{}\x1b[0m", cells[4])
    } else {
        cells[4].clone()
    };
    writeln!(
        out,
        "{:>w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
        cells[0],
        cells[1],
        cells[2],
        cells[3],
        value,
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3]
    )
}
