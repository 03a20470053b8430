use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::{compiled_or_exit, GlobalArgs, OutputFormat};
use crate::compile::CompiledProject;
use crate::deploy::desired::DesiredState;
use crate::deploy::plan::{render_changes, render_problems, ChangePlan};
use crate::deploy::Session;
use crate::jinja::Jinja;
use crate::project::config::{FileFormat, SinkConnector};

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Compares the compiled project with what the target's control topic records as deployed, and
shows what `apply` would do: `+` create, `~` update in place, `-/+` replace (a job whose state
is rebuilt by reprocessing its inputs), `-` destroy, each with its reason. Output schemas are
checked against the registry's versions for the subject's compatibility level.

Exit codes: 0 success, 1 error (including a breaking schema change); with --detailed-exitcode,
0 no changes, 1 error, 2 changes.

Examples:
  streamctl plan --target prod
  streamctl plan --target prod --out prod.plan && streamctl apply prod.plan
  streamctl plan --target prod --detailed-exitcode --format json > plan.json")]
pub struct Args {
    /// Save the plan; `streamctl apply FILE` applies exactly it (and refuses it once stale).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes, 0 when none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan the removal of everything the project deployed.
    #[arg(long)]
    pub destroy: bool,
    /// With --destroy or for objects no longer in the project: also delete topics (and their
    /// data) and schema subjects. Without it they stay and are only forgotten.
    #[arg(long)]
    pub delete_topics: bool,
}

/// Compiles the project and opens a session on its target.
pub fn session_or_exit(global: &GlobalArgs, verb: &str) -> Result<(CompiledProject, Session), ExitCode> {
    let mut cp = compiled_or_exit(global, verb)?;
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let target = cp.project.resolve_target(&global.overrides(), &jinja).map_err(|d| {
        eprint!("{}", crate::diagnostics::render(&d, super::common::use_color()));
        let mut diags = crate::diagnostics::Diagnostics::new();
        let message = format!("not {verb}: {}", d.message);
        diags.push(d);
        super::common::fail(global, &message, &diags)
    })?;
    crate::compile::names::prefix_derived_topics(&mut cp, &target.topic_prefix);
    let session = Session::open(&cp, target)
        .map_err(|e| super::common::fail(global, &format!("error: {e}"), &crate::diagnostics::Diagnostics::new()))?;
    Ok((cp, session))
}

/// Makes the plan for the project as it is on disk.
pub fn make(
    global: &GlobalArgs,
    cp: &CompiledProject,
    session: &Session,
    destroy: bool,
    delete_topics: bool,
) -> Result<ChangePlan, ExitCode> {
    let deployed = session.read().map_err(|e| super::common::error_exit(global, e))?;
    let desired = DesiredState::of(cp, &session.target);
    Ok(session.plan(&desired, &deployed, destroy, delete_topics))
}

pub fn print(global: &GlobalArgs, plan: &ChangePlan) -> anyhow::Result<()> {
    match global.format {
        OutputFormat::Json => super::common::print_json(&plan_json(plan))?,
        OutputFormat::Text => print_text(plan),
    }
    Ok(())
}

/// The changes on stdout; why the plan cannot be applied (e.g. a breaking schema change) on
/// stderr, with the other errors.
pub fn print_text(plan: &ChangePlan) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    print!("{}", render_changes(plan, !no_color && std::io::stdout().is_terminal()));
    eprint!("{}", render_problems(plan, !no_color && std::io::stderr().is_terminal()));
}

/// The native sinks: `streamctl run` delivers them; `apply` creates only a kafka sink's topic and
/// dead-letter topics.
fn print_sinks(cp: &CompiledProject) {
    let sinks: Vec<(&str, &str, String)> = cp
        .project
        .sinks
        .iter()
        .map(|s| {
            let to = match &s.sink.connector {
                SinkConnector::File { path, format: FileFormat::Parquet, .. } => format!("Parquet files in {path}"),
                SinkConnector::File { path, .. } => format!("files in {path}"),
                SinkConnector::Postgres { table, .. } => format!("PostgreSQL table {table}"),
                SinkConnector::Opensearch { index, .. } => format!("OpenSearch index {index}"),
                SinkConnector::Kafka { topic, .. } => format!("topic {topic}"),
            };
            (s.sink.name.as_str(), s.sink.from.as_str(), to)
        })
        .collect();
    if sinks.is_empty() {
        return;
    }
    println!("\nSinks delivered by `streamctl run`:");
    let width = sinks.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    for (name, from, to) in sinks {
        println!("  {name:<width$}  {from} → {to}");
    }
}

/// The plan as JSON, without the project files it carries (those are in `--out` files only).
pub fn plan_json(plan: &ChangePlan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(b) = v.pointer_mut("/desired/bundle/files") {
        *b = serde_json::json!({});
    }
    v
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let (cp, session) = match session_or_exit(global, "planning") {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let plan = match make(global, &cp, &session, args.destroy, args.delete_topics) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    print(global, &plan)?;
    if global.format == OutputFormat::Text && !args.destroy {
        print_sinks(&cp);
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&plan)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("Saved the plan to {}. Apply exactly it with: streamctl apply {}", path.display(), path.display());
    }
    Ok(if !plan.problems.is_empty() {
        ExitCode::from(1)
    } else if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
