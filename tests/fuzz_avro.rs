//! A mutation fuzzer over the Avro decode path as a job runs it (`InputCodec::decode`): Confluent
//! frames of Avro values, Avro keys of tombstones, and Debezium envelopes in Avro, written by the
//! codec from random rows, then mutated (bits flipped, bytes cut, appended, inserted, the schema
//! id or magic byte changed, random bytes) and decoded in micro-batches beside untouched ones.
//! Nothing may panic; every record is either a row or a bad record with a reason; every record
//! left untouched is a row, with the values it was written with.
//!
//! In `cargo test` it runs for a few seconds with a fixed seed. A longer run by hand:
//! `STREAMCTL_FUZZ_SECS=300 STREAMCTL_FUZZ_SEED=$RANDOM cargo test --test fuzz_avro -- --nocapture`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use streamctl::compile::{compile, CompiledProject};
use streamctl::diagnostics::Diagnostics;
use streamctl::graph::NodeId;
use streamctl::project::Project;
use streamctl::runtime::codec::{InputCodec, Record};

/// xorshift64*: deterministic, so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn compiled(fixture: &str) -> CompiledProject {
    let dir = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let mut diags = Diagnostics::new();
    let project = Project::load(Path::new(&dir), &mut diags).expect("the fixture loads");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cp = rt.block_on(compile(project, diags));
    assert!(!cp.diagnostics.has_errors(), "{fixture}: {:?}", cp.diagnostics);
    cp
}

/// A random value of a column of this SQL type name (and sometimes null).
fn random_value(rng: &mut Rng, ty: &str) -> Value {
    if rng.below(8) == 0 {
        return Value::Null;
    }
    match ty {
        "INT" => json!(rng.next() as i32),
        "BIGINT" => json!(rng.next() as i64 >> rng.below(60)),
        "DOUBLE" => json!((rng.next() % 1_000_000) as f64 / 8.0),
        _ => {
            let n = rng.below(12);
            let s: String = (0..n).map(|_| char::from(b' ' + rng.below(95) as u8)).collect();
            // Sometimes not ASCII.
            if rng.below(4) == 0 {
                json!(format!("{s}é✓"))
            } else {
                json!(s)
            }
        }
    }
}

/// One input to fuzz: a relation, its columns (data name, SQL type name), key columns, whether
/// it is a table (tombstones then carry keys).
struct Input {
    name: &'static str,
    codec: InputCodec,
    columns: Vec<(String, String)>,
    key: Vec<String>,
    /// The event time column: never null, never negative.
    event_time: Option<String>,
    table: bool,
}

fn inputs(cp_avro: &CompiledProject, cp_dbz: &CompiledProject) -> Vec<Input> {
    let mk = |cp: &CompiledProject, name: &'static str, source: &str| {
        let s = &cp.sources[source];
        Input {
            name,
            codec: InputCodec::for_input(cp, &NodeId::Source(source.to_string())).expect("a codec"),
            columns: s
                .decl
                .table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone().unwrap_or_default().to_uppercase()))
                .collect(),
            key: s.decl.table.key.clone(),
            event_time: s.decl.table.event_time.as_ref().map(|e| e.column.clone()),
            table: s.decl.table.kind == streamctl::project::config::RelationKind::Table,
        }
    };
    vec![
        mk(cp_avro, "avro stream (shop.orders)", "shop.orders"),
        mk(cp_avro, "avro table (shop.customers)", "shop.customers"),
        mk(cp_dbz, "debezium-avro table with avro keys (inventory.customers)", "inventory.customers"),
    ]
}

/// A good record of `input` and the row it stands for (`None`: a tombstone of that key).
fn good_record(rng: &mut Rng, input: &Input) -> (Record, Map<String, Value>, bool) {
    let mut row = Map::new();
    for (name, ty) in &input.columns {
        let v = random_value(rng, ty);
        // Key columns are never null (a tombstone is found by its key).
        let v = if v.is_null() && input.key.contains(name) { json!(rng.below(1000)) } else { v };
        let v = if input.event_time.as_ref() == Some(name) { json!(rng.below(1 << 40)) } else { v };
        row.insert(name.clone(), v);
    }
    let key = match input.key.as_slice() {
        [] => None,
        [one] => Some(serde_json::to_vec(&row[one]).unwrap()),
        many => {
            Some(serde_json::to_vec(&many.iter().map(|k| (k.clone(), row[k].clone())).collect::<Map<_, _>>()).unwrap())
        }
    };
    let key = key.map(|k| input.codec.key_from_json(&k).expect("a key is encoded"));
    let tombstone = input.table && rng.below(5) == 0;
    let value = if tombstone {
        None
    } else {
        Some(input.codec.value_from_json(&serde_json::to_vec(&row).unwrap()).expect("a row is encoded"))
    };
    (
        Record {
            partition: 0,
            offset: 0,
            timestamp: 1,
            key: key.map(Into::into),
            value: value.map(Into::into),
            headers: Vec::new(),
        },
        row,
        tombstone,
    )
}

/// Mutates bytes in one of the ways a broken producer or a corrupt log would.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    match rng.below(8) {
        0 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        2 => bytes.extend((0..1 + rng.below(6)).map(|_| rng.next() as u8)),
        3 => {
            let at = rng.below(bytes.len() + 1);
            bytes.insert(at, rng.next() as u8);
        }
        // Another schema id (known or not).
        4 if bytes.len() >= 5 => {
            let id = if rng.below(2) == 0 { rng.below(4) as u32 } else { rng.next() as u32 };
            bytes[1..5].copy_from_slice(&id.to_be_bytes());
        }
        5 if !bytes.is_empty() => bytes[0] = rng.next() as u8,
        6 => *bytes = (0..rng.below(24)).map(|_| rng.next() as u8).collect(),
        _ => {
            // Several flips.
            for _ in 0..1 + rng.below(4) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
            }
        }
    }
}

/// One micro-batch: records (some mutated), decoded; the checks of the module comment.
fn one_batch(rng: &mut Rng, input: &Input) -> Result<(), String> {
    let n = 1 + rng.below(12);
    let mut records = Vec::with_capacity(n);
    let mut untouched = Vec::new();
    for i in 0..n {
        let (mut r, row, tombstone) = good_record(rng, input);
        r.offset = i as i64;
        if rng.below(3) == 0 {
            let mutated = |rng: &mut _, b: &bytes::Bytes| {
                let mut v = b.to_vec();
                mutate(rng, &mut v);
                bytes::Bytes::from(v)
            };
            match (&r.value, &r.key) {
                (Some(v), _) => r.value = Some(mutated(rng, v)),
                (None, Some(k)) => r.key = Some(mutated(rng, k)),
                (None, None) => {}
            }
        } else {
            untouched.push((i, row, tombstone));
        }
        records.push(r);
    }
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| input.codec.decode(&records)))
        .map_err(|p| format!("panicked: {}", p.downcast_ref::<String>().cloned().unwrap_or_default()))?;
    if decoded.batch.num_rows() != decoded.rows.len() {
        return Err(format!("{} rows for {} record indexes", decoded.batch.num_rows(), decoded.rows.len()));
    }
    let mut seen: Vec<usize> = decoded.rows.iter().copied().chain(decoded.bad.iter().map(|b| b.index)).collect();
    seen.sort_unstable();
    if seen != (0..n).collect::<Vec<_>>() {
        return Err(format!("records not accounted for once each: rows {:?}, bad {:?}", decoded.rows, decoded.bad));
    }
    if let Some(b) = decoded.bad.iter().find(|b| b.reason.trim().is_empty()) {
        return Err(format!("bad record {} without a reason", b.index));
    }
    let rows = json_rows(&decoded.batch);
    for (i, row, tombstone) in untouched {
        let Some(j) = decoded.rows.iter().position(|r| *r == i) else {
            let why = decoded.bad.iter().find(|b| b.index == i).map(|b| b.reason.clone());
            return Err(format!("untouched record {i} was not a row: {why:?}"));
        };
        let got = &rows[j];
        for (name, want) in &row {
            if tombstone && !input.key.contains(name) {
                continue;
            }
            let have = got.get(&name.to_lowercase()).cloned().unwrap_or(Value::Null);
            let same = match (want, &have) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                _ => *want == have,
            };
            if !same {
                return Err(format!("record {i}: column {name} wrote {want}, read {have}"));
            }
        }
    }
    Ok(())
}

/// The rows of a batch as JSON objects (null columns left out).
fn json_rows(batch: &datafusion::arrow::array::RecordBatch) -> Vec<Map<String, Value>> {
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    w.write(batch).unwrap();
    w.finish().unwrap();
    let text = w.into_inner();
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn mutated_avro_records_never_panic_and_each_bad_one_has_a_reason() {
    let secs: u64 = std::env::var("STREAMCTL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("STREAMCTL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_a5c0);
    let (cp_avro, cp_dbz) = (compiled("avro"), compiled("debezium_avro"));
    let inputs = inputs(&cp_avro, &cp_dbz);
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut batches = 0u64;
    while Instant::now() < deadline || batches < 300 {
        let input = &inputs[batches as usize % inputs.len()];
        let state = rng.0;
        if let Err(e) = one_batch(&mut rng, input) {
            panic!("{}: batch {batches} (rng state {state:#x}, seed {seed}): {e}", input.name);
        }
        batches += 1;
    }
    eprintln!("fuzz_avro: {batches} batches in {secs} s, seed {seed}, no failure");
}
