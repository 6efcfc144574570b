//! Turning one variant of an event enum into a stored payload and back.
//!
//! The stored payload holds only the variant's content (`{"amount": 100}`),
//! not serde's enum wrapper (`{"DepositMade": {"amount": 100}}`): the variant is
//! already named by the stored event type, and keeping it out of the payload
//! lets a Rust variant be renamed without touching stored rows. Both directions
//! stream through serde directly, with no intermediate `serde_json::Value`.
//!
//! The enum must use serde's default (externally tagged) representation.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize, Serializer};
use serde_json::value::RawValue;

mod faithful;

pub use faithful::MAX_DEPTH;

/// Serializes the content of the variant `event` holds (`null` for a unit variant).
///
/// # Errors
///
/// Fails when `event` is not an enum, its content does not serialize, or the
/// payload would not read back: a non-finite float anywhere in it (JSON would
/// store `null`), or nesting deeper than [`MAX_DEPTH`]. The message names
/// the field.
pub fn encode_variant<E: Serialize + ?Sized>(
    event: &E,
) -> Result<Box<RawValue>, serde_json::Error> {
    let content = VariantContent(event);
    content
        .serialize(faithful::Check(&mut faithful::Walk::default()))
        .map_err(<serde_json::Error as ser::Error>::custom)?;
    serde_json::value::to_raw_value(&content)
}

/// Checks that `value` would read back from its JSON: no non-finite float,
/// no nesting deeper than [`MAX_DEPTH`]. The message names the field.
pub(crate) fn check_faithful<T: Serialize + ?Sized>(value: &T) -> Result<(), String> {
    value
        .serialize(faithful::Check(&mut faithful::Walk::default()))
        .map_err(|error| error.to_string())
}

/// Deserializes variant number `variant_index` (in declaration order) of `E`
/// from a payload written by [`encode_variant`].
///
/// # Errors
///
/// Fails when the payload does not match the variant's shape, or when `E` has
/// no variant with that index.
pub fn decode_variant<E: de::DeserializeOwned>(
    variant_index: u32,
    payload: &str,
) -> Result<E, serde_json::Error> {
    let mut content = serde_json::Deserializer::from_str(payload);
    let event = E::deserialize(VariantDeserializer {
        variant_index,
        content: &mut content,
    })?;
    content.end()?;
    Ok(event)
}

/// Serializes a value through [`ContentSerializer`].
struct VariantContent<'a, E: ?Sized>(&'a E);

impl<E: Serialize + ?Sized> Serialize for VariantContent<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(ContentSerializer(serializer))
    }
}

/// A serializer that accepts only enum variants and writes their content,
/// leaving out the variant tag.
struct ContentSerializer<S>(S);

const NOT_AN_ENUM: &str = "an event must be an enum using serde's default representation";

fn not_an_enum<E: ser::Error>() -> E {
    E::custom(NOT_AN_ENUM)
}

/// Forwards the elements of a tuple variant to the inner serializer's tuple.
struct TupleContent<T>(T);

impl<T: ser::SerializeTuple> ser::SerializeTupleVariant for TupleContent<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), T::Error> {
        self.0.serialize_element(value)
    }

    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

/// Forwards the fields of a struct variant to the inner serializer's struct.
struct StructContent<T>(T);

impl<T: ser::SerializeStruct> ser::SerializeStructVariant for StructContent<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), T::Error> {
        self.0.serialize_field(key, value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), T::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

macro_rules! reject_non_enum {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _value: $ty) -> Result<S::Ok, S::Error> {
            Err(not_an_enum())
        })*
    };
}

impl<S: Serializer> Serializer for ContentSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = TupleContent<S::SerializeTuple>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = StructContent<S::SerializeStruct>;

    reject_non_enum!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(self.0)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple(len).map(TupleContent)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0.serialize_struct(name, len).map(StructContent)
    }
}

/// Presents "variant `variant_index` with this content" to an enum's
/// `Deserialize` impl, as if it had read serde's externally tagged form.
struct VariantDeserializer<D> {
    variant_index: u32,
    content: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for VariantDeserializer<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de, D: Deserializer<'de>> de::EnumAccess<'de> for VariantDeserializer<D> {
    type Error = D::Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), D::Error> {
        // serde's derived variant identifiers accept the variant's index.
        let index: de::value::U32Deserializer<D::Error> = self.variant_index.into_deserializer();
        Ok((seed.deserialize(index)?, self))
    }
}

impl<'de, D: Deserializer<'de>> de::VariantAccess<'de> for VariantDeserializer<D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        <() as de::Deserialize>::deserialize(self.content)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, D::Error> {
        seed.deserialize(self.content)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.content.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.content.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Unit,
        Newtype(u32),
        Tuple(u8, String),
        Struct {
            amount: i64,
            #[serde(default)]
            note: Option<String>,
        },
        #[serde(rename = "renamed_by_serde")]
        Renamed {
            flag: bool,
        },
    }

    fn round_trip(index: u32, event: Sample, expected_payload: &str) {
        let payload = encode_variant(&event).expect("encodes");
        assert_eq!(payload.get(), expected_payload);
        let decoded: Sample = decode_variant(index, payload.get()).expect("decodes");
        assert_eq!(decoded, event);
    }

    #[test]
    fn payload_holds_only_the_variant_content() {
        round_trip(0, Sample::Unit, "null");
        round_trip(1, Sample::Newtype(7), "7");
        round_trip(2, Sample::Tuple(1, "x".into()), r#"[1,"x"]"#);
        round_trip(
            3,
            Sample::Struct {
                amount: -5,
                note: None,
            },
            r#"{"amount":-5,"note":null}"#,
        );
        round_trip(4, Sample::Renamed { flag: true }, r#"{"flag":true}"#);
    }

    #[test]
    fn struct_variant_content_keeps_serde_field_defaults() {
        let payload = RawValue::from_string(r#"{"amount":3}"#.into()).expect("json");
        let decoded: Sample = decode_variant(3, payload.get()).expect("decodes");
        assert_eq!(
            decoded,
            Sample::Struct {
                amount: 3,
                note: None
            }
        );
    }

    #[test]
    fn mismatched_payload_is_an_error_naming_the_problem() {
        let payload = RawValue::from_string(r#"{"amount":"lots"}"#.into()).expect("json");
        let error = decode_variant::<Sample>(3, payload.get()).expect_err("wrong type");
        assert!(error.to_string().contains("invalid type"), "{error}");

        let error = decode_variant::<Sample>(9, payload.get()).expect_err("no such variant");
        assert!(error.to_string().contains("variant index"), "{error}");
    }

    #[test]
    fn non_enum_values_are_rejected() {
        let error = encode_variant(&42_u8).expect_err("not an enum");
        assert!(error.to_string().contains("must be an enum"), "{error}");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Reading {
        samples: Vec<Option<f64>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Measured {
        Plain(f64),
        Nested(Reading),
        Deep(serde_json::Value),
        Single(f32),
    }

    #[test]
    fn non_finite_floats_are_refused_naming_the_field() {
        for (event, at) in [
            (Measured::Plain(f64::NAN), "root"),
            (
                Measured::Nested(Reading {
                    samples: vec![Some(1.0), Some(f64::INFINITY)],
                }),
                "`.samples[1]`",
            ),
            (Measured::Single(f32::NEG_INFINITY), "root"),
        ] {
            let error = encode_variant(&event).expect_err("non-finite float");
            let message = error.to_string();
            assert!(message.contains("non-finite"), "{message}");
            assert!(message.contains(at), "{message} should name {at}");
        }
        let finite = Measured::Nested(Reading {
            samples: vec![None, Some(-0.5)],
        });
        let payload = encode_variant(&finite).expect("finite floats encode");
        assert_eq!(
            decode_variant::<Measured>(1, payload.get()).expect("decodes"),
            finite
        );
    }

    fn nested(levels: usize) -> serde_json::Value {
        (0..levels).fold(serde_json::Value::Null, |inner, _| {
            serde_json::Value::Array(vec![inner])
        })
    }

    #[test]
    fn nesting_is_refused_where_readers_would_refuse_it() {
        let deepest = Measured::Deep(nested(MAX_DEPTH));
        let payload = encode_variant(&deepest).expect("the deepest readable nesting encodes");
        assert_eq!(
            decode_variant::<Measured>(2, payload.get()).expect("decodes"),
            deepest
        );

        let too_deep = Measured::Deep(nested(MAX_DEPTH + 1));
        let written = serde_json::to_string(&nested(MAX_DEPTH + 1)).expect("serde_json writes it");
        assert!(
            serde_json::from_str::<serde_json::Value>(&written).is_err(),
            "serde_json would not read it back"
        );
        let error = encode_variant(&too_deep).expect_err("too deep");
        assert!(
            error.to_string().contains("nested deeper than 127"),
            "{error}"
        );
    }
}
