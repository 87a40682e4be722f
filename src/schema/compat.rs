//! The compatibility check between two versions of a subject's JSON
//! Schema: pure, a structural comparison of the common keywords, reporting
//! the first break in words ("field `total` became required").
//!
//! The question it answers is Confluent's for JSON Schema: can a *reader*
//! schema accept every document a *writer* schema accepts? `backward`
//! asks it with the new version reading what the old one wrote, `forward`
//! the other way round, `full` both ways (see [`Compat`]); `none` never
//! asks.
//!
//! It understands `type`, `properties`, `required`,
//! `additionalProperties`, `enum`, `const`, `items`, the bounds
//! (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
//! `minLength`, `maxLength`, `minItems`, `maxItems`), `pattern` and
//! `format`, and ignores the annotations (`title`, `description`,
//! `default`, `examples`, `$comment`, `$schema`, `$id`). Any other keyword
//! (`oneOf`, `$ref`, `if`, ...) that the reader has and the writer does not
//! have with the same value is a break: the check cannot prove it safe, so
//! it says so (conservative, never a silent pass).

use serde_json::{Map, Value};

use crate::protocol::command::Compat;

/// A schema that is an object (not `true`/`false`).
type Obj = Map<String, Value>;

/// Keywords that say nothing about which documents are valid.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "$id",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Keywords the comparison below understands.
const UNDERSTOOD: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
];

/// Lower bounds: the reader's must not be above the writer's.
const LOWER: &[&str] = &["minimum", "exclusiveMinimum", "minLength", "minItems"];
/// Upper bounds: the reader's must not be below the writer's.
const UPPER: &[&str] = &["maximum", "exclusiveMaximum", "maxLength", "maxItems"];

/// Checks `new` against the earlier versions `older` (oldest first) under
/// `compat`: only the latest of them, or all with `transitive`. `Err`
/// names the version and the first break.
pub(crate) fn check(
    compat: Compat,
    transitive: bool,
    new: &Value,
    older: &[(u32, &Value)],
) -> Result<(), String> {
    let against: &[(u32, &Value)] = match (transitive, older.split_last()) {
        (_, None) => return Ok(()),
        (true, Some(_)) => older,
        (false, Some((last, _))) => std::slice::from_ref(last),
    };
    for (version, old) in against.iter().rev() {
        let backward = matches!(compat, Compat::Backward | Compat::Full);
        let forward = matches!(compat, Compat::Forward | Compat::Full);
        if backward {
            Pair { new_reads: true }
                .read(new, old, &Path::root())
                .map_err(|b| format!("not backward compatible with version {version}: {b}"))?;
        }
        if forward {
            Pair { new_reads: false }
                .read(old, new, &Path::root())
                .map_err(|b| format!("not forward compatible with version {version}: {b}"))?;
        }
    }
    Ok(())
}

/// Where in the document a schema applies, for messages: `total`,
/// `address.zip`, `tags[]`; the root is "the message".
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root() -> Path {
        Path(String::new())
    }

    fn field(&self, name: &str) -> Path {
        match self.0.is_empty() {
            true => Path(name.to_string()),
            false => Path(format!("{}.{name}", self.0)),
        }
    }

    fn items(&self) -> Path {
        Path(format!("{}[]", self.0))
    }

    fn show(&self) -> String {
        match self.0.is_empty() {
            true => "the message".to_string(),
            false => format!("field `{}`", self.0),
        }
    }
}

/// One direction of the comparison: whether the reader is the new version
/// (`backward`), so that messages always tell the change from old to new.
#[derive(Debug, Clone, Copy)]
struct Pair {
    new_reads: bool,
}

impl Pair {
    /// `Ok` when every document `writer` accepts, `reader` accepts too
    /// (as far as the understood keywords show).
    fn read(self, reader: &Value, writer: &Value, at: &Path) -> Result<(), String> {
        let anything = Map::new();
        let (r, w) = match (reader, writer) {
            (Value::Bool(true), _) | (_, Value::Bool(false)) => return Ok(()),
            (Value::Bool(false), _) => {
                return Err(self.says(
                    at,
                    "accepts nothing any more (false)",
                    "was accepted by nothing before (false)",
                ))
            }
            (Value::Object(r), Value::Bool(true)) => (r, &anything),
            (Value::Object(r), Value::Object(w)) => (r, w),
            _ => return Err(format!("{}: a schema that is not an object", at.show())),
        };
        self.unknown(r, w, at)?;
        self.types(r, w, at)?;
        self.required(r, w, at)?;
        self.properties(r, w, at)?;
        self.values(r, w, at)?;
        self.bounds(r, w, at)?;
        for kw in ["pattern", "format"] {
            if let Some(rv) = r.get(kw) {
                if w.get(kw) != Some(rv) {
                    let (old, new) = self.old_new(w.get(kw), Some(rv));
                    return Err(format!("{}: `{kw}` changed from {old} to {new}", at.show()));
                }
            }
        }
        if let Some(ri) = r.get("items") {
            let wi = w.get("items").unwrap_or(&Value::Bool(true));
            self.read(ri, wi, &at.items())?;
        }
        Ok(())
    }

    /// A change in words: `old_text` when the new version (the reader)
    /// brought the restriction, `new_text` when the old one had it.
    fn says(self, at: &Path, new_text: &str, old_text: &str) -> String {
        let what = if self.new_reads { new_text } else { old_text };
        format!("{} {what}", at.show())
    }

    /// (old, new) shown, from (writer, reader) values.
    fn old_new(self, writer: Option<&Value>, reader: Option<&Value>) -> (String, String) {
        let show = |v: Option<&Value>| v.map_or_else(|| "none".to_string(), Value::to_string);
        match self.new_reads {
            true => (show(writer), show(reader)),
            false => (show(reader), show(writer)),
        }
    }

    fn unknown(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        for (kw, rv) in r {
            let known = UNDERSTOOD.contains(&kw.as_str()) || ANNOTATIONS.contains(&kw.as_str());
            if !known && w.get(kw) != Some(rv) {
                return Err(format!(
                    "{}: keyword `{kw}` is not understood by the compatibility check, \
                     so a change to it counts as a break (use compat=none to allow it)",
                    at.show()
                ));
            }
        }
        Ok(())
    }

    fn types(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        let Some(rt) = types(r) else { return Ok(()) };
        let wt = types(w);
        let covered = match &wt {
            None => false,
            Some(wt) => wt
                .iter()
                .all(|t| rt.contains(t) || (t == "integer" && rt.iter().any(|x| x == "number"))),
        };
        if covered {
            return Ok(());
        }
        let show = |t: &Option<Vec<String>>| match t {
            None => "any".to_string(),
            Some(t) => t.join(" or "),
        };
        let (old, new) = match self.new_reads {
            true => (show(&wt), show(&Some(rt))),
            false => (show(&Some(rt)), show(&wt)),
        };
        Err(format!("{} changed type from {old} to {new}", at.show()))
    }

    fn required(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        let names = |m: &Obj| -> Vec<String> {
            m.get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let wr = names(w);
        match names(r).into_iter().find(|n| !wr.contains(n)) {
            Some(n) => Err(self.says(&at.field(&n), "became required", "is no longer required")),
            None => Ok(()),
        }
    }

    fn properties(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        let empty = Map::new();
        let (rp, wp) = (
            properties(r).unwrap_or(&empty),
            properties(w).unwrap_or(&empty),
        );
        let any = Value::Bool(true);
        let r_extra = r.get("additionalProperties").unwrap_or(&any);
        let w_extra = w.get("additionalProperties").unwrap_or(&any);
        // A field the reader describes: what the writer let it hold. A
        // field the writer did not describe, when it said nothing of other
        // fields, is taken to be absent from its documents (as Avro takes
        // a new field): so an optional field can be added or dropped.
        let w_open_by_default = !w.contains_key("additionalProperties");
        for (name, rs) in rp {
            match wp.get(name) {
                Some(ws) => self.read(rs, ws, &at.field(name))?,
                None if w_open_by_default => {}
                None => self.read(rs, w_extra, &at.field(name))?,
            }
        }
        // A field only the writer describes: the reader's
        // additionalProperties must take it.
        for (name, ws) in wp {
            if rp.contains_key(name) {
                continue;
            }
            if r_extra == &Value::Bool(false) {
                return Err(self.says(
                    &at.field(name),
                    "was removed while other fields are not allowed (additionalProperties false)",
                    "was added but the old version allows no other fields (additionalProperties false)",
                ));
            }
            self.read(r_extra, ws, &at.field(name))?;
        }
        // Fields neither describes.
        if w_extra != &Value::Bool(false) && r_extra != &Value::Bool(true) {
            if r_extra == &Value::Bool(false) {
                return Err(format!(
                    "{}: {}",
                    at.show(),
                    if self.new_reads {
                        "other fields are no longer allowed (additionalProperties false)"
                    } else {
                        "other fields became allowed (additionalProperties)"
                    }
                ));
            }
            self.read(r_extra, w_extra, &at.field("*"))?;
        }
        Ok(())
    }

    /// `enum` and `const`: every value the writer allows, the reader must.
    fn values(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        let Some(rv) = allowed(r) else { return Ok(()) };
        let Some(wv) = allowed(w) else {
            return Err(self.says(
                at,
                "became limited to a list of values (enum/const)",
                "is no longer limited to a list of values (enum/const)",
            ));
        };
        match wv.iter().find(|v| !rv.contains(v)) {
            Some(v) => Err(self.says(
                at,
                &format!("no longer allows the value {v}"),
                &format!("now allows the value {v}"),
            )),
            None => Ok(()),
        }
    }

    fn bounds(self, r: &Obj, w: &Obj, at: &Path) -> Result<(), String> {
        for (kws, lower) in [(LOWER, true), (UPPER, false)] {
            for kw in kws.iter().copied() {
                let Some(rb) = r.get(kw).and_then(Value::as_f64) else {
                    continue;
                };
                let wb = w.get(kw).and_then(Value::as_f64);
                let ok = match wb {
                    None => false,
                    Some(wb) if lower => rb <= wb,
                    Some(wb) => rb >= wb,
                };
                if !ok {
                    let (old, new) = self.old_new(w.get(kw), r.get(kw));
                    return Err(format!("{}: `{kw}` changed from {old} to {new}", at.show()));
                }
            }
        }
        Ok(())
    }
}

/// A schema's `properties`.
fn properties(m: &Obj) -> Option<&Obj> {
    m.get("properties").and_then(Value::as_object)
}

/// A schema's `type` as a list; `None` when it has none (any type).
fn types(m: &Obj) -> Option<Vec<String>> {
    match m.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// The values `enum` or `const` allow; `None` when neither is there.
fn allowed(m: &Obj) -> Option<Vec<Value>> {
    match (m.get("enum"), m.get("const")) {
        (Some(Value::Array(e)), _) => Some(e.clone()),
        (_, Some(c)) => Some(vec![c.clone()]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "total": {"type": "number", "minimum": 0},
                "status": {"enum": ["new", "paid"]}
            },
            "required": ["id"]
        })
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut v = order();
        f(&mut v);
        v
    }

    fn run(compat: Compat, new: &Value) -> Result<(), String> {
        check(compat, false, new, &[(1, &order())])
    }

    #[test]
    fn a_new_required_field_breaks_backward_not_forward() {
        let new = with(|v| v["required"] = json!(["id", "total"]));
        let e = run(Compat::Backward, &new).unwrap_err();
        assert_eq!(
            e,
            "not backward compatible with version 1: field `total` became required"
        );
        assert_eq!(run(Compat::Forward, &new), Ok(()));
        assert!(run(Compat::Full, &new).is_err());
        assert_eq!(run(Compat::None, &new), Ok(()));
    }

    #[test]
    fn a_dropped_required_field_breaks_forward_not_backward() {
        let new = with(|v| v["required"] = json!([]));
        assert_eq!(run(Compat::Backward, &new), Ok(()));
        let e = run(Compat::Forward, &new).unwrap_err();
        assert_eq!(
            e,
            "not forward compatible with version 1: field `id` is no longer required"
        );
    }

    #[test]
    fn a_changed_type_breaks_both_ways_and_names_old_then_new() {
        let new = with(|v| v["properties"]["id"] = json!({"type": "integer"}));
        let e = run(Compat::Backward, &new).unwrap_err();
        assert!(
            e.ends_with("field `id` changed type from string to integer"),
            "{e}"
        );
        let e = run(Compat::Forward, &new).unwrap_err();
        assert!(
            e.ends_with("field `id` changed type from string to integer"),
            "{e}"
        );
    }

    #[test]
    fn integer_widened_to_number_is_backward_only() {
        let old = json!({"properties": {"n": {"type": "integer"}}});
        let new = json!({"properties": {"n": {"type": "number"}}});
        assert_eq!(check(Compat::Backward, false, &new, &[(1, &old)]), Ok(()));
        assert!(check(Compat::Forward, false, &new, &[(1, &old)]).is_err());
    }

    #[test]
    fn an_optional_field_added_is_full_compatible() {
        let new = with(|v| v["properties"]["note"] = json!({"type": "string"}));
        assert_eq!(run(Compat::Full, &new), Ok(()));
    }

    #[test]
    fn closing_additional_properties_breaks_backward() {
        let new = with(|v| v["additionalProperties"] = json!(false));
        let e = run(Compat::Backward, &new).unwrap_err();
        assert!(e.contains("other fields are no longer allowed"), "{e}");
        assert_eq!(run(Compat::Forward, &new), Ok(()));
    }

    #[test]
    fn a_removed_enum_value_breaks_backward_an_added_one_forward() {
        let fewer = with(|v| v["properties"]["status"] = json!({"enum": ["new"]}));
        let e = run(Compat::Backward, &fewer).unwrap_err();
        assert!(
            e.ends_with("field `status` no longer allows the value \"paid\""),
            "{e}"
        );
        let more = with(|v| v["properties"]["status"] = json!({"enum": ["new", "paid", "sent"]}));
        assert_eq!(run(Compat::Backward, &more), Ok(()));
        let e = run(Compat::Forward, &more).unwrap_err();
        assert!(
            e.ends_with("field `status` now allows the value \"sent\""),
            "{e}"
        );
    }

    #[test]
    fn a_tighter_bound_breaks_backward() {
        let new = with(|v| v["properties"]["total"]["minimum"] = json!(10));
        let e = run(Compat::Backward, &new).unwrap_err();
        assert!(
            e.ends_with("field `total`: `minimum` changed from 0 to 10"),
            "{e}"
        );
        assert_eq!(run(Compat::Forward, &new), Ok(()));
    }

    #[test]
    fn nested_objects_and_array_items_are_compared() {
        let old = json!({"properties": {"lines": {"type": "array", "items": {
            "type": "object", "properties": {"sku": {"type": "string"}}}}}});
        let new = json!({"properties": {"lines": {"type": "array", "items": {
            "type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}});
        let e = check(Compat::Backward, false, &new, &[(3, &old)]).unwrap_err();
        assert_eq!(
            e,
            "not backward compatible with version 3: field `lines[].sku` became required"
        );
    }

    #[test]
    fn an_unknown_keyword_counts_as_a_break_unless_unchanged() {
        let old = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        let changed = json!({"oneOf": [{"type": "string"}]});
        let e = check(Compat::Backward, false, &changed, &[(1, &old)]).unwrap_err();
        assert!(e.contains("keyword `oneOf` is not understood"), "{e}");
        assert_eq!(check(Compat::Backward, false, &old, &[(1, &old)]), Ok(()));
    }

    #[test]
    fn annotations_are_ignored() {
        let new = with(|v| v["description"] = json!("an order"));
        assert_eq!(run(Compat::Full, &new), Ok(()));
    }

    #[test]
    fn transitive_checks_every_earlier_version_plain_only_the_latest() {
        // v1 requires nothing; v2 requires id (a backward break against v1
        // only if v2 were checked against it); v3 equals v2.
        let v1 = json!({"properties": {"id": {"type": "string"}}});
        let v2 = json!({"properties": {"id": {"type": "string"}}, "required": ["id"]});
        let older = [(1, &v1), (2, &v2)];
        assert_eq!(check(Compat::Backward, false, &v2, &older), Ok(()));
        let e = check(Compat::Backward, true, &v2, &older).unwrap_err();
        assert!(
            e.starts_with("not backward compatible with version 1"),
            "{e}"
        );
    }

    #[test]
    fn the_first_version_has_nothing_to_break() {
        assert_eq!(check(Compat::Full, true, &order(), &[]), Ok(()));
    }
}
