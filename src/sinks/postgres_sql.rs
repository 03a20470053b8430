//! The SQL the PostgreSQL sink sends: quoted names, the tables it creates, the statements that
//! write and delete a batch (its rows as one JSON array expanded by `jsonb_to_recordset`).

use datafusion::arrow::datatypes::DataType;

/// The table holding, per sink and partition, the offset after the last row written.
pub const OFFSETS_TABLE: &str = "streamctl_sink_offsets";
/// The table holding the tables a routed sink has written (a tombstone deletes its key in each).
pub const ROUTES_TABLE: &str = "streamctl_sink_routes";

/// `name` as a quoted SQL identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `table` setting (`name` or `schema.name`, folded to lower case like unquoted SQL names)
/// as a quoted name, and the offsets table beside it (same schema).
pub(super) fn table_names(table: &str) -> (String, String) {
    let quoted = table.split('.').map(|p| ident(&p.to_lowercase())).collect::<Vec<_>>().join(".");
    (quoted, beside(table, OFFSETS_TABLE))
}

/// A bookkeeping table in the schema of a sink's `table` setting, quoted.
pub(super) fn beside(table_setting: &str, name: &str) -> String {
    match table_setting.rsplit_once('.') {
        Some((schema, _)) => format!("{}.{}", ident(&schema.to_lowercase()), ident(name)),
        None => ident(name),
    }
}

/// The PostgreSQL type a model column gets in a table the sink creates.
pub fn pg_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => format!("numeric({p},{s})"),
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..) => "jsonb".into(),
        _ => "text".into(),
    }
}

/// The table a routed name goes to (`schema.name`, like a `table` setting), in the schema of the
/// sink's `table` setting: the name folded to lower case, characters an unquoted name cannot hold
/// as `_`, at most 63 bytes (the server's limit). `None` for a name with nothing left.
pub(super) fn routed_table(table_setting: &str, routed: &str) -> Option<String> {
    let mut name: String =
        routed.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.trim_matches('_').is_empty() {
        return None;
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name.truncate(63);
    Some(match table_setting.rsplit_once('.') {
        Some((schema, _)) => format!("{}.{name}", schema.to_lowercase()),
        None => name,
    })
}

/// `CREATE TABLE IF NOT EXISTS` with the model's columns; `key` becomes the primary key.
pub(super) fn create_table_sql(table: &str, columns: &[(String, String)], key: &[String]) -> String {
    let mut defs: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}{}", ident(n), if key.contains(n) { " NOT NULL" } else { "" }))
        .collect();
    if !key.is_empty() {
        defs.push(format!("PRIMARY KEY ({})", key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", defs.join(", "))
}

pub(super) fn offsets_table_sql(offsets: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (sink text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \
         next_offset bigint NOT NULL, PRIMARY KEY (sink, topic, \"partition\"))"
    )
}

/// The rows of parameter `$1` (a JSON array of objects) as a relation `r` with these columns.
pub(super) fn rows_of_param(columns: &[(String, String)]) -> String {
    let defs: Vec<String> = columns.iter().map(|(n, t)| format!("{} {t}", ident(n))).collect();
    format!("jsonb_to_recordset($1::text::jsonb) AS r({})", defs.join(", "))
}

/// The statement that writes a batch: an upsert by `key`, or (no key) an append.
pub(super) fn write_sql(table: &str, columns: &[(String, String)], key: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|(n, _)| ident(n)).collect();
    let from_r: Vec<String> = names.iter().map(|n| format!("r.{n}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {}",
        names.join(", "),
        from_r.join(", "),
        rows_of_param(columns)
    );
    if key.is_empty() {
        return insert;
    }
    let keys: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let sets: Vec<String> = columns
        .iter()
        .filter(|(n, _)| !key.contains(n))
        .map(|(n, _)| format!("{0} = EXCLUDED.{0}", ident(n)))
        .collect();
    let action = if sets.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", sets.join(", ")) };
    format!("{insert} ON CONFLICT ({}) DO {action}", keys.join(", "))
}

/// The statement that deletes the rows whose keys are in `$1`.
pub(super) fn delete_sql(table: &str, key_columns: &[(String, String)]) -> String {
    let matches: Vec<String> = key_columns.iter().map(|(n, _)| format!("t.{0} = r.{0}", ident(n))).collect();
    format!("DELETE FROM {table} AS t USING {} WHERE {}", rows_of_param(key_columns), matches.join(" AND "))
}

pub(super) fn routes_table_sql(routes: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {routes} (sink text NOT NULL, table_name text NOT NULL, PRIMARY KEY (sink, \
         table_name))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_names_and_upsert_by_the_key() {
        let (table, offsets) = table_names("Sales.Prime_Logons");
        assert_eq!(table, "\"sales\".\"prime_logons\"");
        assert_eq!(offsets, "\"sales\".\"streamctl_sink_offsets\"");
        assert_eq!(table_names("t").1, "\"streamctl_sink_offsets\"");
        let cols = vec![("id".to_string(), "bigint".to_string()), ("n".to_string(), "text".to_string())];
        let key = vec!["id".to_string()];
        assert_eq!(
            write_sql("\"t\"", &cols, &key),
            "INSERT INTO \"t\" (\"id\", \"n\") SELECT r.\"id\", r.\"n\" FROM jsonb_to_recordset($1::text::jsonb) AS \
             r(\"id\" bigint, \"n\" text) ON CONFLICT (\"id\") DO UPDATE SET \"n\" = EXCLUDED.\"n\""
        );
        assert!(write_sql("\"t\"", &cols[..1], &key).ends_with("ON CONFLICT (\"id\") DO NOTHING"));
        assert!(!write_sql("\"t\"", &cols, &[]).contains("ON CONFLICT"));
        assert_eq!(
            delete_sql("\"t\"", &cols[..1]),
            "DELETE FROM \"t\" AS t USING jsonb_to_recordset($1::text::jsonb) AS r(\"id\" bigint) WHERE t.\"id\" = r.\"id\""
        );
        assert_eq!(
            create_table_sql("\"t\"", &cols, &key),
            "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" bigint NOT NULL, \"n\" text, PRIMARY KEY (\"id\"))"
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn column_types_map_to_postgres_types() {
        use datafusion::arrow::datatypes::TimeUnit;
        assert_eq!(pg_type(&DataType::Int64), "bigint");
        assert_eq!(pg_type(&DataType::Float64), "double precision");
        assert_eq!(pg_type(&DataType::Utf8), "text");
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), "numeric(10,2)");
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, None)), "timestamp");
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))), "timestamptz");
    }

    #[test]
    fn routed_names_become_table_names_in_the_sinks_schema() {
        assert_eq!(routed_table("Sales.orders", "Orders-Direct").as_deref(), Some("sales.orders_direct"));
        assert_eq!(routed_table("orders", "2024 q1").as_deref(), Some("_2024_q1"));
        assert_eq!(routed_table("orders", "a.b").as_deref(), Some("a_b"));
        assert_eq!(routed_table("orders", "--"), None);
        assert_eq!(routed_table("orders", &"x".repeat(80)).map(|t| t.len()), Some(63));
        assert_eq!(beside("sales.orders", ROUTES_TABLE), "\"sales\".\"streamctl_sink_routes\"");
    }
}
