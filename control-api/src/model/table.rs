//! [`Table`]: the records of one kind by id, with an optional unique name index, so that the
//! model's eleven maps share one put and one delete instead of an arm each.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use uuid::Uuid;

/// A record a [`Table`] holds: it has an id, and perhaps a unique name to look it up by.
pub trait Record {
    /// The unique name's type; `()` for records without one.
    type Key: Eq + Hash + Clone;

    /// The record's id.
    fn id(&self) -> Uuid;

    /// The record's unique name, if its kind has one.
    fn key(&self) -> Option<Self::Key> {
        None
    }
}

/// The records of one kind, by id (iteration is in id order), and by unique name when the kind
/// has one.
#[derive(Debug, Clone)]
pub struct Table<V: Record> {
    rows: BTreeMap<Uuid, V>,
    by_key: HashMap<V::Key, Uuid>,
}

impl<V: Record> Default for Table<V> {
    fn default() -> Self {
        Table { rows: BTreeMap::new(), by_key: HashMap::new() }
    }
}

impl<V: Record> Table<V> {
    /// Inserts `row`, or replaces the row with its id (and that row's name in the index).
    pub fn put(&mut self, row: V) {
        let id = row.id();
        if let Some(old) = self.rows.remove(&id).and_then(|old| old.key()) {
            self.by_key.remove(&old);
        }
        if let Some(key) = row.key() {
            self.by_key.insert(key, id);
        }
        self.rows.insert(id, row);
    }

    /// Removes the row with this id, if any, and returns it.
    pub fn delete(&mut self, id: Uuid) -> Option<V> {
        let row = self.rows.remove(&id)?;
        if let Some(key) = row.key() {
            self.by_key.remove(&key);
        }
        Some(row)
    }

    /// The row with this id.
    pub fn get(&self, id: &Uuid) -> Option<&V> {
        self.rows.get(id)
    }

    /// The row with this unique name.
    pub fn get_by_key(&self, key: &V::Key) -> Option<&V> {
        self.rows.get(self.by_key.get(key)?)
    }

    /// Every row, by id.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.rows.values()
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Named(Uuid, &'static str);

    impl Record for Named {
        type Key = &'static str;
        fn id(&self) -> Uuid {
            self.0
        }
        fn key(&self) -> Option<&'static str> {
            Some(self.1)
        }
    }

    #[test]
    fn put_replaces_and_reindexes_and_delete_unindexes() {
        let id = Uuid::from_u128(1);
        let mut t = Table::default();
        t.put(Named(id, "a"));
        t.put(Named(id, "b"));
        assert_eq!(t.len(), 1);
        assert!(t.get_by_key(&"a").is_none());
        assert_eq!(t.get_by_key(&"b"), Some(&Named(id, "b")));
        assert_eq!(t.delete(id), Some(Named(id, "b")));
        assert!(t.get_by_key(&"b").is_none() && t.is_empty());
        assert_eq!(t.delete(id), None);
    }
}
