//! Blocking client for the Confluent Schema Registry REST API (v1).
//!
//! Endpoints used (see Confluent's "Schema Registry API Reference"):
//! `GET /subjects`, `GET /subjects/{s}/versions`, `GET /subjects/{s}/versions/{v}`,
//! `POST /subjects/{s}/versions` (register), `POST /subjects/{s}` (look the schema up),
//! `GET`/`PUT /config/{s}`, `DELETE /subjects/{s}` (soft delete).
//!
//! Basic auth comes from the URL's userinfo (`https://KEY:SECRET@host`, percent-decoded) or from
//! the target's `schema_registry_basic_auth_user_info`. Credentials never appear in `describe()`
//! or in errors. TLS settings (CA, client certificate) come from the target too ([`super::tls`]).

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::tls::RegistryTls;
use super::{Compatibility, RegisteredSchema, RegistryError, SchemaRegistry, SchemaType};
use crate::http::{basic_authorization, escape_path_segment, RestUrl};
use crate::project::target::{redact_url, RegistryAccess};

/// Content type of request bodies; also the preferred response type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The Accept header recommended by the API reference.
const ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
/// Default limit for one whole request (connect, send, receive).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Confluent error code: subject not found.
const SUBJECT_NOT_FOUND: i64 = 40401;
/// Confluent error code: the subject has no subject-level compatibility configured.
const SUBJECT_COMPATIBILITY_NOT_CONFIGURED: i64 = 40408;

/// A Confluent-compatible schema registry reached over HTTP(S).
#[derive(Clone)]
pub struct ConfluentRegistry {
    /// `scheme://host[:port][/prefix]`, without userinfo or trailing slash.
    base: String,
    /// Value of the `Authorization` header, when basic auth is configured.
    authorization: Option<String>,
    timeout: Duration,
    tls: RegistryTls,
    agent: ureq::Agent,
}

impl fmt::Debug for ConfluentRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfluentRegistry")
            .field("base", &self.base)
            .field("basic_auth", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ConfluentRegistry {
    /// `url` is `http(s)://[user:password@]host[:port][/path]`; userinfo is percent-decoded and
    /// used for basic auth.
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let parsed = RestUrl::parse(url).map_err(|why| {
            RegistryError::Other(format!("invalid schema registry URL '{}': {why}", redact_url(url.trim())))
        })?;
        let mut registry = Self {
            base: parsed.base,
            authorization: None,
            timeout: DEFAULT_TIMEOUT,
            tls: RegistryTls::default(),
            agent: build_agent(DEFAULT_TIMEOUT, &RegistryTls::default()),
        };
        if let Some((user, password)) = parsed.credentials {
            registry = registry.with_basic_auth(&user, &password);
        }
        Ok(registry)
    }

    /// Sets the limit for each whole request (default [`DEFAULT_TIMEOUT`]); tests use short ones.
    #[cfg(test)]
    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.agent = build_agent(timeout, &self.tls);
        self
    }

    /// Applies the target's TLS files and basic-auth credentials (which replace the URL's userinfo).
    pub fn with_access(mut self, access: &RegistryAccess) -> Result<Self, RegistryError> {
        self.tls = RegistryTls::new(access, self.base.starts_with("https://"))?;
        self.agent = build_agent(self.timeout, &self.tls);
        if let Some(user_info) = &access.basic_auth_user_info {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            self = self.with_basic_auth(user, password);
        }
        Ok(self)
    }

    /// Sets (or replaces) the basic-auth credentials, e.g. a Confluent Cloud API key and secret.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        self.authorization = Some(basic_authorization(user, password));
        self
    }

    fn subject_path(subject: &str) -> String {
        format!("/subjects/{}", escape_path_segment(subject))
    }

    /// Sends one request; a non-2xx status is returned as a [`Reply`], not an error.
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, RegistryError> {
        let url = format!("{}{}", self.base, path);
        let result = match (method, body) {
            ("GET", None) => self.with_headers_get(self.agent.get(&url)).call(),
            ("DELETE", None) => self.with_headers_get(self.agent.delete(&url)).call(),
            ("POST", Some(body)) => self.with_headers_post(self.agent.post(&url)).send(body.to_string()),
            ("PUT", Some(body)) => self.with_headers_post(self.agent.put(&url)).send(body.to_string()),
            _ => return Err(RegistryError::Other(format!("unsupported request {method} {path}"))),
        };
        let response = result.map_err(|e| self.transport_error(method, path, e))?;
        let status = response.status().as_u16();
        let body = response.into_body().read_to_string().map_err(|e| RegistryError::Http {
            url: self.base.clone(),
            status: Some(status),
            message: format!("{method} {path}: cannot read the response: {e}"),
        })?;
        Ok(Reply { method: method.to_string(), path: path.to_string(), status, body })
    }

    fn with_headers_get(
        &self,
        mut request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        request = request.header("Accept", ACCEPT);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        request
    }

    fn with_headers_post(
        &self,
        mut request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        request = request.header("Accept", ACCEPT).header("Content-Type", CONTENT_TYPE);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        request
    }

    fn transport_error(&self, method: &str, path: &str, error: ureq::Error) -> RegistryError {
        use ureq::Timeout;
        let unreachable =
            |detail: String| RegistryError::Other(format!("cannot reach schema registry at {}: {detail}", self.base));
        match error {
            // A refused certificate surfaces as an I/O error of the TLS stream.
            ureq::Error::Io(e) => {
                let detail = e.to_string();
                unreachable(self.tls.untrusted(&detail).unwrap_or(detail))
            }
            ureq::Error::HostNotFound => unreachable("host not found".into()),
            ureq::Error::ConnectionFailed => unreachable("connection failed".into()),
            ureq::Error::Tls(e) => unreachable(self.tls.untrusted(e).unwrap_or(format!("TLS: {e}"))),
            ureq::Error::Rustls(e) => {
                let detail = e.to_string();
                unreachable(self.tls.untrusted(&detail).unwrap_or(format!("TLS: {detail}")))
            }
            ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
                unreachable(format!("no connection within {:?}", self.timeout))
            }
            ureq::Error::Timeout(_) => RegistryError::Http {
                url: self.base.clone(),
                status: None,
                message: format!("{method} {path}: no complete response within {:?}", self.timeout),
            },
            other => RegistryError::Http {
                url: self.base.clone(),
                status: None,
                message: format!("{method} {path}: {other}"),
            },
        }
    }

    /// Parses a 2xx reply as `T`; any other status becomes an error carrying the registry's message.
    fn expect<T: DeserializeOwned>(&self, reply: Reply) -> Result<T, RegistryError> {
        if !(200..300).contains(&reply.status) {
            return Err(self.api_error(&reply));
        }
        serde_json::from_str(&reply.body).map_err(|e| RegistryError::Http {
            url: self.base.clone(),
            status: Some(reply.status),
            message: format!("{} {}: unexpected response ({e}): {}", reply.method, reply.path, snippet(&reply.body)),
        })
    }

    fn api_error(&self, reply: &Reply) -> RegistryError {
        let detail = match reply.error_body() {
            Some(ErrorBody { error_code: Some(code), message: Some(message) }) => {
                format!("{message} (error code {code}, HTTP {})", reply.status)
            }
            Some(ErrorBody { error_code: None, message: Some(message) }) => {
                format!("{message} (HTTP {})", reply.status)
            }
            Some(ErrorBody { error_code: Some(code), message: None }) => {
                format!("error code {code} (HTTP {})", reply.status)
            }
            _ if reply.body.trim().is_empty() => format!("HTTP {}", reply.status),
            _ => format!("HTTP {}: {}", reply.status, snippet(&reply.body)),
        };
        RegistryError::Http {
            url: self.base.clone(),
            status: Some(reply.status),
            message: format!("{} {}: {detail}", reply.method, reply.path),
        }
    }

    fn get_version(&self, subject: &str, version: i32) -> Result<RegisteredSchema, RegistryError> {
        let path = format!("{}/versions/{version}", Self::subject_path(subject));
        let reply = self.send("GET", &path, None)?;
        let found: SchemaRecord = self.expect(reply)?;
        self.to_registered(found)
    }

    fn to_registered(&self, record: SchemaRecord) -> Result<RegisteredSchema, RegistryError> {
        let schema_type = match record.schema_type.as_deref() {
            None | Some("AVRO") => SchemaType::Avro,
            Some("JSON") => SchemaType::Json,
            Some(other) => {
                return Err(RegistryError::Other(format!(
                    "schema registry {}: subject '{}' version {} is a {other} schema; only AVRO and JSON are supported",
                    self.base, record.subject, record.version
                )))
            }
        };
        Ok(RegisteredSchema {
            subject: record.subject,
            version: record.version,
            id: record.id,
            schema_type,
            schema: record.schema,
        })
    }
}

impl SchemaRegistry for ConfluentRegistry {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let reply = self.send("GET", "/subjects", None)?;
        self.expect(reply)
    }

    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>, RegistryError> {
        let path = format!("{}/versions", Self::subject_path(subject));
        let reply = self.send("GET", &path, None)?;
        if reply.status == 404 && reply.error_code() == Some(SUBJECT_NOT_FOUND) {
            return Ok(Vec::new());
        }
        let mut numbers: Vec<i32> = self.expect(reply)?;
        numbers.sort_unstable();
        numbers.dedup();
        numbers.into_iter().map(|v| self.get_version(subject, v)).collect()
    }

    fn schema_by_id(&self, id: i32) -> Result<Option<RegisteredSchema>, RegistryError> {
        // `GET /schemas/ids/{id}` answers with the schema text (and `schemaType` unless AVRO).
        let path = format!("/schemas/ids/{id}");
        let reply = self.send("GET", &path, None)?;
        if reply.status == 404 {
            return Ok(None);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ById {
            schema: String,
            #[serde(default)]
            schema_type: Option<String>,
        }
        let found: ById = self.expect(reply)?;
        let record = SchemaRecord {
            subject: String::new(),
            version: 0,
            id,
            schema_type: found.schema_type,
            schema: found.schema,
        };
        self.to_registered(record).map(Some)
    }

    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        let path = format!("/config/{}", escape_path_segment(subject));
        let reply = self.send("GET", &path, None)?;
        if reply.status == 404
            && matches!(reply.error_code(), Some(SUBJECT_COMPATIBILITY_NOT_CONFIGURED | SUBJECT_NOT_FOUND))
        {
            return Ok(None);
        }
        let config: ConfigRecord = self.expect(reply)?;
        Ok(config.compatibility_level)
    }

    fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        let path = format!("/config/{}", escape_path_segment(subject));
        let reply = self.send("PUT", &path, Some(&json!({ "compatibility": level })))?;
        let _echo: Value = self.expect(reply)?;
        Ok(())
    }

    fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<RegisteredSchema, RegistryError> {
        let body = match schema_type {
            // AVRO is the default; the API reference omits schemaType for it.
            SchemaType::Avro => json!({ "schema": schema }),
            SchemaType::Json => json!({ "schemaType": "JSON", "schema": schema }),
        };
        let subject_path = Self::subject_path(subject);
        let reply = self.send("POST", &format!("{subject_path}/versions"), Some(&body))?;
        let registered: RegisterReply = self.expect(reply)?;
        // The register call answers only the id: look the schema up to learn its version.
        let reply = self.send("POST", &subject_path, Some(&body))?;
        let found: SchemaRecord = self.expect(reply)?;
        if found.id != registered.id {
            return Err(RegistryError::Other(format!(
                "schema registry {}: registered schema id {} under '{subject}' but looking it up returned id {}",
                self.base, registered.id, found.id
            )));
        }
        self.to_registered(found)
    }

    fn delete_subject(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        let reply = self.send("DELETE", &Self::subject_path(subject), None)?;
        self.expect(reply)
    }
}

/// One HTTP exchange's outcome, whatever its status.
struct Reply {
    method: String,
    path: String,
    status: u16,
    body: String,
}

impl Reply {
    fn error_body(&self) -> Option<ErrorBody> {
        serde_json::from_str(&self.body).ok()
    }

    fn error_code(&self) -> Option<i64> {
        self.error_body().and_then(|e| e.error_code)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// `GET /subjects/{s}/versions/{v}` and `POST /subjects/{s}`.
#[derive(Deserialize)]
struct SchemaRecord {
    subject: String,
    id: i32,
    version: i32,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    schema: String,
}

/// `POST /subjects/{s}/versions`.
#[derive(Deserialize)]
struct RegisterReply {
    id: i32,
}

/// `GET /config/{s}`.
#[derive(Deserialize)]
struct ConfigRecord {
    #[serde(rename = "compatibilityLevel", alias = "compatibility", default)]
    compatibility_level: Option<Compatibility>,
}

fn build_agent(timeout: Duration, tls: &RegistryTls) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .tls_config(tls.config.clone())
        // Read 4xx/5xx bodies ourselves: they carry the registry's error_code and message.
        .http_status_as_error(false)
        .user_agent(concat!("streamctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The start of a body, on one line, for error messages.
fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

// The tests are long (an HTTP server of their own): they live beside this file.
#[cfg(test)]
#[path = "confluent_tests.rs"]
mod tests;
