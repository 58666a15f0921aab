//! Deadlines, the concurrency bound and per-sandbox serialisation.

use super::*;

#[tokio::test]
async fn deadline_undoes_and_reports() {
    let fake = FakeAttacher::new();
    // The first attachment is made at once, the second hangs: only the deadline ends it.
    fake.hold_work_after(1);
    let d = Daemon::start(fake, wide(), me()).await;
    let mut c = d.client().await;
    // The first is made, the second outlives the 250 ms: the first is undone.
    let mut req = tonic::Request::new(setup_request("slow", "slow", "lan,wan"));
    req.set_timeout(Duration::from_millis(250));
    let err = c.setup_pod(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    assert!(
        err.message().contains("undid net1 (iot/lan)"),
        "{}",
        err.message()
    );
    assert!(
        d.attacher
            .calls()
            .contains(&Call::Undone("slow".into(), "net1".into()))
    );
    let list = c
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner();
    assert!(list.attachments.is_empty(), "nothing half-made is recorded");
    d.stop().await;
}

#[tokio::test]
async fn concurrency_is_bounded_and_overflow_is_refused() {
    let fake = FakeAttacher::new();
    // Setups cannot finish until released: two run, one queues, three are refused, by
    // the order of events rather than by how long a setup takes.
    fake.hold_work();
    let d = Daemon::start(
        fake,
        Limits {
            max_parallel: 2,
            max_queued: 1,
            setup_budget: None,
        },
        me(),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(d.client().await);
    }
    let mut clients = clients.into_iter().enumerate();
    let mut spawn = || {
        let (i, mut c) = clients.next().expect("six clients");
        tokio::spawn(async move {
            c.setup_pod(setup_request(&format!("sb{i}"), &format!("p{i}"), "lan"))
                .await
        })
    };
    let mut tasks = vec![spawn(), spawn()];
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while d.attacher.in_flight() < 2 {
        assert!(std::time::Instant::now() < until, "two setups never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 2..6 {
        tasks.push(spawn());
    }
    // The three refusals answer while the others are held.
    let mut refused = 0;
    while refused < 3 {
        assert!(std::time::Instant::now() < until, "no three refusals");
        refused = tasks.iter().filter(|t| t.is_finished()).count();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.attacher.release_work();
    let mut ok = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("maxQueued"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!((ok, exhausted), (3, 3));
    assert_eq!(d.attacher.max_in_flight(), 2);
    d.stop().await;
}

#[tokio::test]
async fn same_sandbox_is_serialised() {
    let fake = FakeAttacher::new();
    fake.set_delay(Duration::from_millis(100));
    let d = Daemon::start(fake, wide(), me()).await;
    let mut c1 = d.client().await;
    let mut c2 = d.client().await;
    let a = tokio::spawn(async move { c1.setup_pod(setup_request("one", "one", "lan")).await });
    let b = tokio::spawn(async move { c2.setup_pod(setup_request("one", "one", "lan")).await });
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(d.attacher.max_in_flight(), 1);
    let setups = d
        .attacher
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Setup(..)))
        .count();
    assert_eq!(setups, 1, "the second request found the first one's record");
    d.stop().await;
}
