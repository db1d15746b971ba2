//! Live password sets: changes take effect on the next AUTH, connected clients keep
//! working, and argon2 costs exactly what the design promises (counted).

mod common;

use common::*;
use turnstile::auth::{ChangeError, Directory, HashParams, SetChange, SetId, VerifyOptions};

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_connection_survives_its_password_being_removed() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["A"]).await;
    let mut old = proxy.authed("A").await;
    let id_before = old.cmd(&["CLIENT", "ID"]).await;
    proxy.add_default("B").await;
    let set = SetId::BdbDefault(1);
    proxy.directory.change(&set, SetChange::Remove, b"A").await.unwrap();
    // Still connected, still working, same upstream connection.
    assert_eq!(old.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
    assert_eq!(old.cmd(&["CLIENT", "ID"]).await, id_before);
    // The very next AUTH sees the change.
    let mut fresh = proxy.connect().await;
    assert_eq!(fresh.cmd(&["AUTH", "A"]).await, WRONGPASS);
    assert_eq!(fresh.cmd(&["AUTH", "B"]).await, b"+OK\r\n");
    assert_eq!(fresh.cmd(&["GET", "k"]).await, b"$1\r\nv\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_remove_replace_on_default_and_named_users() {
    let redis = Redis::start(&[]);
    let proxy = Proxy::start(&redis, &["old"]).await;
    proxy.add_user("alice", &["a1"]).await;
    let d = &proxy.directory;
    let def = SetId::BdbDefault(1);
    let alice = SetId::User("alice".into());
    let auth = |args: Vec<&'static str>| {
        let proxy = &proxy;
        async move { proxy.connect().await.cmd(&args).await }
    };
    // Add: both work.
    d.change(&def, SetChange::Add, b"new").await.unwrap();
    d.change(&alice, SetChange::Add, b"a2").await.unwrap();
    assert_eq!(auth(vec!["AUTH", "old"]).await, b"+OK\r\n");
    assert_eq!(auth(vec!["AUTH", "new"]).await, b"+OK\r\n");
    assert_eq!(auth(vec!["AUTH", "alice", "a1"]).await, b"+OK\r\n");
    assert_eq!(auth(vec!["AUTH", "alice", "a2"]).await, b"+OK\r\n");
    // Duplicates and unknown passwords are refused, the set unchanged.
    assert!(matches!(d.change(&def, SetChange::Add, b"new").await, Err(ChangeError::AlreadyPresent)));
    assert!(matches!(d.change(&def, SetChange::Remove, b"nope").await, Err(ChangeError::NotPresent)));
    assert!(matches!(
        d.change(&SetId::BdbDefault(9), SetChange::Add, b"x").await,
        Err(ChangeError::NotFound)
    ));
    assert!(matches!(d.change(&def, SetChange::Add, b"").await, Err(ChangeError::Empty)));
    // Remove the old one: only the new works.
    d.change(&def, SetChange::Remove, b"old").await.unwrap();
    assert_eq!(auth(vec!["AUTH", "old"]).await, WRONGPASS);
    assert_eq!(auth(vec!["AUTH", "new"]).await, b"+OK\r\n");
    // The last password cannot be removed.
    assert!(matches!(d.change(&def, SetChange::Remove, b"new").await, Err(ChangeError::LastPassword)));
    assert_eq!(auth(vec!["AUTH", "new"]).await, b"+OK\r\n");
    // Replace all: only the newest works.
    d.change(&alice, SetChange::Replace, b"a3").await.unwrap();
    assert_eq!(auth(vec!["AUTH", "alice", "a1"]).await, WRONGPASS);
    assert_eq!(auth(vec!["AUTH", "alice", "a2"]).await, WRONGPASS);
    assert_eq!(auth(vec!["AUTH", "alice", "a3"]).await, b"+OK\r\n");
    // Removing a user locks it out at once.
    assert!(d.remove_user("alice"));
    assert_eq!(auth(vec!["AUTH", "alice", "a3"]).await, WRONGPASS);
}

fn directory(cache: bool) -> Directory {
    let mut v = VerifyOptions { concurrency: 2, ..VerifyOptions::default() };
    if !cache {
        v.cache_capacity = 0;
    }
    let d = Directory::new(FAST, v);
    d.set_acl(1, "~* &* +@all");
    d.set_bdb(
        1,
        turnstile::auth::BdbAccess {
            default_user: true,
            permissions: vec![turnstile::auth::Permission { role: 1, acl: 1 }],
        },
    );
    d.set_user("alice", vec![1]).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_auth_costs_exactly_one_argon2_evaluation_whatever_the_set_size() {
    for size in [1usize, 4, 16] {
        let d = directory(true);
        for i in 0..size {
            d.change(&SetId::BdbDefault(1), SetChange::Add, format!("pw{i}").as_bytes()).await.unwrap();
            d.change(&SetId::User("alice".into()), SetChange::Add, format!("pw{i}").as_bytes())
                .await
                .unwrap();
        }
        for (user, what) in
            [(None, "default user"), (Some(&b"alice"[..]), "named user"), (Some(b"ghost"), "unknown user")]
        {
            let before = d.evaluations();
            assert!(d.authenticate(1, user, b"wrong").await.is_none());
            assert_eq!(d.evaluations() - before, 1, "failed AUTH, {what}, set of {size}");
        }
        // Unknown database, and a database whose default user has no password: still one.
        let before = d.evaluations();
        assert!(d.authenticate(7, None, b"wrong").await.is_none());
        assert_eq!(d.evaluations() - before, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_success_costs_no_evaluation_and_removal_invalidates_at_once() {
    let d = directory(true);
    let set = SetId::BdbDefault(1);
    for pw in ["p1", "p2", "p3", "p4"] {
        d.change(&set, SetChange::Add, pw.as_bytes()).await.unwrap();
    }
    let e0 = d.evaluations();
    assert!(d.authenticate(1, None, b"p3").await.is_some());
    assert_eq!(d.evaluations() - e0, 1, "first success verifies with argon2");
    let e1 = d.evaluations();
    for _ in 0..100 {
        assert_eq!(d.authenticate(1, None, b"p3").await.unwrap().name(), "default");
    }
    assert_eq!(d.evaluations(), e1, "cached successes cost no argon2");
    assert_eq!(d.cache_hits(), 100);
    // `default` spelled out shares the default user's cache entry.
    assert!(d.authenticate(1, Some(b"default"), b"p3").await.is_some());
    assert_eq!(d.evaluations(), e1);
    // Remove p3: the very next AUTH with it fails, although it was cached.
    d.change(&set, SetChange::Remove, b"p3").await.unwrap();
    let e2 = d.evaluations();
    assert!(d.authenticate(1, None, b"p3").await.is_none());
    assert_eq!(d.evaluations() - e2, 1);
    // Replace: cached p1 must not survive either.
    assert!(d.authenticate(1, None, b"p1").await.is_some());
    d.change(&set, SetChange::Replace, b"p9").await.unwrap();
    assert!(d.authenticate(1, None, b"p1").await.is_none());
    assert!(d.authenticate(1, None, b"p9").await.is_some());
    // A cache entry of one set is no good for another.
    d.change(&SetId::User("alice".into()), SetChange::Add, b"p9").await.unwrap();
    let e3 = d.evaluations();
    assert!(d.authenticate(1, Some(b"alice"), b"p9").await.is_some());
    assert_eq!(d.evaluations() - e3, 1);
}

/// After a rotation, clients still configured with the removed password retry it in
/// a loop: one wrong password, however often and however concurrently it is tried,
/// costs argon2 once (at most once per evaluation running at the same time), while
/// each distinct guess still costs one. Decided on the set as it is now: a password
/// added after its failure was cached is accepted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_wrong_password_costs_argon2_once_and_is_decided_on_the_current_set() {
    let d = directory(true);
    let set = SetId::BdbDefault(1);
    d.change(&set, SetChange::Add, b"p1").await.unwrap();
    let e0 = d.evaluations();
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.authenticate(1, None, b"old").await.is_none() })
        })
        .collect();
    for a in attempts {
        assert!(a.await.unwrap(), "a wrong password was accepted");
    }
    let spent = d.evaluations() - e0;
    // `directory` allows two evaluations at once: two attempts may start together.
    assert!((1..=2).contains(&spent), "50 attempts of one wrong password cost {spent} evaluations");
    for i in 0..3 {
        assert!(d.authenticate(1, None, format!("guess-{i}").as_bytes()).await.is_none());
    }
    assert_eq!(d.evaluations() - e0, spent + 3, "each distinct guess costs one evaluation");
    // An unknown user behaves alike (first attempt slow, repeats cached): the speed
    // of a repeated failure says nothing about whether the user exists.
    let e1 = d.evaluations();
    for _ in 0..5 {
        assert!(d.authenticate(1, Some(b"ghost"), b"x").await.is_none());
        assert!(d.authenticate(1, Some(b"alice"), b"x").await.is_none());
    }
    assert_eq!(d.evaluations() - e1, 2);
    // The removed-then-retried password is added back: accepted at once, from the
    // digest its failure left in the cache.
    d.change(&set, SetChange::Add, b"old").await.unwrap();
    let e2 = d.evaluations();
    assert_eq!(d.authenticate(1, None, b"old").await.unwrap().name(), "default");
    assert_eq!(d.evaluations(), e2, "decided from the cache, against the current set");
    // And removed again: refused at once.
    d.change(&set, SetChange::Remove, b"old").await.unwrap();
    assert!(d.authenticate(1, None, b"old").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_every_auth_costs_one_evaluation() {
    let d = directory(false);
    d.change(&SetId::BdbDefault(1), SetChange::Add, b"p").await.unwrap();
    let e0 = d.evaluations();
    for _ in 0..5 {
        assert!(d.authenticate(1, None, b"p").await.is_some());
    }
    assert_eq!(d.evaluations() - e0, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hashes_are_argon2id_with_one_salt_per_set_and_no_plaintext() {
    let d = directory(true);
    for pw in ["correct horse", "battery staple"] {
        d.change(&SetId::BdbDefault(1), SetChange::Add, pw.as_bytes()).await.unwrap();
    }
    let phc = d.passwords(&SetId::BdbDefault(1)).unwrap().to_phc();
    assert_eq!(phc.len(), 2);
    for h in &phc {
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(!h.contains("horse") && !h.contains("staple"));
    }
    let salt = |h: &str| h.split('$').nth(4).unwrap().to_string();
    assert_eq!(salt(&phc[0]), salt(&phc[1]), "one salt per set");
    assert_ne!(phc[0], phc[1]);
    // The default parameters are OWASP's argon2id recommendation.
    assert_eq!(HashParams::default(), HashParams { m_cost: 19456, t_cost: 2, p_cost: 1 });
}

/// argon2 runs on the blocking pool with bounded concurrency: a storm of failing
/// AUTHs at production cost must not stall a connection that is already in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_storm_does_not_stall_authenticated_clients() {
    let redis = Redis::start(&[]);
    let directory =
        Directory::new(HashParams::default(), VerifyOptions { concurrency: 1, ..VerifyOptions::default() });
    directory.set_bdb(1, turnstile::auth::BdbAccess::default());
    directory.change(&SetId::BdbDefault(1), SetChange::Add, b"good").await.unwrap();
    let proxy = Proxy::serve(directory.clone(), 1, &format!("redis://{}", redis.addr()), 0).await;
    let mut client = proxy.authed("good").await;
    let storm_size = 40u64;
    let start = directory.evaluations();
    let mut storm = Vec::new();
    for i in 0..storm_size {
        let addr = proxy.addr.to_string();
        // Distinct guesses, as a brute force makes them: each costs argon2 (a
        // repeated one is decided from the cache, see below).
        storm.push(tokio::spawn(async move {
            let mut c = Conn::connect(&addr).await;
            assert_eq!(c.cmd(&["AUTH", &format!("bad-{i}")]).await, WRONGPASS);
        }));
    }
    let mut pings_during_storm = 0;
    while directory.evaluations() - start < storm_size / 2 {
        assert_eq!(client.cmd(&["PING"]).await, b"+PONG\r\n");
        pings_during_storm += 1;
    }
    for s in storm {
        s.await.unwrap();
    }
    assert!(
        pings_during_storm >= 10,
        "only {pings_during_storm} PINGs completed while half of {storm_size} argon2 evaluations ran"
    );
}
