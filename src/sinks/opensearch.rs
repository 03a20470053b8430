//! The OpenSearch sink: a model's rows as documents of an index, written with the `_bulk` API
//! (newline-delimited JSON over HTTP). A table model's row is indexed under its key as the
//! document id, so an update overwrites the document, and its tombstone deletes it; a stream
//! model's row gets the id `<topic>-<partition>-<offset>`. Either way, writing a record twice
//! leaves the index as writing it once.
//!
//! At least once, effectively exactly once in the index: a batch's bulk request succeeds for
//! every document (or the documents refused for their own sake are in the dead-letter topic)
//! before the sink commits its consumer offsets (group [`names::sink_consumer_group`]); a crash in
//! between writes the same ids again. A bulk item refused with HTTP 400 (a mapping or parse error)
//! is the row's fault and follows the sink's `on_error`; any other refusal (429 too many
//! requests, a 5xx, a write block, an index that cannot be created) or no answer at all is the
//! cluster's state: the sink logs it and sends the batch again with a growing pause, dropping
//! nothing.
//!
//! The embedded target's broker starts empty, so a rerun writes the same ids again (the documents
//! an earlier, longer run wrote past them stay).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use super::transform::{self, Names};
use super::{commit, committed_offsets, record_of, skip_transaction_markers, DeadLetters, SinkOutcome, SinkRun};
use crate::compile::CompiledProject;
use crate::http::{basic_authorization, RestUrl};
use crate::jinja::Jinja;
use crate::project::config::{RelationKind, SinkConnector};
use crate::project::SinkDecl;
use crate::runtime::codec::{InputCodec, Record};
use crate::runtime::worker::RunControl;

const DEFAULT_BATCH_RECORDS: usize = 500;
const DEFAULT_BATCH_BYTES: usize = 5 << 20;
/// How long a record waits in a batch that is not full.
const LINGER: Duration = Duration::from_millis(200);
/// Limit for one bulk request.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause between two attempts of a batch the cluster does not take.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Attempts of one batch before a bounded run (`--until-caught-up`, embedded) gives up.
const BOUNDED_ATTEMPTS: u32 = 5;

/// Where a sink sends its bulk requests, with the credentials; its Debug form shows none.
pub struct Endpoint {
    /// `scheme://host[:port][/prefix]`, without userinfo or trailing slash.
    base: String,
    authorization: Option<String>,
}

impl Endpoint {
    /// The URL without credentials, for messages.
    pub fn shown(&self) -> &str {
        &self.base
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("base", &self.base).field("basic_auth", &self.authorization.is_some()).finish()
    }
}

/// `url` (`http(s)://[user[:password]@]host[:port][/prefix]`) as an endpoint; `user` and
/// `password` given apart take the place of the URL's userinfo. Errors never show the password.
pub fn parse_endpoint(url: &str, user: Option<&str>, password: Option<&str>) -> Result<Endpoint, String> {
    let parsed = RestUrl::parse(url)
        .map_err(|why| format!("invalid OpenSearch URL '{}': {why}", crate::project::target::redact_url(url.trim())))?;
    let (mut name, mut secret) = match parsed.credentials {
        Some((u, p)) => (Some(u), Some(p)),
        None => (None, None),
    };
    if let Some(u) = user {
        name = Some(u.to_string());
    }
    if let Some(p) = password {
        secret = Some(p.to_string());
    }
    let authorization = match (name, secret) {
        (Some(u), p) => Some(basic_authorization(&u, &p.unwrap_or_default())),
        (None, Some(_)) => return Err("a password for OpenSearch without a user name".into()),
        (None, None) => None,
    };
    Ok(Endpoint { base: parsed.base, authorization })
}

/// The endpoint of an opensearch sink, with `env_var()` rendered.
pub fn endpoint(cp: &CompiledProject, sink: &SinkDecl) -> Result<Endpoint, String> {
    let SinkConnector::Opensearch { url, user, password, .. } = &sink.sink.connector else {
        return Err("not an opensearch sink".into());
    };
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let render = |field: &str, v: &str| {
        jinja
            .render_str(v)
            .map_err(|e| format!("connector.{field}: {}", e.detail().unwrap_or("cannot render the value")))
    };
    let user = user.as_deref().map(|u| render("user", u)).transpose()?;
    let password = password.as_deref().map(|p| render("password", p)).transpose()?;
    parse_endpoint(&render("url", url)?, user.as_deref(), password.as_deref())
}

/// A routed name as an index name: lower case, the characters OpenSearch refuses as `_`, at most
/// 255 bytes. `None` when nothing usable is left.
pub fn index_name(routed: &str) -> Option<String> {
    let name: String = routed
        .to_lowercase()
        .chars()
        .map(|c| if c.is_control() || "\\/*?\"<>| ,#:".contains(c) { '_' } else { c })
        .collect();
    let name = name.trim_start_matches(['-', '_', '+']);
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name = &name[..end];
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// The document id of a table model's row: its key, as the model's codec reads it. One column's
/// value is the id as it is (a string without quotes); several columns' values are the JSON
/// array of them in the key's order.
pub fn id_of_key(key: &Value, columns: &[String]) -> Result<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err("the key is null".to_string()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(format!("the key holds a list or an object: {v}")),
    };
    match key {
        Value::Object(m) => {
            let values: Vec<Value> = columns
                .iter()
                .map(|c| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(c))
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| format!("the key has no `{c}`"))
                })
                .collect::<Result<_, _>>()?;
            match values.as_slice() {
                [one] => scalar(one),
                _ if values.iter().all(Value::is_null) => Err("the key is null".into()),
                _ => Ok(Value::Array(values).to_string()),
            }
        }
        v => scalar(v),
    }
}

/// One bulk action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Index { index: String, id: String, doc: Vec<u8> },
    Delete { index: String, id: String },
}

impl Action {
    /// The action's NDJSON lines.
    pub fn write_to(&self, body: &mut Vec<u8>) {
        let (verb, index, id, doc) = match self {
            Action::Index { index, id, doc } => ("index", index, id, Some(doc)),
            Action::Delete { index, id } => ("delete", index, id, None),
        };
        let meta = serde_json::json!({ verb: { "_index": index, "_id": id } });
        body.extend(meta.to_string().as_bytes());
        body.push(b'\n');
        if let Some(doc) = doc {
            body.extend(doc);
            body.push(b'\n');
        }
    }

    fn size(&self) -> usize {
        match self {
            Action::Index { index, id, doc } => index.len() + id.len() + doc.len() + 40,
            Action::Delete { index, id } => index.len() + id.len() + 40,
        }
    }

    fn index(&self) -> &str {
        match self {
            Action::Index { index, .. } | Action::Delete { index, .. } => index,
        }
    }
}

/// What became of one bulk item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    /// Written (a delete of a document that is not there included).
    Done,
    /// HTTP 400: the document itself (a mapping or parse error), with the reason.
    Refused(String),
    /// Anything else (429, 5xx, a write block): the cluster's state, with the status and reason.
    Failed(u16, String),
}

/// The reason of an OpenSearch error object: `type: reason (caused by: ...)`.
fn error_reason(e: &Value) -> String {
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
    let cause = e
        .get("caused_by")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        .map(|c| format!(" (caused by: {})", c.lines().next().unwrap_or(c)))
        .unwrap_or_default();
    format!("{kind}: {reason}{cause}")
}

/// The items of a `_bulk` response, in the order of the request's `n` actions.
pub fn parse_bulk_response(body: &str, n: usize) -> Result<Vec<ItemResult>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the _bulk response is not JSON: {e}"))?;
    let items = v.get("items").and_then(Value::as_array).ok_or("the _bulk response has no `items`")?;
    if items.len() != n {
        return Err(format!("the _bulk response has {} items for {n} actions", items.len()));
    }
    items
        .iter()
        .map(|item| {
            let result = item.as_object().and_then(|o| o.values().next()).ok_or("a _bulk item is not an object")?;
            let status = result.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            Ok(match result.get("error") {
                None => ItemResult::Done,
                Some(e) if status == 400 => ItemResult::Refused(error_reason(e)),
                Some(e) => ItemResult::Failed(status, error_reason(e)),
            })
        })
        .collect()
}

/// Sends bulk requests to one endpoint.
pub struct BulkClient {
    endpoint: Endpoint,
    agent: ureq::Agent,
}

impl BulkClient {
    pub fn new(endpoint: Endpoint) -> BulkClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("streamctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        BulkClient { endpoint, agent }
    }

    /// One `_bulk` request with these actions: each item's result, or why the request as a whole
    /// did not go through (no connection, a status other than 200).
    pub fn bulk(&self, actions: &[&Action]) -> Result<Vec<ItemResult>, String> {
        let mut body = Vec::with_capacity(actions.iter().map(|a| a.size()).sum());
        for a in actions {
            a.write_to(&mut body);
        }
        let url = format!("{}/_bulk", self.endpoint.base);
        let mut request =
            self.agent.post(&url).header("Content-Type", "application/x-ndjson").header("Accept", "application/json");
        if let Some(a) = &self.endpoint.authorization {
            request = request.header("Authorization", a);
        }
        let at = self.endpoint.shown();
        let response = request.send(&body[..]).map_err(|e| format!("cannot reach OpenSearch at {at}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| format!("OpenSearch at {at}: cannot read the _bulk response: {e}"))?;
        if status != 200 {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").map(|e| if e.is_object() { error_reason(e) } else { e.to_string() }))
                .unwrap_or_else(|| text.chars().take(300).collect());
            return Err(format!("OpenSearch at {at} answered the _bulk request with HTTP {status}: {reason}"));
        }
        parse_bulk_response(&text, actions.len()).map_err(|e| format!("OpenSearch at {at}: {e}"))
    }
}

/// One record of a batch: its action, `None` when nothing is written for it (dead-lettered as
/// read, or a stream's tombstone); its offset moves with the batch either way.
type Entry = (Record, Option<Action>);

/// How a batch went.
enum Written {
    /// Every action is written, but this many refused and copied to the dead-letter topic.
    Done(usize),
    /// A stop came while the cluster did not take the batch: nothing to commit.
    Stopped,
}

/// Writes one batch until the cluster takes it: items refused for their own sake go to the
/// dead-letter topic (flushed before this returns) or, without one, fail the sink; other failures
/// are retried with backoff, the whole batch but the refused items each time (the ids make a
/// repeat harmless, and the order of the changes of one id is kept).
#[allow(clippy::too_many_arguments)]
fn write_batch(
    client: &BulkClient,
    name: &str,
    topic: &str,
    batch: &[Entry],
    dead_letters: Option<&mut DeadLetters>,
    how: SinkRun,
    control: &RunControl,
) -> Result<Written, String> {
    let mut refused: BTreeMap<usize, String> = BTreeMap::new();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        let todo: Vec<(usize, &Action)> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains_key(i))
            .filter_map(|(i, (_, a))| a.as_ref().map(|a| (i, a)))
            .collect();
        if todo.is_empty() {
            break;
        }
        let failure = match client.bulk(&todo.iter().map(|(_, a)| *a).collect::<Vec<_>>()) {
            Err(e) => Some(e),
            Ok(results) => {
                let mut failed = Vec::new();
                for ((i, _), r) in todo.iter().zip(results) {
                    match r {
                        ItemResult::Done => {}
                        ItemResult::Refused(reason) => {
                            refused.insert(*i, reason);
                        }
                        ItemResult::Failed(status, reason) => failed.push((status, reason)),
                    }
                }
                failed.first().map(|(status, reason)| {
                    format!(
                        "OpenSearch at {} did not take {} of {} documents (first: HTTP {status} {reason})",
                        client.endpoint.shown(),
                        failed.len(),
                        todo.len()
                    )
                })
            }
        };
        let Some(failure) = failure else { break };
        if how == SinkRun::UntilCaughtUp && attempt >= BOUNDED_ATTEMPTS {
            return Err(failure);
        }
        eprintln!("[sink {name}] {failure}; the sink stalls and sends the batch again in {} s", backoff.as_secs());
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if control.stop.load(Ordering::SeqCst) {
                return Ok(Written::Stopped);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
    if refused.is_empty() {
        return Ok(Written::Done(0));
    }
    let Some(d) = dead_letters else {
        let (i, reason) = refused.iter().next().map(|(i, r)| (*i, r.clone())).unwrap_or_default();
        let r = &batch[i].0;
        return Err(format!(
            "offset {} of partition {} of {topic}: OpenSearch refused the document: {reason} (the sink stalls here; \
             with `on_error: dead_letter` such records are copied to a dead-letter topic)",
            r.offset, r.partition
        ));
    };
    for (i, reason) in &refused {
        d.send(topic, &batch[*i].0, &format!("OpenSearch refused the document: {reason}"))?;
    }
    d.flush()?;
    let first = refused.values().next().map(String::as_str).unwrap_or_default();
    eprintln!(
        "[sink {name}] {} of {} documents refused by OpenSearch, copied to the dead-letter topic {} (first: {first})",
        refused.len(),
        batch.len(),
        d.topic
    );
    Ok(Written::Done(refused.len()))
}

/// Runs an opensearch sink task.
pub fn run(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    let model_name = &sink.sink.from;
    let SinkConnector::Opensearch { index, batch_records, batch_bytes, transforms, .. } = &sink.sink.connector else {
        return Err("not an opensearch sink".into());
    };
    let model = cp.models.get(model_name).ok_or_else(|| format!("no model `{model_name}`"))?;
    let codec = InputCodec::for_model_output(cp, model_name, control.registry.as_ref())
        .ok_or_else(|| format!("cannot decode the output of `{model_name}`"))?;
    let bulk = BulkClient::new(endpoint(cp, sink)?);
    let location = format!("OpenSearch {} index {index}", bulk.endpoint.shown());
    let batch_records = batch_records.map_or(DEFAULT_BATCH_RECORDS, |b| b.max(1) as usize);
    let batch_bytes = batch_bytes.map_or(DEFAULT_BATCH_BYTES, |b| b.max(1) as usize);
    let table = model.kind == RelationKind::Table;
    let label = Names { project: &cp.project.config.name, model: model_name, sink: name };

    let topic = &model.topic;
    let (consumer, partitions) = super::output_consumer(cp, client, name, model_name)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let committed = committed_offsets(&consumer, topic, &partitions, fresh)?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (p, low, _) in &partitions {
        let resume = committed.get(p).copied().unwrap_or(*low).max(*low);
        next.insert(*p, resume);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(resume))
            .map_err(|e| format!("assigning {topic}: {e}"))?;
    }
    consumer.assign(&assignment).map_err(|e| format!("assigning {topic}: {e}"))?;
    if !committed.is_empty() {
        eprintln!("[sink {name}] resuming {topic} at {committed:?} (the sink's committed offsets)");
    }
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client)?;

    let ends: BTreeMap<i32, i64> = partitions.iter().map(|(p, _, high)| (*p, *high)).collect();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let mut batch: Vec<Entry> = Vec::new();
    let (mut records, mut bytes) = (0u64, 0usize);
    let mut indices: BTreeSet<String> = BTreeSet::new();
    let mut batch_started = Instant::now();
    let mut waiting = super::BoundedWait::new(how);
    let mut committed_at = next.clone();
    loop {
        let stopping = control.stop.load(Ordering::SeqCst);
        let done = how == SinkRun::UntilCaughtUp && caught_up(&next);
        let due = !batch.is_empty()
            && (stopping
                || done
                || batch.len() >= batch_records
                || bytes >= batch_bytes
                || batch_started.elapsed() >= LINGER);
        if due {
            match write_batch(&bulk, name, topic, &batch, dead_letters.as_mut(), how, control)? {
                Written::Stopped => break,
                Written::Done(refused) => {
                    records += (batch.iter().filter(|(_, a)| a.is_some()).count() - refused) as u64;
                    indices.extend(batch.iter().filter_map(|(_, a)| a.as_ref().map(|a| a.index().to_string())));
                    batch.clear();
                    bytes = 0;
                }
            }
        }
        // The offsets past the written batch (and past transaction markers, or records that wrote
        // nothing) once nothing read waits in a batch.
        if batch.is_empty() && next != committed_at {
            commit(&consumer, topic, &next, name);
            committed_at = next.clone();
        }
        if stopping || done {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let record = record_of(&m);
                let action = match m.payload() {
                    Some(v) => codec
                        .value_as_json(v)
                        .ok_or_else(|| "not a value of the model's output format".to_string())
                        .and_then(|row| transform::apply_all(transforms, row, label))
                        .and_then(|t| {
                            let index = match &t.route {
                                Some(r) => index_name(r).ok_or_else(|| format!("route: `{r}` is no index name"))?,
                                None => index.clone(),
                            };
                            let id = if table {
                                let key = m.key().ok_or("a row of a table model without a key")?;
                                let key = codec.key_as_json(key).ok_or("the key is not in the model's key format")?;
                                id_of_key(&key, &model.key)?
                            } else {
                                format!("{topic}-{}-{}", m.partition(), m.offset())
                            };
                            let doc = serde_json::to_vec(&Value::Object(t.row)).map_err(|e| e.to_string())?;
                            Ok(Some(Action::Index { index, id, doc }))
                        }),
                    // A stream has no tombstones to apply; a table's deletes its document.
                    None if !table => Ok(None),
                    None => m
                        .key()
                        .ok_or_else(|| "a tombstone without a key".to_string())
                        .and_then(|k| {
                            codec.key_as_json(k).ok_or_else(|| "the key is not in the model's key format".into())
                        })
                        .and_then(|k| id_of_key(&k, &model.key))
                        .map(|id| Some(Action::Delete { index: index.clone(), id })),
                };
                let action = match (action, dead_letters.as_mut()) {
                    (Ok(a), _) => a,
                    (Err(reason), Some(d)) => {
                        d.send(topic, &record, &reason)?;
                        None
                    }
                    (Err(reason), None) => {
                        return Err(format!(
                            "offset {} of partition {} of {topic}: {reason} (the sink stalls here; with `on_error: \
                             dead_letter` such records are copied to a dead-letter topic)",
                            m.offset(),
                            m.partition()
                        ))
                    }
                };
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                bytes += action.as_ref().map_or(0, Action::size);
                batch.push((record, action));
                next.insert(m.partition(), m.offset() + 1);
                waiting.record_arrived();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                waiting.nothing_polled((name, topic), &consumer, &next, &ends)?;
            }
        }
    }
    // Where a `route` sent the rows: the indices written (three named at most).
    let location = match indices.len() {
        0 => location,
        1 if indices.contains(index) => location,
        n => {
            let named: Vec<&str> = indices.iter().take(3).map(String::as_str).collect();
            let more = if n > 3 { format!(" and {} more", n - 3) } else { String::new() };
            format!("OpenSearch {} indices {}{more}", bulk.endpoint.shown(), named.join(", "))
        }
    };
    let dead_lettered = dead_letters.as_ref().map_or(0, |d| d.count);
    Ok(SinkOutcome {
        sink: name.clone(),
        model: model_name.clone(),
        location,
        records,
        dead_lettered,
        to_files: false,
        files: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::base64_encode;
    use std::io::{BufRead, BufReader, Read, Write};

    #[test]
    fn endpoints_take_basic_auth_from_the_url_or_apart_and_show_no_password() {
        let e = parse_endpoint("https://alice:s%40cret@search.example.com:9200/os/", None, None).unwrap();
        assert_eq!(e.shown(), "https://search.example.com:9200/os");
        assert_eq!(e.authorization.as_deref(), Some(format!("Basic {}", base64_encode(b"alice:s@cret")).as_str()));
        assert!(!format!("{e:?}").contains("cret"), "{e:?}");
        let e = parse_endpoint("http://localhost:9200", Some("bob"), Some("pw")).unwrap();
        assert_eq!(e.authorization.as_deref(), Some(format!("Basic {}", base64_encode(b"bob:pw")).as_str()));
        assert!(parse_endpoint("http://localhost:9200", None, None).unwrap().authorization.is_none());
        let err = parse_endpoint("ftp://u:hunter2@h", None, None).unwrap_err();
        assert!(err.contains("expected http://") && !err.contains("hunter2"), "{err}");
        assert!(parse_endpoint("http://:9200@", None, None).is_err());
        assert!(parse_endpoint("http://h:9200?x=1", None, None).is_err());
        assert!(parse_endpoint("http://h:9200", None, Some("pw")).is_err());
    }

    #[test]
    fn routed_names_become_index_names() {
        assert_eq!(index_name("Orders-Online").as_deref(), Some("orders-online"));
        assert_eq!(index_name("_a b/c*d").as_deref(), Some("a_b_c_d"));
        assert_eq!(index_name("x".repeat(300).as_str()).map(|n| n.len()), Some(255));
        assert_eq!(index_name("-_+"), None);
        assert_eq!(index_name(".."), None);
    }

    #[test]
    fn ids_are_the_key_one_value_bare_and_several_as_a_list() {
        let one = vec!["order_mode".to_string()];
        assert_eq!(id_of_key(&serde_json::json!("direct"), &one).unwrap(), "direct");
        assert_eq!(id_of_key(&serde_json::json!(42), &one).unwrap(), "42");
        assert_eq!(id_of_key(&serde_json::json!({"ORDER_MODE": "online"}), &one).unwrap(), "online");
        let three = vec!["order_status".to_string(), "windowstart".to_string(), "windowend".to_string()];
        let key = serde_json::json!({"windowend": 20, "order_status": 1, "windowstart": 10});
        assert_eq!(id_of_key(&key, &three).unwrap(), "[1,10,20]");
        assert!(id_of_key(&serde_json::json!({"order_status": 1}), &three).is_err());
        assert!(id_of_key(&Value::Null, &one).is_err());
    }

    #[test]
    fn actions_are_ndjson_lines() {
        let mut body = Vec::new();
        Action::Index { index: "i".into(), id: "a\"b".into(), doc: br#"{"x":1}"#.to_vec() }.write_to(&mut body);
        Action::Delete { index: "i".into(), id: "7".into() }.write_to(&mut body);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"index\":{\"_index\":\"i\",\"_id\":\"a\\\"b\"}}\n{\"x\":1}\n{\"delete\":{\"_index\":\"i\",\"_id\":\"7\"}}\n"
        );
    }

    #[test]
    fn bulk_items_are_done_refused_or_failed() {
        let body = r#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"oh","_id":"a","result":"created","status":201}},
            {"index":{"_index":"oh","_id":"b","status":400,"error":{"type":"mapper_parsing_exception",
              "reason":"failed to parse field [sum_order_total] of type [short]",
              "caused_by":{"type":"input_coercion_exception","reason":"Numeric value (53683.81) out of range\n at x"}}}},
            {"delete":{"_index":"oh","_id":"zz","result":"not_found","status":404}},
            {"index":{"_index":"oh","_id":"c","status":403,"error":{"type":"cluster_block_exception",
              "reason":"index [oh] blocked by: [FORBIDDEN/8/index write (api)];"}}},
            {"index":{"_index":"oh","_id":"d","status":429,"error":{"type":"rejected_execution_exception","reason":"full"}}}]}"#;
        let items = parse_bulk_response(body, 5).unwrap();
        assert_eq!(items[0], ItemResult::Done);
        assert_eq!(
            items[1],
            ItemResult::Refused(
                "mapper_parsing_exception: failed to parse field [sum_order_total] of type [short] (caused by: \
                 Numeric value (53683.81) out of range)"
                    .into()
            )
        );
        assert_eq!(items[2], ItemResult::Done, "deleting a document that is not there is done");
        assert!(matches!(&items[3], ItemResult::Failed(403, r) if r.starts_with("cluster_block_exception")));
        assert!(matches!(&items[4], ItemResult::Failed(429, _)));
        assert!(parse_bulk_response(body, 4).is_err());
        assert!(parse_bulk_response("<html>", 1).is_err());
    }

    /// A server on a local port that answers each request with the next of `replies` (status,
    /// body), and hands the requests it read (head and body) back.
    fn fake_server(replies: Vec<(u16, String)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in replies {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut content = vec![0; length];
                reader.read_exact(&mut content).unwrap();
                seen.push(format!("{head}\n{}", String::from_utf8_lossy(&content)));
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: \
                     close\r\n\r\n{body}",
                    body.len()
                );
            }
            seen
        });
        (url, handle)
    }

    fn entry(offset: i64, action: Action) -> Entry {
        let record = Record {
            partition: 0,
            offset,
            timestamp: 0,
            key: None,
            value: Some(bytes::Bytes::from_static(b"{}")),
            headers: vec![],
        };
        (record, Some(action))
    }

    #[test]
    fn a_batch_the_cluster_does_not_take_is_sent_again_with_the_credentials() {
        let ok = r#"{"errors":false,"items":[{"index":{"status":201}},{"delete":{"status":200}}]}"#;
        let rejected = r#"{"errors":true,"items":[{"index":{"status":429,"error":{"type":"rejected_execution_exception",
            "reason":"queue full"}}},{"delete":{"status":200}}]}"#;
        let (url, server) = fake_server(vec![
            (503, r#"{"error":{"type":"unavailable","reason":"starting"},"status":503}"#.into()),
            (200, rejected.into()),
            (200, ok.into()),
        ]);
        let bulk = BulkClient::new(parse_endpoint(&url, Some("streamctl"), Some("pw")).unwrap());
        let batch = vec![
            entry(0, Action::Index { index: "i".into(), id: "a".into(), doc: br#"{"n":1}"#.to_vec() }),
            entry(1, Action::Delete { index: "i".into(), id: "b".into() }),
        ];
        let control = RunControl::default();
        let started = Instant::now();
        let r = write_batch(&bulk, "s", "t", &batch, None, SinkRun::UntilStopped, &control).unwrap();
        assert!(matches!(r, Written::Done(0)));
        assert!(started.elapsed() >= Duration::from_secs(3), "backoff of 1 s, then 2 s");
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3);
        for request in &seen {
            assert!(request.starts_with("POST /_bulk "), "{request}");
            let auth = format!("authorization: Basic {}", base64_encode(b"streamctl:pw"));
            assert!(request.to_ascii_lowercase().contains(&auth.to_ascii_lowercase()), "{request}");
            assert!(request.ends_with("{\"delete\":{\"_index\":\"i\",\"_id\":\"b\"}}\n"), "{request}");
        }
    }

    #[test]
    fn a_refused_document_fails_the_batch_without_a_dead_letter_topic() {
        let refused = r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,
            "error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}"#;
        let (url, server) = fake_server(vec![(200, refused.into())]);
        let bulk = BulkClient::new(parse_endpoint(&url, None, None).unwrap());
        let batch = vec![
            entry(5, Action::Index { index: "i".into(), id: "a".into(), doc: b"{}".to_vec() }),
            entry(6, Action::Index { index: "i".into(), id: "b".into(), doc: b"{}".to_vec() }),
        ];
        let control = RunControl::default();
        let e = write_batch(&bulk, "s", "t", &batch, None, SinkRun::UntilStopped, &control).err().unwrap();
        assert!(e.starts_with(
            "offset 6 of partition 0 of t: OpenSearch refused the document: mapper_parsing_exception: bad"
        ));
        assert_eq!(server.join().unwrap().len(), 1);
    }

    #[test]
    fn a_stop_ends_the_retries_of_a_stalled_batch() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        drop(listener);
        let bulk = BulkClient::new(parse_endpoint(&url, None, None).unwrap());
        let batch = vec![entry(0, Action::Delete { index: "i".into(), id: "a".into() })];
        let control = RunControl::default();
        control.stop.store(true, Ordering::SeqCst);
        let r = write_batch(&bulk, "s", "t", &batch, None, SinkRun::UntilStopped, &control).unwrap();
        assert!(matches!(r, Written::Stopped));
    }
}
