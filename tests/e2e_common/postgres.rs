//! A PostgreSQL server from Debian's packages (`initdb`, `pg_ctl`, `psql`), started by a test in
//! a temporary directory on a free port and stopped when dropped. As root (CI), the server runs
//! as the `postgres` user the package creates, since `initdb` refuses root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The directory holding initdb, pg_ctl and psql: initdb's (on PATH, symlinks resolved), else
/// the newest `/usr/lib/postgresql/*/bin` (Debian keeps them off PATH).
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = super::tool("initdb").and_then(|p| p.canonicalize().ok()).and_then(|p| Some(p.parent()?.into()))
    {
        return Some(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    dirs.pop()
}

/// The PostgreSQL binaries, or None (a skip announced on stderr) when they are missing, or a
/// failure when STREAMCTL_E2E is set (CI installs `postgresql`).
pub fn available() -> Option<PathBuf> {
    let dir = bin_dir().filter(|d| d.join("psql").is_file() || super::tool("psql").is_some());
    if dir.is_none() {
        if std::env::var_os("STREAMCTL_E2E").is_some() {
            panic!("STREAMCTL_E2E is set but PostgreSQL (initdb, pg_ctl, psql) is not installed (.ci/run installs it)");
        }
        eprintln!("skipped: PostgreSQL (initdb, pg_ctl, psql) is not installed; see .ci/run");
    }
    dir
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub struct Postgres {
    pub port: u16,
    pub user: String,
    pub password: String,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A fresh cluster with superuser `streamctl` (password `password` over TCP, SCRAM), listening
    /// on 127.0.0.1 only.
    pub fn start(bin: &Path, password: &str) -> Postgres {
        Self::start_with(bin, password, "")
    }

    /// A fresh cluster as [`Postgres::start`] with `wal_level=logical` and room for replication
    /// slots, for change data capture (Debezium's `pgoutput` plugin).
    pub fn start_logical(bin: &Path, password: &str) -> Postgres {
        Self::start_with(bin, password, " -c wal_level=logical -c max_wal_senders=8 -c max_replication_slots=8")
    }

    /// `options`: more `-c name=value` server settings.
    fn start_with(bin: &Path, password: &str, options: &str) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown of the data directory");
        }
        let pg = Postgres {
            port: super::kafka::free_port(),
            user: "streamctl".into(),
            password: password.into(),
            bin: bin.to_path_buf(),
            data: data.clone(),
            as_postgres,
            _dir: dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "streamctl", "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=50{options}",
            pg.port,
            pg._dir.path().display()
        );
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg._dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}\n{}", String::from_utf8_lossy(&out.stderr), pg.log());
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL with psql over TCP (as the test's client, with the password); returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let psql = if self.bin.join("psql").is_file() { self.bin.join("psql") } else { PathBuf::from("psql") };
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", &self.user, "-d", "postgres"])
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every row of a table as a JSON object (`row_to_json`), or None when the table does not exist.
    pub fn rows(&self, table: &str) -> Option<Vec<Value>> {
        if self.psql(&format!("SELECT to_regclass('{table}') IS NOT NULL")).trim() != "t" {
            return None;
        }
        let out = self.psql(&format!("SELECT row_to_json(t) FROM {table} t"));
        Some(out.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
