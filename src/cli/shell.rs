use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args as ClapArgs;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use super::common::{fail, plural, print_diagnostics, GlobalArgs, OutputFormat};
use crate::diagnostics::Diagnostics;
use crate::jinja::Jinja;
use crate::ops::peek::StartAt;
use crate::ops::query::QueryOptions;
use crate::ops::shell::{complete, kind_word, parse_statement, Listed, Session, ShellError, Statement};
use crate::project::Project;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
An interactive session on the target, for exploring it in the spirit of the ksql CLI: line
editing, history (kept in the project's target/shell_history), Tab completion of statements,
source, model and column names. Statements (case-insensitive, the `;` is optional):

  SHOW SOURCES | SHOW MODELS           the project's relations: kind, topic, format
  DESCRIBE x                           a source's or model's columns and types, kind, topic, format
  PEEK x [n] [FROM earliest|latest|TIME]   n records (default 10) of a source, model or topic
  SELECT ... EMIT CHANGES [LIMIT n]    a push query: rows as they come (Ctrl-C ends it)
  SELECT ... FROM table [WHERE ...]    a pull query: a table's current rows
  HELP | EXIT | QUIT                   (Ctrl-D leaves too)

Ctrl-C cancels the running statement, not the shell. Queries run as `streamctl query` runs
them; on the embedded target the broker lives as long as the shell, and the sample data and
upstream models are loaded the first time a statement reads them.

When standard input is not a terminal, the statements are read from it one per line (no
prompt), for scripts; the exit code is 1 if any failed.

Examples:
  streamctl shell
  streamctl shell --target local --from earliest
  echo 'SELECT order_mode, order_count FROM orders_by_mode' | streamctl shell")]
pub struct Args {
    /// Where push queries' streams start: earliest, latest, an RFC 3339 time, or epoch ms
    /// (default: latest; earliest on the embedded target).
    #[arg(long, value_name = "earliest|latest|TIME")]
    pub from: Option<String>,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    if global.format == OutputFormat::Json {
        return Ok(fail(
            global,
            "the shell prints text: for JSON use `streamctl query` or `streamctl peek` with --format json",
            &Diagnostics::new(),
        ));
    }
    let from = match args.from.as_deref().map(StartAt::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut diags = Diagnostics::new();
    let Some(project) = Project::load(&global.project_dir, &mut diags) else {
        print_diagnostics(&diags);
        return Ok(fail(global, &format!("no shell: {}", plural(diags.error_count(), "error")), &diags));
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
    let cp = rt.block_on(crate::compile::compile_with_registry(project.clone(), diags.clone(), registry.clone()));
    if cp.diagnostics.has_errors() {
        print_diagnostics(&cp.diagnostics);
        eprintln!("warning: the project has errors (run `streamctl validate`); the shell shows what compiled");
    }
    let mut session = Session::new(project, diags, cp, target, registry);
    if let Some(from) = from {
        session.from = from;
    }
    let interactive = std::io::stdin().is_terminal();
    let signals = Signals::install(interactive)?;
    if interactive {
        interactive_loop(&mut session, &signals)
    } else {
        script(&mut session, &signals)
    }
}

/// Ctrl-C while a statement runs cancels it; in a script with none running, it ends the shell.
struct Signals {
    cancel: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handler before the line editor exists: the editor sets its own while it
    /// reads a line and then puts back the one it found.
    fn install(interactive: bool) -> anyhow::Result<Signals> {
        let cancel = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let (c, b) = (cancel.clone(), busy.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return ready_tx.send(Err(e.to_string())),
            };
            rt.block_on(async {
                let mut interrupts = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                    Ok(s) => s,
                    Err(e) => return ready_tx.send(Err(e.to_string())),
                };
                let _ = ready_tx.send(Ok(()));
                while interrupts.recv().await.is_some() {
                    if b.load(Ordering::SeqCst) {
                        c.store(true, Ordering::SeqCst);
                    } else if !interactive {
                        std::process::exit(130);
                    }
                }
                Ok(())
            })
        });
        ready.recv()?.map_err(|e| anyhow::anyhow!("cannot handle Ctrl-C: {e}"))?;
        Ok(Signals { cancel, busy })
    }
}

enum Outcome {
    Done,
    Failed,
    Exit,
}

/// Statements from standard input, one per line.
fn script(session: &mut Session, signals: &Signals) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match run_statement(session, &line, signals)? {
            Outcome::Done => {}
            Outcome::Failed => failed = true,
            Outcome::Exit => break,
        }
        if signals.cancel.load(Ordering::SeqCst) {
            return Ok(ExitCode::from(130));
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Completion of keywords and of the project's names.
struct ShellHelper {
    relations: Vec<String>,
    columns: Vec<String>,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(line, pos, &self.relations, &self.columns))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

fn history_file(session: &Session) -> PathBuf {
    session.cp.project.root.join("target").join("shell_history")
}

fn interactive_loop(session: &mut Session, signals: &Signals) -> anyhow::Result<ExitCode> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .max_history_size(1000)?
        .auto_add_history(false)
        .build();
    let mut rl: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
    rl.set_helper(Some(ShellHelper { relations: session.relation_names(), columns: session.column_names() }));
    let history = history_file(session);
    // A first session has no history yet.
    let _ = rl.load_history(&history);
    println!(
        "streamctl shell: project {} on target {}{}. HELP lists the statements, EXIT (or Ctrl-D) leaves.",
        session.cp.project.config.name,
        session.target_name(),
        if session.embedded() { " (embedded: sample data)" } else { "" }
    );
    loop {
        let line = match rl.readline("streamctl> ") {
            Ok(line) => line,
            // Ctrl-C at the prompt drops the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if !line.trim().is_empty() {
            let _ = rl.add_history_entry(line.as_str());
            if let Some(dir) = history.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = rl.save_history(&history);
        }
        if let Outcome::Exit = run_statement(session, &line, signals)? {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_error(e: ShellError) {
    match e {
        ShellError::Diagnostics(d) => print_diagnostics(&d),
        ShellError::Message(m) => eprintln!("error: {m}"),
    }
}

/// Runs one statement, printing its result (stdout) or its error (stderr).
fn run_statement(session: &mut Session, line: &str, signals: &Signals) -> anyhow::Result<Outcome> {
    let statement = match parse_statement(line) {
        Ok(s) => s,
        Err(e) => {
            print_error(e);
            return Ok(Outcome::Failed);
        }
    };
    signals.cancel.store(false, Ordering::SeqCst);
    signals.busy.store(true, Ordering::SeqCst);
    let result = execute(session, line, statement, &signals.cancel);
    signals.busy.store(false, Ordering::SeqCst);
    if signals.cancel.load(Ordering::SeqCst) {
        eprintln!("(cancelled)");
    }
    match result? {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            print_error(e);
            Ok(Outcome::Failed)
        }
    }
}

fn execute(
    session: &mut Session,
    line: &str,
    statement: Statement,
    cancel: &AtomicBool,
) -> std::io::Result<Result<Outcome, ShellError>> {
    match statement {
        Statement::Empty => {}
        Statement::Exit => return Ok(Ok(Outcome::Exit)),
        Statement::Help => println!("{}", HELP.trim_end()),
        Statement::ShowSources => print_listed(&session.sources(), "KEY"),
        Statement::ShowModels => print_listed(&session.models(), "READS"),
        Statement::Describe { name, at } => match session.describe(line, &name, at) {
            Ok(d) => print_description(&d),
            Err(e) => return Ok(Err(e)),
        },
        Statement::Peek { name, limit, start, .. } => {
            let cp = session.cp.clone();
            let (relation, reader) = match session.peek_target(&name) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            let opts = Session::peek_options(limit, start);
            match super::peek::print_records(&cp, reader, &relation, &opts, cancel, false)? {
                Ok(0) if !cancel.load(Ordering::SeqCst) => eprintln!("no records"),
                Ok(_) => {}
                Err(e) => return Ok(Err(ShellError::Message(e))),
            }
        }
        Statement::Query(text) => {
            let opts = QueryOptions { start: session.from, until_caught_up: session.embedded() };
            let (ready, reader) = match session.prepare_query(&text) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            match super::query::print_rows(&ready.cp, reader, &ready.prepared, opts, cancel, false)? {
                Ok(n) => eprintln!("{}", plural(n, "row")),
                Err(e) => return Ok(Err(ShellError::Message(e.to_string()))),
            }
        }
    }
    Ok(Ok(Outcome::Done))
}

const HELP: &str = "\
SHOW SOURCES | SHOW MODELS                 the project's relations: kind, topic, format
DESCRIBE x                                 columns and types, kind, topic, format, key
PEEK x [n] [FROM earliest|latest|TIME]     n records (default 10) of a source, model or topic
SELECT ... EMIT CHANGES [LIMIT n]          a push query: rows as they come (Ctrl-C ends it)
SELECT ... FROM table [WHERE ...]          a pull query: a table's current rows
EXIT | QUIT                                leave (Ctrl-D too)
Tab completes statements and the names of sources, models and columns.";

/// Rows under a header, in columns as wide as their widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.to_string() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_listed(items: &[Listed], detail: &str) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|l| {
            vec![l.name.clone(), kind_word(l.kind).to_string(), l.topic.clone(), l.format.to_string(), l.detail.clone()]
        })
        .collect();
    print_table(&["NAME", "KIND", "TOPIC", "FORMAT", detail], &rows);
}

fn print_description(d: &crate::ops::shell::Description) {
    println!("{} ({} {})", d.name, d.node, kind_word(d.kind));
    let none = || "(none)".to_string();
    let mut facts = vec![("topic", d.topic.clone()), ("format", d.format.to_string())];
    facts.push(("key", if d.key.is_empty() { none() } else { d.key.join(", ") }));
    if d.node == "source" {
        facts.push(("event time", d.event_time.clone().unwrap_or_else(|| "(Kafka timestamp)".into())));
    } else {
        facts.push(("reads", d.inputs.join(", ")));
    }
    if let Some(desc) = &d.description {
        facts.push(("description", desc.trim().to_string()));
    }
    for (k, v) in facts {
        println!("  {:<12} {v}", format!("{k}:"));
    }
    println!();
    let rows: Vec<Vec<String>> = d
        .columns
        .iter()
        .map(|(n, t, nullable, desc)| {
            vec![
                n.clone(),
                t.clone(),
                if *nullable { "yes" } else { "no" }.to_string(),
                desc.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["COLUMN", "TYPE", "NULL", "DESCRIPTION"], &rows);
}
