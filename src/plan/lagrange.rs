//! Constrained pause-and-resume by Lagrangian relaxation and an O(slots) dynamic programme.
//!
//! The hard part of the constrained problem is the coupling through the total work; the
//! structure (runs of at least `min_run`, pauses of at least `min_pause`, a price per
//! pause) is easy for a DP over slot boundaries. So the work constraint is priced: for a
//! price `lambda` per ms of work, the DP finds the exact optimum over whole-slot schedules
//! of `cost - lambda * (work - overhead * pauses) + mu * pauses` with two states per
//! boundary (a run that may end here / a pause that may end here) plus the final run,
//! which ends the job and is exempt from `min_run`. Bisection on `lambda` finds the least
//! price whose schedule holds the remaining work; when that schedule has too many pauses,
//! an outer bisection prices pauses with `mu`. The surplus of the whole-slot schedule is
//! trimmed off the final run's dearer end.
//!
//! A schedule that is optimal for some prices and holds exactly the work is optimal for
//! the constrained problem (Lagrangian sufficiency); the only loss is the duality gap at
//! the price where the work jumps, which the tests bound against brute force.
//!
//! ## Bounded work
//! One decision costs O(slots) with a bounded constant, whatever the horizon and the
//! constraints: at most [`DP_CELLS`] slot-steps of DP over all passes (but at least
//! [`MIN_PASSES`] passes), and at most [`EDGE_VISITS`] run visits each for the edge moves
//! of [`extend`] and of [`trim`]. Without them a year of hourly slots (a CarbonAwareJob at
//! the CRD's limits) with a binding `maxPauses` took up to 14 pause prices x 32 passes plus
//! 96 full scans of a thousand runs per price: 50-110 ms per reconcile. The bounds only
//! bind beyond about 2,000 slots (`DP_CELLS / 512`, the most passes a decision can ask
//! for) or a thousand runs; when one does, the search stops with the best schedule found
//! so far (the pause price search keeps the least price it proved feasible, a bisection its
//! best schedule holding the work, an extension gives up, a trim leaves surplus runtime),
//! and the contiguous fallbacks of [`super::strategies::constrained`] keep the plan valid
//! and never worse than flexible start.

use super::grid::Grid;
use super::strategies::{Blocks, Problem};

const INF: f64 = f64::INFINITY;

/// Cap on the edge moves of [`trim`] and [`extend`] (each costs a scan of the runs).
const EDGE_STEPS: usize = 96;

/// DP slot-steps per decision, over all passes (about 10 ms on a year of hourly slots).
pub(crate) const DP_CELLS: usize = 1 << 20;
/// Passes allowed whatever the grid's length, so that a very long grid still gets a plan.
pub(crate) const MIN_PASSES: usize = 16;
/// Runs scanned per decision by all [`extend`] steps, and again by all [`trim`] steps.
pub(crate) const EDGE_VISITS: usize = 1 << 15;

/// Per-boundary data of the DP that does not depend on the prices, computed once per
/// decision (every pass of the bisections reuses it).
#[derive(Clone, Copy)]
struct Pre {
    /// Cost and length (ms, as f64) of slot `i - 1`, so that the step into boundary `i`
    /// is `sc - lam * sd`.
    sc: f64,
    sd: f64,
    /// Cost and length of `[b[jr], b[i])`, where `jr` is the largest `j < i` with
    /// `b[i] - b[j] >= min_run` (0 if none).
    wc: f64,
    wd: f64,
    /// `N(jr)` and `N(i - 1)`.
    nr: f64,
    nf: f64,
    jr: u32,
    /// Largest `j < i` with `b[i] - b[j] >= min_pause` (0 if none).
    jp: u32,
    /// Whether a run may start at `jr` (it lasts `min_run`), a pause at `jp`.
    okr: bool,
    okp: bool,
}

/// Scratch buffers reused across DP passes.
struct Dp<'g> {
    grid: &'g Grid,
    problem: &'g Problem,
    /// `pre[i - 1]` describes boundary `i` (1..=n).
    pre: Vec<Pre>,
    r: Vec<f64>,
    p: Vec<f64>,
    /// How each boundary was reached, packed: bits 0-2 R (0 continue, 1 start after a
    /// pause at `jr`, 2 first start at `jr`, 3 the locked current run, 4 the current run at
    /// boundary 0), bit 3 P (0 stay paused, 1 paused at `jp`), bits 4-5 F (0 continue, 1
    /// after a pause, 2 first start).
    how: Vec<u8>,
    mask: Vec<bool>,
    /// Boundary index of the end of the run lock (Running), if any.
    lock_end: Option<usize>,
    /// Longest slot (ms).
    max_dur: i64,
    /// DP passes left in this decision's budget (see the module doc).
    passes_left: usize,
}

impl<'g> Dp<'g> {
    fn new(grid: &'g Grid, problem: &'g Problem) -> Self {
        let n = grid.len();
        let b = &grid.bounds;
        let lock_end = (problem.running && problem.run_lock > 0)
            .then(|| b.partition_point(|&x| x < problem.run_lock))
            .filter(|&i| i <= n);
        // First boundary at which a not-yet-running job may start.
        let first_start = if problem.running {
            n + 1
        } else {
            b.partition_point(|&x| x < problem.pause_lock)
        };
        let n_at = |i: usize| if i >= first_start { 0.0 } else { INF };
        let mut pre = Vec::with_capacity(n);
        // Largest j < i with b[i] - b[j] >= min_run (resp. min_pause), by two pointers.
        let (mut jr, mut jp) = (0usize, 0usize);
        for i in 1..=n {
            while jr + 1 < i && b[i] - b[jr + 1] >= problem.min_run {
                jr += 1;
            }
            while jp + 1 < i && b[i] - b[jp + 1] >= problem.min_pause {
                jp += 1;
            }
            pre.push(Pre {
                sc: grid.prefix(i) - grid.prefix(i - 1),
                sd: (b[i] - b[i - 1]) as f64,
                wc: grid.prefix(i) - grid.prefix(jr),
                wd: (b[i] - b[jr]) as f64,
                nr: n_at(jr),
                nf: n_at(i - 1),
                jr: jr as u32,
                jp: jp as u32,
                okr: b[i] - b[jr] >= problem.min_run,
                okp: b[i] - b[jp] >= problem.min_pause.max(1),
            });
        }
        let max_dur = (0..n).map(|k| grid.dur(k)).max().unwrap_or(1).max(1);
        Dp {
            grid,
            problem,
            pre,
            r: vec![INF; n + 1],
            p: vec![INF; n + 1],
            how: vec![0; n + 1],
            mask: vec![false; n],
            lock_end,
            max_dur,
            passes_left: (DP_CELLS / n.max(1)).max(MIN_PASSES),
        }
    }

    /// Whether the pass budget is spent (a `None` from [`Dp::solve`] then means that, not
    /// an unreachable schedule).
    fn exhausted(&self) -> bool {
        self.passes_left == 0
    }

    /// One pass for prices `lam` (per ms of work) and `mu` (per pause); returns the
    /// blocks of the best schedule, or None if nothing is reachable or the pass budget is
    /// spent.
    fn solve(&mut self, lam: f64, mu: f64) -> Option<Blocks> {
        self.passes_left = self.passes_left.checked_sub(1)?;
        let g = self.grid;
        let problem = self.problem;
        let n = g.len();
        let pen = mu + lam * problem.pause_overhead as f64;
        // Boundary 0: R and F are finite only for the current run.
        let (mut r_prev, mut f_prev) = (INF, INF);
        if problem.running {
            f_prev = 0.0;
            if self.lock_end.is_none() && problem.ran >= problem.min_run {
                r_prev = 0.0;
            }
        }
        let mut p_prev = INF;
        self.r[0] = r_prev;
        self.p[0] = p_prev;
        self.how[0] = 4;
        let lock_end = self.lock_end.unwrap_or(usize::MAX);
        let lock_w =
            |i: usize| g.prefix(i) - g.prefix(0) - lam * (g.bounds[i] - g.bounds[0]) as f64;
        // Sized so that indexing by `i <= n` needs no bounds check.
        let (r, p, how) = (
            &mut self.r[..=self.pre.len()],
            &mut self.p[..=self.pre.len()],
            &mut self.how[..=self.pre.len()],
        );
        // Best end: a run (long or final) ending at some boundary.
        let mut end = None;
        let mut best_end = INF;
        for (i1, q) in self.pre.iter().enumerate() {
            let i = i1 + 1;
            let step = q.sc - lam * q.sd;
            // Run state.
            let mut best = r_prev + step;
            let mut hr = 0u8;
            if q.okr {
                let w = q.wc - lam * q.wd;
                let c = p[q.jr as usize] + w;
                if c < best {
                    (best, hr) = (c, 1);
                }
                let c = q.nr + w;
                if c < best {
                    (best, hr) = (c, 2);
                }
            }
            if i == lock_end {
                let c = lock_w(i);
                if c < best {
                    (best, hr) = (c, 3);
                }
            }
            let r_i = best;
            r[i] = r_i;
            // Pause state (a pause of at least min_pause ending at i).
            let mut best = p_prev;
            let mut hp = 0u8;
            if q.okp {
                let c = r[q.jp as usize] + pen;
                if c < best {
                    (best, hp) = (c, 1);
                }
            }
            let p_i = best;
            p[i] = p_i;
            // Final run through slot i-1.
            let mut best = f_prev;
            let mut hf = 0u8;
            if p_prev < best {
                (best, hf) = (p_prev, 1);
            }
            if q.nf < best {
                (best, hf) = (q.nf, 2);
            }
            let f_i = best + step;
            how[i] = hr | (hp << 3) | (hf << 4);
            if r_i < best_end {
                (best_end, end) = (r_i, Some((0u8, i)));
            }
            if f_i < best_end {
                (best_end, end) = (f_i, Some((2u8, i)));
            }
            (r_prev, p_prev, f_prev) = (r_i, p_i, f_i);
        }
        let (mut st, mut i) = end?;
        let mask = &mut self.mask;
        mask.iter_mut().for_each(|m| *m = false);
        // Walk back: st 0 = R, 1 = P, 2 = F.
        for _ in 0..4 * (n + 2) {
            match st {
                0 => match self.how[i] & 7 {
                    0 => {
                        mask[i - 1] = true;
                        i -= 1;
                    }
                    hr @ (1 | 2) => {
                        let j = self.pre[i - 1].jr as usize;
                        mask[j..i].iter_mut().for_each(|m| *m = true);
                        if hr == 2 {
                            break;
                        }
                        (st, i) = (1, j);
                    }
                    3 => {
                        mask[..i].iter_mut().for_each(|m| *m = true);
                        break;
                    }
                    _ => break,
                },
                1 => {
                    if self.how[i] & 8 == 0 {
                        i -= 1;
                    } else {
                        (st, i) = (0, self.pre[i - 1].jp as usize);
                    }
                }
                _ => {
                    if i == 0 {
                        break;
                    }
                    mask[i - 1] = true;
                    match self.how[i] >> 4 {
                        0 => i -= 1,
                        1 => (st, i) = (1, i - 1),
                        _ => break,
                    }
                }
            }
        }
        Some(blocks_of(g, mask))
    }
}

fn blocks_of(grid: &Grid, mask: &[bool]) -> Blocks {
    let mut out: Blocks = Vec::new();
    for (k, &m) in mask.iter().enumerate() {
        if !m {
            continue;
        }
        let (s, e) = (grid.bounds[k], grid.bounds[k + 1]);
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
}

/// Net work of a schedule: runtime minus the overhead its pauses cost.
fn net(problem: &Problem, blocks: &Blocks) -> i64 {
    let work: i64 = blocks.iter().map(|&(a, b)| b - a).sum();
    work - problem
        .pause_overhead
        .saturating_mul(problem.pauses(blocks))
}

/// What [`for_mu`] found for one pause price.
struct MuSolution {
    /// The schedule at the least work price found that holds the work.
    best: Blocks,
    /// The schedule at the highest price found short of the work, whose extension often
    /// beats trimming `best` across the jump (the duality gap).
    short: Option<Blocks>,
    /// The work price of `best`: the next pause price's search starts from it.
    lambda: f64,
}

/// The bracket `[lo, hi]` of the least work price holding the work, from a `hint` (the
/// price found for a nearby pause price): probes around it with widening steps instead of
/// bisecting the whole range from scratch. Returns (lo, hi, best, short).
fn bracket_from(
    dp: &mut Dp<'_>,
    mu: f64,
    (lo0, hi0): (f64, f64),
    hint: f64,
) -> Option<(f64, f64, Blocks, Option<Blocks>)> {
    let problem = dp.problem;
    let holds = |b: &Blocks| net(problem, b) >= problem.work;
    let b = dp.solve(hint, mu)?;
    let mut delta = (hi0 - lo0).abs().max(1.0) / 256.0;
    if holds(&b) {
        let (mut hi, mut best) = (hint, b);
        loop {
            let lo = (hi - delta).max(lo0);
            let b = dp.solve(lo, mu)?;
            if !holds(&b) {
                return Some((lo, hi, best, Some(b)));
            }
            (hi, best) = (lo, b);
            if lo <= lo0 {
                return Some((lo0, hi, best, None));
            }
            delta *= 4.0;
        }
    }
    let (mut lo, mut short) = (hint, b);
    for _ in 0..12 {
        let hi = if lo + delta >= hi0 {
            hi0.max(lo + delta)
        } else {
            lo + delta
        };
        let b = dp.solve(hi, mu)?;
        if holds(&b) {
            return Some((lo, hi, b, Some(short)));
        }
        (lo, short) = (hi, b);
        delta *= 4.0;
    }
    None
}

/// The least `lambda` (by bisection) whose schedule holds the work, for a pause price,
/// searched from `hint` when given (see [`bracket_from`]), else over `[lo0, hi0]`.
fn for_mu(dp: &mut Dp<'_>, mu: f64, lo0: f64, hi0: f64, hint: Option<f64>) -> Option<MuSolution> {
    let problem = dp.problem;
    let (mut lo, mut hi) = (lo0, hi0);
    let mut best: Option<Blocks> = None;
    let mut short: Option<Blocks> = None;
    if let Some(h) = hint.filter(|h| h.is_finite()) {
        let (l, h, b, s) = bracket_from(dp, mu, (lo0, hi0), h.clamp(lo0, hi0))?;
        (lo, hi, best, short) = (l, h, Some(b), s);
    } else {
        for _ in 0..8 {
            let b = dp.solve(hi, mu)?;
            if net(problem, &b) >= problem.work {
                best = Some(b);
                break;
            }
            lo = hi;
            hi = hi * 2.0 + 1.0;
        }
    }
    let mut best = best?;
    let mut best_surplus = net(problem, &best) - problem.work;
    let step = dp.max_dur;
    // The work only changes at a few prices; 24 halvings of the intensity range resolve
    // them to well under a gram per kWh.
    for _ in 0..24 {
        if hi - lo <= 1e-6 * hi.abs().max(1.0) {
            break;
        }
        // Close enough: less than a slot of surplus is trimmed exactly afterwards.
        if best_surplus < step {
            break;
        }
        let mid = 0.5 * (lo + hi);
        let b = match dp.solve(mid, mu) {
            Some(b) => b,
            // Out of budget: the best schedule so far holds the work (with more surplus).
            None if dp.exhausted() => break,
            None => return None,
        };
        if net(problem, &b) >= problem.work {
            hi = mid;
            best_surplus = net(problem, &b) - problem.work;
            best = b;
        } else {
            lo = mid;
            short = Some(b);
        }
    }
    Some(MuSolution {
        best,
        short,
        lambda: hi,
    })
}

/// Grows a schedule short of work by the cheapest admissible edge extensions: a run may
/// grow into a gap while the gap keeps `min_pause`, or swallow the whole gap (one pause,
/// and its overhead, fewer); never before the pause lock or past the deadline.
///
/// A move is priced per ms of the deficit it covers, not per ms it adds: swallowing a
/// three-slot gap to cover one slot of deficit costs the whole gap for one slot's work.
/// Priced per ms added, a 20/900 g grid one slot short took the gap at 600 g per slot
/// over one more 900 g slot, and planned 1,940 g where 1,020 g held the work. The
/// caller trims any surplus a merge leaves.
fn extend(
    grid: &Grid,
    problem: &Problem,
    mut blocks: Blocks,
    visits: &mut usize,
) -> Option<Blocks> {
    let mp = problem.min_pause.max(1);
    // Each step scans every run; the jump it bridges is a few slots on real grids, so a
    // schedule still short after EDGE_STEPS steps (or once the decision's EDGE_VISITS are
    // spent) is left to the other candidates.
    for _ in 0..EDGE_STEPS {
        let deficit = problem.work - net(problem, &blocks);
        if deficit <= 0 {
            return Some(blocks);
        }
        *visits = visits.checked_sub(blocks.len())?;
        // (intensity per ms of net work gained, block, at end?, amount, merges?)
        let mut best: Option<(f64, usize, bool, i64, bool)> = None;
        let mut consider = |c: (f64, usize, bool, i64, bool)| {
            if c.3 > 0 && best.is_none_or(|x| c.0 < x.0) {
                best = Some(c);
            }
        };
        for (j, &(a, b)) in blocks.iter().enumerate() {
            if b < problem.deadline {
                let k = grid.locate(b);
                let mut amt = (grid.bounds[k + 1].min(problem.deadline) - b).min(deficit);
                let mut merge = false;
                if let Some(&(na, _)) = blocks.get(j + 1) {
                    if na - b - amt < mp {
                        (amt, merge) = (na - b, true);
                    }
                }
                let gain = amt + if merge { problem.pause_overhead } else { 0 };
                consider((
                    grid.cost(b, b + amt) / gain.min(deficit).max(1) as f64,
                    j,
                    true,
                    amt,
                    merge,
                ));
            }
            let lead_running = j == 0 && problem.running;
            if a > 0 && !(j == 0 && !problem.running && a <= problem.pause_lock) {
                let k = grid.locate(a - 1);
                let mut amt = (a - grid.bounds[k]).min(deficit);
                let mut merge = false;
                let prev_end = if j > 0 {
                    Some(blocks[j - 1].1)
                } else if lead_running {
                    Some(0)
                } else {
                    None
                };
                if let Some(pe) = prev_end {
                    if a - amt - pe < mp {
                        (amt, merge) = (a - pe, true);
                    }
                } else {
                    amt = amt.min(a - problem.pause_lock);
                }
                if lead_running && merge && problem.run_lock > 0 {
                    // Joining the current run is fine; the lock only forbids pausing now.
                }
                let gain = amt + if merge { problem.pause_overhead } else { 0 };
                consider((
                    grid.cost(a - amt, a) / gain.min(deficit).max(1) as f64,
                    j,
                    false,
                    amt,
                    merge,
                ));
            }
        }
        let (_, j, at_end, amt, merge) = best?;
        if at_end {
            blocks[j].1 += amt;
            if merge {
                blocks[j].1 = blocks[j + 1].1;
                blocks.remove(j + 1);
            }
        } else {
            blocks[j].0 -= amt;
            if merge && j > 0 {
                blocks[j - 1].1 = blocks[j].1;
                blocks.remove(j);
            }
        }
    }
    None
}

/// Trims the surplus of a whole-slot schedule where it is dearest: repeatedly cut the
/// dearest edge slot of any run (a non-final run keeps at least `min_run`, the final one at
/// least a second; the current run is never cut at its start). Runs never vanish, so the
/// pause count and hence the work needed stay put, with one exception that keeps them put
/// too: the current run, followed by another, goes whole when the surplus holds it and it
/// is the edge to cut (pausing now instead of after it: the same pauses). On a tie the
/// current run is kept: running now rather than later.
///
/// Cutting the current run down to a one-second sliver instead would plan "pause in one
/// second" at every decision without ever pausing: an operator re-planning at each
/// transition would look at the job every second (what made `simulate --max-pauses 3`
/// take 86 times as long).
fn trim(grid: &Grid, problem: &Problem, mut blocks: Blocks, visits: &mut usize) -> Blocks {
    let mut surplus = net(problem, &blocks) - problem.work;
    // Each cut removes at least one slot's part; a surplus left after EDGE_STEPS cuts (or
    // once the decision's EDGE_VISITS are spent) only means the job is planned more
    // runtime than it needs (still valid).
    for _ in 0..EDGE_STEPS {
        if surplus <= 0 {
            break;
        }
        let nb = blocks.len();
        let Some(left) = visits.checked_sub(nb) else {
            break;
        };
        *visits = left;
        // The current run is looked at last, so that it is only cut when strictly dearer:
        // on a tie the job keeps running now rather than later.
        let lead = usize::from(problem.running && blocks.first().is_some_and(|b| b.0 == 0));
        let mut best: Option<(f64, usize, bool, i64)> = None;
        for j in (lead..nb).chain(0..lead) {
            let (a, b) = blocks[j];
            let continuing = j == 0 && lead == 1;
            // Never leave a sliver: a run shorter than a second is a pointless transition.
            let keep = if j + 1 == nb {
                1000
            } else {
                (problem.min_run - if continuing { problem.ran } else { 0 }).max(1000)
            };
            let room = (b - a) - keep;
            if room <= 0 {
                continue;
            }
            // End edge: the part of the last slot.
            let k = grid.locate(b - 1);
            let amt = (b - grid.bounds[k].max(a)).min(surplus).min(room);
            if amt > 0 && best.is_none_or(|x| grid.vals[k] > x.0) {
                best = Some((grid.vals[k], j, false, amt));
            }
            if !continuing {
                let k = grid.locate(a);
                let amt = (grid.bounds[k + 1].min(b) - a).min(surplus).min(room);
                if amt > 0 && best.is_none_or(|x| grid.vals[k] > x.0) {
                    best = Some((grid.vals[k], j, true, amt));
                }
            }
        }
        // Cutting the current run: it goes whole when it may (instead of a sliver).
        if lead == 1 && best.is_some_and(|x| x.1 == 0) && droppable_lead(problem, &blocks, surplus)
        {
            surplus -= blocks[0].1;
            blocks.remove(0);
            continue;
        }
        let Some((_, j, head, amt)) = best else {
            break;
        };
        if head {
            blocks[j].0 += amt;
        } else {
            blocks[j].1 -= amt;
        }
        surplus -= amt;
    }
    blocks
}

/// Whether the current run at the head of `blocks` may go whole: another run follows, the
/// surplus holds it, and the job may pause now (no run lock, the slack holds the
/// overhead, the pause after it lasts `min_pause`).
fn droppable_lead(problem: &Problem, blocks: &Blocks, surplus: i64) -> bool {
    let (Some(&(a, b)), Some(next)) = (blocks.first(), blocks.get(1)) else {
        return false;
    };
    problem.running
        && a == 0
        && b <= surplus
        && problem.run_lock == 0
        && problem.can_pause_now()
        && next.0 >= problem.min_pause.max(1)
}

/// Candidate schedules from the Lagrangian (the trimmed one that holds the work, and the
/// extended one from just short of it); the caller validates and keeps the cheapest.
pub(crate) fn solve(grid: &Grid, problem: &Problem) -> Vec<Blocks> {
    if grid.len() == 0 {
        return Vec::new();
    }
    let vmax = grid.vals.iter().copied().fold(0.0f64, f64::max);
    let (lo, hi) = (-1.0, vmax + 1.0);
    let mut dp = Dp::new(grid, problem);
    let (mut ext_visits, mut trim_visits) = (EDGE_VISITS, EDGE_VISITS);
    let Some(MuSolution {
        best,
        short,
        lambda,
    }) = for_mu(&mut dp, 0.0, lo, hi, None)
    else {
        return Vec::new();
    };
    let mut out: Vec<Blocks> = Vec::new();
    if let Some(b) = short.and_then(|s| extend(grid, problem, s, &mut ext_visits)) {
        out.push(trim(grid, problem, b, &mut trim_visits));
    }
    let allowed = match problem.allowed {
        Some(a) if problem.pauses(&best) > i64::from(a) => i64::from(a),
        _ => {
            out.push(trim(grid, problem, best, &mut trim_visits));
            return out;
        }
    };
    let found = price_pauses(&mut dp, (lo, hi), lambda, allowed, |s| {
        if let Some(e) = extend(grid, problem, s, &mut ext_visits) {
            out.push(trim(grid, problem, e, &mut trim_visits));
        }
    });
    out.extend(found.map(|b| trim(grid, problem, b, &mut trim_visits)));
    out
}

/// The schedule at (about) the least pause price that leaves at most `allowed` pauses,
/// handing each feasible price's short schedule to `short`.
///
/// The price is bisected geometrically over `[scale * 1e-6, scale]`, where `scale` is
/// the most a pause could be worth (the dearest slot over the whole grid): pause prices
/// that matter are a few slots' worth, far below `scale`, and a geometric bisection
/// reaches them in a few steps where an arithmetic one spends most of its halvings near
/// `scale`. A price whose schedule has exactly `allowed` pauses ends the search: every
/// lower price that is still feasible has the same minimiser (the pause term adds the
/// same `mu * allowed` to every schedule with that many pauses, and fewer pauses only
/// get dearer as `mu` falls), so bisecting further would find the same schedule. Each
/// price's work-price search starts from the previous price's `lambda`
/// ([`bracket_from`]).
fn price_pauses(
    dp: &mut Dp<'_>,
    (lo, hi): (f64, f64),
    lambda0: f64,
    allowed: i64,
    mut short: impl FnMut(Blocks),
) -> Option<Blocks> {
    let problem = dp.problem;
    let vmax = hi - 1.0;
    let scale = (vmax + 1.0) * dp.grid.end().max(1) as f64;
    let (mut mlo, mut mhi) = (scale * 1e-6, scale);
    let mut lambda = lambda0;
    let mut found = None;
    for _ in 0..14 {
        let mid = (mlo * mhi).sqrt();
        match for_mu(dp, mid, lo, hi, Some(lambda)) {
            Some(sol) if problem.pauses(&sol.best) <= allowed => {
                let exact = problem.pauses(&sol.best) == allowed;
                lambda = sol.lambda;
                found = Some(sol.best);
                if let Some(s) = sol.short {
                    short(s);
                }
                mhi = mid;
                if exact {
                    break;
                }
            }
            // Out of budget: keep the least price proved feasible so far.
            None if dp.exhausted() => break,
            Some(sol) => {
                lambda = sol.lambda;
                mlo = mid;
            }
            None => mlo = mid,
        }
        if mhi <= mlo * (1.0 + 1e-3) {
            break;
        }
    }
    if found.is_none() {
        found = for_mu(dp, mhi, lo, hi, Some(lambda))
            .map(|sol| sol.best)
            .filter(|b| problem.pauses(b) <= allowed);
    }
    found
}
