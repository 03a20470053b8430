//! Carrying out a `ChangePlan`: under the target's apply lock, each change in order, each
//! followed at once by its record in the control topic. A failure midway leaves every record
//! true to the cluster; the next plan shows what remains.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::control::{
    git_commit, whoami, ControlError, DeployedConnector, DeployedSchema, DeployedState, DeployedTopic, Deployment,
    DeploymentStatus, Meta,
};

/// How long apply waits for a connector it created or updated to run.
const CONNECTOR_START: std::time::Duration = std::time::Duration::from_secs(20);
use super::plan::{Action, Change, ChangePlan, ObjectKind};
use super::Session;
use crate::connectors::kafka::TopicSpec as ClusterTopic;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("the plan is stale: the target changed since it was made (generation {planned} then, {now} now); run `streamctl plan` again")]
    Stale { planned: u64, now: u64 },
    #[error("the plan was made for project `{plan}` on target `{plan_target}`, not `{project}` on `{target}`")]
    WrongTarget { plan: String, plan_target: String, project: String, target: String },
    #[error("the plan has {0} problem(s); fix them and plan again")]
    Problems(usize),
    #[error("{object} {name}: {message}\napplied {done} of {total} changes; every applied change is recorded: `streamctl plan` shows what remains")]
    Step { object: &'static str, name: String, message: String, done: usize, total: usize },
}

#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub generation: u64,
    pub applied: usize,
}

pub fn apply(session: &Session, plan: &ChangePlan, project_root: &std::path::Path) -> Result<ApplyReport, ApplyError> {
    if !plan.problems.is_empty() {
        return Err(ApplyError::Problems(plan.problems.len()));
    }
    let project = session.control.project();
    if plan.project != project
        || plan.target != session.target.name
        || plan.control_topic != session.target.control_topic
    {
        return Err(ApplyError::WrongTarget {
            plan: plan.project.clone(),
            plan_target: plan.target.clone(),
            project: project.to_string(),
            target: session.target.name.clone(),
        });
    }
    let holder = format!("{} pid {}", whoami(), std::process::id());
    session
        .cluster()
        .ensure_control_topic(&session.target.control_topic)
        .map_err(|m| ControlError::Kafka { topic: session.target.control_topic.clone(), message: m })?;
    let _lock = session.control.lock(&holder)?;
    let state = session.read()?;
    if state.fingerprint() != plan.base.fingerprint {
        return Err(ApplyError::Stale { planned: plan.base.generation, now: state.generation() });
    }
    if plan.changes.is_empty() {
        return Ok(ApplyReport { generation: state.generation(), applied: 0 });
    }
    let generation = state.generation() + 1;
    let meta = Meta {
        generation,
        applied_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        applied_by: whoami(),
        git_commit: git_commit(project_root),
    };
    let control = &session.control;
    if !plan.destroy {
        control.put("bundle", &generation.to_string(), Some(&plan.desired.bundle))?;
    }
    control.put("deployment", "", Some(&Deployment { status: DeploymentStatus::Applying, meta: meta.clone() }))?;

    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::new(plan.changes.len() as u64);
    if tty {
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ControlError::Kafka { topic: String::new(), message: e.to_string() })?;
    // The topics as the cluster has them now: asked once, not per change.
    let topic_names: Vec<String> =
        plan.changes.iter().filter(|c| c.object == ObjectKind::Topic).map(|c| c.name.clone()).collect();
    let on_cluster = session
        .cluster()
        .topic_facts(&topic_names)
        .map_err(|m| ControlError::Kafka { topic: String::new(), message: m })?;
    let before = Before { state: &state, on_cluster: &on_cluster };
    let total = plan.changes.len();
    for (done, c) in plan.changes.iter().enumerate() {
        bar.set_message(format!("{} {} {}", c.action.symbol(), c.object.word(), c.name));
        let step =
            |message: String| ApplyError::Step { object: c.object.word(), name: c.name.clone(), message, done, total };
        execute(session, plan, c, &meta, &before, &rt).map_err(step)?;
        let line = format!("{} {} {}: {}", c.action.symbol(), c.object.word(), c.name, past(c.action));
        if tty {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if plan.destroy && !plan.changes.iter().any(|c| c.action != Action::Destroy) {
        control.put::<Deployment>("deployment", "", None)?;
        for g in state.bundles.keys() {
            control.put::<()>("bundle", &g.to_string(), None)?;
        }
    } else {
        control.put("deployment", "", Some(&Deployment { status: DeploymentStatus::Applied, meta: meta.clone() }))?;
        // Bundles no job runs from any more.
        let after = session.read()?;
        for g in after.bundles.keys() {
            if *g != generation && !after.jobs.values().any(|j| j.meta.generation == *g) {
                control.put::<()>("bundle", &g.to_string(), None)?;
            }
        }
    }
    Ok(ApplyReport { generation, applied: total })
}

fn past(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Destroy => "destroyed",
    }
}

/// The target as it was when the apply took its lock (only this apply changes it since).
struct Before<'a> {
    state: &'a DeployedState,
    /// Topic → (partitions, records).
    on_cluster: &'a BTreeMap<String, (i32, i64)>,
}

fn execute(
    session: &Session,
    plan: &ChangePlan,
    c: &Change,
    meta: &Meta,
    before: &Before<'_>,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let control = &session.control;
    let cluster = session.cluster();
    let ctl = |e: ControlError| e.to_string();
    match (c.object, c.action) {
        (ObjectKind::Topic, Action::Destroy) => {
            if plan.delete_topics {
                if session.is_embedded() {
                    // Nothing outlives this process on the embedded broker.
                } else {
                    rt.block_on(cluster.delete_topic(&c.name))?;
                }
            }
            control.put::<DeployedTopic>("topic", &c.name, None).map_err(ctl)
        }
        (ObjectKind::Topic, _) => {
            let spec = plan.desired.topics.get(&c.name).ok_or("not in the plan's desired state")?;
            match before.on_cluster.get(&c.name) {
                None => rt.block_on(cluster.ensure_topics(&[ClusterTopic {
                    name: spec.name.clone(),
                    partitions: spec.partitions,
                    compacted: spec.configs.get("cleanup.policy").is_some_and(|p| p == "compact"),
                }]))?,
                Some((parts, _)) => {
                    if *parts < spec.partitions {
                        cluster.create_partitions(&c.name, *parts, spec.partitions)?;
                    }
                    let recorded = before.state.topics.get(&c.name).map(|t| &t.spec.configs);
                    // Also when the wanted set is empty: a config streamctl set goes back to the default.
                    if c.action == Action::Update && recorded != Some(&spec.configs) {
                        rt.block_on(cluster.alter_configs(&c.name, &spec.configs))?;
                    }
                }
            }
            control.put("topic", &c.name, Some(&DeployedTopic { spec: spec.clone(), meta: meta.clone() })).map_err(ctl)
        }
        (ObjectKind::Schema, Action::Destroy) => {
            if plan.delete_topics {
                if let Some(r) = &session.registry {
                    r.delete_subject(&c.name).map_err(|e| e.to_string())?;
                }
            }
            control.put::<DeployedSchema>("schema", &c.name, None).map_err(ctl)
        }
        (ObjectKind::Schema, _) => {
            let spec = plan.desired.schemas.get(&c.name).ok_or("not in the plan's desired state")?;
            let r = session.registry.as_ref().ok_or("the target has no schema registry")?;
            let registered = r.register(&spec.subject, spec.schema_type, &spec.schema).map_err(|e| e.to_string())?;
            // The registry enforces the level for other producers of the subject too.
            if let Some(level) = spec.compatibility {
                r.set_compatibility(&spec.subject, level).map_err(|e| e.to_string())?;
            } else if r.compatibility(&spec.subject).map_err(|e| e.to_string())?.is_none() {
                r.set_compatibility(&spec.subject, crate::registry::DEFAULT_OUTPUT_COMPATIBILITY)
                    .map_err(|e| e.to_string())?;
            }
            let rec = DeployedSchema {
                spec: spec.clone(),
                id: registered.id,
                version: registered.version,
                meta: meta.clone(),
            };
            control.put("schema", &c.name, Some(&rec)).map_err(ctl)
        }
        (ObjectKind::Job, Action::Destroy) => control.put::<()>("job", &c.name, None).map_err(ctl),
        (ObjectKind::Connector, Action::Destroy) => {
            let recorded = before.state.connectors.get(&c.name).map(|r| &r.spec);
            super::connect::apply_change(&session.connect, plan, c, recorded)?;
            control.put::<DeployedConnector>("connector", &c.name, None).map_err(ctl)
        }
        (ObjectKind::Connector, _) => {
            let recorded = before.state.connectors.get(&c.name).map(|r| &r.spec);
            super::connect::apply_change(&session.connect, plan, c, recorded)?;
            let spec = plan.desired.connectors.get(&c.name).ok_or("not in the plan's desired state")?;
            control
                .put("connector", &c.name, Some(&DeployedConnector { spec: spec.clone(), meta: meta.clone() }))
                .map_err(ctl)?;
            // Recorded first: it exists on Connect whatever its state. A task that fails at once
            // (a wrong password, a missing table) fails the apply with the reason.
            super::connect::check_running(&session.connect, spec, CONNECTOR_START).map_err(|e| {
                format!("{e}\n(the connector is created: fix its config and apply again, or `streamctl destroy`)")
            })
        }
        (ObjectKind::Job, _) => {
            let spec = plan.desired.jobs.get(&c.name).ok_or("not in the plan's desired state")?;
            control
                .put("job", &c.name, Some(&super::control::DeployedJob { spec: spec.clone(), meta: meta.clone() }))
                .map_err(ctl)
        }
    }
}
