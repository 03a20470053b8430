//! Deploying a project to a target, Terraform's way: the desired state from the compiled
//! project ([`desired`]), the deployed state recorded in the cluster's control topic
//! ([`control`]), the difference as a [`plan::ChangePlan`], and [`apply`] to carry it out.

pub mod apply;
pub mod connect;
pub mod control;
pub mod desired;
pub mod plan;

use crate::compile::CompiledProject;
use crate::connectors::embedded::EmbeddedBroker;
use crate::connectors::kafka::Cluster;
use crate::project::config::TargetKind;
use crate::project::target::ResolvedTarget;
use crate::registry::SchemaRegistry;
use control::{ControlError, ControlTopic, DeployedState};
use desired::DesiredState;
use plan::{make_plan, ChangePlan, ClusterFacts, PlanInput};

/// A connection to a target: its cluster (for the embedded target, a broker started in this
/// process), its control topic and its schema registry.
pub struct Session {
    pub target: ResolvedTarget,
    broker: Option<EmbeddedBroker>,
    pub control: ControlTopic,
    pub registry: Option<Box<dyn SchemaRegistry>>,
    /// The target's Kafka Connect clusters.
    pub connect: connect::Connect,
}

impl Session {
    pub fn open(cp: &CompiledProject, target: ResolvedTarget) -> Result<Session, String> {
        let broker = if target.kind == TargetKind::Embedded { Some(EmbeddedBroker::start()?) } else { None };
        let registry = crate::registry::open(
            target.schema_registry_url.as_deref(),
            &target.schema_registry_access,
            target.kind == TargetKind::Embedded,
            &cp.project.root,
        )
        .map_err(|e| e.to_string())?;
        let client = cluster_of(&target, broker.as_ref()).client_config();
        let control =
            ControlTopic::new(&client, &target.control_topic, &cp.project.config.name).map_err(|e| e.to_string())?;
        let connect = connect::Connect::new(&target.name, &target.connect, cp.project.config.vars.clone());
        let s = Session { target, broker, control, registry, connect };
        s.cluster().check_reachable()?;
        Ok(s)
    }

    pub fn cluster(&self) -> Cluster<'_> {
        cluster_of(&self.target, self.broker.as_ref())
    }

    pub fn is_embedded(&self) -> bool {
        self.broker.is_some()
    }

    /// The broker in this process, on the embedded target.
    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.broker.as_ref()
    }

    pub fn read(&self) -> Result<DeployedState, ControlError> {
        self.control.read()
    }

    /// The plan for this project against what the target has recorded now.
    pub fn plan(
        &self,
        desired: &DesiredState,
        deployed: &DeployedState,
        destroy: bool,
        delete_topics: bool,
    ) -> ChangePlan {
        let mut names: Vec<String> = desired.topics.keys().cloned().collect();
        names.extend(desired.jobs.values().flat_map(|j| j.input_topics.iter().cloned()));
        names.extend(deployed.topics.keys().cloned());
        let (facts, note) = match self.cluster().topic_facts(&names) {
            Ok(topics) => (Some(ClusterFacts { topics }), None),
            Err(e) => (None, Some(format!("could not read topic offsets ({e}): replay volumes unknown"))),
        };
        let mut p = make_plan(&PlanInput {
            desired,
            deployed,
            registry: self.registry.as_deref(),
            cluster: facts.as_ref(),
            target: &self.target.name,
            control_topic: &self.target.control_topic,
            destroy,
            delete_topics,
        });
        p.notes.extend(note);
        connect::add_to_plan(&mut p, &self.connect, deployed, self.is_embedded());
        if self.is_embedded() && !destroy {
            p.notes.push("the embedded broker starts empty in every process: apply loads each source's sample data after deploying".into());
        }
        if !self.is_embedded() && !destroy {
            if let Some(f) = &facts {
                let mut missing: Vec<&String> = desired
                    .jobs
                    .values()
                    .flat_map(|j| j.input_topics.iter())
                    .filter(|t| !f.topics.contains_key(*t) && !desired.topics.contains_key(*t))
                    .collect();
                missing.sort();
                missing.dedup();
                for t in missing {
                    p.notes.push(format!("source topic {t} does not exist yet: jobs reading it wait for it"));
                }
            }
        }
        p
    }
}

fn cluster_of<'a>(target: &ResolvedTarget, broker: Option<&'a EmbeddedBroker>) -> Cluster<'a> {
    match broker {
        Some(b) => Cluster::Embedded(b),
        None => Cluster::Kafka {
            bootstrap: target.bootstrap_servers.clone().unwrap_or_default(),
            properties: target.properties.clone().into_iter().collect(),
            replication_factor: target.replication_factor,
        },
    }
}
