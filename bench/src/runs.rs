//! Repeated timings of one measurement: the median counts, the range shows the machine's
//! noise (this machine's runs of one build spread 1.5-3x over minutes).

/// Values of the same measurement, one a run.
pub struct Runs(pub Vec<f64>);

impl Runs {
    /// The middle value (the upper one of an even count).
    pub fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// The lowest and the highest value.
    pub fn range(&self) -> (f64, f64) {
        let low = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let high = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (low, high)
    }

    /// "" for one run; else ", median of N runs: LOW to HIGH `unit`".
    pub fn spread(&self, unit: &str) -> String {
        let (low, high) = self.range();
        match self.0.len() {
            1 => String::new(),
            n => format!(", median of {n} runs: {low:.1} to {high:.1} {unit}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_and_the_range_its_ends() {
        let runs = Runs(vec![9.0, -2.5, 4.0]);
        assert_eq!(runs.median(), 4.0);
        assert_eq!(runs.range(), (-2.5, 9.0));
        assert_eq!(runs.spread("%"), ", median of 3 runs: -2.5 to 9.0 %");
        assert_eq!(Runs(vec![3.0, 1.0, 2.0, 4.0]).median(), 3.0);
        assert_eq!(Runs(vec![7.0]).spread("ms"), "");
    }
}
