//! The example project's models run over its sample data, offline, with the runtime's own
//! operators. Expected figures come from `example-project/data/generate.py`, which computes
//! them independently of streamctl while it generates the data.

use std::collections::BTreeMap;
use std::path::Path;

use streamctl::compile::{compile, CompiledProject};
use streamctl::diagnostics::Diagnostics;
use streamctl::project::Project;
use streamctl::runtime::bounded::{run_project_on_samples, BoundedOptions, RunResult};
use streamctl::testing::end_state;

fn compiled() -> CompiledProject {
    let mut diags = Diagnostics::new();
    let p = Project::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project"), &mut diags).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let c = rt.block_on(compile(p, diags));
    assert!(!c.diagnostics.has_errors(), "{:?}", c.diagnostics);
    c
}

fn run(c: &CompiledProject, batch_size: usize) -> BTreeMap<String, RunResult> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let task = streamctl::runtime::task_context();
    rt.block_on(run_project_on_samples(c, BoundedOptions { batch_size, end_of_input: true }, task)).unwrap()
}

fn rows(r: &RunResult) -> Vec<serde_json::Value> {
    r.outputs.iter().map(|o| serde_json::from_slice(o.value.as_ref().unwrap()).unwrap()).collect()
}

#[test]
fn example_project_outputs() {
    let c = compiled();
    let results = run(&c, 1000);
    for (name, r) in &results {
        eprintln!(
            "{name}: {} outputs, {} dead letters, {} skipped, {} late",
            r.outputs.len(),
            r.dead_letters.len(),
            r.skipped,
            r.late
        );
        for o in r.outputs.iter().take(3) {
            eprintln!("   {}", String::from_utf8_lossy(o.value.as_ref().unwrap()));
        }
    }
    let enriched = &results["logon_enriched"];
    assert_eq!(enriched.outputs.len(), 299);
    assert_eq!(enriched.dead_letters.len(), 2, "two malformed logon lines go to the dead-letter topic");
    assert_eq!(results["logon_prime_loyal"].outputs.len(), 45);
    assert_eq!(results["orders_agg_hourly"].outputs.len(), 44);
    let bursts = rows(&results["logon_bursts"]);
    assert_eq!(bursts.len(), 4, "{bursts:?}");
}

#[test]
fn results_do_not_depend_on_batch_boundaries() {
    let c = compiled();
    let reference = run(&c, 100_000);
    for size in [1, 2, 7] {
        let other = run(&c, size);
        for model in c.models.keys() {
            assert_eq!(
                end_state(&c, model, &other[model]),
                end_state(&c, model, &reference[model]),
                "{model} differs with batches of {size}"
            );
        }
    }
}
