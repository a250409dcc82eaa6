//! Aggregates computed incrementally per window ([`Windows::aggregate`](crate::Windows)): each
//! keeps an accumulator, which a record updates as it arrives, and which is the window's
//! result. The accumulator is state (`docs/state-format.md`, *Windows*), written as MessagePack,
//! so its shape is part of the operator's state format:
//!
//! | aggregate | accumulator | as MessagePack |
//! |---|---|---|
//! | [`count()`] | `u64`, the records | an unsigned integer |
//! | [`sum()`], [`sum_by`] | `Option<i64>`, the sum; `None`: unknown | an integer, or nil |
//! | [`min()`], [`max()`], [`min_by`], [`max_by`] | `i64` | an integer |
//! | [`fold`] | yours | yours |
//! | `(a, b)`, `(a, b, c)` | a tuple of theirs | an array of theirs |
//!
//! A sum is unknown when part of it is: a window opened by an older version that did not sum
//! (as `guest-examples/rust/window-count-v2` migrates `window-count-v1`'s windows), and stays
//! so. `sum()`, `min()` and `max()` read a record's value as a decimal integer (`b"-12"`); the
//! `_by` forms take a function of the record.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Record;

/// An aggregate of the records of a window, computed as they arrive.
pub trait Aggregate {
    /// Its accumulator, which is also the window's result.
    type Acc: Serialize + DeserializeOwned + Clone + PartialEq;
    /// The accumulator of a window that holds no record yet.
    fn create(&self) -> Self::Acc;
    /// Adds `record` to `acc`.
    fn add(&self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), String>;
    /// Adds `other`, the accumulator of another window, to `acc`: session windows merge.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), String>;
    /// Whether it can [`merge`](Aggregate::merge) (a [`fold`] without a merge cannot).
    fn merges(&self) -> bool {
        true
    }
}

/// A record's value read as a decimal integer: what [`sum()`], [`min()`] and [`max()`] add.
pub fn value_as_integer(record: &Record<'_>) -> Result<i64, String> {
    let text = std::str::from_utf8(record.value).ok();
    text.and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "the value {:?} of the record of key {:?} is not an integer",
                String::from_utf8_lossy(record.value),
                String::from_utf8_lossy(record.key)
            )
        })
}

/// The number of records: [`count()`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

/// The number of records, a `u64`.
pub fn count() -> Count {
    Count
}

impl Aggregate for Count {
    type Acc = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &Record<'_>) -> Result<(), String> {
        *acc += 1;
        Ok(())
    }
    fn merge(&self, acc: &mut u64, other: u64) -> Result<(), String> {
        *acc += other;
        Ok(())
    }
}

/// How an aggregate reads a number from a record.
pub type Extract = fn(&Record<'_>) -> Result<i64, String>;

/// The sum of a number read from each record: [`sum()`], [`sum_by`].
#[derive(Debug, Clone, Copy)]
pub struct Sum<F = Extract>(F);

/// The sum of the records' values read as integers ([`value_as_integer`]).
pub fn sum() -> Sum {
    Sum(value_as_integer)
}

/// The sum of `by` of each record.
pub fn sum_by<F: Fn(&Record<'_>) -> Result<i64, String>>(by: F) -> Sum<F> {
    Sum(by)
}

fn overflow(what: &str) -> String {
    format!("the {what} of a window overflows a signed 64-bit integer")
}

impl<F: Fn(&Record<'_>) -> Result<i64, String>> Aggregate for Sum<F> {
    type Acc = Option<i64>;
    fn create(&self) -> Option<i64> {
        Some(0)
    }
    fn add(&self, acc: &mut Option<i64>, record: &Record<'_>) -> Result<(), String> {
        let value = (self.0)(record)?;
        if let Some(sum) = acc {
            *sum = sum.checked_add(value).ok_or_else(|| overflow("sum"))?;
        }
        Ok(())
    }
    fn merge(&self, acc: &mut Option<i64>, other: Option<i64>) -> Result<(), String> {
        *acc = match (*acc, other) {
            (Some(a), Some(b)) => Some(a.checked_add(b).ok_or_else(|| overflow("sum"))?),
            _ => None,
        };
        Ok(())
    }
}

/// The least or the greatest of a number read from each record: [`min()`], [`max()`].
#[derive(Debug, Clone, Copy)]
pub struct Extreme<F = Extract> {
    by: F,
    greatest: bool,
}

/// The least of the records' values read as integers.
pub fn min() -> Extreme {
    min_by(value_as_integer)
}

/// The greatest of the records' values read as integers.
pub fn max() -> Extreme {
    max_by(value_as_integer)
}

/// The least `by` of the records.
pub fn min_by<F: Fn(&Record<'_>) -> Result<i64, String>>(by: F) -> Extreme<F> {
    Extreme {
        by,
        greatest: false,
    }
}

/// The greatest `by` of the records.
pub fn max_by<F: Fn(&Record<'_>) -> Result<i64, String>>(by: F) -> Extreme<F> {
    Extreme { by, greatest: true }
}

impl<F: Fn(&Record<'_>) -> Result<i64, String>> Aggregate for Extreme<F> {
    type Acc = i64;
    /// The neutral element, never written: a window's first record replaces it.
    fn create(&self) -> i64 {
        if self.greatest { i64::MIN } else { i64::MAX }
    }
    fn add(&self, acc: &mut i64, record: &Record<'_>) -> Result<(), String> {
        let value = (self.by)(record)?;
        self.merge(acc, value)
    }
    fn merge(&self, acc: &mut i64, other: i64) -> Result<(), String> {
        *acc = if self.greatest {
            (*acc).max(other)
        } else {
            (*acc).min(other)
        };
        Ok(())
    }
}

/// Your own aggregate: [`fold`].
#[derive(Debug, Clone)]
pub struct Fold<T, F, M = fn(T, T) -> T> {
    init: T,
    add: F,
    merge: Option<M>,
}

/// An accumulator that starts at `init` and becomes `add(acc, record)` with each record. Give
/// it [`Fold::merge`] to use it in session windows.
pub fn fold<T, F>(init: T, add: F) -> Fold<T, F>
where
    F: Fn(T, &Record<'_>) -> Result<T, String>,
{
    Fold {
        init,
        add,
        merge: None,
    }
}

impl<T, F, M> Fold<T, F, M> {
    /// How two accumulators become one, when session windows merge.
    pub fn merge<N: Fn(T, T) -> T>(self, merge: N) -> Fold<T, F, N> {
        Fold {
            init: self.init,
            add: self.add,
            merge: Some(merge),
        }
    }
}

impl<T, F, M> Aggregate for Fold<T, F, M>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq,
    F: Fn(T, &Record<'_>) -> Result<T, String>,
    M: Fn(T, T) -> T,
{
    type Acc = T;
    fn create(&self) -> T {
        self.init.clone()
    }
    fn add(&self, acc: &mut T, record: &Record<'_>) -> Result<(), String> {
        let old = std::mem::replace(acc, self.init.clone());
        *acc = (self.add)(old, record)?;
        Ok(())
    }
    fn merge(&self, acc: &mut T, other: T) -> Result<(), String> {
        let merge = self
            .merge
            .as_ref()
            .ok_or("a fold without a merge cannot merge session windows: give it `.merge(...)`")?;
        let old = std::mem::replace(acc, self.init.clone());
        *acc = merge(old, other);
        Ok(())
    }
    fn merges(&self) -> bool {
        self.merge.is_some()
    }
}

macro_rules! tuple_aggregate {
    ($($a:ident $i:tt),+) => {
        /// Several aggregates at once, their accumulators a tuple (an array in MessagePack).
        impl<$($a: Aggregate),+> Aggregate for ($($a,)+) {
            type Acc = ($($a::Acc,)+);
            fn create(&self) -> Self::Acc {
                ($(self.$i.create(),)+)
            }
            fn add(&self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), String> {
                $(self.$i.add(&mut acc.$i, record)?;)+
                Ok(())
            }
            fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), String> {
                $(self.$i.merge(&mut acc.$i, other.$i)?;)+
                Ok(())
            }
            fn merges(&self) -> bool {
                $(self.$i.merges())&&+
            }
        }
    };
}

tuple_aggregate!(A 0, B 1);
tuple_aggregate!(A 0, B 1, C 2);
