use super::*;

const MODES: [Compatibility; 7] = [
    Compatibility::None,
    Compatibility::Backward,
    Compatibility::BackwardTransitive,
    Compatibility::Forward,
    Compatibility::ForwardTransitive,
    Compatibility::Full,
    Compatibility::FullTransitive,
];

/// Whether `mode` accepts a change that is (backward_ok, forward_ok).
fn expected(mode: Compatibility, backward_ok: bool, forward_ok: bool) -> bool {
    match mode {
        Compatibility::None => true,
        Compatibility::Backward | Compatibility::BackwardTransitive => backward_ok,
        Compatibility::Forward | Compatibility::ForwardTransitive => forward_ok,
        Compatibility::Full | Compatibility::FullTransitive => backward_ok && forward_ok,
    }
}

fn run(mode: Compatibility, t: SchemaType, new: &str, previous: &[&str]) -> Vec<Incompatibility> {
    let versions: Vec<(i32, SchemaType, &str)> =
        previous.iter().enumerate().map(|(i, s)| (i as i32 + 1, t, *s)).collect();
    match check_compatibility(mode, t, new, &versions) {
        Ok(found) => found,
        Err(e) => panic!("unexpected Err for {mode}: {e}\nnew: {new}"),
    }
}

fn messages(found: &[Incompatibility]) -> Vec<&str> {
    found.iter().map(|i| i.message.as_str()).collect()
}

/// (name, old, new, backward_ok, forward_ok), checked under every mode.
fn check_table(t: SchemaType, table: &[(&str, String, String, bool, bool)]) {
    for (name, old, new, backward_ok, forward_ok) in table {
        for mode in MODES {
            let found = run(mode, t, new, &[old.as_str()]);
            let want = expected(mode, *backward_ok, *forward_ok);
            assert_eq!(
                found.is_empty(),
                want,
                "{t:?} case '{name}' under {mode}: expected {}, got {:?}",
                if want { "compatible" } else { "incompatible" },
                messages(&found)
            );
            for i in &found {
                assert_eq!(i.version, 1, "case '{name}'");
                let direction_allowed = match i.direction {
                    Direction::Backward => !backward_ok,
                    Direction::Forward => !forward_ok,
                };
                assert!(direction_allowed, "case '{name}' under {mode}: unexpected {i}");
                assert!(!i.message.is_empty());
            }
        }
    }
}

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
}

const ID: &str = r#"{"name":"id","type":"long"}"#;

fn avro_table() -> Vec<(&'static str, String, String, bool, bool)> {
    let status = |symbols: &str, default: &str| {
        format!(r#"{ID},{{"name":"STATUS","type":{{"type":"enum","name":"Status","symbols":[{symbols}]{default}}}}}"#)
    };
    let address = |extra: &str| {
        format!(
            r#"{ID},{{"name":"address","type":{{"type":"record","name":"Address","fields":[{{"name":"street","type":"string"}},{{"name":"zip","type":"string"}}{extra}]}}}}"#
        )
    };
    vec![
        ("identical", rec(ID), rec(ID), true, true),
        ("add field with default", rec(ID), rec(&format!(r#"{ID},{{"name":"note","type":"string","default":""}}"#)), true, true),
        ("add field without default", rec(ID), rec(&format!(r#"{ID},{{"name":"MAX_ORDER_TOTAL","type":"double"}}"#)), false, true),
        ("remove field with default", rec(&format!(r#"{ID},{{"name":"note","type":"string","default":""}}"#)), rec(ID), true, true),
        ("remove field without default", rec(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)), rec(ID), true, false),
        ("promote int to long", rec(r#"{"name":"qty","type":"int"}"#), rec(r#"{"name":"qty","type":"long"}"#), true, false),
        ("promote float to double", rec(r#"{"name":"x","type":"float"}"#), rec(r#"{"name":"x","type":"double"}"#), true, false),
        ("narrow double to int", rec(r#"{"name":"ORDER_TOTAL","type":"double"}"#), rec(r#"{"name":"ORDER_TOTAL","type":"int"}"#), false, true),
        ("string to int", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":"int"}"#), false, false),
        ("string to bytes", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":"bytes"}"#), true, true),
        ("make field nullable", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":["null","string"],"default":null}"#), true, false),
        ("make field non-nullable", rec(r#"{"name":"x","type":["null","string"],"default":null}"#), rec(r#"{"name":"x","type":"string"}"#), false, true),
        ("union gains a branch", rec(r#"{"name":"x","type":["null","int"]}"#), rec(r#"{"name":"x","type":["null","int","string"]}"#), true, false),
        ("union branch promoted", rec(r#"{"name":"x","type":["null","int"]}"#), rec(r#"{"name":"x","type":["null","long"]}"#), true, false),
        ("enum symbol added", rec(&status(r#""NEW","PAID""#, "")), rec(&status(r#""NEW","PAID","SHIPPED""#, "")), true, false),
        ("enum symbol removed", rec(&status(r#""NEW","PAID","SHIPPED""#, "")), rec(&status(r#""NEW","PAID""#, "")), false, true),
        ("enum symbol removed, reader default", rec(&status(r#""NEW","PAID","SHIPPED""#, "")), rec(&status(r#""NEW","PAID""#, r#","default":"NEW""#)), true, true),
        ("enum symbol added, both defaults", rec(&status(r#""NEW","PAID""#, r#","default":"NEW""#)), rec(&status(r#""NEW","PAID","SHIPPED""#, r#","default":"NEW""#)), true, true),
        ("nested field added without default", rec(&address("")), rec(&address(r#",{"name":"country","type":"string"}"#)), false, true),
        ("nested field added with default", rec(&address("")), rec(&address(r#",{"name":"country","type":"string","default":"NL"}"#)), true, true),
        ("nested type changed", rec(&address("")), rec(&address("").replace(r#"{"name":"zip","type":"string"}"#, r#"{"name":"zip","type":"int"}"#)), false, false),
        ("field renamed with alias", rec(r#"{"name":"amount","type":"double"}"#), rec(r#"{"name":"total","type":"double","aliases":["amount"]}"#), true, false),
        ("record renamed", rec(ID), rec(ID).replace(r#""name":"Order""#, r#""name":"Purchase""#), false, false),
        ("record renamed with alias", rec(ID), rec(ID).replace(r#""name":"Order""#, r#""name":"Purchase","aliases":["Order"]"#), true, false),
        ("namespace changed", rec(ID), rec(ID).replace(r#""namespace":"shop""#, r#""namespace":"store""#), true, true),
        ("array items promoted", rec(r#"{"name":"xs","type":{"type":"array","items":"int"}}"#), rec(r#"{"name":"xs","type":{"type":"array","items":"long"}}"#), true, false),
        ("map values changed", rec(r#"{"name":"m","type":{"type":"map","values":"string"}}"#), rec(r#"{"name":"m","type":{"type":"map","values":"int"}}"#), false, false),
        ("fixed size changed", rec(r#"{"name":"h","type":{"type":"fixed","name":"Hash","size":16}}"#), rec(r#"{"name":"h","type":{"type":"fixed","name":"Hash","size":8}}"#), false, false),
        ("logical type annotation", rec(r#"{"name":"ts","type":"long"}"#), rec(r#"{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}"#), true, true),
        ("recursive type unchanged", r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), true, true),
        ("recursive type, field widened", r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), true, false),
        ("named type reused by reference", rec(r#"{"name":"a","type":{"type":"enum","name":"E","symbols":["X","Y"]}},{"name":"b","type":"E"}"#), rec(r#"{"name":"a","type":{"type":"enum","name":"E","symbols":["X"]}},{"name":"b","type":"shop.E"}"#), false, true),
        ("primitive top level", r#""int""#.to_string(), r#""long""#.to_string(), true, false),
    ]
}

fn obj(props: &str, required: &str, additional: &str) -> String {
    format!(r#"{{"type":"object","properties":{{{props}}},"required":[{required}]{additional}}}"#)
}
const CLOSED: &str = r#","additionalProperties":false"#;
const A: &str = r#""a":{"type":"string"}"#;
const AB: &str = r#""a":{"type":"string"},"b":{"type":"string"}"#;

fn json_table() -> Vec<(&'static str, String, String, bool, bool)> {
    let field = |t: &str| obj(&format!(r#""x":{t}"#), "", CLOSED);
    vec![
        ("identical", obj(A, r#""a""#, ""), obj(A, r#""a""#, ""), true, true),
        ("open model: add optional property", obj(A, "", ""), obj(AB, "", ""), false, true),
        ("open model: add property with empty schema", obj(A, "", ""), obj(r#""a":{"type":"string"},"b":{}"#, "", ""), true, true),
        ("open model: remove property", obj(AB, "", ""), obj(A, "", ""), true, false),
        ("closed model: add optional property", obj(A, "", CLOSED), obj(AB, "", CLOSED), true, false),
        ("closed model: add required property", obj(A, "", CLOSED), obj(AB, r#""b""#, CLOSED), false, false),
        ("closed model: remove property", obj(AB, "", CLOSED), obj(A, "", CLOSED), false, true),
        ("required added", obj(AB, r#""a""#, CLOSED), obj(AB, r#""a","b""#, CLOSED), false, true),
        ("required added with default", obj(AB, r#""a""#, CLOSED), obj(r#""a":{"type":"string"},"b":{"type":"string","default":"x"}"#, r#""a","b""#, CLOSED), true, true),
        ("required removed", obj(AB, r#""a","b""#, CLOSED), obj(AB, r#""a""#, CLOSED), true, false),
        ("integer to number", field(r#"{"type":"integer"}"#), field(r#"{"type":"number"}"#), true, false),
        ("number to integer", field(r#"{"type":"number"}"#), field(r#"{"type":"integer"}"#), false, true),
        ("string to object", field(r#"{"type":"string"}"#), field(r#"{"type":"object"}"#), false, false),
        ("made nullable", field(r#"{"type":"string"}"#), field(r#"{"type":["null","string"]}"#), true, false),
        ("made non-nullable", field(r#"{"type":["null","string"]}"#), field(r#"{"type":"string"}"#), false, true),
        ("oneOf nullable to plain", field(r#"{"oneOf":[{"type":"null"},{"type":"string"}]}"#), field(r#"{"type":"string"}"#), false, true),
        ("type array to anyOf", field(r#"{"type":["null","string"]}"#), field(r#"{"anyOf":[{"type":"null"},{"type":"string"}]}"#), true, true),
        ("enum value added", field(r#"{"type":"string","enum":["A","B"]}"#), field(r#"{"type":"string","enum":["A","B","C"]}"#), true, false),
        ("enum value removed", field(r#"{"type":"string","enum":["A","B","C"]}"#), field(r#"{"type":"string","enum":["A","B"]}"#), false, true),
        ("open to closed", obj(A, "", ""), obj(A, "", CLOSED), false, true),
        ("closed to open", obj(A, "", CLOSED), obj(A, "", ""), true, false),
        ("partially open: added property covered", obj(A, "", r#","additionalProperties":{"type":"string"}"#), obj(AB, "", r#","additionalProperties":{"type":"string"}"#), true, true),
        ("partially open: added property not covered", obj(A, "", r#","additionalProperties":{"type":"string"}"#), obj(r#""a":{"type":"string"},"b":{"type":"integer"}"#, "", r#","additionalProperties":{"type":"string"}"#), false, false),
        ("nested closed object widened", field(r#"{"type":"object","properties":{"amount":{"type":"integer"}},"additionalProperties":false}"#), field(r#"{"type":"object","properties":{"amount":{"type":"number"}},"additionalProperties":false}"#), true, false),
        ("nested open object gains property", field(r#"{"type":"object","properties":{"amount":{"type":"integer"}}}"#), field(r#"{"type":"object","properties":{"amount":{"type":"integer"},"cur":{"type":"string"}}}"#), false, true),
        ("array items widened", field(r#"{"type":"array","items":{"type":"integer"}}"#), field(r#"{"type":"array","items":{"type":"number"}}"#), true, false),
        ("maxLength tightened", field(r#"{"type":"string","maxLength":10}"#), field(r#"{"type":"string","maxLength":5}"#), false, true),
        ("minimum added", field(r#"{"type":"integer"}"#), field(r#"{"type":"integer","minimum":0}"#), false, true),
        ("annotations changed", field(r#"{"type":"string","description":"old","title":"X"}"#), field(r#"{"type":"string","description":"new","format":"email"}"#), true, true),
        ("unsupported keyword added", field(r#"{"type":"string"}"#), field(r#"{"type":"string","not":{"const":""}}"#), false, true),
        ("$ref definition: optional property added to closed model",
            r##"{"type":"object","properties":{"addr":{"$ref":"#/definitions/Addr"}},"additionalProperties":false,"definitions":{"Addr":{"type":"object","properties":{"street":{"type":"string"}},"additionalProperties":false}}}"##.to_string(),
            r##"{"type":"object","properties":{"addr":{"$ref":"#/$defs/Addr"}},"additionalProperties":false,"$defs":{"Addr":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string"}},"additionalProperties":false}}}"##.to_string(),
            true, false),
        ("recursive $ref unchanged",
            r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
            r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
            true, true),
        ("recursive $ref, field widened",
            r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
            r##"{"type":"object","properties":{"v":{"type":"number"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
            true, false),
        ("anything to empty schema", field(r#"{"type":"string"}"#), obj(r#""x":{}"#, "", CLOSED), true, false),
    ]
}

#[test]
fn avro_pairs_under_every_mode() {
    check_table(SchemaType::Avro, &avro_table());
}

#[test]
fn json_pairs_under_every_mode() {
    check_table(SchemaType::Json, &json_table());
}

#[test]
fn avro_messages() {
    let backward = |old: String, new: String| {
        messages(&run(Compatibility::Backward, SchemaType::Avro, &new, &[&old]))
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let forward = |old: String, new: String| {
        messages(&run(Compatibility::Forward, SchemaType::Avro, &new, &[&old]))
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        backward(rec(ID), rec(&format!(r#"{ID},{{"name":"MAX_ORDER_TOTAL","type":"double"}}"#))),
        ["new required field MAX_ORDER_TOTAL has no default"]
    );
    assert_eq!(
        backward(rec(r#"{"name":"ORDER_TOTAL","type":"double"}"#), rec(r#"{"name":"ORDER_TOTAL","type":"int"}"#)),
        ["field ORDER_TOTAL changed type from double to int"]
    );
    assert_eq!(
        forward(rec(r#"{"name":"qty","type":"int"}"#), rec(r#"{"name":"qty","type":"long"}"#)),
        ["field qty changed type from int to long"]
    );
    let status = |symbols: &str| {
        rec(&format!(r#"{{"name":"STATUS","type":{{"type":"enum","name":"Status","symbols":[{symbols}]}}}}"#))
    };
    assert_eq!(backward(status(r#""NEW","SHIPPED""#), status(r#""NEW""#)), ["enum STATUS lost symbol SHIPPED"]);
    assert_eq!(
        forward(rec(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)), rec(ID)),
        ["field note was removed but the older schema has no default for it"]
    );
    assert_eq!(
        backward(
            rec(r#"{"name":"address","type":{"type":"record","name":"A","fields":[{"name":"zip","type":"string"}]}}"#),
            rec(
                r#"{"name":"address","type":{"type":"record","name":"A","fields":[{"name":"zip","type":"string"},{"name":"country","type":"string"}]}}"#
            )
        ),
        ["new required field address.country has no default"]
    );
    assert_eq!(
        backward(
            rec(r#"{"name":"x","type":["null","string"],"default":null}"#),
            rec(r#"{"name":"x","type":"string"}"#)
        ),
        ["field x changed type from [null, string] to string"]
    );
    assert_eq!(
        backward(
            rec(r#"{"name":"h","type":{"type":"fixed","name":"H","size":16}}"#),
            rec(r#"{"name":"h","type":{"type":"fixed","name":"H","size":8}}"#)
        ),
        ["fixed h changed size from 16 to 8"]
    );
}

#[test]
fn json_messages() {
    let check = |mode, old: String, new: String| {
        messages(&run(mode, SchemaType::Json, &new, &[&old])).into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let total = |amount: &str| {
        format!(
            r#"{{"type":"object","properties":{{"total":{{"type":"object","properties":{{"amount":{{"type":"{amount}"}}}},"additionalProperties":false}}}},"additionalProperties":false}}"#
        )
    };
    assert_eq!(
        check(Compatibility::Forward, total("integer"), total("number")),
        [r#"field total.amount: type "number" is not accepted by "integer""#]
    );
    assert_eq!(
        check(Compatibility::Backward, total("number"), total("integer")),
        [r#"field total.amount: type "number" is not accepted by "integer""#]
    );
    assert_eq!(
        check(
            Compatibility::Backward,
            obj(r#""max_order_total":{"type":"number"}"#, "", CLOSED),
            obj(r#""max_order_total":{"type":"number"}"#, r#""max_order_total""#, CLOSED)
        ),
        ["property max_order_total is required but the older schema does not guarantee it"]
    );
    assert_eq!(
        check(Compatibility::Backward, obj(A, "", ""), obj(AB, "", "")),
        ["property b was added to an open content model, where older data may already hold any value for it"]
    );
    assert_eq!(
        check(Compatibility::Backward, obj(AB, "", CLOSED), obj(A, "", CLOSED)),
        ["property b was removed from a closed content model (additionalProperties: false)"]
    );
    assert_eq!(
        check(Compatibility::Forward, obj(A, "", CLOSED), obj(AB, "", CLOSED)),
        ["property b was added but the older schema's content model is closed (additionalProperties: false)"]
    );
    assert_eq!(
        check(
            Compatibility::Backward,
            obj(r#""s":{"enum":["NEW","SHIPPED"]}"#, "", CLOSED),
            obj(r#""s":{"enum":["NEW"]}"#, "", CLOSED)
        ),
        [r#"field s: enum lost value "SHIPPED""#]
    );
    assert_eq!(
        check(Compatibility::Backward, obj(A, "", ""), obj(A, "", CLOSED)),
        ["additionalProperties narrowed from true to false"]
    );
}

#[test]
fn transitive_modes_check_every_version() {
    let avro_back = [rec(&format!(r#"{ID},{{"name":"a","type":"string"}}"#)), rec(ID), rec(ID)];
    let avro_back_new = rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#));
    let avro_fwd = [
        rec(&format!(r#"{ID},{{"name":"a","type":"int"}}"#)),
        rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#)),
        rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#)),
    ];
    let avro_fwd_new = rec(ID);
    let x = |t: &str| obj(&format!(r#""x":{{"type":"{t}"}}"#), "", CLOSED);
    let json_back = [x("number"), x("integer"), x("integer")];
    let json_fwd = [x("integer"), x("number"), x("number")];

    /// (type, versions oldest first, new schema, plain mode, transitive mode, failing
    /// direction, message); under the transitive mode only version 1 fails.
    type Case<'a> = (SchemaType, &'a [String], String, Compatibility, Compatibility, Direction, &'a str);
    let cases: Vec<Case> = vec![
        (
            SchemaType::Avro,
            &avro_back,
            avro_back_new,
            Compatibility::Backward,
            Compatibility::BackwardTransitive,
            Direction::Backward,
            "field a changed type from string to int",
        ),
        (
            SchemaType::Avro,
            &avro_fwd,
            avro_fwd_new,
            Compatibility::Forward,
            Compatibility::ForwardTransitive,
            Direction::Forward,
            "field a was removed but the older schema has no default for it",
        ),
        (
            SchemaType::Json,
            &json_back,
            x("integer"),
            Compatibility::Backward,
            Compatibility::BackwardTransitive,
            Direction::Backward,
            r#"field x: type "number" is not accepted by "integer""#,
        ),
        (
            SchemaType::Json,
            &json_fwd,
            x("number"),
            Compatibility::Forward,
            Compatibility::ForwardTransitive,
            Direction::Forward,
            r#"field x: type "number" is not accepted by "integer""#,
        ),
        (
            SchemaType::Json,
            &json_back,
            x("integer"),
            Compatibility::Full,
            Compatibility::FullTransitive,
            Direction::Backward,
            r#"field x: type "number" is not accepted by "integer""#,
        ),
        (
            SchemaType::Avro,
            &avro_fwd,
            rec(ID),
            Compatibility::Full,
            Compatibility::FullTransitive,
            Direction::Forward,
            "field a was removed but the older schema has no default for it",
        ),
    ];
    for (t, versions, new, plain, transitive, direction, message) in cases {
        let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
        let latest_only = run(plain, t, &new, &versions);
        assert!(latest_only.is_empty(), "{t:?} {plain}: {latest_only:?}");
        let all = run(transitive, t, &new, &versions);
        assert_eq!(
            all,
            vec![Incompatibility { version: 1, direction, message: message.to_string() }],
            "{t:?} {transitive}"
        );
        assert!(run(Compatibility::None, t, &new, &versions).is_empty());
    }
}

#[test]
fn full_reports_both_directions() {
    let old = rec(r#"{"name":"x","type":"string"}"#);
    let new = rec(r#"{"name":"x","type":"int"}"#);
    let found = run(Compatibility::Full, SchemaType::Avro, &new, &[&old]);
    let directions: Vec<Direction> = found.iter().map(|i| i.direction).collect();
    assert_eq!(directions, [Direction::Backward, Direction::Forward]);
    assert_eq!(found[1].message, "field x changed type from string to int");
}

#[test]
fn schema_type_change_is_one_incompatibility() {
    let previous = [(1, SchemaType::Json, r#"{"type":"object"}"#), (2, SchemaType::Avro, r#""int""#)];
    let found = check_compatibility(Compatibility::FullTransitive, SchemaType::Json, r#"{"type":"object"}"#, &previous);
    assert_eq!(
        found,
        Ok(vec![Incompatibility {
            version: 2,
            direction: Direction::Backward,
            message: "schema type changed from AVRO to JSON".into()
        }])
    );
    let found = check_compatibility(Compatibility::Forward, SchemaType::Avro, r#""int""#, &previous[..1]);
    assert_eq!(
        found.map(|f| f.iter().map(|i| (i.direction, i.message.clone())).collect::<Vec<_>>()),
        Ok(vec![(Direction::Forward, "schema type changed from JSON to AVRO".to_string())])
    );
}

#[test]
fn nothing_to_check() {
    let none =
        check_compatibility(Compatibility::None, SchemaType::Avro, "not even json", &[(1, SchemaType::Avro, "{")]);
    assert_eq!(none, Ok(vec![]));
    let first = check_compatibility(Compatibility::FullTransitive, SchemaType::Avro, r#""int""#, &[]);
    assert_eq!(first, Ok(vec![]));
    // A non-transitive mode does not even parse older versions.
    let latest = check_compatibility(
        Compatibility::Backward,
        SchemaType::Avro,
        r#""long""#,
        &[(1, SchemaType::Avro, "{broken"), (2, SchemaType::Avro, r#""int""#)],
    );
    assert_eq!(latest, Ok(vec![]));
}

#[test]
fn unparseable_schemas_are_errors_not_panics() {
    let bad_avro = [
        "",
        "{",
        "[]",
        "42",
        r#"{"type":"record"}"#,
        r#"{"type":"record","name":"R"}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
        r#"{"type":"enum","name":"E","symbols":[1]}"#,
        r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#,
        r#"{"type":"fixed","name":"F"}"#,
        r#"{"type":"array"}"#,
        r#"{"type":"map"}"#,
        r#"[["int"]]"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"enum","name":"R","symbols":["A"]}}]}"#,
    ];
    let bad_json = [
        "",
        "{",
        "42",
        r#""string""#,
        r#"{"type":"strng"}"#,
        r#"{"type":["string",3]}"#,
        r#"{"properties":3}"#,
        r#"{"properties":{"a":5}}"#,
        r#"{"required":"a"}"#,
        r#"{"anyOf":[]}"#,
        r#"{"items":[1]}"#,
        r#"{"$ref":7}"#,
        r#"{"multipleOf":0}"#,
    ];
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let good_avro = rec(ID);
    let good_json = obj(A, "", "");
    for (t, bad, good) in [
        (SchemaType::Avro, bad_avro.iter().copied().chain([deep.as_str()]).collect::<Vec<_>>(), good_avro.as_str()),
        (SchemaType::Json, bad_json.iter().copied().chain([deep.as_str()]).collect::<Vec<_>>(), good_json.as_str()),
    ] {
        for text in bad {
            let as_new = check_compatibility(Compatibility::Full, t, text, &[(1, t, good)]);
            match as_new {
                Err(e) => assert!(e.starts_with("new schema: invalid"), "{t:?} {text}: {e}"),
                Ok(found) => panic!("{t:?} accepted invalid schema {text}: {found:?}"),
            }
            let as_old = check_compatibility(Compatibility::Full, t, good, &[(7, t, text)]);
            match as_old {
                Err(e) => assert!(e.starts_with("registered version 7: invalid"), "{t:?} {text}: {e}"),
                Ok(found) => panic!("{t:?} accepted invalid schema {text}: {found:?}"),
            }
        }
    }
}

#[test]
fn unresolvable_json_refs_are_reported_not_fatal() {
    let old = r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/Nope"}}}"##;
    let same = run(Compatibility::Full, SchemaType::Json, old, &[old]);
    assert!(same.is_empty(), "{same:?}");
    let new = r##"{"type":"object","properties":{"a":{"$ref":"other.json#/X"}}}"##;
    let found = run(Compatibility::Backward, SchemaType::Json, new, &[old]);
    assert_eq!(messages(&found), [r##"field a: cannot resolve $ref "#/definitions/Nope" of the older schema"##]);
}

#[test]
fn compatibility_display_and_parse() {
    for mode in MODES {
        let text = mode.to_string();
        assert_eq!(text.parse::<Compatibility>(), Ok(mode));
        assert_eq!(text.to_lowercase().parse::<Compatibility>(), Ok(mode));
        let serde_name = serde_json::to_string(&mode).map_err(|e| e.to_string());
        assert_eq!(serde_name, Ok(format!("\"{text}\"")));
    }
    assert_eq!(Compatibility::BackwardTransitive.to_string(), "BACKWARD_TRANSITIVE");
    assert_eq!(" full-transitive ".parse::<Compatibility>(), Ok(Compatibility::FullTransitive));
    let err = "sideways".parse::<Compatibility>();
    assert!(err.as_ref().is_err_and(|e| e.contains("'sideways'") && e.contains("FULL_TRANSITIVE")), "{err:?}");
}
