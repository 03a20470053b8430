//! What a `WINDOW` clause means for the query, applied to the parsed AST before planning: the
//! window bounds become grouping columns and output columns, as in ksqlDB, where a windowed
//! table's key is (group key, window).
//!
//! `WINDOWSTART` / `WINDOWEND` are columns of the windowed (driving) relation: the runtime's
//! window assigner adds them to every event before the aggregation, so the planner sees them
//! there too.

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    WildcardAdditionalOptions,
};

use super::dialect::{WINDOWEND, WINDOWSTART};

fn select_mut(stmt: &mut Statement) -> Option<&mut Select> {
    match stmt {
        Statement::Query(q) => match q.body.as_mut() {
            SetExpr::Select(s) => Some(s.as_mut()),
            _ => None,
        },
        _ => None,
    }
}

pub fn top_select(stmt: &Statement) -> Option<&Select> {
    match stmt {
        Statement::Query(q) => query_select(q),
        _ => None,
    }
}

fn query_select(q: &Query) -> Option<&Select> {
    match q.body.as_ref() {
        SetExpr::Select(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// The query's clauses apart, for finding every problem when planning it stops at the first:
/// the query without its WHERE, and `SELECT *` with only the WHERE (empty for a query without
/// WHERE).
pub fn clauses_apart(stmt: &Statement) -> Vec<Statement> {
    let Some(select) = top_select(stmt) else { return Vec::new() };
    if select.selection.is_none() {
        return Vec::new();
    }
    let mut without_where = stmt.clone();
    let mut only_where = stmt.clone();
    if let Some(s) = select_mut(&mut without_where) {
        s.selection = None;
    }
    if let Statement::Query(q) = &mut only_where {
        q.order_by = None;
        q.limit_clause = None;
    }
    if let Some(s) = select_mut(&mut only_where) {
        s.projection = vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())];
        s.group_by = GroupByExpr::Expressions(Vec::new(), Vec::new());
        s.having = None;
        s.distinct = None;
    }
    vec![without_where, only_where]
}

/// Adds the window bounds to GROUP BY, and to the output when the query does not name them.
/// `Err` when the query has no GROUP BY to window.
pub fn apply_window(stmt: &mut Statement) -> Result<(), &'static str> {
    let Some(select) = select_mut(stmt) else {
        return Err("a windowed aggregation must be a single SELECT");
    };
    let window_cols = [WINDOWSTART, WINDOWEND];
    match &mut select.group_by {
        GroupByExpr::Expressions(exprs, _) if !exprs.is_empty() => {
            for c in window_cols {
                let present = exprs.iter().any(|e| matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(c)));
                if !present {
                    exprs.push(Expr::Identifier(Ident::new(c)));
                }
            }
        }
        _ => return Err("a WINDOW clause needs a GROUP BY"),
    }
    for c in window_cols {
        let named = select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.value.eq_ignore_ascii_case(c),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().is_some_and(|i| i.value.eq_ignore_ascii_case(c))
            }
            SelectItem::ExprWithAlias { alias, .. } => alias.value.eq_ignore_ascii_case(c),
            _ => false,
        });
        if !named {
            select.projection.push(SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(c))));
        }
    }
    Ok(())
}

/// The normalized name parts (`["soe", "orders"]`) of the first relation in FROM: the stream
/// a window applies to.
pub fn driving_relation(stmt: &Statement) -> Option<Vec<String>> {
    let select = top_select(stmt)?;
    match &select.from.first()?.relation {
        TableFactor::Table { name, .. } => Some(normalize_object_name(name)),
        _ => None,
    }
}

/// Name parts as DataFusion resolves them: unquoted identifiers lowercased.
pub fn normalize_object_name(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => normalize_ident(i),
            other => other.to_string(),
        })
        .collect()
}

pub fn normalize_ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};

    fn parse(sql: &str) -> Statement {
        let mut p = DFParserBuilder::new(sql).build().unwrap();
        match p.parse_statements().unwrap().pop_front().unwrap() {
            DFStatement::Statement(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn window_bounds_become_group_and_output_columns() {
        let mut s = parse("SELECT a, COUNT(*) AS n FROM soe.orders o GROUP BY a");
        apply_window(&mut s).unwrap();
        assert_eq!(
            s.to_string(),
            "SELECT a, COUNT(*) AS n, windowstart, windowend FROM soe.orders o GROUP BY a, windowstart, windowend"
        );
        assert_eq!(driving_relation(&s), Some(vec!["soe".to_string(), "orders".to_string()]));
    }

    #[test]
    fn named_bounds_are_not_repeated() {
        let mut s = parse("SELECT WINDOWSTART, a FROM t GROUP BY a");
        apply_window(&mut s).unwrap();
        assert_eq!(s.to_string(), "SELECT WINDOWSTART, a, windowend FROM t GROUP BY a, windowstart, windowend");
    }

    #[test]
    fn a_window_needs_group_by() {
        let mut s = parse("SELECT COUNT(*) FROM t");
        assert_eq!(apply_window(&mut s), Err("a WINDOW clause needs a GROUP BY"));
    }
}
