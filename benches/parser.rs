//! Framer + parser throughput on byte fixtures, as a connection's read loop
//! sees them: a pipelined stream of frames in one buffer, cut by
//! [`Framer::next_event`] and turned into commands by [`parse_command`].
//!
//! Fixtures (each a stream of 1000 frames):
//! - `pub_100b`: `PUB "" jobs id=m<i> persistent {100}` with a 100-byte literal;
//! - `ack`: `ACK <tag>` lines;
//! - `declare_queue`: `DECLARE QUEUE` with most of its options;
//! - `sub`: `SUB` lines with prefetch, ack mode, tag and `exclusive`.
//!
//! Each fixture is measured twice, once reported in bytes/s and once in
//! frames/s (criterion takes one throughput per benchmark). `frame_only/*`
//! runs the framer alone on the `PUB` stream, to tell framing from parsing.
//!
//! Run: `cargo bench --bench parser` (add `-- --quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::protocol::frame::{FrameEvent, Framer, Limits};
use sluice::protocol::parse::parse_command;
use sluice::protocol::Command;

/// Frames per fixture.
const FRAMES: usize = 1000;

fn pub_stream() -> Vec<u8> {
    let body = [b'x'; 100];
    let mut s = Vec::new();
    for i in 0..FRAMES {
        s.extend_from_slice(format!("PUB \"\" jobs id=m{i} persistent {{100}}\r\n").as_bytes());
        s.extend_from_slice(&body);
        s.extend_from_slice(b"\r\n");
    }
    s
}

fn ack_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..FRAMES {
        s.extend_from_slice(format!("ACK {}\r\n", 1_000_000 + i).as_bytes());
    }
    s
}

fn declare_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..FRAMES {
        s.extend_from_slice(
            format!(
                "DECLARE QUEUE orders-{i} durable max-length=100000 max-bytes=104857600 \
                 overflow=reject-publish ttl=60000 expires=3600000 dead-letter=dlx \
                 dead-letter-key=orders.dead delivery-limit=5 ack-timeout=30000 \
                 max-priority=9 dedup-window=600000 retry-delays=100,1000,10000\r\n"
            )
            .as_bytes(),
        );
    }
    s
}

fn sub_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..FRAMES {
        s.extend_from_slice(
            format!("SUB jobs-{i} prefetch=256 ack=manual tag=worker-{i} exclusive\r\n").as_bytes(),
        );
    }
    s
}

/// Frames and parses the whole stream; returns how many commands parsed.
fn frame_and_parse(framer: &mut Framer, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(event) = framer.next_event(buf).unwrap() {
        match event {
            FrameEvent::Frame(f) => {
                let cmd = parse_command(&f);
                n += usize::from(cmd.is_ok());
                black_box(cmd.ok());
            }
            FrameEvent::Reject(r) => panic!("fixture frame rejected: {}", r.message),
        }
    }
    n
}

/// Frames the whole stream without parsing; returns how many frames.
fn frame_only(framer: &mut Framer, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(event) = framer.next_event(buf).unwrap() {
        n += 1;
        black_box(event);
    }
    n
}

/// Checks once, outside the timing, that every frame of the fixture parses.
fn check(name: &str, stream: &[u8]) {
    let mut framer = Framer::new(Limits::default());
    let mut buf = BytesMut::from(stream);
    let mut kinds = Vec::new();
    while let Some(event) = framer.next_event(&mut buf).unwrap() {
        let FrameEvent::Frame(f) = event else {
            panic!("{name}: frame rejected");
        };
        match parse_command(&f) {
            Ok(cmd) => kinds.push(std::mem::discriminant(&cmd)),
            Err(e) => panic!(
                "{name}: {} does not parse: {e}",
                String::from_utf8_lossy(&f.line)
            ),
        }
    }
    assert_eq!(kinds.len(), FRAMES, "{name}: frame count");
    assert!(buf.is_empty(), "{name}: bytes left over");
    if name == "pub_100b" {
        let mut framer = Framer::new(Limits::default());
        let mut buf = BytesMut::from(stream);
        let Some(FrameEvent::Frame(f)) = framer.next_event(&mut buf).unwrap() else {
            panic!("no first frame");
        };
        let Ok(Command::Publish(p)) = parse_command(&f) else {
            panic!("first frame is not a PUB");
        };
        assert_eq!(p.body.len(), 100);
    }
}

fn bench_parser(c: &mut Criterion) {
    let fixtures: [(&str, Vec<u8>); 4] = [
        ("pub_100b", pub_stream()),
        ("ack", ack_stream()),
        ("declare_queue", declare_stream()),
        ("sub", sub_stream()),
    ];
    for (name, stream) in &fixtures {
        check(name, stream);
    }

    let mut group = c.benchmark_group("parser");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, stream) in &fixtures {
        let throughputs = [
            ("bytes", Throughput::Bytes(stream.len() as u64)),
            ("frames", Throughput::Elements(FRAMES as u64)),
        ];
        for (unit, throughput) in throughputs {
            group.throughput(throughput);
            group.bench_function(format!("{name}/{unit}"), |b| {
                b.iter_batched_ref(
                    || (Framer::new(Limits::default()), BytesMut::from(&stream[..])),
                    |(framer, buf)| {
                        let n = frame_and_parse(framer, buf);
                        debug_assert_eq!(n, FRAMES);
                        n
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();

    let stream = &fixtures[0].1;
    let mut group = c.benchmark_group("frame_only");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("pub_100b/bytes", |b| {
        b.iter_batched_ref(
            || (Framer::new(Limits::default()), BytesMut::from(&stream[..])),
            |(framer, buf)| frame_only(framer, buf),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_parser);
criterion_main!(benches);
