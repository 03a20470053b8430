use std::process::ExitCode;

use clap::Args as ClapArgs;
use serde_json::json;

use super::common::{load_and_compile, plural, print_diagnostics, GlobalArgs, OutputFormat};

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Exit codes: 0 valid, 1 invalid.\n\nExamples:\n  streamctl validate --project-dir example-project\n  streamctl validate --format json | jq '.diagnostics[] | .file + \":\" + (.line|tostring)'"
)]
pub struct Args {}

pub fn exec(global: &GlobalArgs, _args: &Args) -> anyhow::Result<ExitCode> {
    let (compiled, mut diags) = load_and_compile(global);
    // The target in use must resolve (it exists, its env_var()s are set): other targets'
    // secrets need not be present where this one is validated.
    if let Some(cp) = &compiled {
        diags.extend(crate::testing::check_tests(cp));
        if !diags.iter().any(|d| d.code == "unknown-target") {
            let jinja = crate::jinja::Jinja::new(cp.project.config.vars.clone());
            match cp.project.resolve_target(&global.overrides(), &jinja) {
                Ok(target) => {
                    diags.extend(target_topic_problems(cp, &target));
                    diags.extend(crate::compile::connector_target_problems(cp, &target));
                }
                Err(d) => diags.push(d),
            }
        }
    }
    let (sources, models, sinks) = compiled
        .as_ref()
        .map(|c| (c.project.sources.len(), c.project.models.len(), c.project.sinks.len()))
        .unwrap_or_default();
    let ok = !diags.has_errors();
    match global.format {
        OutputFormat::Json => {
            let out = json!({
                "valid": ok,
                "errors": diags.error_count(),
                "warnings": diags.warning_count(),
                "sources": sources,
                "models": models,
                "sinks": sinks,
                "diagnostics": diags.sorted(),
            });
            super::common::print_json(&out)?;
        }
        OutputFormat::Text => {
            print_diagnostics(&diags);
            let what = format!("{}, {}, {}", plural(sources, "source"), plural(models, "model"), plural(sinks, "sink"));
            if ok {
                println!(
                    "valid: {what}{}",
                    if diags.warning_count() > 0 {
                        format!(" ({})", plural(diags.warning_count(), "warning"))
                    } else {
                        String::new()
                    }
                );
            } else {
                eprintln!("invalid: {} in {what}", plural(diags.error_count(), "error"));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The target's own names under Kafka's rules: its control topic and its `topic_prefix`.
fn target_topic_problems(
    cp: &crate::compile::CompiledProject,
    target: &crate::project::target::ResolvedTarget,
) -> Vec<crate::diagnostics::Diagnostic> {
    use crate::compile::topic_names::topic_name_problem;
    let doc = &cp.project.config_doc;
    let at = |field: &str, len: usize, message: String| {
        doc.error_at("topic-name", &format!("/targets/{}/{field}", target.name), false, len, message)
    };
    let mut out = Vec::new();
    if let Some(p) = topic_name_problem(&target.control_topic) {
        out.push(at(
            "control_topic",
            target.control_topic.chars().count(),
            format!("target `{}`: control {p}", target.name),
        ));
    }
    // The prefix goes in front of derived names: its characters must be legal ones too.
    if !target.topic_prefix.is_empty() {
        if let Some(p) = topic_name_problem(&target.topic_prefix) {
            out.push(at(
                "topic_prefix",
                target.topic_prefix.chars().count(),
                format!("target `{}`: topic_prefix: {p}", target.name),
            ));
        }
    }
    out
}
