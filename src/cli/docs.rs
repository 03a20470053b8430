use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};

use super::common::{compiled_or_exit, GlobalArgs, OutputFormat};
use crate::compile::manifest::Manifest;

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Examples:\n  streamctl docs --project-dir example-project     writes target/docs/{index.html,lineage.mmd,lineage.dot}\n  streamctl docs --print dot | dot -Tsvg > lineage.svg"
)]
pub struct Args {
    /// Print the lineage in this format to stdout instead of writing files.
    #[arg(long, value_enum)]
    pub print: Option<LineageFormat>,
    /// Output directory (default: <project-dir>/target/docs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineageFormat {
    Mermaid,
    Dot,
}

pub fn exec(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let c = match compiled_or_exit(global, "documenting") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let manifest = match args.print {
        Some(_) => Manifest::build(&c),
        // Like `dbt docs generate`: the page is built from a fresh compile.
        None => super::compile::write_artifacts(&c, &global.project_dir.join("target"))?,
    };
    let json = global.format == OutputFormat::Json;
    match args.print {
        Some(f) if json => {
            let (format, text) = match f {
                LineageFormat::Mermaid => ("mermaid", crate::docs::mermaid(&manifest)),
                LineageFormat::Dot => ("dot", crate::docs::dot(&manifest)),
            };
            super::common::print_json(&serde_json::json!({"format": format, "lineage": text}))?;
        }
        Some(LineageFormat::Mermaid) => print!("{}", crate::docs::mermaid(&manifest)),
        Some(LineageFormat::Dot) => print!("{}", crate::docs::dot(&manifest)),
        None => {
            let out = args.out.clone().unwrap_or_else(|| global.project_dir.join("target").join("docs"));
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let html =
                crate::docs::html(&manifest, &crate::docs::compiled_sql(&c)).context("rendering the docs page")?;
            std::fs::write(out.join("index.html"), html)?;
            std::fs::write(out.join("lineage.mmd"), crate::docs::mermaid(&manifest))?;
            std::fs::write(out.join("lineage.dot"), crate::docs::dot(&manifest))?;
            if json {
                let path = |f: &str| out.join(f).display().to_string();
                let doc = serde_json::json!({
                    "index_html": path("index.html"),
                    "mermaid": path("lineage.mmd"),
                    "dot": path("lineage.dot"),
                    "models": c.models.len(),
                });
                super::common::print_json(&doc)?;
            } else {
                println!("wrote {}", out.join("index.html").display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
