//! # streamctl: dbt for streams
//!
//! A project directory of YAML and SQL files is turned into running streaming jobs on Kafka.
//! The data path reads one way:
//!
//! ```text
//! project ──▶ graph ──▶ compile ──▶ plan/apply ──▶ runtime
//! (YAML, SQL,  (petgraph  (DataFusion   (desired vs     (DataFusion operators
//!  Jinja)       DAG)       logical plans) deployed state)  over Arrow micro-batches)
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
//! * [`compile`] plans every model with DataFusion against its inputs' schemas and writes the
//!   manifest.
//! * [`diagnostics`] carries every problem with its file, line and column.
//! * [`docs`] renders lineage (Mermaid, DOT, a static HTML page).
//! * [`deploy`] diffs desired against deployed state and applies it; [`runtime`] runs a model's
//!   job: one micro-batch driver behind the Kafka worker and the in-memory run of `streamctl test`.

pub mod cli;
pub mod compile;
pub mod connectors;
pub mod deploy;
pub mod diagnostics;
pub mod docs;
pub mod formats;
pub mod graph;
pub mod jinja;
pub mod ops;
pub mod project;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod sql;
pub mod testing;
