//! The outbox, racing handles and attacker-sized records.

use std::sync::Barrier;

use super::{expect, fanout, mark, ok, sample_message, write_set, NOW};
use crate::storage::{
    DsOutbox, DsStorage, RecordKind, RecordWrite, ReplayMark, VersionGuard, WriteOutcome, WriteSet,
};
use crate::{DsConfig, Fanout};

/// The outbox: entries appear with applied writes only, and its bookkeeping.
pub fn outbox_entries<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let message = sample_message();
    let g: &[u8] = b"group";
    let pending = |s: &S, now: u64, limit: usize| ok(s.pending(now, limit), "pending");
    assert!(
        pending(&storage, u64::MAX, usize::MAX).is_empty(),
        "a new database has no outbox"
    );

    let fanouts: Vec<Fanout> = ["a.example", "b.example", "c.example"]
        .iter()
        .enumerate()
        .map(|(i, d)| fanout(g, d, i as u64, &message))
        .collect();
    let mut create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    create.fanout = fanouts.clone();
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "a write with three fanouts",
    );
    let entries = pending(&storage, NOW, 10);
    assert_eq!(entries.len(), 3, "one entry per fanout");
    for (entry, fanout) in entries.iter().zip(&fanouts) {
        assert_eq!(entry.group_id, g);
        assert_eq!(entry.destination, fanout.destination);
        assert_eq!(
            entry.request,
            fanout.to_bytes(),
            "the encoded QueueingServiceRequest"
        );
        assert_eq!(
            (
                entry.created_at_ms,
                entry.attempts,
                entry.next_attempt_at_ms
            ),
            (NOW, 0, NOW)
        );
        assert_eq!(
            entry.fanout().as_ref(),
            Ok(fanout),
            "decodes to the fanout written"
        );
    }
    let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase in the order stored: {ids:?}"
    );
    assert!(
        pending(&storage, NOW - 1, 10).is_empty(),
        "not due before it was stored"
    );
    assert_eq!(
        pending(&storage, NOW, 2),
        entries[..2].to_vec(),
        "limit keeps the oldest"
    );

    // The next write may conflict: it stores nothing.
    let mut conflicting = create.clone();
    conflicting.fanout = vec![fanout(g, "d.example", 9, &message)];
    expect(
        &mut storage,
        &conflicting,
        WriteOutcome::Conflict,
        "Absent again",
    );
    assert_eq!(
        pending(&storage, u64::MAX, usize::MAX),
        entries,
        "a conflicted write stores no entry"
    );

    assert!(
        ok(storage.retry_later(ids[0], NOW + 100), "retry_later"),
        "the entry exists"
    );
    assert_eq!(
        pending(&storage, NOW, 10)
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids[1..]
    );
    let retried = pending(&storage, NOW + 100, 10);
    assert_eq!(
        retried.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids,
        "oldest first, retried or not"
    );
    assert_eq!(
        (retried[0].attempts, retried[0].next_attempt_at_ms),
        (1, NOW + 100)
    );
    assert!(ok(storage.retry_later(ids[0], NOW + 200), "retry_later"));
    assert_eq!(
        pending(&storage, NOW + 200, 1)[0].attempts,
        2,
        "attempts count up"
    );

    assert!(ok(storage.mark_delivered(ids[1]), "mark_delivered"));
    assert!(
        !ok(storage.mark_delivered(ids[1]), "mark_delivered"),
        "already delivered"
    );
    assert!(
        !ok(storage.retry_later(ids[1], NOW), "retry_later"),
        "a delivered entry is gone"
    );
    assert!(
        ok(storage.mark_delivered(ids[2]), "mark_delivered"),
        "the newest entry"
    );
    assert_eq!(
        pending(&storage, u64::MAX, usize::MAX)
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [ids[0]]
    );

    let mut next = write_set(g, VersionGuard::Exactly(1), Vec::new());
    next.fanout = vec![fanout(g, "e.example", 4, &message)];
    expect(&mut storage, &next, WriteOutcome::Applied, "a later write");
    let newest = pending(&storage, NOW, 10);
    assert_eq!(newest.len(), 1);
    assert!(
        newest[0].id > ids[2],
        "an ID is never reused, also after its entry was delivered"
    );
    assert!(
        !ok(storage.mark_delivered(u64::MAX), "mark_delivered"),
        "an unknown ID"
    );
}

/// Per destination, the outbox hands entries out in ID order also after a failed delivery:
/// [`DsOutbox::pending`] skips an entry while an older entry (lower ID) of the same
/// destination is put off, whatever the group, so that fanouts written after a failure cannot
/// overtake the entries waiting for their retry. Read through a second handle, as another
/// replica on the same database would.
pub fn outbox_order_per_destination<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let relay = open();
    let message = sample_message();
    let ids = |entries: Vec<crate::storage::OutboxEntry>| -> Vec<u64> {
        entries.iter().map(|e| e.id).collect()
    };
    let pending = |now: u64, limit: usize| ids(ok(relay.pending(now, limit), "pending"));
    let (g, h): (&[u8], &[u8]) = (b"group", b"other group");

    let mut first = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    first.fanout = vec![
        fanout(g, "d.example", 0, &message),
        fanout(g, "d.example", 1, &message),
        fanout(g, "e.example", 1, &message),
    ];
    expect(&mut storage, &first, WriteOutcome::Applied, "three fanouts");
    let stored = pending(NOW, 10);
    let [d1, d2, e1] = stored[..] else {
        panic!("one entry per fanout: {stored:?}");
    };

    // The first delivery to d.example failed.
    assert!(ok(storage.retry_later(d1, NOW + 100), "retry_later"));
    assert_eq!(
        pending(NOW, 10),
        [e1],
        "an entry behind a put-off entry of its destination waits; other destinations do not"
    );
    assert_eq!(
        pending(NOW, 1),
        [e1],
        "entries held back do not count against the limit"
    );
    // A later write for another group, to the same destination, waits behind it too.
    let mut later = write_set(
        h,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![2])],
    );
    later.fanout = vec![fanout(h, "d.example", 0, &message)];
    expect(
        &mut storage,
        &later,
        WriteOutcome::Applied,
        "a later fanout",
    );
    let all = pending(u64::MAX, usize::MAX);
    let d3 = *all.last().expect("the later entry");
    assert_eq!(all, [d1, d2, e1, d3]);
    assert_eq!(pending(NOW, 10), [e1], "the new entry does not overtake");
    assert_eq!(
        pending(NOW + 100, 10),
        [d1, d2, e1, d3],
        "once due, the put-off entry comes first, then the rest in order"
    );

    // Only older entries hold an entry back: a put-off newer one does not hide older ones.
    assert!(ok(storage.retry_later(d2, NOW + 300), "retry_later"));
    assert_eq!(pending(NOW + 100, 10), [d1, e1]);
    assert!(ok(storage.mark_delivered(d1), "mark_delivered"));
    assert_eq!(pending(NOW + 100, 10), [e1]);
    assert_eq!(pending(NOW + 300, 10), [d2, e1, d3]);
    assert!(ok(storage.mark_delivered(d2), "mark_delivered"));
    assert_eq!(
        pending(NOW + 100, 10),
        [e1, d3],
        "a delivered entry holds nothing back"
    );
}

/// Two handles on two threads write the same version of one group, then the same replay key:
/// exactly one write applies each time.
pub fn racing_handles<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let message = sample_message();
    let g: &[u8] = b"group";
    let mut setup = open();
    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![0])],
    );
    expect(&mut setup, &create, WriteOutcome::Applied, "create");

    let barrier = Barrier::new(2);
    let race = |ws_for: &(dyn Fn(u8) -> WriteSet + Sync)| -> Vec<WriteOutcome> {
        std::thread::scope(|scope| {
            let threads: Vec<_> = [1u8, 2]
                .into_iter()
                .map(|i| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let mut handle = open();
                        let read =
                            ok(handle.read(g, &[RecordKind::Roster]), "read").expect("exists");
                        let mut ws = ws_for(i);
                        if let VersionGuard::Exactly(v) = &mut ws.guard {
                            *v = read.version;
                        }
                        // Both have read the same version before either writes.
                        barrier.wait();
                        ok(handle.write(&ws), "a racing write")
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect()
        })
    };

    let outcomes = race(&|i| {
        let mut ws = write_set(
            g,
            VersionGuard::Exactly(0),
            vec![RecordWrite::Put(RecordKind::Roster, vec![i])],
        );
        ws.fanout = vec![fanout(g, &format!("t{i}.example"), 1, &message)];
        ws
    });
    let winners: Vec<u8> = (1..=2)
        .filter(|i| outcomes[usize::from(*i) - 1] == WriteOutcome::Applied)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of two racing writes applies: {outcomes:?}"
    );
    let reader = open();
    let snapshot = ok(reader.read(g, &[RecordKind::Roster]), "read").expect("exists");
    assert_eq!(snapshot.version, 2, "the version moved once");
    assert_eq!(
        snapshot.records,
        vec![(RecordKind::Roster, vec![winners[0]])],
        "the winner's records"
    );
    let outbox = ok(reader.pending(u64::MAX, usize::MAX), "pending");
    assert_eq!(
        outbox
            .iter()
            .map(|e| e.destination.as_str())
            .collect::<Vec<_>>(),
        [format!("t{}.example", winners[0])],
        "only the winner's fanout is in the outbox"
    );

    let outcomes = race(&|i| {
        let mut ws = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
        ws.replay_mark = mark(b"key", NOW + 1_000, &[i]);
        ws
    });
    let winners: Vec<u8> = (1..=2)
        .filter(|i| outcomes[usize::from(*i) - 1] == WriteOutcome::Applied)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of two racing replay marks applies: {outcomes:?}"
    );
    let stored = ok(reader.replay_mark(g, b"key", NOW), "replay_mark").expect("a mark");
    assert_eq!(stored.response, Some(vec![winners[0]]), "the winner's mark");
}

/// Records, group IDs and replay keys at attacker-chosen sizes and contents are stored and
/// read back byte for byte (storage contract: "Attacker-sized records").
pub fn attacker_sized_records<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let limit = DsConfig::new("hub.example").max_request_bytes;
    // Every byte value, NUL and quotes included, as an ID a client may choose.
    let group: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let big = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let state = big(1, limit * 4);
    let tree = big(2, limit);
    let create = write_set(
        &group,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(RecordKind::MlsState, state.clone()),
            RecordWrite::Put(RecordKind::WelcomeTree { epoch: 7 }, tree.clone()),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "records of max_request_bytes * 4",
    );
    let read = ok(
        storage.read(
            &group,
            &[RecordKind::MlsState, RecordKind::WelcomeTree { epoch: 7 }],
        ),
        "read",
    )
    .expect("exists");
    assert!(
        read.record(RecordKind::MlsState) == Some(&state[..]),
        "the large record reads back exactly"
    );
    assert!(
        read.record(RecordKind::WelcomeTree { epoch: 7 }) == Some(&tree[..]),
        "the keyed record reads back exactly"
    );

    let grown = big(3, limit * 4 + limit);
    let mut update = write_set(
        &group,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::MlsState, grown.clone())],
    );
    let key = big(4, 4096);
    update.replay_mark = Some((
        key.clone(),
        ReplayMark {
            request_hash: big(5, 64),
            expires_at_ms: NOW + 1_000,
            response: Some(big(6, limit)),
        },
    ));
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "one request's growth on top",
    );
    let read = ok(storage.read(&group, &[RecordKind::MlsState]), "read").expect("exists");
    assert!(read.record(RecordKind::MlsState) == Some(&grown[..]));
    let stored = ok(storage.replay_mark(&group, &key, NOW), "replay_mark").expect("the mark");
    assert_eq!(
        stored.response.map(|r| r.len()),
        Some(limit),
        "a response of max_request_bytes"
    );
    assert_eq!(
        ok(storage.read(&group[..4095], &[]), "read"),
        None,
        "IDs are compared whole"
    );
}
