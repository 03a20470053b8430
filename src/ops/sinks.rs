//! Hosting native sink tasks beside the jobs: after the jobs on a bounded run (the embedded
//! target, `--until-caught-up`), or on threads of their own until a stop on a long-running one.

use std::sync::Arc;
use std::thread::JoinHandle;

use rdkafka::config::ClientConfig;

use crate::compile::CompiledProject;
use crate::runtime::worker::RunControl;
use crate::sinks::{native_sinks, run_sink, SinkOutcome, SinkRun};

/// A sink task's result, by sink name.
pub type SinkResult = (String, Result<SinkOutcome, String>);

/// Delivers, one sink after another, what the selected models' topics hold now. `fresh`: the
/// broker started empty (embedded), so earlier deliveries are replaced.
pub fn deliver_caught_up(
    cp: &CompiledProject,
    models: &[String],
    client: &ClientConfig,
    control: &RunControl,
    fresh: bool,
) -> Vec<SinkResult> {
    native_sinks(cp, models)
        .into_iter()
        .map(|s| {
            let r = run_sink(cp, s, client, SinkRun::UntilCaughtUp, control, fresh);
            if let Err(e) = &r {
                eprintln!("[sink {}] stopped: {e}", s.sink.name);
            }
            (s.sink.name.clone(), r)
        })
        .collect()
}

/// Starts one thread per sink of the selected models, each delivering until `control` stops it.
pub fn spawn_sinks(
    cp: &Arc<CompiledProject>,
    models: &[String],
    client: &ClientConfig,
    control: &Arc<RunControl>,
) -> Vec<(String, JoinHandle<Result<SinkOutcome, String>>)> {
    let mut out = Vec::new();
    for s in native_sinks(cp, models) {
        let name = s.sink.name.clone();
        let (cp, client, control, sink) = (cp.clone(), client.clone(), control.clone(), s.clone());
        let spawned = std::thread::Builder::new().name(format!("sink-{name}")).spawn(move || {
            let r = run_sink(&cp, &sink, &client, SinkRun::UntilStopped, &control, false);
            if let Err(e) = &r {
                eprintln!("[sink {}] stopped: {e}", sink.sink.name);
            }
            r
        });
        match spawned {
            Ok(h) => out.push((name, h)),
            Err(e) => eprintln!("[sink {name}] cannot start its thread: {e}"),
        }
    }
    out
}

/// Waits for the sink threads.
pub fn join_sinks(handles: Vec<(String, JoinHandle<Result<SinkOutcome, String>>)>) -> Vec<SinkResult> {
    handles
        .into_iter()
        .map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err("the sink thread panicked".to_string()))))
        .collect()
}
