//! Kafka records ↔ job batches for one relation: decoding values (and tombstones from keys),
//! event time, pseudo columns; encoding output rows and keys.

use bytes::Bytes;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};

use crate::compile::{CompiledModel, CompiledProject, EventTimeSpec};
use crate::formats::avro::{output_schema, split_frame, AvroDecoder, AvroEncoder, SchemaSource};
use crate::formats::headers::{self, HeaderColumn, Headers};
use crate::formats::json::{encode_keys, encode_rows, event_times, JsonDecoder};
use crate::formats::{avro_json, debezium, keys, BadRecord};
use crate::graph::NodeId;
use crate::project::config::{KeyFormat, OnError, RelationKind, ValueFormat};
use crate::registry::file::{content_id, FileRegistry};
use crate::registry::{id_for, SchemaRegistry, SchemaType};
use crate::sql::dialect::PseudoColumn;

use super::job::OutputBatch;

/// A record as read from or written to a topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp, epoch ms.
    pub timestamp: i64,
    /// Keys and values of a polled or encoded batch are slices of one buffer ([`Bytes`]): a
    /// record costs no allocation of its own.
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Headers,
}

/// A record's headers as rdkafka sends them (`None` when it has none).
pub fn kafka_headers(headers: &Headers) -> Option<rdkafka::message::OwnedHeaders> {
    use rdkafka::message::Header;
    (!headers.is_empty()).then(|| {
        headers.iter().fold(rdkafka::message::OwnedHeaders::new_with_capacity(headers.len()), |hs, (key, v)| {
            hs.insert(Header { key, value: v.as_deref() })
        })
    })
}

/// A consumed message as a [`Record`] (its key and value copied).
pub fn record_of(msg: &impl rdkafka::message::Message) -> Record {
    Record {
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis().unwrap_or(0),
        key: msg.key().map(Bytes::copy_from_slice),
        value: msg.payload().map(Bytes::copy_from_slice),
        headers: headers_of(msg),
    }
}

/// The headers of a consumed message.
pub fn headers_of(msg: &impl rdkafka::message::Message) -> Headers {
    use rdkafka::message::Headers as _;
    msg.headers()
        .map_or_else(Vec::new, |hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
}

/// How one input relation is read.
#[derive(Debug, Clone)]
pub struct InputCodec {
    pub id: NodeId,
    pub topic: String,
    pub kind: RelationKind,
    pub lateness_ms: i64,
    pub on_error: OnError,
    pub dead_letter_topic: String,
    decoder: JsonDecoder,
    /// Values in Avro; `decoder` then reads only the keys of tombstones.
    avro: Option<AvroDecoder>,
    /// Values are Debezium change events; `Some(column)` is the declared column (`__op`)
    /// that gets each change's op.
    debezium: Option<Option<String>>,
    /// The change-event format (Debezium JSON or Avro, GoldenGate JSON) when `debezium` is set.
    changes: ValueFormat,
    event_time: Option<EventTimeSpec>,
    /// Key columns: SQL names and names in the data.
    key: Vec<(String, String)>,
    key_format: KeyFormat,
    /// Whether each key column is numeric (a `string` key is then read as a number).
    key_numeric: Vec<bool>,
    /// Writer schemas by id (Avro values and keys).
    schemas: Arc<SchemaSource>,
    /// Avro keys: the key columns' schema and its content id, to write keys given as JSON.
    own_key_schema: Option<(i32, serde_json::Value)>,
    /// `debezium-avro`: an envelope schema of the declared columns and its content id, to write
    /// rows given as JSON.
    own_envelope: Option<(i32, serde_json::Value)>,
    /// Columns read from the headers, with the relation's whole schema (their types, positions).
    header_columns: Vec<HeaderColumn>,
    schema: Arc<Schema>,
    /// Names in the data of the relation's columns.
    data_names: Vec<String>,
}

/// A decoded micro-batch: rows with the relation's columns and the pseudo columns.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub deletes: Option<BooleanArray>,
    /// For each row, the index of its record.
    pub rows: Vec<usize>,
    pub bad: Vec<BadRecord>,
}

impl InputCodec {
    /// The codec of an input; Avro writer schemas come from the project's file registry
    /// (`schemas/`, the embedded target's).
    pub fn for_input(cp: &CompiledProject, id: &NodeId) -> Option<InputCodec> {
        InputCodec::for_input_with_registry(cp, id, Some(project_registry(cp)))
    }

    /// The codec of an input, reading Avro writer schemas from `registry`.
    pub fn for_input_with_registry(
        cp: &CompiledProject,
        id: &NodeId,
        registry: Option<Arc<dyn SchemaRegistry>>,
    ) -> Option<InputCodec> {
        // A content-addressed registry (or none) knows a model's output schema by its content id.
        let own_ids = registry.as_ref().is_none_or(|r| r.content_addressed());
        let schemas = Arc::new(SchemaSource::new(registry));
        match id {
            NodeId::Source(n) => {
                let s = cp.sources.get(n)?;
                let all_names: Vec<String> = s.columns.iter().map(|c| c.name.clone()).collect();
                // The value holds the columns not read from headers.
                let (value_schema, data_names) = s.value_columns();
                let key = s
                    .key
                    .iter()
                    .map(|k| {
                        let data = s
                            .columns
                            .iter()
                            .find(|c| c.name.eq_ignore_ascii_case(k))
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| k.clone());
                        (k.clone(), data)
                    })
                    .collect();
                Some(InputCodec {
                    id: id.clone(),
                    topic: s.decl.table.topic.clone(),
                    kind: s.decl.table.kind,
                    lateness_ms: s.allowed_lateness_ms,
                    on_error: s.decl.table.on_error,
                    dead_letter_topic: s.dead_letter_topic.clone(),
                    decoder: JsonDecoder::new(value_schema.clone(), &data_names),
                    changes: s.decl.table.format,
                    debezium: s.decl.table.format.is_change_events().then(|| {
                        s.columns.iter().find(|c| c.name.eq_ignore_ascii_case("__op")).map(|c| c.name.clone())
                    }),
                    avro: match s.decl.table.format {
                        ValueFormat::Avro => Some(
                            AvroDecoder::new(&s.decl.table.name, value_schema.clone(), &data_names, schemas.clone())
                                .ok()?,
                        ),
                        _ => None,
                    },
                    event_time: s.event_time.clone(),
                    key_numeric: numeric_columns(&s.schema, &s.key),
                    key,
                    key_format: s.decl.table.key_format,
                    own_key_schema: own_key_schema(
                        s.decl.table.key_format,
                        &s.decl.table.name,
                        &s.key,
                        &s.schema,
                        &schemas,
                    ),
                    own_envelope: (s.decl.table.format == ValueFormat::DebeziumAvro)
                        .then(|| own_envelope(&value_schema, &data_names, &schemas))
                        .flatten(),
                    schemas,
                    header_columns: s.header_columns.clone(),
                    schema: s.schema.clone(),
                    data_names: all_names,
                })
            }
            NodeId::Model(n) => {
                let m = cp.models.get(n)?;
                let names: Vec<String> = m.schema.fields().iter().map(|f| f.name().clone()).collect();
                Some(InputCodec {
                    id: id.clone(),
                    topic: m.topic.clone(),
                    kind: m.kind,
                    lateness_ms: m.resolved.allowed_lateness_ms,
                    on_error: OnError::Fail,
                    dead_letter_topic: m.resolved.dead_letter_topic.clone(),
                    decoder: JsonDecoder::new(m.schema.clone(), &names),
                    debezium: None,
                    changes: ValueFormat::Json,
                    avro: match m.config.format {
                        Some(ValueFormat::Avro) => {
                            // What the model writes, known without the registry.
                            let (id, schema) = model_avro_schema(m).ok()?;
                            if own_ids {
                                schemas.insert(id, &schema);
                            }
                            Some(AvroDecoder::new(&m.name, m.schema.clone(), &names, schemas.clone()).ok()?)
                        }
                        _ => None,
                    },
                    event_time: None,
                    key: m.key.iter().map(|k| (k.clone(), k.clone())).collect(),
                    key_format: m.config.key_format.unwrap_or_default(),
                    key_numeric: numeric_columns(&m.schema, &m.key),
                    own_key_schema: own_key_schema(
                        m.config.key_format.unwrap_or_default(),
                        &m.name,
                        &m.key,
                        &m.schema,
                        &schemas,
                    ),
                    own_envelope: None,
                    schemas,
                    header_columns: Vec::new(),
                    schema: m.schema.clone(),
                    data_names: names,
                })
            }
            NodeId::Sink(_) | NodeId::Connector(_) => None,
        }
    }

    /// The codec of a model's output as a native sink reads it: Avro writer schemas from
    /// `registry` (the target's), else from the project's file registry.
    pub fn for_model_output(
        cp: &CompiledProject,
        model: &str,
        registry: Option<&crate::registry::SharedRegistry>,
    ) -> Option<InputCodec> {
        let r = registry.map_or_else(|| project_registry(cp), |r| r.0.clone());
        InputCodec::for_input_with_registry(cp, &NodeId::Model(model.to_string()), Some(r))
    }

    /// This input as a job reads it: only `columns` (SQL names) of its values are kept, with
    /// the event time and key columns, which the runtime reads itself (see
    /// [`JsonDecoder::reading_only`]).
    pub fn reading_only(mut self, columns: &std::collections::BTreeSet<String>) -> InputCodec {
        let event_time = self.event_time.as_ref().map(|e| e.column.clone());
        let key: Vec<String> = self.key.iter().map(|(sql, _)| sql.clone()).collect();
        let read = |name: &str| {
            columns.iter().chain(event_time.iter()).chain(key.iter()).any(|c| c.eq_ignore_ascii_case(name))
        };
        self.decoder = self.decoder.reading_only(&read);
        self
    }

    /// Decodes records; rows get `rowtime`, `rowpartition`, `rowoffset`.
    pub fn decode(&self, records: &[Record]) -> Decoded {
        match &self.debezium {
            None => self.decode_rows(records, self.key_format),
            Some(op_column) => self.decode_changes(records, op_column.as_deref()),
        }
    }

    /// Debezium change events as the flat records they stand for (a delete of a table row as
    /// a tombstone of its key, `source.ts_ms` as the timestamp), then decoded as rows.
    fn decode_changes(&self, records: &[Record], op_column: Option<&str>) -> Decoded {
        let mut envelope_errors: Vec<(usize, String)> = Vec::new();
        let flat: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut f = r.clone();
                match &r.value {
                    Some(v) => match self.parse_change(v, op_column) {
                        Ok(change) => {
                            if let Some(ts) = change.ts_ms {
                                f.timestamp = ts;
                            }
                            if change.delete && self.kind == RelationKind::Table {
                                let mut key = serde_json::Map::new();
                                for (_, data) in &self.key {
                                    let found = change.row.iter().find(|(k, _)| k.eq_ignore_ascii_case(data));
                                    key.insert(data.clone(), found.map_or(serde_json::Value::Null, |(_, v)| v.clone()));
                                }
                                f.key = serde_json::to_vec(&key).ok().map(Bytes::from);
                                f.value = None;
                            } else {
                                f.value =
                                    serde_json::to_vec(&serde_json::Value::Object(change.row)).ok().map(Bytes::from);
                            }
                        }
                        Err(reason) => {
                            envelope_errors.push((i, reason));
                            f.value = Some(Bytes::new());
                        }
                    },
                    // A tombstone's key (as JSON) may be wrapped by Kafka Connect's JsonConverter.
                    None => {
                        if let Some(k) = r.key.as_deref().and_then(|k| self.key_value(k).ok()) {
                            f.key = serde_json::to_vec(&debezium::unwrap_payload(k)).ok().map(Bytes::from);
                        }
                    }
                }
                f
            })
            .collect();
        let mut decoded = self.decode_rows(&flat, KeyFormat::Json);
        for (i, reason) in envelope_errors {
            if let Some(b) = decoded.bad.iter_mut().find(|b| b.index == i) {
                b.reason = reason;
            }
        }
        decoded
    }

    /// One change event of this input's change format.
    fn parse_change(&self, value: &[u8], op_column: Option<&str>) -> Result<debezium::Change, String> {
        match self.changes {
            ValueFormat::GoldengateJson => debezium::parse_goldengate(value, op_column),
            ValueFormat::DebeziumAvro => {
                let (id, mut body) = split_frame(value)?;
                let schema: serde_json::Value = serde_json::from_str(&self.schemas.avro_schema(id)?)
                    .map_err(|e| format!("schema id {id} is not valid JSON: {e}"))?;
                let event = avro_json::read_all(&schema, &mut body)
                    .map_err(|e| format!("invalid or truncated Avro body ({e})"))?;
                debezium::parse_value(event, op_column)
            }
            _ => debezium::parse(value, op_column),
        }
    }

    /// `key_format`: how the keys of tombstones are encoded.
    fn decode_rows(&self, records: &[Record], key_format: KeyFormat) -> Decoded {
        // Tombstones of tables become their key as a row; everything else is decoded in place.
        let mut bad = Vec::new();
        let mut tombstones: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if r.value.is_none() {
                // A change-event source follows each delete event with a tombstone (Debezium's
                // default, for log compaction): a stream of changes has the delete event already.
                if self.kind != RelationKind::Table && self.debezium.is_some() {
                    continue;
                }
                if self.kind != RelationKind::Table {
                    bad.push(BadRecord { index: i, reason: "null value (a tombstone) on a stream".into() });
                    continue;
                }
                match self.key_object(r.key.as_deref(), key_format) {
                    Ok(k) => tombstones.push((i, k)),
                    Err(reason) => bad.push(BadRecord { index: i, reason }),
                }
            }
        }
        let mut refs: Vec<&[u8]> = Vec::with_capacity(records.len());
        let mut value_of: Vec<usize> = Vec::with_capacity(records.len());
        let mut is_delete: Vec<bool> = Vec::with_capacity(records.len());
        let mut t = tombstones.iter().peekable();
        for (i, r) in records.iter().enumerate() {
            if let Some(v) = &r.value {
                refs.push(v);
                value_of.push(i);
                is_delete.push(false);
            } else if let Some((_, k)) = t.next_if(|(ti, _)| *ti == i) {
                refs.push(k);
                value_of.push(i);
                is_delete.push(true);
            }
        }
        let (batch, kept, bad_values) = match &self.avro {
            None => self.decoder.decode(&refs),
            Some(avro) => decode_avro_and_keys(avro, &self.decoder, &refs, &is_delete),
        };
        bad.extend(bad_values.into_iter().map(|b| BadRecord { index: value_of[b.index], reason: b.reason }));
        let rows: Vec<usize> = kept.iter().map(|k| value_of[*k]).collect();
        let deletes: Vec<bool> = kept.iter().map(|k| is_delete[*k]).collect();
        let (batch, header_errors) = self.with_header_columns(batch, &rows, records);

        let kafka_ts: Vec<i64> = rows.iter().map(|r| records[*r].timestamp).collect();
        let (mut times, time_errors) = event_times(&batch, self.event_time.as_ref(), &kafka_ts);
        // A tombstone has no event time column: it takes the record's timestamp.
        for (j, d) in deletes.iter().enumerate() {
            if *d {
                times[j] = kafka_ts[j];
            }
        }
        let mut time_errors: Vec<(usize, String)> = time_errors.into_iter().filter(|(j, _)| !deletes[*j]).collect();
        for (j, reason) in header_errors {
            if !time_errors.iter().any(|(t, _)| *t == j) {
                time_errors.push((j, reason));
            }
        }
        let (batch, rows, times, deletes) = if time_errors.is_empty() {
            (batch, rows, times, deletes)
        } else {
            let drop: std::collections::HashSet<usize> = time_errors.iter().map(|(j, _)| *j).collect();
            for (j, reason) in &time_errors {
                bad.push(BadRecord { index: rows[*j], reason: reason.clone() });
            }
            let keep: BooleanArray = (0..batch.num_rows()).map(|j| Some(!drop.contains(&j))).collect();
            let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep).unwrap_or(batch);
            let f = |j: &usize| !drop.contains(j);
            let idx: Vec<usize> = (0..rows.len()).filter(f).collect();
            (
                batch,
                idx.iter().map(|j| rows[*j]).collect(),
                idx.iter().map(|j| times[*j]).collect(),
                idx.iter().map(|j| deletes[*j]).collect(),
            )
        };
        bad.sort_by_key(|b| b.index);

        let partitions: Vec<i32> = rows.iter().map(|r| records[*r].partition).collect();
        let offsets: Vec<i64> = rows.iter().map(|r| records[*r].offset).collect();
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        for (pc, col) in [
            (PseudoColumn::Rowtime, Arc::new(Int64Array::from(times)) as ArrayRef),
            (PseudoColumn::Rowpartition, Arc::new(Int32Array::from(partitions)) as ArrayRef),
            (PseudoColumn::Rowoffset, Arc::new(Int64Array::from(offsets)) as ArrayRef),
        ] {
            fields.push(crate::compile::pseudo_field(pc));
            cols.push(col);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("columns match their fields");
        let deletes = deletes.iter().any(|d| *d).then(|| BooleanArray::from(deletes));
        Decoded { batch, deletes, rows, bad }
    }

    /// Whether the records' headers matter: columns are read from them, or dead letters keep them.
    pub fn reads_headers(&self) -> bool {
        !self.header_columns.is_empty() || self.on_error == OnError::DeadLetter
    }

    /// The decoded value columns with the columns read from the records' headers put in their
    /// places; rows whose header cannot be read are listed with the reason.
    fn with_header_columns(
        &self,
        batch: RecordBatch,
        rows: &[usize],
        records: &[Record],
    ) -> (RecordBatch, Vec<(usize, String)>) {
        if self.header_columns.is_empty() {
            return (batch, Vec::new());
        }
        let hs: Vec<&Headers> = rows.iter().map(|r| &records[*r].headers).collect();
        let mut errors = Vec::new();
        let value_schema = batch.schema();
        let mut values = value_schema.fields().iter().cloned().zip(batch.columns().iter().cloned());
        let mut fields = Vec::new();
        let mut cols = Vec::new();
        for (i, f) in self.schema.fields().iter().enumerate() {
            match self.header_columns.iter().find(|h| h.index == i) {
                Some(h) => {
                    let (col, errs) = headers::read_column(h, f.data_type(), &hs);
                    errors.extend(errs);
                    fields.push(f.as_ref().clone().with_nullable(true));
                    cols.push(col);
                }
                None => {
                    let Some((f, c)) = values.next() else { break };
                    fields.push(f.as_ref().clone());
                    cols.push(c);
                }
            }
        }
        match RecordBatch::try_new(Arc::new(Schema::new(fields)), cols) {
            Ok(b) => (b, errors),
            Err(e) => {
                let n = batch.num_rows();
                (batch, (0..n).map(|j| (j, format!("cannot add the header columns: {e}"))).collect())
            }
        }
    }

    /// The headers of a row given as a JSON object (test rows, sample data): `_headers`
    /// (`{"name": "value"}` or a list of `{"key", "value"}`), and the values given for the
    /// columns read from headers.
    pub fn headers_from_json(&self, row: &serde_json::Map<String, serde_json::Value>) -> Result<Headers, String> {
        let mut out = match row.get("_headers") {
            Some(v) => headers::from_json(v).map_err(|e| format!("`_headers`: {e}"))?,
            None => Vec::new(),
        };
        for h in &self.header_columns {
            let name = &self.data_names[h.index];
            let Some(v) = row.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v) else { continue };
            match &h.header {
                None => out.extend(headers::from_json(v).map_err(|e| format!("column `{name}`: {e}"))?),
                Some(key) => {
                    if let Some((_, value)) = headers::from_json(&serde_json::json!({ key: v }))?.pop() {
                        out.push((key.clone(), value));
                    }
                }
            }
        }
        Ok(out)
    }

    /// A row given as a JSON object (test rows, sample data) as the value this input's topic
    /// holds: the JSON itself, or Avro written with the schema of the declared columns.
    /// Change-event sources get the row as a create (insert) event of their format.
    pub fn value_from_json(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(op_column) = &self.debezium {
            let mut row: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
            if let (Some(c), serde_json::Value::Object(m)) = (op_column, &mut row) {
                m.retain(|k, _| !k.eq_ignore_ascii_case(c));
            }
            return match self.changes {
                ValueFormat::GoldengateJson => serde_json::to_vec(&serde_json::json!({"op_type": "I", "after": row})),
                ValueFormat::DebeziumAvro => {
                    let (id, schema) = self.own_envelope.as_ref().ok_or("the columns have no Avro mapping")?;
                    let mut out = vec![crate::formats::avro::MAGIC_BYTE];
                    out.extend(id.to_be_bytes());
                    let event = serde_json::json!({"after": row, "before": null, "op": "c"});
                    avro_json::write(schema, &event, &mut out)?;
                    return Ok(out);
                }
                _ => serde_json::to_vec(&serde_json::json!({"op": "c", "before": null, "after": row})),
            }
            .map_err(|e| e.to_string());
        }
        match &self.avro {
            None => Ok(json.to_vec()),
            Some(avro) => avro.encode_json(json),
        }
    }

    /// The Avro schema values made from JSON rows are written with (the declared columns'), for
    /// an Avro input.
    pub fn own_avro_schema(&self) -> Option<String> {
        self.avro.as_ref().map(|a| a.own_schema().to_string())
    }

    /// A value of this input's topic as a JSON object (SQL column names for Avro).
    pub fn value_as_json(&self, value: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
        match &self.avro {
            None => serde_json::from_slice::<serde_json::Value>(value).ok()?.as_object().cloned(),
            Some(avro) => avro.decode_to_json(value).ok(),
        }
    }

    /// A key given as JSON (test rows, sample data) as this input's topic holds it.
    pub fn key_from_json(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        if self.key_format == KeyFormat::Json {
            return Ok(json.to_vec());
        }
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("key is not JSON: {e}"))?;
        let values: Vec<(String, serde_json::Value)> = match (&v, self.key.as_slice()) {
            (serde_json::Value::Object(o), cols) => cols
                .iter()
                .map(|(sql, data)| {
                    let found = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(sql)).map(|(_, v)| v.clone());
                    (data.clone(), found.unwrap_or(serde_json::Value::Null))
                })
                .collect(),
            (scalar, [(_, data)]) => vec![(data.clone(), scalar.clone())],
            _ => return Err("the key does not match the key columns".into()),
        };
        keys::encode_key(self.key_format, &values, self.own_key_schema.as_ref())
    }

    /// A key of this input's topic as JSON (an object, or one column's bare value).
    pub fn key_as_json(&self, key: &[u8]) -> Option<serde_json::Value> {
        self.key_value(key).ok()
    }

    /// A key in the input's key format as JSON.
    fn key_value(&self, key: &[u8]) -> Result<serde_json::Value, String> {
        let v = keys::decode_key(self.key_format, key, &|id| self.schemas.avro_schema(id))?;
        // Text keys of numeric columns: the number they spell.
        match (&v, self.key_format, self.key_numeric.as_slice()) {
            (serde_json::Value::String(s), KeyFormat::String, [true]) => {
                Ok(s.trim().parse::<serde_json::Number>().map(serde_json::Value::Number).unwrap_or(v))
            }
            _ => Ok(v),
        }
    }

    /// A tombstone's key as a JSON object with the data's column names.
    fn key_object(&self, key: Option<&[u8]>, key_format: KeyFormat) -> Result<Vec<u8>, String> {
        let key = key.ok_or("tombstone without a key")?;
        let v: serde_json::Value = match key_format {
            KeyFormat::Json => serde_json::from_slice(key).map_err(|e| format!("tombstone key is not JSON: {e}"))?,
            _ => self.key_value(key).map_err(|e| format!("tombstone key: {e}"))?,
        };
        let mut obj = serde_json::Map::new();
        match (&v, self.key.as_slice()) {
            (serde_json::Value::Object(m), cols) => {
                for (sql, data) in cols {
                    let found = m.iter().find(|(k, _)| k.eq_ignore_ascii_case(sql)).map(|(_, v)| v.clone());
                    obj.insert(data.clone(), found.ok_or_else(|| format!("tombstone key has no `{sql}`"))?);
                }
            }
            (scalar, [(_, data)]) => {
                obj.insert(data.clone(), scalar.clone());
            }
            _ => return Err("tombstone key does not match the key columns".into()),
        }
        serde_json::to_vec(&obj).map_err(|e| e.to_string())
    }
}

/// Values in Avro, and tombstone keys (JSON objects) with the JSON decoder; rows in record order.
fn decode_avro_and_keys(
    avro: &AvroDecoder,
    json: &JsonDecoder,
    refs: &[&[u8]],
    is_delete: &[bool],
) -> (RecordBatch, Vec<usize>, Vec<BadRecord>) {
    let (value_idx, key_idx): (Vec<usize>, Vec<usize>) = (0..refs.len()).partition(|i| !is_delete[*i]);
    let values: Vec<&[u8]> = value_idx.iter().map(|i| refs[*i]).collect();
    let (vb, vkept, vbad) = avro.decode(&values);
    let mut bad: Vec<BadRecord> =
        vbad.into_iter().map(|b| BadRecord { index: value_idx[b.index], reason: b.reason }).collect();
    if key_idx.is_empty() {
        return (vb, vkept.iter().map(|k| value_idx[*k]).collect(), bad);
    }
    let keys: Vec<&[u8]> = key_idx.iter().map(|i| refs[*i]).collect();
    let (kb, kkept, kbad) = json.decode(&keys);
    bad.extend(kbad.into_iter().map(|b| BadRecord { index: key_idx[b.index], reason: b.reason }));
    bad.sort_by_key(|b| b.index);
    // Merge the two in record order.
    let mut order: Vec<(usize, usize, usize)> =
        vkept.iter().enumerate().map(|(row, k)| (value_idx[*k], 0, row)).collect();
    order.extend(kkept.iter().enumerate().map(|(row, k)| (key_idx[*k], 1, row)));
    order.sort_unstable();
    let picks: Vec<(usize, usize)> = order.iter().map(|(_, b, row)| (*b, *row)).collect();
    let kb = RecordBatch::try_new(vb.schema(), kb.columns().to_vec())
        .unwrap_or_else(|_| RecordBatch::new_empty(vb.schema()));
    let columns: Result<Vec<ArrayRef>, _> = (0..vb.num_columns())
        .map(|c| datafusion::arrow::compute::interleave(&[vb.column(c).as_ref(), kb.column(c).as_ref()], &picks))
        .collect();
    match columns.and_then(|cols| RecordBatch::try_new(vb.schema(), cols)) {
        Ok(batch) => (batch, order.iter().map(|(i, _, _)| *i).collect(), bad),
        Err(e) => {
            bad.extend(order.iter().map(|(i, _, _)| BadRecord { index: *i, reason: e.to_string() }));
            bad.sort_by_key(|b| b.index);
            (RecordBatch::new_empty(vb.schema()), Vec::new(), bad)
        }
    }
}

/// The Avro schema of a model's values and the id the project's file registry gives it.
pub fn model_avro_schema(m: &CompiledModel) -> Result<(i32, String), String> {
    let schema = output_schema(&m.name, &m.schema)?;
    Ok((content_id(SchemaType::Avro, &schema), schema))
}

/// For Avro keys, the schema of the key columns, known to `schemas` under its content id.
fn own_key_schema(
    format: KeyFormat,
    name: &str,
    key: &[String],
    schema: &Schema,
    schemas: &SchemaSource,
) -> Option<(i32, serde_json::Value)> {
    if format != KeyFormat::Avro || key.is_empty() {
        return None;
    }
    let avro = keys::avro_key_schema(name, key, schema).ok()?;
    let id = content_id(SchemaType::Avro, &avro.to_string());
    schemas.insert(id, &avro.to_string());
    Some((id, avro))
}

/// A Debezium envelope in Avro for these columns (`data_names`: their names in the data; an
/// `__op` column is not data), known to `schemas` under its content id.
fn own_envelope(schema: &Schema, data_names: &[String], schemas: &SchemaSource) -> Option<(i32, serde_json::Value)> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(data_names)
        .filter(|(_, n)| !n.eq_ignore_ascii_case("__op"))
        .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
        .collect();
    let value: serde_json::Value = serde_json::from_str(&output_schema("Value", &Schema::new(fields)).ok()?).ok()?;
    // `after` defines `Value`, `before` refers to it.
    let envelope = serde_json::json!({"type": "record", "name": "Envelope", "fields": [
        {"name": "after", "type": ["null", value], "default": null},
        {"name": "before", "type": ["null", "Value"], "default": null},
        {"name": "op", "type": "string"}]});
    let id = content_id(SchemaType::Avro, &envelope.to_string());
    schemas.insert(id, &envelope.to_string());
    Some((id, envelope))
}

fn numeric_columns(schema: &Schema, key: &[String]) -> Vec<bool> {
    key.iter()
        .map(|k| schema.fields().iter().any(|f| f.name().eq_ignore_ascii_case(k) && f.data_type().is_numeric()))
        .collect()
}

/// The project's own file registry (`schemas/`, the embedded target's).
pub fn project_registry(cp: &CompiledProject) -> Arc<dyn SchemaRegistry> {
    Arc::new(FileRegistry::new(cp.project.root.join("schemas"), "schemas"))
}

/// How a model's output rows become records: values in the model's format (JSON, or Avro framed
/// with the id the registry gives the model's schema under `<topic>-value`), keys in its
/// `key_format` (an Avro key framed with the id of `<topic>-key`).
#[derive(Debug, Clone)]
pub struct OutputCodec {
    key: Vec<String>,
    key_format: KeyFormat,
    /// The Avro key schema and its id.
    avro_key: Option<(i32, serde_json::Value)>,
    avro: Option<AvroEncoder>,
    /// Headers written from columns: header name (`*`: every entry of the column), column index.
    headers: Vec<(String, usize)>,
}

impl OutputCodec {
    /// Looks the Avro schemas' ids up in `registry` (registering them when the subject lacks them).
    pub fn new(m: &CompiledModel, registry: &dyn SchemaRegistry) -> Result<OutputCodec, String> {
        let id_of = |subject: String, schema: &str| {
            id_for(registry, &subject, SchemaType::Avro, schema).map_err(|e| {
                format!("model `{}`: cannot find the id of its Avro schema (subject `{subject}`): {e}", m.name)
            })
        };
        let avro = match m.config.format {
            Some(ValueFormat::Avro) => {
                let schema = output_schema(&m.name, &m.schema)?;
                let id = id_of(format!("{}-value", m.topic), &schema)?;
                Some(AvroEncoder::new(id, &schema, &m.schema))
            }
            _ => None,
        };
        let key_format = m.config.key_format.unwrap_or_default();
        let avro_key = match key_format {
            KeyFormat::Avro if !m.key.is_empty() => {
                let schema = keys::avro_key_schema(&m.name, &m.key, &m.schema)?;
                Some((id_of(format!("{}-key", m.topic), &schema.to_string())?, schema))
            }
            _ => None,
        };
        let headers = m
            .config
            .headers
            .iter()
            .flatten()
            .map(|(name, col)| {
                let i = m.schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(col));
                i.map(|i| (name.clone(), i))
                    .ok_or_else(|| format!("model `{}`: header `{name}`: no column `{col}`", m.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(OutputCodec { key: m.key.clone(), key_format, avro_key, avro, headers })
    }

    /// Encodes output rows as records (partition left to the producer: -1).
    pub fn encode(&self, out: &OutputBatch) -> Result<Vec<Record>, datafusion::arrow::error::ArrowError> {
        let values = match &self.avro {
            Some(avro) => avro.encode(&out.batch)?.into_iter().map(Bytes::from).collect(),
            None => encode_rows(&out.batch)?,
        };
        let keys = match self.key_format {
            KeyFormat::Json => encode_keys(&out.batch, &self.key)?,
            _ => self.encode_keys(&out.batch)?,
        };
        let columns: Vec<(String, ArrayRef)> = self
            .headers
            .iter()
            .filter_map(|(name, i)| Some((name.clone(), out.batch.columns().get(*i)?.clone())))
            .collect();
        // Most models write no headers: no list of empty ones then.
        let mut headers =
            if columns.is_empty() { Vec::new() } else { headers::write_headers(&columns, out.batch.num_rows()) }
                .into_iter();
        Ok(values
            .into_iter()
            .zip(keys)
            .enumerate()
            .map(|(i, (v, k))| Record {
                headers: headers.next().unwrap_or_default(),
                partition: -1,
                offset: -1,
                timestamp: out.timestamps.get(i).copied().unwrap_or(0),
                key: k,
                value: if out.deletes.as_ref().is_some_and(|d| d.value(i)) { None } else { Some(v) },
            })
            .collect())
    }

    /// Keys in a format other than JSON: the key columns' values, then `keys::encode_key`.
    fn encode_keys(&self, batch: &RecordBatch) -> Result<Vec<Option<Bytes>>, datafusion::arrow::error::ArrowError> {
        if self.key.is_empty() {
            return Ok(vec![None; batch.num_rows()]);
        }
        let idx: Vec<usize> = self.key.iter().filter_map(|k| batch.schema().index_of(k).ok()).collect();
        let rows = encode_rows(&batch.project(&idx)?)?;
        let err = datafusion::arrow::error::ArrowError::InvalidArgumentError;
        rows.iter()
            .map(|r| {
                let obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(r).map_err(|e| err(e.to_string()))?;
                let values: Vec<(String, serde_json::Value)> = self
                    .key
                    .iter()
                    .map(|k| (k.clone(), obj.get(k).cloned().unwrap_or(serde_json::Value::Null)))
                    .collect();
                keys::encode_key(self.key_format, &values, self.avro_key.as_ref()).map(|k| Some(k.into())).map_err(err)
            })
            .collect()
    }
}

/// Kafka's default partitioner for keyed records (murmur2, as the Java client).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let len = data.len();
    let mut h: u32 = seed ^ len as u32;
    let chunks = len / 4;
    for i in 0..chunks {
        let mut k = u32::from_le_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = &data[chunks * 4..];
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
    }
}
