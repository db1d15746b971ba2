//! The data path's set lookup (a cached AUTH: keyed hash, cache probe, load the set,
//! constant-time membership) alone and while writers swap the set continuously.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use turnstile::auth::{BdbAccess, Directory, HashParams, SetChange, SetId, VerifyOptions};

fn sets(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Directory::new(HashParams { m_cost: 8, t_cost: 1, p_cost: 1 }, VerifyOptions::default());
    d.set_bdb(1, BdbAccess::default());
    let id = SetId::BdbDefault(1);
    rt.block_on(async {
        for i in 0..16 {
            d.change(&id, SetChange::Add, format!("password-{i}").as_bytes()).await.unwrap();
        }
        assert!(d.authenticate(1, None, b"password-7").await.is_some());
    });
    let mut g = c.benchmark_group("set_lookup");
    g.bench_function("cached AUTH, no writers", |b| {
        b.to_async(&rt).iter(|| async { assert!(d.authenticate(1, None, b"password-7").await.is_some()) })
    });
    // Writers: two threads swapping in a (same-content) set as fast as they can,
    // which is far more than any admin API would.
    let stop = Arc::new(AtomicBool::new(false));
    // Measuring starts only once both writers are swapping.
    let running = Arc::new(std::sync::Barrier::new(3));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (d, id, stop, running) = (d.clone(), id.clone(), Arc::clone(&stop), Arc::clone(&running));
            let set = (*d.passwords(&id).unwrap()).clone();
            std::thread::spawn(move || {
                d.install(&id, set.clone(), false).unwrap();
                let mut swaps = 1u64;
                running.wait();
                while !stop.load(Ordering::Relaxed) {
                    d.install(&id, set.clone(), false).unwrap();
                    swaps += 1;
                }
                swaps
            })
        })
        .collect();
    running.wait();
    g.bench_function("cached AUTH, 2 threads swapping the set", |b| {
        b.to_async(&rt).iter(|| async { assert!(d.authenticate(1, None, b"password-7").await.is_some()) })
    });
    stop.store(true, Ordering::Relaxed);
    let swaps: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(swaps > 0);
    g.finish();
}

criterion_group!(benches, sets);
criterion_main!(benches);
