//! A mutation fuzzer over project loading and validation: the example project and every broken
//! fixture are the seeds; each run copies one, mutates its YAML and SQL files (bytes flipped,
//! fragments of YAML, Jinja and SQL inserted, ranges deleted, lines duplicated or swapped) and
//! runs what `streamctl validate` runs, in process. Nothing may panic.
//!
//! In `cargo test` it runs for a few seconds with a fixed seed. A longer run by hand:
//! `STREAMCTL_FUZZ_SECS=600 STREAMCTL_FUZZ_SEED=$RANDOM cargo test --release --test fuzz_validate -- --nocapture`;
//! a crashing input is kept under `target/fuzz-crashes/`.

mod common;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::copy_dir;
use streamctl::diagnostics::Diagnostics;
use streamctl::jinja::Jinja;
use streamctl::project::target::TargetOverrides;
use streamctl::project::Project;

/// Fragments a mutation inserts: the syntax of every layer a project file goes through.
const FRAGMENTS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ ref('",
    "{{ source('soe', 'orders') }}",
    "{{ var('x') }}",
    "{{ config(materialized='table') }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}",
    "{{ m() }}",
    "{% for i in range(3) %}",
    "{% endfor %}",
    "{{ 'x' * 99999999 }}",
    "{{ env_var('NOPE') }}",
    "WINDOW TUMBLING (SIZE 1 HOUR)",
    "WINDOW HOPPING (SIZE 10 MINUTES, ADVANCE BY 3 MINUTES)",
    "WINDOW SESSION (5 SECONDS)",
    "GRACE PERIOD 0 DAYS",
    "SIZE 99999999999999999999 DAYS",
    "EMIT FINAL",
    "EMIT CHANGES",
    "GROUP BY 1",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "UNION ALL",
    "SELECT *",
    "COUNT(*)",
    "ROWTIME",
    "WINDOWSTART",
    "AS x",
    "', '",
    "(",
    ")",
    ",",
    ";",
    "'",
    "\"",
    "`",
    "-- c\n",
    "/*",
    "*/",
    "\n",
    "\n  ",
    "\n    - ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "~",
    "null",
    "&a ",
    "*a",
    "!!binary ",
    "<<: ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "version: 2\n",
    "name: ",
    "topic: ",
    "type: ",
    "columns: []",
    "key: [",
    "kind: table",
    "\t",
    "\u{feff}",
    "\u{0}",
    "é",
    "ü",
    "日本",
    "\u{202e}",
    "9223372036854775807",
    "-1",
    "0",
    "1e400",
    "NaN",
    "true",
    "..",
    "a/b",
    LONG_NAME,
];

/// Longer than Kafka's topic names may be.
const LONG_NAME: &str = "a_name_that_goes_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_\
                         and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_\
                         and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on";

/// xorshift64*: a reproducible stream from one seed, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("example-project")];
    let mut broken: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/broken"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    broken.sort();
    out.extend(broken);
    out
}

fn project_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "sql") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(7) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            1 | 2 => {
                let f = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, f.iter().copied());
            }
            3 => {
                let end = (at + rng.below(40)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 | 5 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                if rng.below(2) == 0 {
                    lines.insert(b, lines[a]);
                } else {
                    lines.swap(a, b);
                }
                bytes = lines.join("\n").into_bytes();
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// What `streamctl validate` runs: load, compile, unit tests against the compiled project, the
/// target in use.
fn validate(dir: &Path, rt: &tokio::runtime::Runtime) -> usize {
    let mut diags = Diagnostics::new();
    let Some(project) = Project::load(dir, &mut diags) else { return diags.error_count() };
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    let tests = streamctl::testing::check_tests(&cp);
    let target = cp.project.resolve_target(&TargetOverrides::default(), &Jinja::new(cp.project.config.vars.clone()));
    cp.diagnostics.error_count() + tests.len() + usize::from(target.is_err())
}

#[test]
fn mutated_projects_never_panic() {
    let secs: u64 = std::env::var("STREAMCTL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let seed: u64 = std::env::var("STREAMCTL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let mut rng = Rng(seed.max(1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let seeds = seeds();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut crashes, mut invalid) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let tmp = tempfile::tempdir().unwrap();
        // Half the runs start from the valid example, so mutations reach the later stages.
        let from = if rng.below(2) == 0 { &seeds[0] } else { &seeds[rng.below(seeds.len())] };
        copy_dir(from, tmp.path(), &["target", "data"]);
        let files = project_files(tmp.path());
        for _ in 0..1 + rng.below(2) {
            let f = &files[rng.below(files.len())];
            let bytes = mutate(&mut rng, std::fs::read(f).unwrap());
            std::fs::write(f, bytes).unwrap();
        }
        runs += 1;
        match std::panic::catch_unwind(AssertUnwindSafe(|| validate(tmp.path(), &rt))) {
            Ok(errors) => invalid += u64::from(errors > 0),
            Err(_) => {
                crashes += 1;
                let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/fuzz-crashes/{seed}-{runs}"));
                copy_dir(tmp.path(), &keep, &[]);
                eprintln!("crash: the project is kept in {}", keep.display());
            }
        }
    }
    eprintln!("fuzz: seed {seed}, {runs} runs in {secs} s, {invalid} invalid projects, {crashes} crashes");
    assert!(runs > 0);
    assert_eq!(crashes, 0, "validate panicked on {crashes} of {runs} mutated projects");
}
