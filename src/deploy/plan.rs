//! `ChangePlan`: the desired state compared with what the target has recorded, object by
//! object, with the reason for every change and what happens to each job's state and offsets.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::control::DeployedState;
use super::desired::{DesiredState, JobSpec, TopicRole};
use crate::compile::carry_over::{carry_over, CarryOver};
use crate::registry::compat::check_compatibility;
use crate::registry::{same_schema, Compatibility, SchemaRegistry, DEFAULT_OUTPUT_COMPATIBILITY};

pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Topic,
    Schema,
    Job,
    /// A Kafka Connect connector.
    Connector,
}

impl ObjectKind {
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Topic => "topic",
            ObjectKind::Schema => "schema",
            ObjectKind::Job => "job",
            ObjectKind::Connector => "connector",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `+`
    Create,
    /// `~`: changed in place (a job keeps its state and offsets, or its offsets).
    Update,
    /// `-/+`: a job whose state is rebuilt by reprocessing its inputs; a connector deleted and
    /// created again.
    Replace,
    /// `-`
    Destroy,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Destroy => "-",
        }
    }
}

/// What a job starts from after apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStart {
    /// From its replay position (a new job).
    ReplayPosition,
    /// Its state and offsets are kept.
    KeepState,
    /// Its offsets are kept (no state on either side).
    KeepOffsets,
    /// New state, rebuilt by reading from its replay position.
    Reprocess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    pub object: ObjectKind,
    pub name: String,
    pub action: Action,
    /// The model (or source) the object belongs to.
    pub owner: String,
    /// Why, one line each.
    pub reasons: Vec<String>,
    /// Jobs: what they keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<JobStart>,
    /// Jobs that read from their replay position: records there now in their input topics
    /// (None when the cluster could not be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_records: Option<i64>,
    /// Models downstream whose input changes (a new schema, or reprocessed output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstream: Vec<String>,
    /// A unified diff of the SQL or the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// What the plan was made against: `apply PLAN` refuses a plan whose base moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanBase {
    pub generation: u64,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChangePlan {
    pub plan_version: u32,
    pub streamctl_version: String,
    pub project: String,
    pub target: String,
    pub control_topic: String,
    pub created_at: String,
    pub base: PlanBase,
    /// In apply order: creations and updates in dependency order, then destructions.
    pub changes: Vec<Change>,
    /// Errors that make the plan impossible to apply (a breaking schema change, ...).
    pub problems: Vec<String>,
    /// Things to know that do not stop the apply.
    pub notes: Vec<String>,
    /// `plan --destroy`: remove everything the project deployed.
    pub destroy: bool,
    /// Topics are deleted (with their data), and schema subjects too.
    pub delete_topics: bool,
    pub desired: DesiredState,
}

impl ChangePlan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }

    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ChangePlan)).unwrap_or_default()
    }
}

/// Topics as the cluster has them (None: not asked, e.g. offline).
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Topic → (partitions, records held now: end minus start offsets).
    pub topics: BTreeMap<String, (i32, i64)>,
}

pub struct PlanInput<'a> {
    pub desired: &'a DesiredState,
    pub deployed: &'a DeployedState,
    pub registry: Option<&'a dyn SchemaRegistry>,
    pub cluster: Option<&'a ClusterFacts>,
    pub target: &'a str,
    pub control_topic: &'a str,
    pub destroy: bool,
    pub delete_topics: bool,
}

pub fn make_plan(input: &PlanInput<'_>) -> ChangePlan {
    let mut p = Planner { input, changes: Vec::new(), problems: Vec::new(), notes: Vec::new() };
    let empty;
    let desired = if input.destroy {
        empty = DesiredState {
            topics: BTreeMap::new(),
            schemas: BTreeMap::new(),
            jobs: BTreeMap::new(),
            connectors: BTreeMap::new(),
            order: Vec::new(),
            ..input.desired.clone()
        };
        &empty
    } else {
        input.desired
    };
    if !input.deployed.unreadable.is_empty() {
        p.notes.push(format!(
            "unreadable records in the control topic (ignored): {}",
            input.deployed.unreadable.join("; ")
        ));
    }
    if input.deployed.deployment.as_ref().is_some_and(|d| d.status == super::control::DeploymentStatus::Applying) {
        p.notes.push(format!(
            "generation {} was not applied to the end: this plan includes what remains",
            input.deployed.generation()
        ));
    }
    // Creations and updates, model by model in dependency order: a model's own topics, and
    // those of the sources it is the first to read (dead-letter topics; on the embedded target
    // the source topics).
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for model in &desired.order {
        let reads = |owner: &str| desired.jobs.get(model).is_some_and(|j| j.input_sources.iter().any(|s| s == owner));
        for t in desired.topics.values().filter(|t| &t.owner == model || reads(&t.owner)) {
            if placed.insert(t.name.as_str()) {
                p.topic(t);
            }
        }
        for s in desired.schemas.values().filter(|s| &s.model == model) {
            p.schema(desired, s);
        }
        if let Some(j) = desired.jobs.get(model) {
            p.job(desired, j);
        }
    }
    // Destructions: jobs first (downstream before upstream), then schemas and topics.
    let deployed = input.deployed;
    let mut gone_jobs: Vec<&String> = deployed.jobs.keys().filter(|m| !desired.jobs.contains_key(*m)).collect();
    gone_jobs.sort_by_key(|m| std::cmp::Reverse(deployed.jobs[*m].spec.input_models.len()));
    for m in gone_jobs {
        p.push(Change {
            object: ObjectKind::Job,
            name: m.clone(),
            action: Action::Destroy,
            owner: m.clone(),
            reasons: vec![if input.destroy {
                "destroy".into()
            } else {
                "no longer in the project (or disabled): the job stops".into()
            }],
            start: None,
            replay_records: None,
            downstream: Vec::new(),
            diff: None,
        });
    }
    for (subject, s) in &deployed.schemas {
        if !desired.schemas.contains_key(subject) {
            let what = if input.delete_topics {
                "the subject is deleted from the registry"
            } else {
                "the registry keeps the subject (--delete-topics deletes it)"
            };
            p.push(destroyed(ObjectKind::Schema, subject, &s.spec.model, what));
        }
    }
    for (name, t) in &deployed.topics {
        if !desired.topics.contains_key(name) {
            let what = if input.delete_topics {
                "the topic and its data are deleted"
            } else {
                "the topic and its data stay (--delete-topics deletes them)"
            };
            p.push(destroyed(ObjectKind::Topic, name, &t.spec.owner, what));
        }
    }
    if input.registry.is_none() && !desired.schemas.is_empty() {
        p.notes.push(format!(
            "target `{}` has no schema registry (schema_registry_url): output schemas are not registered or checked",
            input.target
        ));
    }
    ChangePlan {
        plan_version: PLAN_VERSION,
        streamctl_version: env!("CARGO_PKG_VERSION").into(),
        project: input.desired.project.clone(),
        target: input.target.into(),
        control_topic: input.control_topic.into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        base: PlanBase { generation: deployed.generation(), fingerprint: deployed.fingerprint() },
        changes: p.changes,
        problems: p.problems,
        notes: p.notes,
        destroy: input.destroy,
        delete_topics: input.delete_topics,
        desired: input.desired.clone(),
    }
}

fn destroyed(object: ObjectKind, name: &str, owner: &str, what: &str) -> Change {
    Change {
        object,
        name: name.into(),
        action: Action::Destroy,
        owner: owner.into(),
        reasons: vec![format!("no longer in the project: {what}")],
        start: None,
        replay_records: None,
        downstream: Vec::new(),
        diff: None,
    }
}

struct Planner<'a, 'b> {
    input: &'b PlanInput<'a>,
    changes: Vec<Change>,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Planner<'_, '_> {
    fn push(&mut self, c: Change) {
        if !self.changes.iter().any(|x| x.object == c.object && x.name == c.name) {
            self.changes.push(c);
        }
    }

    fn change(
        &mut self,
        object: ObjectKind,
        name: &str,
        action: Action,
        owner: &str,
        reasons: Vec<String>,
    ) -> &mut Change {
        self.push(Change {
            object,
            name: name.into(),
            action,
            owner: owner.into(),
            reasons,
            start: None,
            replay_records: None,
            downstream: Vec::new(),
            diff: None,
        });
        let i =
            self.changes.iter().position(|x| x.object == object && x.name == name).unwrap_or(self.changes.len() - 1);
        &mut self.changes[i]
    }

    fn topic(&mut self, t: &super::desired::TopicSpec) {
        let on_cluster = self.input.cluster.and_then(|c| c.topics.get(&t.name).copied());
        let what = match t.role {
            TopicRole::Source => format!("source {}", t.owner),
            TopicRole::Output => format!("output of {}", t.owner),
            TopicRole::Checkpoint => format!("state of {}", t.owner),
            TopicRole::DeadLetter => format!("dead letters of {}", t.owner),
            TopicRole::Repartition => format!("repartition of {}", t.owner),
        };
        let shape = format!(
            "{} partition{}{}",
            t.partitions,
            if t.partitions == 1 { "" } else { "s" },
            if t.configs.get("cleanup.policy").is_some_and(|p| p == "compact") { ", compacted" } else { "" }
        );
        match self.input.deployed.topics.get(&t.name) {
            None => {
                let reason = match on_cluster {
                    Some((parts, _)) if parts == t.partitions => {
                        format!("{what}: exists on the cluster ({shape}), recorded as deployed")
                    }
                    Some((parts, _)) if parts < t.partitions => {
                        format!("{what}: exists on the cluster with {parts} partitions, grows to {}", t.partitions)
                    }
                    // Workers grow a checkpoint topic to a partition per task of its job.
                    Some((parts, _)) if t.role == TopicRole::Checkpoint => {
                        format!(
                            "{what}: exists on the cluster ({parts} partitions, one per task), recorded as deployed"
                        )
                    }
                    Some((parts, _)) => {
                        self.problems.push(format!(
                            "topic {}: the cluster has it with {parts} partitions, the project asks for {}; Kafka cannot remove partitions (change `partitions:` or the topic name)",
                            t.name, t.partitions
                        ));
                        return;
                    }
                    None => format!("{what}: {shape}"),
                };
                self.change(ObjectKind::Topic, &t.name, Action::Create, &t.owner, vec![reason]);
            }
            Some(d) => {
                let mut reasons = Vec::new();
                if self.input.cluster.is_some() && on_cluster.is_none() {
                    self.change(
                        ObjectKind::Topic,
                        &t.name,
                        Action::Create,
                        &t.owner,
                        vec![format!("{what}: recorded as deployed but missing on the cluster")],
                    );
                    return;
                }
                if d.spec.partitions != t.partitions {
                    if t.partitions < d.spec.partitions {
                        self.problems.push(format!(
                            "topic {}: partitions {} → {}: Kafka cannot remove partitions (change `partitions:` back, or the topic name)",
                            t.name, d.spec.partitions, t.partitions
                        ));
                        return;
                    }
                    reasons.push(format!("partitions {} → {}", d.spec.partitions, t.partitions));
                }
                let keys: BTreeSet<&String> = d.spec.configs.keys().chain(t.configs.keys()).collect();
                for k in keys {
                    let (a, b) = (d.spec.configs.get(k), t.configs.get(k));
                    if a != b {
                        reasons.push(format!(
                            "{k} {} → {}",
                            a.map_or("(default)", String::as_str),
                            b.map_or("(default)", String::as_str)
                        ));
                    }
                }
                if d.spec.replication_factor != t.replication_factor {
                    self.notes.push(format!(
                        "topic {}: replication factor {} → {} is not changed by streamctl (use partition reassignment)",
                        t.name, d.spec.replication_factor, t.replication_factor
                    ));
                }
                if !reasons.is_empty() {
                    self.change(ObjectKind::Topic, &t.name, Action::Update, &t.owner, reasons);
                }
            }
        }
    }

    fn schema(&mut self, desired: &DesiredState, s: &super::desired::SchemaSpec) {
        let Some(registry) = self.input.registry else { return };
        let versions = match registry.versions(&s.subject) {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(format!("{}: {e}", s.subject));
                return;
            }
        };
        let recorded = self.input.deployed.schemas.get(&s.subject);
        if let Some(same) =
            versions.iter().find(|v| v.schema_type == s.schema_type && same_schema(&v.schema, &s.schema))
        {
            // Registered already: only the record may be missing or point elsewhere.
            let level = |l: Option<Compatibility>| l.map_or("(registry's or default)".to_string(), level_name);
            match recorded {
                None => {
                    let reason = format!("already registered in {} as version {}", registry.describe(), same.version);
                    self.change(ObjectKind::Schema, &s.subject, Action::Create, &s.model, vec![reason]);
                }
                Some(r) if r.version != same.version || !same_schema(&r.spec.schema, &s.schema) => {
                    let reason = format!("back to version {} (registered in {})", same.version, registry.describe());
                    self.change(ObjectKind::Schema, &s.subject, Action::Update, &s.model, vec![reason]);
                }
                Some(r) if r.spec.compatibility != s.compatibility => {
                    let reason =
                        format!("compatibility level {} → {}", level(r.spec.compatibility), level(s.compatibility));
                    self.change(ObjectKind::Schema, &s.subject, Action::Update, &s.model, vec![reason]);
                }
                Some(_) => {}
            }
            return;
        }
        let level = match s.compatibility {
            Some(l) => l,
            None => match registry.compatibility(&s.subject) {
                Ok(Some(l)) => l,
                Ok(None) => DEFAULT_OUTPUT_COMPATIBILITY,
                Err(e) => {
                    self.problems.push(format!("{}: {e}", s.subject));
                    return;
                }
            },
        };
        let previous: Vec<(i32, crate::registry::SchemaType, &str)> =
            versions.iter().map(|v| (v.version, v.schema_type, v.schema.as_str())).collect();
        match check_compatibility(level, s.schema_type, &s.schema, &previous) {
            Ok(broken) => {
                for b in broken {
                    self.problems.push(format!(
                        "{}: {}: breaks {} compatibility of subject {} (version {})",
                        s.model,
                        b.message,
                        level_name(level),
                        s.subject,
                        b.version
                    ));
                }
            }
            Err(e) => self.problems.push(format!("{}: schema of {}: {e}", s.model, s.subject)),
        }
        let next = versions.last().map_or(1, |v| v.version + 1);
        let (action, reason) = match versions.last() {
            None => (
                Action::Create,
                format!(
                    "register version 1 ({}) in {}, compatibility {}",
                    s.schema_type,
                    registry.describe(),
                    level_name(level)
                ),
            ),
            Some(last) => (
                Action::Update,
                format!(
                    "register version {next}: the output's columns changed since version {} ({} checked)",
                    last.version,
                    level_name(level)
                ),
            ),
        };
        let diff = versions.last().map(|last| unified_diff(&pretty(&last.schema), &pretty(&s.schema)));
        let downstream = desired.downstream_of(&s.model);
        let c = self.change(ObjectKind::Schema, &s.subject, action, &s.model, vec![reason]);
        c.diff = diff.filter(|d| !d.is_empty());
        if action == Action::Update {
            c.downstream = downstream;
        }
    }

    fn job(&mut self, desired: &DesiredState, j: &JobSpec) {
        let replay_records = self.replay_volume(j);
        let from_time = j.replay != "earliest" && j.replay != "latest";
        let volume = |n: Option<i64>| match n {
            Some(n) => format!(
                "{} {n} record{} in its inputs now",
                if from_time { "at most" } else { "about" },
                if n == 1 { "" } else { "s" }
            ),
            None => "input size unknown".into(),
        };
        match self.input.deployed.jobs.get(&j.model) {
            None => {
                let reason = format!(
                    "{}; starts from {} ({}); {}",
                    j.state_layout(),
                    j.replay,
                    volume(replay_records),
                    j.guarantee.word()
                );
                let c = self.change(ObjectKind::Job, &j.model, Action::Create, &j.model, vec![reason]);
                c.start = Some(JobStart::ReplayPosition);
                c.replay_records = replay_records;
            }
            Some(d) => {
                let old = &d.spec;
                let mut config_reasons = Vec::new();
                if old.replay != j.replay {
                    config_reasons.push(format!("replay {} → {}", old.replay, j.replay));
                }
                if old.output_topic != j.output_topic {
                    config_reasons.push(format!("output topic {} → {}", old.output_topic, j.output_topic));
                }
                if old.guarantee != j.guarantee {
                    config_reasons.push(format!("guarantee {} → {}", old.guarantee.word(), j.guarantee.word()));
                }
                if old.input_topics != j.input_topics {
                    config_reasons.push(format!(
                        "inputs {} → {}",
                        old.input_topics.join(", "),
                        j.input_topics.join(", ")
                    ));
                }
                if old.semantic_hash == j.semantic_hash {
                    if old.config_hash != j.config_hash && config_reasons.is_empty() {
                        config_reasons.push("configuration changed".into());
                    }
                    if !config_reasons.is_empty() {
                        config_reasons.push("state and offsets kept".into());
                        let c = self.change(ObjectKind::Job, &j.model, Action::Update, &j.model, config_reasons);
                        c.start = Some(JobStart::KeepState);
                    } else if old != j && !differs_only_in_comments_and_whitespace(old, j) {
                        // Only the SQL's text changed (whitespace, comments, Jinja): same plan.
                        let c = self.change(
                            ObjectKind::Job,
                            &j.model,
                            Action::Update,
                            &j.model,
                            vec!["SQL text changed, same query plan: state and offsets kept".into()],
                        );
                        c.start = Some(JobStart::KeepState);
                        c.diff = Some(unified_diff(&old.sql, &j.sql)).filter(|d| !d.is_empty());
                    }
                    return;
                }
                let diff = Some(unified_diff(&old.sql, &j.sql)).filter(|d| !d.is_empty());
                let downstream = desired.downstream_of(&j.model);
                let what = if old.operator != j.operator {
                    format!("query changed from {} to {}", op_word(old), op_word(j))
                } else {
                    "query changed".to_string()
                };
                let mut reasons = vec![what];
                reasons.extend(config_reasons);
                match carry_over(&old.semantic_hash, old.stateful, &j.semantic_hash, j.stateful) {
                    CarryOver::KeepOffsets => {
                        reasons.push("no state: offsets kept, nothing is read twice".into());
                        let c = self.change(ObjectKind::Job, &j.model, Action::Update, &j.model, reasons);
                        c.start = Some(JobStart::KeepOffsets);
                        c.diff = diff;
                        c.downstream = downstream;
                    }
                    CarryOver::Replay | CarryOver::Resume => {
                        reasons.push(format!(
                            "state replaced ({}): reprocesses from {} ({})",
                            j.state_layout(),
                            j.replay,
                            volume(replay_records)
                        ));
                        let c = self.change(ObjectKind::Job, &j.model, Action::Replace, &j.model, reasons);
                        c.start = Some(JobStart::Reprocess);
                        c.replay_records = replay_records;
                        c.diff = diff;
                        c.downstream = downstream;
                    }
                }
            }
        }
    }

    /// Records a job reads from its replay position, from the input topics' offsets now.
    fn replay_volume(&self, j: &JobSpec) -> Option<i64> {
        let facts = self.input.cluster?;
        if j.replay == "latest" {
            return Some(0);
        }
        let mut total = 0;
        for t in &j.input_topics {
            // An input not there yet (a model created by this apply) holds nothing.
            total += facts.topics.get(t).map_or(0, |(_, n)| *n);
        }
        Some(total)
    }
}

/// A job whose SQL differs from the deployed one only in comments and whitespace is no change:
/// a `-- reviewed` must not turn a `plan --detailed-exitcode` check red. The new text is
/// recorded with the next real change, which deploys the whole project again.
fn differs_only_in_comments_and_whitespace(old: &JobSpec, new: &JobSpec) -> bool {
    JobSpec { sql: new.sql.clone(), ..old.clone() } == *new
        && sql_tokens(&old.sql).is_some_and(|t| Some(t) == sql_tokens(&new.sql))
}

/// The SQL's tokens without whitespace and comments; `None` when it does not tokenize.
fn sql_tokens(sql: &str) -> Option<Vec<datafusion::sql::sqlparser::tokenizer::Token>> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    Some(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
}

fn op_word(j: &JobSpec) -> &'static str {
    match j.operator {
        crate::compile::OperatorKind::Stateless => "a projection/filter",
        crate::compile::OperatorKind::StreamTableJoin => "a stream-table join",
        crate::compile::OperatorKind::WindowedAggregate => "a windowed aggregation",
        crate::compile::OperatorKind::Aggregate => "an aggregation",
    }
}

pub fn level_name(l: Compatibility) -> String {
    serde_json::to_value(l).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn pretty(schema: &str) -> String {
    serde_json::from_str::<serde_json::Value>(schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| schema.to_string())
}

/// Changed lines only, `-` old / `+` new, with one line of context.
pub fn unified_diff(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = String::new();
    for group in diff.grouped_ops(1) {
        for op in group {
            for change in diff.iter_changes(&op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => "-",
                    similar::ChangeTag::Insert => "+",
                    similar::ChangeTag::Equal => " ",
                };
                out.push_str(sign);
                out.push(' ');
                out.push_str(change.value().trim_end_matches('\n'));
                out.push('\n');
            }
        }
    }
    out
}

/// The plan for people, Terraform's way, then its problems. `color`: ANSI colors (a terminal
/// without NO_COLOR).
pub fn render_text(plan: &ChangePlan, color: bool) -> String {
    render_changes(plan, color) + &render_problems(plan, color)
}

/// Why the plan cannot be applied (empty when it can): for stderr, apart from the changes.
pub fn render_problems(plan: &ChangePlan, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut out = String::new();
    for p in &plan.problems {
        out.push_str(&format!("{} {p}\n", paint("31;1", "error:")));
    }
    if !plan.problems.is_empty() {
        out.push_str(&format!(
            "{}\n",
            paint("31;1", &format!("The plan cannot be applied: {} problem(s).", plan.problems.len()))
        ));
    }
    out
}

/// The plan's changes for people, Terraform's way, without its problems.
pub fn render_changes(plan: &ChangePlan, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    let mut out = String::new();
    let base = if plan.base.generation == 0 {
        "nothing deployed yet".to_string()
    } else {
        format!("generation {} deployed", plan.base.generation)
    };
    out.push_str(&format!("Project {} on target {} ({base}).\n", plan.project, plan.target));
    for n in &plan.notes {
        out.push_str(&format!("{} {n}\n", paint("33", "note:")));
    }
    if plan.changes.is_empty() && plan.problems.is_empty() {
        out.push_str("\nNo changes. The target matches the project.\n");
        return out;
    }
    if !plan.changes.is_empty() {
        out.push('\n');
    }
    let width = plan.changes.iter().map(|c| c.object.word().len() + 1 + c.name.len()).max().unwrap_or(0);
    for c in &plan.changes {
        let code = match c.action {
            Action::Create => "32",
            Action::Update => "33",
            Action::Replace => "35",
            Action::Destroy => "31",
        };
        let head = format!("{} {}", c.object.word(), c.name);
        let first = c.reasons.first().cloned().unwrap_or_default();
        out.push_str(&format!("{} {head:<width$}  {first}\n", paint(code, &format!("{:>3}", c.action.symbol()))));
        for r in c.reasons.iter().skip(1) {
            out.push_str(&format!("    {:<width$}  {r}\n", ""));
        }
        if !c.downstream.is_empty() {
            out.push_str(&format!("    {:<width$}  downstream: {}\n", "", c.downstream.join(", ")));
        }
        if let Some(d) = &c.diff {
            for line in d.lines() {
                let painted = match line.chars().next() {
                    Some('-') => paint("31", line),
                    Some('+') => paint("32", line),
                    _ => line.to_string(),
                };
                out.push_str(&format!("        {painted}\n"));
            }
        }
    }
    out.push_str(&format!(
        "\nPlan: {} to create, {} to update in place, {} to replace, {} to destroy.\n",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Destroy)
    ));
    out
}
