//! The shape of a state's values, learnt from the values a point holds: what a new value must
//! have to fit the state's version (`host state write`), and which columns a Parquet file gets
//! (`host state read --format parquet`).
//!
//! A version is a promise about the payload's shape (`docs/state-format.md`), but the host
//! has no schema: it learns the shape from the values. Scalars by kind (an unsigned integer
//! fits where signed ones are, an integer where floats are), `nil` beside a kind makes it
//! optional, arrays of one length are tuples (of two lengths, lists), maps are maps. Values
//! of kinds that never meet are `Any`: then anything fits. Performs no I/O.

use super::msgpack::Value;

/// The shape of the values seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No value seen yet.
    Unknown,
    /// Only `nil`.
    Nil,
    /// Booleans.
    Bool,
    /// Non-negative integers.
    UInt,
    /// Integers, some negative.
    Int,
    /// Floats (or floats and integers).
    Float,
    /// Strings.
    Str,
    /// Bytes.
    Bin,
    /// Arrays of one length, by position.
    Tuple(Vec<Shape>),
    /// Arrays of several lengths.
    List(Box<Shape>),
    /// Maps.
    Map,
    /// Extension values.
    Ext,
    /// `nil`, or the shape inside.
    Optional(Box<Shape>),
    /// Values of kinds that never meet: anything fits.
    Any,
}

impl Shape {
    /// The shape of one value.
    pub fn of(value: &Value) -> Shape {
        match value {
            Value::Nil => Shape::Nil,
            Value::Bool(_) => Shape::Bool,
            Value::UInt(_) => Shape::UInt,
            Value::Int(_) => Shape::Int,
            Value::F32(_) | Value::F64(_) => Shape::Float,
            Value::Str(_) => Shape::Str,
            Value::Bin(_) => Shape::Bin,
            Value::Array(items) => Shape::Tuple(items.iter().map(Shape::of).collect()),
            Value::Map(_) => Shape::Map,
            Value::Ext(..) => Shape::Ext,
        }
    }

    /// Learns `value`.
    pub fn learn(&mut self, value: &Value) {
        let this = std::mem::replace(self, Shape::Unknown);
        *self = this.merge(Shape::of(value));
    }

    /// The shape of the values of both.
    pub fn merge(self, other: Shape) -> Shape {
        use Shape::*;
        match (self, other) {
            (Unknown, s) | (s, Unknown) => s,
            (Any, _) | (_, Any) => Any,
            (Nil, Nil) => Nil,
            (Optional(a), Nil) | (Nil, Optional(a)) => Optional(a),
            (Optional(a), Optional(b)) => optional(a.merge(*b)),
            (Optional(a), s) | (s, Optional(a)) => optional(a.merge(s)),
            (Nil, s) | (s, Nil) => Optional(Box::new(s)),
            (UInt, Int) | (Int, UInt) => Int,
            (UInt | Int, Float) | (Float, UInt | Int) => Float,
            (Tuple(a), Tuple(b)) if a.len() == b.len() => {
                Tuple(a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect())
            }
            (Tuple(a), Tuple(b)) => List(Box::new(elements(a).merge(elements(b)))),
            (List(a), Tuple(b)) | (Tuple(b), List(a)) => List(Box::new(a.merge(elements(b)))),
            (List(a), List(b)) => List(Box::new(a.merge(*b))),
            (a, b) if a == b => a,
            _ => Any,
        }
    }

    /// Whether `value` fits this shape.
    pub fn fits(&self, value: &Value) -> bool {
        match (self, value) {
            (Shape::Unknown | Shape::Any, _) => true,
            (Shape::Optional(_) | Shape::Nil, Value::Nil) => true,
            (Shape::Optional(inner), value) => inner.fits(value),
            (Shape::Int, Value::UInt(n)) => i64::try_from(*n).is_ok(),
            (Shape::Float, Value::UInt(_) | Value::Int(_)) => true,
            (Shape::Tuple(shapes), Value::Array(items)) => {
                shapes.len() == items.len() && shapes.iter().zip(items).all(|(s, v)| s.fits(v))
            }
            (Shape::List(shape), Value::Array(items)) => items.iter().all(|v| shape.fits(v)),
            (shape, value) => *shape == Shape::of(value) && !matches!(shape, Shape::Tuple(_)),
        }
    }

    /// Whether values of kinds that never meet are somewhere in it.
    pub fn has_any(&self) -> bool {
        match self {
            Shape::Any => true,
            Shape::Tuple(shapes) => shapes.iter().any(Shape::has_any),
            Shape::List(inner) | Shape::Optional(inner) => inner.has_any(),
            _ => false,
        }
    }

    /// The shape, for people: "unsigned integers", "[unsigned integer, integer or nil]".
    pub fn describe(&self) -> String {
        match self {
            Shape::Tuple(shapes) => {
                let parts: Vec<String> = shapes.iter().map(Shape::describe_one).collect();
                format!("arrays [{}]", parts.join(", "))
            }
            Shape::List(inner) => format!("arrays of {}", inner.describe()),
            Shape::Optional(inner) => format!("{} or nil", inner.describe()),
            other => other.describe_one_plural().to_owned(),
        }
    }

    fn describe_one(&self) -> String {
        match self {
            Shape::Optional(inner) => format!("{} or nil", inner.describe_one()),
            Shape::Tuple(_) | Shape::List(_) => self.describe(),
            other => {
                let plural = other.describe_one_plural();
                plural.strip_suffix('s').unwrap_or(plural).to_owned()
            }
        }
    }

    fn describe_one_plural(&self) -> &'static str {
        match self {
            Shape::Unknown => "values of any kind (none seen)",
            Shape::Nil => "nils",
            Shape::Bool => "booleans",
            Shape::UInt => "unsigned integers",
            Shape::Int => "integers",
            Shape::Float => "floats",
            Shape::Str => "strings",
            Shape::Bin => "bytes",
            Shape::Map => "maps",
            Shape::Ext => "extension values",
            Shape::Any => "values of any kind",
            Shape::Tuple(_) | Shape::List(_) | Shape::Optional(_) => "arrays",
        }
    }
}

fn optional(inner: Shape) -> Shape {
    match inner {
        Shape::Nil => Shape::Nil,
        Shape::Optional(inner) => Shape::Optional(inner),
        Shape::Any => Shape::Any,
        inner => Shape::Optional(Box::new(inner)),
    }
}

/// The shape of every element of a tuple's positions.
fn elements(shapes: Vec<Shape>) -> Shape {
    shapes.into_iter().fold(Shape::Unknown, Shape::merge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(values: &[Value]) -> Shape {
        let mut shape = Shape::Unknown;
        values.iter().for_each(|v| shape.learn(v));
        shape
    }

    #[test]
    fn counts_are_unsigned_integers_and_a_string_does_not_fit() {
        let shape = learnt(&[Value::UInt(3), Value::UInt(700)]);
        assert_eq!(shape, Shape::UInt);
        assert!(shape.fits(&Value::UInt(9)));
        assert!(!shape.fits(&Value::Str("ten".into())));
        assert!(!shape.fits(&Value::Int(-1)));
        assert_eq!(shape.describe(), "unsigned integers");
    }

    #[test]
    fn word_count_v2_values_are_pairs_whose_second_may_be_nil() {
        let v2 = |first: Value| Value::Array(vec![Value::UInt(3), first]);
        let shape = learnt(&[v2(Value::Nil), v2(Value::UInt(1_700_000_000_000))]);
        assert_eq!(
            shape,
            Shape::Tuple(vec![Shape::UInt, Shape::Optional(Box::new(Shape::UInt))])
        );
        assert!(shape.fits(&v2(Value::Nil)));
        assert!(!shape.fits(&Value::UInt(3)), "a v1 count is no v2 value");
        assert!(!shape.fits(&Value::Array(vec![Value::UInt(3)])));
        assert_eq!(
            shape.describe(),
            "arrays [unsigned integer, unsigned integer or nil]"
        );
    }

    #[test]
    fn kinds_that_meet_widen_and_others_give_any() {
        assert_eq!(learnt(&[Value::UInt(1), Value::Int(-1)]), Shape::Int);
        assert_eq!(learnt(&[Value::UInt(1), Value::F64(0.5)]), Shape::Float);
        let lists = learnt(&[
            Value::Array(vec![Value::UInt(1)]),
            Value::Array(vec![Value::UInt(1), Value::UInt(2)]),
        ]);
        assert_eq!(lists, Shape::List(Box::new(Shape::UInt)));
        assert!(lists.fits(&Value::Array(vec![])));
        let any = learnt(&[Value::UInt(1), Value::Str("a".into())]);
        assert_eq!(any, Shape::Any);
        assert!(any.fits(&Value::Bool(true)));
        assert!(Shape::Unknown.fits(&Value::Nil));
    }
}
