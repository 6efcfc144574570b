//! Refusing values that JSON would not carry faithfully, before they are
//! written.
//!
//! `serde_json` writes a non-finite float (`NaN`, `±inf`) as `null` and
//! writes nesting of any depth, but reads back neither: a `null` where an
//! `f64` is expected does not decode, and its parser stops at
//! [`MAX_DEPTH`] levels. Stored that way, an event could never be read again.
//! This walk goes through the value the way the serializer would and names
//! the first place that would not survive the trip.

use serde::ser::{self, Serialize, Serializer};

/// The deepest nesting of arrays and objects a payload may have: the most
/// `serde_json` reads back (its parser refuses the 128th level).
pub const MAX_DEPTH: usize = 127;

/// Why a value cannot be stored faithfully.
#[derive(Debug)]
pub(crate) struct Unfaithful(String);

impl std::fmt::Display for Unfaithful {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unfaithful {}

impl ser::Error for Unfaithful {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Self(message.to_string())
    }
}

/// Where the walk is: the path from the payload's root, and how deep.
#[derive(Default)]
pub(crate) struct Walk {
    path: Vec<String>,
    depth: usize,
}

impl Walk {
    fn at(&self) -> String {
        if self.path.is_empty() {
            "the payload's root".to_owned()
        } else {
            format!("`{}`", self.path.concat())
        }
    }

    fn enter(&mut self, levels: usize) -> Result<(), Unfaithful> {
        self.depth += levels;
        if self.depth > MAX_DEPTH {
            return Err(Unfaithful(format!(
                "nested deeper than {MAX_DEPTH} levels at {}: JSON readers refuse it",
                self.at()
            )));
        }
        Ok(())
    }

    fn within<T: Serialize + ?Sized>(
        &mut self,
        segment: String,
        value: &T,
    ) -> Result<(), Unfaithful> {
        self.path.push(segment);
        value.serialize(Check(self))?;
        self.path.pop();
        Ok(())
    }

    fn float(&self, finite: bool) -> Result<(), Unfaithful> {
        if finite {
            Ok(())
        } else {
            Err(Unfaithful(format!(
                "non-finite number (NaN or infinity) at {}: JSON has no such number and would store null",
                self.at()
            )))
        }
    }
}

/// A serializer that writes nothing and checks everything.
pub(crate) struct Check<'a>(pub(crate) &'a mut Walk);

/// The state of a compound value being walked; `levels` are the JSON levels
/// it opened, closed again at its end.
pub(crate) struct Compound<'a> {
    walk: &'a mut Walk,
    levels: usize,
    index: usize,
}

impl<'a> Compound<'a> {
    fn open(walk: &'a mut Walk, levels: usize) -> Result<Self, Unfaithful> {
        walk.enter(levels)?;
        Ok(Self {
            walk,
            levels,
            index: 0,
        })
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        let segment = format!("[{}]", self.index);
        self.index += 1;
        self.walk.within(segment, value)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unfaithful> {
        self.walk.within(format!(".{key}"), value)
    }

    fn close(self) -> Result<(), Unfaithful> {
        self.walk.depth -= self.levels;
        Ok(())
    }
}

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _value: $ty) -> Result<(), Unfaithful> {
            Ok(())
        })*
    };
}

impl<'a> Serializer for Check<'a> {
    type Ok = ();
    type Error = Unfaithful;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_f32(self, value: f32) -> Result<(), Unfaithful> {
        self.0.float(value.is_finite())
    }

    fn serialize_f64(self, value: f64) -> Result<(), Unfaithful> {
        self.0.float(value.is_finite())
    }

    fn serialize_none(self) -> Result<(), Unfaithful> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unfaithful> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unfaithful> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unfaithful> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), Unfaithful> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unfaithful> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unfaithful> {
        // Written as `{"variant": value}`: one object level.
        let mut compound = Compound::open(self.0, 1)?;
        compound.field(variant, value)?;
        compound.close()
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, Unfaithful> {
        Compound::open(self.0, 1)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, Unfaithful> {
        Compound::open(self.0, 1)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Unfaithful> {
        Compound::open(self.0, 1)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Unfaithful> {
        // `{"variant": [...]}`: two levels.
        self.0.path.push(format!(".{variant}"));
        Compound::open(self.0, 2)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, Unfaithful> {
        Compound::open(self.0, 1)
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Unfaithful> {
        Compound::open(self.0, 1)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Unfaithful> {
        // `{"variant": {...}}`: two levels.
        self.0.path.push(format!(".{variant}"));
        Compound::open(self.0, 2)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        self.element(value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.walk.path.pop();
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unfaithful> {
        // Keys are written as strings; what a key is named only matters for
        // the message, so one that does not print is shown as `?`.
        let name = serde_json::to_string(key).unwrap_or_else(|_| "?".to_owned());
        self.walk.path.push(format!("[{name}]"));
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unfaithful> {
        value.serialize(Check(self.walk))?;
        self.walk.path.pop();
        Ok(())
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.close()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unfaithful> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Unfaithful;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unfaithful> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Unfaithful> {
        self.walk.path.pop();
        self.close()
    }
}
