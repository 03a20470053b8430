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
use crate::project::target::RegistryAccess;

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
        let parsed = parse_url(url)?;
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
        let token = base64_encode(format!("{user}:{password}").as_bytes());
        self.authorization = Some(format!("Basic {token}"));
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

struct ParsedUrl {
    base: String,
    credentials: Option<(String, String)>,
}

fn parse_url(url: &str) -> Result<ParsedUrl, RegistryError> {
    let url = url.trim();
    let invalid =
        |why: &str| RegistryError::Other(format!("invalid schema registry URL '{}': {why}", redact_userinfo(url)));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("expected http:// or https://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(invalid("expected http:// or https://"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("a query or fragment is not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let credentials = match userinfo {
        None => None,
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            let user = percent_decode(user).ok_or_else(|| invalid("bad percent-encoding in the user name"))?;
            let password = percent_decode(password).ok_or_else(|| invalid("bad percent-encoding in the password"))?;
            Some((user, password))
        }
    };
    Ok(ParsedUrl { base: format!("{scheme}://{host}{}", path.trim_end_matches('/')), credentials })
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}***@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so `/`, `:` and spaces in a
/// subject name stay inside one path segment.
fn escape_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The start of a body, on one line, for error messages.
fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// Recorded exchange built from the Confluent API reference's documented requests and shapes.
    const EXCHANGE: &str = include_str!("../../tests/fixtures/registry/confluent_exchange.json");

    #[derive(Debug, Clone, Deserialize)]
    struct Exchange {
        request: RecordedRequest,
        response: RecordedResponse,
    }

    #[derive(Debug, Clone, Deserialize)]
    struct RecordedRequest {
        method: String,
        path: String,
        /// Headers that must be present with exactly these values (names in lower case).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        body: Option<Value>,
    }

    #[derive(Debug, Clone, Deserialize)]
    struct RecordedResponse {
        status: u16,
        /// JSON body.
        #[serde(default)]
        body: Option<Value>,
        /// Verbatim body, for non-JSON responses (e.g. a proxy's HTML page).
        #[serde(default)]
        raw_body: Option<String>,
    }

    struct Incoming {
        method: String,
        path: String,
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    }

    #[derive(Default)]
    struct ReplayState {
        served: usize,
        failures: Vec<String>,
    }

    /// A one-thread HTTP/1.1 server that expects the recorded requests in order.
    struct Replay {
        addr: SocketAddr,
        total: usize,
        state: Arc<Mutex<ReplayState>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Replay {
        fn start(exchanges: Vec<Exchange>) -> Replay {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind replay server");
            let addr = listener.local_addr().unwrap();
            let state = Arc::new(Mutex::new(ReplayState::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let total = exchanges.len();
            let thread = {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        if let Err(e) = serve_connection(stream, &exchanges, &state, &stop) {
                            state.lock().unwrap().failures.push(format!("replay server I/O: {e}"));
                        }
                    }
                })
            };
            Replay { addr, total, state, stop, thread: Some(thread) }
        }

        /// Stops the server: Err lists mismatched requests and recorded requests never made.
        fn finish(mut self) -> Result<(), String> {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr); // wake the accept loop
            self.thread.take().unwrap().join().map_err(|_| "replay server panicked".to_string())?;
            let state = self.state.lock().unwrap();
            let mut failures = state.failures.clone();
            if state.served < self.total {
                failures.push(format!(
                    "{} recorded request(s) never made, the first being #{}",
                    self.total - state.served,
                    state.served
                ));
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("\n"))
            }
        }
    }

    fn serve_connection(
        stream: TcpStream,
        exchanges: &[Exchange],
        state: &Mutex<ReplayState>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        while let Some(request) = read_request(&mut reader, stop)? {
            let (status, body) = {
                let mut state = state.lock().unwrap();
                let index = state.served;
                let mismatch = match exchanges.get(index) {
                    None => Some(format!(
                        "request {} {} made after all {} recorded requests were used",
                        request.method,
                        request.path,
                        exchanges.len()
                    )),
                    Some(exchange) => {
                        compare(&exchange.request, &request).map(|why| format!("request #{index}: {why}"))
                    }
                };
                match mismatch {
                    Some(why) => {
                        state.failures.push(why.clone());
                        let body = json!({"error_code": 50099, "message": format!("replay mismatch: {why}")});
                        (500, body.to_string())
                    }
                    None => {
                        state.served += 1;
                        let response = &exchanges[index].response;
                        let body = match (&response.raw_body, &response.body) {
                            (Some(raw), _) => raw.clone(),
                            (None, Some(json)) => json.to_string(),
                            (None, None) => String::new(),
                        };
                        (response.status, body)
                    }
                }
            };
            // One write: several small ones would meet Nagle's algorithm and delayed ACKs.
            let response = format!(
                "HTTP/1.1 {status} Recorded\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            writer.write_all(response.as_bytes())?;
        }
        Ok(())
    }

    fn compare(expected: &RecordedRequest, actual: &Incoming) -> Option<String> {
        let got = format!("{} {}", actual.method, actual.path);
        let want = format!("{} {}", expected.method, expected.path);
        if got != want {
            return Some(format!("expected {want}, got {got}"));
        }
        for (name, value) in &expected.headers {
            if actual.headers.get(name) != Some(value) {
                return Some(format!("{got}: header {name} expected {value:?}, got {:?}", actual.headers.get(name)));
            }
        }
        if !actual.headers.get("accept").is_some_and(|a| a.contains(CONTENT_TYPE)) {
            return Some(format!("{got}: Accept header {:?} lacks {CONTENT_TYPE}", actual.headers.get("accept")));
        }
        match &expected.body {
            None if actual.body.is_empty() => None,
            None => Some(format!("{got}: expected no body, got {}", String::from_utf8_lossy(&actual.body))),
            Some(want_body) => {
                if actual.headers.get("content-type").map(String::as_str) != Some(CONTENT_TYPE) {
                    return Some(format!("{got}: content-type {:?}", actual.headers.get("content-type")));
                }
                match serde_json::from_slice::<Value>(&actual.body) {
                    Ok(body) if &body == want_body => None,
                    Ok(body) => Some(format!("{got}: body {body} differs from recorded {want_body}")),
                    Err(e) => Some(format!("{got}: body is not JSON ({e})")),
                }
            }
        }
    }

    /// Reads one request; Ok(None) on a cleanly closed connection or when stopping between requests.
    fn read_request(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> io::Result<Option<Incoming>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            match reader.read_until(b'\n', &mut head) {
                Ok(0) if head.is_empty() => return Ok(None),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated request head")),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if head.is_empty() && stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    if Instant::now() > deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "request head not completed"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        if headers.contains_key("transfer-encoding") {
            return Err(io::Error::other("chunked request bodies are not supported by the replay server"));
        }
        let length: usize = headers.get("content-length").map_or(Ok(0), |v| v.parse()).map_err(io::Error::other)?;
        let mut body = vec![0; length];
        let mut filled = 0;
        while filled < length {
            match reader.read(&mut body[filled..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated body")),
                Ok(n) => filled += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if Instant::now() > deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "request body not completed"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Incoming { method, path, headers, body }))
    }

    fn fixture() -> Vec<Exchange> {
        serde_json::from_str(EXCHANGE).expect("confluent_exchange.json is a list of {request, response}")
    }

    fn http_error(err: RegistryError) -> (Option<u16>, String) {
        let text = err.to_string();
        match err {
            RegistryError::Http { status, .. } => (status, text),
            other => panic!("expected RegistryError::Http, got {other:?}"),
        }
    }

    const ORDERS_V1: &str = r#"{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"}},"required":["order_id"]}"#;
    const ORDERS_V2: &str = r#"{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"},"currency":{"type":"string"}},"required":["order_id"]}"#;
    const ORDERS_INCOMPATIBLE: &str = r#"{"type":"object","properties":{"order_id":{"type":"integer"},"amount":{"type":"number"}},"required":["order_id"]}"#;
    const ORDERS_INVALID: &str = r#"{"type":"objekt"}"#;
    const PAYMENT_AVRO: &str = r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"}]}"#;

    #[test]
    fn replays_recorded_confluent_exchange() {
        let server = Replay::start(fixture());
        // Userinfo is percent-decoded: the password is "s3cr@t" → Basic c3RyZWFtY3RsOnMzY3JAdA==.
        let sr = ConfluentRegistry::new(&format!("http://streamctl:s3cr%40t@{}/", server.addr)).unwrap();
        assert_eq!(sr.describe(), format!("http://{}", server.addr));

        assert_eq!(sr.subjects().unwrap(), vec!["orders-value".to_string(), "payments-value".to_string()]);
        // Missing subject (404, 40401) → no versions; the '/' is escaped into one path segment.
        assert_eq!(sr.versions("shop/orders-value").unwrap(), vec![]);

        let v1 = sr.register("orders-value", SchemaType::Json, ORDERS_V1).unwrap();
        let expected_v1 = RegisteredSchema {
            subject: "orders-value".into(),
            version: 1,
            id: 1,
            schema_type: SchemaType::Json,
            schema: ORDERS_V1.into(),
        };
        assert_eq!(v1, expected_v1);
        assert_eq!(sr.versions("orders-value").unwrap(), vec![expected_v1.clone()]);

        assert_eq!(sr.compatibility("orders-value").unwrap(), None); // 404, 40408
        sr.set_compatibility("orders-value", Compatibility::Full).unwrap();
        assert_eq!(sr.compatibility("orders-value").unwrap(), Some(Compatibility::Full));

        let v2 = sr.register("orders-value", SchemaType::Json, ORDERS_V2).unwrap();
        let expected_v2 = RegisteredSchema { version: 2, id: 2, schema: ORDERS_V2.into(), ..expected_v1.clone() };
        assert_eq!(v2, expected_v2);
        // Registering the identical schema again answers the existing version.
        assert_eq!(sr.register("orders-value", SchemaType::Json, ORDERS_V2).unwrap(), expected_v2);

        let (status, text) =
            http_error(sr.register("orders-value", SchemaType::Json, ORDERS_INCOMPATIBLE).unwrap_err());
        assert_eq!(status, Some(409));
        assert!(text.contains("incompatible with an earlier schema"), "{text}");
        assert!(text.contains("error code 409, HTTP 409"), "{text}");
        assert!(
            text.starts_with(&format!(
                "schema registry http://{}: POST /subjects/orders-value/versions: ",
                server.addr
            )),
            "{text}"
        );

        let (status, text) = http_error(sr.register("orders-value", SchemaType::Json, ORDERS_INVALID).unwrap_err());
        assert_eq!(status, Some(422));
        assert!(text.contains("error code 42201, HTTP 422"), "{text}");

        assert_eq!(sr.versions("orders-value").unwrap(), vec![expected_v1, expected_v2]);

        // AVRO: schemaType omitted in the request and absent from the responses.
        let payment = sr.register("payments-value", SchemaType::Avro, PAYMENT_AVRO).unwrap();
        assert_eq!(payment.schema_type, SchemaType::Avro);
        assert_eq!((payment.id, payment.version), (3, 1));
        assert_eq!(sr.versions("payments-value").unwrap(), vec![payment]);

        assert_eq!(sr.delete_subject("orders-value").unwrap(), vec![1, 2]);
        assert_eq!(sr.versions("orders-value").unwrap(), vec![]);

        // Deleting again: 404 40401 is an error here, with the registry's message.
        let (status, text) = http_error(sr.delete_subject("orders-value").unwrap_err());
        assert_eq!(status, Some(404));
        assert!(text.contains("Subject 'orders-value' not found. (error code 40401, HTTP 404)"), "{text}");

        // Bad responses are errors, never panics.
        let (status, text) = http_error(sr.subjects().unwrap_err()); // 401 JSON error
        assert_eq!(status, Some(401));
        assert!(text.contains("Unauthorized (error code 401, HTTP 401)"), "{text}");
        let (status, text) = http_error(sr.subjects().unwrap_err()); // 502 HTML from a proxy
        assert_eq!(status, Some(502));
        assert!(text.contains("HTTP 502: <html>"), "{text}");
        let (status, text) = http_error(sr.subjects().unwrap_err()); // 200 with the wrong shape
        assert_eq!(status, Some(200));
        assert!(text.contains("unexpected response"), "{text}");
        let (_, text) = http_error(sr.versions("orders-value").unwrap_err()); // 404 without a JSON body
        assert!(text.contains("HTTP 404"), "{text}");
        let err = sr.versions("proto-value").unwrap_err().to_string(); // PROTOBUF is not supported
        assert!(err.contains("is a PROTOBUF schema"), "{err}");

        drop(sr);
        server.finish().unwrap();
    }

    #[test]
    fn replay_server_reports_mismatches_and_unused_requests() {
        let exchanges: Vec<Exchange> = serde_json::from_value(json!([
            {"request": {"method": "POST", "path": "/subjects/a/versions", "body": {"schema": "\"string\""}},
             "response": {"status": 200, "body": {"id": 1}}},
            {"request": {"method": "GET", "path": "/subjects"}, "response": {"status": 200, "body": []}},
            {"request": {"method": "GET", "path": "/subjects"}, "response": {"status": 200, "body": []}}
        ]))
        .unwrap();
        let server = Replay::start(exchanges);
        let sr = ConfluentRegistry::new(&format!("http://{}", server.addr)).unwrap();
        // Same method and path, different body: the replay answers 500 and records the mismatch.
        let err = sr.register("a", SchemaType::Avro, "\"int\"").unwrap_err().to_string();
        assert!(err.contains("replay mismatch"), "{err}");
        drop(sr);
        let report = server.finish().unwrap_err();
        assert!(report.contains("differs from recorded"), "{report}");
        assert!(report.contains("3 recorded request(s) never made"), "{report}");
    }

    #[test]
    fn unreachable_registry_is_a_clear_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // now closed
        let sr = ConfluentRegistry::new(&format!("http://user:secret@127.0.0.1:{port}")).unwrap();
        let err = sr.subjects().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("cannot reach schema registry at http://127.0.0.1:{port}: ")), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn silent_registry_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog) but never answers
        let sr = ConfluentRegistry::new(&format!("http://{}", listener.local_addr().unwrap()))
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let text = sr.subjects().unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(text.contains("within 300ms"), "{text}");
    }

    #[test]
    fn parses_urls_and_credentials() {
        let sr = ConfluentRegistry::new("https://KEY:p%3Ass@psrc-123.eu-west-1.aws.confluent.cloud/").unwrap();
        assert_eq!(sr.describe(), "https://psrc-123.eu-west-1.aws.confluent.cloud");
        assert_eq!(sr.authorization.as_deref(), Some(format!("Basic {}", base64_encode(b"KEY:p:ss")).as_str()));
        assert!(!format!("{sr:?}").contains("KEY"));

        let sr = ConfluentRegistry::new("http://sr:8081/prefix/").unwrap().with_basic_auth("u", "p");
        assert_eq!(sr.describe(), "http://sr:8081/prefix");
        assert_eq!(sr.authorization.as_deref(), Some("Basic dTpw"));
        assert_eq!(ConfluentRegistry::new("http://sr:8081").unwrap().authorization, None);

        for bad in ["sr:8081", "ftp://sr", "http://", "http://u:p@/x", "http://sr:8081/?x=1", "http://u:%zz@sr"] {
            let err = ConfluentRegistry::new(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid schema registry URL"), "{bad}: {err}");
        }
        let err = ConfluentRegistry::new("ftp://u:hunter2@sr").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn encodes_path_segments_and_base64() {
        assert_eq!(escape_path_segment("orders-value"), "orders-value");
        assert_eq!(escape_path_segment("shop/orders value%:é"), "shop%2Forders%20value%25%3A%C3%A9");
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }
}
