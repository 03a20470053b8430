use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::{error_exit, plural, GlobalArgs, OutputFormat};
use super::plan::{make, plan_json, print_text, session_or_exit};
use crate::deploy::apply::apply;
use crate::deploy::plan::ChangePlan;
use crate::diagnostics::Diagnostics;
use crate::ops::run::run_after_apply;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Shows the plan, asks for confirmation on a terminal, then creates topics, registers schemas
and records each deployed object in the target's control topic, in dependency order. Running
`streamctl run` workers pick up the new generation of each job. Only one apply runs at a time
per project and target (a lock in the control topic).

On the embedded target (a broker inside this process) apply then loads the sources' sample
data, runs the jobs until they have caught up, and prints each output topic's rows.

Examples:
  streamctl apply --project-dir example-project --auto-approve     embedded: deploy and run
  streamctl apply --target prod                                      plan, confirm, apply
  streamctl apply --target prod prod.plan                            a saved plan, as it was")]
pub struct Args {
    /// A plan saved with `streamctl plan --out FILE`: applied exactly, refused once stale.
    pub plan: Option<PathBuf>,
    /// Apply without asking (CI). Needed when stdin is not a terminal.
    #[arg(long)]
    pub auto_approve: bool,
    /// Rows of each output topic to print after an embedded run.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
}

/// Asks "yes" on a terminal; refuses without one unless auto-approved.
pub fn confirm(auto_approve: bool, question: &str) -> Result<bool, String> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err("stdin is not a terminal: pass --auto-approve to apply without confirmation".into());
    }
    eprint!("{question} Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    Ok(line.trim() == "yes")
}

/// `Ok(())` to go on; the exit code when the user declined or cannot be asked.
pub fn confirmed_or_exit(global: &GlobalArgs, auto_approve: bool, question: &str, what: &str) -> Result<(), ExitCode> {
    match confirm(auto_approve, question) {
        Ok(true) => Ok(()),
        Ok(false) => Err(super::common::fail(global, &format!("{what} cancelled."), &Diagnostics::new())),
        Err(e) => Err(error_exit(global, e)),
    }
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let (cp, session) = match session_or_exit(global, "applying") {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let plan: ChangePlan = match &args.plan {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a streamctl plan: {e}", path.display()))?
        }
        None => match make(global, &cp, &session, false, false) {
            Ok(p) => p,
            Err(code) => return Ok(code),
        },
    };
    let json = global.format == OutputFormat::Json;
    // With --format json the plan, what was applied and the run are one document, at the end.
    if !json {
        print_text(&plan);
    }
    if !plan.problems.is_empty() {
        let message = format!("not applying: the plan has {}", plural(plan.problems.len(), "problem"));
        return Ok(if json { super::common::fail(global, &message, &Diagnostics::new()) } else { ExitCode::from(1) });
    }
    if plan.has_changes() && args.plan.is_none() {
        if let Err(code) = confirmed_or_exit(global, args.auto_approve, "Apply these changes?", "Apply") {
            return Ok(code);
        }
    }
    let report = match apply(&session, &plan, &cp.project.root) {
        Ok(r) => r,
        Err(e) => return Ok(error_exit(global, e)),
    };
    if report.applied == 0 {
        eprintln!("Nothing to apply.");
    } else {
        eprintln!("Applied {} as generation {}.", plural(report.applied, "change"), report.generation);
    }
    let outcome = match run_after_apply(&session, cp) {
        Ok(o) => o,
        Err(e) => return Ok(error_exit(global, e)),
    };
    if json {
        let failed = outcome.as_ref().is_some_and(|o| o.results.iter().any(|(_, r)| r.is_err()));
        let doc = serde_json::json!({
            "plan": plan_json(&plan),
            "applied": report.applied,
            "generation": report.generation,
            "run": outcome.as_ref().map(super::run::report_json),
        });
        super::common::print_json(&doc)?;
        return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    match outcome {
        Some(outcome) => super::run::report(global, &outcome, args.show),
        None => Ok(ExitCode::SUCCESS),
    }
}
