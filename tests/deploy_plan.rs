//! `plan` as a specification: a small project, what the target has recorded, the exact plan.
//! The deployed state is what an apply of an earlier version of the project would record, and
//! the schema registry is a real file registry in a temporary directory.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{copy_dir, replace_in};
use streamctl::compile::CompiledProject;
use streamctl::deploy::control::{
    DeployedJob, DeployedSchema, DeployedState, DeployedTopic, Deployment, DeploymentStatus, Meta,
};
use streamctl::deploy::desired::DesiredState;
use streamctl::deploy::plan::{
    make_plan, render_changes, render_problems, render_text, Action, ChangePlan, ClusterFacts, PlanInput,
};
use streamctl::diagnostics::Diagnostics;
use streamctl::project::config::TargetKind;
use streamctl::project::target::ResolvedTarget;
use streamctl::project::Project;
use streamctl::registry::file::FileRegistry;
use streamctl::registry::SchemaRegistry;

const BASE: &str = "tests/fixtures/deploy/shop";

fn target() -> ResolvedTarget {
    ResolvedTarget {
        name: "staging".into(),
        kind: TargetKind::Kafka,
        bootstrap_servers: Some("kafka:9092".into()),
        schema_registry_url: None,
        schema_registry_access: Default::default(),
        properties: BTreeMap::new(),
        replication_factor: 1,
        control_topic: "_streamctl_deployments".into(),
        topic_prefix: String::new(),
        guarantee: Default::default(),
        connect: BTreeMap::new(),
    }
}

/// The fixture project copied to a temporary directory, with `edit` applied to its files.
fn project(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, DesiredState) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(BASE), dir.path(), &["target"]);
    edit(dir.path());
    let cp = compile(dir.path());
    let desired = DesiredState::of(&cp, &target());
    (dir, desired)
}

fn compile(root: &Path) -> CompiledProject {
    let mut diags = Diagnostics::new();
    let project = Project::load(root, &mut diags).expect("loads");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    assert!(!cp.diagnostics.has_errors(), "{:?}", cp.diagnostics);
    cp
}

fn meta(generation: u64) -> Meta {
    Meta {
        generation,
        applied_at: "2026-11-25T00:00:00Z".into(),
        applied_by: "ci@runner".into(),
        git_commit: Some("0123abcd".into()),
    }
}

/// What applying `desired` records (and registers in `registry`).
fn deployed_after(desired: &DesiredState, registry: &dyn SchemaRegistry, generation: u64) -> DeployedState {
    let mut s = DeployedState {
        deployment: Some(Deployment { status: DeploymentStatus::Applied, meta: meta(generation) }),
        ..Default::default()
    };
    for (n, t) in &desired.topics {
        s.topics.insert(n.clone(), DeployedTopic { spec: t.clone(), meta: meta(generation) });
    }
    for (n, spec) in &desired.schemas {
        let r = registry.register(&spec.subject, spec.schema_type, &spec.schema).unwrap();
        s.schemas.insert(
            n.clone(),
            DeployedSchema { spec: spec.clone(), id: r.id, version: r.version, meta: meta(generation) },
        );
    }
    for (n, j) in &desired.jobs {
        s.jobs.insert(n.clone(), DeployedJob { spec: j.clone(), meta: meta(generation) });
    }
    s.bundles.insert(generation, desired.bundle.clone());
    s
}

/// The cluster as the base project's apply left it, `records` in the source topic and a
/// quarter of them in paid_orders' output.
fn facts(deployed: &DeployedState, records: i64) -> ClusterFacts {
    let mut topics: BTreeMap<String, (i32, i64)> =
        deployed.topics.values().map(|t| (t.spec.name.clone(), (t.spec.partitions, 0))).collect();
    topics.insert("shop.orders".into(), (1, records));
    if deployed.topics.contains_key("shop.paid-orders") {
        topics.insert("shop.paid-orders".into(), (1, records / 4));
    }
    ClusterFacts { topics }
}

fn plan(
    desired: &DesiredState,
    deployed: &DeployedState,
    registry: &dyn SchemaRegistry,
    facts: &ClusterFacts,
) -> ChangePlan {
    make_plan(&PlanInput {
        desired,
        deployed,
        registry: Some(registry),
        cluster: Some(facts),
        target: "staging",
        control_topic: "_streamctl_deployments",
        destroy: false,
        delete_topics: false,
    })
}

/// The registry's directory is random: show it as `REGISTRY`.
fn text(p: &ChangePlan, registry_dir: &Path) -> String {
    render_text(p, false).replace(&registry_dir.display().to_string(), "REGISTRY")
}

fn base_deployed() -> (tempfile::TempDir, FileRegistry, DesiredState, DeployedState) {
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(reg_dir.path().to_path_buf(), &reg_dir.path().display().to_string());
    let (_d, base) = project(|_| {});
    let deployed = deployed_after(&base, &registry, 1);
    (reg_dir, registry, base, deployed)
}

#[test]
fn first_plan_creates_everything_in_dependency_order() {
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(reg_dir.path().to_path_buf(), "REGISTRY");
    let (_d, desired) = project(|_| {});
    let p = plan(&desired, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 1200));
    assert!(p.problems.is_empty());
    assert_eq!(p.count(Action::Create), p.changes.len());
    insta::assert_snapshot!(text(&p, reg_dir.path()));
}

#[test]
fn plan_right_after_apply_has_no_changes() {
    let (reg_dir, registry, base, deployed) = base_deployed();
    let p = plan(&base, &deployed, &registry, &facts(&deployed, 1200));
    assert!(!p.has_changes(), "{}", text(&p, reg_dir.path()));
    assert_eq!(p.base.generation, 1);
    insta::assert_snapshot!(text(&p, reg_dir.path()));
}

#[test]
fn stateless_change_is_in_place_and_keeps_offsets() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| {
        replace_in(root, "models/paid_orders.sql", "WHERE STATUS = 'PAID'", "WHERE STATUS = 'PAID' AND TOTAL > 0");
        replace_in(
            root,
            "models/paid_orders.sql",
            "topic='shop.paid-orders'",
            "topic='shop.paid-orders', partitions=3",
        );
    });
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert_eq!(p.count(Action::Update), 2);
    assert_eq!(p.count(Action::Replace), 0);
    insta::assert_snapshot!(text(&p, reg_dir.path()));
}

/// Switching a job's guarantee (here per model, in its SQL's `config()`) is an in-place
/// update: the job restores its last checkpoint and offsets under the new guarantee.
#[test]
fn switching_the_guarantee_is_an_in_place_update_keeping_state() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| {
        replace_in(
            root,
            "models/paid_orders.sql",
            "topic='shop.paid-orders'",
            "topic='shop.paid-orders', guarantee='at_least_once'",
        );
    });
    assert_eq!(edited.jobs["paid_orders"].guarantee.word(), "at_least_once");
    assert_eq!(edited.jobs["totals_by_status"].guarantee.word(), "exactly_once");
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert_eq!(p.count(Action::Update), 1);
    assert_eq!(p.count(Action::Replace), 0);
    let t = text(&p, reg_dir.path());
    assert!(t.contains("guarantee exactly_once → at_least_once"), "{t}");
    assert!(t.contains("state and offsets kept"), "{t}");
}

/// A comment or re-indentation is no change: `plan --detailed-exitcode` stays green. Another
/// text edit with the same query plan (here: lowercase keywords) is still shown.
#[test]
fn comment_and_whitespace_edits_are_no_change() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| {
        replace_in(root, "models/paid_orders.sql", "WHERE STATUS = 'PAID'", "WHERE  STATUS = 'PAID'   -- reviewed\n\n");
        replace_in(root, "models/totals_by_status.sql", "SELECT STATUS,", "/* by status */\nSELECT\n    STATUS,");
    });
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert!(!p.has_changes(), "{}", text(&p, reg_dir.path()));

    let (_d, lowercased) = project(|root| replace_in(root, "models/paid_orders.sql", "WHERE STATUS", "where STATUS"));
    let p = plan(&lowercased, &deployed, &registry, &facts(&deployed, 1200));
    let reasons: Vec<&str> = p.changes.iter().flat_map(|c| c.reasons.iter().map(String::as_str)).collect();
    assert_eq!(reasons, ["SQL text changed, same query plan: state and offsets kept"]);
}

#[test]
fn changed_aggregation_replaces_its_state_and_reprocesses() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| {
        replace_in(root, "models/totals_by_status.sql", "SIZE 1 HOUR", "SIZE 30 MINUTES");
        replace_in(
            root,
            "models/totals_by_status.sql",
            "{{ config(",
            "{{ config(replay={'timestamp': '2026-11-01T00:00:00Z'}, ",
        );
    });
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert_eq!(p.count(Action::Replace), 1);
    insta::assert_snapshot!(text(&p, reg_dir.path()));
}

#[test]
fn removed_model_is_destroyed_and_its_topics_kept() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| std::fs::remove_file(root.join("models/totals_by_status.sql")).unwrap());
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert_eq!(p.count(Action::Destroy), p.changes.len());
    insta::assert_snapshot!(text(&p, reg_dir.path()));
}

#[test]
fn breaking_schema_change_is_a_problem() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    // A new column that is never null is a new required property: data written with the
    // registered schema lacks it, so the new schema cannot read that data (BACKWARD).
    let (_d, edited) = project(|root| {
        replace_in(
            root,
            "models/totals_by_status.sql",
            "SUM(TOTAL) AS REVENUE",
            "SUM(TOTAL) AS REVENUE, COUNT(*) AS ORDERS",
        );
        replace_in(root, "models/totals_by_status.sql", "{{ config(", "{{ config(schema_compatibility='BACKWARD', ");
    });
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    assert!(p.problems[0].starts_with("totals_by_status: property orders is required"));
    insta::assert_snapshot!(text(&p, reg_dir.path()));
    // The CLI prints the changes on stdout and the problems, errors, on stderr.
    assert!(!render_changes(&p, false).contains("error:"));
    assert!(render_problems(&p, false).starts_with("error: totals_by_status: property orders is required"));
    assert!(render_problems(&p, false).ends_with("The plan cannot be applied: 2 problem(s).\n"));
}

#[test]
fn adding_a_nullable_column_passes_the_default_level() {
    let (reg_dir, registry, _base, deployed) = base_deployed();
    let (_d, edited) = project(|root| {
        replace_in(
            root,
            "models/totals_by_status.sql",
            "SUM(TOTAL) AS REVENUE",
            "SUM(TOTAL) AS REVENUE, MAX(TOTAL) AS BIGGEST",
        );
    });
    let p = plan(&edited, &deployed, &registry, &facts(&deployed, 1200));
    assert!(p.problems.is_empty(), "{}", text(&p, reg_dir.path()));
    assert!(p.changes.iter().any(|c| c.name == "shop.totals-by-status-value" && c.action == Action::Update));
}

#[test]
fn destroy_plans_every_deployed_object() {
    let (reg_dir, registry, base, deployed) = base_deployed();
    let p = make_plan(&PlanInput {
        desired: &base,
        deployed: &deployed,
        registry: Some(&registry),
        cluster: Some(&facts(&deployed, 0)),
        target: "staging",
        control_topic: "_streamctl_deployments",
        destroy: true,
        delete_topics: true,
    });
    assert_eq!(p.count(Action::Destroy), deployed.topics.len() + deployed.schemas.len() + deployed.jobs.len());
    // Jobs stop before their topics go, downstream first.
    let names: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(&names[..2], &["totals_by_status", "paid_orders"]);
    let _ = reg_dir;
}

#[test]
fn saved_plan_round_trips_and_stale_base_is_visible() {
    let (_reg_dir, registry, base, deployed) = base_deployed();
    let p = plan(&base, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 0));
    let back: ChangePlan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back.changes, p.changes);
    assert_eq!(back.desired, p.desired);
    // The plan was made against an empty target; it has been deployed since.
    assert_ne!(back.base.fingerprint, deployed.fingerprint());
}

#[test]
fn a_sources_dead_letter_topic_is_planned_with_its_first_reader() {
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(reg_dir.path().to_path_buf(), "REGISTRY");
    // A dead-letter topic whose name does not start with the source's topic.
    let (_d, desired) = project(|root| {
        replace_in(
            root,
            "sources/shop.yml",
            "        event_time: {column: TS}",
            "        event_time: {column: TS}\n        on_error: dead_letter\n        dead_letter_topic: shop.rejects",
        );
    });
    let p = plan(&desired, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 0));
    let names: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not planned: {names:?}"));
    assert!(at("shop.rejects") < at("paid_orders"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "shop.rejects").count(), 1);
}

/// A windowed aggregate sends the records that come after their windows closed to its input's
/// dead-letter topic (late records, each job's own), so the topic is planned with the job even
/// when the source does not say `on_error: dead_letter`: a source's and an upstream model's.
#[test]
fn a_windowed_aggregate_plans_its_inputs_dead_letter_topics_for_late_records() {
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(reg_dir.path().to_path_buf(), "REGISTRY");
    let (_d, desired) = project(|root| {
        std::fs::write(
            root.join("models/hourly_orders.sql"),
            "{{ config(topic='shop.hourly-orders', key=['STATUS']) }}\nSELECT STATUS, COUNT(*) AS N\n\
             FROM {{ source('shop', 'orders') }}\nWINDOW TUMBLING (SIZE 1 HOUR)\nGROUP BY STATUS\nEMIT FINAL\n",
        )
        .unwrap();
    });
    let p = plan(&desired, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 0));
    let names: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not planned: {names:?}"));
    // The source's (no `on_error`), before the first job that writes it.
    assert!(at("shop.orders.dlq") < at("hourly_orders"), "{names:?}");
    // The upstream model's (paid_orders feeds the windowed totals_by_status).
    assert!(at("shop.paid-orders.dlq") < at("totals_by_status"), "{names:?}");
    // paid_orders is stateless: no late records, and the source has no `on_error`.
    assert_eq!(names.iter().filter(|n| n.ends_with(".dlq")).count(), 2, "{names:?}");
}

/// A GROUP BY on a column other than its input's key (totals_by_status groups by STATUS; paid_orders
/// has no key) over a multi-partition input goes through a repartition topic: planned with as many
/// partitions as the input, created before the job, destroyed with `--delete-topics`.
#[test]
fn a_group_by_on_other_columns_than_the_key_plans_a_repartition_topic() {
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(reg_dir.path().to_path_buf(), "REGISTRY");
    let four = |root: &Path| {
        replace_in(root, "models/paid_orders.sql", "topic='shop.paid-orders'", "topic='shop.paid-orders', partitions=4")
    };
    let (_d, desired) = project(four);
    let p = plan(&desired, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 0));
    insta::assert_snapshot!(text(&p, reg_dir.path()));
    let names: Vec<&str> = p.changes.iter().map(|c| c.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not planned: {names:?}"));
    assert!(at("_streamctl.shop.totals_by_status.repartition") < at("totals_by_status"), "{names:?}");

    // The input keyed by STATUS: its groups are in one partition each, no repartition topic.
    let (_d, keyed) = project(|root| {
        four(root);
        replace_in(root, "models/paid_orders.sql", "partitions=4", "partitions=4, key=['STATUS']");
    });
    let p = plan(&keyed, &DeployedState::default(), &registry, &facts(&DeployedState::default(), 0));
    assert!(!text(&p, reg_dir.path()).contains("repartition"), "{}", text(&p, reg_dir.path()));

    let deployed = deployed_after(&desired, &registry, 1);
    let p = make_plan(&PlanInput {
        desired: &desired,
        deployed: &deployed,
        registry: Some(&registry),
        cluster: Some(&facts(&deployed, 0)),
        target: "staging",
        control_topic: "_streamctl_deployments",
        destroy: true,
        delete_topics: true,
    });
    let destroyed = render_changes(&p, false);
    assert!(destroyed.contains("- topic _streamctl.shop.totals_by_status.repartition"), "{destroyed}");
}

/// A target's `topic_prefix` names the repartition topic, and the repartition follows its input when
/// that is an upstream model's derived (so prefixed) topic; it goes before the job's and the sinks'
/// consumer groups too.
#[test]
fn a_topic_prefix_names_the_repartition_topic_and_its_input() {
    use streamctl::compile::repartition::Repartitioning;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(BASE), dir.path(), &["target"]);
    replace_in(dir.path(), "models/paid_orders.sql", "topic='shop.paid-orders'", "partitions=4");
    std::fs::create_dir_all(dir.path().join("sinks")).unwrap();
    std::fs::write(
        dir.path().join("sinks/files.yml"),
        "version: 1\nsinks:\n  - name: paid_files\n    from: paid_orders\n    connector:\n      type: file\n      \
         path: target/sinks/paid\n      format: jsonl\n",
    )
    .unwrap();
    let mut cp = compile(dir.path());
    assert_eq!(cp.sinks["paid_files"].consumer_group, "streamctl.shop.sink.paid_files");
    streamctl::compile::names::prefix_derived_topics(&mut cp, "dev.");
    let upstream = cp.models["paid_orders"].topic.clone();
    assert!(upstream.starts_with("dev."), "{upstream}");
    let Repartitioning::Topic(r) = &cp.models["totals_by_status"].resolved.repartition else {
        panic!("no repartition topic: {:?}", cp.models["totals_by_status"].resolved.repartition)
    };
    assert_eq!(
        (r.topic.as_str(), r.input_topic.as_str()),
        ("dev._streamctl.shop.totals_by_status.repartition", upstream.as_str())
    );
    let written: Vec<&str> = cp.models["totals_by_status"].resolved.topics.iter().map(|t| t.name.as_str()).collect();
    assert!(written.contains(&"dev._streamctl.shop.totals_by_status.repartition"), "{written:?}");
    // The job's consumer group (its task group follows) and transactional id: another target on the
    // same cluster shares neither.
    let r = &cp.models["totals_by_status"].resolved;
    assert_eq!(
        (r.consumer_group.as_str(), r.transactional_id.as_str()),
        ("dev.streamctl.shop.totals_by_status", "dev._streamctl.shop.totals_by_status")
    );
    // Nor a native sink's group, which would otherwise deliver each target's records only in part.
    assert_eq!(cp.sinks["paid_files"].consumer_group, "dev.streamctl.shop.sink.paid_files");
}
