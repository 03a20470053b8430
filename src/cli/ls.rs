use std::process::ExitCode;

use clap::{Args as ClapArgs, ValueEnum};

use super::common::{load_and_compile, plural, print_diagnostics, GlobalArgs, OutputFormat};
use crate::graph::select::select;

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Selection (dbt syntax): `m`, `+m` (and upstream), `m+` (and downstream), `2+m`, `tag:x`,\n`path:models/x`, `source:soe`, `resource_type:model`; spaces = union, commas = intersection.\nA selector that matches no node (an unknown name, tag, path or source) is an error: exit 1.\nA selection whose parts all match but whose intersection or --exclude leaves nothing prints\nnothing and exits 0.\n\nExamples:\n  streamctl ls --select '+logon_prime_loyal'\n  streamctl ls --select 'tag:orders,resource_type:model' --output path"
)]
pub struct Args {
    /// Nodes to list (default: all).
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Nodes to leave out.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// What to print per node.
    #[arg(long, value_enum, default_value_t = LsOutput::Id)]
    pub output: LsOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsOutput {
    Id,
    Name,
    Path,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let (compiled, diags) = load_and_compile(global);
    let Some(c) = compiled else {
        print_diagnostics(&diags);
        let message = format!("not listing: {}", plural(diags.error_count(), "error"));
        return Ok(super::common::fail(global, &message, &diags));
    };
    if diags.has_errors() {
        eprintln!("warning: the project has errors (run `streamctl validate`); listing what loaded");
    }
    let mut nodes = match select(&c.graph, &c.node_info, &args.select) {
        Ok(n) => n,
        Err(e) => return Ok(super::common::error_exit(global, e)),
    };
    if !args.exclude.is_empty() {
        match select(&c.graph, &c.node_info, &args.exclude) {
            Ok(ex) => nodes.retain(|n| !ex.contains(n)),
            Err(e) => return Ok(super::common::error_exit(global, e)),
        }
    }
    // Dependency order, as deploy would go.
    let order = c.order();
    let mut listed: Vec<_> = order.iter().filter(|n| nodes.contains(n)).cloned().collect();
    if listed.len() < nodes.len() {
        listed = nodes.into_iter().collect();
    }
    match global.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = listed
                .iter()
                .map(|n| {
                    let info = c.node_info.get(n);
                    serde_json::json!({
                        "unique_id": n.unique_id(),
                        "resource_type": n.resource_type(),
                        "name": n.name(),
                        "path": info.and_then(|i| i.path.as_ref()).map(|p| p.display().to_string()),
                        "tags": info.map(|i| i.tags.clone()).unwrap_or_default(),
                        "depends_on": c.graph.parents(n).iter().map(|p| p.unique_id()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            super::common::print_json(&items)?;
        }
        OutputFormat::Text => {
            for n in &listed {
                match args.output {
                    LsOutput::Id => println!("{n}"),
                    LsOutput::Name => println!("{}", n.name()),
                    LsOutput::Path => {
                        let p = c.node_info.get(n).and_then(|i| i.path.as_ref()).map(|p| p.display().to_string());
                        println!("{}", p.unwrap_or_default());
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
