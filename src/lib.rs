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

pub mod cli;
pub mod compile;
pub mod connectors;
pub mod deploy;
pub mod diagnostics;
pub mod docs;
pub mod formats;
pub mod graph;
pub mod jinja;
pub mod project;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod sql;
pub mod testing;
