//! The version guard, replay marks, expiry and keyed records.

use super::{
    all_kinds, expect, fanout, mark, ok, read_sorted, sample_message, visible, write_set, NOW,
};
use crate::storage::{DsOutbox, DsStorage, RecordKind, RecordWrite, VersionGuard, WriteOutcome};

/// The version guard and atomicity: a write applies completely or not at all.
pub fn guard_and_atomicity<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let message = sample_message();
    let (g, other): (&[u8], &[u8]) = (b"group", b"other");
    assert_eq!(
        ok(storage.read(g, &all_kinds()), "read"),
        None,
        "a new database is empty"
    );

    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(RecordKind::Roster, vec![1]),
            RecordWrite::Put(RecordKind::Sequencer, vec![2]),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "Absent creates the group",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("the group exists");
    assert_eq!(snapshot.version, 1, "a created group is at version 1");
    assert_eq!(
        snapshot.records,
        vec![
            (RecordKind::Roster, vec![1]),
            (RecordKind::Sequencer, vec![2])
        ]
    );
    let only_roster = ok(storage.read(g, &[RecordKind::Roster]), "read").expect("exists");
    assert_eq!(
        only_roster.records,
        vec![(RecordKind::Roster, vec![1])],
        "only what was asked"
    );
    let no_records = ok(storage.read(g, &[]), "read").expect("exists");
    assert_eq!((no_records.version, no_records.records.len()), (1, 0));

    let before = visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]);
    expect(
        &mut storage,
        &create,
        WriteOutcome::Conflict,
        "Absent on an existing group",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    let mut update = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Put(RecordKind::Roster, vec![3]),
            RecordWrite::Delete(RecordKind::Sequencer),
            RecordWrite::Delete(RecordKind::GroupInfo),
        ],
    );
    update.replay_mark = mark(b"k1", NOW + 1_000, b"response-1");
    update.fanout = vec![fanout(g, "a.example", 1, &message)];
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "Exactly(current version)",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("exists");
    assert_eq!(snapshot.version, 2, "a write moves the version by one");
    assert_eq!(
        snapshot.records,
        vec![(RecordKind::Roster, vec![3])],
        "put and delete"
    );

    // A stale version: nothing of the write set may show, not its mark nor its fanout.
    let before = visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]);
    let mut stale = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::Roster, vec![9])],
    );
    stale.replay_mark = mark(b"k2", NOW + 1_000, b"response-2");
    stale.fanout = vec![fanout(g, "b.example", 2, &message)];
    expect(
        &mut storage,
        &stale,
        WriteOutcome::Conflict,
        "Exactly(stale version)",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    // The guard holds but the replay mark is live: still nothing.
    let mut replayed = write_set(
        g,
        VersionGuard::Exactly(2),
        vec![RecordWrite::Put(RecordKind::Roster, vec![9])],
    );
    replayed.replay_mark = mark(b"k1", NOW + 2_000, b"response-3");
    replayed.fanout = vec![fanout(g, "c.example", 3, &message)];
    expect(
        &mut storage,
        &replayed,
        WriteOutcome::Conflict,
        "a live replay key",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );

    let missing = write_set(
        other,
        VersionGuard::Exactly(1),
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    expect(
        &mut storage,
        &missing,
        WriteOutcome::Conflict,
        "Exactly on a missing group",
    );
    assert_eq!(
        visible(&storage, &[g, other], &[(g, b"k1"), (g, b"k2")]),
        before
    );
}

/// A `ReplayMarkOnly` write stores its mark and leaves the group and its version alone.
pub fn replay_mark_only<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let (g, absent): (&[u8], &[u8]) = (b"group", b"absent");
    let mut only_mark = write_set(absent, VersionGuard::ReplayMarkOnly, Vec::new());
    only_mark.replay_mark = mark(b"k", NOW + 10, b"r");
    expect(
        &mut storage,
        &only_mark,
        WriteOutcome::Applied,
        "a mark for a group that does not exist",
    );
    assert_eq!(
        ok(storage.read(absent, &all_kinds()), "read"),
        None,
        "no group is created"
    );
    assert_eq!(
        ok(storage.replay_mark(absent, b"k", NOW), "replay_mark"),
        only_mark.replay_mark.clone().map(|(_, m)| m),
        "the mark reads back as written"
    );
    expect(
        &mut storage,
        &only_mark,
        WriteOutcome::Conflict,
        "the same live key again",
    );

    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![RecordWrite::Put(RecordKind::Roster, vec![1])],
    );
    expect(&mut storage, &create, WriteOutcome::Applied, "create");
    let mut on_group = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
    on_group.replay_mark = mark(b"k", NOW + 10, b"r");
    expect(
        &mut storage,
        &on_group,
        WriteOutcome::Applied,
        "marks are per group",
    );
    let snapshot = read_sorted(&storage, g, &all_kinds()).expect("exists");
    assert_eq!(
        snapshot.version, 1,
        "a ReplayMarkOnly write leaves the version alone"
    );
    assert_eq!(snapshot.records, vec![(RecordKind::Roster, vec![1])]);
}

/// Replay marks at their expiry boundary, and their expiry by a later write.
pub fn replay_marks_and_expiry_boundary<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    const E: u64 = NOW + 1_000;
    let mut storage = open();
    let g: &[u8] = b"group";
    let at = |key: &[u8], expires: u64, now: u64, response: &[u8]| {
        let mut ws = write_set(g, VersionGuard::ReplayMarkOnly, Vec::new());
        ws.replay_mark = mark(key, expires, response);
        ws.now_ms = now;
        ws
    };
    expect(
        &mut storage,
        &at(b"k", E, NOW, b"first"),
        WriteOutcome::Applied,
        "mark",
    );
    expect(
        &mut storage,
        &at(b"early", E - 1, NOW, b"e"),
        WriteOutcome::Applied,
        "mark",
    );
    let live = |s: &S, key: &[u8], now: u64| ok(s.replay_mark(g, key, now), "replay_mark");
    assert!(
        live(&storage, b"k", E).is_some(),
        "live at now == expires_at_ms"
    );
    assert!(
        live(&storage, b"k", E + 1).is_none(),
        "gone at expires_at_ms + 1"
    );

    expect(
        &mut storage,
        &at(b"k", E + 50, E, b"second"),
        WriteOutcome::Conflict,
        "the key is live at its expiry",
    );
    assert_eq!(
        live(&storage, b"k", NOW).and_then(|m| m.response),
        Some(b"first".to_vec())
    );
    // The write at E dropped `early` (expired at E - 1) and kept `k` (live at E).
    expect(
        &mut storage,
        &at(b"x", E + 50, E, b"x"),
        WriteOutcome::Applied,
        "a write at E",
    );
    assert!(
        live(&storage, b"early", NOW).is_none(),
        "a write drops the marks that expired before its now (issue 12: expiry in the write)"
    );
    assert!(
        live(&storage, b"k", NOW).is_some(),
        "a write keeps a mark live at its now"
    );

    expect(
        &mut storage,
        &at(b"k", E + 50, E + 1, b"third"),
        WriteOutcome::Applied,
        "an expired key is reused",
    );
    let reused = live(&storage, b"k", E + 1).expect("the new mark");
    assert_eq!(
        (reused.expires_at_ms, reused.response),
        (E + 50, Some(b"third".to_vec()))
    );
}

/// Reservation-only groups are dropped by a write once expired; groups never are.
pub fn reservation_expiry<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    const E: u64 = NOW + 1_000;
    let mut storage = open();
    let reserve = |group: &[u8], expires: u64| {
        // The contract: the record starts with the expiry; mimi-ds may append more.
        let record = [&expires.to_be_bytes()[..], b"rest"].concat();
        write_set(
            group,
            VersionGuard::Absent,
            vec![RecordWrite::Put(RecordKind::Reservation, record)],
        )
    };
    expect(
        &mut storage,
        &reserve(b"reserved", E),
        WriteOutcome::Applied,
        "reserve",
    );
    expect(
        &mut storage,
        &reserve(b"created", E - 1),
        WriteOutcome::Applied,
        "reserve",
    );
    let consume = write_set(
        b"created",
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Delete(RecordKind::Reservation),
            RecordWrite::Put(RecordKind::Roster, vec![1]),
        ],
    );
    expect(
        &mut storage,
        &consume,
        WriteOutcome::Applied,
        "create the reserved group",
    );
    let exists = |s: &S, group: &[u8]| ok(s.read(group, &[]), "read").map(|g| g.version);

    let mut tick = write_set(b"elsewhere", VersionGuard::ReplayMarkOnly, Vec::new());
    tick.replay_mark = mark(b"t1", E + 100, b"");
    tick.now_ms = E;
    expect(&mut storage, &tick, WriteOutcome::Applied, "a write at E");
    assert_eq!(
        exists(&storage, b"reserved"),
        Some(1),
        "a reservation is live at its expiry"
    );

    tick.replay_mark = mark(b"t2", E + 100, b"");
    tick.now_ms = E + 1;
    expect(
        &mut storage,
        &tick,
        WriteOutcome::Applied,
        "a write at E + 1",
    );
    assert_eq!(
        exists(&storage, b"reserved"),
        None,
        "an expired reservation is dropped by a write (issue 12: expiry in the write)"
    );
    assert_eq!(
        exists(&storage, b"created"),
        Some(2),
        "a group is never dropped"
    );
    expect(
        &mut storage,
        &reserve(b"reserved", E + 500),
        WriteOutcome::Applied,
        "the dropped ID is free",
    );
}

/// Keyed records: one `WelcomeTree` record per epoch, read and deleted by exact key.
pub fn keyed_records<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let mut storage = open();
    let g: &[u8] = b"group";
    let tree = |epoch| RecordKind::WelcomeTree { epoch };
    let create = write_set(
        g,
        VersionGuard::Absent,
        vec![
            RecordWrite::Put(tree(1), vec![1]),
            RecordWrite::Put(tree(2), vec![2]),
            RecordWrite::Put(tree(u64::MAX), vec![3]),
            RecordWrite::Put(RecordKind::WelcomeSnapshots, vec![4]),
        ],
    );
    expect(
        &mut storage,
        &create,
        WriteOutcome::Applied,
        "create with keyed records",
    );
    let read = |s: &S, kinds: &[RecordKind]| ok(s.read(g, kinds), "read").expect("exists").records;
    assert_eq!(
        read(&storage, &[tree(1)]),
        vec![(tree(1), vec![1])],
        "one key"
    );
    assert_eq!(
        read(&storage, &[tree(u64::MAX)]),
        vec![(tree(u64::MAX), vec![3])],
        "the largest epoch"
    );
    assert_eq!(
        read(&storage, &[tree(3)]),
        Vec::new(),
        "a key never written"
    );
    assert_eq!(
        read(&storage, &[RecordKind::WelcomeSnapshots]),
        vec![(RecordKind::WelcomeSnapshots, vec![4])]
    );

    let update = write_set(
        g,
        VersionGuard::Exactly(1),
        vec![
            RecordWrite::Delete(tree(1)),
            RecordWrite::Put(tree(2), vec![5]),
        ],
    );
    expect(
        &mut storage,
        &update,
        WriteOutcome::Applied,
        "delete one key, replace another",
    );
    let mut both = read(&storage, &[tree(1), tree(2), tree(u64::MAX)]);
    both.sort();
    assert_eq!(both, vec![(tree(2), vec![5]), (tree(u64::MAX), vec![3])]);
}
