//! The transforms of a sink (`connector.transforms`) checked against the model's columns, each
//! problem at its place in the file; and what they make of the columns (names and types), which
//! the sinks use to create tables and write Parquet.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use super::CompiledProject;
use crate::diagnostics::Diagnostic;
use crate::project::config::{FileFormat, RelationKind, SinkConnector, SinkTransform, TimestampKind, ValueFormat};
use crate::project::SinkDecl;
use crate::sql::types::{parse_sql_type, sql_type_name};

/// The SQL types `cast` converts to (the JSON a sink writes can hold them).
pub fn cast_target(text: &str) -> Result<DataType, String> {
    let t = parse_sql_type(text)?;
    match t {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Utf8 => Ok(t),
        _ => Err(format!(
            "cast converts to BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s) or STRING, not {}",
            text.trim()
        )),
    }
}

/// Why a strftime format cannot be used, if it cannot.
pub fn format_problem(format: &str) -> Option<String> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() {
        return Some("the format is empty".into());
    }
    StrftimeItems::new(format)
        .any(|i| matches!(i, Item::Error))
        .then(|| format!("`{format}` is not a strftime format (e.g. `%Y-%m-%d %H:%M:%S`)"))
}

/// The `{{name}}` placeholders of a route template, in order.
pub fn route_fields(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        out.push(rest[i + 2..i + j].trim().to_string());
        rest = &rest[i + j + 2..];
    }
    out
}

/// The type `timestamp_convert` gives its field.
pub fn timestamp_type(to: TimestampKind) -> DataType {
    match to {
        TimestampKind::String => DataType::Utf8,
        TimestampKind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        TimestampKind::UnixMs => DataType::Int64,
    }
}

/// The columns after one transform (dropped ones left out, renamed ones under their new name,
/// cast and converted ones with their new type).
fn step(t: &SinkTransform, columns: &mut Vec<(String, DataType)>) {
    match t {
        SinkTransform::DropField { fields } => columns.retain(|(c, _)| !fields.contains(c)),
        SinkTransform::RenameField { renames } => {
            for (c, _) in columns.iter_mut() {
                if let Some(to) = renames.get(c) {
                    c.clone_from(to);
                }
            }
        }
        SinkTransform::Cast { fields } => {
            for (c, ty) in columns.iter_mut() {
                if let Some(t) = fields.get(c).and_then(|to| cast_target(to).ok()) {
                    *ty = t;
                }
            }
        }
        SinkTransform::TimestampConvert { field, to, .. } => {
            for (c, ty) in columns.iter_mut() {
                if c == field {
                    *ty = timestamp_type(*to);
                }
            }
        }
        SinkTransform::MaskField { .. }
        | SinkTransform::SetKey { .. }
        | SinkTransform::InsertHeader { .. }
        | SinkTransform::Route { .. } => {}
    }
}

/// The row's columns after all the transforms, with their types.
pub fn columns_after(transforms: &[SinkTransform], mut columns: Vec<(String, DataType)>) -> Vec<(String, DataType)> {
    for t in transforms {
        step(t, &mut columns);
    }
    columns
}

/// The name a column has after the transforms, `None` when one drops it.
pub fn column_after(transforms: &[SinkTransform], column: &str) -> Option<String> {
    columns_after(transforms, vec![(column.to_string(), DataType::Null)]).pop().map(|(n, _)| n)
}

/// What a timestamp field holds, for `timestamp_convert`.
#[derive(PartialEq)]
enum TimeInput {
    Text,
    Timestamp,
    EpochMs,
}

/// One diagnostic per field a transform names that the row does not have at that point (the
/// model's columns as the transforms before leave them), per rename onto a column the row has,
/// per mask or drop of a table model's key column (and mask of a time column of a Parquet sink), per cast to a type it cannot make, per
/// `timestamp_convert` of a field that holds no time or with a bad or missing format, per
/// `set_key` or `insert_header` on a sink that writes no Kafka records, per `route` on an
/// opensearch sink of a table model or without a `{{field}}`; and per `key:` field of a kafka sink not in its rows.
pub(crate) fn check(cp: &CompiledProject, s: &SinkDecl) -> Vec<Diagnostic> {
    let transforms = s.sink.connector.transforms();
    let Some(model) = cp.models.get(&s.sink.from) else { return Vec::new() };
    let name = &s.sink.name;
    let kind = match &s.sink.connector {
        SinkConnector::Kafka { .. } => "kafka",
        SinkConnector::File { .. } => "file",
        SinkConnector::Postgres { .. } => "postgres",
        SinkConnector::Opensearch { .. } => "opensearch",
    };
    let parquet = matches!(s.sink.connector, SinkConnector::File { format: FileFormat::Parquet, .. });
    let escape = |n: &str| n.replace('~', "~0").replace('/', "~1");
    let mut out = Vec::new();
    let err = |pointer: &str, key: bool, len: usize, message: String, help: String| {
        s.origin.doc.error_at("sink-config", pointer, key, len.max(1), message).with_help(help)
    };
    // The row's columns at each step, and which of them are the model's key.
    let mut columns: Vec<(String, DataType)> =
        model.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    let mut key: Vec<String> = if model.kind == RelationKind::Table { model.key.clone() } else { Vec::new() };
    let has = |columns: &[(String, DataType)], f: &str| columns.iter().any(|(c, _)| c == f);
    let shown = |columns: &[(String, DataType)]| {
        format!("the row has: {}", columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "))
    };
    let not_here =
        |what: &str, f: &str| format!("sink `{name}`: {what} names `{f}`, not a column of model `{}` here", model.name);
    for (i, t) in transforms.iter().enumerate() {
        let base = format!("{}/connector/transforms/{i}", s.origin.pointer);
        match t {
            SinkTransform::MaskField { fields, .. } | SinkTransform::DropField { fields } => {
                let what = if matches!(t, SinkTransform::MaskField { .. }) { "mask_field" } else { "drop_field" };
                for (j, f) in fields.iter().enumerate() {
                    let pointer = format!("{base}/fields/{j}");
                    if !has(&columns, f) {
                        out.push(err(&pointer, false, f.chars().count(), not_here(what, f), shown(&columns)));
                    } else if key.contains(f) {
                        out.push(err(
                            &pointer,
                            false,
                            f.chars().count(),
                            format!("sink `{name}`: {what} of `{f}`, a key column of table model `{}`", model.name),
                            "the key identifies the rows (upserts, deletes): leave it unmasked, or rename it".into(),
                        ));
                    } else if let Some(ty) = columns.iter().find(|(c, _)| c == f).map(|(_, t)| t).filter(|t| {
                        parquet && what == "mask_field" && matches!(t, DataType::Timestamp(..) | DataType::Date32)
                    }) {
                        // The mask is text ("****"), which a Parquet column of a time type cannot hold.
                        out.push(err(
                            &pointer,
                            false,
                            f.chars().count(),
                            format!(
                                "sink `{name}`: mask_field of `{f}`, a {} column: its Parquet files cannot hold the \
                                 mask text there",
                                sql_type_name(ty)
                            ),
                            format!("cast it first (`type: cast, fields: {{{f}: STRING}}`), or drop it"),
                        ));
                    }
                }
            }
            SinkTransform::RenameField { renames } => {
                for (from, to) in renames {
                    let pointer = format!("{base}/renames/{}", escape(from));
                    if !has(&columns, from) {
                        out.push(err(
                            &pointer,
                            true,
                            from.chars().count(),
                            format!(
                                "sink `{name}`: rename_field renames `{from}`, not a column of model `{}` here",
                                model.name
                            ),
                            shown(&columns),
                        ));
                    } else if has(&columns, to) && !renames.contains_key(to) {
                        out.push(err(
                            &pointer,
                            false,
                            to.chars().count(),
                            format!("sink `{name}`: rename_field renames `{from}` to `{to}`, a column the row has"),
                            "drop or rename that column first, or pick another name".into(),
                        ));
                    }
                }
                key = key.iter().map(|c| renames.get(c).cloned().unwrap_or_else(|| c.clone())).collect();
            }
            SinkTransform::Cast { fields } => {
                for (f, to) in fields {
                    let pointer = format!("{base}/fields/{}", escape(f));
                    if !has(&columns, f) {
                        out.push(err(&pointer, true, f.chars().count(), not_here("cast", f), shown(&columns)));
                    } else if let Err(e) = cast_target(to) {
                        out.push(err(
                            &pointer,
                            false,
                            to.chars().count(),
                            format!("sink `{name}`: cast of `{f}`: {e}"),
                            "e.g. `BIGINT`, `DOUBLE`, `DECIMAL(10,2)`, `STRING`".into(),
                        ));
                    }
                }
            }
            SinkTransform::TimestampConvert { field, to, format } => {
                let input = columns.iter().find(|(c, _)| c == field).map(|(_, t)| match t {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(TimeInput::Text),
                    DataType::Timestamp(..) => Some(TimeInput::Timestamp),
                    DataType::Int64 | DataType::Int32 | DataType::UInt32 | DataType::UInt64 => Some(TimeInput::EpochMs),
                    _ => None,
                });
                let at_field = |message: String, help: &str| {
                    err(&format!("{base}/field"), false, field.chars().count(), message, help.to_string())
                };
                let format_help = "how the text is written, in strftime's syntax: e.g. `format: \"%Y-%m-%d %H:%M:%S\"`";
                match input {
                    None => out.push(at_field(not_here("timestamp_convert", field), &shown(&columns))),
                    Some(None) => {
                        let ty =
                            columns.iter().find(|(c, _)| c == field).map(|(_, t)| sql_type_name(t)).unwrap_or_default();
                        out.push(at_field(
                            format!("sink `{name}`: timestamp_convert of `{field}`, a {ty}: it reads text, timestamps and epoch milliseconds"),
                            "cast it first, or pick a time field",
                        ));
                    }
                    Some(Some(TimeInput::Text)) if *to == TimestampKind::String => out.push(at_field(
                        format!("sink `{name}`: timestamp_convert of `{field}` to string: it is text already"),
                        "convert it `to: timestamp` or `to: unix_ms`",
                    )),
                    Some(Some(TimeInput::Text)) if format.is_none() => out.push(at_field(
                        format!("sink `{name}`: timestamp_convert of the text field `{field}` needs a `format`"),
                        format_help,
                    )),
                    Some(Some(_))
                        if format.is_some() && *to != TimestampKind::String && input != Some(Some(TimeInput::Text)) =>
                    {
                        let f = format.as_deref().unwrap_or_default();
                        out.push(err(
                            &format!("{base}/format"),
                            false,
                            f.chars().count(),
                            format!(
                                "sink `{name}`: `format` reads text or writes `to: string`, and `{field}` is not text"
                            ),
                            "remove `format`".into(),
                        ));
                    }
                    Some(Some(_)) => {}
                }
                if let Some(p) = format.as_deref().and_then(format_problem) {
                    let f = format.as_deref().unwrap_or_default();
                    out.push(err(
                        &format!("{base}/format"),
                        false,
                        f.chars().count(),
                        format!("sink `{name}`: {p}"),
                        format_help.into(),
                    ));
                }
            }
            SinkTransform::SetKey { fields } => {
                if kind != "kafka" {
                    out.push(err(
                        &format!("{base}/type"),
                        false,
                        "set_key".len(),
                        format!(
                            "sink `{name}`: set_key sets a Kafka record's key, and a {kind} sink writes no records"
                        ),
                        "use it on a kafka sink".into(),
                    ));
                }
                for (j, f) in fields.iter().enumerate() {
                    if !has(&columns, f) {
                        out.push(err(
                            &format!("{base}/fields/{j}"),
                            false,
                            f.chars().count(),
                            not_here("set_key", f),
                            shown(&columns),
                        ));
                    }
                }
            }
            SinkTransform::InsertHeader { header, value, value_from } => {
                if kind != "kafka" {
                    out.push(err(
                        &format!("{base}/type"),
                        false,
                        "insert_header".len(),
                        format!("sink `{name}`: insert_header adds a Kafka record header, and a {kind} sink writes no records"),
                        "use it on a kafka sink".into(),
                    ));
                } else if value.is_some() == value_from.is_some() {
                    out.push(err(
                        &format!("{base}/header"),
                        false,
                        header.chars().count(),
                        format!("sink `{name}`: insert_header `{header}` needs either `value` or `value_from`"),
                        "`value: some text`, or `value_from: project`, `model` or `sink`".into(),
                    ));
                }
            }
            SinkTransform::Route { to } => {
                let pointer = format!("{base}/to");
                let fields = route_fields(to);
                if kind == "opensearch" && model.kind == RelationKind::Table {
                    out.push(err(
                        &format!("{base}/type"),
                        false,
                        "route".len(),
                        format!(
                            "sink `{name}`: route on an opensearch sink of table model `{}`: a deleted key would not \
                             say which index holds its document",
                            model.name
                        ),
                        "route the rows of a stream model, or give each index a sink of its own".into(),
                    ));
                } else if fields.is_empty() {
                    out.push(err(
                        &pointer,
                        false,
                        to.chars().count(),
                        format!("sink `{name}`: route `{to}` names no field"),
                        "put the field whose value picks the destination in braces: `orders-{{order_mode}}`".into(),
                    ));
                }
                for f in fields.iter().filter(|f| !has(&columns, f)) {
                    out.push(err(&pointer, false, to.chars().count(), not_here("route", f), shown(&columns)));
                }
            }
        }
        step(t, &mut columns);
    }
    if let SinkConnector::Kafka { key: Some(fields), .. } = &s.sink.connector {
        for (j, f) in fields.iter().enumerate().filter(|(_, f)| !has(&columns, f)) {
            let pointer = format!("{}/connector/key/{j}", s.origin.pointer);
            out.push(err(&pointer, false, f.chars().count(), not_here("key", f), shown(&columns)));
        }
    }
    if let SinkConnector::Kafka { format, .. } = &s.sink.connector {
        if *format != ValueFormat::Json {
            let pointer = format!("{}/connector/format", s.origin.pointer);
            out.push(err(
                &pointer,
                false,
                4,
                format!("kafka sink `{name}`: streamctl writes kafka sinks as JSON"),
                "remove `format`, or write `format: json`".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_formats_and_routes() {
        assert!(cast_target("ARRAY<INT>").is_err());
        assert_eq!(cast_target("decimal(10, 2)"), Ok(DataType::Decimal128(10, 2)));
        assert_eq!(
            format_problem("%Y-%m-%d %Q"),
            Some("`%Y-%m-%d %Q` is not a strftime format (e.g. `%Y-%m-%d %H:%M:%S`)".into())
        );
        assert_eq!(format_problem("%Y-%m-%d %H:%M:%S"), None);
        assert_eq!(route_fields("orders-{{mode}}-{{ status }}"), ["mode", "status"]);
        assert!(route_fields("orders").is_empty());
    }
}
