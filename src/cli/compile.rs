use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;

use super::common::{compiled_or_exit, plural, GlobalArgs, OutputFormat};
use crate::compile::manifest::{compiled_path, Manifest};
use crate::compile::CompiledProject;

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Examples:\n  streamctl compile --project-dir example-project\n  jq '.nodes[\"model.orders_agg_hourly\"].columns' example-project/target/manifest.json"
)]
pub struct Args {
    /// Where to write (default: <project-dir>/target).
    #[arg(long, value_name = "DIR")]
    pub target_path: Option<PathBuf>,
}

/// Writes `compiled/**.sql` and `manifest.json` under `out`.
pub(crate) fn write_artifacts(c: &CompiledProject, out: &Path) -> anyhow::Result<Manifest> {
    let manifest = Manifest::build(c);
    for m in c.models.values() {
        let path = out.join("compiled").join(compiled_path(&m.file.path));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut sql = m.rendered_sql.trim().to_string();
        sql.push('\n');
        std::fs::write(&path, sql).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let c = match compiled_or_exit(global, "compiled") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let out = args.target_path.clone().unwrap_or_else(|| global.project_dir.join("target"));
    let manifest = write_artifacts(&c, &out)?;
    match global.format {
        OutputFormat::Json => super::common::print_json(&manifest)?,
        OutputFormat::Text => {
            println!("compiled {} to {}", plural(c.models.len(), "model"), out.join("manifest.json").display())
        }
    }
    Ok(ExitCode::SUCCESS)
}
