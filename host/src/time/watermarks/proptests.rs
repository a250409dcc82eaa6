//! Property tests of [`Valve`]: over any interleaving of its inputs' watermarks, records and
//! idleness, a subtask's watermark never goes back, equals the greatest minimum over its live
//! inputs it has seen, and is idle exactly when every input is.

use proptest::prelude::*;

use super::{Signal, Valve};
use crate::time::WATERMARK_MIN;

/// What one input of a subtask can deliver.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// A watermark.
    Watermark(i64),
    /// Records.
    Records,
    /// Idle.
    Idle,
}

fn event() -> impl Strategy<Value = Event> {
    let watermark = prop_oneof![
        4 => (-50i64..500).prop_map(Event::Watermark),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX)].prop_map(Event::Watermark),
    ];
    prop_oneof![4 => watermark, 2 => Just(Event::Records), 1 => Just(Event::Idle)]
}

/// An interleaving over 1 to 5 inputs.
fn interleaving() -> impl Strategy<Value = (usize, Vec<(usize, Event)>)> {
    (1usize..=5).prop_flat_map(|inputs| {
        let step = (0..inputs, event());
        (Just(inputs), prop::collection::vec(step, 0..64))
    })
}

proptest! {
    #[test]
    fn the_watermark_never_regresses_and_is_the_least_of_the_live_inputs(
        (inputs, steps) in interleaving()
    ) {
        let mut valve = Valve::new(inputs);
        // The model: each input's greatest watermark and whether it is idle.
        let mut watermark = vec![WATERMARK_MIN; inputs];
        let mut idle = vec![false; inputs];
        let mut expected = WATERMARK_MIN;
        let mut sent = WATERMARK_MIN;
        for (input, event) in steps {
            let before = valve.watermark();
            let signal = match event {
                Event::Watermark(w) => {
                    watermark[input] = watermark[input].max(w);
                    idle[input] = false;
                    valve.on_watermark(input, w)
                }
                Event::Records => {
                    idle[input] = false;
                    valve.on_records(input)
                }
                Event::Idle => {
                    idle[input] = true;
                    valve.on_idle(input)
                }
            };
            let live = (0..inputs).filter(|&i| !idle[i]).map(|i| watermark[i]).min();
            if let Some(least) = live {
                expected = expected.max(least);
            }
            prop_assert!(valve.watermark() >= before, "went back from {before}");
            prop_assert_eq!(valve.watermark(), expected);
            prop_assert_eq!(valve.is_idle(), live.is_none());
            match signal {
                Some(Signal::Watermark(w)) => {
                    prop_assert_eq!(w, valve.watermark());
                    prop_assert!(w >= sent, "sent {} after {}", w, sent);
                    sent = w;
                }
                Some(Signal::Idle) => prop_assert!(valve.is_idle()),
                None => prop_assert_eq!(valve.watermark(), before),
            }
        }
    }
}
