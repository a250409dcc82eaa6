//! MessagePack values as JSON, both ways, without loss: what `host state read` prints and
//! what `host state write` and `bootstrap` take.
//!
//! JSON's own types map to their MessagePack kin (`null`, booleans, integers, floats, strings,
//! arrays, objects as maps with string keys). What JSON lacks is an object of one `$` key:
//! `{"$bin": "<base64>"}` (bytes), `{"$map": [[key, value], …]}` (a map with keys other than
//! strings, or whose one key starts with `$`), `{"$ext": [type, "<base64>"]}`,
//! `{"$float": "NaN" | "inf" | "-inf"}`. A key (always bytes) is a string when it is UTF-8,
//! else `{"$bin": …}`. Performs no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};

use super::msgpack::Value;

/// `value` as JSON.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::UInt(n) => json!(n),
        Value::Int(n) => json!(n),
        Value::F32(x) => float(f64::from(*x)),
        Value::F64(x) => float(*x),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bin(b) => json!({ "$bin": BASE64.encode(b) }),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => map(pairs),
        Value::Ext(kind, b) => json!({ "$ext": [kind, BASE64.encode(b)] }),
    }
}

fn float(x: f64) -> Json {
    match serde_json::Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => json!({ "$float": "NaN" }),
        None if x > 0.0 => json!({ "$float": "inf" }),
        None => json!({ "$float": "-inf" }),
    }
}

fn map(pairs: &[(Value, Value)]) -> Json {
    let plain = pairs.iter().all(|(k, _)| matches!(k, Value::Str(_)))
        && !(pairs.len() == 1 && matches!(&pairs[0].0, Value::Str(k) if k.starts_with('$')));
    if !plain {
        let pairs = pairs.iter().map(|(k, v)| json!([to_json(k), to_json(v)]));
        return json!({ "$map": pairs.collect::<Vec<_>>() });
    }
    let mut object = Map::new();
    for (key, value) in pairs {
        if let Value::Str(key) = key {
            object.insert(key.clone(), to_json(value));
        }
    }
    Json::Object(object)
}

/// The value `json` stands for; an error says what in it is not a value.
pub fn from_json(json: &Json) -> Result<Value, String> {
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(n), ..) => Value::UInt(n),
            (None, Some(n), _) => Value::Int(n),
            (.., Some(x)) => Value::F64(x),
            _ => return Err(format!("the number {n} is out of range")),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(object) => match tagged(object) {
            Some((tag, inner)) => from_tagged(tag, inner)?,
            None => {
                let pairs = object
                    .iter()
                    .map(|(k, v)| Ok((Value::Str(k.clone()), from_json(v)?)));
                Value::Map(pairs.collect::<Result<_, String>>()?)
            }
        },
    })
}

/// An object of one `$` key: its tag and what it holds.
fn tagged(object: &Map<String, Json>) -> Option<(&str, &Json)> {
    let (key, inner) = object.iter().next().filter(|_| object.len() == 1)?;
    key.starts_with('$').then_some((key.as_str(), inner))
}

fn from_tagged(tag: &str, inner: &Json) -> Result<Value, String> {
    let bytes = |json: &Json| -> Result<Vec<u8>, String> {
        let text = json
            .as_str()
            .ok_or(format!("`{tag}` holds no base64 string"))?;
        BASE64
            .decode(text)
            .map_err(|e| format!("`{tag}`: not base64: {e}"))
    };
    match (tag, inner) {
        ("$bin", _) => Ok(Value::Bin(bytes(inner)?)),
        ("$map", Json::Array(pairs)) => {
            let pair = |pair: &Json| match pair.as_array().map(Vec::as_slice) {
                Some([k, v]) => Ok((from_json(k)?, from_json(v)?)),
                _ => Err("`$map` holds pairs [key, value]".to_owned()),
            };
            Ok(Value::Map(
                pairs.iter().map(pair).collect::<Result<_, _>>()?,
            ))
        }
        ("$ext", Json::Array(parts)) => match parts.as_slice() {
            [kind, b] => {
                let kind = kind.as_i64().and_then(|k| i8::try_from(k).ok());
                let kind = kind.ok_or("`$ext`'s type is an integer from -128 to 127")?;
                Ok(Value::Ext(kind, bytes(b)?))
            }
            _ => Err("`$ext` holds [type, base64]".to_owned()),
        },
        ("$float", Json::String(s)) => match s.as_str() {
            "NaN" => Ok(Value::F64(f64::NAN)),
            "inf" => Ok(Value::F64(f64::INFINITY)),
            "-inf" => Ok(Value::F64(f64::NEG_INFINITY)),
            _ => Err(format!("`$float` holds NaN, inf or -inf, not `{s}`")),
        },
        _ => Err(format!(
            "`{tag}` is none of `$bin`, `$map`, `$ext`, `$float` (a map with one `$` key is \
             written {{\"$map\": [[key, value]]}})"
        )),
    }
}

/// A key as JSON: a string when it is UTF-8, else `{"$bin": …}`.
pub fn key_to_json(key: &[u8]) -> Json {
    match std::str::from_utf8(key) {
        Ok(text) => Json::String(text.to_owned()),
        Err(_) => json!({ "$bin": BASE64.encode(key) }),
    }
}

/// A key's bytes from JSON: a string (its UTF-8 bytes) or `{"$bin": …}`.
pub fn key_from_json(json: &Json) -> Result<Vec<u8>, String> {
    match json {
        Json::String(text) => Ok(text.as_bytes().to_vec()),
        other => match from_json(other) {
            Ok(Value::Bin(bytes)) => Ok(bytes),
            _ => Err("a key is a string or {\"$bin\": \"<base64>\"}".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_survives_json_and_back() {
        let values = [
            Value::Nil,
            Value::UInt(u64::MAX),
            Value::Int(-5),
            Value::F64(0.5),
            Value::F64(f64::INFINITY),
            Value::Str("word".into()),
            Value::Bin(vec![0, 255]),
            Value::Array(vec![Value::UInt(3), Value::Nil]),
            Value::Map(vec![(Value::Str("a".into()), Value::Bool(true))]),
            Value::Map(vec![(Value::UInt(1), Value::Str("one".into()))]),
            Value::Map(vec![(
                Value::Str("$bin".into()),
                Value::Str("not bytes".into()),
            )]),
            Value::Ext(7, vec![1, 2]),
        ];
        for value in values {
            let json = to_json(&value);
            assert_eq!(from_json(&json).unwrap(), value, "{json}");
        }
        let nan = from_json(&to_json(&Value::F32(f32::NAN))).unwrap();
        assert!(matches!(nan, Value::F64(x) if x.is_nan()));
    }

    #[test]
    fn keys_are_strings_when_they_are_utf8() {
        assert_eq!(key_to_json(b"apple"), json!("apple"));
        assert_eq!(key_to_json(&[0xff]), json!({"$bin": "/w=="}));
        assert_eq!(key_from_json(&json!({"$bin": "/w=="})).unwrap(), [0xff]);
        assert_eq!(key_from_json(&json!("é")).unwrap(), "é".as_bytes());
        assert!(key_from_json(&json!(3)).is_err());
        let unknown = from_json(&json!({"$hex": "ff"})).unwrap_err();
        assert!(unknown.contains("`$hex` is none of"), "{unknown}");
    }
}
