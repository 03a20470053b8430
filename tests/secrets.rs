//! Secrets set through `env_var()` never reach the output: not in any command's text or JSON, not
//! in its errors, not in the files it writes, whatever the logging settings.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::copy_dir;

const SECRET: &str = "s3cr3t-Value-42";

/// The example project with two targets whose SASL password, TLS key password and schema
/// registry credentials come from `STREAMCTL_TEST_SECRET`: `secure`, a Kafka cluster that cannot
/// be reached (the errors must not quote them), and `embedded_secure`, where every command does
/// its whole work (plans, apply, the run's logs).
fn project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project");
    copy_dir(&example, tmp.path(), &["target"]);
    let file = tmp.path().join("streamctl_project.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    let secure = "targets:
  secure:
    type: kafka
    bootstrap_servers: 127.0.0.1:1
    schema_registry_url: \"https://key:{{ env_var('STREAMCTL_TEST_SECRET') }}@127.0.0.1:1\"
    schema_registry_basic_auth_user_info: \"key:{{ env_var('STREAMCTL_TEST_SECRET') }}\"
    properties:
      security.protocol: SASL_SSL
      sasl.mechanisms: PLAIN
      sasl.username: alice
      sasl.password: \"{{ env_var('STREAMCTL_TEST_SECRET') }}\"
      ssl.key.password: \"{{ env_var('STREAMCTL_TEST_SECRET') }}\"
  embedded_secure:
    type: embedded
    properties:
      sasl.password: \"{{ env_var('STREAMCTL_TEST_SECRET') }}\"
";
    assert!(text.contains("targets:\n"));
    std::fs::write(&file, text.replacen("targets:\n", secure, 1)).unwrap();
    tmp
}

#[test]
fn no_command_prints_a_secret_set_through_env_var() {
    let tmp = project();
    let plan_file = tmp.path().join("target").join("secure.plan");
    std::fs::create_dir_all(plan_file.parent().unwrap()).unwrap();
    let plan_file = plan_file.to_str().unwrap();
    let everything: &[&[&str]] = &[
        &["validate"],
        &["compile"],
        &["ls"],
        &["docs"],
        &["test"],
        &["plan"],
        &["plan", "--out", plan_file],
        &["apply", "--auto-approve"],
        &["seed", "--create-topics"],
        &["run", "--until-caught-up"],
        &["status"],
        &["destroy", "--auto-approve"],
    ];
    // Every command that connects fails the same way on the unreachable cluster (in 10 s).
    let unreachable: &[&[&str]] = &[&["validate"], &["plan"]];
    let runs: Vec<(&str, &[&str])> =
        everything.iter().map(|a| ("embedded_secure", *a)).chain(unreachable.iter().map(|a| ("secure", *a))).collect();
    let mut seen = 0;
    for format in ["text", "json"] {
        for (target, args) in &runs {
            let out = Command::cargo_bin("streamctl")
                .unwrap()
                .args(*args)
                .args(["--target", target, "--format", format, "--project-dir"])
                .arg(tmp.path())
                .env("STREAMCTL_TEST_SECRET", SECRET)
                .env("RUST_LOG", "trace")
                .env("RUST_BACKTRACE", "1")
                .env("NO_COLOR", "1")
                .env_remove("STREAMCTL_TARGET")
                .env_remove("STREAMCTL_BOOTSTRAP_SERVERS")
                .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL")
                .timeout(std::time::Duration::from_secs(120))
                .output()
                .unwrap();
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!all.contains(SECRET), "{args:?} --target {target} --format {format} printed the secret:\n{all}");
            seen += usize::from(!all.is_empty());
        }
    }
    assert_eq!(seen, 2 * runs.len(), "every command says something");
    // Nor in the files the commands wrote (manifest, compiled SQL, docs, a saved plan).
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{} holds the secret", path.display());
            }
        }
    }
}
