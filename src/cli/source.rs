use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};

use super::common::{GlobalArgs, OutputFormat};
use crate::jinja::Jinja;
use crate::ops::source_import::import;
use crate::project::Project;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    pub command: SourceCommand,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Write the columns of a source's registered schema into its YAML.
    Import(ImportArgs),
}

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Reads the latest version of the source's subject (`schema: {subject: ...}`, else
`<topic>-value`) from the target's schema registry (`schema_registry_url`, or the project's
file registry schemas/ on the embedded target) and writes its fields as the source's
`columns:` (SQL types, NOT NULL where the schema has no null), with a comment naming the
subject, version and registry. The rest of the file is kept as written; a `columns:` block
(or a `schema: {subject}`) already there is replaced. Review the change with `git diff`.

Examples:
  streamctl source import soe.logon
  streamctl source import logon --target prod --dry-run
  streamctl source import shop.orders --subject shop.orders-value --schema-registry-url http://localhost:8081")]
pub struct ImportArgs {
    /// The source: `group.table`, or the table's name when it is unique.
    pub source: String,
    /// The subject to read (default: the source's `schema: {subject}`, else `<topic>-value`).
    #[arg(long)]
    pub subject: Option<String>,
    /// Print the file as it would be, do not write it.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let SourceCommand::Import(a) = &args.command;
    let mut diags = crate::diagnostics::Diagnostics::new();
    let Some(project) = Project::load(&global.project_dir, &mut diags) else {
        super::common::print_diagnostics(&diags);
        return Ok(super::common::fail(global, "not importing: the project does not load", &diags));
    };
    if diags.has_errors() {
        super::common::print_diagnostics(&diags);
        let message = format!("not importing: {}", super::common::plural(diags.error_count(), "error"));
        return Ok(super::common::fail(global, &message, &diags));
    }
    let jinja = Jinja::new(project.config.vars.clone());
    let target = match project.resolve_target(&global.overrides(), &jinja) {
        Ok(t) => t,
        Err(d) => {
            let message = format!("not importing: {}", d.message);
            let mut diags = crate::diagnostics::Diagnostics::new();
            diags.push(d);
            super::common::print_diagnostics(&diags);
            return Ok(super::common::fail(global, &message, &diags));
        }
    };
    let imported = match import(&project, &target, &a.source, a.subject.as_deref(), !a.dry_run) {
        Ok(i) => i,
        Err(e) => return Ok(super::common::error_exit(global, e)),
    };
    match global.format {
        OutputFormat::Json => super::common::print_json(&imported)?,
        OutputFormat::Text if a.dry_run => print!("{}", imported.text),
        OutputFormat::Text => {
            let what = if imported.written { "wrote" } else { "unchanged:" };
            println!(
                "{what} {} columns of `{}` into {} (subject {} version {}, id {}, {})",
                imported.columns.len(),
                imported.source,
                imported.file,
                imported.subject,
                imported.version,
                imported.schema_id,
                imported.registry
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
