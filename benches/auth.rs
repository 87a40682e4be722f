//! The cost authentication adds to each `PUB`: [`Login::admit`] (the
//! per-command gate: one atomic load) plus [`Login::check_publish`] (the
//! `write` check, cached per exchange), for a logged-in user whose `write`
//! pattern is a real regex, against an open broker's session (no user),
//! and against running the regex on every message (what the cache saves).
//!
//! Run: `cargo bench --bench auth` (add `-- --quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::auth::{Login, Pattern, Permissions, Registry, User};
use sluice::protocol::command::{Command, Purge};
use sluice::store::NullStore;

fn bench(c: &mut Criterion) {
    let users = Registry::open(Arc::new(NullStore), None).unwrap();
    let perms = Permissions::new("^orders\\.", "^(orders\\.|$)", "^orders\\.").unwrap();
    users
        .add(User::new("app".into(), "-".into(), true, perms))
        .unwrap();
    // Any command but the five exempt ones is gated alike.
    let cmd = Command::Purge(Purge {
        queue: "orders.eu".into(),
    });
    let mut g = c.benchmark_group("pub_check");
    let mut open = Login::default();
    let open_users = Registry::open(Arc::new(NullStore), None).unwrap();
    g.bench_function("open_broker", |b| {
        b.iter(|| {
            open.admit(&open_users, black_box(&cmd)).unwrap();
            open.check_publish(black_box("orders.eu")).unwrap();
        })
    });
    let mut login = Login::default();
    login.set(users.get("app").unwrap(), users.generation());
    g.bench_function("user_cached", |b| {
        b.iter(|| {
            login.admit(&users, black_box(&cmd)).unwrap();
            login.check_publish(black_box("orders.eu")).unwrap();
        })
    });
    let write = Pattern::new("^(orders\\.|$)").unwrap();
    g.bench_function("regex_every_time", |b| {
        b.iter(|| assert!(write.allows(black_box("orders.eu"))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
