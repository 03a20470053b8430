//! The command line. One module per subcommand: each defines its arguments and an `exec`
//! that calls into the library and turns the outcome into an exit code.

mod apply;
mod common;
mod compile;
mod destroy;
mod docs;
mod init;
mod ls;
mod peek;
mod plan;
mod query;
mod run;
mod seed;
mod shell;
mod source;
mod status;
mod test;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use common::GlobalArgs;

const AFTER_HELP: &str = "\
Examples:
  streamctl init my_pipelines              scaffold a project that validates
  streamctl validate --project-dir example-project
  streamctl compile                         write target/manifest.json and target/compiled/
  streamctl ls --select +orders_agg_hourly  a model and everything upstream
  streamctl docs                            target/docs/index.html with the lineage graph
  streamctl apply --auto-approve            embedded target: deploy, load sample data, run, show outputs
  streamctl plan --target prod --out p.plan then: streamctl apply --target prod p.plan
  streamctl seed --target local --create-topics  the sources' sample data into a local Kafka

Environment: STREAMCTL_TARGET, STREAMCTL_BOOTSTRAP_SERVERS, STREAMCTL_SCHEMA_REGISTRY_URL, NO_COLOR";

#[derive(Debug, Parser)]
#[command(name = "streamctl", version, about = "dbt for streams: SQL pipelines on Kafka, planned and applied like Terraform", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project from the built-in template.
    Init(init::Args),
    /// Check the project offline: YAML against the schemas, Jinja, the graph, and every model's SQL
    /// planned against its inputs' schemas.
    Validate(validate::Args),
    /// Validate, then write the rendered SQL to target/compiled/ and target/manifest.json.
    Compile(compile::Args),
    /// List the nodes a selection picks.
    Ls(ls::Args),
    /// Lineage as Mermaid or DOT, and a static HTML page in target/docs/.
    Docs(docs::Args),
    /// Run the models as streaming jobs on the target (embedded: on the sample data).
    Run(run::Args),
    /// Run the project's unit tests offline, through the models' real operators.
    Test(test::Args),
    /// Show what `apply` would change on the target, and why.
    Plan(plan::Args),
    /// Create topics, register schemas and deploy jobs on the target (embedded: and run them).
    Apply(apply::Args),
    /// Produce the sources' sample data into their topics, on any target (dbt's seed).
    Seed(seed::Args),
    /// Source tools: `source import` writes a source's registered columns into its YAML.
    Source(source::Args),
    /// Remove what the project deployed on the target.
    Destroy(destroy::Args),
    /// What is deployed, which worker runs each job, its lag and counters.
    Status(status::Args),
    /// Show a source's, model's or topic's records, decoded, with key, partition, offset,
    /// timestamp and headers.
    Peek(peek::Args),
    /// Run a SELECT over sources and models: rows as they come (EMIT CHANGES) or a table's
    /// current rows.
    Query(query::Args),
    /// An interactive session: SHOW SOURCES, SHOW MODELS, DESCRIBE, PEEK and queries, with
    /// line editing, history and completion (statements from stdin when it is not a terminal).
    Shell(shell::Args),
}

pub fn main() -> ExitCode {
    quiet_on_closed_output();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Init(a) => init::exec(&cli.global, a),
        Command::Validate(a) => validate::exec(&cli.global, a),
        Command::Compile(a) => compile::exec(&cli.global, a),
        Command::Ls(a) => ls::exec(&cli.global, a),
        Command::Docs(a) => docs::exec(&cli.global, a),
        Command::Run(a) => run::exec(&cli.global, a),
        Command::Test(a) => test::exec(&cli.global, a),
        Command::Plan(a) => plan::exec(&cli.global, a),
        Command::Apply(a) => apply::exec(&cli.global, a),
        Command::Seed(a) => seed::exec(&cli.global, a),
        Command::Source(a) => source::exec(&cli.global, a),
        Command::Destroy(a) => destroy::exec(&cli.global, a),
        Command::Status(a) => status::exec(&cli.global, a),
        Command::Peek(a) => peek::exec(&cli.global, a),
        Command::Query(a) => query::exec(&cli.global, a),
        Command::Shell(a) => shell::exec(&cli.global, a),
    };
    match result {
        Ok(code) if code != ExitCode::SUCCESS && !common::json_printed() => {
            // A failure that printed only words: `--format json` still gets its one document.
            if cli.global.format == common::OutputFormat::Json {
                println!(
                    "{}",
                    common::error_json(
                        &format!("streamctl {} failed (the reason is on stderr)", cli.command.name()),
                        &crate::diagnostics::Diagnostics::new()
                    )
                );
            }
            code
        }
        Ok(code) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => common::error_exit(&cli.global, format!("{e:#}")),
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Validate(_) => "validate",
            Command::Compile(_) => "compile",
            Command::Ls(_) => "ls",
            Command::Docs(_) => "docs",
            Command::Run(_) => "run",
            Command::Test(_) => "test",
            Command::Plan(_) => "plan",
            Command::Apply(_) => "apply",
            Command::Seed(_) => "seed",
            Command::Source(_) => "source import",
            Command::Destroy(_) => "destroy",
            Command::Status(_) => "status",
            Command::Peek(_) => "peek",
            Command::Query(_) => "query",
            Command::Shell(_) => "shell",
        }
    }
}

/// `streamctl plan --format json | head -c1`: the reader has what it wanted. Like ripgrep, a
/// closed stdout ends the program quietly with exit 0 instead of a panic (exit 101) from
/// `println!`, whichever command and thread was printing.
fn quiet_on_closed_output() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        let printing =
            message.starts_with("failed printing to stdout") || message.starts_with("failed printing to stderr");
        if printing && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info)
    }));
}

fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
