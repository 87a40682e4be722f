//! STUB routing (replaced by the helper's module).
#![allow(missing_docs, unreachable_pub, dead_code)]
use std::sync::Arc;
use crate::protocol::command::{ExchangeKind, Header, HeaderMatch};
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding { pub queue: Arc<str>, pub key: String, pub headers: Vec<Header>, pub matching: HeaderMatch }
impl Binding { pub fn new(queue: Arc<str>, key: String, mut headers: Vec<Header>, matching: HeaderMatch) -> Self { headers.sort(); Binding { queue, key, headers, matching } } }
#[derive(Debug)]
pub struct Bindings { kind: ExchangeKind, all: Vec<Binding> }
impl Bindings {
    pub fn new(kind: ExchangeKind) -> Self { Bindings { kind, all: vec![] } }
    pub fn add(&mut self, b: Binding) -> bool { if self.all.contains(&b) { false } else { self.all.push(b); true } }
    pub fn remove(&mut self, b: &Binding) -> bool { let n = self.all.len(); self.all.retain(|x| x != b); n != self.all.len() }
    pub fn remove_queue(&mut self, q: &str) -> usize { let n = self.all.len(); self.all.retain(|x| &*x.queue != q); n - self.all.len() }
    pub fn is_empty(&self) -> bool { self.all.is_empty() }
    pub fn len(&self) -> usize { self.all.len() }
    pub fn route(&self, key: &str, _h: &[Header], out: &mut Vec<Arc<str>>) {
        for b in &self.all { if (self.kind == ExchangeKind::Fanout || b.key == key) && !out.contains(&b.queue) { out.push(b.queue.clone()); } }
    }
}
