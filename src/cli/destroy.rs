use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::apply::confirmed_or_exit;
use super::common::{plural, GlobalArgs};
use super::plan::{make, print, session_or_exit};
use crate::deploy::apply::apply;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Removes what the project deployed on the target: its jobs stop (running workers let them go),
its Kafka Connect connectors are deleted from their Connect cluster (sink connectors first,
source connectors last), and their records leave the control topic. Topics and schema subjects
are only forgotten, with their data kept, unless --delete-topics is given.

Examples:
  streamctl destroy --target staging
  streamctl destroy --target staging --delete-topics --auto-approve")]
pub struct Args {
    /// Also delete the topics (with their data) and schema subjects the project created.
    #[arg(long)]
    pub delete_topics: bool,
    /// Destroy without asking. Needed when stdin is not a terminal.
    #[arg(long)]
    pub auto_approve: bool,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let (cp, session) = match session_or_exit(global, "destroying") {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let plan = match make(global, &cp, &session, true, args.delete_topics) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    print(global, &plan)?;
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(code) = confirmed_or_exit(global, args.auto_approve, "Destroy all of these?", "Destroy") {
        return Ok(code);
    }
    match apply(&session, &plan, &cp.project.root) {
        Ok(r) => {
            eprintln!("Destroyed {}.", plural(r.applied, "object"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(super::common::error_exit(global, e)),
    }
}
