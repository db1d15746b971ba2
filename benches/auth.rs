//! AUTH verification cost: uncached success, cached success, and failure, for sets
//! of 1, 4 and 16 passwords, with the production argon2id parameters.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use turnstile::auth::{BdbAccess, Directory, HashParams, SetChange, SetId, VerifyOptions};

fn directory(rt: &tokio::runtime::Runtime, size: usize, cache: bool) -> Directory {
    let mut v = VerifyOptions { concurrency: 1, ..VerifyOptions::default() };
    if !cache {
        v.cache_capacity = 0;
    }
    let d = Directory::new(HashParams::default(), v);
    d.set_bdb(1, BdbAccess::default());
    rt.block_on(async {
        for i in 0..size {
            d.change(&SetId::BdbDefault(1), SetChange::Add, format!("password-{i}").as_bytes())
                .await
                .unwrap();
        }
    });
    d
}

fn auth(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("auth");
    g.sample_size(10);
    for size in [1usize, 4, 16] {
        let last = format!("password-{}", size - 1);
        let uncached = directory(&rt, size, false);
        g.bench_with_input(BenchmarkId::new("uncached_success", size), &size, |b, _| {
            b.to_async(&rt)
                .iter(|| async { assert!(uncached.authenticate(1, None, last.as_bytes()).await.is_some()) })
        });
        let cached = directory(&rt, size, true);
        rt.block_on(cached.authenticate(1, None, last.as_bytes())).unwrap();
        g.bench_with_input(BenchmarkId::new("cached_success", size), &size, |b, _| {
            b.to_async(&rt)
                .iter(|| async { assert!(cached.authenticate(1, None, last.as_bytes()).await.is_some()) })
        });
        g.bench_with_input(BenchmarkId::new("failure", size), &size, |b, _| {
            b.to_async(&rt).iter(|| async { assert!(cached.authenticate(1, None, b"wrong").await.is_none()) })
        });
    }
    g.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
