//! Arguments and helpers every subcommand shares.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};

use crate::compile::CompiledProject;
use crate::diagnostics::{render, Diagnostics};
use crate::project::target::TargetOverrides;
use crate::project::Project;

#[derive(Clone, Args)]
pub struct GlobalArgs {
    /// The project directory (holding streamctl_project.yml).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub project_dir: PathBuf,
    /// Target from the project's `targets:`.
    #[arg(long, global = true, env = "STREAMCTL_TARGET", value_name = "NAME")]
    pub target: Option<String>,
    /// Overrides the bootstrap servers of a Kafka target (an error with the embedded target).
    #[arg(long, global = true, env = "STREAMCTL_BOOTSTRAP_SERVERS", value_name = "HOST:PORT,...")]
    pub bootstrap_servers: Option<String>,
    /// Overrides the target's schema registry URL.
    #[arg(long, global = true, env = "STREAMCTL_SCHEMA_REGISTRY_URL", value_name = "URL")]
    pub schema_registry_url: Option<String>,
    /// Output for people (text) or for programs (json).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArgs")
            .field("project_dir", &self.project_dir)
            .field("target", &self.target)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("schema_registry_url", &self.schema_registry_url.as_deref().map(crate::project::target::redact_url))
            .field("format", &self.format)
            .finish()
    }
}

impl GlobalArgs {
    pub fn overrides(&self) -> TargetOverrides {
        TargetOverrides {
            target: self.target.clone(),
            bootstrap_servers: self.bootstrap_servers.clone(),
            schema_registry_url: self.schema_registry_url.clone(),
        }
    }
}

/// Colors only on a terminal, and never with NO_COLOR set.
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Loads and compiles the project; `None` when there is no project to compile (the diagnostics
/// say why).
pub fn load_and_compile(global: &GlobalArgs) -> (Option<CompiledProject>, Diagnostics) {
    let mut diags = Diagnostics::new();
    let Some(project) = Project::load(&global.project_dir, &mut diags) else {
        return (None, diags);
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            diags.push(crate::diagnostics::Diagnostic::error(
                "internal",
                format!("cannot start the async runtime: {e}"),
            ));
            return (None, diags);
        }
    };
    // Avro sources without columns take them from the target's registry.
    let registry = match crate::ops::source_import::columns_registry(&project, &global.overrides()) {
        Ok(r) => r,
        Err(e) => {
            diags.push(crate::diagnostics::Diagnostic::error("registry", e));
            None
        }
    };
    let compiled = rt.block_on(crate::compile::compile_with_registry(project, diags, registry));
    let diags = compiled.diagnostics.clone();
    (Some(compiled), diags)
}

/// Loads and compiles the project, printing its diagnostics; `Err(exit code 1)` with a one-line
/// reason (`not <verb>: N errors`) when it has errors.
pub fn compiled_or_exit(global: &GlobalArgs, verb: &str) -> Result<CompiledProject, std::process::ExitCode> {
    let (compiled, diags) = load_and_compile(global);
    print_diagnostics(&diags);
    compiled
        .filter(|_| !diags.has_errors())
        .ok_or_else(|| fail(global, &format!("not {verb}: {}", plural(diags.error_count(), "error")), &diags))
}

/// A command that cannot do its work: with `--format json` the one document on stdout is
/// `{"error": ..., "diagnostics": [...]}` (schemas/error.schema.json), so a program reading
/// stdout always gets JSON; the words go to stderr either way. Exit code 1.
pub fn fail(global: &GlobalArgs, message: &str, diags: &Diagnostics) -> std::process::ExitCode {
    eprintln!("{message}");
    if global.format == OutputFormat::Json {
        println!("{}", error_json(message, diags));
        JSON_PRINTED.store(true, Ordering::SeqCst);
    }
    std::process::ExitCode::from(1)
}

/// `error: <message>` on stderr (and the error document with `--format json`), exit code 1.
pub fn error_exit(global: &GlobalArgs, message: impl std::fmt::Display) -> std::process::ExitCode {
    fail(global, &format!("error: {message}"), &Diagnostics::new())
}

/// Whether this run printed its JSON document: `--format json` prints exactly one.
static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints the run's one JSON document on stdout.
pub fn print_json(doc: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    JSON_PRINTED.store(true, Ordering::SeqCst);
    Ok(())
}

pub fn json_printed() -> bool {
    JSON_PRINTED.load(Ordering::SeqCst)
}

/// The error document of `--format json`.
pub fn error_json(message: &str, diags: &Diagnostics) -> String {
    let doc = serde_json::json!({
        "error": message,
        "errors": diags.error_count(),
        "diagnostics": diags.sorted(),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The nodes a `--select` picks, or exit code 1 with the reason.
pub fn selected_or_exit(
    global: &GlobalArgs,
    cp: &CompiledProject,
    selectors: &[String],
) -> Result<std::collections::BTreeSet<crate::graph::NodeId>, std::process::ExitCode> {
    crate::graph::select::select(&cp.graph, &cp.node_info, selectors).map_err(|e| error_exit(global, e))
}

/// Prints diagnostics to stderr, sorted by file and position.
pub fn print_diagnostics(diags: &Diagnostics) {
    let color = use_color();
    for d in diags.sorted() {
        eprint!("{}", render(d, color));
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
