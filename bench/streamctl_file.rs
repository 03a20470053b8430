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
use streamctl::project::config::RelationKind;
use streamctl::project::Project;
use streamctl::runtime::codec::{encode_output, InputCodec, Record};
use streamctl::runtime::job::{Job, OutputBatch};
use streamctl::runtime::watermark::WatermarkTracker;

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
        Project::load(&root, &mut diags).map_err(|_| format!("cannot load the project at {}", root.display()))?;
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    if cp.diagnostics.has_errors() {
        return Err(format!("the project has errors: {:?}", cp.diagnostics.sorted()));
    }
    let m = cp.models.get(model).ok_or(format!("no model `{model}`"))?;
    let mut job = Job::new(m, streamctl::runtime::task_context()).map_err(|e| e.to_string())?;
    let codecs: Vec<InputCodec> = m.inputs.iter().filter_map(|id| InputCodec::for_input(&cp, id)).collect();
    let streams: Vec<NodeId> = codecs.iter().filter(|c| c.kind == RelationKind::Stream).map(|c| c.id.clone()).collect();
    let mut tracker = WatermarkTracker::new(Duration::from_secs(3600));
    let (mut records_in, mut records_out, mut late) = (0u64, 0u64, 0u64);

    let write = |outs: &[OutputBatch], out: &mut BufWriter<std::fs::File>| -> Result<u64, String> {
        let mut n = 0;
        for o in outs {
            for r in encode_output(o, m).map_err(|e| e.to_string())? {
                if let Some(v) = r.value {
                    out.write_all(&v).and_then(|_| out.write_all(b"\n")).map_err(|e| e.to_string())?;
                }
                n += 1;
            }
        }
        Ok(n)
    };

    for (input, file) in &inputs {
        let codec = codecs
            .iter()
            .find(|c| c.id == NodeId::Source(input.clone()))
            .ok_or(format!("`{input}` is not an input of `{model}`"))?;
        let mut lines =
            BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?).lines();
        let mut offset = 0i64;
        loop {
            let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
            for line in lines.by_ref() {
                let line = line.map_err(|e| format!("{file}: {e}"))?;
                batch.push(Record {
                    partition: 0,
                    offset,
                    timestamp: 0,
                    key: None,
                    value: Some(line.into_bytes()),
                    headers: Vec::new(),
                });
                offset += 1;
                if batch.len() == BATCH {
                    break;
                }
            }
            if batch.is_empty() {
                break;
            }
            records_in += batch.len() as u64;
            let decoded = codec.decode(&batch);
            if let Some(bad) = decoded.bad.first() {
                return Err(format!("bad record at line {}: {}", batch[bad.index].offset + 1, bad.reason));
            }
            let row_wms = streamctl::runtime::bounded::observe_rows(&mut tracker, codec, &decoded, &batch, &streams);
            let pushed = rt
                .block_on(job.push(&codec.id, &decoded.batch, decoded.deletes.clone(), row_wms.as_deref()))
                .map_err(|e| e.to_string())?;
            late += pushed.late.len() as u64;
            records_out += write(&pushed.outputs, &mut out)?;
            let wm = tracker.watermark(&streams);
            if wm != i64::MIN {
                records_out += write(&rt.block_on(job.advance_watermark(wm)).map_err(|e| e.to_string())?, &mut out)?;
            }
        }
    }
    // End of input: every window closes.
    records_out += write(&rt.block_on(job.advance_watermark(i64::MAX)).map_err(|e| e.to_string())?, &mut out)?;
    out.flush().map_err(|e| e.to_string())?;
    println!("{records_in} {records_out} {late}");
    Ok(())
}
