//! The two measurements, server and direct, each with its delivery of the fanout.

use super::*;

pub(super) async fn measure_server(spec: &Spec) -> Result<Figures, String> {
    let pki = Pki::new(&[ALPHA]);
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let storage = match &spec.storage {
        Storage::Sqlite { dir } => StorageChoice::Sqlite(dir.join("server.sqlite3")),
        Storage::Postgres { server_url, .. } => StorageChoice::Postgres(server_url.clone()),
    };
    let mut config = ServerConfig::new(
        ALPHA,
        true,
        "127.0.0.1:0".parse().expect("address"),
        storage,
        state.path().to_path_buf(),
        pki.material(ALPHA),
        PeerDirectory::new(),
    );
    config.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let hub = mimi_ds_server::start(config)
        .await
        .map_err(|e| format!("server: {e}"))?;
    let workers = spec.concurrency.max(SETUP_CONCURRENCY);
    let https = Https::connect(&pki, hub.local_addr(), workers, spec.http2).await?;
    let target = Arc::new(Target::Https(https));
    let external_sender = hub.external_sender().expect("a hub").clone();
    let metrics = hub.metrics_addr().expect("metrics");
    let outbox = || async move {
        let (_, text) = plain_get(metrics, "/metrics").await;
        sample(&text, "mimi_ds_server_outbox_entries").map(|v| v as u64)
    };
    let result = async {
        let setup = Instant::now();
        let mut prepared = prepare(&target, &external_sender, spec).await?;
        wait_until(SETUP_DRAIN, || async { outbox().await == Some(0) }).await?;
        eprintln!("server: setup took {:.1} s", setup.elapsed().as_secs_f64());
        let handled = || async move {
            let (_, text) = plain_get(metrics, "/metrics").await;
            let metric = |name: &str| {
                sample(
                    &text,
                    &format!("mimi_ds_server_request_duration_seconds_{name}{{operation=\"group_operation\"}}"),
                )
                .unwrap_or(0.0)
            };
            (metric("sum"), metric("count"))
        };
        let (sum_before, count_before) = handled().await;
        let base = hub.relay_stats().delivered();
        let delivered = || hub.relay_stats().delivered() - base;
        let mut figures = timed(&target, &prepared.requests, spec, None, delivered).await?;
        let (sum, count) = handled().await;
        figures.handler_mean = (count > count_before)
            .then(|| Duration::from_secs_f64((sum - sum_before) / (count - count_before)));
        figures.rejected_deliveries = hub.relay_stats().rejected_queues();
        figures.probe = (
            probe(&target, &mut prepared).await?,
            figures.sent.div_ceil(prepared.groups) + 1,
        );
        Ok::<_, String>(figures)
    }
    .await;
    hub.shutdown().await;
    result
}

pub(super) async fn measure_direct(spec: &Spec) -> Result<Figures, String> {
    let (router, external_sender) = router();
    let workers = spec.concurrency.max(SETUP_CONCURRENCY);
    let delivered = Arc::new(AtomicU64::new(0));
    let delivering_ns = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Wake::default());
    match &spec.storage {
        Storage::Sqlite { dir } => {
            let path = dir.join("direct.sqlite3");
            let writers: WriterQueues = Default::default();
            let slots = (0..workers)
                .map(|_| open_sqlite(&path, &writers).map(Mutex::new))
                .collect::<Result<_, _>>()?;
            let direct = Arc::new(DirectSqlite { router, slots });
            let drain = {
                let direct = Arc::clone(&direct);
                let (mut ds, mut qs) = open_sqlite(&path, &writers)?;
                let wake = Arc::clone(&wake);
                let (delivered, rejected, stop, delivering_ns) = (
                    Arc::clone(&delivered),
                    Arc::clone(&rejected),
                    Arc::clone(&stop),
                    Arc::clone(&delivering_ns),
                );
                tokio::task::spawn_blocking(move || -> Result<(), String> {
                    let qs_service = direct.router.qs().expect("a QS");
                    while !stop.load(Ordering::Relaxed) {
                        let entries = ds.pending(now_ms(), 512).map_err(|e| e.to_string())?;
                        if entries.is_empty() {
                            wake.wait_blocking(DRAIN_POLL);
                        }
                        // As the server's relay delivers to its own QS: a batch's deliveries
                        // in one QS transaction, then their removal in one DS transaction.
                        for batch in entries.chunks(DRAIN_BATCH) {
                            let busy = Instant::now();
                            let fanouts = batch
                                .iter()
                                .map(checked_fanout)
                                .collect::<Result<Vec<_>, _>>()?;
                            qs.in_transaction(|qs| {
                                for fanout in &fanouts {
                                    let outcome = qs_service
                                        .deliver(
                                            UnixTimeMs(now_ms()),
                                            &fanout.to_bytes(),
                                            Some(ALPHA),
                                            qs,
                                        )
                                        .map_err(|e| e.to_string())?;
                                    count_answer(fanout, &outcome.response, &rejected)?;
                                }
                                Ok::<_, String>(())
                            })
                            .map_err(|e| e.to_string())??;
                            ds.in_transaction(|ds| {
                                for entry in batch {
                                    ds.mark_delivered(entry.id).map_err(|e| e.to_string())?;
                                }
                                Ok::<_, String>(())
                            })
                            .map_err(|e| e.to_string())??;
                            delivering_ns.fetch_add(nanos(busy.elapsed()), Ordering::Relaxed);
                            delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            };
            let target = Arc::new(Target::Sqlite(Arc::clone(&direct)));
            let outbox_empty = || {
                let direct = Arc::clone(&direct);
                async move {
                    let slot = direct.slots[0].lock().unwrap_or_else(|e| e.into_inner());
                    slot.0.outbox_len().is_ok_and(|n| n == 0)
                }
            };
            let result = direct_phases(
                spec,
                &target,
                &external_sender,
                (&delivered, &delivering_ns, &wake),
                outbox_empty,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            drain.await.map_err(|e| e.to_string())??;
            result.map(|mut f| {
                f.rejected_deliveries = rejected.load(Ordering::Relaxed);
                f
            })
        }
        Storage::Postgres { direct_url, .. } => {
            let mut slots = Vec::with_capacity(workers);
            for _ in 0..workers {
                slots.push(tokio::sync::Mutex::new(open_postgres(direct_url).await?));
            }
            let direct = Arc::new(DirectPostgres { router, slots });
            let drain = {
                let direct = Arc::clone(&direct);
                let (mut ds, mut qs) = open_postgres(direct_url).await?;
                let wake = Arc::clone(&wake);
                let (delivered, rejected, stop, delivering_ns) = (
                    Arc::clone(&delivered),
                    Arc::clone(&rejected),
                    Arc::clone(&stop),
                    Arc::clone(&delivering_ns),
                );
                tokio::spawn(async move {
                    let qs_service = direct.router.qs().expect("a QS");
                    while !stop.load(Ordering::Relaxed) {
                        let entries = ds.pending(now_ms(), 512).await.map_err(|e| e.to_string())?;
                        if entries.is_empty() {
                            wake.wait(DRAIN_POLL).await;
                        }
                        for entry in entries {
                            let busy = Instant::now();
                            let fanout = checked_fanout(&entry)?;
                            let outcome = qs_service
                                .deliver_async(
                                    UnixTimeMs(now_ms()),
                                    &fanout.to_bytes(),
                                    Some(ALPHA),
                                    &mut qs,
                                )
                                .await
                                .map_err(|e| e.to_string())?;
                            count_answer(&fanout, &outcome.response, &rejected)?;
                            ds.mark_delivered(entry.id)
                                .await
                                .map_err(|e| e.to_string())?;
                            delivering_ns.fetch_add(nanos(busy.elapsed()), Ordering::Relaxed);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok::<(), String>(())
                })
            };
            let target = Arc::new(Target::Postgres(Arc::clone(&direct)));
            let outbox_empty = || {
                let direct = Arc::clone(&direct);
                async move {
                    let slot = direct.slots[0].lock().await;
                    slot.0.outbox_len().await.is_ok_and(|n| n == 0)
                }
            };
            let result = direct_phases(
                spec,
                &target,
                &external_sender,
                (&delivered, &delivering_ns, &wake),
                outbox_empty,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            drain.await.map_err(|e| e.to_string())??;
            result.map(|mut f| {
                f.rejected_deliveries = rejected.load(Ordering::Relaxed);
                f
            })
        }
    }
}

pub(super) async fn direct_phases<F: std::future::Future<Output = bool>>(
    spec: &Spec,
    target: &Arc<Target>,
    external_sender: &ExternalSender,
    (delivered, delivering_ns, wake): (&AtomicU64, &AtomicU64, &Arc<Wake>),
    outbox_empty: impl Fn() -> F,
) -> Result<Figures, String> {
    let setup = Instant::now();
    let mut prepared = prepare(target, external_sender, spec).await?;
    wait_until(SETUP_DRAIN, &outbox_empty).await?;
    eprintln!("direct: setup took {:.1} s", setup.elapsed().as_secs_f64());
    let base = delivered.load(Ordering::Relaxed);
    let base_ns = delivering_ns.load(Ordering::Relaxed);
    let on_accepted = spec.eager_drain.then(|| Arc::clone(wake));
    let mut figures = timed(target, &prepared.requests, spec, on_accepted, || {
        delivered.load(Ordering::Relaxed) - base
    })
    .await?;
    let count = delivered.load(Ordering::Relaxed) - base;
    figures.delivery_mean = (count > 0)
        .then(|| Duration::from_nanos((delivering_ns.load(Ordering::Relaxed) - base_ns) / count));
    figures.probe = (
        probe(target, &mut prepared).await?,
        figures.sent.div_ceil(prepared.groups) + 1,
    );
    Ok(figures)
}

/// How long the direct run's drain loop waits when the outbox is empty.
pub(super) const DRAIN_POLL: Duration = Duration::from_millis(2);

/// Wakes the direct run's drain loop (blocking or async) before its poll interval ends.
#[derive(Default)]
pub(super) struct Wake {
    pending: Mutex<bool>,
    condvar: std::sync::Condvar,
    notify: tokio::sync::Notify,
}

impl Wake {
    pub(super) fn signal(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.condvar.notify_one();
        self.notify.notify_one();
    }

    pub(super) fn wait_blocking(&self, at_most: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .condvar
            .wait_timeout_while(guard, at_most, |pending| !*pending)
            .unwrap_or_else(|e| e.into_inner());
        *guard = false;
    }

    pub(super) async fn wait(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.notify.notified()).await;
    }
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Entries the direct SQLite drain delivers per transaction (the server's relay: up to 64).
const DRAIN_BATCH: usize = 64;

pub(super) fn checked_fanout(entry: &OutboxEntry) -> Result<mimi_ds::Fanout, String> {
    let fanout = entry.fanout().map_err(|e| e.to_string())?;
    if !fanout.destination.eq_ignore_ascii_case(ALPHA) {
        return Err(format!(
            "fanout to {}: every queue is at {ALPHA}",
            fanout.destination
        ));
    }
    Ok(fanout)
}

pub(super) fn count_answer(
    fanout: &mimi_ds::Fanout,
    answer: &[u8],
    rejected: &AtomicU64,
) -> Result<(), String> {
    let answer: QueueingServiceResponse =
        decode_exact(answer).map_err(|e| format!("QS answer: {e}"))?;
    let queues = fanout.rejected_queues(&answer).len() as u64;
    rejected.fetch_add(queues, Ordering::Relaxed);
    Ok(())
}

/// Polls `done` every 5 ms for at most `within`.
pub(super) async fn wait_until<F: std::future::Future<Output = bool>>(
    within: Duration,
    done: impl Fn() -> F,
) -> Result<(), String> {
    let started = Instant::now();
    while !done().await {
        if started.elapsed() > within {
            return Err(format!(
                "the setup's fanout was not delivered within {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
