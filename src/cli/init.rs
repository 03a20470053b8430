use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::{GlobalArgs, OutputFormat};

#[derive(Debug, ClapArgs)]
#[command(after_help = "Examples:\n  streamctl init payments && cd payments && streamctl validate")]
pub struct Args {
    /// Project name; also the directory created (inside --project-dir).
    pub name: String,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let dir = global.project_dir.join(&args.name);
    match crate::scaffold::scaffold(&dir, &args.name) {
        Ok(files) => {
            let paths: Vec<String> = files.iter().map(|f| dir.join(f).display().to_string()).collect();
            match global.format {
                OutputFormat::Json => super::common::print_json(
                    &serde_json::json!({"project_dir": dir.display().to_string(), "created": paths}),
                )?,
                OutputFormat::Text => {
                    for p in paths {
                        println!("  created {p}");
                    }
                    println!("\nnext: cd {} && streamctl validate && streamctl docs", dir.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::common::error_exit(global, e)),
    }
}
