use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args as ClapArgs;

use super::common::{fail, plural, print_diagnostics, GlobalArgs, OutputFormat};
use crate::compile::CompiledProject;
use crate::diagnostics::Diagnostics;
use crate::jinja::Jinja;
use crate::ops::peek::{stop_flag, ReadTarget, StartAt};
use crate::ops::query::{columns, compile_query, prepare, run_query, PreparedQuery, QueryOptions, Row, QUERY_MODEL};
use crate::project::config::TargetKind;
use crate::project::Project;
use crate::runtime::RunError;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Runs one SELECT over the project's sources and models, compiled exactly like a model and run
by the same runtime, as a transient job: no checkpoint, no output topic, no offsets committed.
Sources are named `group.table` (or by table name alone when unambiguous), models by name.

A push query ends with EMIT CHANGES: it reads its streams from --from (default: the records
produced after it started) and prints each result row as it comes, until LIMIT n rows or
Ctrl-C. A query without EMIT over a table (a pull query) prints the current rows: the latest
record per key of the table's topic, filtered by the WHERE clause, and ends.

On the embedded target the broker starts empty with the command: the sources' sample data is
loaded and upstream models run first; a push query then reads from earliest and ends once it
has read everything.

Examples:
  streamctl query \"SELECT order_id, order_total FROM soe.orders WHERE order_total > 1000 EMIT CHANGES LIMIT 5\"
  streamctl query --target local \"SELECT * FROM logon_enriched EMIT CHANGES\"     rows as they come, Ctrl-C ends
  streamctl query --target local --from earliest \"SELECT * FROM orders EMIT CHANGES LIMIT 3\"
  streamctl query --target local \"SELECT * FROM orders_by_mode WHERE order_mode = 'online'\"   pull: current rows
  streamctl query --format json \"SELECT * FROM customers WHERE customer_id = 7\"   JSON lines")]
pub struct Args {
    /// The SELECT statement.
    pub sql: String,
    /// Where a push query's streams start: earliest, latest, an RFC 3339 time, or epoch ms
    /// (default: latest; earliest on the embedded target).
    #[arg(long, value_name = "earliest|latest|TIME")]
    pub from: Option<String>,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let mut diags = Diagnostics::new();
    let Some(project) = Project::load(&global.project_dir, &mut diags) else {
        print_diagnostics(&diags);
        return Ok(fail(global, &format!("query not run: {}", plural(diags.error_count(), "error")), &diags));
    };
    let mut prepared = match prepare(&project, &args.sql) {
        Ok(p) => p,
        Err(d) => {
            let mut diags = Diagnostics::new();
            diags.push(*d);
            print_diagnostics(&diags);
            return Ok(fail(global, "query not run: 1 error", &diags));
        }
    };
    let jinja = Jinja::new(project.config.vars.clone());
    let target = match project.resolve_target(&global.overrides(), &jinja) {
        Ok(t) => t,
        Err(d) => {
            eprint!("{}", crate::diagnostics::render(&d, super::common::use_color()));
            return Ok(ExitCode::from(1));
        }
    };
    // Avro sources without columns take them from the target's registry, as in `validate`.
    let registry = match crate::ops::source_import::columns_registry(&project, &global.overrides()) {
        Ok(r) => r,
        Err(e) => return Ok(super::common::error_exit(global, e)),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cp = match rt.block_on(compile_query(project, diags, &mut prepared, registry)) {
        Ok(cp) => Arc::new(cp),
        Err(diags) => {
            print_diagnostics(&diags);
            return Ok(fail(global, &format!("query not run: {}", plural(diags.error_count(), "error")), &diags));
        }
    };
    let embedded = target.kind == TargetKind::Embedded;
    let from = args.from.clone().unwrap_or_else(|| if embedded { "earliest" } else { "latest" }.to_string());
    let start = match StartAt::parse(&from) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let inputs = cp.models[QUERY_MODEL].inputs.clone();
    let reader = match ReadTarget::open(&cp, &target, &inputs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let stop = stop_flag();
    let json = global.format == OutputFormat::Json;
    let opts = QueryOptions { start, until_caught_up: embedded };
    match print_rows(&cp, &reader, &prepared, opts, &stop, json)? {
        Ok(printed) => {
            if !json {
                eprintln!("{}", plural(printed, "row"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs a compiled query and prints its rows to stdout, up to its LIMIT: an aligned table (rows
/// as they come for a push query) or JSON lines. Returns the rows printed, or the run's error;
/// `Err` when stdout cannot be written.
pub(super) fn print_rows(
    cp: &CompiledProject,
    reader: &ReadTarget,
    prepared: &PreparedQuery,
    opts: QueryOptions,
    stop: &AtomicBool,
    json: bool,
) -> std::io::Result<Result<usize, RunError>> {
    let limit = prepared.limit;
    let mut table = RowsOut::new(columns(cp), prepared.push);
    let mut out = std::io::stdout();
    let mut printed = 0usize;
    let mut write_error: Option<std::io::Error> = None;
    let result = run_query(cp, &reader.client, reader.registry.as_ref(), prepared.push, opts, stop, &mut |row: Row| {
        if limit.is_some_and(|l| printed >= l) {
            return false;
        }
        let written = if json {
            let v = row.map_or(serde_json::Value::Null, serde_json::Value::Object);
            writeln!(out, "{v}").and_then(|_| out.flush())
        } else {
            table.push(row, &mut out)
        };
        if let Err(e) = written {
            write_error = Some(e);
            return false;
        }
        printed += 1;
        limit.is_none_or(|l| printed < l)
    });
    if let Some(e) = write_error {
        return Err(e);
    }
    if !json {
        table.finish(&mut out)?;
    }
    Ok(result.map(|_| printed))
}

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "null".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Result rows as an aligned table: printed as they come (column widths from the names, at
/// least 12) for a push query, sized to the rows for a pull query.
struct RowsOut {
    names: Vec<String>,
    streaming: bool,
    rows: Vec<Vec<String>>,
    header_done: bool,
}

impl RowsOut {
    fn new(names: Vec<String>, streaming: bool) -> RowsOut {
        RowsOut { names, streaming, rows: Vec::new(), header_done: false }
    }

    fn cells(&self, row: Row) -> Vec<String> {
        match row {
            Some(r) => self.names.iter().map(|n| cell(r.get(n))).collect(),
            None => vec!["(deleted)".to_string()],
        }
    }

    fn push(&mut self, row: Row, out: &mut impl Write) -> std::io::Result<()> {
        let cells = self.cells(row);
        if !self.streaming {
            self.rows.push(cells);
            return Ok(());
        }
        let widths: Vec<usize> = self.names.iter().map(|n| n.chars().count().max(12)).collect();
        if !self.header_done {
            self.header_done = true;
            write_line(out, &self.names, &widths)?;
        }
        write_line(out, &cells, &widths)?;
        out.flush()
    }

    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.streaming {
            return Ok(());
        }
        let mut widths: Vec<usize> = self.names.iter().map(|n| n.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        write_line(out, &self.names, &widths)?;
        for row in &self.rows {
            write_line(out, row, &widths)?;
        }
        out.flush()
    }
}

fn write_line(out: &mut impl Write, cells: &[String], widths: &[usize]) -> std::io::Result<()> {
    let last = cells.len().saturating_sub(1);
    let line: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| if i == last { c.clone() } else { format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)) })
        .collect();
    writeln!(out, "{}", line.join("  "))
}
