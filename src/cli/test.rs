use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::common::{compiled_or_exit, plural, print_diagnostics, selected_or_exit, GlobalArgs, OutputFormat};
use crate::graph::NodeId;
use crate::testing::{prepare, report, run_test};

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Unit tests live in the project's tests/*.yml (`unit_tests:`): for a model, `given` rows per
input (and watermark moves), in arrival order, and the rows to `expect`. They run offline,
through the model's real operators, three times: one record per batch (compared with the
expectation), two per batch, and all at once (which must reach the same end state).

Examples:
  streamctl test --project-dir example-project
  streamctl test --select tag:orders --junit target/junit.xml")]
pub struct Args {
    /// Models whose tests to run (dbt selection syntax; default: all).
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let cp = match compiled_or_exit(global, "testing") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let chosen = match selected_or_exit(global, &cp, &args.select) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut prepared = Vec::new();
    let mut problems = crate::diagnostics::Diagnostics::new();
    for decl in &cp.project.unit_tests {
        if !args.select.is_empty() && !chosen.contains(&NodeId::Model(decl.test.model.clone())) {
            continue;
        }
        match prepare(&cp, decl) {
            Ok(p) => prepared.push(p),
            Err(d) => problems.push(d),
        }
    }
    if problems.has_errors() {
        print_diagnostics(&problems);
        let message = format!("not testing: {} in the test files", plural(problems.error_count(), "error"));
        return Ok(super::common::fail(global, &message, &problems));
    }
    if prepared.is_empty() {
        return Ok(super::common::fail(
            global,
            "no tests found (tests/*.yml with `unit_tests:`)",
            &crate::diagnostics::Diagnostics::new(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let task = crate::runtime::task_context();
    let outcomes: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for p in &prepared {
            v.push(run_test(&cp, p, task.clone()).await);
        }
        v
    });
    if let Some(path) = &args.junit {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, report::junit(&outcomes))?;
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    match global.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "model": o.test.test.model,
                        "name": o.test.test.name,
                        "passed": o.passed(),
                        "location": crate::project::location_of(&o.test.origin),
                        "failures": o.failures.iter().map(report::describe).collect::<Vec<_>>(),
                        "seconds": o.elapsed.as_secs_f64(),
                    })
                })
                .collect();
            super::common::print_json(
                &serde_json::json!({"passed": outcomes.len() - failed, "failed": failed, "tests": items}),
            )?;
        }
        OutputFormat::Text => print!("{}", report::text(&outcomes)),
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
