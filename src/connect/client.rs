//! Blocking client of Kafka Connect's REST API (the endpoints of the Connect documentation's
//! "REST API" section): `GET /connectors/{name}/config`, `PUT /connectors/{name}/config` (create
//! or update), `DELETE /connectors/{name}`, `GET /connectors/{name}/status`, `GET /`.
//!
//! Basic auth comes from the URL's userinfo (`http://user:password@host:8083`); the password is
//! never shown (`describe()` and errors carry the URL without it). Connect answers 409 while its
//! workers rebalance: such requests are retried for a while.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::http::{basic_authorization, escape_path_segment, RestUrl};
use crate::project::target::redact_url;

/// Limit for one whole request.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests answered 409 (a rebalance in progress) are retried.
const REBALANCE_WAIT: Duration = Duration::from_secs(60);

/// One Kafka Connect cluster, reached over HTTP(S).
#[derive(Clone)]
pub struct ConnectClient {
    /// The target's name for the cluster (`default` for `connect_url`).
    pub cluster: String,
    /// `scheme://host[:port][/prefix]`, without userinfo or trailing slash.
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient")
            .field("cluster", &self.cluster)
            .field("base", &self.base)
            .field("basic_auth", &self.authorization.is_some())
            .finish()
    }
}

/// A connector's state and its tasks', as `GET /connectors/{name}/status` gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: TaskState,
    #[serde(default)]
    pub tasks: Vec<TaskState>,
    /// `source` or `sink`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// `RUNNING`, `PAUSED`, `STOPPED`, `FAILED`, `UNASSIGNED` or `RESTARTING`, on a worker; a failed
/// one with its Java stack trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub state: String,
    #[serde(default)]
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl TaskState {
    /// The first line of the trace (the exception and its message).
    pub fn trace_first_line(&self) -> Option<&str> {
        self.trace.as_deref().and_then(|t| t.lines().next()).map(str::trim)
    }
}

struct Reply {
    status: u16,
    body: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
}

impl ConnectClient {
    /// `url` is `http(s)://[user:password@]host[:port][/path]`.
    pub fn new(cluster: &str, url: &str) -> Result<ConnectClient, String> {
        let parsed = RestUrl::parse(url).map_err(|why| {
            format!("Kafka Connect cluster `{cluster}`: invalid URL '{}': {why}", redact_url(url.trim()))
        })?;
        let authorization = parsed.credentials.map(|(user, password)| basic_authorization(&user, &password));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("streamctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(ConnectClient { cluster: cluster.to_string(), base: parsed.base, authorization, agent })
    }

    /// `cluster (URL)`, for messages.
    pub fn describe(&self) -> String {
        format!("Kafka Connect cluster `{}` ({})", self.cluster, self.base)
    }

    fn connector_path(name: &str) -> String {
        format!("/connectors/{}", escape_path_segment(name))
    }

    fn send_once(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Reply, String> {
        let url = format!("{}{path}", self.base);
        let auth = self.authorization.as_deref();
        let result = match (method, body) {
            ("GET", None) => {
                let mut r = self.agent.get(&url).header("Accept", "application/json");
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", None) => {
                let mut r = self.agent.delete(&url).header("Accept", "application/json");
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("PUT", Some(b)) => {
                let mut r = self
                    .agent
                    .put(&url)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json");
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.send(b.to_string())
            }
            _ => return Err(format!("unsupported request {method} {path}")),
        };
        let response = result.map_err(|e| format!("cannot reach {}: {method} {path}: {e}", self.describe()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .read_to_string()
            .map_err(|e| format!("{}: {method} {path}: cannot read the response: {e}", self.describe()))?;
        Ok(Reply { status, body })
    }

    /// Sends a request, retrying while Connect answers 409 (its workers are rebalancing).
    fn send(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Reply, String> {
        let deadline = Instant::now() + REBALANCE_WAIT;
        let mut pause = Duration::from_millis(250);
        loop {
            let reply = self.send_once(method, path, body)?;
            if reply.status != 409 || Instant::now() > deadline {
                return Ok(reply);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn api_error(&self, method: &str, path: &str, reply: &Reply) -> String {
        let message = serde_json::from_str::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|e| e.message)
            .unwrap_or_else(|| reply.body.chars().take(300).collect());
        format!("{}: {method} {path}: HTTP {}: {message}", self.describe(), reply.status)
    }

    /// `GET /`: the worker's version.
    pub fn version(&self) -> Result<String, String> {
        let reply = self.send("GET", "/", None)?;
        if reply.status != 200 {
            return Err(self.api_error("GET", "/", &reply));
        }
        let v: serde_json::Value = serde_json::from_str(&reply.body).map_err(|e| format!("GET /: {e}"))?;
        Ok(v.get("version").and_then(|v| v.as_str()).unwrap_or("?").to_string())
    }

    /// The connector's config as Connect stores it, or None when there is no such connector.
    pub fn config(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let path = format!("{}/config", Self::connector_path(name));
        let reply = self.send("GET", &path, None)?;
        match reply.status {
            200 => serde_json::from_str(&reply.body)
                .map(Some)
                .map_err(|e| format!("{}: GET {path}: unexpected response: {e}", self.describe())),
            404 => Ok(None),
            _ => Err(self.api_error("GET", &path, &reply)),
        }
    }

    /// Creates the connector or replaces its config (Connect then restarts it and its tasks).
    /// Error messages have the config's secrets masked.
    pub fn put_config(&self, name: &str, config: &BTreeMap<String, String>) -> Result<(), String> {
        let path = format!("{}/config", Self::connector_path(name));
        let body = serde_json::to_value(config).map_err(|e| e.to_string())?;
        let reply = self.send("PUT", &path, Some(&body))?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        Err(super::scrub(&self.api_error("PUT", &path, &reply), config))
    }

    /// Deletes the connector; `false` when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, String> {
        let path = Self::connector_path(name);
        let reply = self.send("DELETE", &path, None)?;
        match reply.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.api_error("DELETE", &path, &reply)),
        }
    }

    /// The connector's and its tasks' states, or None when there is no such connector.
    pub fn status(&self, name: &str) -> Result<Option<ConnectorStatus>, String> {
        let path = format!("{}/status", Self::connector_path(name));
        let reply = self.send("GET", &path, None)?;
        match reply.status {
            200 => serde_json::from_str(&reply.body)
                .map(Some)
                .map_err(|e| format!("{}: GET {path}: unexpected response: {e}", self.describe())),
            404 => Ok(None),
            _ => Err(self.api_error("GET", &path, &reply)),
        }
    }

    /// Waits until the connector and every task it has are RUNNING (Ok), one of them FAILED (Err
    /// with the first line of its trace), or `limit` passed (Ok: Connect may still be starting it).
    pub fn wait_running(&self, name: &str, limit: Duration) -> Result<Option<ConnectorStatus>, String> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status(name)?;
            if let Some(s) = &status {
                let failed =
                    std::iter::once(&s.connector).chain(&s.tasks).find(|t| t.state.eq_ignore_ascii_case("FAILED"));
                if let Some(f) = failed {
                    let what = match f.id {
                        Some(id) => format!("task {id}"),
                        None => "the connector".to_string(),
                    };
                    return Err(format!(
                        "{what} FAILED on {}: {}",
                        f.worker_id,
                        f.trace_first_line().unwrap_or("(no trace)")
                    ));
                }
                let running = s.connector.state == "RUNNING"
                    && !s.tasks.is_empty()
                    && s.tasks.iter().all(|t| t.state == "RUNNING");
                if running {
                    return Ok(status);
                }
            }
            if Instant::now() > deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
