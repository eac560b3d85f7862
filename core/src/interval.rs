//! Sets of unsigned integers kept as sorted, disjoint, non-adjacent inclusive ranges.
//!
//! Addresses (IPv4 as `u32`, IPv6 as `u128`) and ports (`u16`) are both points on a line, and
//! every compiler needs the same three operations on them: union, intersection and difference.
//! Keeping one implementation for all three widths means the CIDR arithmetic that AWS security
//! groups need (a deny subtracts from an earlier allow) is tested once.

use std::fmt::Debug;

/// An unsigned integer type that can be a point of an [`IntervalSet`].
pub trait Point: Copy + Ord + Debug + Default {
    /// The largest value of the type.
    const MAX: Self;
    /// `self + 1`, or `None` at [`Point::MAX`].
    fn succ(self) -> Option<Self>;
    /// `self - 1`, or `None` at zero.
    fn pred(self) -> Option<Self>;
}

macro_rules! impl_point {
    ($($t:ty),*) => {$(
        impl Point for $t {
            const MAX: Self = <$t>::MAX;
            fn succ(self) -> Option<Self> { self.checked_add(1) }
            fn pred(self) -> Option<Self> { self.checked_sub(1) }
        }
    )*};
}
impl_point!(u16, u32, u128);

/// A set of points stored as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct IntervalSet<T: Point> {
    ranges: Vec<(T, T)>,
}

impl<T: Point> Debug for IntervalSet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|(a, b)| a..=b))
            .finish()
    }
}

impl<T: Point> IntervalSet<T> {
    /// The empty set.
    pub fn empty() -> Self {
        Self { ranges: Vec::new() }
    }

    /// Every point of the type.
    pub fn full() -> Self {
        Self::range(T::default(), T::MAX)
    }

    /// The points `lo..=hi` (empty when `lo > hi`).
    pub fn range(lo: T, hi: T) -> Self {
        if lo > hi {
            Self::empty()
        } else {
            Self {
                ranges: vec![(lo, hi)],
            }
        }
    }

    /// Builds a set from arbitrary (possibly overlapping, unsorted) inclusive ranges.
    pub fn from_ranges(iter: impl IntoIterator<Item = (T, T)>) -> Self {
        let mut ranges: Vec<(T, T)> = iter.into_iter().filter(|(a, b)| a <= b).collect();
        ranges.sort_unstable();
        let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            if let Some(last) = out.last_mut() {
                // Merge overlapping and adjacent ranges so that the representation is canonical
                // and equality of sets is equality of vectors.
                let touches = last.1.succ().is_none_or(|next| lo <= next);
                if touches {
                    if hi > last.1 {
                        last.1 = hi;
                    }
                    continue;
                }
            }
            out.push((lo, hi));
        }
        Self { ranges: out }
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(T, T)] {
        &self.ranges
    }

    /// True when the set has no points.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True when the set holds every point of the type.
    pub fn is_full(&self) -> bool {
        self.ranges.len() == 1 && self.ranges[0] == (T::default(), T::MAX)
    }

    /// True when `point` is in the set.
    pub fn contains(&self, point: T) -> bool {
        // Ranges are sorted by start: find the last range starting at or before `point`.
        let idx = self.ranges.partition_point(|(lo, _)| *lo <= point);
        idx > 0 && self.ranges[idx - 1].1 >= point
    }

    /// Points in either set.
    pub fn union(&self, other: &Self) -> Self {
        Self::from_ranges(self.ranges.iter().chain(other.ranges.iter()).copied())
    }

    /// Points in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { ranges: out }
    }

    /// Points in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.ranges {
            let mut cur_lo = lo;
            let mut exhausted = false;
            // Skip subtrahend ranges that end before this range starts.
            while j < other.ranges.len() && other.ranges[j].1 < cur_lo {
                j += 1;
            }
            let mut k = j;
            while k < other.ranges.len() && other.ranges[k].0 <= hi {
                let (b_lo, b_hi) = other.ranges[k];
                if b_lo > cur_lo {
                    // b_lo > cur_lo >= 0, so pred exists.
                    out.push((cur_lo, b_lo.pred().unwrap_or(b_lo)));
                }
                match b_hi.succ() {
                    Some(next) if b_hi < hi => cur_lo = next,
                    _ => {
                        exhausted = true;
                        break;
                    }
                }
                k += 1;
            }
            if !exhausted {
                out.push((cur_lo, hi));
            }
        }
        Self { ranges: out }
    }

    /// The complement within the whole type.
    pub fn complement(&self) -> Self {
        Self::full().difference(self)
    }
}

impl<T: Point> FromIterator<(T, T)> for IntervalSet<T> {
    fn from_iter<I: IntoIterator<Item = (T, T)>>(iter: I) -> Self {
        Self::from_ranges(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(set: &IntervalSet<u16>) -> Vec<bool> {
        (0..=255u16).map(|p| set.contains(p)).collect()
    }

    fn small_set() -> impl Strategy<Value = IntervalSet<u16>> {
        prop::collection::vec((0u16..256, 0u16..256), 0..5).prop_map(|v| {
            IntervalSet::from_ranges(v.into_iter().map(|(a, b)| (a.min(b), a.max(b))))
                .intersection(&IntervalSet::range(0, 255))
        })
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_pointwise_logic(a in small_set(), b in small_set()) {
            let (na, nb) = (naive(&a), naive(&b));
            let u = naive(&a.union(&b));
            let i = naive(&a.intersection(&b));
            let d = naive(&a.difference(&b));
            for p in 0..256 {
                prop_assert_eq!(u[p], na[p] || nb[p]);
                prop_assert_eq!(i[p], na[p] && nb[p]);
                prop_assert_eq!(d[p], na[p] && !nb[p]);
            }
        }

        #[test]
        fn representation_is_canonical(a in small_set(), b in small_set()) {
            // Equal point sets must have equal representations.
            let left = a.union(&b);
            let right = b.union(&a).difference(&IntervalSet::empty());
            prop_assert_eq!(left, right);
        }
    }

    #[test]
    fn difference_at_type_edges() {
        let full = IntervalSet::<u16>::full();
        assert_eq!(
            full.difference(&IntervalSet::range(0, 9)).ranges(),
            &[(10, u16::MAX)]
        );
        assert_eq!(
            full.difference(&IntervalSet::range(100, u16::MAX)).ranges(),
            &[(0, 99)]
        );
        assert!(full.difference(&full).is_empty());
        assert!(full.complement().is_empty());
        assert!(IntervalSet::<u16>::empty().complement().is_full());
    }
}
