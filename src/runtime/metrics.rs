//! Prometheus metrics of the jobs a `streamctl run` hosts, and the HTTP endpoint that serves them
//! (`--metrics-addr`): `/metrics` in the Prometheus text format, `/healthz` (200 while no hosted
//! job has failed, 503 otherwise).
//!
//! The worker reports through a [`JobMetrics`] handle (one per job): a micro-batch read and what
//! it wrote, a checkpoint's duration, the partitions' positions, ownership changes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    job: String,
    topic: String,
    partition: i32,
}

/// Where a hosted job stands, for `/healthz` and `streamctl_job_running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Another worker holds its lease (or it has not got it yet).
    StandingBy,
    Running,
    /// Caught up (`--until-caught-up`) or stopped on request.
    Finished,
    /// Stopped with an error.
    Failed,
}

fn batch_records() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 10))
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The metrics of every job of one run.
pub struct Metrics {
    registry: Registry,
    records_in: Family<JobLabel, Counter>,
    records_out: Family<JobLabel, Counter>,
    bytes_in: Family<JobLabel, Counter>,
    bytes_out: Family<JobLabel, Counter>,
    bad: Family<JobLabel, Counter>,
    dead_lettered: Family<JobLabel, Counter>,
    late: Family<JobLabel, Counter>,
    checkpoints: Family<JobLabel, Counter>,
    ownership_changes: Family<JobLabel, Counter>,
    running: Family<JobLabel, Gauge>,
    watermark: Family<JobLabel, Gauge<f64, AtomicU64>>,
    lag: Family<PartitionLabels, Gauge>,
    batch_size: Family<JobLabel, Histogram, fn() -> Histogram>,
    batch_seconds: Family<JobLabel, Histogram, fn() -> Histogram>,
    checkpoint_seconds: Family<JobLabel, Histogram, fn() -> Histogram>,
    states: Mutex<BTreeMap<String, JobState>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("streamctl"),
            records_in: Family::default(),
            records_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            bad: Family::default(),
            dead_lettered: Family::default(),
            late: Family::default(),
            checkpoints: Family::default(),
            ownership_changes: Family::default(),
            running: Family::default(),
            watermark: Family::default(),
            lag: Family::default(),
            batch_size: Family::new_with_constructor(batch_records),
            batch_seconds: Family::new_with_constructor(seconds),
            checkpoint_seconds: Family::new_with_constructor(seconds),
            states: Mutex::new(BTreeMap::new()),
        };
        let r = &mut m.registry;
        r.register("records_in", "Input records read", m.records_in.clone());
        r.register("records_out", "Output records produced", m.records_out.clone());
        r.register("bytes_in", "Bytes of input record values read", m.bytes_in.clone());
        r.register("bytes_out", "Bytes of output record values produced", m.bytes_out.clone());
        r.register("bad_records", "Input records that could not be decoded", m.bad.clone());
        r.register("dead_lettered", "Records written to a dead-letter topic (bad or late)", m.dead_lettered.clone());
        r.register("late_records", "Records whose windows had all closed", m.late.clone());
        r.register("checkpoints", "Checkpoints written", m.checkpoints.clone());
        r.register("ownership_changes", "Times this worker took or lost a job's lease", m.ownership_changes.clone());
        r.register("job_running", "1 while this worker runs the job (holds its lease), else 0", m.running.clone());
        r.register("watermark_timestamp_seconds", "The job's event-time watermark (Unix time)", m.watermark.clone());
        r.register("consumer_lag", "Records of an input partition not read yet", m.lag.clone());
        r.register("batch_records", "Records per micro-batch", m.batch_size.clone());
        r.register("batch_seconds", "Time to process a micro-batch and produce its outputs", m.batch_seconds.clone());
        r.register(
            "checkpoint_seconds",
            "Time to flush outputs, write a checkpoint and commit offsets",
            m.checkpoint_seconds.clone(),
        );
        m
    }

    /// The handle a job reports through.
    pub fn job(self: &Arc<Self>, model: &str) -> JobMetrics {
        let label = JobLabel { job: model.to_string() };
        // Every series of the job exists from the start (at 0), so rates work from the first scrape.
        for f in [
            &self.records_in,
            &self.records_out,
            &self.bytes_in,
            &self.bytes_out,
            &self.bad,
            &self.dead_lettered,
            &self.late,
            &self.checkpoints,
            &self.ownership_changes,
        ] {
            let _ = f.get_or_create(&label);
        }
        let _ = self.running.get_or_create(&label);
        self.set_state(model, JobState::StandingBy, true);
        JobMetrics { metrics: self.clone(), label }
    }

    fn set_state(&self, model: &str, state: JobState, only_if_new: bool) {
        if let Ok(mut s) = self.states.lock() {
            if only_if_new && s.contains_key(model) {
                return;
            }
            s.insert(model.to_string(), state);
        }
        let running = i64::from(state == JobState::Running);
        self.running.get_or_create(&JobLabel { job: model.to_string() }).set(running);
    }

    /// Each hosted job's state.
    pub fn states(&self) -> BTreeMap<String, JobState> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut open_metrics = String::new();
        if prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry).is_err() {
            return String::new();
        }
        prometheus_text(&open_metrics)
    }

    /// Serves `/metrics` and `/healthz` on `addr` from a thread of its own. Returns the address
    /// bound (useful with port 0).
    pub fn serve(self: &Arc<Self>, addr: &str) -> Result<std::net::SocketAddr, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let metrics = self.clone();
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = metrics.answer(stream);
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(bound)
    }

    fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        reader.read_line(&mut request)?;
        // The headers are read (and ignored) before answering: closing a socket with unread
        // input would reset the connection under the answer.
        let mut header = String::new();
        while reader.read_line(&mut header)? > 2 {
            header.clear();
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let (status, content_type, body) = match path.split('?').next().unwrap_or("/") {
            "/metrics" => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", self.encode()),
            "/healthz" => {
                let states = self.states();
                let failed: Vec<&String> =
                    states.iter().filter(|(_, s)| **s == JobState::Failed).map(|(j, _)| j).collect();
                let body: String = states.iter().map(|(j, s)| format!("{j}: {}\n", state_name(*s))).collect();
                if failed.is_empty() {
                    ("200 OK", "text/plain; charset=utf-8", body)
                } else {
                    ("503 Service Unavailable", "text/plain; charset=utf-8", body)
                }
            }
            _ => ("404 Not Found", "text/plain; charset=utf-8", "/metrics or /healthz\n".to_string()),
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()
    }
}

/// OpenMetrics text (what the crate writes) as the Prometheus text format that every scraper
/// and `promtool check metrics` read: a counter's HELP and TYPE name its `_total` samples, and
/// there is no `# EOF`.
fn prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> =
        open_metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::StandingBy => "standing by",
        JobState::Running => "running",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
    }
}

/// One job's handle on the run's metrics.
#[derive(Clone, Debug)]
pub struct JobMetrics {
    metrics: Arc<Metrics>,
    label: JobLabel,
}

/// What one micro-batch read and wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchCounts {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    pub bad: u64,
    pub dead_lettered: u64,
    pub late: u64,
}

impl JobMetrics {
    /// A micro-batch (or a watermark move's outputs) and how long it took.
    pub fn batch(&self, c: BatchCounts, took: Option<Duration>) {
        let m = &self.metrics;
        let l = &self.label;
        m.records_in.get_or_create(l).inc_by(c.records_in);
        m.bytes_in.get_or_create(l).inc_by(c.bytes_in);
        m.records_out.get_or_create(l).inc_by(c.records_out);
        m.bytes_out.get_or_create(l).inc_by(c.bytes_out);
        m.bad.get_or_create(l).inc_by(c.bad);
        m.dead_lettered.get_or_create(l).inc_by(c.dead_lettered);
        m.late.get_or_create(l).inc_by(c.late);
        if let Some(t) = took {
            m.batch_size.get_or_create(l).observe(c.records_in as f64);
            m.batch_seconds.get_or_create(l).observe(t.as_secs_f64());
        }
    }

    pub fn checkpoint(&self, took: Duration) {
        self.metrics.checkpoints.get_or_create(&self.label).inc();
        self.metrics.checkpoint_seconds.get_or_create(&self.label).observe(took.as_secs_f64());
    }

    /// Input partitions as (topic, partition, records not read yet), and the watermark.
    pub fn positions<'a>(&self, lag: impl IntoIterator<Item = (&'a str, i32, i64)>, watermark: Option<i64>) {
        for (topic, partition, behind) in lag {
            let labels = PartitionLabels { job: self.label.job.clone(), topic: topic.to_string(), partition };
            self.metrics.lag.get_or_create(&labels).set(behind.max(0));
        }
        if let Some(w) = watermark {
            self.metrics.watermark.get_or_create(&self.label).set(w as f64 / 1000.0);
        }
    }

    /// The job's state changed; taking or losing the lease counts as an ownership change.
    pub fn state(&self, state: JobState) {
        let before = self.metrics.states().get(&self.label.job).copied();
        let owner_change = (before == Some(JobState::Running)) != (state == JobState::Running);
        if owner_change && matches!(state, JobState::Running | JobState::StandingBy) {
            self.metrics.ownership_changes.get_or_create(&self.label).inc();
        }
        self.metrics.set_state(&self.label.job, state, false);
    }
}
