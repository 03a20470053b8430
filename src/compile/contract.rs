//! Enforced model contracts: the output columns against the declared ones.

use datafusion::arrow::datatypes::Schema;

use super::Compiler;
use crate::diagnostics::suggest;
use crate::sql::types;

impl Compiler<'_> {
    /// Output columns against an enforced contract; every mismatch reported at its YAML line.
    pub(super) fn check_contract(&mut self, name: &str, p: &crate::project::ModelPropsDecl, schema: &Schema) -> bool {
        let enforced = p.props.contract.as_ref().is_some_and(|c| c.enforced);
        if !enforced {
            return true;
        }
        let o = &p.origin;
        let mut ok = true;
        let declared: Vec<&str> = p.props.columns.iter().map(|c| c.name.as_str()).collect();
        for (i, col) in p.props.columns.iter().enumerate() {
            let Some(field) = schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(&col.name)) else {
                let mut d = o.error(
                    "contract",
                    &format!("columns/{i}/name"),
                    format!("contract of `{name}`: column `{}` is not in the model's output", col.name),
                );
                let outs: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                if let Some(s) = suggest(&col.name, outs.iter().copied()) {
                    d = d.with_help(format!("the output has `{s}`"));
                }
                self.diags.push(d);
                ok = false;
                continue;
            };
            let Some(t) = &col.data_type else {
                self.diags.push(o.error(
                    "contract",
                    &format!("columns/{i}"),
                    format!("contract of `{name}`: column `{}` needs a `type`", col.name),
                ));
                ok = false;
                continue;
            };
            match types::parse_sql_type(t) {
                Err(e) => {
                    self.diags.push(o.error(
                        "contract",
                        &format!("columns/{i}/type"),
                        format!("contract of `{name}`: column `{}`: {e}", col.name),
                    ));
                    ok = false;
                }
                Ok(dt) if !types::same_sql_type(&dt, field.data_type()) => {
                    self.diags.push(
                        o.error(
                            "contract",
                            &format!("columns/{i}/type"),
                            format!(
                                "contract of `{name}`: column `{}` is declared {} but the query produces {}",
                                col.name,
                                types::sql_type_name(&dt),
                                types::sql_type_name(field.data_type())
                            ),
                        )
                        .with_help(format!(
                            "change the declared type, or CAST the column to {} in the SELECT",
                            types::sql_type_name(&dt)
                        )),
                    );
                    ok = false;
                }
                Ok(_) => {
                    if col.nullable == Some(false) && field.is_nullable() {
                        self.diags.push(o.error("contract", &format!("columns/{i}/nullable"), format!("contract of `{name}`: column `{}` is declared NOT NULL but the query may produce NULL", col.name)).with_help("wrap it in COALESCE(...) or filter NULLs out"));
                        ok = false;
                    }
                }
            }
        }
        for f in schema.fields() {
            if !declared.iter().any(|d| d.eq_ignore_ascii_case(f.name())) {
                self.diags.push(
                    o.error(
                        "contract",
                        "columns",
                        format!(
                            "contract of `{name}`: the output column `{}` ({}) is not declared",
                            f.name(),
                            types::sql_type_name(f.data_type())
                        ),
                    )
                    .with_help("declare it under `columns:` or remove it from the SELECT"),
                );
                ok = false;
            }
        }
        ok
    }
}
