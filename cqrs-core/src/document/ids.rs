//! What an `#[id]` method may return: one id, none, or several.

/// The ids of the documents an event touches, as an `#[id]` method returns
/// them: a `String` or `&str` (one), an `Option` (one or none), a `Vec`, a
/// slice or an array (several, in order; the same id twice is changed twice).
pub trait DocumentIds {
    /// Adds the ids to `ids`.
    fn push_into(self, ids: &mut Vec<String>);
}

impl DocumentIds for String {
    fn push_into(self, ids: &mut Vec<String>) {
        ids.push(self);
    }
}

impl DocumentIds for &String {
    fn push_into(self, ids: &mut Vec<String>) {
        ids.push(self.clone());
    }
}

impl DocumentIds for &str {
    fn push_into(self, ids: &mut Vec<String>) {
        ids.push(self.to_owned());
    }
}

impl<T: DocumentIds> DocumentIds for Option<T> {
    fn push_into(self, ids: &mut Vec<String>) {
        if let Some(id) = self {
            id.push_into(ids);
        }
    }
}

impl<T: DocumentIds> DocumentIds for Vec<T> {
    fn push_into(self, ids: &mut Vec<String>) {
        for id in self {
            id.push_into(ids);
        }
    }
}

impl<'a, T> DocumentIds for &'a [T]
where
    &'a T: DocumentIds,
{
    fn push_into(self, ids: &mut Vec<String>) {
        for id in self {
            id.push_into(ids);
        }
    }
}

impl<'a, T> DocumentIds for &'a Vec<T>
where
    &'a T: DocumentIds,
{
    fn push_into(self, ids: &mut Vec<String>) {
        self.as_slice().push_into(ids);
    }
}

impl<T: DocumentIds, const N: usize> DocumentIds for [T; N] {
    fn push_into(self, ids: &mut Vec<String>) {
        for id in self {
            id.push_into(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DocumentIds;

    fn ids(value: impl DocumentIds) -> Vec<String> {
        let mut ids = Vec::new();
        value.push_into(&mut ids);
        ids
    }

    #[test]
    fn every_shape_an_id_method_returns_adds_its_ids_in_order() {
        let skus = vec!["b".to_owned(), "a".to_owned()];
        assert_eq!(ids("x"), ["x"]);
        assert_eq!(ids(String::from("y")), ["y"]);
        assert_eq!(ids(None::<&str>), Vec::<String>::new());
        assert_eq!(ids(Some("z")), ["z"]);
        assert_eq!(ids(&skus), ["b", "a"]);
        assert_eq!(ids(skus.as_slice()), ["b", "a"]);
        assert_eq!(ids(["p", "q"]), ["p", "q"]);
        assert_eq!(ids(vec![Some("r"), None]), ["r"]);
    }
}
