//! `DeliveryService::process` on each storage backend (issue 12, "Measured"): `send_message`
//! and an update-path commit at 10, 1000 and 4000 members, on the in-memory storage (the
//! baseline, with its outbox), on SQLite (a file, WAL, `synchronous = FULL`: every commit
//! fsyncs the log) and on PostgreSQL over loopback, all in the same criterion group, with the
//! floor of a durable write next to them (one transaction changing one small row).
//!
//! Each group is built once per size by real openmls clients and copied into each backend
//! through the storage trait (`World::hand_to`), then back (`World::take_back`), so the next
//! backend gets the group at the epoch Alice is in. Every iteration processes a new request
//! made outside the measurement (`iter_batched`, one setup per iteration): a new application
//! message, or a new update commit for the epoch the previous iteration's commit created.
//! Nothing is undone: the group really advances, and the outbox keeps every fanout (nobody
//! drains it).
//!
//! After the timings, a table of what one operation writes: the write set's payload, SQLite's
//! log growth and PostgreSQL's WAL bytes.
//!
//! Run: `cargo bench -p mimi-ds-storage-bench --bench storage`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
};
use mimi_ds::storage::{DsStorage, InMemoryStorage};
use mimi_ds::UnixTimeMs;
use mimi_ds_storage_bench::postgres::{Postgres, URL_VARIABLE};
use mimi_ds_storage_bench::{
    accept, assert_accepted, next_request, observe_one, sizes, sqlite_wal_growth, Operation,
    SqliteFile, World, WriteSetBytes,
};

/// Measures `operation` on `storage` under the name `backend`, each iteration a new request.
fn bench_backend<S: DsStorage>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    backend: &str,
    world: &mut World,
    operation: Operation,
    storage: &mut S,
) {
    world.hand_to(storage);
    let now_ms = world.ds.now_ms;
    group.bench_function(BenchmarkId::new(backend, world.size), |b| {
        b.iter_batched(
            || next_request(&mut world.alice, operation, now_ms),
            |request| accept(&world.ds, &request, storage),
            BatchSize::PerIteration,
        )
    });
    world.take_back(storage);
}

fn configured<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group
}

/// PostgreSQL is measured when `MIMI_DS_POSTGRES_URL` names a server; says so loudly when not.
fn connect_postgres() -> Option<Postgres> {
    let Some(postgres) = Postgres::from_env() else {
        let skipped = format!(
            "*** PostgreSQL NOT MEASURED: {URL_VARIABLE} is unset. Start a server on loopback and set it, e.g. {URL_VARIABLE}=postgresql://postgres@127.0.0.1:5432/postgres ***"
        );
        eprintln!("\n{skipped}\n");
        println!("{skipped}");
        return None;
    };
    println!(
        "PostgreSQL {} (fsync={}, synchronous_commit={}, full_page_writes={}, wal_compression={}, default_toast_compression={})",
        postgres.server_version(),
        postgres.setting("fsync"),
        postgres.setting("synchronous_commit"),
        postgres.setting("full_page_writes"),
        postgres.setting("wal_compression"),
        postgres.setting("default_toast_compression"),
    );
    Some(postgres)
}

/// Measures `operation` on PostgreSQL through `DeliveryService::process_async`, each iteration
/// a new request.
fn bench_postgres(
    group: &mut BenchmarkGroup<'_, WallTime>,
    world: &mut World,
    operation: Operation,
    postgres: &mut Postgres,
) {
    world.hand_to(&mut postgres.blocking());
    let now_ms = world.ds.now_ms;
    group.bench_function(BenchmarkId::new("postgres", world.size), |b| {
        b.iter_batched(
            || next_request(&mut world.alice, operation, now_ms),
            |request| {
                let out = postgres
                    .runtime
                    .block_on(world.ds.ds.process_async(
                        UnixTimeMs(now_ms),
                        &request,
                        &mut postgres.storage,
                    ))
                    .expect("storage failed");
                assert_accepted("request", &out);
                out
            },
            BatchSize::PerIteration,
        )
    });
    world.take_back(&postgres.blocking());
}

fn storage(c: &mut Criterion) {
    load_average("before building the groups");
    let mut worlds: Vec<World> = sizes().into_iter().map(World::new).collect();
    println!(
        "SQLite {} (WAL, synchronous = FULL, files in {})",
        rusqlite::version(),
        std::env::temp_dir().display()
    );
    let mut postgres = connect_postgres();

    for operation in Operation::ALL {
        let mut group = configured(c, operation.name());
        let floor = SqliteFile::new();
        group.bench_function("sqlite_floor_one_row_commit", |b| {
            b.iter(|| floor.one_row_commit())
        });
        if let Some(postgres) = &postgres {
            group.bench_function("postgres_floor_one_row_commit", |b| {
                b.iter(|| postgres.one_row_commit())
            });
        }
        for world in &mut worlds {
            let mut memory = InMemoryStorage::with_outbox();
            bench_backend(&mut group, "in_memory", world, operation, &mut memory);
            let mut sqlite = SqliteFile::new();
            bench_backend(&mut group, "sqlite", world, operation, &mut sqlite.storage);
            if let Some(postgres) = &mut postgres {
                bench_postgres(&mut group, world, operation, postgres);
            }
        }
        group.finish();
    }

    load_average("after the timings");
    bytes_written(&mut worlds, postgres.as_mut());
}

/// The machine is shared: the load average says how much else ran beside the bench.
fn load_average(when: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average {when}: {}", load.trim());
}

/// The second operation on each backend and size after the group was handed over (the first
/// one is not counted, so both databases log a steady state: PostgreSQL writes a full page
/// image for the first change of a page after a checkpoint, and the copy touched the group's
/// pages just before).
fn bytes_written(worlds: &mut [World], mut postgres: Option<&mut Postgres>) {
    println!("\nbytes written per operation (the second after the copy, after the timings)");
    println!(
        "| operation | N | backend | write set: records | replay mark | fanout | total | database log |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---|");
    let mut records_put = Vec::new();
    for operation in Operation::ALL {
        for world in worlds.iter_mut() {
            let mut memory = InMemoryStorage::with_outbox();
            world.hand_to(&mut memory);
            let _ = observe_one(world, operation, &mut memory);
            let written = WriteSetBytes::of(&observe_one(world, operation, &mut memory));
            world.take_back(&memory);
            row(
                operation,
                world.size,
                "in_memory",
                &written,
                "none (process memory)",
            );
            records_put.push((operation, world.size, written));

            let mut sqlite = SqliteFile::new();
            world.hand_to(&mut sqlite.storage);
            let _ = observe_one(world, operation, &mut sqlite.storage);
            let (write_set, wal) = sqlite_wal_growth(&mut sqlite, |file| {
                observe_one(world, operation, &mut file.storage)
            });
            world.take_back(&sqlite.storage);
            row(
                operation,
                world.size,
                "sqlite",
                &WriteSetBytes::of(&write_set),
                &format!("WAL file +{} B ({} pages)", wal.bytes, wal.frames),
            );

            if let Some(postgres) = postgres.as_deref_mut() {
                world.hand_to(&mut postgres.blocking());
                let _ = observe_one(world, operation, &mut postgres.blocking());
                let before = postgres.wal_lsn();
                let write_set = observe_one(world, operation, &mut postgres.blocking());
                let after = postgres.wal_lsn();
                let wal = postgres.wal_bytes_between(&before, &after);
                world.take_back(&postgres.blocking());
                row(
                    operation,
                    world.size,
                    "postgres",
                    &WriteSetBytes::of(&write_set),
                    &format!("WAL +{wal} B (pg_wal_lsn_diff)"),
                );
            }
        }
    }
    println!("\nrecords put per operation (kind: bytes)");
    for (operation, size, written) in records_put {
        let records: Vec<String> = written
            .records
            .iter()
            .map(|(kind, len)| format!("{kind:?}: {len}"))
            .collect();
        println!("{} N={size}: {}", operation.name(), records.join(", "));
    }
}

fn row(operation: Operation, size: usize, backend: &str, written: &WriteSetBytes, log: &str) {
    println!(
        "| {} | {size} | {backend} | {} | {} | {} | {} | {log} |",
        operation.name(),
        written.record_total(),
        written.replay_mark,
        written.fanout,
        written.total()
    );
}

criterion_group!(benches, storage);
criterion_main!(benches);
