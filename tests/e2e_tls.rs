//! TLS and SASL against Apache Kafka: the test makes a certificate authority and a broker certificate
//! with the openssl command, starts a broker with an SSL and a SASL_SSL (PLAIN) listener, and deploys
//! and runs the example project through targets that use them (`properties:` with `security.protocol`,
//! `sasl.*` and `ssl.ca.location`). The inputs go in and the outputs come out with kcat on the
//! plaintext listener. The password never shows in what streamctl prints, also when it is wrong.

mod common;
mod e2e_common;

use std::path::Path;
use std::process::{Command, Output};

use common::{copy_dir, replace_in};
use e2e_common::kafka::{KafkaCluster, KafkaOptions};
use e2e_common::*;

const PASSWORD: &str = "s3cret-Pa55word-for-alice";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// A CA (`ca.pem`) and a broker key store (`broker.p12`, password `changeit`) for 127.0.0.1 and localhost.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=streamctl test CA",
        ],
    );
    // A second CA, which did not sign the broker's certificate.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=another CA",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-in",
            "broker.pem",
            "-inkey",
            "broker.key",
            "-out",
            "broker.p12",
            "-passout",
            "pass:changeit",
        ],
    );
}

fn tls_broker(certs: &Path) -> KafkaCluster {
    let p12 = certs.join("broker.p12").display().to_string();
    let jaas = format!("org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"{PASSWORD}\";");
    let props = [
        ("ssl.keystore.type", "PKCS12"),
        ("ssl.keystore.location", p12.as_str()),
        ("ssl.keystore.password", "changeit"),
        ("ssl.key.password", "changeit"),
        ("listener.name.sasl_ssl.sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_ssl.plain.sasl.jaas.config", jaas.as_str()),
    ];
    KafkaCluster::start(KafkaOptions {
        nodes: 1,
        listeners: vec![("SSL".into(), "SSL".into()), ("SASL_SSL".into(), "SASL_SSL".into())],
        properties: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })
}

/// The example project with two more targets: `tls` (SSL) and `secure` (SASL_SSL, PLAIN).
fn project(dir: &Path) -> std::path::PathBuf {
    let project = dir.join("project");
    copy_dir(&root().join("example-project"), &project, &["target", "schemas"]);
    replace_in(
        &project,
        "streamctl_project.yml",
        "  prod:\n",
        "  tls:
    type: kafka
    bootstrap_servers: \"{{ env_var('KAFKA_BOOTSTRAP_SERVERS') }}\"
    properties:
      security.protocol: SSL
      ssl.ca.location: \"{{ env_var('KAFKA_CA') }}\"

  secure:
    type: kafka
    bootstrap_servers: \"{{ env_var('KAFKA_BOOTSTRAP_SERVERS') }}\"
    properties:
      security.protocol: SASL_SSL
      sasl.mechanisms: PLAIN
      sasl.username: \"{{ env_var('KAFKA_USERNAME') }}\"
      sasl.password: \"{{ env_var('KAFKA_PASSWORD') }}\"
      ssl.ca.location: \"{{ env_var('KAFKA_CA') }}\"

  prod:\n",
    );
    project
}

#[test]
fn deploy_and_run_over_tls_and_sasl_ssl() {
    let Some(kcat) = tools() else { return };
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let kafka = tls_broker(certs.path());
    let plain = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path());
    let ca = certs.path().join("ca.pem");
    let streamctl_on = |target: &str, listener: &str, password: &str, args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir")
            .arg(&project)
            .args(["--target", target, "--schema-registry-url", "file:registry"])
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.listener_bootstrap(listener))
            .env("KAFKA_CA", &ca)
            .env("KAFKA_USERNAME", "alice")
            .env("KAFKA_PASSWORD", password);
        c.output().unwrap()
    };

    create_source_topics(&plain);
    register_logon_schema(&project.join("registry"));
    produce_samples(&kcat, &plain, 0.0..1.0);

    // SASL_SSL: apply, then run the jobs until they have caught up.
    let apply = streamctl_on("secure", "SASL_SSL", PASSWORD, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}\n{}", text(&apply), kafka.logs());
    assert!(!text(&apply).contains(PASSWORD), "{}", text(&apply));
    let run = streamctl_on("secure", "SASL_SSL", PASSWORD, &["run", "--until-caught-up"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(!text(&run).contains(PASSWORD), "{}", text(&run));
    let problems = check_outputs(&kcat, &plain, &expected());
    assert!(problems.is_empty(), "{problems:#?}\n--- streamctl run\n{}", text(&run));

    // A wrong password: a clear failure, and neither password printed.
    let wrong = streamctl_on("secure", "SASL_SSL", "not-the-password", &["apply", "--auto-approve"]);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(text(&wrong).contains("Authentication failed"), "{}", text(&wrong));
    assert!(!text(&wrong).contains("not-the-password"), "{}", text(&wrong));

    // With another CA, the broker's certificate is not trusted, and the error says so.
    let untrusted = {
        let mut c = streamctl();
        c.arg("--project-dir")
            .arg(&project)
            .args(["--target", "tls", "--schema-registry-url", "file:registry", "plan"])
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka.listener_bootstrap("SSL"))
            .env("KAFKA_CA", certs.path().join("other-ca.pem"));
        c.output().unwrap()
    };
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(text(&untrusted).contains("certificate verify failed"), "{}", text(&untrusted));

    // TLS without SASL sees the same deployment.
    let status = streamctl_on("tls", "SSL", PASSWORD, &["status", "--format", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let plan = streamctl_on("tls", "SSL", PASSWORD, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}
