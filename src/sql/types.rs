//! SQL type names as users write them in YAML (ksqlDB / Flink habits) ↔ Arrow types.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// Parses `INT`, `BIGINT`, `DOUBLE`, `DECIMAL(10,2)`, `STRING`, `ARRAY<INT>`,
/// `STRUCT<a INT, b STRING>`, ... Case-insensitive.
pub fn parse_sql_type(text: &str) -> Result<DataType, String> {
    let mut p = TypeParser { s: text.trim(), i: 0 };
    let t = p.parse()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected `{}` after the type", &p.s[p.i..]));
    }
    Ok(t)
}

struct TypeParser<'a> {
    s: &'a str,
    i: usize,
}

impl TypeParser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.i..].starts_with(char::is_whitespace) {
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn word(&mut self) -> String {
        self.skip_ws();
        let rest = &self.s[self.i..];
        let n = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.i += n;
        rest[..n].to_string()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.s[self.i..].starts_with(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{c}` in type `{}`", self.s))
        }
    }

    fn number(&mut self) -> Result<u32, String> {
        let w = self.word();
        w.parse().map_err(|_| format!("expected a number in type `{}`, found `{w}`", self.s))
    }

    fn parse(&mut self) -> Result<DataType, String> {
        let name = self.word().to_uppercase();
        Ok(match name.as_str() {
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" => DataType::Int8,
            "SMALLINT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" | "LONG" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => {
                // Accept `DOUBLE PRECISION`.
                let save = self.i;
                if self.word().to_uppercase() != "PRECISION" {
                    self.i = save;
                }
                DataType::Float64
            }
            "DECIMAL" | "NUMERIC" => {
                let (mut precision, mut scale) = (38, 0);
                if self.eat('(') {
                    precision = self.number()?;
                    if self.eat(',') {
                        scale = self.number()?;
                    }
                    self.expect(')')?;
                }
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(format!(
                        "DECIMAL({precision},{scale}) is out of range (precision 1..=38, scale ≤ precision)"
                    ));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "STRING" | "VARCHAR" | "TEXT" | "CHAR" => {
                if self.eat('(') {
                    self.number()?;
                    self.expect(')')?;
                }
                DataType::Utf8
            }
            "BYTES" | "BINARY" | "VARBINARY" => DataType::Binary,
            "TIMESTAMP" => DataType::Timestamp(TimeUnit::Millisecond, None),
            "DATE" => DataType::Date32,
            "ARRAY" => {
                self.expect('<')?;
                let inner = self.parse()?;
                self.expect('>')?;
                DataType::List(Arc::new(Field::new("item", inner, true)))
            }
            "STRUCT" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                loop {
                    let fname = self.word();
                    if fname.is_empty() {
                        return Err(format!("expected a field name in type `{}`", self.s));
                    }
                    let ftype = self.parse()?;
                    fields.push(Field::new(fname, ftype, true));
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect('>')?;
                DataType::Struct(Fields::from(fields))
            }
            "" => return Err("empty type".to_string()),
            other => return Err(format!("unknown type `{other}`")),
        })
    }
}

/// The SQL name of an Arrow type, the inverse of [`parse_sql_type`] where one exists.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Timestamp(_, _) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("ARRAY<{}>", sql_type_name(f.data_type())),
        DataType::Struct(fields) => {
            let inner: Vec<String> =
                fields.iter().map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type()))).collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        DataType::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Whether two types are the same as far as a contract is concerned (string and binary
/// encodings that DataFusion may pick internally count as one).
pub fn same_sql_type(a: &DataType, b: &DataType) -> bool {
    sql_type_name(a) == sql_type_name(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_types() {
        for (input, printed) in [
            ("int", "INT"),
            ("BIGINT", "BIGINT"),
            ("double precision", "DOUBLE"),
            ("Decimal(10, 2)", "DECIMAL(10,2)"),
            ("varchar(20)", "STRING"),
            ("ARRAY<STRING>", "ARRAY<STRING>"),
            ("STRUCT<a INT, b ARRAY<DOUBLE>>", "STRUCT<a INT, b ARRAY<DOUBLE>>"),
            ("timestamp", "TIMESTAMP"),
        ] {
            assert_eq!(sql_type_name(&parse_sql_type(input).unwrap()), printed, "{input}");
        }
    }

    #[test]
    fn rejects_bad_types() {
        assert_eq!(parse_sql_type("INTEGR").unwrap_err(), "unknown type `INTEGR`");
        assert_eq!(parse_sql_type("ARRAY<INT").unwrap_err(), "expected `>` in type `ARRAY<INT`");
        assert_eq!(parse_sql_type("INT INT").unwrap_err(), "unexpected `INT` after the type");
        assert!(parse_sql_type("DECIMAL(40,2)").is_err());
    }
}
