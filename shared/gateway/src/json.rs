//! A response's protobuf bytes written straight out as REST's JSON, without decoding them into a
//! `DynamicMessage` first.
//!
//! The gateway's reference transcoding ([`super::response::to_json`]) decodes the answer into a
//! `DynamicMessage` (a map of boxed values per message), serializes that into a `serde_json::Value`
//! tree, adds the `null`s, and serializes the tree again. This module walks the wire format once,
//! against the method's output descriptor, and writes the same JSON into one buffer: fields in field
//! number order, every field without presence (defaults included), `null` for an unset field with
//! presence, 64-bit integers as numbers, `Timestamp` as RFC 3339, bytes as padded base64, enums by name.
//!
//! It covers every type the StreamBank protos use and every scalar kind. A message type that needs more
//! (a map, or a well-known type other than `Timestamp` and `Empty`) is not [`supported`]; the gateway
//! then takes the reference path for that method. Tests hold this module's output equal to the
//! reference's for every response type of the route table and for a message with every scalar kind.
//!
//! As in prost's decoding, the last value of a singular scalar wins, the occurrences of a singular
//! message merge, repeated scalars may be packed or not, and unknown fields are skipped. Bytes that are
//! not a valid encoding of the message are an error, never a panic.

use std::collections::HashSet;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

/// Why bytes could not be written as the message's JSON.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("the message ends inside a field")]
    Truncated,
    #[error("a varint is longer than 64 bits")]
    VarintTooLong,
    #[error("field {0} has wire type {1}, which its kind cannot have")]
    WireType(u32, u8),
    #[error("field number 0, or an unknown wire type")]
    BadTag,
    #[error("a string field is not UTF-8")]
    Utf8,
    #[error("a Timestamp is out of range")]
    Timestamp,
    #[error("messages are nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// Deeper than this is refused (prost's own recursion limit is 100).
const MAX_DEPTH: usize = 64;

/// Whether this module can write every message reachable from `desc`.
pub fn supported(desc: &MessageDescriptor) -> bool {
    fn walk(desc: &MessageDescriptor, seen: &mut HashSet<String>) -> bool {
        if !seen.insert(desc.full_name().to_owned()) {
            return true;
        }
        match desc.full_name() {
            "google.protobuf.Timestamp" | "google.protobuf.Empty" => return true,
            name if name.starts_with("google.protobuf.") => return false,
            _ => {}
        }
        desc.fields().all(|field| {
            !field.is_map()
                && match field.kind() {
                    Kind::Message(child) => walk(&child, seen),
                    _ => true,
                }
        })
    }
    walk(desc, &mut HashSet::new())
}

/// One field occurrence on the wire.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

impl Raw<'_> {
    /// The wire type this occurrence came with.
    fn wire_type(self) -> u8 {
        match self {
            Raw::Varint(_) => 0,
            Raw::Fixed64(_) => 1,
            Raw::Len(_) => 2,
            Raw::Fixed32(_) => 5,
        }
    }
}

/// Writes the message encoded in `bytes` as JSON. `desc` must be [`supported`].
pub fn write_message(
    desc: &MessageDescriptor,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TranscodeError> {
    message(desc, &[bytes], out, 0)
}

/// Writes only `field` of the message encoded in `bytes` (a `response_body` rule).
pub fn write_field(
    field: &FieldDescriptor,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TranscodeError> {
    let raws = fields(&[bytes])?;
    value_of(field, &raws, out, 0)
}

/// The occurrences of every field in `chunks` (the parts of one message, in order), in wire order.
fn fields<'a>(chunks: &[&'a [u8]]) -> Result<Vec<(u32, Raw<'a>)>, TranscodeError> {
    let mut raws = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while !input.is_empty() {
            let tag = varint(&mut input)?;
            let number = u32::try_from(tag >> 3).map_err(|_| TranscodeError::BadTag)?;
            if number == 0 {
                return Err(TranscodeError::BadTag);
            }
            let raw = match tag & 7 {
                0 => Raw::Varint(varint(&mut input)?),
                1 => Raw::Fixed64(fixed64(&mut input)?),
                2 => {
                    let len = usize::try_from(varint(&mut input)?)
                        .map_err(|_| TranscodeError::Truncated)?;
                    Raw::Len(take(&mut input, len)?)
                }
                5 => Raw::Fixed32(fixed32(&mut input)?),
                // Groups (3, 4) are proto2 only and not in any StreamBank message.
                _ => return Err(TranscodeError::BadTag),
            };
            raws.push((number, raw));
        }
    }
    Ok(raws)
}

fn message(
    desc: &MessageDescriptor,
    chunks: &[&[u8]],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), TranscodeError> {
    if depth > MAX_DEPTH {
        return Err(TranscodeError::TooDeep);
    }
    let raws = fields(chunks)?;
    match desc.full_name() {
        "google.protobuf.Timestamp" => return timestamp(&raws, out),
        "google.protobuf.Empty" => {
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        _ => {}
    }
    out.push(b'{');
    for (i, field) in desc.fields().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(field.name(), out);
        out.push(b':');
        value_of(&field, &raws, out, depth)?;
    }
    out.push(b'}');
    Ok(())
}

/// The JSON value of `field` given all the occurrences of the message's fields.
fn value_of(
    field: &FieldDescriptor,
    raws: &[(u32, Raw<'_>)],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), TranscodeError> {
    let number = field.number();
    let mut mine = raws
        .iter()
        .filter(|(n, _)| *n == number)
        .map(|(_, raw)| *raw);
    let kind = field.kind();
    if field.is_list() {
        out.push(b'[');
        let mut first = true;
        for raw in mine {
            match (raw, &kind) {
                (Raw::Len(bytes), kind) if packable(kind) => {
                    let mut input = bytes;
                    while !input.is_empty() {
                        let item = match fixed_width(kind) {
                            Some(8) => Raw::Fixed64(fixed64(&mut input)?),
                            Some(_) => Raw::Fixed32(fixed32(&mut input)?),
                            None => Raw::Varint(varint(&mut input)?),
                        };
                        comma(&mut first, out);
                        scalar(number, kind, item, out)?;
                    }
                }
                (Raw::Len(bytes), Kind::Message(child)) => {
                    comma(&mut first, out);
                    message(child, &[bytes], out, depth + 1)?;
                }
                (raw, kind) => {
                    comma(&mut first, out);
                    scalar(number, kind, raw, out)?;
                }
            }
        }
        out.push(b']');
        return Ok(());
    }
    if let Kind::Message(child) = &kind {
        let mut chunks = Vec::new();
        for raw in mine {
            match raw {
                Raw::Len(bytes) => chunks.push(bytes),
                raw => return Err(TranscodeError::WireType(number, raw.wire_type())),
            }
        }
        if chunks.is_empty() {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        return message(child, &chunks, out, depth + 1);
    }
    match mine.next_back() {
        Some(raw) => scalar(number, &kind, raw, out),
        None if field.supports_presence() => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        None => default(&kind, out),
    }
}

fn comma(first: &mut bool, out: &mut Vec<u8>) {
    if !std::mem::take(first) {
        out.push(b',');
    }
}

/// Whether a repeated field of this kind may come packed.
fn packable(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

/// Bytes per value of a fixed-width kind; `None` for varints.
fn fixed_width(kind: &Kind) -> Option<usize> {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => Some(8),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => Some(4),
        _ => None,
    }
}

/// Truncating casts below are the wire format's rules: an `int32` travels as a sign-extended varint,
/// and its low 32 bits are the value.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
fn scalar(number: u32, kind: &Kind, raw: Raw<'_>, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    match (kind, raw) {
        (Kind::Int64, Raw::Varint(v)) => integer(v as i64, out),
        (Kind::Uint64, Raw::Varint(v)) => integer(v, out),
        (Kind::Int32, Raw::Varint(v)) => integer(v as i32, out),
        (Kind::Uint32, Raw::Varint(v)) => integer(v as u32, out),
        (Kind::Sint64, Raw::Varint(v)) => integer(((v >> 1) as i64) ^ -((v & 1) as i64), out),
        (Kind::Sint32, Raw::Varint(v)) => {
            let v = v as u32;
            integer(((v >> 1) as i32) ^ -((v & 1) as i32), out);
        }
        (Kind::Bool, Raw::Varint(v)) => {
            out.extend_from_slice(if v != 0 { b"true" } else { b"false" });
        }
        (Kind::Enum(desc), Raw::Varint(v)) => match desc.get_value(v as i32) {
            Some(value) => string(value.name(), out),
            None => integer(v as i32, out),
        },
        (Kind::Fixed64, Raw::Fixed64(v)) => integer(v, out),
        (Kind::Sfixed64, Raw::Fixed64(v)) => integer(v as i64, out),
        (Kind::Fixed32, Raw::Fixed32(v)) => integer(v, out),
        (Kind::Sfixed32, Raw::Fixed32(v)) => integer(v as i32, out),
        (Kind::Double, Raw::Fixed64(v)) => float(f64::from_bits(v), out),
        (Kind::Float, Raw::Fixed32(v)) => float(f64::from(f32::from_bits(v)), out),
        (Kind::String, Raw::Len(bytes)) => string(
            std::str::from_utf8(bytes).map_err(|_| TranscodeError::Utf8)?,
            out,
        ),
        (Kind::Bytes, Raw::Len(bytes)) => {
            out.push(b'"');
            out.extend_from_slice(BASE64_STANDARD.encode(bytes).as_bytes());
            out.push(b'"');
        }
        (_, raw) => return Err(TranscodeError::WireType(number, raw.wire_type())),
    }
    Ok(())
}

/// An integer as a JSON number (serde_json formats it with `itoa`).
fn integer(value: impl serde::Serialize, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// proto3 JSON's default of a scalar kind that is not on the wire.
fn default(kind: &Kind, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    match kind {
        Kind::Bool => out.extend_from_slice(b"false"),
        Kind::String | Kind::Bytes => out.extend_from_slice(b"\"\""),
        Kind::Double | Kind::Float => float(0.0, out),
        Kind::Enum(desc) => match desc.get_value(0) {
            Some(value) => string(value.name(), out),
            None => out.push(b'0'),
        },
        _ => out.push(b'0'),
    }
    Ok(())
}

/// A float as the reference writes it: through `f64` (a `serde_json::Value` keeps no `f32`), the
/// non-finite values as the strings proto3 JSON names them.
fn float(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        // serde_json writes a finite f64 with ryu, as `to_vec(&Value)` does.
        let _ = serde_json::to_writer(&mut *out, &value);
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn string(value: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `Timestamp { seconds = 1, nanos = 2 }` as RFC 3339, in the range proto3 JSON allows.
fn timestamp(raws: &[(u32, Raw<'_>)], out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let mut ts = prost_types::Timestamp::default();
    for (number, raw) in raws {
        match (number, raw) {
            (1, Raw::Varint(v)) => ts.seconds = *v as i64,
            #[allow(clippy::cast_possible_truncation)]
            (2, Raw::Varint(v)) => ts.nanos = *v as i32,
            (1 | 2, raw) => return Err(TranscodeError::WireType(*number, raw.wire_type())),
            _ => {}
        }
    }
    // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, as prost-reflect checks.
    if !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(TranscodeError::Timestamp);
    }
    use std::io::Write as _;
    let _ = write!(out, "\"{ts}\"");
    Ok(())
}

fn varint(input: &mut &[u8]) -> Result<u64, TranscodeError> {
    let mut value = 0_u64;
    for i in 0..10 {
        let (&byte, rest) = input.split_first().ok_or(TranscodeError::Truncated)?;
        *input = rest;
        // The tenth byte holds bit 63 only; more would overflow, which prost refuses too.
        if i == 9 && byte > 1 {
            return Err(TranscodeError::VarintTooLong);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(TranscodeError::VarintTooLong)
}

fn fixed64(input: &mut &[u8]) -> Result<u64, TranscodeError> {
    let bytes = take(input, 8)?;
    Ok(u64::from_le_bytes(
        bytes.try_into().map_err(|_| TranscodeError::Truncated)?,
    ))
}

fn fixed32(input: &mut &[u8]) -> Result<u32, TranscodeError> {
    let bytes = take(input, 4)?;
    Ok(u32::from_le_bytes(
        bytes.try_into().map_err(|_| TranscodeError::Truncated)?,
    ))
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], TranscodeError> {
    if input.len() < len {
        return Err(TranscodeError::Truncated);
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_reflect::{DescriptorPool, DynamicMessage, Value};
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{
        DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
        FileDescriptorProto,
    };

    use super::*;
    use crate::response::to_json;
    use crate::routes::RouteTable;

    /// A message of `desc` with every field set (messages `depth` levels down), the values and which
    /// fields with presence stay unset varying with `seed`.
    fn populated(desc: &MessageDescriptor, seed: u64, depth: usize) -> DynamicMessage {
        let mut message = DynamicMessage::new(desc.clone());
        if desc.full_name() == "google.protobuf.Timestamp" {
            message.set_field_by_name("seconds", Value::I64(1_700_000_000 + (seed as i64) * 7919));
            let nanos = [0, 5_000_000, 123_456_000, 999_999_999][(seed % 4) as usize];
            message.set_field_by_name("nanos", Value::I32(nanos));
            return message;
        }
        for (i, field) in desc.fields().enumerate() {
            let seed = seed.wrapping_mul(31).wrapping_add(i as u64 + 1);
            if field.supports_presence() && seed.is_multiple_of(3) {
                continue; // left unset: null in the JSON
            }
            let one = |seed: u64| -> Option<Value> {
                Some(match field.kind() {
                    Kind::Message(_) if depth == 0 => return None,
                    Kind::Message(child) => Value::Message(populated(&child, seed, depth - 1)),
                    Kind::Double => Value::F64(seed as f64 * -0.25),
                    Kind::Float => Value::F32(seed as f32 * 0.1),
                    Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                        Value::I32(-(seed as i32 % 100_000))
                    }
                    Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                        Value::I64(-(seed as i64) * 1_000_003)
                    }
                    Kind::Uint32 | Kind::Fixed32 => Value::U32(seed as u32 % 100_000),
                    Kind::Uint64 | Kind::Fixed64 => Value::U64(seed * 1_000_003),
                    Kind::Bool => Value::Bool(seed % 2 == 1),
                    Kind::String => Value::String(format!("s{seed} \"quoted\" é \u{1}")),
                    Kind::Bytes => Value::Bytes(vec![seed as u8, 0, 255].into()),
                    Kind::Enum(e) => Value::EnumNumber(
                        e.values()
                            .nth(seed as usize % e.values().len())
                            .map_or(7, |v| v.number()),
                    ),
                })
            };
            let value = if field.is_list() {
                let items: Vec<Value> = (0..seed % 3).filter_map(|k| one(seed + k)).collect();
                Value::List(items)
            } else {
                match one(seed) {
                    Some(value) => value,
                    None => continue,
                }
            };
            message.set_field(&field, value);
        }
        message
    }

    fn both_ways(desc: &MessageDescriptor, bytes: &[u8]) -> (serde_json::Value, serde_json::Value) {
        let mut out = Vec::new();
        write_message(desc, bytes, &mut out).expect("direct");
        let direct: serde_json::Value = serde_json::from_slice(&out).expect("direct JSON parses");
        let message = DynamicMessage::decode(desc.clone(), bytes).expect("reference decode");
        // Both through serde_json's parser, so that its float parsing is the same on both sides.
        let reference = serde_json::to_vec(&to_json(&message).expect("reference")).expect("bytes");
        (
            direct,
            serde_json::from_slice(&reference).expect("reference parses"),
        )
    }

    #[test]
    fn every_response_of_the_route_table_is_written_as_the_reference_writes_it() {
        let pool = streambank_proto::descriptor_pool();
        let routes = RouteTable::from_pool(&pool).expect("routes");
        let mut checked = 0;
        for route in routes.routes() {
            let output = route.output();
            assert!(
                route.direct_json,
                "{} takes the direct path",
                output.full_name()
            );
            for seed in 0..12 {
                let bytes = populated(&output, seed, 3).encode_to_vec();
                let (direct, reference) = both_ways(&output, &bytes);
                assert_eq!(direct, reference, "{} seed {seed}", output.full_name());
                if let Some(field) = &route.response_body {
                    let mut out = Vec::new();
                    write_field(field, &bytes, &mut out).expect("field");
                    let field_json: serde_json::Value =
                        serde_json::from_slice(&out).expect("parses");
                    assert_eq!(field_json, reference[field.name()]);
                }
                checked += 1;
            }
        }
        assert!(checked >= 12 * 10, "every route checked ({checked})");
    }

    /// A message with every scalar kind, singular and repeated, an enum, a nested message and a
    /// Timestamp, in a pool of its own next to StreamBank's.
    fn every_kind() -> MessageDescriptor {
        let scalar = [
            Type::Double,
            Type::Float,
            Type::Int64,
            Type::Uint64,
            Type::Int32,
            Type::Fixed64,
            Type::Fixed32,
            Type::Bool,
            Type::String,
            Type::Bytes,
            Type::Uint32,
            Type::Sfixed32,
            Type::Sfixed64,
            Type::Sint32,
            Type::Sint64,
        ];
        let field = |name: String, number: i32, label: Label, ty: Type, type_name: Option<&str>| {
            FieldDescriptorProto {
                name: Some(name),
                number: Some(number),
                label: Some(label as i32),
                r#type: Some(ty as i32),
                type_name: type_name.map(str::to_owned),
                ..Default::default()
            }
        };
        let mut fields = Vec::new();
        for (i, ty) in scalar.iter().enumerate() {
            let n = i32::try_from(i).expect("small");
            fields.push(field(
                format!("single_{n}"),
                1 + n,
                Label::Optional,
                *ty,
                None,
            ));
            fields.push(field(
                format!("many_{n}"),
                101 + n,
                Label::Repeated,
                *ty,
                None,
            ));
        }
        fields.push(field(
            "colour".into(),
            200,
            Label::Optional,
            Type::Enum,
            Some(".t.Colour"),
        ));
        fields.push(field(
            "colours".into(),
            201,
            Label::Repeated,
            Type::Enum,
            Some(".t.Colour"),
        ));
        fields.push(field(
            "child".into(),
            202,
            Label::Optional,
            Type::Message,
            Some(".t.All"),
        ));
        fields.push(field(
            "at".into(),
            203,
            Label::Optional,
            Type::Message,
            Some(".google.protobuf.Timestamp"),
        ));
        let file = FileDescriptorProto {
            name: Some("t/all.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            dependency: vec!["google/protobuf/timestamp.proto".into()],
            message_type: vec![DescriptorProto {
                name: Some("All".into()),
                field: fields,
                ..Default::default()
            }],
            enum_type: vec![EnumDescriptorProto {
                name: Some("Colour".into()),
                value: ["COLOUR_UNSPECIFIED", "RED", "GREEN"]
                    .iter()
                    .zip(0..)
                    .map(|(name, number)| EnumValueDescriptorProto {
                        name: Some((*name).into()),
                        number: Some(number),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut pool: DescriptorPool = streambank_proto::descriptor_pool();
        pool.add_file_descriptor_proto(file).expect("test file");
        pool.get_message_by_name("t.All").expect("t.All")
    }

    #[test]
    fn every_scalar_kind_enums_and_nesting_match_the_reference() {
        let all = every_kind();
        assert!(supported(&all));
        for seed in 0..40 {
            let bytes = populated(&all, seed, 2).encode_to_vec();
            let (direct, reference) = both_ways(&all, &bytes);
            assert_eq!(direct, reference, "seed {seed}");
        }
        // The empty message: every default, nulls for the unset messages.
        let (direct, reference) = both_ways(&all, &[]);
        assert_eq!(direct, reference);
        assert_eq!(direct["single_2"], 0);
        assert_eq!(direct["colour"], "COLOUR_UNSPECIFIED");
        assert_eq!(direct["child"], serde_json::Value::Null);
        assert_eq!(direct["many_8"], serde_json::json!([]));
    }

    #[test]
    fn last_scalar_wins_messages_merge_unpacked_lists_and_unknown_fields_are_read_as_prost_reads_them()
     {
        let all = every_kind();
        let mut bytes = Vec::new();
        // single_2 (int64, field 3) twice: the second wins.
        bytes.extend([3 << 3, 5, 3 << 3, 9]);
        // many_2 (repeated int64, field 103) unpacked, then packed: [1, 2, 3].
        bytes.extend([0xb8, 0x06, 1, 0xb8, 0x06, 2, 0xba, 0x06, 1, 3]);
        // child (field 202) twice, each with another field set: they merge.
        bytes.extend([0xd2, 0x0c, 2, 3 << 3, 4, 0xd2, 0x0c, 2, 5 << 3, 6]);
        // An unknown varint field 999.
        bytes.extend([0xb8, 0x3e, 1]);
        // An enum value the descriptor does not name.
        bytes.extend([0xc0, 0x0c, 42]);
        let (direct, reference) = both_ways(&all, &bytes);
        assert_eq!(direct, reference);
        assert_eq!(direct["single_2"], 9);
        assert_eq!(direct["many_2"], serde_json::json!([1, 2, 3]));
        assert_eq!(direct["child"]["single_2"], 4);
        assert_eq!(direct["child"]["single_4"], 6);
        assert_eq!(direct["colour"], 42);
    }

    #[test]
    fn bytes_that_are_not_the_message_are_an_error_not_a_panic() {
        let all = every_kind();
        let good = populated(&all, 5, 2).encode_to_vec();
        // Every truncation of a good message, and every single-byte corruption of its first 64 bytes:
        // no panic, and whenever the reference refuses the bytes the direct path refuses them too.
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 0..good.len().min(64) {
            for byte in [0x00, 0x07, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = byte;
                cases.push(bad);
            }
        }
        cases.push(vec![0xff; 11]); // a varint too long
        cases.push(vec![0x02 << 3 | 2, 0x7f]); // a length beyond the end
        for bytes in cases {
            let mut out = Vec::new();
            let direct = write_message(&all, &bytes, &mut out);
            match DynamicMessage::decode(all.clone(), bytes.as_slice()) {
                Err(e) => assert!(direct.is_err(), "{e}: {bytes:?} is refused"),
                // Bytes both accept are written alike (an unknown group is the one thing the
                // reference skips and the direct path refuses).
                Ok(_) if direct.is_ok() => {
                    let (direct, reference) = both_ways(&all, &bytes);
                    assert_eq!(direct, reference, "{bytes:?}");
                }
                Ok(_) => {}
            }
        }
        assert!(matches!(
            write_message(&all, &[0xff; 11], &mut Vec::new()),
            Err(TranscodeError::VarintTooLong)
        ));
    }

    #[test]
    fn types_it_cannot_write_are_left_to_the_reference_path() {
        let pool = streambank_proto::descriptor_pool();
        // A well-known type other than Timestamp and Empty.
        let set = pool
            .get_message_by_name("google.protobuf.FileDescriptorSet")
            .expect("descriptor.proto is in the pool");
        assert!(!supported(&set));
        assert!(supported(&every_kind()));
    }
}
