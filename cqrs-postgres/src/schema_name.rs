//! The schema a store lives in: a name checked before it reaches SQL.

use crate::error::{Error, Result};

/// A validated PostgreSQL schema name: lower-case letters, digits and
/// underscores, so it can be quoted into SQL without any user input reaching
/// the statement unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaName(String);

impl SchemaName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`] unless `name` is 1 to 63 characters of
    /// `a-z`, `0-9` and `_`, not starting with a digit.
    pub fn new(name: &str) -> Result<Self> {
        let valid = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::InvalidSchemaName(name.to_owned()))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier, for qualifying the names of
    /// your own tables in the same schema (`format!("{}.balances", schema.quoted())`).
    pub fn quoted(&self) -> String {
        // Validation admits no quote character; quoting keeps reserved words usable.
        format!("\"{}\"", self.0)
    }

    /// A 64-bit FNV-1a hash of the name. Processes built by other Rust
    /// versions or on other platforms derive names and lock keys from it that
    /// must agree, which std's hashers do not promise.
    pub(crate) fn fingerprint(&self) -> u64 {
        const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        self.0.bytes().fold(OFFSET_BASIS, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
    }
}

impl Default for SchemaName {
    fn default() -> Self {
        Self("public".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(SchemaName::new("events_v2").is_ok());
        assert!(SchemaName::new("_private").is_ok());
        for bad in [
            "",
            "Events",
            "a-b",
            "x\"; drop table events; --",
            "1st",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(SchemaName::new(bad), Err(Error::InvalidSchemaName(_))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            SchemaName::new("select").expect("valid").quoted(),
            "\"select\""
        );
    }

    #[test]
    fn the_fingerprint_is_fnv_1a_64() {
        // Reference values of the published FNV-1a 64 test vectors.
        let fingerprint = |name: &str| SchemaName(name.to_owned()).fingerprint();
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint("foobar"), 0x8594_4171_f739_67e8);
    }
}
