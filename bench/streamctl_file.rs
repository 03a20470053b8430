//! streamctl's engine without a broker, for the engine-only comparison with Flink (which has no
//! Kafka connector here): compiles a project, then runs one model's job over JSON Lines files
//! (one JSON value per line) through the library's runtime, the same decoding, operators,
//! watermark tracking and output encoding as `streamctl run`, in micro-batches of 10,000
//! records (`streamctl run`'s default). Inputs are read in the order given, each file to its end
//! (give tables first: a job reads its tables before its streams). At the end of input every
//! window is closed, as Flink does at the end of a bounded source. Output values go to OUT as
//! JSON Lines.
//!
//! Usage: streamctl-file PROJECT_DIR MODEL OUT INPUT=FILE [INPUT=FILE ...]
//! (INPUT is a source name such as `nexmark.bid`). Prints `records_in records_out late`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use streamctl::diagnostics::Diagnostics;
use streamctl::graph::NodeId;
use streamctl::project::Project;
use streamctl::runtime::codec::Record;
use streamctl::runtime::driver::{BatchOutcome, MicroBatchDriver};

const BATCH: usize = 10_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("streamctl-file: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: streamctl-file PROJECT_DIR MODEL OUT INPUT=FILE [INPUT=FILE ...]".into());
    }
    let root = PathBuf::from(&args[1]);
    let model = &args[2];
    let mut out =
        BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[3]).map_err(|e| format!("{}: {e}", args[3]))?);
    let inputs: Vec<(String, String)> = args[4..]
        .iter()
        .map(|a| a.split_once('=').map(|(i, f)| (i.to_string(), f.to_string())).ok_or(format!("not INPUT=FILE: {a}")))
        .collect::<Result<_, _>>()?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut diags = Diagnostics::new();
    let project =
        Project::load(&root, &mut diags).ok_or_else(|| format!("cannot load the project at {}", root.display()))?;
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    if cp.diagnostics.has_errors() {
        return Err(format!("the project has errors: {:?}", cp.diagnostics.sorted()));
    }
    // `streamctl run`'s driver: decoding, operators, watermark, output encoding.
    let mut driver =
        MicroBatchDriver::new(&cp, model, streamctl::runtime::task_context(), Duration::from_secs(3600), None)
            .map_err(|e| e.to_string())?;
    let (mut records_in, mut records_out, mut late) = (0u64, 0u64, 0u64);

    let mut write = |batch: BatchOutcome| -> Result<(), String> {
        if let Some(d) = batch.dead_letters.iter().find(|d| d.reason != streamctl::runtime::driver::LATE_REASON) {
            return Err(format!("bad record at line {}: {}", d.record.offset + 1, d.reason));
        }
        late += batch.late;
        for r in batch.outputs {
            if let Some(v) = r.value {
                out.write_all(&v).and_then(|_| out.write_all(b"\n")).map_err(|e| e.to_string())?;
            }
            records_out += 1;
        }
        Ok(())
    };

    for (input, file) in &inputs {
        let id = NodeId::Source(input.clone());
        if !driver.codecs().any(|c| c.id == id) {
            return Err(format!("`{input}` is not an input of `{model}`"));
        }
        let mut lines =
            BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?).lines();
        let mut offset = 0i64;
        loop {
            let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
            for line in lines.by_ref() {
                let line = line.map_err(|e| format!("{file}: {e}"))?;
                batch.push(Record { partition: 0, offset, value: Some(line.into_bytes().into()), ..Record::default() });
                offset += 1;
                if batch.len() == BATCH {
                    break;
                }
            }
            if batch.is_empty() {
                break;
            }
            records_in += batch.len() as u64;
            let mut outcome = BatchOutcome::default();
            rt.block_on(driver.process(&id, &batch, &mut outcome)).map_err(|e| e.to_string())?;
            rt.block_on(driver.advance_watermark(&mut outcome)).map_err(|e| e.to_string())?;
            write(outcome)?;
        }
    }
    // End of input: every window closes.
    let mut outcome = BatchOutcome::default();
    rt.block_on(driver.advance_to(i64::MAX, &mut outcome)).map_err(|e| e.to_string())?;
    write(outcome)?;
    out.flush().map_err(|e| e.to_string())?;
    println!("{records_in} {records_out} {late}");
    Ok(())
}
