//! Hosting native sink tasks beside the jobs: after the jobs on a bounded run (the embedded
//! target, `--until-caught-up`), or on threads of their own until a stop on a long-running one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use crate::compile::CompiledProject;
use crate::project::SinkDecl;
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
            let r = run_with_retries(cp, s, client, SinkRun::UntilCaughtUp, control, fresh);
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
            let r = run_with_retries(&cp, &sink, &client, SinkRun::UntilStopped, &control, false);
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

/// Runs a sink task again after an error (a broker not ready, a coordinator moving, a full
/// disk), with backoff: a restart is safe, it resumes after the closed files. A long-running
/// sink retries until stopped; a bounded one gives up after five attempts. The outcome is the
/// last attempt's.
fn run_with_retries(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    let mut backoff = Duration::from_secs(1);
    // Only the first attempt of an embedded run starts fresh: later ones resume its files.
    let mut fresh = fresh;
    let mut attempt = 1;
    loop {
        let e = match run_sink(cp, sink, client, how, control, fresh) {
            Ok(o) => return Ok(o),
            Err(e) => e,
        };
        if (how == SinkRun::UntilCaughtUp && attempt >= 5) || control.stop.load(Ordering::SeqCst) {
            return Err(e);
        }
        eprintln!("[sink {name}] {e}; retrying in {} s", backoff.as_secs());
        let until = Instant::now() + backoff;
        while Instant::now() < until && !control.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        fresh = false;
        attempt += 1;
    }
}

/// Waits for the sink threads.
pub fn join_sinks(handles: Vec<(String, JoinHandle<Result<SinkOutcome, String>>)>) -> Vec<SinkResult> {
    handles
        .into_iter()
        .map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err("the sink thread panicked".to_string()))))
        .collect()
}
