//! The learning rate over a run (`--warmup-steps W`, `--decay-from STEP`, `--decay-floor F`).
//!
//! ```text
//!  lr ▲    ───────────┐
//!     │  ╱             ╲   cosine
//!     │ ╱ linear        ╲___
//!     │╱                    ────  floor × lr
//!     └──┬────────────┬──────────┬──► global step
//!        W           from       --steps
//! ```
//!
//! A function of the global step alone, so a run resumed anywhere continues on the same curve
//! (nothing to store in the checkpoint), and a fork of a long run can decay to a shippable
//! point while the run itself goes on at the constant rate.

use crate::error::{Error, Result};

/// The learning rate's multiplier at each global step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Where the decay starts and ends (global steps); `None`: constant.
    decay: Option<(usize, usize)>,
    floor: f64,
    /// Steps of the linear ramp from a fresh start (0: none).
    warmup: usize,
}

impl LrSchedule {
    /// Constant until `decay_from`, then a cosine down to `floor` at step `to`, `floor` after
    /// it. `decay_from: None` is the constant schedule.
    pub fn new(decay_from: Option<usize>, to: usize, floor: f64) -> Result<Self> {
        if !(floor.is_finite() && floor > 0.0 && floor <= 1.0) {
            return Err(Error::Unsupported(format!("--decay-floor must be in (0, 1], not {floor}")));
        }
        if let Some(from) = decay_from
            && from >= to
        {
            return Err(Error::Unsupported(format!("--decay-from {from} must come before --steps {to}, where the decay ends")));
        }
        Ok(Self { decay: decay_from.map(|from| (from, to)), floor, warmup: 0 })
    }

    /// This schedule ramped up linearly over the first `steps` global steps: a fresh model's
    /// first updates, made from Adam's first noisy moment estimates, stay small.
    pub fn with_warmup(self, steps: usize) -> Self {
        Self { warmup: steps, ..self }
    }

    /// The multiplier of the learning rate for the step that follows `step` steps.
    pub fn factor(&self, step: usize) -> f64 {
        let ramp = if step < self.warmup { (step + 1) as f64 / self.warmup as f64 } else { 1.0 };
        ramp * self.decay_factor(step)
    }

    fn decay_factor(&self, step: usize) -> f64 {
        let Some((from, to)) = self.decay else { return 1.0 };
        if step <= from {
            return 1.0;
        }
        let t = ((step - from) as f64 / (to - from) as f64).min(1.0);
        self.floor + (1.0 - self.floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_until_the_decay_then_a_cosine_to_the_floor() {
        let s = LrSchedule::new(Some(1000), 2000, 0.1).unwrap();
        assert_eq!(s.factor(0), 1.0);
        assert_eq!(s.factor(1000), 1.0);
        assert!((s.factor(1500) - 0.55).abs() < 1e-12, "half way is the mean of 1 and the floor");
        assert!((s.factor(2000) - 0.1).abs() < 1e-12);
        assert!((s.factor(5000) - 0.1).abs() < 1e-12, "held at the floor past --steps");
        let mut previous = f64::INFINITY;
        for step in 1000..=2000 {
            let f = s.factor(step);
            assert!(f <= previous && f >= 0.1, "falls monotonically to the floor (step {step}: {f})");
            previous = f;
        }
    }

    #[test]
    fn the_warmup_ramps_linearly_then_hands_over() {
        let s = LrSchedule::new(Some(100), 200, 0.1).unwrap().with_warmup(10);
        assert!((s.factor(0) - 0.1).abs() < 1e-12);
        assert!((s.factor(4) - 0.5).abs() < 1e-12);
        assert_eq!(s.factor(9), 1.0);
        assert_eq!(s.factor(50), 1.0);
        assert_eq!(s.factor(150), LrSchedule::new(Some(100), 200, 0.1).unwrap().factor(150));
        assert!((0..100).all(|step| LrSchedule::new(None, 10, 0.1).unwrap().with_warmup(0).factor(step) == 1.0));
    }

    #[test]
    fn no_decay_is_constant() {
        let s = LrSchedule::new(None, 10, 0.1).unwrap();
        assert!((0..100).all(|step| s.factor(step) == 1.0));
    }

    #[test]
    fn refuses_a_decay_that_cannot_happen() {
        let late = LrSchedule::new(Some(2000), 2000, 0.1).unwrap_err().to_string();
        assert!(late.contains("--decay-from 2000 must come before --steps 2000"), "{late}");
        for floor in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(LrSchedule::new(Some(1), 2, floor).unwrap_err().to_string().contains("--decay-floor"), "floor {floor}");
        }
    }
}
