//! The codec's tests: round trips of every record kind, older versions
//! read back, and damage (flipped bytes, truncation, arbitrary bytes)
//! found as corruption across all kinds.

use super::*;
use crate::protocol::command::{ExchangeKind, HeaderMatch, Overflow, QueueArgs, QueueMode, Secret};
use crate::store::{BindingDef, ExchangeDef, MessageMeta, QueueDef, UserRecord};

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Corrupt(_)))
}

fn full_args() -> QueueArgs {
    QueueArgs {
        mode: QueueMode::SingleActive,
        max_age_ms: Some(3_600_000),
        max_length: Some(10),
        max_bytes: Some(u64::MAX),
        overflow: Overflow::Block,
        ttl_ms: Some(60_000),
        expires_ms: Some(0),
        dead_letter: Some("dlx".into()),
        dead_letter_key: Some(Bytes::new()),
        delivery_limit: Some(5),
        ack_timeout_ms: Some(30_000),
        max_priority: Some(255),
        dedup_window_ms: Some(1_000),
        retry_delays_ms: vec![100, 1_000, 10_000],
        // Not in the queue's record: among the schema records.
        schema: None,
    }
}

fn queue(args: QueueArgs) -> QueueDef {
    QueueDef {
        name: "jobs".into(),
        id: 42,
        auto_delete: true,
        args,
    }
}

fn meta(expires_at: Option<u64>, not_before: Option<u64>, priority: u8) -> MessageMeta {
    MessageMeta {
        published_at: 0,
        group: None,
        body_id: 9,
        id: "m1".into(),
        exchange: "".into(),
        routing_key: "jobs".into(),
        headers: vec![("k".into(), "v".into())],
        deliveries: 3,
        expires_at,
        not_before,
        priority,
        volatile: false,
    }
}

/// A record assembled by hand, as version 1 wrote it: version byte,
/// CRC32 (big-endian) of the fields, the fields.
fn v1_record(fields: &[u8]) -> Vec<u8> {
    let mut rec = vec![1u8];
    rec.extend_from_slice(&crc32fast::hash(fields).to_be_bytes());
    rec.extend_from_slice(fields);
    rec
}

fn lp(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

#[test]
fn records_round_trip() {
    let e = ExchangeDef {
        hash_header: None,
        partitions: 0,
        name: "logs".into(),
        kind: ExchangeKind::Topic,
        auto_delete: true,
        alternate: Some("ae".into()),
    };
    assert_eq!(decode_exchange(&encode_exchange(&e)).unwrap(), e);
    let b = BindingDef {
        exchange: "x".into(),
        queue: "q".into(),
        key: "a.*".into(),
        headers: vec![("k".into(), "v".into())],
        matching: HeaderMatch::Any,
    };
    assert_eq!(decode_binding(&encode_binding(&b)).unwrap(), b);
}

#[test]
fn queue_args_round_trip() {
    for args in [
        QueueArgs::default(),
        full_args(),
        QueueArgs {
            overflow: Overflow::RejectPublish,
            dead_letter: Some(String::new()),
            retry_delays_ms: vec![7],
            ..QueueArgs::default()
        },
    ] {
        let q = queue(args);
        let rec = encode_queue(&q);
        assert_eq!(rec[0], VERSION);
        assert_eq!(decode_queue(&rec).unwrap(), q);
    }
}

#[test]
fn every_queue_arg_field_is_kept() {
    // Each field alone, so that one written in the wrong slot shows.
    let full = full_args();
    let singles = [
        QueueArgs {
            max_length: full.max_length,
            ..Default::default()
        },
        QueueArgs {
            max_bytes: full.max_bytes,
            ..Default::default()
        },
        QueueArgs {
            overflow: full.overflow,
            ..Default::default()
        },
        QueueArgs {
            ttl_ms: full.ttl_ms,
            ..Default::default()
        },
        QueueArgs {
            expires_ms: full.expires_ms,
            ..Default::default()
        },
        QueueArgs {
            dead_letter: full.dead_letter.clone(),
            ..Default::default()
        },
        QueueArgs {
            dead_letter_key: full.dead_letter_key.clone(),
            ..Default::default()
        },
        QueueArgs {
            delivery_limit: full.delivery_limit,
            ..Default::default()
        },
        QueueArgs {
            ack_timeout_ms: full.ack_timeout_ms,
            ..Default::default()
        },
        QueueArgs {
            max_priority: full.max_priority,
            ..Default::default()
        },
        QueueArgs {
            dedup_window_ms: full.dedup_window_ms,
            ..Default::default()
        },
        QueueArgs {
            retry_delays_ms: full.retry_delays_ms.clone(),
            ..Default::default()
        },
        QueueArgs {
            mode: QueueMode::SingleActive,
            ..Default::default()
        },
        QueueArgs {
            mode: QueueMode::Groups,
            ..Default::default()
        },
        QueueArgs {
            mode: QueueMode::Stream,
            ..Default::default()
        },
        QueueArgs {
            max_age_ms: full.max_age_ms,
            ..Default::default()
        },
    ];
    for args in singles {
        assert_ne!(args, QueueArgs::default());
        let q = queue(args);
        assert_eq!(decode_queue(&encode_queue(&q)).unwrap(), q);
    }
}

#[test]
fn message_meta_round_trips_with_and_without_the_new_fields() {
    for m in [
        meta(None, None, 0),
        meta(Some(1_700_000_000_000), None, 0),
        meta(None, Some(1_700_000_000_500), 0),
        meta(None, None, 9),
        meta(Some(u64::MAX), Some(0), 255),
    ] {
        let rec = encode_meta(&m, None);
        assert_eq!(rec[0], VERSION);
        assert_eq!(decode_meta(&rec).unwrap(), (m.clone(), None));
        assert_eq!(
            decode_meta(&encode_meta(&m, Some(b"body"))).unwrap(),
            (m.clone(), Some(b"body".to_vec()))
        );
        assert_eq!(
            decode_meta(&encode_meta(&m, Some(b""))).unwrap(),
            (m, Some(Vec::new()))
        );
    }
}

#[test]
fn version_4_fields_round_trip() {
    let m = MessageMeta {
        published_at: 1_700_000_000_123,
        group: Some(Bytes::from_static(b"order-7")),
        ..meta(None, None, 0)
    };
    for body in [None, Some(&b"body"[..])] {
        let rec = encode_meta(&m, body);
        let v = view_meta(&rec).unwrap();
        assert_eq!(v.published_at, m.published_at);
        assert_eq!(v.group, Some(&b"order-7"[..]));
        assert_eq!(v.inline_body, body);
        assert_eq!(v.to_meta(), m);
    }
    let e = ExchangeDef {
        name: "orders".into(),
        kind: ExchangeKind::Hash,
        auto_delete: false,
        alternate: None,
        hash_header: Some("user".into()),
        partitions: 3,
    };
    assert_eq!(decode_exchange(&encode_exchange(&e)).unwrap(), e);
    assert_eq!(decode_offset(&encode_offset(42)).unwrap(), 42);
    // A queue flags byte with an unknown bit, or naming two kinds (no
    // sluice wrote one: the parser refuses them), is corruption.
    for flags in [0x80, 3, 5, 6, 7] {
        let mut rec = encode_queue(&queue(QueueArgs::default()));
        let flags_at = rec.len() - 2; // flags, then an absent max-age
        rec[flags_at] = flags;
        let crc = record_crc(VERSION, &rec[5..]);
        rec[1..5].copy_from_slice(&crc.to_be_bytes());
        assert!(is_corrupt(decode_queue(&rec)), "flags {flags:#x}");
    }
}

#[test]
fn a_version_3_message_has_no_publish_time_and_no_group() {
    let mut w = Writer::with_version(V3);
    w.u64(9)
        .str("m1")
        .str("")
        .bytes(b"jobs")
        .headers(&[])
        .u32(0)
        .opt_u64(None)
        .opt_u64(None)
        .u8(0)
        .u8(0)
        .u8(1)
        .bytes(b"body");
    let rec = w.finish();
    let v = view_meta(&rec).unwrap();
    assert_eq!((v.published_at, v.group), (0, None));
    assert_eq!(v.inline_body, Some(&b"body"[..]));
}

#[test]
fn message_flags_round_trip_volatile_or_not() {
    for volatile in [false, true] {
        let m = MessageMeta {
            volatile,
            ..meta(Some(1), Some(2), 3)
        };
        for body in [None, Some(&b"body"[..])] {
            let rec = encode_meta(&m, body);
            assert_eq!(rec[0], VERSION);
            let v = view_meta(&rec).unwrap();
            assert_eq!(v.volatile, volatile);
            assert_eq!(v.inline_body, body);
            assert_eq!(v.to_meta(), m);
            assert_eq!(
                decode_meta(&rec).unwrap(),
                (m.clone(), body.map(<[u8]>::to_vec))
            );
        }
    }
}

#[test]
fn version_2_message_decodes_as_not_volatile() {
    // The v2 layout: no flags byte between priority and inline.
    let m = meta(Some(1_700_000_000_000), Some(5), 4);
    let mut w = Writer::with_version(V2);
    w.u64(m.body_id)
        .str(&m.id)
        .str(&m.exchange)
        .bytes(&m.routing_key)
        .headers(&m.headers)
        .u32(m.deliveries)
        .opt_u64(m.expires_at)
        .opt_u64(m.not_before)
        .u8(m.priority)
        .u8(1)
        .bytes(b"old");
    let (back, body) = decode_meta(&w.finish()).unwrap();
    assert!(!back.volatile);
    assert_eq!((back, body), (m, Some(b"old".to_vec())));
}

#[test]
fn unknown_message_flags_are_corruption() {
    for flags in [2u8, 3, 0x80, 0xff] {
        let mut w = Writer::new();
        w.u64(1)
            .str("m")
            .str("")
            .str("q")
            .headers(&[])
            .u32(0)
            .opt_u64(None)
            .opt_u64(None)
            .u8(0)
            .u8(flags)
            .u8(0);
        assert!(is_corrupt(decode_meta(&w.finish())), "flags {flags:#x}");
    }
}

#[test]
fn dedup_round_trips() {
    for t in [0, 1, 1_700_000_000_000, u64::MAX] {
        assert_eq!(decode_dedup(&encode_dedup(t)).unwrap(), t);
    }
    // A v1 record of the same shape never existed: refused.
    let mut w = Writer::with_version(V1);
    w.u64(5);
    assert!(is_corrupt(decode_dedup(&w.finish())));
}

/// Queue records as the encoder wrote them while the kind was three
/// flags (before `QueueMode`, commit 6e6a33c): each decodes to its
/// mode, and encodes again to the very same bytes.
#[test]
fn queue_records_from_before_queue_mode_read_and_write_the_same_bytes() {
    let def = |name: &str, id: u64, args: QueueArgs| QueueDef {
        name: name.into(),
        id,
        auto_delete: false,
        args,
    };
    let old = [
        (
            "04274fbc1a00000005706c61696e000000000000000100000000000000000000\
             0000000000000000",
            def("plain", 1, QueueArgs::default()),
        ),
        (
            "0444c95b24000000036f6e650000000000000002000000000000000000000000\
             000000000100",
            def(
                "one",
                2,
                QueueArgs {
                    mode: QueueMode::SingleActive,
                    ..QueueArgs::default()
                },
            ),
        ),
        (
            "045d7d7d500000000767726f7570656400000000000000030001000000000000\
             000a00000000000000000000000000000200",
            def(
                "grouped",
                3,
                QueueArgs {
                    mode: QueueMode::Groups,
                    max_length: Some(10),
                    ..QueueArgs::default()
                },
            ),
        ),
        (
            "0486c88720000000036c6f670000000000000004000001000000004000000000\
             00000000000000000000000004010000000005265c00",
            def(
                "log",
                4,
                QueueArgs {
                    mode: QueueMode::Stream,
                    max_age_ms: Some(86_400_000),
                    max_bytes: Some(1 << 30),
                    ..QueueArgs::default()
                },
            ),
        ),
    ];
    let unhex = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    for (hex, want) in old {
        let rec = unhex(hex);
        assert_eq!(decode_queue(&rec).unwrap(), want, "{}", want.name);
        assert_eq!(encode_queue(&want), rec, "{}", want.name);
    }
}

#[test]
fn version_1_queue_decodes_with_default_args() {
    let mut fields = Vec::new();
    lp(&mut fields, b"jobs");
    fields.extend_from_slice(&42u64.to_be_bytes());
    fields.push(1);
    let rec = v1_record(&fields);
    assert_eq!(decode_queue(&rec).unwrap(), queue(QueueArgs::default()));
    // The same, through the Writer.
    let mut w = Writer::with_version(V1);
    w.str("jobs").u64(42).u8(1);
    assert_eq!(w.finish(), rec);
}

#[test]
fn version_1_message_decodes_with_defaults() {
    let mut fields = Vec::new();
    fields.extend_from_slice(&9u64.to_be_bytes());
    lp(&mut fields, b"m1");
    lp(&mut fields, b"");
    lp(&mut fields, b"jobs");
    fields.extend_from_slice(&1u32.to_be_bytes());
    lp(&mut fields, b"k");
    lp(&mut fields, b"v");
    fields.extend_from_slice(&3u32.to_be_bytes());
    let mut plain = fields.clone();
    plain.push(0);
    assert_eq!(
        decode_meta(&v1_record(&plain)).unwrap(),
        (meta(None, None, 0), None)
    );
    let mut inline = fields;
    inline.push(1);
    lp(&mut inline, b"body");
    assert_eq!(
        decode_meta(&v1_record(&inline)).unwrap(),
        (meta(None, None, 0), Some(b"body".to_vec()))
    );
}

#[test]
fn version_1_exchange_and_binding_decode_and_binding_keys_stay_version_1() {
    let mut fields = Vec::new();
    lp(&mut fields, b"logs");
    fields.extend_from_slice(&[2, 1]);
    lp(&mut fields, b"");
    let e = ExchangeDef {
        hash_header: None,
        partitions: 0,
        name: "logs".into(),
        kind: ExchangeKind::Topic,
        auto_delete: true,
        alternate: None,
    };
    assert_eq!(decode_exchange(&v1_record(&fields)).unwrap(), e);

    // A binding is its own key: its bytes must be exactly what
    // version 1 wrote, or existing bindings could never be deleted.
    let mut fields = Vec::new();
    lp(&mut fields, b"x");
    lp(&mut fields, b"q");
    lp(&mut fields, b"a.*");
    fields.extend_from_slice(&1u32.to_be_bytes());
    lp(&mut fields, b"k");
    lp(&mut fields, b"v");
    fields.push(0);
    let rec = v1_record(&fields);
    let b = BindingDef {
        exchange: "x".into(),
        queue: "q".into(),
        key: "a.*".into(),
        headers: vec![("k".into(), "v".into())],
        matching: HeaderMatch::All,
    };
    assert_eq!(encode_binding(&b), rec);
    assert_eq!(decode_binding(&rec).unwrap(), b);
}

#[test]
fn keys_and_header_values_are_any_bytes() {
    let key = Bytes::from_static(b"\xc3\x28.\xff \"q\"");
    let value = Bytes::from_static(b"\xfe\x80");
    let b = BindingDef {
        exchange: "x".into(),
        queue: "q".into(),
        key: key.clone(),
        headers: vec![("k".into(), value.clone())],
        matching: HeaderMatch::All,
    };
    let rec = encode_binding(&b);
    assert_eq!(rec[0], V1, "binding keys stay version 1");
    assert_eq!(decode_binding(&rec).unwrap(), b);
    let m = MessageMeta {
        routing_key: key.clone(),
        headers: vec![("x-death-key".into(), key.clone()), ("k".into(), value)],
        ..meta(None, None, 0)
    };
    let rec = encode_meta(&m, Some(b"body"));
    assert_eq!(rec[0], VERSION);
    let v = view_meta(&rec).unwrap();
    assert_eq!(v.routing_key, &key[..]);
    assert_eq!(v.headers().count(), 2);
    assert_eq!(decode_meta(&rec).unwrap(), (m, Some(b"body".to_vec())));
    let q = queue(QueueArgs {
        dead_letter_key: Some(key),
        ..QueueArgs::default()
    });
    assert_eq!(decode_queue(&encode_queue(&q)).unwrap(), q);
    // Names and ids are still text: not UTF-8 there is corruption.
    let mut w = Writer::new();
    w.u64(1)
        .bytes(b"\xff")
        .str("")
        .str("q")
        .headers(&[])
        .u32(0)
        .opt_u64(None)
        .opt_u64(None)
        .u8(0)
        .u8(0)
        .u8(0);
    assert!(is_corrupt(decode_meta(&w.finish())));
}

#[test]
fn users_round_trip() {
    let u = UserRecord {
        name: "alice".into(),
        hash: Secret("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        tags: vec!["admin".into()],
        configure: "^orders\\.".into(),
        write: ".*".into(),
        read: "".into(),
    };
    let rec = encode_user(&u);
    assert_eq!(decode_user(&rec).unwrap(), u);
    for i in 0..rec.len() {
        let mut bad = rec.clone();
        bad[i] ^= 0x41;
        assert!(is_corrupt(decode_user(&bad)), "user byte {i}");
    }
    for n in 0..rec.len() {
        assert!(is_corrupt(decode_user(&rec[..n])), "user {n}");
    }
}

#[test]
fn a_flipped_byte_is_corruption_not_a_panic() {
    let records = [
        encode_queue(&queue(full_args())),
        encode_queue(&queue(QueueArgs::default())),
        encode_meta(&meta(Some(1), Some(2), 3), Some(b"body")),
        encode_meta(&meta(None, None, 0), None),
        encode_dedup(1_700_000_000_000),
        encode_exchange(&ExchangeDef {
            hash_header: None,
            partitions: 0,
            name: "x".into(),
            kind: ExchangeKind::Direct,
            auto_delete: false,
            alternate: None,
        }),
    ];
    for rec in &records {
        for i in 0..rec.len() {
            // 0x01 turns version 3 into version 2, 0x02 into version 1:
            // the version byte is under the CRC, so that is caught too.
            for mask in [0x01u8, 0x02, 0x03, 0x40, 0x80, 0xff] {
                let mut bad = rec.clone();
                bad[i] ^= mask;
                assert!(is_corrupt(decode_queue(&bad)), "queue byte {i}");
                assert!(is_corrupt(decode_meta(&bad)), "meta byte {i}");
                assert!(is_corrupt(decode_dedup(&bad)), "dedup byte {i}");
                assert!(is_corrupt(decode_exchange(&bad)), "exchange byte {i}");
                assert!(is_corrupt(decode_binding(&bad)), "binding byte {i}");
            }
        }
    }
}

#[test]
fn a_truncated_record_is_corruption_not_a_panic() {
    let records = [
        encode_queue(&queue(full_args())),
        encode_meta(&meta(Some(1), Some(2), 3), Some(b"body")),
        encode_dedup(7),
    ];
    for rec in &records {
        for n in 0..rec.len() {
            assert!(is_corrupt(decode_queue(&rec[..n])), "queue {n}");
            assert!(is_corrupt(decode_meta(&rec[..n])), "meta {n}");
            assert!(is_corrupt(decode_dedup(&rec[..n])), "dedup {n}");
        }
    }
    assert!(is_corrupt(decode_queue(&[])));
}

#[test]
fn well_sealed_but_malformed_records_are_corruption() {
    // Missing fields under a valid CRC: a v2 queue without its args.
    let mut w = Writer::new();
    w.str("jobs").u64(1).u8(0);
    assert!(is_corrupt(decode_queue(&w.finish())));
    // A current message without its v2 fields.
    let mut w = Writer::new();
    w.u64(1).str("m").str("").str("q").headers(&[]).u32(0).u8(0);
    assert!(is_corrupt(decode_meta(&w.finish())));
    // A v3 message in the v2 layout (no flags byte).
    let mut w = Writer::new();
    w.u64(1)
        .str("m")
        .str("")
        .str("q")
        .headers(&[])
        .u32(0)
        .opt_u64(None)
        .opt_u64(None)
        .u8(0)
        .u8(0);
    assert!(is_corrupt(decode_meta(&w.finish())));
    // A header count far beyond the record.
    let mut w = Writer::new();
    w.u64(1).str("m").str("").str("q").u32(u32::MAX);
    assert!(is_corrupt(decode_meta(&w.finish())));
    // An optional tag that is neither 0 nor 1.
    let mut w = Writer::new();
    w.str("jobs").u64(1).u8(0).u8(2);
    assert!(is_corrupt(decode_queue(&w.finish())));
    // An unknown overflow mode.
    let mut w = Writer::new();
    w.str("jobs").u64(1).u8(0).opt_u64(None).opt_u64(None).u8(3);
    assert!(is_corrupt(decode_queue(&w.finish())));
    // A retry-delay count far beyond the record: no huge allocation.
    let mut w = Writer::new();
    w.str("jobs")
        .u64(1)
        .u8(0)
        .opt_u64(None)
        .opt_u64(None)
        .u8(0)
        .opt_u64(None)
        .opt_u64(None)
        .opt_str(None)
        .opt_str(None)
        .opt_u32(None)
        .opt_u64(None)
        .opt_u8(None)
        .opt_u64(None)
        .u32(u32::MAX);
    assert!(is_corrupt(decode_queue(&w.finish())));
    // Trailing bytes.
    let mut w = Writer::new();
    w.u64(1).u8(0);
    assert!(is_corrupt(decode_dedup(&w.finish())));
    let mut fields = Vec::new();
    lp(&mut fields, b"jobs");
    fields.extend_from_slice(&42u64.to_be_bytes());
    fields.extend_from_slice(&[0, 0]);
    assert!(is_corrupt(decode_queue(&v1_record(&fields))));
    // Unknown versions, even with a matching CRC.
    for version in [0u8, 4, 0xff] {
        let mut rec = encode_dedup(1);
        rec[0] = version;
        let crc = crc32fast::hash(&rec[5..]);
        rec[1..5].copy_from_slice(&crc.to_be_bytes());
        assert!(is_corrupt(decode_dedup(&rec)));
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator: random records, some sealed with
    // a correct CRC so that the field readers are exercised too.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..5_000 {
        let len = (next() % 64) as usize;
        let mut rec: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if rec.len() >= 5 && next() % 2 == 0 {
            rec[0] = [V1, V2, V3][(next() % 3) as usize];
            let crc = record_crc(rec[0], &rec[5..]);
            rec[1..5].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = decode_queue(&rec);
        let _ = decode_meta(&rec);
        if let Ok(v) = view_meta(&rec) {
            let _ = v.to_meta();
        }
        let _ = decode_exchange(&rec);
        let _ = decode_binding(&rec);
        let _ = decode_dedup(&rec);
        let _ = decode_user(&rec);
    }
}
