//! The example project's models run over its sample data, offline, with the runtime's own
//! operators. Expected figures come from `example-project/data/generate.py`, which computes
//! them independently of streamctl while it generates the data.

use std::collections::BTreeMap;
use std::path::Path;

use streamctl::compile::{compile, CompiledProject};
use streamctl::diagnostics::Diagnostics;
use streamctl::project::Project;
use streamctl::runtime::bounded::{run_project_on_samples, BoundedOptions, RunResult};

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
    let task = datafusion::prelude::SessionContext::new().task_ctx();
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
        eprintln!("{name}: {} outputs, {} dead letters, {} skipped, {} late", r.outputs.len(), r.dead_letters.len(), r.skipped, r.late);
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

/// The latest row per key for tables (the changelog's end state), every row for streams; floats
/// rounded so that sums added up in another order compare equal.
fn end_state(c: &CompiledProject, model: &str, r: &RunResult) -> Vec<String> {
    fn round(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                serde_json::json!(format!("{:.6}", n.as_f64().unwrap_or_default()))
            }
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), round(v))).collect::<serde_json::Map<_, _>>().into(),
            other => other.clone(),
        }
    }
    let m = &c.models[model];
    let mut out: Vec<String> = if m.kind == streamctl::project::config::RelationKind::Table {
        let mut latest: BTreeMap<Vec<u8>, String> = BTreeMap::new();
        for o in &r.outputs {
            let v: serde_json::Value = serde_json::from_slice(o.value.as_ref().unwrap()).unwrap();
            latest.insert(o.key.clone().unwrap_or_default(), round(&v).to_string());
        }
        latest.into_values().collect()
    } else {
        r.outputs.iter().map(|o| round(&serde_json::from_slice(o.value.as_ref().unwrap()).unwrap()).to_string()).collect()
    };
    out.sort();
    out
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
