//! `apply` on the embedded broker (librdkafka's mock cluster, in this process): a failure
//! midway leaves the records true, the next plan shows what remains, and finishing it leaves
//! nothing to do.

use std::path::Path;

use streamctl::deploy::apply::{apply, ApplyError};
use streamctl::deploy::control::DeploymentStatus;
use streamctl::deploy::desired::DesiredState;
use streamctl::deploy::plan::Action;
use streamctl::deploy::Session;
use streamctl::diagnostics::Diagnostics;
use streamctl::jinja::Jinja;
use streamctl::project::target::TargetOverrides;
use streamctl::project::Project;
use streamctl::registry::file::FileRegistry;
use streamctl::registry::{Compatibility, RegisteredSchema, RegistryError, SchemaRegistry, SchemaType};

/// A file registry that refuses to register one subject, as a registry that goes away would.
struct Refusing {
    inner: FileRegistry,
    subject: String,
}

impl SchemaRegistry for Refusing {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.inner.subjects()
    }
    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>, RegistryError> {
        self.inner.versions(subject)
    }
    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        self.inner.compatibility(subject)
    }
    fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        self.inner.set_compatibility(subject, level)
    }
    fn register(&self, subject: &str, t: SchemaType, schema: &str) -> Result<RegisteredSchema, RegistryError> {
        if subject == self.subject {
            return Err(RegistryError::Http {
                url: "http://sr".into(),
                status: Some(503),
                message: "unavailable".into(),
            });
        }
        self.inner.register(subject, t, schema)
    }
    fn delete_subject(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        self.inner.delete_subject(subject)
    }
}

#[test]
fn failed_apply_is_resumed_by_the_next_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy/shop");
    let mut diags = Diagnostics::new();
    let project = Project::load(&root, &mut diags).expect("loads");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    assert!(!cp.diagnostics.has_errors());
    let target = cp.project.resolve_target(&TargetOverrides::default(), &Jinja::new(Default::default())).unwrap();
    let reg = tempfile::tempdir().unwrap();
    let mut session = Session::open(&cp, target).unwrap();
    session.registry = Some(Box::new(Refusing {
        inner: FileRegistry::new(reg.path().to_path_buf(), "registry"),
        subject: "shop.totals-by-status-value".into(),
    }));
    let desired = DesiredState::of(&cp, &session.target);

    let first = session.plan(&desired, &session.read().unwrap(), false, false);
    let total = first.changes.len();
    let err = apply(&session, &first, &root).unwrap_err();
    let ApplyError::Step { name, done, .. } = &err else { panic!("{err}") };
    assert_eq!(name, "shop.totals-by-status-value");
    assert!(*done > 0 && *done < total);

    // Everything before the failure is recorded; the generation is marked unfinished.
    let state = session.read().unwrap();
    assert_eq!(state.deployment.as_ref().map(|d| d.status), Some(DeploymentStatus::Applying));
    assert!(state.jobs.contains_key("paid_orders"));
    assert!(!state.jobs.contains_key("totals_by_status"));

    // The registry is back: the plan holds only what remains, and says why.
    session.registry = Some(Box::new(FileRegistry::new(reg.path().to_path_buf(), "registry")));
    let rest = session.plan(&desired, &state, false, false);
    assert_eq!(rest.changes.len(), total - done, "{:#?}", rest.changes);
    assert!(rest.changes.iter().all(|c| c.action == Action::Create));
    assert!(rest.notes.iter().any(|n| n.contains("was not applied to the end")), "{:?}", rest.notes);
    // The lock was released by the failed apply.
    let report = apply(&session, &rest, &root).unwrap();
    assert_eq!(report.generation, 2);

    let done_state = session.read().unwrap();
    assert_eq!(done_state.deployment.as_ref().map(|d| d.status), Some(DeploymentStatus::Applied));
    let last = session.plan(&desired, &done_state, false, false);
    assert!(!last.has_changes(), "{:#?}", last.changes);
    // A plan for another project is refused before anything is read or written.
    let mut other = last.clone();
    other.project = "another_project".into();
    let err = apply(&session, &other, &root).unwrap_err();
    assert!(matches!(err, ApplyError::WrongTarget { .. }), "{err}");
    // A plan made before the last apply is stale now.
    let err = apply(&session, &rest, &root).unwrap_err();
    assert!(matches!(err, ApplyError::Stale { .. }), "{err}");
}
