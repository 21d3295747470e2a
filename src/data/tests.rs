//! The data path's tests: permutations, shards, orders, buffers and the gather.

use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use super::buffer::*;
use super::gather::*;
use super::orders::*;
use super::permutation::*;
use super::source::*;

use crate::error::Error;
use crate::runtime::parallel;

fn is_permutation(p: &[u64]) -> bool {
    let mut seen = vec![false; p.len()];
    p.iter()
        .all(|&i| (i as usize) < p.len() && !std::mem::replace(&mut seen[i as usize], true))
}

#[test]
fn splitmix64_matches_the_reference_sequence() {
    // SplitMix64 seeded with 0 (Vigna's splitmix64.c).
    let mut g = SplitMix64(0);
    assert_eq!(g.next(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(g.next(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(g.next(), 0x06C4_5D18_8009_454F);
}

#[test]
fn below_is_in_range_and_unbiased_for_a_tiny_range() {
    let mut g = SplitMix64(7);
    let mut counts = [0u32; 3];
    for _ in 0..30_000 {
        counts[g.below(3) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (9_500..10_500).contains(&c)),
        "{counts:?}"
    );
    // The rejection path: a range just above 2^63 rejects almost half the draws.
    let r = (1u64 << 63) + 1;
    for _ in 0..1000 {
        assert!(g.below(r) < r);
    }
}

#[test]
fn permutations_are_permutations_for_every_mode_and_size() {
    for n in [
        0,
        1,
        2,
        3,
        10,
        1000,
        BUCKET_SAMPLES,
        BUCKET_SAMPLES + 1,
        100_003,
    ] {
        for how in [
            Shuffle::None,
            Shuffle::Full,
            Shuffle::Blocks {
                block_size: 7,
                buffer_blocks: 3,
            },
            Shuffle::Blocks {
                block_size: 1,
                buffer_blocks: 1,
            },
            Shuffle::Blocks {
                block_size: 100_000,
                buffer_blocks: 4,
            },
        ] {
            let p = permutation(n, 42, 3, how).unwrap();
            assert_eq!(p.len(), n);
            assert!(is_permutation(&p), "n={n} {how:?}");
        }
    }
}

#[test]
fn the_permutation_is_pinned() {
    // Changing any of these values changes every user's epochs: it must never happen
    // by accident. (Also computed by the Python transcription in tests/test_batches.py.)
    assert_eq!(
        permutation(10, 0, 0, Shuffle::Full).unwrap(),
        [1, 3, 5, 6, 2, 0, 9, 4, 8, 7]
    );
    let p = permutation(100_000, 123, 4, Shuffle::Full).unwrap();
    assert_eq!(
        (&p[..4], &p[p.len() - 2..]),
        (&[60251, 21960, 88754, 35598][..], &[49818, 8978][..])
    );
    let blocks = Shuffle::Blocks {
        block_size: 4,
        buffer_blocks: 2,
    };
    assert_eq!(
        permutation(30, 5, 2, blocks).unwrap(),
        [
            29, 28, 20, 21, 22, 23, 14, 12, 19, 15, 18, 17, 13, 16, 8, 9, 7, 5, 10, 4, 6, 11, 3, 2,
            24, 1, 26, 27, 25, 0
        ]
    );
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let _threads = crate::test_util::thread_count_lock();
    let n = 3 * BUCKET_SAMPLES + 17;
    let mut results = Vec::new();
    for threads in [1, 2, 5] {
        parallel::set_num_threads(threads).unwrap();
        results.push((
            permutation(n, 9, 1, Shuffle::Full).unwrap(),
            permutation(
                n,
                9,
                1,
                Shuffle::Blocks {
                    block_size: 50,
                    buffer_blocks: 8,
                },
            )
            .unwrap(),
        ));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn seeds_and_epochs_give_different_permutations() {
    let a = permutation(1000, 1, 0, Shuffle::Full).unwrap();
    assert_eq!(a, permutation(1000, 1, 0, Shuffle::Full).unwrap());
    assert_ne!(a, permutation(1000, 1, 1, Shuffle::Full).unwrap());
    assert_ne!(a, permutation(1000, 2, 0, Shuffle::Full).unwrap());
}

/// All 24 orders of 4 items are equally likely, with buckets of 1 or 2 samples so the
/// bucket assignment is exercised.
#[test]
fn small_bucket_shuffles_are_uniform() {
    for bucket in [1, 2, 4] {
        let mut counts = std::collections::HashMap::new();
        let draws = 24_000;
        for e in 0..draws {
            *counts
                .entry(shuffle(4, epoch_key(5, e), bucket))
                .or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 24);
        let expected = draws as f64 / 24.0;
        let chi2: f64 = counts
            .values()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 23 degrees of freedom: p = 0.001 at 49.7.
        assert!(chi2 < 49.7, "bucket {bucket}: chi2 {chi2}");
    }
}

#[test]
fn block_shuffle_keeps_each_window_together() {
    let (n, block, window) = (1000, 10, 4);
    let p = permutation(
        n,
        3,
        0,
        Shuffle::Blocks {
            block_size: block,
            buffer_blocks: window,
        },
    )
    .unwrap();
    for w in p.chunks(block * window) {
        let mut blocks: Vec<u64> = w.iter().map(|&i| i / block as u64).collect();
        blocks.sort_unstable();
        blocks.dedup();
        assert_eq!(blocks.len(), window);
    }
    assert_ne!(
        p,
        permutation(
            n,
            3,
            1,
            Shuffle::Blocks {
                block_size: block,
                buffer_blocks: window
            }
        )
        .unwrap()
    );
}

#[test]
fn shards_are_equal_disjoint_and_drop_the_remainder() {
    let positions = |i| {
        let p = shard(10, i, 3).unwrap();
        (0..p.len).map(|k| p.at(k)).collect::<Vec<_>>()
    };
    assert_eq!(positions(0), vec![0, 3, 6]);
    assert_eq!(positions(2), vec![2, 5, 8]);
    assert!(shard(10, 3, 3).is_err());
    assert!(shard(10, 0, 0).is_err());
    assert!(shard(2, 0, 3).is_err());
}

/// A batch gathered by `Job` from an array of `shape` with `strides` (in items) along
/// `axis`, compared with an index-by-index reference.
fn check_gather(shape: &[usize], strides_items: &[isize], axis: usize) {
    let itemsize = 4;
    let span: usize = shape
        .iter()
        .zip(strides_items)
        .map(|(&l, &s)| (l.max(1) - 1) * s.unsigned_abs())
        .sum::<usize>()
        + 1;
    let data: Vec<u32> = (0..span as u32).collect();
    // Negative strides start from the far end.
    let origin: isize = shape
        .iter()
        .zip(strides_items)
        .filter(|(_, &s)| s < 0)
        .map(|(&l, &s)| (l as isize - 1) * -s)
        .sum();
    let base = data.as_ptr() as usize + origin as usize * itemsize;
    let strides: Vec<isize> = strides_items
        .iter()
        .map(|s| s * itemsize as isize)
        .collect();
    let src = Source::new(base, shape, &strides, itemsize, axis).unwrap();
    let m = shape[axis];
    let order = Order::new(m, 11, 0, Shuffle::Full, (0, 1)).unwrap();
    let rows = 1..m;
    let n = rows.len();
    let buf = Arc::new(Buffer::new(src.batch_bytes(n)).unwrap());
    let sources: Arc<[Source]> = Arc::from(vec![src.clone()]);
    let job = Arc::new(unsafe {
        Job::new(
            sources,
            order.batch(rows.clone()).unwrap(),
            vec![buf.clone()],
        )
        .unwrap()
    });
    job.spawn();
    job.finish(None).unwrap();
    #[allow(clippy::cast_ptr_alignment, reason = "the buffer is 64-byte aligned")]
    let got = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u32, buf.len() / 4) };
    // Reference: walk the batch in C order.
    let mut out_shape = shape.to_vec();
    out_shape[axis] = n;
    let total: usize = out_shape.iter().product();
    let mut expected = Vec::with_capacity(total);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        let mut off = origin;
        for d in 0..shape.len() {
            let i = if d == axis {
                order.get(rows.start + idx[d])
            } else {
                idx[d]
            };
            off += i as isize * strides_items[d];
        }
        expected.push(data[off as usize]);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    assert_eq!(
        got,
        &expected[..],
        "shape {shape:?} strides {strides_items:?} axis {axis}"
    );
    // The same batch copied on this thread (the epoch loop's path for small batches).
    let here = Buffer::new(src.batch_bytes(n)).unwrap();
    let samples = order.slice(rows).unwrap();
    // SAFETY: `data` is alive, the samples are below `m`, the buffer holds the batch.
    unsafe { src.gather(here.as_ptr(), samples) }.unwrap();
    #[allow(clippy::cast_ptr_alignment, reason = "the buffer is 64-byte aligned")]
    let here = unsafe { std::slice::from_raw_parts(here.as_ptr() as *const u32, got.len()) };
    assert_eq!(
        here,
        &expected[..],
        "Source::gather: shape {shape:?} strides {strides_items:?} axis {axis}"
    );
}

#[test]
fn gathers_any_layout_along_any_axis() {
    check_gather(&[50, 3], &[3, 1], 0); // C order, rows
    check_gather(&[3, 50], &[50, 1], 1); // C order, columns
    check_gather(&[3, 50], &[1, 3], 1); // F order, columns
    check_gather(&[50, 3], &[1, 50], 0); // F order, rows
    check_gather(&[4, 20, 3, 2], &[120, 6, 2, 1], 1); // 4-d C order, middle axis
    check_gather(&[4, 20, 3, 2], &[1, 4, 80, 240], 1); // 4-d F order
    check_gather(&[20, 3], &[-3, 1], 0); // reversed rows
    check_gather(&[20, 3], &[6, 2], 0); // strided view
    check_gather(&[20, 0, 3], &[0, 3, 1], 0); // empty sample
    check_gather(&[20], &[1], 0); // 1-d
    check_gather(&[50, 2], &[2, 1], 0); // rows of 8 bytes
    check_gather(&[50, 4], &[4, 1], 0); // rows of 16 bytes
    check_gather(&[20, 2], &[-2, 1], 0); // reversed rows of 8 bytes
    check_gather(&[3000, 40], &[40, 1], 0); // many tasks
    check_gather(&[2, 3000, 40], &[40, 80, 1], 1); // many tasks, outer dim
    check_gather(&[3, 10, 4000], &[40000, 4000, 1], 1); // samples split across tasks
}

#[test]
fn a_cancelled_job_stops_writing_and_a_finished_one_reports_done() {
    let m = 200_000;
    let data: Vec<u8> = (0..m * 64).map(|i| (i % 251) as u8).collect();
    let src = Source::new(data.as_ptr() as usize, &[m, 64], &[64, 1], 1, 0).unwrap();
    let order = Order::new(m, 1, 0, Shuffle::Full, (0, 1)).unwrap();
    let sources: Arc<[Source]> = Arc::from(vec![src.clone()]);
    let new_job = |buf: &Arc<Buffer>| {
        // SAFETY: `data` outlives the jobs; the order is a permutation of 0..m.
        Arc::new(unsafe {
            Job::new(
                sources.clone(),
                order.batch(0..m).unwrap(),
                vec![buf.clone()],
            )
            .unwrap()
        })
    };
    let buf = Arc::new(Buffer::new(src.batch_bytes(m)).unwrap());
    // SAFETY: the buffer holds this many bytes and no job uses it yet.
    unsafe { ptr::write_bytes(buf.as_ptr(), 0, buf.len()) };
    let job = new_job(&buf);
    job.spawn();
    job.cancel();
    // SAFETY: initialised above; after `cancel` no thread writes the buffer.
    let snapshot = |b: &Buffer| unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }.to_vec();
    let before = snapshot(&buf);
    std::thread::sleep(Duration::from_millis(20));
    assert!(before == snapshot(&buf), "a cancelled job kept writing");

    let job = new_job(&buf);
    assert!(!job.is_done());
    job.spawn();
    job.finish(None).unwrap();
    assert!(job.is_done());
    let got = snapshot(&buf);
    for (r, row) in got.chunks(64).enumerate() {
        let i = order.get(r);
        assert_eq!(row, &data[i * 64..(i + 1) * 64]);
    }
}

#[test]
fn num_batches_counts_a_last_smaller_batch_unless_dropped() {
    let order = Order::new(10, 0, 0, Shuffle::Full, (0, 1)).unwrap();
    let counts: Vec<(usize, usize)> = [1, 3, 5, 10, 20]
        .iter()
        .map(|&b| (order.num_batches(b, false), order.num_batches(b, true)))
        .collect();
    assert_eq!(counts, [(10, 10), (4, 3), (2, 2), (1, 1), (1, 0)]);
}

#[test]
fn plain_gather_copies_every_row() {
    let data: Vec<u8> = (0..=255).collect();
    let idx: Vec<u64> = (0..256).rev().collect();
    let sum = unsafe { plain_gather(&[(data.as_ptr() as usize, 1)], &idx, 16, 2) };
    // Each thread adds the first byte of each of its batches: 255, 239, ..., 15.
    assert_eq!(sum, (0..16).map(|k| 255 - 16 * k).sum::<u64>());
}

#[test]
fn buffers_are_aligned_and_empty_ones_do_not_allocate() {
    assert_eq!(Buffer::new(0).unwrap().as_ptr() as usize % BUFFER_ALIGN, 0);
    assert_eq!(
        Buffer::new(100).unwrap().as_ptr() as usize % BUFFER_ALIGN,
        0
    );
    assert_eq!(
        Buffer::new(usize::MAX - 10).err(),
        Some(Error::OutOfMemory {
            what: "a batch".into(),
            bytes: usize::MAX - 10
        })
    );
}
