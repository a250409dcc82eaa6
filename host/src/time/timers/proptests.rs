//! Property tests of [`TimerService`]: whatever a guest registers and deletes, whatever fires,
//! and whichever checkpoints (full or not) come between, the timers restored from what the
//! checkpoints wrote, taken in as the host takes them in, are the timers pending.

use proptest::prelude::*;

use super::tests::{restored, take_in};
use super::{Domain, Timer, TimerService, key_group};

#[derive(Clone, Debug)]
enum Step {
    Register(Domain, i64, u8),
    Delete(Domain, i64, u8),
    /// Every event-time timer due at this watermark fires.
    Fire(i64),
    Checkpoint {
        full: bool,
    },
}

fn domain() -> impl Strategy<Value = Domain> {
    prop_oneof![Just(Domain::Event), Just(Domain::Processing)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (domain(), 0i64..20, 0u8..24).prop_map(|(d, t, k)| Step::Register(d, t, k)),
        2 => (domain(), 0i64..20, 0u8..24).prop_map(|(d, t, k)| Step::Delete(d, t, k)),
        1 => (0i64..20).prop_map(Step::Fire),
        2 => any::<bool>().prop_map(|full| Step::Checkpoint { full }),
    ]
}

fn timer(domain: Domain, timestamp: i64, key: u8) -> (u32, Timer) {
    let key = bytes::Bytes::from(vec![b'k', key]);
    (
        key_group(&key, 128),
        Timer {
            domain,
            timestamp,
            key,
        },
    )
}

proptest! {
    #[test]
    fn what_checkpoints_wrote_restores_the_pending_timers(
        steps in prop::collection::vec(step(), 0..80)
    ) {
        let mut service = TimerService::new(128);
        let mut chains = std::collections::BTreeMap::new();
        for step in steps {
            match step {
                Step::Register(d, t, k) => {
                    let (group, timer) = timer(d, t, k);
                    service.register(group, timer);
                }
                Step::Delete(d, t, k) => {
                    let (group, timer) = timer(d, t, k);
                    service.delete(group, &timer);
                }
                Step::Fire(watermark) => {
                    for (group, timer) in service.due(Domain::Event, watermark) {
                        prop_assert!(service.delete(group, &timer));
                    }
                    prop_assert!(service.next(Domain::Event).is_none_or(|t| t > watermark));
                }
                Step::Checkpoint { full } => {
                    take_in(&mut chains, service.checkpoint(full), full);
                    let back = restored(&chains);
                    for domain in Domain::ALL {
                        prop_assert_eq!(back.due(domain, i64::MAX), service.due(domain, i64::MAX));
                    }
                    prop_assert_eq!(back.key_bytes(), service.key_bytes());
                }
            }
        }
    }
}
