//! Answers a worker got from a head (token reviews, access reviews), kept a short while so a
//! stream of requests from one caller costs one question. Expired answers are dropped as
//! new ones come in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Answers<K, V> {
    ttl: Duration,
    kept: Arc<Mutex<HashMap<K, (Instant, V)>>>,
}

impl<K: Hash + Eq, V: Clone> Answers<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Answers { ttl, kept: Arc::default() }
    }

    /// The answer for `key`, if one was kept less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let kept = self.kept.lock().expect("answers lock");
        kept.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn keep(&self, key: K, answer: V) {
        let mut kept = self.kept.lock().expect("answers lock");
        kept.retain(|_, (at, _)| at.elapsed() < self.ttl);
        kept.insert(key, (Instant::now(), answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire() {
        let a = Answers::new(Duration::from_millis(30));
        a.keep("k", 1);
        assert_eq!(a.get(&"k"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(a.get(&"k"), None, "expired");
    }
}
