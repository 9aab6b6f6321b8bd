//! Realtime end to end: the real PocketBase JS SDK (`tests/compat/realtime.mjs`), and a
//! crash test: SIGKILL the server while events flow, restart it, resume with the last
//! event id, and check that every acknowledged write arrived exactly once, in commit order,
//! and nothing else did.
//!
//! Run: `cargo test --test realtime -- --nocapture`. The SDK test needs node and npm (the
//! pinned packages of `tests/compat` are installed with `npm ci` when missing).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use common::sse::Sse;
use common::{Server, StartOptions};

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_js_sdk_subscribes_and_resumes() {
    let server = Server::start();
    server.setup_superuser().await;
    let stdout = common::npm::run_script(
        "tests/compat/realtime.mjs",
        &server.base,
        Duration::from_secs(120),
        "realtime: ",
    )
    .await;
    println!("{stdout}");
}

/// Writers whose records carry (writer, n): each writer sends n only after n - 1 was
/// acknowledged.
const WRITERS: i64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn after_sigkill_a_resuming_client_gets_every_acknowledged_write_in_order() {
    let temp = tempfile::tempdir().expect("temp dir");
    let cycles: usize = std::env::var("REALTIME_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut server = Server::start_in(temp.path(), StartOptions::default());
    let token = server.setup_superuser().await;
    let r = server
        .call(
            "POST",
            "/api/collections",
            Some(&token),
            Some(json!({"name": "ticks", "listRule": "", "viewRule": "",
                "fields": [{"name": "w", "type": "number"}, {"name": "n", "type": "number"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Per writer: the next n to send, and every n acknowledged.
    let next = Arc::new(Mutex::new(vec![0i64; WRITERS as usize]));
    let mut acked: Vec<Vec<i64>> = vec![Vec::new(); WRITERS as usize];
    let mut received: Vec<(u64, i64, i64)> = Vec::new();
    let mut resume: Option<String> = None;
    for cycle in 0..=cycles {
        let mut sse = Sse::connect(&server, resume.as_deref()).await;
        let r = sse.subscribe(&server, None, &["ticks"]).await;
        assert_eq!(r.status, 204, "{}", r.text);
        if resume.is_none() {
            resume = Some(sse.client_id.clone());
        }
        let token = server.login().await;
        // Writers run while the client reads; on the last cycle nothing is killed.
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (client, base, token, next) =
                (server.client.clone(), server.base.clone(), token.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                let stop = tokio::time::Instant::now() + Duration::from_millis(1500);
                while tokio::time::Instant::now() < stop {
                    let n = next.lock().expect("lock")[w as usize];
                    let sent = client
                        .post(format!("{base}/api/collections/ticks/records"))
                        .header("Authorization", &token)
                        .json(&json!({"w": w, "n": n}))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == 200 => {
                            acks.push(n);
                            next.lock().expect("lock")[w as usize] = n + 1;
                        }
                        // The server died: an attempt whose answer was lost may or may not
                        // have committed; the next cycle's writes start after it.
                        _ => {
                            next.lock().expect("lock")[w as usize] = n + 1;
                            break;
                        }
                    }
                }
                acks
            }));
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = sse.next(Duration::from_secs(3)).await {
                got.push(e);
            }
            got
        });
        if cycle < cycles {
            tokio::time::sleep(Duration::from_millis(700)).await;
            server.kill9();
        }
        for (w, task) in tasks.into_iter().enumerate() {
            acked[w].extend(task.await.expect("writer"));
        }
        let events = reader.await.expect("reader");
        for e in &events {
            assert_eq!(e.event, "ticks", "only events of the subscription: {e:?}");
            let seq: u64 = e.id.parse().expect("numeric event id");
            let record = &e.data["record"];
            received.push((seq, record["w"].as_i64().expect("w"), record["n"].as_i64().expect("n")));
            resume = Some(e.id.clone());
        }
        let counts: Vec<usize> = acked.iter().map(Vec::len).collect();
        println!("cycle {cycle}: {} events; writes acknowledged so far per writer {counts:?}", events.len());
        if cycle < cycles {
            server = Server::start_in(temp.path(), StartOptions::default());
        }
    }

    // Exactly once, in commit order.
    assert!(received.windows(2).all(|p| p[0].0 < p[1].0), "event ids grow strictly (no repeats)");
    let mut per_writer: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (_, w, n) in &received {
        per_writer.entry(*w).or_default().push(*n);
    }
    let attempted = next.lock().expect("lock").clone();
    for w in 0..WRITERS {
        let ns = per_writer.remove(&w).unwrap_or_default();
        // Writer w's commits are a prefix of its attempts, in order: 0, 1, 2, ...
        assert!(ns.iter().enumerate().all(|(i, n)| *n >= i as i64), "writer {w}: {ns:?}");
        let distinct: std::collections::BTreeSet<_> = ns.iter().collect();
        assert_eq!(distinct.len(), ns.len(), "writer {w}: an event twice: {ns:?}");
        assert!(ns.windows(2).all(|p| p[0] < p[1]), "writer {w}: out of order: {ns:?}");
        for a in &acked[w as usize] {
            assert!(ns.contains(a), "writer {w}: acknowledged write {a} never arrived ({ns:?})");
        }
        assert!(ns.iter().all(|n| *n < attempted[w as usize]), "writer {w}: an event nobody wrote: {ns:?}");
    }
    assert!(per_writer.is_empty(), "events of unknown writers: {per_writer:?}");
    let counts: Vec<usize> = acked.iter().map(Vec::len).collect();
    assert!(counts.iter().all(|c| *c > 10), "the writers made progress: {counts:?}");
    println!("{} events, every one of {counts:?} acknowledged writes among them", received.len());
}
