//! A rank stuck in a collective is reported, naming it, the call and where the others are.
//! (Its own test binary: the stuck thread stays blocked in burn-collective until the process
//! ends, which would disturb other in-process runs.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::Tensor;
use rho_train::distributed::{CollectiveError, LocalTransport, Transport, Watch};

#[test]
fn a_rank_waiting_for_a_peer_past_the_timeout_is_named_with_its_call() {
    let watch = Watch::new(2);
    let dev = Default::default();
    let peers: Vec<_> = (0..2)
        .map(|rank| {
            let watch = watch.clone();
            std::thread::spawn(move || {
                let t = LocalTransport::<Flex>::register(rank, 2, &dev, watch).unwrap();
                let x = Tensor::<Flex, 1>::from_floats([1.0, 2.0], &dev);
                // Both ranks take part in the first call; rank 1 then stops calling.
                let y = t.all_reduce_sum(x.clone(), "gradients").unwrap();
                assert_eq!(y.into_data().to_vec::<f32>().unwrap(), [2.0, 4.0]);
                if rank == 0 {
                    let _ = t.all_reduce_sum(x, "SyncBN statistics");
                }
            })
        })
        .collect();
    let started = Instant::now();
    let err = loop {
        if let Some(e) = watch.stuck(0.3) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no timeout reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CollectiveError::Timeout {
                rank: 0,
                seq: 2,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("rank 0: collective #2 (SyncBN statistics) timed out"),
        "{msg}"
    );
    assert!(msg.contains("rank 1 (computing after #2)"), "{msg}");
    let _ = Arc::new(peers); // rank 0's thread stays blocked; the process ends it
}
