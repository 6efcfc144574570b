//! Recent aggregate states, so a command need not reload its aggregate.
//!
//! It stays correct without invalidation messages. An entry is taken out
//! while a command uses it; the append still states the version the entry
//! was at, so a state made stale by another writer (another process) meets a
//! conflict; and the pipeline trusts a cached state only for a decision the
//! append proves: a rejection, a decision to do nothing, or a conflict is
//! decided again from a fresh load.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::loaded::Loaded;

/// How many aggregate states a pipeline keeps by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A bounded map from aggregate id to its latest known state, evicting the
/// least recently used entry when full.
pub(crate) struct StateCache<A> {
    capacity: usize,
    inner: Mutex<Entries<A>>,
}

struct Entries<A> {
    /// Each state with the tick of its last use.
    states: HashMap<String, (u64, Loaded<A>)>,
    /// Ids by the tick of their last use, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl<A> StateCache<A> {
    /// A cache of `capacity` states, or none for 0.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            capacity,
            inner: Mutex::new(Entries {
                states: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries<A>> {
        // Entries are inserted and removed whole: a panic leaves no half entry.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state of `id` out, if cached.
    pub(crate) fn take(&self, id: &str) -> Option<Loaded<A>> {
        let mut entries = self.entries();
        let (tick, loaded) = entries.states.remove(id)?;
        entries.order.remove(&tick);
        Some(loaded)
    }

    /// Puts the state of `id` in, as its most recent use, evicting the least
    /// recently used state when full.
    pub(crate) fn put(&self, id: &str, loaded: Loaded<A>) {
        let mut entries = self.entries();
        entries.tick += 1;
        let tick = entries.tick;
        if let Some((old, _)) = entries.states.remove(id) {
            entries.order.remove(&old);
        } else if entries.states.len() >= self.capacity {
            if let Some((_, victim)) = entries.order.pop_first() {
                entries.states.remove(&victim);
            }
        }
        entries.states.insert(id.to_owned(), (tick, loaded));
        entries.order.insert(tick, id.to_owned());
    }

    #[cfg(test)]
    fn ids(&self) -> Vec<String> {
        self.entries().order.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(version: u64) -> Loaded<u64> {
        Loaded {
            state: version,
            version,
        }
    }

    #[test]
    fn the_least_recently_used_state_goes_first() {
        let cache = StateCache::new(2).expect("a cache");
        cache.put("a", loaded(1));
        cache.put("b", loaded(1));
        // `a` is used again (taken by a command, put back after it)...
        let a = cache.take("a").expect("cached");
        cache.put("a", Loaded { version: 2, ..a });
        // ...so `b` is the one to go.
        cache.put("c", loaded(1));
        assert_eq!(cache.ids(), ["a", "c"]);
        assert_eq!(cache.take("a").map(|loaded| loaded.version), Some(2));
        assert!(cache.take("b").is_none());
    }

    #[test]
    fn a_zero_capacity_is_no_cache() {
        assert!(StateCache::<u64>::new(0).is_none());
    }
}
