//! `https://` schema registries: the test makes a CA, a server certificate and a client
//! certificate with the openssl command, starts a Confluent-API registry over TLS
//! (tests/tls/registry.py, Python's `ssl`), and plans and applies the example project through
//! targets that name the CA (`schema_registry_ca_location`), basic-auth credentials from
//! `env_var()` (`schema_registry_basic_auth_user_info`) and a client certificate (mutual TLS).
//! A CA that did not sign the registry's certificate, no CA at all, a wrong password and a missing
//! client certificate each fail with a reason; the password is never printed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{copy_dir, replace_in};
use serde_json::Value;

const PASSWORD: &str = "Sr-s3cret/with+slash";
const WRONG_PASSWORD: &str = "not-the-Sr-password";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/registry.py");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

fn self_signed_ca(dir: &Path, name: &str, subject: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-days", "2"];
    openssl(dir, &[&args[..], &["-subj", subject]].concat());
}

/// A certificate signed by `ca.pem`: `{name}.pem` and its key `{name}.key`.
fn signed(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, pem, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// `ca.pem` (signs `server.pem` for 127.0.0.1 and `client.pem`) and `other-ca.pem` (signs nothing).
fn make_certificates(dir: &Path) {
    self_signed_ca(dir, "ca", "/CN=streamctl test CA");
    self_signed_ca(dir, "other-ca", "/CN=another CA");
    signed(dir, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    signed(dir, "client", "/CN=streamctl", "extendedKeyUsage=clientAuth\n");
}

/// The registry process; killed when dropped.
struct Registry {
    child: Child,
    url: String,
    state: PathBuf,
}

impl Registry {
    fn start(certs: &Path, name: &str, extra: &[&str]) -> Registry {
        let state = certs.join(format!("{name}-state.json"));
        let log = std::fs::File::create(certs.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(["--cert", "server.pem", "--key", "server.key", "--state"])
            .arg(&state)
            .args(extra)
            .current_dir(certs)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 runs (.ci/run installs it)");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        let port: u16 = port.trim().parse().unwrap_or_else(|_| {
            let _ = child.wait();
            let log = std::fs::read_to_string(certs.join(format!("{name}.log"))).unwrap_or_default();
            panic!("the registry did not start:\n{log}")
        });
        Registry { child, url: format!("https://127.0.0.1:{port}"), state }
    }

    /// subject → the schemas registered under it, oldest first.
    fn subjects(&self) -> Vec<(String, Vec<String>)> {
        let state: Value = serde_json::from_str(&std::fs::read_to_string(&self.state).unwrap()).unwrap();
        let subjects = state["subjects"].as_object().unwrap();
        let schemas =
            |v: &Value| v.as_array().unwrap().iter().map(|s| s["schema"].as_str().unwrap().to_string()).collect();
        subjects
            .iter()
            .filter(|(_, v)| !v.as_array().unwrap().is_empty())
            .map(|(k, v)| (k.clone(), schemas(v)))
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example project with embedded targets whose registries are reached over TLS; the client
/// certificate is under the project (relative paths), the CA comes from `SR_CA`.
fn project(dir: &Path, certs: &Path) -> PathBuf {
    let project = dir.join("project");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project"), &project, &["target", "schemas"]);
    std::fs::create_dir_all(project.join("certs")).unwrap();
    for f in ["client.pem", "client.key"] {
        std::fs::copy(certs.join(f), project.join("certs").join(f)).unwrap();
    }
    replace_in(
        &project,
        "streamctl_project.yml",
        "  prod:\n",
        "  registry_tls:
    type: embedded
    schema_registry_url: \"{{ env_var('SR_URL') }}\"
    schema_registry_ca_location: \"{{ env_var('SR_CA') }}\"
    schema_registry_basic_auth_user_info: \"streamctl:{{ env_var('SR_PASSWORD') }}\"

  registry_public_ca:
    type: embedded
    schema_registry_url: \"{{ env_var('SR_URL') }}\"

  registry_mtls:
    type: embedded
    schema_registry_url: \"{{ env_var('SR_URL') }}\"
    schema_registry_ca_location: \"{{ env_var('SR_CA') }}\"
    schema_registry_certificate_location: certs/client.pem
    schema_registry_key_location: certs/client.key

  prod:\n",
    );
    project
}

struct Case<'a> {
    project: &'a Path,
    url: &'a str,
    ca: PathBuf,
    password: &'a str,
}

impl Case<'_> {
    fn run(&self, target: &str, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
            .arg("--project-dir")
            .arg(self.project)
            .args(["--target", target])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "debug")
            .env("SR_URL", self.url)
            .env("SR_CA", &self.ca)
            .env("SR_PASSWORD", self.password)
            .env_remove("STREAMCTL_TARGET")
            .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL")
            .output()
            .unwrap();
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(!text(&out).contains(secret), "streamctl {args:?} printed the registry password:\n{}", text(&out));
        }
        out
    }
}

#[test]
fn plan_and_apply_against_an_https_registry() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), certs.path());
    let registry = Registry::start(certs.path(), "basic", &["--user-info", &format!("streamctl:{PASSWORD}")]);
    let case = Case { project: &project, url: &registry.url, ca: certs.path().join("ca.pem"), password: PASSWORD };

    // The plan reads the registry over TLS and says which subjects it registers.
    let plan = case.run("registry_tls", &["plan", "--format", "json"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut planned: Vec<String> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["object"] == "schema" && c["action"] == "create")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    planned.sort();
    assert!(!planned.is_empty(), "{plan:#}");
    assert!(registry.subjects().is_empty());

    // apply registers them; the registry holds exactly those subjects, one version each, and the
    // next plan reads them back over TLS (the embedded broker starts empty in every process, so
    // its topics and jobs are planned again, but not the schemas).
    let apply = case.run("registry_tls", &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let registered = registry.subjects();
    let mut names: Vec<String> = registered.iter().map(|(s, _)| s.clone()).collect();
    names.sort();
    // And the Avro source's subject: loading LOGON's sample data registers its schema, as a
    // producer's serializer would, to frame the records with that registry's id.
    let mut expected = planned.clone();
    expected.push("ora-ogg-SOE-LOGON-avro-value".into());
    expected.sort();
    assert_eq!(names, expected, "{}", text(&apply));
    assert!(registered.iter().all(|(_, versions)| versions.len() == 1), "{registered:?}");
    let again = case.run("registry_tls", &["plan"]);
    assert!(again.status.success(), "{}", text(&again));
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    for subject in &planned {
        let line = again.lines().find(|l| l.contains(&format!("schema {subject} "))).unwrap_or_default();
        assert!(line.ends_with(&format!("already registered in {} as version 1", registry.url)), "{line}\n{again}");
    }
    assert_eq!(registry.subjects(), registered, "a plan registers nothing");

    // A CA that did not sign the registry's certificate: refused, and the reason names the CA file.
    let other = Case { ca: certs.path().join("other-ca.pem"), ..case.clone_with() };
    let untrusted = other.run("registry_tls", &["plan"]);
    assert_eq!(untrusted.status.code(), Some(1), "{}", text(&untrusted));
    let why = text(&untrusted);
    assert!(why.contains("certificate is not signed by a CA in") && why.contains("other-ca.pem"), "{why}");

    // No CA named: the Mozilla roots do not trust a test CA, and the error says what to set.
    let public = case.run("registry_public_ca", &["plan"]);
    assert_eq!(public.status.code(), Some(1), "{}", text(&public));
    assert!(text(&public).contains("set schema_registry_ca_location"), "{}", text(&public));

    // A wrong password: the registry's 401, in text and in JSON; neither password printed (checked in run()).
    let wrong = Case { password: WRONG_PASSWORD, ..case.clone_with() };
    for format in ["text", "json"] {
        let out = wrong.run("registry_tls", &["plan", "--format", format]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("Unauthorized (error code 401, HTTP 401)"), "{}", text(&out));
    }

    // TLS files on an http:// registry are a mistake, said before anything is sent.
    let http = Case { url: "http://127.0.0.1:1", ..case.clone_with() };
    let out = http.run("registry_tls", &["plan"]);
    assert!(text(&out).contains("is not https://"), "{}", text(&out));
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), certs.path());
    let registry = Registry::start(certs.path(), "mtls", &["--client-ca", "ca.pem"]);
    let case = Case { project: &project, url: &registry.url, ca: certs.path().join("ca.pem"), password: PASSWORD };

    let apply = case.run("registry_mtls", &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(!registry.subjects().is_empty(), "{}", text(&apply));

    // Without the client certificate the registry ends the handshake.
    let refused = case.run("registry_tls", &["plan"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("cannot reach schema registry at https://127.0.0.1:"), "{}", text(&refused));

    // A certificate without its key is an error at its place in the project file.
    replace_in(&project, "streamctl_project.yml", "    schema_registry_key_location: certs/client.key\n", "");
    let out = case.run("registry_mtls", &["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("streamctl_project.yml:"), "{}", text(&out));
    assert!(text(&out).contains("a client certificate without `schema_registry_key_location`"), "{}", text(&out));
}

impl<'a> Case<'a> {
    fn clone_with(&self) -> Case<'a> {
        Case { project: self.project, url: self.url, ca: self.ca.clone(), password: self.password }
    }
}
