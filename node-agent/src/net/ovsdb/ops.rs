//! OVSDB's JSON encodings (RFC 7047 §5.1) and the transaction operations (§5.2) we use, as
//! typed values that serialize to exactly what ovsdb-server expects.
//!
//! Atoms are bare JSON (`1`, `"x"`, `true`) except uuids (`["uuid", "…"]`) and the names of
//! rows inserted in the same transaction (`["named-uuid", "…"]`). A set is either a single atom
//! or `["set", [atoms…]]`; a map is `["map", [[k, v], …]]`. Optional columns (min 0, max 1)
//! are sets of zero or one atom.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// One OVSDB atom.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    /// An `integer`.
    Int(i64),
    /// A `real`.
    Real(f64),
    /// A `boolean`.
    Bool(bool),
    /// A `string`.
    Str(String),
    /// A `uuid` of an existing row.
    Uuid(String),
    /// The `uuid-name` of a row inserted earlier in the same transaction.
    NamedUuid(String),
}

impl Atom {
    /// Shorthand for [`Atom::Str`].
    pub fn str(s: impl Into<String>) -> Self {
        Atom::Str(s.into())
    }

    /// The JSON encoding of this atom.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Int(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Bool(b) => json!(b),
            Atom::Str(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    /// Decodes an atom; `None` when `v` is not one (e.g. a set or map).
    pub fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(Atom::Bool(*b)),
            Value::String(s) => Some(Atom::Str(s.clone())),
            Value::Number(n) => n
                .as_i64()
                .map(Atom::Int)
                .or_else(|| n.as_f64().map(Atom::Real)),
            Value::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some("uuid"), Some(u)) => Some(Atom::Uuid(u.to_owned())),
                (Some("named-uuid"), Some(n)) => Some(Atom::NamedUuid(n.to_owned())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The string inside a `Str`, `Uuid` or `NamedUuid`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::Str(s) | Atom::Uuid(s) | Atom::NamedUuid(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Atom::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A column value: an atom, a set of atoms, or a map.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// A single atom (also how a one-element set may be written).
    Atom(Atom),
    /// `["set", [...]]`; the empty set is how an unset optional column is written.
    Set(Vec<Atom>),
    /// `["map", [[k, v], ...]]`.
    Map(Vec<(Atom, Atom)>),
}

impl Datum {
    /// The empty set (an optional column with no value).
    pub fn empty() -> Self {
        Datum::Set(Vec::new())
    }

    /// An optional column: the atom, or the empty set for `None`.
    pub fn optional(a: Option<Atom>) -> Self {
        match a {
            Some(a) => Datum::Atom(a),
            None => Datum::empty(),
        }
    }

    /// A string→string map (e.g. `external_ids`).
    pub fn str_map(m: &BTreeMap<String, String>) -> Self {
        Datum::Map(
            m.iter()
                .map(|(k, v)| (Atom::str(k.clone()), Atom::str(v.clone())))
                .collect(),
        )
    }

    /// A set of uuids.
    pub fn uuids<S: AsRef<str>>(u: impl IntoIterator<Item = S>) -> Self {
        Datum::Set(
            u.into_iter()
                .map(|s| Atom::Uuid(s.as_ref().to_owned()))
                .collect(),
        )
    }

    /// The JSON encoding.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Atom(a) => a.to_json(),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Decodes a datum; `None` when `v` is not valid OVSDB.
    pub fn from_json(v: &Value) -> Option<Self> {
        if let Some(a) = Atom::from_json(v) {
            return Some(Datum::Atom(a));
        }
        let arr = v.as_array().filter(|a| a.len() == 2)?;
        let items = arr[1].as_array()?;
        match arr[0].as_str()? {
            "set" => items
                .iter()
                .map(Atom::from_json)
                .collect::<Option<Vec<_>>>()
                .map(Datum::Set),
            "map" => items
                .iter()
                .map(|p| {
                    let p = p.as_array().filter(|p| p.len() == 2)?;
                    Some((Atom::from_json(&p[0])?, Atom::from_json(&p[1])?))
                })
                .collect::<Option<Vec<_>>>()
                .map(Datum::Map),
            _ => None,
        }
    }

    /// The atoms of a set (a lone atom is a one-element set; a map yields nothing).
    pub fn atoms(&self) -> Vec<Atom> {
        match self {
            Datum::Atom(a) => vec![a.clone()],
            Datum::Set(s) => s.clone(),
            Datum::Map(_) => Vec::new(),
        }
    }
}

/// A row as returned by `select` or `monitor`: column name → JSON, with typed accessors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub Map<String, Value>);

impl Row {
    /// The decoded datum of `col`, if present and valid.
    pub fn datum(&self, col: &str) -> Option<Datum> {
        self.0.get(col).and_then(Datum::from_json)
    }

    /// A string column (or an optional string column that is set).
    pub fn str(&self, col: &str) -> Option<String> {
        self.datum(col)?.atoms().first().and_then(|a| match a {
            Atom::Str(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// An integer column (or an optional integer column that is set).
    pub fn int(&self, col: &str) -> Option<i64> {
        self.datum(col)?.atoms().first().and_then(Atom::as_int)
    }

    /// The row's own uuid (`_uuid`).
    pub fn uuid(&self) -> Option<String> {
        self.uuids("_uuid").into_iter().next()
    }

    /// A uuid or set-of-uuid column as uuid strings.
    pub fn uuids(&self, col: &str) -> Vec<String> {
        self.datum(col)
            .map(|d| {
                d.atoms()
                    .into_iter()
                    .filter_map(|a| match a {
                        Atom::Uuid(u) => Some(u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A set-of-strings column.
    pub fn strs(&self, col: &str) -> Vec<String> {
        self.datum(col)
            .map(|d| {
                d.atoms()
                    .into_iter()
                    .filter_map(|a| match a {
                        Atom::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string→string map column (`external_ids`, `other_config`).
    pub fn str_map(&self, col: &str) -> BTreeMap<String, String> {
        match self.datum(col) {
            Some(Datum::Map(m)) => m
                .into_iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Atom::Str(k), Atom::Str(v)) => Some((k, v)),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// A `where` clause element: `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// The column.
    pub column: String,
    /// `==`, `!=`, `includes`, `excludes`, `<`, …
    pub function: &'static str,
    /// The value compared with.
    pub value: Datum,
}

impl Cond {
    /// `column == value`.
    pub fn eq(column: &str, value: Datum) -> Self {
        Self {
            column: column.to_owned(),
            function: "==",
            value,
        }
    }

    /// `column == "s"` for a string column (the common `name == …`).
    pub fn eq_str(column: &str, s: &str) -> Self {
        Self::eq(column, Datum::Atom(Atom::str(s)))
    }

    /// `_uuid == uuid`.
    pub fn uuid(uuid: &str) -> Self {
        Self::eq("_uuid", Datum::Atom(Atom::Uuid(uuid.to_owned())))
    }

    /// `column includes value` (for set and map columns).
    pub fn includes(column: &str, value: Datum) -> Self {
        Self {
            column: column.to_owned(),
            function: "includes",
            value,
        }
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.function, self.value.to_json()])
    }
}

/// A `mutate` element: `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The column.
    pub column: String,
    /// `insert`, `delete`, `+=`, …
    pub mutator: &'static str,
    /// The operand.
    pub value: Datum,
}

impl Mutation {
    /// Adds elements to a set or map column.
    pub fn insert(column: &str, value: Datum) -> Self {
        Self {
            column: column.to_owned(),
            mutator: "insert",
            value,
        }
    }

    /// Removes elements from a set or map column.
    pub fn delete(column: &str, value: Datum) -> Self {
        Self {
            column: column.to_owned(),
            mutator: "delete",
            value,
        }
    }
}

/// The result of a `wait` operation's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The selected rows must equal the given rows.
    Eq,
    /// The selected rows must differ from the given rows.
    Ne,
}

/// A row written by `insert`/`update`: column → datum.
pub type NewRow = BTreeMap<String, Datum>;

/// One operation of a `transact` request.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Inserts a row; `uuid_name` lets later operations refer to it as a `named-uuid`.
    Insert {
        /// Table.
        table: String,
        /// Columns to set.
        row: NewRow,
        /// Name for `["named-uuid", name]` references within the transaction.
        uuid_name: Option<String>,
    },
    /// Selects rows; `columns` limits what is returned (all columns when `None`).
    Select {
        /// Table.
        table: String,
        /// Conditions (all must hold; empty = every row).
        r#where: Vec<Cond>,
        /// Columns to return.
        columns: Option<Vec<String>>,
    },
    /// Sets columns of the matching rows.
    Update {
        /// Table.
        table: String,
        /// Conditions.
        r#where: Vec<Cond>,
        /// Columns to set.
        row: NewRow,
    },
    /// Mutates columns of the matching rows.
    Mutate {
        /// Table.
        table: String,
        /// Conditions.
        r#where: Vec<Cond>,
        /// Mutations.
        mutations: Vec<Mutation>,
    },
    /// Deletes the matching rows.
    Delete {
        /// Table.
        table: String,
        /// Conditions.
        r#where: Vec<Cond>,
    },
    /// Waits (up to `timeout_ms`, 0 = check once) until the selected `columns` of the matching
    /// rows equal (or differ from) `rows`; fails the transaction with "timed out" otherwise.
    Wait {
        /// Table.
        table: String,
        /// Conditions.
        r#where: Vec<Cond>,
        /// Columns compared.
        columns: Vec<String>,
        /// Equal or not equal.
        until: Until,
        /// The expected rows (only the compared columns).
        rows: Vec<NewRow>,
        /// Milliseconds to wait; `None` waits forever (avoid), `Some(0)` checks once.
        timeout_ms: Option<u64>,
    },
    /// A comment recorded in the database log (shows up in `ovsdb-tool show-log`).
    Comment(String),
}

fn row_json(row: &NewRow) -> Value {
    Value::Object(
        row.iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<Map<_, _>>(),
    )
}

fn where_json(w: &[Cond]) -> Value {
    Value::Array(w.iter().map(Cond::to_json).collect())
}

impl Op {
    /// `insert` of `row` into `table`, referable as `named-uuid` `uuid_name`.
    pub fn insert(table: &str, row: NewRow, uuid_name: Option<&str>) -> Self {
        Op::Insert {
            table: table.to_owned(),
            row,
            uuid_name: uuid_name.map(str::to_owned),
        }
    }

    /// `select` of `columns` from the rows of `table` matching `where`.
    pub fn select(table: &str, r#where: Vec<Cond>, columns: &[&str]) -> Self {
        Op::Select {
            table: table.to_owned(),
            r#where,
            columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        }
    }

    /// `update` of the rows of `table` matching `where`.
    pub fn update(table: &str, r#where: Vec<Cond>, row: NewRow) -> Self {
        Op::Update {
            table: table.to_owned(),
            r#where,
            row,
        }
    }

    /// `mutate` of the rows of `table` matching `where`.
    pub fn mutate(table: &str, r#where: Vec<Cond>, mutations: Vec<Mutation>) -> Self {
        Op::Mutate {
            table: table.to_owned(),
            r#where,
            mutations,
        }
    }

    /// `delete` of the rows of `table` matching `where`.
    pub fn delete(table: &str, r#where: Vec<Cond>) -> Self {
        Op::Delete {
            table: table.to_owned(),
            r#where,
        }
    }

    /// A `wait` that checks once (timeout 0) that no row of `table` matches `where` — the
    /// guard that makes "insert if absent" safe against a concurrent insert.
    pub fn wait_absent(table: &str, r#where: Vec<Cond>) -> Self {
        Op::Wait {
            table: table.to_owned(),
            r#where,
            columns: vec!["_uuid".into()],
            until: Until::Eq,
            rows: vec![],
            timeout_ms: Some(0),
        }
    }

    /// The JSON encoding of this operation.
    pub fn to_json(&self) -> Value {
        match self {
            Op::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row_json(row)});
                if let Some(n) = uuid_name {
                    o["uuid-name"] = json!(n);
                }
                o
            }
            Op::Select {
                table,
                r#where,
                columns,
            } => {
                let mut o = json!({"op": "select", "table": table, "where": where_json(r#where)});
                if let Some(c) = columns {
                    o["columns"] = json!(c);
                }
                o
            }
            Op::Update {
                table,
                r#where,
                row,
            } => json!({"op": "update", "table": table, "where": where_json(r#where),
                        "row": row_json(row)}),
            Op::Mutate {
                table,
                r#where,
                mutations,
            } => json!({"op": "mutate", "table": table, "where": where_json(r#where),
                "mutations": mutations.iter()
                    .map(|m| json!([m.column, m.mutator, m.value.to_json()]))
                    .collect::<Vec<_>>()}),
            Op::Delete { table, r#where } => {
                json!({"op": "delete", "table": table, "where": where_json(r#where)})
            }
            Op::Wait {
                table,
                r#where,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                let mut o = json!({"op": "wait", "table": table, "where": where_json(r#where),
                    "columns": columns,
                    "until": match until { Until::Eq => "==", Until::Ne => "!=" },
                    "rows": rows.iter().map(row_json).collect::<Vec<_>>()});
                if let Some(t) = timeout_ms {
                    o["timeout"] = json!(t);
                }
                o
            }
            Op::Comment(c) => json!({"op": "comment", "comment": c}),
        }
    }
}

/// The successful result of one operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpResult {
    /// `insert`: the new row's uuid.
    pub uuid: Option<String>,
    /// `select`: the rows.
    pub rows: Vec<Row>,
    /// `update`/`mutate`/`delete`: how many rows matched.
    pub count: Option<u64>,
}

impl OpResult {
    /// Decodes one element of a `transact` result array (not an error element).
    pub fn from_json(v: &Value) -> Self {
        OpResult {
            uuid: v.get("uuid").and_then(|u| match Atom::from_json(u) {
                Some(Atom::Uuid(u)) => Some(u),
                _ => None,
            }),
            rows: v
                .get("rows")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r.as_object().cloned().map(Row))
                        .collect()
                })
                .unwrap_or_default(),
            count: v.get("count").and_then(Value::as_u64),
        }
    }
}
