//! End to end against Apache Kafka (a broker process started by the test, see
//! `e2e_common::kafka`), with kcat as the foreign client: the example project's sample data goes in with kcat, `streamctl
//! run` processes it, the outputs come back with kcat and must equal what
//! `tests/e2e/expected.py` computes independently. Then two workers share the jobs, one is
//! killed with SIGKILL mid-stream, and every expected output still arrives.
//!
//! Needs Java, Kafka's jars (`tests/kafka/fetch.sh`) and `kcat` (`.ci/run` installs all three and
//! sets STREAMCTL_E2E=1, which makes their absence a failure rather than a skip).

mod common;
mod e2e_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;

#[test]
fn example_project_on_a_real_broker_with_kcat() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    // A copy: the example's file sink writes under the project's target/.
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    let out = streamctl()
        .args(["run", "--project-dir"])
        .arg(project.path())
        .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--until-caught-up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "streamctl run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let problems = check_outputs(&kcat, &bootstrap, &expected());
    assert!(
        problems.is_empty(),
        "{problems:#?}\n--- streamctl run\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // The two malformed logons, one dead-letter copy each, with their headers.
    let dlq = Command::new(&kcat)
        .args(["-C", "-b", &bootstrap, "-t", "ora-ogg-SOE-LOGON-avro.dlq", "-o", "beginning", "-e", "-q", "-f", "%h\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&dlq.stdout);
    assert_eq!(headers.lines().count(), 2, "{headers}");
    assert!(headers.contains("streamctl.source.topic=ora-ogg-SOE-LOGON-avro"), "{headers}");
}

#[test]
fn two_workers_and_one_killed_mid_stream() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..0.5);
    let logs = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    let worker = |name: &str| {
        let log = std::fs::File::create(logs.path().join(name)).unwrap();
        streamctl()
            .args(["run", "--project-dir"])
            .arg(project.path())
            .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--checkpoint-interval-ms", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut a = Killed(worker("a.log"));
    let mut b = Killed(worker("b.log"));
    let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    // Both run tasks before the kill (a fixed wait was short for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(log("a.log").contains(" runs on ") && log("b.log").contains(" runs on ")) {
        assert!(Instant::now() < deadline, "no tasks running on both workers:\n{}\n{}", log("a.log"), log("b.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SIGKILL: no chance to checkpoint or leave the group.
    a.0.kill().unwrap();
    let _ = a.0.wait();
    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let exp = expected();
    // The session timeout, the rebalance, the tasks' restarts, and on a loaded machine more.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let problems = check_outputs(&kcat, &bootstrap, &exp);
        if problems.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("after the kill, outputs are still incomplete: {problems:#?}\n--- worker a (killed)\n{}\n--- worker b\n{}", log("a.log"), log("b.log"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // SIGTERM: the survivor finishes its batches, checkpoints and exits 0.
    let term = Command::new("kill").args(["-TERM", &b.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = b.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
