//! Kafka Connect connectors in a plan and an apply: each desired connector's config (its
//! `env_var()`s rendered) is compared with the one Connect holds (`GET /connectors/{name}/config`);
//! source connectors are created before the jobs that read their topics, sink connectors after
//! the jobs that write theirs, and destroyed in the opposite order.

use std::collections::BTreeMap;
use std::time::Duration;

use super::control::DeployedState;
use super::desired::ConnectorSpec;
use super::plan::{Action, Change, ChangePlan, ObjectKind};
use crate::connect::client::ConnectClient;
use crate::connect::{differences, offsets_risk, render};
use crate::jinja::Jinja;
use crate::project::connectors::ConnectorKind;

/// The Connect clusters of a target, by name, and what renders connector configs.
pub struct Connect {
    clients: BTreeMap<String, Result<ConnectClient, String>>,
    target: String,
    jinja: Jinja,
}

impl Connect {
    pub fn new(
        target: &str,
        clusters: &BTreeMap<String, String>,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Connect {
        let clients = clusters.iter().map(|(name, url)| (name.clone(), ConnectClient::new(name, url))).collect();
        Connect { clients, target: target.to_string(), jinja: Jinja::new(vars) }
    }

    /// The client of a cluster, or why there is none.
    pub fn client(&self, cluster: &str) -> Result<&ConnectClient, String> {
        match self.clients.get(cluster) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.clone()),
            None if cluster == crate::project::target::DEFAULT_CONNECT_CLUSTER => {
                Err(format!("target `{}` has no Kafka Connect cluster: set `connect_url:`", self.target))
            }
            None => Err(format!(
                "target `{}` has no Kafka Connect cluster `{cluster}`: add it to `connect_clusters:`",
                self.target
            )),
        }
    }

    /// The config to send to Connect: the spec's with `env_var()`s rendered.
    pub fn rendered(&self, spec: &ConnectorSpec) -> Result<BTreeMap<String, String>, String> {
        render(&spec.config, &self.jinja)
    }
}

/// The connector changes of a plan, by where they go in it.
#[derive(Default)]
struct Changes {
    sources: Vec<Change>,
    sinks: Vec<Change>,
    destroy_sinks: Vec<Change>,
    destroy_sources: Vec<Change>,
}

fn change(c: &ConnectorSpec, action: Action, reasons: Vec<String>) -> Change {
    Change {
        object: ObjectKind::Connector,
        name: c.name.clone(),
        action,
        owner: c.name.clone(),
        reasons,
        start: None,
        replay_records: None,
        downstream: Vec::new(),
        diff: None,
    }
}

/// Adds the connector changes to `plan` (made for the topics, schemas and jobs), each where it
/// belongs in the apply order, and the problems that keep a connector from being planned.
pub fn add_to_plan(plan: &mut ChangePlan, connect: &Connect, deployed: &DeployedState, embedded: bool) {
    let desired: BTreeMap<String, ConnectorSpec> =
        if plan.destroy { BTreeMap::new() } else { plan.desired.connectors.clone() };
    if embedded {
        if !plan.destroy && !plan.desired.connectors.is_empty() {
            plan.notes.push(format!(
                "the embedded target has no Kafka Connect: {} connector(s) of the project are not deployed",
                plan.desired.connectors.len()
            ));
        }
        return;
    }
    let mut out = Changes::default();
    for spec in desired.values() {
        let recorded = deployed.connectors.get(&spec.name);
        match plan_one(connect, spec, recorded.map(|r| &r.spec)) {
            Ok(Some(c)) => match spec.kind {
                ConnectorKind::Source => out.sources.push(c),
                ConnectorKind::Sink => out.sinks.push(c),
            },
            Ok(None) => {}
            Err(e) => plan.problems.push(format!("connector {}: {e}", spec.name)),
        }
    }
    for (name, r) in &deployed.connectors {
        if desired.contains_key(name) {
            continue;
        }
        let on = connect.client(&r.spec.cluster).map_or_else(|_| r.spec.cluster.clone(), |c| c.describe());
        let why = if plan.destroy { "destroy" } else { "no longer in the project" };
        let c = change(
            &r.spec,
            Action::Destroy,
            vec![format!("{why}: deleted from {on} (Connect keeps its offsets under the name)")],
        );
        match r.spec.kind {
            ConnectorKind::Source => out.destroy_sources.push(c),
            ConnectorKind::Sink => out.destroy_sinks.push(c),
        }
    }
    let (kept, destroys): (Vec<Change>, Vec<Change>) =
        std::mem::take(&mut plan.changes).into_iter().partition(|c| c.action != Action::Destroy);
    // The topics source connectors write come first, then the connectors, then the jobs.
    let written: std::collections::BTreeSet<&String> =
        desired.values().filter(|c| c.kind == ConnectorKind::Source).flat_map(|c| &c.topics).collect();
    let (mut changes, mut kept): (Vec<Change>, Vec<Change>) =
        kept.into_iter().partition(|c| c.object == ObjectKind::Topic && written.contains(&c.name));
    changes.extend(out.sources);
    changes.append(&mut kept);
    changes.extend(out.sinks);
    changes.extend(out.destroy_sinks);
    changes.extend(destroys);
    changes.extend(out.destroy_sources);
    plan.changes = changes;
}

/// The change one desired connector needs, or None when Connect has it as the project says.
fn plan_one(
    connect: &Connect,
    spec: &ConnectorSpec,
    recorded: Option<&ConnectorSpec>,
) -> Result<Option<Change>, String> {
    let client = connect.client(&spec.cluster)?;
    let config = connect.rendered(spec)?;
    let what = match spec.kind {
        ConnectorKind::Source => format!("source connector {} on {}", spec.class(), client.describe()),
        ConnectorKind::Sink => format!("sink connector {} on {}", spec.class(), client.describe()),
    };
    let topics = match spec.kind {
        ConnectorKind::Source if !spec.topics.is_empty() => Some(format!("writes {}", spec.topics.join(", "))),
        ConnectorKind::Sink => Some(format!("reads {}", spec.topics.join(", "))),
        _ => None,
    };
    if let Some(old) = recorded.filter(|r| r.cluster != spec.cluster) {
        let reasons = vec![
            what,
            format!("moves from Connect cluster `{}`: deleted there and created here", old.cluster),
            "offsets may reset: the other cluster does not hold the connector's offsets".into(),
        ];
        return Ok(Some(change(spec, Action::Replace, reasons)));
    }
    let actual = client.config(&spec.name)?;
    let Some(actual) = actual else {
        let mut reasons = vec![what];
        reasons.extend(topics);
        if recorded.is_some() {
            reasons.push("recorded as deployed but missing on the Connect cluster".into());
        }
        return Ok(Some(change(spec, Action::Create, reasons)));
    };
    let diffs = differences(&actual, &config);
    if diffs.is_empty() {
        return Ok(match recorded {
            None => Some(change(
                spec,
                Action::Create,
                vec![format!("exists on {} with this config, recorded as deployed", client.describe())],
            )),
            Some(r) if r != spec => {
                Some(change(spec, Action::Update, vec!["record updated (Connect has this config already)".into()]))
            }
            Some(_) => None,
        });
    }
    let old_class = actual.get("connector.class").map_or("", String::as_str);
    if old_class != spec.class() {
        let reasons = vec![
            format!("class {old_class} → {}", spec.class()),
            "deleted and created again: offsets may reset (the new class may not read the old one's offsets)".into(),
        ];
        return Ok(Some(change(spec, Action::Replace, reasons)));
    }
    let mut reasons = vec!["config changed: Connect restarts the connector and its tasks".to_string()];
    for (key, line) in &diffs {
        reasons.push(line.clone());
        if let Some(why) = offsets_risk(spec.kind, key) {
            reasons.push(format!("offsets may reset: {key} changed ({why})"));
        }
    }
    Ok(Some(change(spec, Action::Update, reasons)))
}

/// Carries out one connector change of `plan`; `recorded` is the connector's record before the
/// apply. Creating or updating waits a little for the connector to run and fails the step when
/// it or a task FAILED (the first line of the trace says why).
pub fn apply_change(
    connect: &Connect,
    plan: &ChangePlan,
    c: &Change,
    recorded: Option<&ConnectorSpec>,
) -> Result<(), String> {
    if c.action == Action::Destroy {
        let spec = recorded.ok_or("not recorded as deployed")?;
        connect.client(&spec.cluster)?.delete(&c.name)?;
        return Ok(());
    }
    let spec = plan.desired.connectors.get(&c.name).ok_or("not in the plan's desired state")?;
    let client = connect.client(&spec.cluster)?;
    let config = connect.rendered(spec)?;
    if c.action == Action::Replace {
        let old = recorded.map_or(spec.cluster.as_str(), |r| r.cluster.as_str());
        connect.client(old)?.delete(&c.name)?;
    }
    client.put_config(&c.name, &config)?;
    Ok(())
}

/// After a connector was created or updated: waits up to `limit` for it to run; Err when it or a
/// task FAILED.
pub fn check_running(connect: &Connect, spec: &ConnectorSpec, limit: Duration) -> Result<(), String> {
    let client = connect.client(&spec.cluster)?;
    let config = connect.rendered(spec)?;
    client.wait_running(&spec.name, limit).map(|_| ()).map_err(|e| crate::connect::scrub(&e, &config))
}
