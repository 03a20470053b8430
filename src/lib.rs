//! # streamctl: dbt for streams
//!
//! A project directory of YAML and SQL files is turned into running streaming jobs on Kafka.
//! Modules import only downward, along these layers:
//!
//! ```text
//! cli ──────────▶ ops ──────────────┬──────────────┐        testing, docs
//!                (hosting, follow,  ▼              ▼        (test runner, lineage)
//!                 status)        deploy         runtime
//!                          (desired vs deployed  (jobs over Arrow
//!                           state, plan/apply)    micro-batches)
//!                                   └──────┬───────┘
//!                                          ▼
//!                                       compile   (models planned with DataFusion; the
//!                                          │       streaming planner and the job each model
//!                                          │       runs; resolved config; cluster names)
//!                    ┌───────────┬─────────┼──────────┐
//!                    ▼           ▼         ▼          ▼
//!                  graph        sql     formats ──▶ registry ──▶ project ──▶ jinja
//! (diagnostics, http and connectors sit under everything)
//! ```
//!
//! The commands sit on top: `cli` parses arguments and prints; [`ops`] carries out what a
//! command does with jobs (hosting them, the embedded flow `run` and `apply` share, following
//! deployed generations, status), using `deploy` and `runtime`, which do not import it or each
//! other's internals. [`connectors`] is the Kafka I/O underneath both.
//!
//! * [`project`] loads `streamctl_project.yml`, sources, models, sinks, and validates every YAML
//!   file against the JSON Schemas generated from its config types.
//! * [`jinja`] renders models (`ref`, `source`, `var`, `env_var`, `config`, macros) and keeps a
//!   source map back to the `.sql` file.
//! * [`graph`] is the dependency DAG and dbt-style node selection.
//! * [`sql`] is the streaming dialect: `WINDOW TUMBLING|HOPPING|SESSION (...)`, `EMIT`,
//!   ksqlDB functions and pseudo columns.
//! * [`compile`] plans every model with DataFusion against its inputs' schemas; its
//!   [`compile::streaming`] planner is the one place that decides whether a query runs as a
//!   stream and builds the job it runs; [`compile::names`] names everything on the cluster;
//!   the compiled model carries its configuration resolved ([`compile::ResolvedConfig`]).
//! * [`diagnostics`] carries every problem with its file, line and column.
//! * [`http`] is what the REST clients share: base URLs with basic-auth userinfo, encodings.
//! * [`docs`] renders lineage (Mermaid, DOT, a static HTML page).
//! * [`deploy`] diffs desired against deployed state and applies it; [`runtime`] runs a model's
//!   job: one micro-batch driver behind the Kafka worker and the in-memory run of `streamctl test`.
//! * `sinks` delivers a model's topic to a native sink (files), beside `runtime`, hosted by `ops`.
//! * [`connect`] is Kafka Connect: a connector's properties, their differences with secrets
//!   masked, and the REST client `deploy` plans and applies connectors with.

// `Diagnostic` (about 180 bytes) is the error of every loading and validation step. Errors are the
// cold path and are collected by value into `Diagnostics`, so boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod compile;
pub mod connect;
pub mod connectors;
pub mod deploy;
pub mod diagnostics;
pub(crate) mod docs;
pub(crate) mod formats;
pub mod graph;
pub mod http;
pub mod jinja;
pub mod ops;
pub mod project;
pub mod registry;
pub mod runtime;
pub(crate) mod scaffold;
pub(crate) mod sinks;
pub(crate) mod sql;
pub mod testing;
