//! The threads that run tasks in one process (`run --threads N`). A task is placed on the thread
//! running the fewest and stays there until it stops; each thread steps its tasks in turn (poll a
//! micro-batch, process, settle), with the batch wait shared among them so that a round over idle
//! tasks takes no longer than one task's wait. A task that fails restarts from its last checkpoint
//! after a pause that grows with each failure in a row (2 s up to 64 s), as long as the task is
//! still this process's; a bounded run (`until_caught_up`) stops at the first failure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use super::error::RunError;
use super::metrics::JobState;
use super::ownership::worker_id;
use super::tasks::TaskId;
use super::worker::{log, JobStats, KafkaJob, PreparedTask, Progress, RunControl, RunOptions, TaskStart};
use crate::compile::CompiledProject;
use crate::connectors::producer::RecordProducer;
use crate::connectors::task_input::InputConsumers;
use crate::graph::NodeId;

/// A task's name within a run: its model and task.
pub type TaskKey = (String, TaskId);

/// How a task ended in this process.
pub type TaskOutcome = (TaskKey, Result<JobStats, RunError>);

enum Command {
    Start {
        cp: Arc<CompiledProject>,
        key: TaskKey,
    },
    /// Stop the task with a final checkpoint; `done` is dropped once it has stopped.
    Stop {
        key: TaskKey,
        done: Sender<()>,
    },
}

/// Which tasks of each model must catch up before the model is done (`until_caught_up`).
#[derive(Default)]
struct Finishing {
    expected: BTreeMap<String, BTreeSet<TaskId>>,
    finished: BTreeMap<String, BTreeSet<TaskId>>,
}

/// The task threads of a process.
pub struct Pool {
    senders: Mutex<Vec<Sender<Command>>>,
    /// The thread each running task is on, and the tasks each thread has.
    placement: Mutex<(HashMap<TaskKey, usize>, Vec<usize>)>,
    threads: Mutex<Vec<JoinHandle<Vec<TaskOutcome>>>>,
    finishing: Arc<Mutex<Finishing>>,
    control: Arc<RunControl>,
}

/// What every task thread shares.
struct Shared {
    client: ClientConfig,
    opts: RunOptions,
    control: Arc<RunControl>,
    /// Writes the tasks' claims (outside any transaction).
    lease_producer: Option<Arc<RecordProducer>>,
    holder: String,
    finishing: Arc<Mutex<Finishing>>,
}

impl Pool {
    /// Starts `opts.threads` task threads (at least one).
    pub fn start(client: &ClientConfig, opts: &RunOptions, control: Arc<RunControl>) -> Result<Pool, RunError> {
        keep_freed_memory();
        let lease_producer = Some(Arc::new(RecordProducer::new(client).map_err(RunError::Setup)?));
        let finishing = Arc::new(Mutex::new(Finishing::default()));
        let holder = worker_id();
        let n = opts.threads.max(1);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::channel();
            let shared = Shared {
                client: client.clone(),
                opts: opts.clone(),
                control: control.clone(),
                lease_producer: lease_producer.clone(),
                holder: format!("{holder}/thread-{i}"),
                finishing: finishing.clone(),
            };
            let h = std::thread::Builder::new()
                .name(format!("tasks-{i}"))
                .spawn(move || run_thread(rx, shared))
                .map_err(|e| RunError::Setup(format!("cannot start a task thread: {e}")))?;
            senders.push(tx);
            threads.push(h);
        }
        Ok(Pool {
            senders: Mutex::new(senders),
            placement: Mutex::new((HashMap::new(), vec![0; n])),
            threads: Mutex::new(threads),
            finishing,
            control,
        })
    }

    /// A bounded run: `model` is done once these of its tasks have caught up.
    pub fn expect(&self, model: &str, tasks: impl IntoIterator<Item = TaskId>) {
        if let Ok(mut f) = self.finishing.lock() {
            f.expected.entry(model.to_string()).or_default().extend(tasks);
        }
    }

    /// A bounded run: the tasks of `model` caught up so far, here or (as its consumer group's
    /// committed offsets show) in another worker.
    pub fn finished(&self, model: &str) -> BTreeSet<TaskId> {
        self.finishing.lock().ok().and_then(|f| f.finished.get(model).cloned()).unwrap_or_default()
    }

    /// A bounded run: a task another worker runs has caught up there.
    pub fn caught_up_elsewhere(&self, model: &str, task: TaskId) {
        if let Ok(mut f) = self.finishing.lock() {
            f.finish(model, task, &self.control);
        }
    }

    /// Starts a task on the thread with the fewest.
    pub fn start_task(&self, cp: Arc<CompiledProject>, model: &str, task: TaskId) {
        let key = (model.to_string(), task);
        let Ok(mut placement) = self.placement.lock() else { return };
        if placement.0.contains_key(&key) {
            return;
        }
        let (map, load) = &mut *placement;
        let Some(thread) = (0..load.len()).min_by_key(|i| load[*i]) else { return };
        let sent = self
            .senders
            .lock()
            .ok()
            .and_then(|s| s.get(thread).map(|tx| tx.send(Command::Start { cp, key: key.clone() })));
        if let Some(Ok(())) = sent {
            load[thread] += 1;
            map.insert(key, thread);
        }
    }

    /// Stops a task with a final checkpoint and waits until it has stopped (a minute at most).
    pub fn stop_task(&self, model: &str, task: TaskId) {
        let key = (model.to_string(), task);
        let thread = match self.placement.lock() {
            Ok(mut p) => {
                let (map, load) = &mut *p;
                let Some(thread) = map.remove(&key) else { return };
                load[thread] = load[thread].saturating_sub(1);
                thread
            }
            Err(_) => return,
        };
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let sent = self
            .senders
            .lock()
            .ok()
            .and_then(|s| s.get(thread).map(|tx| tx.send(Command::Stop { key, done: done_tx })));
        if let Some(Ok(())) = sent {
            // The thread drops `done` once the task has stopped (or the thread has ended).
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
        }
    }

    /// No more tasks come: each thread ends once its tasks have (caught up or stopped), and their
    /// outcomes are returned.
    pub fn finish(&self) -> Vec<TaskOutcome> {
        if let Ok(mut s) = self.senders.lock() {
            s.clear();
        }
        let threads: Vec<_> = self.threads.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        let mut out = Vec::new();
        for h in threads {
            match h.join() {
                Ok(o) => out.extend(o),
                Err(_) => {
                    out.push(((String::new(), TaskId::Whole), Err(RunError::Setup("a task thread panicked".into()))))
                }
            }
        }
        out
    }
}

/// Has glibc's allocator keep freed memory for reuse instead of handing it back to the kernel.
/// librdkafka reads every fetch response (up to `fetch.max.bytes`, 24 MiB here) into a buffer of
/// its own. With glibc's defaults a buffer that large comes from `mmap`, or from heap
/// memory trimmed after the last one, so the kernel zeroes its pages anew for every response: on
/// q1 of `bench/scale.sh` that zeroing (`clear_page_erms`) was 17% of the samples, and some runs
/// took twice the CPU of others. The worker's memory then stays at its high-water mark.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::raw::c_int;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // glibc's malloc.h: M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3 (32 MiB is its largest).
        // SAFETY: mallopt only sets the allocator's parameters; any value is accepted or refused.
        unsafe {
            mallopt(-3, 32 << 20);
            mallopt(-1, c_int::MAX);
        }
    }
}

/// A task this thread runs, or waits to restart.
struct Slot {
    key: TaskKey,
    cp: Arc<CompiledProject>,
    job: Option<KafkaJob>,
    /// Counters carried over restarts.
    stats: JobStats,
    failures: u32,
    started: Instant,
    restart_at: Option<Instant>,
    /// A stop was asked for: whoever asked waits for this to be dropped.
    stop: Option<Sender<()>>,
    upstream: Vec<String>,
    /// The task's preparation, under way on a thread of its own.
    preparing: Option<JoinHandle<Result<PreparedTask, RunError>>>,
}

/// How many tasks a thread prepares at once.
const PREPARING_AT_ONCE: usize = 8;

fn run_thread(rx: Receiver<Command>, shared: Shared) -> Vec<TaskOutcome> {
    // The thread's tasks read their inputs through consumers they share.
    let mut inputs = InputConsumers::new(&shared.client);
    let mut slots: Vec<Slot> = Vec::new();
    let mut outcomes: Vec<TaskOutcome> = Vec::new();
    let mut open = true;
    loop {
        // Commands: wait for one while there is nothing to run.
        loop {
            let received = if slots.is_empty() && open {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        None
                    }
                }
            } else if open {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        None
                    }
                }
            } else {
                None
            };
            let Some(command) = received else { break };
            match command {
                Command::Start { cp, key } => {
                    let upstream = cp
                        .models
                        .get(&key.0)
                        .map(|m| {
                            m.inputs
                                .iter()
                                .filter_map(|i| if let NodeId::Model(n) = i { Some(n.clone()) } else { None })
                                .collect()
                        })
                        .unwrap_or_default();
                    let stats = JobStats { model: key.0.clone(), ..Default::default() };
                    let restart_at = Some(Instant::now());
                    let started = Instant::now();
                    slots.push(Slot {
                        key,
                        cp,
                        job: None,
                        stats,
                        failures: 0,
                        started,
                        restart_at,
                        stop: None,
                        upstream,
                        preparing: None,
                    });
                }
                Command::Stop { key, done } => match slots.iter_mut().find(|s| s.key == key) {
                    Some(s) => s.stop = Some(done),
                    None => drop(done),
                },
            }
        }
        let stopping_all = shared.control.stop.load(Ordering::SeqCst);
        if slots.is_empty() && (!open || stopping_all) {
            return outcomes;
        }
        let running = slots.iter().filter(|s| s.job.is_some()).count().max(1) as u32;
        let wait = (shared.opts.max_batch_wait / running).max(Duration::from_millis(5));
        let mut i = 0;
        while i < slots.len() {
            // Counted only for a task not running yet, off the path of the running ones.
            let may_prepare =
                slots[i].job.is_some() || slots.iter().filter(|s| s.preparing.is_some()).count() < PREPARING_AT_ONCE;
            match step(&mut slots[i], &shared, &mut inputs, wait, may_prepare) {
                None => i += 1,
                Some(result) => {
                    let slot = slots.swap_remove(i);
                    outcomes.push((slot.key, result));
                }
            }
        }
        // No task runs yet (each is being prepared or waits to restart): a pause, not a spin.
        if !slots.is_empty() && slots.iter().all(|s| s.job.is_none()) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// One step of a task: prepare it when due (`may_prepare`: on a thread of its own) and start it
/// once prepared, or run a micro-batch. `Some` once the task has ended here.
fn step(
    slot: &mut Slot,
    shared: &Shared,
    inputs: &mut InputConsumers,
    wait: Duration,
    may_prepare: bool,
) -> Option<Result<JobStats, RunError>> {
    let (model, task) = (slot.key.0.clone(), slot.key.1);
    let stopping = shared.control.stop.load(Ordering::SeqCst) || slot.stop.is_some();
    if slot.job.is_none() {
        if stopping {
            // A preparation under way ends first: its producer, once dropped, cannot fence the
            // task's next owner later.
            if let Some(h) = slot.preparing.take() {
                let _ = h.join();
            }
            return Some(Ok(std::mem::take(&mut slot.stats)));
        }
        if slot.restart_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let prepared = match slot.preparing.take() {
            None if !may_prepare => return None,
            None => {
                let owner = shared.lease_producer.clone().map(|p| (shared.holder.clone(), p));
                let start = TaskStart { task, owner };
                let (cp, client, opts, name) =
                    (slot.cp.clone(), shared.client.clone(), shared.opts.clone(), model.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("prepare-{}", task.name()))
                    .spawn(move || PreparedTask::prepare(&cp, &name, &client, &opts, start));
                match spawned {
                    Ok(h) => {
                        slot.preparing = Some(h);
                        return None;
                    }
                    Err(e) => return failed(slot, shared, RunError::Setup(format!("cannot start a thread: {e}"))),
                }
            }
            Some(h) if !h.is_finished() => {
                slot.preparing = Some(h);
                return None;
            }
            Some(h) => h.join().unwrap_or_else(|_| Err(RunError::Setup("preparing the task panicked".into()))),
        };
        let stats = std::mem::take(&mut slot.stats);
        let fallback = stats.clone();
        let started =
            prepared.and_then(|p| KafkaJob::start_prepared(slot.cp.clone(), &model, &shared.opts, stats, p, inputs));
        match started {
            Ok(job) => {
                job.report_state(JobState::Running);
                if task != TaskId::Whole {
                    log(&model, &format!("task {} runs on {}", task.name(), shared.holder));
                }
                slot.job = Some(job);
                slot.started = Instant::now();
                slot.restart_at = None;
            }
            Err(e) => {
                slot.stats = fallback;
                return failed(slot, shared, e);
            }
        }
    }
    let job = slot.job.as_mut()?;
    job.set_batch_wait(wait);
    let upstream_done = slot.upstream.iter().all(|u| shared.control.is_done(u));
    let progress = job.poll_and_process(stopping).and_then(|_| job.settle(stopping, upstream_done));
    match progress {
        Ok(Progress::Running) => None,
        Ok(Progress::CheckpointFailed) => {
            let job = slot.job.take()?;
            job.report_state(JobState::StandingBy);
            slot.stats = job.into_stats();
            slot.restart_at = Some(Instant::now() + Duration::from_secs(1));
            None
        }
        Ok(Progress::CaughtUp) => {
            let job = slot.job.take()?;
            job.report_state(JobState::Finished);
            job.release();
            let result = job.finish();
            if let Ok(stats) = &result {
                let what = if task == TaskId::Whole { String::new() } else { format!("task {}: ", task.name()) };
                log(&model, &format!("{what}caught up: {} records in, {} out", stats.records_in, stats.records_out));
            }
            caught_up(shared, &model, task);
            Some(result)
        }
        Ok(Progress::Stopped) => {
            let job = slot.job.take()?;
            job.report_state(JobState::Finished);
            job.release();
            Some(job.finish())
        }
        Err(RunError::Fenced(why)) => {
            // Another owner took the task over while this one was not looking: what this one had
            // not committed is aborted. It starts again should the task still be its own.
            log(&model, &format!("task {}: {why}; its open transaction is aborted", task.name()));
            let job = slot.job.take()?;
            slot.stats = job.into_stats();
            slot.restart_at = Some(Instant::now() + Duration::from_secs(1));
            None
        }
        Err(e) => {
            let job = slot.job.take()?;
            slot.stats = job.into_stats();
            failed(slot, shared, e)
        }
    }
}

/// A task that failed: a bounded run stops (the failed job's downstream would wait for it
/// forever); a long-running worker restarts the task after a pause.
fn failed(slot: &mut Slot, shared: &Shared, e: RunError) -> Option<Result<JobStats, RunError>> {
    let model = &slot.key.0;
    if let Some(m) = &shared.opts.metrics {
        m.job(model).state(JobState::Failed);
    }
    if shared.opts.until_caught_up || shared.control.stop.load(Ordering::SeqCst) {
        log(model, &format!("stopped: {e}"));
        if shared.opts.until_caught_up {
            shared.control.stop.store(true, Ordering::SeqCst);
        }
        return Some(Err(e));
    }
    // A task that ran a while before failing starts the count again.
    slot.failures = if slot.started.elapsed() > Duration::from_secs(300) { 1 } else { slot.failures + 1 };
    let pause = Duration::from_secs(1 << slot.failures.min(6));
    log(model, &format!("stopped: {e}; restarting from its last checkpoint in {} s", pause.as_secs()));
    slot.restart_at = Some(Instant::now() + pause);
    slot.started = Instant::now();
    None
}

/// Marks the model done once every task expected of it has caught up.
fn caught_up(shared: &Shared, model: &str, task: TaskId) {
    let Ok(mut f) = shared.finishing.lock() else { return };
    f.finish(model, task, &shared.control);
}

impl Finishing {
    /// `task` of `model` has caught up (here or elsewhere); the model is done once all expected have.
    fn finish(&mut self, model: &str, task: TaskId, control: &RunControl) {
        self.finished.entry(model.to_string()).or_default().insert(task);
        self.check(model, control);
    }

    fn check(&self, model: &str, control: &RunControl) {
        let Some(expected) = self.expected.get(model) else { return };
        let finished = self.finished.get(model);
        if !expected.is_empty() && finished.is_some_and(|f| expected.is_subset(f)) {
            control.mark_done(model);
        }
    }
}

/// The outcomes of a model's tasks as one job's: counters summed, the earliest watermark, the
/// first error.
pub fn merge(model: &str, outcomes: &[&Result<JobStats, RunError>]) -> Result<JobStats, RunError> {
    let mut total = JobStats { model: model.to_string(), ..Default::default() };
    for o in outcomes {
        match o {
            Err(e) => return Err(RunError::Setup(e.to_string())),
            Ok(s) => {
                total.records_in += s.records_in;
                total.records_out += s.records_out;
                total.bad_records += s.bad_records;
                total.skipped += s.skipped;
                total.dead_lettered += s.dead_lettered;
                total.late += s.late;
                total.checkpoints += s.checkpoints;
                total.open_windows += s.open_windows;
                total.aborted_transactions += s.aborted_transactions;
                total.gaps.extend(s.gaps.iter().cloned());
                total.watermark = match (total.watermark, s.watermark) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                total.restored_epoch = total.restored_epoch.max(s.restored_epoch);
                total.guarantee = s.guarantee;
            }
        }
    }
    Ok(total)
}
