use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::GlobalArgs;

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
            for f in files {
                println!("  created {}", dir.join(f).display());
            }
            println!("\nnext: cd {} && streamctl validate && streamctl docs", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
