//! The four strategies, on the slot model of [`super::grid`], in milliseconds from `now`.
//!
//! Each returns the planned run blocks `[a, b)` (sorted, disjoint, non-empty) and the reason
//! for the action at `now`; [`super::decide`] turns that into a [`super::Plan`]. The
//! deadline guard is structural rather than a post-check: every strategy only ever returns
//! blocks that fit the remaining work, plus the overhead of the pauses they contain, before
//! the deadline, and a pause-and-resume or threshold plan only pauses when the slack left can
//! absorb the pause's overhead. Since `next_transition` is the first block's start (when
//! pausing) or end (when running), an operator that re-plans at every transition can never
//! be led past the latest start.

use super::grid::{Cursor, Grid};
use super::Reason;

/// Run blocks in ms from `now`.
pub(crate) type Blocks = Vec<(i64, i64)>;

/// The planning problem: a request normalised to integer milliseconds from now, with the
/// job-state locks resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem {
    /// Deadline, ms from now (> 0, >= `work`).
    pub deadline: i64,
    /// Remaining work including the overhead of pauses already taken (> 0).
    pub work: i64,
    /// Overhead each new pause adds to the work.
    pub pause_overhead: i64,
    pub min_run: i64,
    pub min_pause: i64,
    /// Pauses still allowed (None: unlimited).
    pub allowed: Option<u32>,
    /// The job is running now (a gap before the first block would be a new pause).
    pub running: bool,
    /// How long the current run has lasted (0 unless running).
    pub ran: i64,
    /// `[0, run_lock)` must run: the current run has not yet lasted `min_run`.
    pub run_lock: i64,
    /// `[0, pause_lock)` must stay paused: the current pause has not yet lasted
    /// `min_pause` (already clamped so that it never delays the latest start).
    pub pause_lock: i64,
}

impl Problem {
    pub fn slack(&self) -> i64 {
        self.deadline - self.work
    }

    /// Whether the job, running now, could pause at all: a pause must last `min_pause`
    /// (and at least a millisecond) and its overhead must still fit before the deadline.
    pub fn can_pause_now(&self) -> bool {
        self.allowed != Some(0)
            && self.slack() >= self.pause_overhead.saturating_add(self.min_pause.max(1))
    }

    fn unconstrained(&self) -> bool {
        self.min_run == 0
            && self.min_pause == 0
            && self.pause_overhead == 0
            && self.allowed.is_none()
    }

    /// Pauses a plan implies: the gaps between blocks, plus one if the job is running now
    /// and the plan does not continue the run.
    pub fn pauses(&self, blocks: &[(i64, i64)]) -> i64 {
        let lead = matches!(blocks.first(), Some(&(a, _)) if self.running && a > 0);
        blocks.len().saturating_sub(1) as i64 + i64::from(lead)
    }

    /// Work a plan must contain: remaining work plus overhead of each planned pause.
    pub fn need(&self, pauses: i64) -> i64 {
        self.work
            .saturating_add(self.pause_overhead.saturating_mul(pauses))
    }

    /// Every rule of the constrained problem, for the repair's final check and tests.
    pub fn valid(&self, blocks: &[(i64, i64)]) -> bool {
        let Some(&(first, _)) = blocks.first() else {
            return false;
        };
        let mut prev_end: Option<i64> = None;
        for (i, &(a, b)) in blocks.iter().enumerate() {
            if a >= b || a < 0 || b > self.deadline {
                return false;
            }
            if let Some(pe) = prev_end {
                if a - pe < self.min_pause.max(1) {
                    return false;
                }
            }
            prev_end = Some(b);
            let continuing = i == 0 && self.running && a == 0;
            let len = b - a + if continuing { self.ran } else { 0 };
            if i + 1 < blocks.len() && len < self.min_run {
                return false;
            }
        }
        if self.running && first > 0 && (first < self.min_pause || self.run_lock > 0) {
            return false;
        }
        if first < self.pause_lock {
            return false;
        }
        let p = self.pauses(blocks);
        if let Some(al) = self.allowed {
            if p > i64::from(al) {
                return false;
            }
        }
        let total: i64 = blocks.iter().map(|&(a, b)| b - a).sum();
        total >= self.need(p)
    }
}

/// What a strategy decided.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub blocks: Blocks,
    pub reason: Reason,
}

fn run_through(problem: &Problem, reason: Reason) -> Outcome {
    Outcome {
        blocks: vec![(0, problem.work)],
        reason,
    }
}

// ---------------------------------------------------------------------------------------
// Flexible start

/// The cheapest window `[s, s + len)` with `earliest <= s <= deadline - len`, exactly.
///
/// The window's cost is piecewise linear in `s`, with breakpoints where `s` or `s + len`
/// crosses a slot boundary, so its minimum over the continuous range is attained at an end
/// of the range or at one of those breakpoints: checking them all is exact over every real
/// start time, not only slot-aligned ones. One sweep with two cursors: O(slots).
pub(crate) fn best_window(
    grid: &Grid,
    earliest: i64,
    len: i64,
    deadline: i64,
) -> Option<(i64, f64)> {
    let lo = earliest.max(0);
    let hi = deadline - len;
    if hi < lo || len <= 0 {
        return None;
    }
    let bounds = &grid.bounds;
    let mut best = (lo, grid.cost(lo, lo + len));
    let mut ca = Cursor::new(grid);
    let mut cb = Cursor::new(grid);
    let mut i = bounds.partition_point(|&b| b <= lo);
    let mut j = bounds.partition_point(|&b| b <= lo.saturating_add(len));
    loop {
        let si = bounds.get(i).copied().filter(|&b| b < hi);
        let sj = bounds.get(j).map(|&b| b - len).filter(|&s| s < hi);
        let s = match (si, sj) {
            (None, None) => break,
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) => x.min(y),
        };
        if si == Some(s) {
            i += 1;
        }
        if sj == Some(s) {
            j += 1;
        }
        let c = cb.prefix(s + len) - ca.prefix(s);
        if c < best.1 {
            best = (s, c);
        }
    }
    if hi > lo {
        let c = grid.cost(hi, hi + len);
        if c < best.1 {
            best = (hi, c);
        }
    }
    Some(best)
}

pub(crate) fn flexible_start(grid: &Grid, problem: &Problem) -> Outcome {
    if problem.running {
        // Once started, a flexible-start job never pauses.
        return run_through(problem, Reason::CleanWindow);
    }
    if problem.slack() <= 0 {
        return run_through(problem, Reason::DeadlineGuard);
    }
    match best_window(grid, problem.pause_lock, problem.work, problem.deadline) {
        Some((0, _)) => run_through(problem, Reason::CleanWindow),
        Some((s, _)) => Outcome {
            blocks: vec![(s, s + problem.work)],
            reason: if s == problem.pause_lock {
                Reason::Constraint
            } else {
                Reason::WaitingForCleanerWindow
            },
        },
        None => run_through(problem, Reason::DeadlineGuard),
    }
}

// ---------------------------------------------------------------------------------------
// Pause and resume

/// How a slot may be used while repairing a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Must run (the current run has not lasted `min_run`).
    Lock,
    /// Committed to by the repair (a filled gap or an extended run).
    Forced,
    Free,
    /// Must not run (a pause lock or a dropped run).
    Banned,
}

/// Cheapest-slot selection under marks: Lock slots first, then Forced, then Free, each tier
/// by (intensity, time). `order` is the slot order by (intensity, index), computed once.
struct Selector<'g> {
    grid: &'g Grid,
    order: Vec<u32>,
    amount: Vec<i64>,
}

impl<'g> Selector<'g> {
    fn new(grid: &'g Grid) -> Self {
        // Ties go to the earlier slot: running earlier never hurts a deadline. Sorting
        // packed (f32 intensity, index) integers is several times faster than comparing
        // through the slice; a final insertion pass restores the exact f64 order, which
        // the packed order can only miss between values equal to 7 significant digits.
        let mut keys: Vec<u64> = grid
            .vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (u64::from((v as f32).to_bits()) << 32) | i as u64)
            .collect();
        keys.sort_unstable();
        let mut order: Vec<u32> = keys.iter().map(|&k| k as u32).collect();
        let less = |a: u32, b: u32| {
            grid.vals[a as usize]
                .total_cmp(&grid.vals[b as usize])
                .then(a.cmp(&b))
                .is_lt()
        };
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && less(order[j], order[j - 1]) {
                order.swap(j, j - 1);
                j -= 1;
            }
        }
        Selector {
            grid,
            order,
            amount: vec![0; grid.len()],
        }
    }

    /// Takes `need` ms of the cheapest admissible slots; None if they hold less.
    fn select(&mut self, marks: &[Mark], need: i64) -> Option<Blocks> {
        let g = self.grid;
        self.amount.iter_mut().for_each(|a| *a = 0);
        let mut left = need;
        for tier in [Mark::Lock, Mark::Forced, Mark::Free] {
            // A tier no slot is in would only cost a scan of the order.
            if left <= 0 || !marks.contains(&tier) {
                continue;
            }
            for &k in &self.order {
                if left <= 0 {
                    break;
                }
                let k = k as usize;
                if marks[k] == tier {
                    let take = g.dur(k).min(left);
                    self.amount[k] = take;
                    left -= take;
                }
            }
        }
        if left > 0 {
            return None;
        }
        Some(self.blocks())
    }

    fn blocks(&self) -> Blocks {
        amounts_to_blocks(self.grid, &self.amount)
    }

    /// Selection whose size matches the overhead of the pauses it creates (the pause count
    /// depends on the selection, so iterate; the need only grows, so this converges or
    /// runs out of capacity). Surplus work from an overestimate is trimmed off the end.
    fn select_consistent(
        &mut self,
        problem: &Problem,
        marks: &[Mark],
        hint: i64,
    ) -> Option<(Blocks, i64)> {
        let mut need = problem.need(hint);
        for _ in 0..8 {
            let mut blocks = self.select(marks, need)?;
            let p = problem.pauses(&blocks);
            let req = problem.need(p);
            if req <= need {
                let surplus = need - req;
                if let Some(last) = blocks.last_mut() {
                    if last.1 - last.0 > surplus {
                        last.1 -= surplus;
                    }
                }
                return Some((blocks, p));
            }
            need = req;
        }
        None
    }

    /// The marginal intensity: the dearest slot the selection had to take freely.
    fn lambda(&self, marks: &[Mark]) -> f64 {
        let mut lam = f64::NEG_INFINITY;
        let mut any = f64::NEG_INFINITY;
        for ((&a, &v), &m) in self.amount.iter().zip(&self.grid.vals).zip(marks) {
            if a > 0 {
                any = any.max(v);
                if m == Mark::Free {
                    lam = lam.max(v);
                }
            }
        }
        if lam.is_finite() {
            lam
        } else if any.is_finite() {
            any
        } else {
            0.0
        }
    }
}

/// Turns per-slot amounts into merged blocks. At most one slot is partly used; its part
/// goes next to a used neighbour (cost is flat within a slot, so this is free and avoids a
/// pointless sliver of pause).
fn amounts_to_blocks(g: &Grid, amount: &[i64]) -> Blocks {
    let n = g.len();
    let mut out: Blocks = Vec::new();
    for k in 0..n {
        let a = amount[k];
        if a == 0 {
            continue;
        }
        let (b0, b1) = (g.bounds[k], g.bounds[k + 1]);
        let (s, e) = if a >= b1 - b0 {
            (b0, b1)
        } else {
            let prev = k > 0 && amount[k - 1] > 0;
            let next = k + 1 < n && amount[k + 1] > 0;
            if prev || !next {
                (b0, b0 + a)
            } else {
                (b1 - a, b1)
            }
        };
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

fn mark_range(marks: &mut [Mark], grid: &Grid, a: i64, b: i64, to: Mark) {
    if b <= a || grid.len() == 0 {
        return;
    }
    for m in &mut marks[grid.locate(a)..=grid.locate(b - 1)] {
        if *m == Mark::Free || (to == Mark::Banned && *m == Mark::Forced) {
            *m = to;
        }
    }
}

/// A candidate repair of one violation, with its estimated cost at the marginal price.
#[derive(Debug, Clone, Copy)]
enum Fix {
    FillGap(usize),
    DropBlock(usize),
    /// Commit slots `l..=r` (a short run and its cheapest extension to `min_run`).
    Extend(usize, usize),
    /// Ban slots `l..=r` (the ends of the runs around a short gap, widening it).
    Trim(usize, usize),
}

/// Exact for the unconstrained problem: the cheapest slots, in the order of
/// [`Selector`] (intensity, then time), taken whole until the last one, which is taken in
/// part. Only the set matters, so a weighted quickselect finds it in O(slots) instead of
/// sorting every slot.
fn unconstrained(grid: &Grid, problem: &Problem) -> Option<Blocks> {
    let n = grid.len();
    let vals = &grid.vals;
    let less = |a: &u32, b: &u32| {
        vals[*a as usize]
            .total_cmp(&vals[*b as usize])
            .then(a.cmp(b))
    };
    let mut keys: Vec<u32> = (0..n as u32).collect();
    let mut amount = vec![0i64; n];
    // Invariant: every slot in keys[..lo] is taken whole, the cut lies in keys[lo..hi],
    // and `left` is the work still needed from there.
    let (mut lo, mut hi) = (0usize, n);
    let mut left = problem.work;
    let typical = grid.dur(n / 2).max(1);
    loop {
        if lo >= hi {
            return None;
        }
        // Guess the cut from the typical slot length; a wrong guess only narrows the range.
        let guess = usize::try_from((left - 1) / typical)
            .unwrap_or(usize::MAX)
            .min(hi - lo - 1);
        let part = &mut keys[lo..hi];
        part.select_nth_unstable_by(guess, less);
        let below: i64 = part[..guess].iter().map(|&k| grid.dur(k as usize)).sum();
        let at = grid.dur(part[guess] as usize);
        if below >= left {
            hi = lo + guess;
        } else if below + at < left {
            left -= below + at;
            lo += guess + 1;
        } else {
            for &k in &part[..guess] {
                amount[k as usize] = grid.dur(k as usize);
            }
            amount[part[guess] as usize] = left - below;
            for &k in &keys[..lo] {
                amount[k as usize] = grid.dur(k as usize);
            }
            return Some(amounts_to_blocks(grid, &amount));
        }
    }
}

/// Constrained pause-and-resume by repair: start from the cheapest slots, then fix violations
/// (short gaps, short runs, too many pauses) one commitment at a time, each time choosing
/// the fix that costs least at the current marginal price `lambda` (the dearest slot the
/// selection took): filling a gap costs its intensity above `lambda` minus one overhead
/// saved; dropping a run costs its saving below `lambda` minus one overhead saved;
/// extending a run costs the extension above `lambda`. Commitments only accumulate, so
/// this ends after at most one round per slot.
fn repair(grid: &Grid, problem: &Problem, prefer_drop: bool) -> Option<Blocks> {
    let n = grid.len();
    let mut sel = Selector::new(grid);
    let mut marks = vec![Mark::Free; n];
    mark_range(&mut marks, grid, 0, problem.run_lock, Mark::Lock);
    mark_range(&mut marks, grid, 0, problem.pause_lock, Mark::Banned);
    let mut capacity: i64 = (0..n)
        .filter(|&k| marks[k] != Mark::Banned)
        .map(|k| grid.dur(k))
        .sum();
    let mut hint = 0;
    // Each round commits at least one slot; bounded so that a pathological instance costs
    // O(slots) rounds at most a few dozen times (the Lagrangian candidate is the main one).
    for _ in 0..(n + 1).min(32) {
        let (blocks, p) = sel.select_consistent(problem, &marks, hint)?;
        hint = p;
        let lam = sel.lambda(&marks);
        let o_val = lam * problem.pause_overhead as f64;
        let nb = blocks.len();
        let lead_gap = problem.running && blocks[0].0 > 0;
        // Cost estimates (relative to the current selection) of each kind of fix.
        let fill_cost = |gi: usize| -> f64 {
            // Gap gi lies before block gi (gap 0 is the lead gap when running).
            let a = if gi == 0 { 0 } else { blocks[gi - 1].1 };
            let b = blocks[gi].0;
            grid.cost(a, b) - lam * (b - a) as f64 - o_val
        };
        let has_lock = |j: usize| {
            let (a, b) = blocks[j];
            (grid.locate(a)..=grid.locate(b - 1)).any(|k| marks[k] == Mark::Lock)
        };
        let drop_cost = |j: usize| -> Option<f64> {
            let (a, b) = blocks[j];
            if nb < 2
                || has_lock(j)
                || capacity - (b - a) < problem.need(p) + problem.pause_overhead
            {
                return None;
            }
            Some(lam * (b - a) as f64 - grid.cost(a, b) - o_val)
        };
        // Extension of block j to min_run, greedily into the cheaper neighbour slot.
        let extend = |j: usize| -> Option<(f64, usize, usize)> {
            let (a, b) = blocks[j];
            let continuing = j == 0 && problem.running && a == 0;
            let target = problem.min_run - if continuing { problem.ran } else { 0 };
            let (mut l, mut r) = (grid.locate(a), grid.locate(b - 1));
            let mut len = grid.bounds[r + 1] - grid.bounds[l];
            let mut extra = 0.0;
            while len < target {
                let left = (l > 0 && marks[l - 1] != Mark::Banned).then(|| l - 1);
                let right = (r + 1 < n && marks[r + 1] != Mark::Banned).then_some(r + 1);
                let k = match (left, right) {
                    (Some(x), Some(y)) => {
                        if grid.vals[y] < grid.vals[x] {
                            y
                        } else {
                            x
                        }
                    }
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => return None,
                };
                if k < l {
                    l = k;
                } else {
                    r = k;
                }
                len += grid.dur(k);
                extra += (grid.vals[k] - lam) * grid.dur(k) as f64;
            }
            Some((extra, l, r))
        };

        // Widening gap gi to min_pause by giving up the dearer edge slot of the runs
        // around it, one slot at a time, while both runs keep at least one slot. Returns
        // the slots to ban (the widened gap, whole slots).
        let widen = |gi: usize| -> Option<(f64, usize, usize)> {
            if gi == 0 {
                return None;
            }
            let (la, lb) = blocks[gi - 1];
            let (ra, rb) = blocks[gi];
            let (lmin, rmax) = (grid.locate(la), grid.locate(rb - 1));
            let (mut l, mut r) = (grid.locate(lb - 1), grid.locate(ra));
            if l >= r {
                return None;
            }
            let mut lost = 0.0;
            while grid.bounds[r] - grid.bounds[l + 1] < problem.min_pause {
                let left = (l > lmin && marks[l] == Mark::Free).then_some(l);
                let right = (r < rmax && marks[r] == Mark::Free).then_some(r);
                let k = match (left, right) {
                    (Some(x), Some(y)) => {
                        if grid.vals[y] > grid.vals[x] {
                            y
                        } else {
                            x
                        }
                    }
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => return None,
                };
                if k == l {
                    l -= 1;
                } else {
                    r += 1;
                }
                lost += (lam - grid.vals[k]) * grid.dur(k) as f64;
            }
            (l + 1 < r).then_some((lost, l + 1, r - 1))
        };
        let mut fixes: Vec<(f64, Fix)> = Vec::new();
        // Short gaps: fill, or drop a neighbouring run.
        for gi in 0..nb {
            if gi == 0 && !lead_gap {
                continue;
            }
            let a = if gi == 0 { 0 } else { blocks[gi - 1].1 };
            if blocks[gi].0 - a >= problem.min_pause {
                continue;
            }
            let mut best = (fill_cost(gi), Fix::FillGap(gi));
            if let Some((c, l, r)) = widen(gi) {
                if c < best.0 || (prefer_drop && c <= best.0) {
                    best = (c, Fix::Trim(l, r));
                }
            }
            for j in [gi.wrapping_sub(1), gi] {
                if j < nb {
                    if let Some(c) = drop_cost(j) {
                        if c < best.0 || (prefer_drop && c <= best.0) {
                            best = (c, Fix::DropBlock(j));
                        }
                    }
                }
            }
            fixes.push(best);
        }
        // Short runs (the final run ends the job, not a pause: it may be short).
        for (j, &(a, b)) in blocks.iter().enumerate().take(nb.saturating_sub(1)) {
            let continuing = j == 0 && problem.running && a == 0;
            if b - a + if continuing { problem.ran } else { 0 } >= problem.min_run {
                continue;
            }
            let ext = extend(j).map(|(c, l, r)| (c, Fix::Extend(l, r)));
            let drop = drop_cost(j).map(|c| (c, Fix::DropBlock(j)));
            match (ext, drop) {
                (Some(e), Some(d)) => fixes.push(if d.0 < e.0 || (prefer_drop && d.0 <= e.0) {
                    d
                } else {
                    e
                }),
                (Some(x), None) | (None, Some(x)) => fixes.push(x),
                (None, None) => return None,
            }
        }
        // Too many pauses: the cheapest merges.
        if fixes.is_empty() {
            if let Some(al) = problem.allowed {
                let excess = p - i64::from(al);
                if excess > 0 {
                    let mut all: Vec<(f64, Fix)> = Vec::new();
                    for gi in 0..nb {
                        if gi > 0 || lead_gap {
                            all.push((fill_cost(gi), Fix::FillGap(gi)));
                        }
                    }
                    for j in 0..nb {
                        if let Some(c) = drop_cost(j) {
                            all.push((c, Fix::DropBlock(j)));
                        }
                    }
                    all.sort_by(|x, y| x.0.total_cmp(&y.0));
                    // Non-overlapping fixes only: each touches a block and its gaps.
                    let mut used = vec![false; nb + 1];
                    let mut taken = 0;
                    for (c, f) in all {
                        if taken >= excess {
                            break;
                        }
                        let (x, y) = match f {
                            Fix::FillGap(gi) => (gi, gi),
                            Fix::DropBlock(j) => (j, j + 1),
                            Fix::Extend(..) | Fix::Trim(..) => continue,
                        };
                        if used[x] || used[y] {
                            continue;
                        }
                        used[x] = true;
                        used[y] = true;
                        fixes.push((c, f));
                        taken += 1;
                    }
                }
            }
        }
        if fixes.is_empty() {
            return Some(blocks);
        }
        // Apply (a block touched by two fixes gets both: each only adds commitments).
        for (_, f) in fixes {
            match f {
                Fix::FillGap(gi) => {
                    // The gap plus the edge slots of its neighbours, so that the runs join.
                    let a = if gi == 0 { 0 } else { blocks[gi - 1].1 - 1 };
                    mark_range(&mut marks, grid, a, blocks[gi].0 + 1, Mark::Forced);
                }
                Fix::DropBlock(j) => {
                    let (a, b) = blocks[j];
                    mark_range(&mut marks, grid, a, b, Mark::Banned);
                }
                Fix::Trim(l, r) => {
                    for m in &mut marks[l..=r] {
                        if *m == Mark::Free {
                            *m = Mark::Banned;
                        }
                    }
                }
                Fix::Extend(l, r) => {
                    for m in &mut marks[l..=r] {
                        if *m == Mark::Free {
                            *m = Mark::Forced;
                        }
                    }
                }
            }
        }
        capacity = (0..n)
            .filter(|&k| marks[k] != Mark::Banned)
            .map(|k| grid.dur(k))
            .sum();
    }
    None
}

pub(crate) fn pause_and_resume(grid: &Grid, problem: &Problem) -> Outcome {
    if problem.slack() <= 0
        || (problem.running && !problem.can_pause_now() && problem.allowed != Some(0))
    {
        return run_through(problem, Reason::DeadlineGuard);
    }
    if problem.running && problem.allowed == Some(0) {
        return run_through(problem, Reason::Constraint);
    }
    let blocks = if problem.unconstrained() {
        unconstrained(grid, problem)
    } else {
        constrained(grid, problem)
    };
    let blocks = blocks.unwrap_or_else(|| vec![(0, problem.work)]);
    let reason = if blocks[0].0 == 0 {
        Reason::CleanWindow
    } else if blocks[0].0 == problem.pause_lock {
        Reason::Constraint
    } else {
        Reason::WaitingForCleanerWindow
    };
    Outcome { blocks, reason }
}

/// The best valid plan among the repairs and the contiguous fallbacks (which always
/// satisfy every constraint), so a constrained plan is never worse than flexible start.
pub(crate) fn constrained(grid: &Grid, problem: &Problem) -> Option<Blocks> {
    let mut cands: Vec<Blocks> = Vec::new();
    if problem.running {
        cands.push(vec![(0, problem.work)]);
        if problem.run_lock == 0 && problem.can_pause_now() {
            if let Some((s, _)) = best_window(
                grid,
                problem.min_pause.max(1),
                problem.work + problem.pause_overhead,
                problem.deadline,
            ) {
                cands.push(vec![(s, s + problem.work + problem.pause_overhead)]);
            }
        }
    } else if let Some((s, _)) =
        best_window(grid, problem.pause_lock, problem.work, problem.deadline)
    {
        cands.push(vec![(s, s + problem.work)]);
    }
    if problem.allowed != Some(0) {
        cands.extend(super::lagrange::solve(grid, problem));
        // The repair is a cheap second opinion; its tie-breaking variant only pays on
        // small instances.
        let variants: &[bool] = match grid.len() {
            0..=256 => &[false, true],
            257..=1024 => &[false],
            // On long horizons the Lagrangian candidate wins and the repair's rounds of
            // O(slots) selections would dominate the planning time.
            _ => &[],
        };
        for &prefer_drop in variants {
            if let Some(b) = repair(grid, problem, prefer_drop) {
                cands.push(b);
            }
        }
    }
    let mut best: Option<(f64, Blocks)> = None;
    for c in cands {
        if !problem.valid(&c) {
            continue;
        }
        let cost = grid.cost_of(&c);
        if best.as_ref().is_none_or(|(bc, _)| cost < *bc) {
            best = Some((cost, c));
        }
    }
    best.map(|(_, b)| b)
}

// ---------------------------------------------------------------------------------------
// Threshold

/// Simulates the threshold policy forward on the forecast: run while the slot's intensity
/// is below `limit`, pause otherwise, honouring min run / min pause / max pauses, and
/// resume at the latest start whatever the grid (the guard).
pub(crate) fn threshold(grid: &Grid, problem: &Problem, limit: f64) -> Outcome {
    let below = |k: usize| grid.vals[k] < limit;
    let n = grid.len();
    let mut blocks: Blocks = Vec::new();
    let mut t = 0i64;
    let mut rem = problem.work;
    let mut running = problem.running;
    // Start of the current run or pause, possibly before now; None before the first start.
    let mut since: Option<i64> = if problem.running {
        Some(-problem.ran)
    } else if problem.pause_lock > 0 {
        Some(problem.pause_lock - problem.min_pause)
    } else {
        None
    };
    let mut allowed = problem.allowed;
    let mut reason: Option<Reason> = None;
    // Each round either finishes or moves t forward past a run or a pause.
    for _ in 0..2 * n + 4 {
        if rem <= 0 {
            break;
        }
        if running {
            let slack = problem.deadline - t - rem;
            let may_pause = allowed != Some(0)
                && slack
                    >= problem
                        .pause_overhead
                        .saturating_add(problem.min_pause.max(1));
            let earliest = since.map_or(t, |s| (s + problem.min_run).max(t));
            let mut stop = None;
            if may_pause && earliest < t + rem {
                let mut k = grid.locate(earliest);
                while k < n && grid.bounds[k] < t + rem {
                    if !below(k) {
                        stop = Some(grid.bounds[k].max(earliest));
                        break;
                    }
                    k += 1;
                }
            }
            if reason.is_none() {
                reason = Some(match stop {
                    Some(0) => Reason::AboveThreshold,
                    _ if below(grid.locate(0)) => Reason::BelowThreshold,
                    _ if earliest > 0 && may_pause => Reason::Constraint,
                    _ if allowed == Some(0) => Reason::Constraint,
                    _ => Reason::DeadlineGuard,
                });
            }
            match stop {
                Some(s) if s < t + rem => {
                    if s > t {
                        blocks.push((t, s));
                    }
                    rem = rem - (s - t) + problem.pause_overhead;
                    allowed = allowed.map(|a| a.saturating_sub(1));
                    running = false;
                    since = Some(s);
                    t = s;
                }
                _ => {
                    blocks.push((t, t + rem));
                    rem = 0;
                }
            }
        } else {
            let latest = problem.deadline - rem;
            let lock = since.map_or(t, |s| (s + problem.min_pause).max(t));
            let mut start = latest;
            let mut k = grid.locate(lock);
            while k < n && grid.bounds[k] < latest {
                if below(k) {
                    start = grid.bounds[k].max(lock).min(latest);
                    break;
                }
                k += 1;
            }
            let start = start.max(t);
            if reason.is_none() {
                reason = Some(if start > 0 {
                    if below(grid.locate(0)) {
                        Reason::Constraint
                    } else {
                        Reason::AboveThreshold
                    }
                } else if below(grid.locate(0)) {
                    Reason::BelowThreshold
                } else {
                    Reason::DeadlineGuard
                });
            }
            running = true;
            since = Some(start);
            t = start;
        }
    }
    if rem > 0 {
        // Cannot happen (each round makes progress), but never leave work unplanned.
        blocks.push((t, t + rem));
    }
    if blocks.is_empty() {
        blocks.push((0, problem.work));
    }
    Outcome {
        blocks,
        reason: reason.unwrap_or(Reason::DeadlineGuard),
    }
}
