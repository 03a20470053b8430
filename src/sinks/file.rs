//! The file sink: records written to files in a directory, one open part file per partition.
//!
//! A part file `p<partition>-<first offset>.jsonl.part` is renamed to
//! `p<partition>-<first offset>-<last offset>.jsonl` when it is closed (size, age, or the end of
//! the run), after its bytes are synced; only then are the offsets committed. On start, part
//! files are removed (their records were never committed, so they are read again) and the
//! closed files say where each partition resumes: a closed file is never rewritten or repeated.
//! Parquet files (`.parquet`, `.parquet.part`) follow the same rules; a part gets its footer
//! when it is closed, so a file under its closed name is always a whole Parquet file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "parquet")]
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "parquet")]
use super::parquet::{ParquetFormat, ParquetPart};

/// Default size at which a file is closed.
pub const DEFAULT_ROLL_BYTES: u64 = 64 * 1024 * 1024;
/// Default age at which a file is closed.
pub const DEFAULT_ROLL_SECONDS: u64 = 60;

/// The extensions of closed files, by format; a part file adds `.part`.
const EXTENSIONS: [&str; 2] = [".jsonl", ".parquet"];
const PART: &str = ".part";

/// How a sink's files are written.
#[derive(Clone)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Parquet with these columns.
    #[cfg(feature = "parquet")]
    Parquet(Arc<ParquetFormat>),
}

impl Format {
    fn extension(&self) -> &'static str {
        match self {
            Format::Jsonl => EXTENSIONS[0],
            #[cfg(feature = "parquet")]
            Format::Parquet(_) => EXTENSIONS[1],
        }
    }
}

/// What a file name in a sink directory stands for.
#[derive(Debug, PartialEq, Eq)]
enum FileName {
    Closed { partition: i32, first: i64, last: i64 },
    Part,
}

fn closed_name(partition: i32, first: i64, last: i64, ext: &str) -> String {
    format!("p{partition}-{first:019}-{last:019}{ext}")
}

fn part_name(partition: i32, first: i64, ext: &str) -> String {
    format!("p{partition}-{first:019}{ext}{PART}")
}

/// Only names this sink writes are recognized (in either format: the closed files of a sink
/// whose format changed still say where it resumes); other files in the directory are left alone.
fn parse_name(name: &str) -> Option<FileName> {
    let numbers = |s: &str| -> Option<Vec<i64>> {
        s.strip_prefix('p')?.split('-').map(|n| n.parse::<i64>().ok()).collect::<Option<Vec<i64>>>()
    };
    fn ext_of(n: &str) -> Option<&str> {
        EXTENSIONS.iter().find_map(|e| n.strip_suffix(e))
    }
    if let Some(stem) = name.strip_suffix(PART).and_then(ext_of) {
        return (numbers(stem)?.len() == 2).then_some(FileName::Part);
    }
    match numbers(ext_of(name)?)?.as_slice() {
        [p, first, last] => Some(FileName::Closed { partition: i32::try_from(*p).ok()?, first: *first, last: *last }),
        _ => None,
    }
}

/// The writer of an open part file.
enum Out {
    Jsonl(BufWriter<File>),
    #[cfg(feature = "parquet")]
    Parquet(Box<ParquetPart>),
}

struct PartFile {
    path: PathBuf,
    first: i64,
    last: i64,
    bytes: u64,
    opened: Instant,
    out: Out,
}

/// The lock a sink's process holds on its directory while it delivers.
const LOCK_FILE: &str = ".streamctl-sink.lock";

/// Takes the directory's lock, so one process at a time writes it (the operating system
/// releases it when the process dies, even by SIGKILL). `Ok(None)`: another process holds it.
pub fn lock_dir(dir: &Path) -> Result<Option<File>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The files of one file sink.
pub struct FileWriter {
    dir: PathBuf,
    format: Format,
    roll_bytes: u64,
    roll_after: Duration,
    open: BTreeMap<i32, PartFile>,
    /// Files closed by this writer, in the order they were closed.
    pub closed: Vec<PathBuf>,
}

/// What opening a sink directory found.
pub struct Recovered {
    /// Per partition, the offset after the last record of its newest closed file.
    pub next_offsets: BTreeMap<i32, i64>,
    /// Unfinished part files removed (their records are read again).
    pub discarded_parts: usize,
    /// Closed files removed because `fresh` was asked.
    pub removed_closed: usize,
}

impl FileWriter {
    /// Opens (creating) `dir`. `fresh`: the records' offsets start over (the embedded broker is
    /// new on every run), so earlier closed files are removed instead of resumed after.
    pub fn open(
        dir: &Path,
        format: Format,
        roll_bytes: u64,
        roll_after: Duration,
        fresh: bool,
    ) -> Result<(FileWriter, Recovered), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut rec = Recovered { next_offsets: BTreeMap::new(), discarded_parts: 0, removed_closed: 0 };
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let Some(kind) = name.to_str().and_then(parse_name) else { continue };
            let path = entry.path();
            let remove =
                |path: &Path| std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()));
            match kind {
                FileName::Part => {
                    remove(&path)?;
                    rec.discarded_parts += 1;
                }
                FileName::Closed { .. } if fresh => {
                    remove(&path)?;
                    rec.removed_closed += 1;
                }
                FileName::Closed { partition, last, .. } => {
                    let next = rec.next_offsets.entry(partition).or_insert(last + 1);
                    *next = (*next).max(last + 1);
                }
            }
        }
        let writer = FileWriter {
            dir: dir.to_path_buf(),
            format,
            roll_bytes: roll_bytes.max(1),
            roll_after,
            open: BTreeMap::new(),
            closed: Vec::new(),
        };
        Ok((writer, rec))
    }

    /// Appends the row of the record at `offset` of `partition`: one JSON object (without a
    /// newline), a line of a JSON Lines file or a row of a Parquet file.
    pub fn write(&mut self, partition: i32, offset: i64, line: &[u8]) -> Result<(), String> {
        let part = match self.open.entry(partition) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let path = self.dir.join(part_name(partition, offset, self.format.extension()));
                let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                let out = match &self.format {
                    Format::Jsonl => Out::Jsonl(BufWriter::new(file)),
                    #[cfg(feature = "parquet")]
                    Format::Parquet(f) => Out::Parquet(Box::new(
                        ParquetPart::new(file, f.clone()).map_err(|e| format!("{}: {e}", path.display()))?,
                    )),
                };
                e.insert(PartFile { path, first: offset, last: offset, bytes: 0, opened: Instant::now(), out })
            }
        };
        let w = |r: std::io::Result<()>| r.map_err(|e| format!("cannot write {}: {e}", part.path.display()));
        match &mut part.out {
            Out::Jsonl(out) => {
                w(out.write_all(line))?;
                w(out.write_all(b"\n"))?;
                part.bytes += line.len() as u64 + 1;
            }
            #[cfg(feature = "parquet")]
            Out::Parquet(out) => {
                out.write(offset, line)
                    .map_err(|e| format!("{} of partition {partition}: {e}", part.path.display()))?;
                part.bytes = out.size();
            }
        }
        part.last = offset;
        Ok(())
    }

    /// The offset of the first record in the open part file of `partition`.
    pub fn first_open(&self, partition: i32) -> Option<i64> {
        self.open.get(&partition).map(|f| f.first)
    }

    /// Closes the files that are large or old enough. Returns, per partition closed, the
    /// offset to commit (after the last record of the closed file).
    pub fn roll_due(&mut self, now: Instant) -> Result<BTreeMap<i32, i64>, String> {
        let due: Vec<i32> = self
            .open
            .iter()
            .filter(|(_, f)| f.bytes >= self.roll_bytes || now.duration_since(f.opened) >= self.roll_after)
            .map(|(p, _)| *p)
            .collect();
        self.close(&due)
    }

    /// Closes every open file (the run ends). Returns the offsets to commit.
    pub fn finish(&mut self) -> Result<BTreeMap<i32, i64>, String> {
        let all: Vec<i32> = self.open.keys().copied().collect();
        self.close(&all)
    }

    fn close(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, String> {
        let mut commits = BTreeMap::new();
        for p in partitions {
            let Some(part) = self.open.remove(p) else { continue };
            let path = part.path.clone();
            let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
            let file = match part.out {
                Out::Jsonl(out) => out.into_inner().map_err(|e| io("write", e.into_error()))?,
                #[cfg(feature = "parquet")]
                Out::Parquet(out) => out.finish().map_err(|e| format!("{}: {e}", path.display()))?,
            };
            // The bytes are on disk before the name says the file is complete.
            file.sync_all().map_err(|e| io("sync", e))?;
            let closed = self.dir.join(closed_name(*p, part.first, part.last, self.format.extension()));
            std::fs::rename(&path, &closed).map_err(|e| io("rename", e))?;
            // The rename itself is durable before the offsets are committed.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            self.closed.push(closed);
            commits.insert(*p, part.last + 1);
        }
        Ok(commits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: &str = ".jsonl";

    fn lines(dir: &Path) -> Vec<(String, String)> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let text = std::fs::read_to_string(dir.join(&n)).unwrap();
                (n, text)
            })
            .collect()
    }

    #[test]
    fn names_round_trip_and_foreign_files_are_ignored() {
        assert_eq!(
            parse_name(&closed_name(3, 10, 42, ".jsonl")),
            Some(FileName::Closed { partition: 3, first: 10, last: 42 })
        );
        assert_eq!(parse_name(&part_name(0, 7, ".parquet")), Some(FileName::Part));
        for foreign in [
            "notes.txt",
            "p1.jsonl",
            "p1-2-3-4.jsonl",
            "px-1-2.jsonl",
            "p1-a.jsonl.part",
            ".p1-1-2.jsonl",
            "p1-2.parquet.part.x",
            "p1-2-3.parquet.tmp",
        ] {
            assert_eq!(parse_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn files_roll_by_size_and_a_restart_resumes_after_the_closed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rec) = FileWriter::open(dir.path(), Format::Jsonl, 20, Duration::from_secs(3600), false).unwrap();
        assert!(rec.next_offsets.is_empty());
        std::fs::write(dir.path().join("README"), "not ours").unwrap();
        w.write(0, 5, br#"{"a":1}"#).unwrap();
        assert!(w.roll_due(Instant::now()).unwrap().is_empty(), "8 bytes is below 20");
        w.write(0, 6, br#"{"a":2}"#).unwrap();
        w.write(0, 7, br#"{"a":3}"#).unwrap();
        assert_eq!(w.roll_due(Instant::now()).unwrap(), BTreeMap::from([(0, 8)]));
        w.write(0, 9, br#"{"a":4}"#).unwrap();
        w.write(1, 0, br#"{"b":1}"#).unwrap();
        // A crash now: the open part files are discarded on restart, the closed file stays.
        drop(w);
        let (mut w, rec) = FileWriter::open(dir.path(), Format::Jsonl, 20, Duration::from_secs(3600), false).unwrap();
        assert_eq!(rec.discarded_parts, 2);
        assert_eq!(rec.next_offsets, BTreeMap::from([(0, 8)]));
        w.write(0, 9, br#"{"a":4}"#).unwrap();
        assert_eq!(w.finish().unwrap(), BTreeMap::from([(0, 10)]));
        assert_eq!(
            lines(dir.path()),
            vec![
                ("README".to_string(), "not ours".to_string()),
                (closed_name(0, 5, 7, J), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n".to_string()),
                (closed_name(0, 9, 9, J), "{\"a\":4}\n".to_string()),
            ]
        );
        // Fresh: the earlier files go, foreign files stay.
        let (_, rec) = FileWriter::open(dir.path(), Format::Jsonl, 20, Duration::from_secs(3600), true).unwrap();
        assert_eq!((rec.removed_closed, rec.next_offsets.len()), (2, 0));
        assert_eq!(lines(dir.path()).len(), 1);
    }

    #[test]
    fn files_roll_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = FileWriter::open(dir.path(), Format::Jsonl, 1 << 20, Duration::from_secs(60), false).unwrap();
        w.write(2, 0, b"{}").unwrap();
        assert!(w.roll_due(Instant::now()).unwrap().is_empty());
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(w.roll_due(later).unwrap(), BTreeMap::from([(2, 1)]));
        assert_eq!(w.closed, vec![dir.path().join(closed_name(2, 0, 0, J))]);
    }

    #[cfg(feature = "parquet")]
    #[test]
    fn parquet_parts_are_whole_files_once_closed_and_are_discarded_after_a_crash() {
        use datafusion::arrow::datatypes::DataType;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let rows = |path: &Path| -> usize {
            let r = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
            r.map(|b| b.unwrap().num_rows()).sum()
        };
        let format = || {
            let columns = [("a".to_string(), DataType::Int64)];
            let f = ParquetFormat::new(&columns, None, crate::project::config::ParquetCompression::Snappy);
            Format::Parquet(Arc::new(f))
        };
        let dir = tempfile::tempdir().unwrap();
        // A JSON Lines file of the sink before its format changed still says where it resumes.
        std::fs::write(dir.path().join(closed_name(0, 0, 4, J)), "{}\n").unwrap();
        let (mut w, rec) = FileWriter::open(dir.path(), format(), 1 << 20, Duration::from_secs(3600), false).unwrap();
        assert_eq!(rec.next_offsets, BTreeMap::from([(0, 5)]));
        for o in 5..8 {
            w.write(0, o, format!(r#"{{"a":{o}}}"#).as_bytes()).unwrap();
        }
        assert_eq!(w.finish().unwrap(), BTreeMap::from([(0, 8)]));
        let closed = dir.path().join(closed_name(0, 5, 7, ".parquet"));
        assert_eq!(w.closed, vec![closed.clone()]);
        assert_eq!(rows(&closed), 3);
        w.write(0, 8, br#"{"a":8}"#).unwrap();
        assert!(dir.path().join(part_name(0, 8, ".parquet")).exists());
        drop(w);
        let (_, rec) = FileWriter::open(dir.path(), format(), 1 << 20, Duration::from_secs(3600), false).unwrap();
        assert_eq!((rec.discarded_parts, rec.next_offsets), (1, BTreeMap::from([(0, 8)])));
    }
}
