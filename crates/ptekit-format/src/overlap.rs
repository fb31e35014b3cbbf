//! Overlap of byte ranges, for the containers whose segments must not share bytes
//! (`.pte` and `.ptd`: the reference never writes overlapping segments).

use crate::error::{ContainerError, LayoutReason};

/// A non-empty byte range `start..end` of a file and the index of the list entry it
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Index of the entry (e.g. the segment) it belongs to.
    pub index: usize,
}

/// Fails with a layout error at the first span (in file order) that starts before an
/// earlier one ends, naming both as `segments[i]`. Empty spans never overlap anything.
pub(crate) fn check_no_overlap(
    spans: impl IntoIterator<Item = Span>,
) -> Result<(), ContainerError> {
    match first_overlap(spans) {
        None => Ok(()),
        Some((r, p)) => Err(ContainerError::layout(
            r.start,
            format!("segments[{}]", r.index),
            LayoutReason::Overlap {
                range: (r.start, r.end),
                other: p.index,
                other_range: (p.start, p.end),
            },
        )),
    }
}

/// The first pair of overlapping spans, in file order: `(later, earlier)`.
fn first_overlap(spans: impl IntoIterator<Item = Span>) -> Option<(Span, Span)> {
    let mut spans: Vec<Span> = spans.into_iter().filter(|s| s.end > s.start).collect();
    spans.sort_unstable();
    // The span reaching furthest so far; any later span starting before its end overlaps it.
    let mut furthest: Option<Span> = None;
    for s in spans {
        if let Some(p) = furthest {
            if s.start < p.end {
                return Some((s, p));
            }
        }
        if furthest.is_none_or(|p| s.end > p.end) {
            furthest = Some(s);
        }
    }
    None
}
