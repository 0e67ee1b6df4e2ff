//! What both measurements share: setup, the timed phase and the probe.

use super::*;

/// The groups exist, every member has a queue; the messages are signed.
pub(super) struct Prepared {
    pub(super) requests: Vec<Vec<u8>>,
    /// A member (not the sender) of the first group, with its queue.
    pub(super) probe: TestClient,
    /// Groups: the first one gets every `groups`-th message, from the first on.
    pub(super) groups: usize,
}

/// Whether an answer is an accepted DS request.
pub(super) fn accepted(status: u16, body: &[u8]) -> Result<DsResponseBody, String> {
    let response = decode_exact::<DsResponse>(body)
        .map_err(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(body)))?;
    match response.body {
        DsResponseBody::Error(error) => Err(format!(
            "HTTP {status}: {:?} {}",
            error.code,
            String::from_utf8_lossy(error.description.as_slice())
        )),
        _ if status != 200 => Err(format!("HTTP {status}")),
        body => Ok(body),
    }
}

/// Sends `bodies` to `path` with `SETUP_CONCURRENCY` in flight; the answers in order.
pub(super) async fn batch(
    target: &Arc<Target>,
    path: &'static str,
    bodies: Vec<Vec<u8>>,
) -> Vec<(u16, Vec<u8>)> {
    let count = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..SETUP_CONCURRENCY {
        let (target, bodies, next) = (Arc::clone(target), Arc::clone(&bodies), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return answers;
                }
                answers.push((i, target.call(worker, path, bodies[i].clone()).await));
            }
        }));
    }
    let mut answers = vec![(0, Vec::new()); count];
    for task in tasks {
        for (i, answer) in task.await.expect("setup worker") {
            answers[i] = answer;
        }
    }
    answers
}

pub(super) async fn prepare(
    target: &Arc<Target>,
    external_sender: &ExternalSender,
    spec: &Spec,
) -> Result<Prepared, String> {
    let (groups, members) = spec.scenario.shape();
    let mut clients: Vec<Vec<TestClient>> = (0..groups)
        .map(|g| {
            (0..members)
                .map(|m| TestClient::new(&format!("user{g}x{m}"), "phone", ALPHA))
                .collect()
        })
        .collect();
    // Every member's queue at the QS, sealed for the hub.
    let bodies = clients
        .iter()
        .flatten()
        .map(|c| c.create_queue_request(now_ms()))
        .collect();
    let answers = batch(target, "/queue_operation", bodies).await;
    for (client, (status, body)) in clients.iter_mut().flatten().zip(answers) {
        if status != 200 {
            return Err(format!("create_queue: HTTP {status}"));
        }
        client.use_queue(&body, ALPHA);
    }
    // Group IDs, the groups, everyone added by the creator in one commit.
    let request_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .map_err(|e| e.to_string())?;
    let answers = batch(target, "/group_operation", vec![request_id; groups]).await;
    for (group, (status, body)) in clients.iter_mut().zip(answers) {
        let DsResponseBody::GroupId(id) = accepted(status, &body)? else {
            return Err("request_group_id: no group ID".into());
        };
        group[0].create_group(id.as_slice(), external_sender);
    }
    let bodies = clients
        .iter()
        .map(|group| group[0].create_group_request(now_ms()))
        .collect();
    for (status, body) in batch(target, "/group_operation", bodies).await {
        accepted(status, &body).map_err(|e| format!("create_group: {e}"))?;
    }
    let bodies = clients
        .iter_mut()
        .map(|group| {
            let key_packages = group[1..].iter().map(TestClient::key_package).collect();
            group[0].add_request(key_packages, now_ms())
        })
        .collect();
    for (status, body) in batch(target, "/group_operation", bodies).await {
        accepted(status, &body).map_err(|e| format!("add: {e}"))?;
    }
    for group in &mut clients {
        group[0].confirm_commit();
    }
    // The timed phase's messages, round-robin over the groups.
    let mut requests = Vec::with_capacity(spec.requests);
    for i in 0..spec.requests {
        requests.push(clients[i % groups][0].message_request(PAYLOAD, now_ms()));
    }
    let probe = clients[0].swap_remove(1);
    Ok(Prepared {
        requests,
        probe,
        groups,
    })
}

/// What one worker saw.
#[derive(Default)]
pub(super) struct Tally {
    latencies: Vec<Duration>,
    accepted: usize,
    refusals: Vec<String>,
    resends: usize,
    on_accepted: Option<Arc<Wake>>,
}

/// How often a request answered `conflict` is resent unchanged, as wire-format.md §5.6 lets
/// a client do, before it counts as refused.
pub(super) const MAX_RESENDS: usize = 20;

/// Whether an answer is `conflict`: the DS's optimistic write lost a race with another
/// request to the same group more than `max_conflict_retries` times, and changed nothing.
pub(super) fn is_conflict(status: u16, body: &[u8]) -> bool {
    status == 409
        && matches!(
            decode_exact::<DsResponse>(body).map(|r| r.body),
            Ok(DsResponseBody::Error(e)) if e.code == mimi_ds::wire::ErrorCode::Conflict
        )
}

impl Tally {
    /// Sends one request through `call`, resending it on `conflict`; its latency runs from
    /// the first send to the last answer, as its client sees it.
    pub(super) async fn send<F: std::future::Future<Output = (u16, Vec<u8>)>>(
        &mut self,
        call: impl Fn() -> F,
    ) {
        let sent = Instant::now();
        let mut answer = call().await;
        let mut resends = 0;
        while is_conflict(answer.0, &answer.1) && resends < MAX_RESENDS {
            resends += 1;
            answer = call().await;
        }
        self.record(sent.elapsed(), resends, answer);
    }

    /// [`Tally::send`] for a blocking call.
    pub(super) fn send_blocking(&mut self, call: impl Fn() -> (u16, Vec<u8>)) {
        let sent = Instant::now();
        let mut answer = call();
        let mut resends = 0;
        while is_conflict(answer.0, &answer.1) && resends < MAX_RESENDS {
            resends += 1;
            answer = call();
        }
        self.record(sent.elapsed(), resends, answer);
    }

    pub(super) fn record(
        &mut self,
        latency: Duration,
        resends: usize,
        (status, body): (u16, Vec<u8>),
    ) {
        self.latencies.push(latency);
        self.resends += resends;
        match accepted(status, &body) {
            Ok(_) => {
                self.accepted += 1;
                if let Some(wake) = &self.on_accepted {
                    wake.signal();
                }
            }
            Err(refusal) if self.refusals.len() < 3 => self.refusals.push(refusal),
            Err(_) => {}
        }
    }
}

/// Sends the prepared messages with `concurrency` workers until all are sent or the maximum
/// duration ran out, then waits (as long again at most) until `delivered()` counts every
/// accepted one.
pub(super) async fn timed(
    target: &Arc<Target>,
    requests: &[Vec<u8>],
    spec: &Spec,
    on_accepted: Option<Arc<Wake>>,
    delivered: impl Fn() -> u64,
) -> Result<Figures, String> {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(requests.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + spec.max_duration;
    let mut workers = Vec::with_capacity(spec.concurrency);
    for worker in 0..spec.concurrency {
        let (requests, next) = (Arc::clone(&requests), Arc::clone(&next));
        let on_accepted = on_accepted.clone();
        let take = move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (i < requests.len() && Instant::now() < deadline).then(|| requests[i].clone())
        };
        workers.push(match &**target {
            Target::Sqlite(direct) => {
                let direct = Arc::clone(direct);
                tokio::task::spawn_blocking(move || {
                    let mut tally = Tally {
                        on_accepted,
                        ..Tally::default()
                    };
                    while let Some(body) = take() {
                        tally.send_blocking(|| direct.call(worker, "/group_operation", &body));
                    }
                    tally
                })
            }
            _ => {
                let target = Arc::clone(target);
                tokio::spawn(async move {
                    let mut tally = Tally {
                        on_accepted,
                        ..Tally::default()
                    };
                    while let Some(body) = take() {
                        tally
                            .send(|| target.call(worker, "/group_operation", body.clone()))
                            .await;
                    }
                    tally
                })
            }
        });
    }
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.await.map_err(|e| format!("worker: {e}"))?;
        all.latencies.extend(tally.latencies);
        all.accepted += tally.accepted;
        all.refusals.extend(tally.refusals);
        all.resends += tally.resends;
    }
    let elapsed = started.elapsed();
    let wait_until = Instant::now() + spec.max_duration;
    let mut delivered_after = None;
    while Instant::now() < wait_until {
        if delivered() >= all.accepted as u64 {
            delivered_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    all.latencies.sort();
    all.refusals.truncate(3);
    Ok(Figures {
        sent: all.latencies.len(),
        accepted: all.accepted,
        refusals: all.refusals,
        resends: all.resends,
        elapsed,
        latencies: all.latencies,
        delivered_after,
        delivery_mean: None,
        handler_mean: None,
        rejected_deliveries: 0,
        probe: (0, 0),
    })
}

/// Fetches the probe member's whole queue (the Welcome plus every message of its group) and
/// returns how many messages it held.
pub(super) async fn probe(target: &Arc<Target>, prepared: &mut Prepared) -> Result<usize, String> {
    let client = &mut prepared.probe;
    let mut received = 0;
    loop {
        let (status, body) = target
            .call(0, "/queue_operation", client.fetch_request(100, now_ms()))
            .await;
        if status != 200 {
            return Err(format!(
                "fetch: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let (count, remaining) = client.take_page(&body);
        received += count;
        if remaining == 0 || count == 0 {
            break;
        }
    }
    Ok(received)
}
