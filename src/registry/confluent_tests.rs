//! Tests of the Confluent registry client against a small HTTP server in the test.

use super::*;
use crate::http::base64_encode;
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
                Some(exchange) => compare(&exchange.request, &request).map(|why| format!("request #{index}: {why}")),
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
const PAYMENT_AVRO: &str =
    r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"}]}"#;

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

    let (status, text) = http_error(sr.register("orders-value", SchemaType::Json, ORDERS_INCOMPATIBLE).unwrap_err());
    assert_eq!(status, Some(409));
    assert!(text.contains("incompatible with an earlier schema"), "{text}");
    assert!(text.contains("error code 409, HTTP 409"), "{text}");
    assert!(
        text.starts_with(&format!("schema registry http://{}: POST /subjects/orders-value/versions: ", server.addr)),
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
