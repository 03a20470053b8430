//! Orchestration above the runtime and deploy: what a command does with jobs, once its
//! arguments are parsed (cargo's `commands/` + `ops/` split: `cli` parses and prints, `ops`
//! carries out).
//!
//! * [`run`]: `streamctl run` on any target, and the run after an embedded `apply`.
//! * [`host`]: the topics jobs need, one thread per job, a clean stop on SIGINT/SIGTERM.
//! * [`embedded`]: sample data into the in-process broker, jobs until caught up, outputs read.
//! * [`follow`]: the deployed generations on a Kafka target, followed as `apply` writes them.
//! * [`peek`]: records of a relation's topic, decoded as its jobs decode them; the cluster
//!   reading commands read (the embedded broker loaded first).
//! * [`query`]: one SELECT compiled like a model and run as a transient job.
//! * [`shell`]: the statements of the interactive shell, over one connection to the target.
//! * [`status`]: deployed jobs with their checkpoints, lease holders and lag.
//! * [`sinks`]: native sink tasks beside the jobs.
//! * [`seed`]: sources' sample data into their topics, every record acknowledged.
//! * [`source_import`]: a source's registered columns written into its YAML.

pub(crate) mod embedded;
pub(crate) mod follow;
pub mod host;
pub(crate) mod peek;
pub(crate) mod query;
pub(crate) mod run;
pub(crate) mod seed;
pub(crate) mod shell;
pub(crate) mod sinks;
pub(crate) mod source_import;
pub(crate) mod status;
