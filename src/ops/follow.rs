//! Workers on a deployed target: `streamctl run` runs what the control topic records, each job
//! compiled from the project files of the generation that last changed it, and follows new
//! generations as `apply` writes them. A job whose query did not change resumes from its
//! checkpoint; a changed one starts as its `CarryOver` says (offsets kept, or reprocessing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use crate::compile::CompiledProject;
use crate::deploy::control::{ControlTopic, DeployedState};
use crate::deploy::desired::Bundle;
use crate::diagnostics::Diagnostics;
use crate::project::Project;
use crate::runtime::worker::{JobOutcome, RunControl, RunOptions};
use crate::runtime::RunError;

/// What identifies a running job: a change to it means restarting it.
fn running_set(state: &DeployedState, select: &dyn Fn(&str) -> bool) -> BTreeMap<String, (u64, String)> {
    state
        .jobs
        .iter()
        .filter(|(m, _)| select(m))
        .map(|(m, j)| (m.clone(), (j.meta.generation, j.spec.semantic_hash.clone())))
        .collect()
}

/// Writes a bundle's files to a private directory and compiles them, with the target's
/// `topic_prefix` (and its registry, for Avro sources without columns).
pub fn compile_bundle(
    project: &str,
    generation: u64,
    bundle: &Bundle,
    topic_prefix: &str,
    registry: Option<&crate::registry::SharedRegistry>,
) -> Result<CompiledProject, String> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("streamctl-{project}-g{generation}-{}-{}", std::process::id(), bundle.hash));
    for (path, text) in &bundle.files {
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            return Err(format!("generation {generation}: refusing the file path {path}"));
        }
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut diags = Diagnostics::new();
    let loaded = Project::load(&dir, &mut diags);
    let result = match loaded {
        Some(project) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            let registry = registry.map(|r| r.0.clone());
            let mut cp = rt.block_on(crate::compile::compile_with_registry(project, diags, registry));
            crate::compile::names::prefix_derived_topics(&mut cp, topic_prefix);
            if cp.diagnostics.has_errors() {
                let first = cp.diagnostics.iter().find(|d| d.is_error()).map(|d| d.to_string()).unwrap_or_default();
                Err(format!(
                    "generation {generation} does not compile here: {} errors (was it applied by a newer streamctl?); \
                     the first: {first}",
                    cp.diagnostics.error_count()
                ))
            } else {
                Ok(cp)
            }
        }
        None => Err(format!("generation {generation}: the deployed project does not load")),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the deployed jobs (those `select` accepts) until stopped; with `until_caught_up`, until
/// they have caught up. Returns every job run's outcome, over all generations.
pub fn run_deployed(
    control: &ControlTopic,
    client: &ClientConfig,
    select: &dyn Fn(&str) -> bool,
    opts: &RunOptions,
    topic_prefix: &str,
    stop: Arc<RunControl>,
) -> Result<Vec<JobOutcome>, String> {
    let mut results = Vec::new();
    let mut compiled: BTreeMap<u64, Arc<CompiledProject>> = BTreeMap::new();
    loop {
        let state = control.read().map_err(|e| e.to_string())?;
        let want = running_set(&state, select);
        if want.is_empty() {
            if results.is_empty() {
                return Err("nothing selected is deployed on this target".into());
            }
            eprintln!("nothing selected is deployed any more (destroyed): stopping");
            return Ok(results);
        }
        let round = Arc::new(RunControl::default());
        let mut jobs: Vec<(&String, u64, Arc<CompiledProject>)> = Vec::new();
        for (model, (generation, _)) in &want {
            let cp = match compiled.get(generation) {
                Some(cp) => cp.clone(),
                None => {
                    let bundle = state.bundles.get(generation).ok_or_else(|| {
                        format!("the project files of generation {generation} are missing from the control topic")
                    })?;
                    let cp = Arc::new(compile_bundle(
                        control.project(),
                        *generation,
                        bundle,
                        topic_prefix,
                        opts.registry.as_ref(),
                    )?);
                    compiled.insert(*generation, cp.clone());
                    cp
                }
            };
            jobs.push((model, *generation, cp));
        }
        let jobs: Vec<(String, Arc<CompiledProject>)> = jobs
            .into_iter()
            .map(|(model, generation, cp)| {
                eprintln!("[{model}] generation {generation}");
                (model.clone(), cp)
            })
            .collect();
        let (job_client, job_opts, round_control) = (client.clone(), opts.clone(), round.clone());
        let handle = std::thread::Builder::new()
            .name("jobs".into())
            .spawn(move || super::host::run_tasks(&jobs, &job_client, &job_opts, round_control))
            .map_err(|e| format!("cannot start the jobs: {e}"))?;
        // Watch for a new generation (or a stop request) while the jobs run.
        let mut switch = false;
        let mut last_check = Instant::now();
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            if stop.stop.load(Ordering::SeqCst) {
                round.stop.store(true, Ordering::SeqCst);
            } else if !opts.until_caught_up && last_check.elapsed() >= Duration::from_secs(2) {
                last_check = Instant::now();
                if let Ok(now) = control.read() {
                    if running_set(&now, select) != want {
                        eprintln!("generation {} deployed: checkpointing and switching", now.generation());
                        switch = true;
                        round.stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        match handle.join() {
            Ok(r) => results.extend(r),
            Err(_) => results.push((String::new(), Err(RunError::Setup("the jobs' thread panicked".into())))),
        }
        if !switch {
            return Ok(results);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project whose source takes its columns from an `.avsc` file in the project.
    fn project_with_schema_file(dir: &std::path::Path) {
        let put = |path: &str, text: &str| {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("streamctl_project.yml", "name: shop\nversion: '1.0'\n");
        put(
            "sources/shop.yml",
            "version: 1\nsources:\n  - name: shop\n    tables:\n      - name: orders\n        topic: shop.orders\n        \
             format: avro\n        schema: {file: schemas/orders.avsc}\n",
        );
        put(
            "schemas/orders.avsc",
            r#"{"type": "record", "name": "Order", "fields": [{"name": "order_id", "type": "long"}, {"name": "amount", "type": "double"}]}"#,
        );
        put(
            "models/big_orders.sql",
            "SELECT order_id, amount FROM {{ source('shop', 'orders') }} WHERE amount > 100\n",
        );
    }

    #[test]
    fn a_deployed_generation_compiles_from_its_bundle_with_the_schema_files_of_its_sources() {
        let dir = tempfile::tempdir().unwrap();
        project_with_schema_file(dir.path());
        let mut diags = Diagnostics::new();
        let project = Project::load(dir.path(), &mut diags).expect("the project loads");
        let files = project.definition_files();
        assert_eq!(files.get("schemas/orders.avsc").map(|t| t.contains("\"Order\"")), Some(true), "{files:?}");
        let bundle = Bundle::new(files);
        let cp = compile_bundle("shop", 1, &bundle, "", None).expect("the bundle compiles");
        let model = cp.models.values().find(|m| m.name == "big_orders").expect("the model");
        let columns: Vec<&str> = model.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(columns, ["order_id", "amount"]);
    }
}
