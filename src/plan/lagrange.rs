//! Constrained pause-resume by Lagrangian relaxation and an O(slots) dynamic programme.
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

use super::grid::Grid;
use super::strategies::{Blocks, Ctx};

const INF: f64 = f64::INFINITY;

/// Cap on the edge moves of [`trim`] and [`extend`] (each costs a scan of the runs).
const EDGE_STEPS: usize = 96;

/// Scratch buffers reused across DP passes.
struct Dp<'g> {
    grid: &'g Grid,
    cx: &'g Ctx,
    r: Vec<f64>,
    p: Vec<f64>,
    f: Vec<f64>,
    /// How R(i) was reached: 0 continue, 1 start after a pause at `rj[i]`, 2 first start
    /// at `rj[i]`, 3 the locked current run, 4 the current run at boundary 0.
    rc: Vec<u8>,
    rj: Vec<u32>,
    /// How P(i) was reached: 0 stay paused, 1 paused at `pj[i]`.
    pc: Vec<u8>,
    pj: Vec<u32>,
    /// How F(i) was reached: 0 continue, 1 after a pause, 2 first start, 3 current run.
    fc: Vec<u8>,
    /// Boundary index of the end of the run lock (Running), if any.
    lock_end: Option<usize>,
    /// First boundary at which a not-yet-running job may start.
    first_start: usize,
}

struct Sol {
    mask: Vec<bool>,
}

impl<'g> Dp<'g> {
    fn new(grid: &'g Grid, cx: &'g Ctx) -> Self {
        let n = grid.len();
        let lock_end = (cx.running && cx.run_lock > 0)
            .then(|| grid.bounds.partition_point(|&b| b < cx.run_lock))
            .filter(|&i| i <= n);
        let first_start = if cx.running {
            n + 1
        } else {
            grid.bounds.partition_point(|&b| b < cx.pause_lock)
        };
        Dp {
            grid,
            cx,
            r: vec![INF; n + 1],
            p: vec![INF; n + 1],
            f: vec![INF; n + 1],
            rc: vec![0; n + 1],
            rj: vec![0; n + 1],
            pc: vec![0; n + 1],
            pj: vec![0; n + 1],
            fc: vec![0; n + 1],
            lock_end,
            first_start,
        }
    }

    /// `N(i)`: 0 where a job that has not run yet may start, else infinite.
    fn n_at(&self, i: usize) -> f64 {
        if i >= self.first_start {
            0.0
        } else {
            INF
        }
    }

    /// One pass for prices `lam` (per ms of work) and `mu` (per pause); returns the run
    /// mask of the best schedule, or None if nothing is reachable.
    fn solve(&mut self, lam: f64, mu: f64) -> Option<Sol> {
        let g = self.grid;
        let cx = self.cx;
        let n = g.len();
        let b = &g.bounds;
        let w = |j: usize, i: usize| (g.prefix(i) - g.prefix(j)) - lam * (b[i] - b[j]) as f64;
        let pen = mu + lam * cx.o as f64;
        self.r.iter_mut().for_each(|x| *x = INF);
        self.p.iter_mut().for_each(|x| *x = INF);
        self.f.iter_mut().for_each(|x| *x = INF);
        if cx.running {
            self.f[0] = 0.0;
            self.fc[0] = 3;
            if self.lock_end.is_none() && cx.ran >= cx.min_run {
                self.r[0] = 0.0;
                self.rc[0] = 4;
            }
        }
        // Largest j < i with b[i] - b[j] >= min_run (resp. min_pause), by two pointers.
        let (mut jr, mut jp) = (0usize, 0usize);
        for i in 1..=n {
            while jr + 1 < i && b[i] - b[jr + 1] >= cx.min_run {
                jr += 1;
            }
            while jp + 1 < i && b[i] - b[jp + 1] >= cx.min_pause {
                jp += 1;
            }
            // Run state.
            let mut best = self.r[i - 1] + w(i - 1, i);
            let mut how = 0u8;
            let mut from = 0u32;
            if b[i] - b[jr] >= cx.min_run {
                let c = self.p[jr] + w(jr, i);
                if c < best {
                    (best, how, from) = (c, 1, jr as u32);
                }
                let c = self.n_at(jr) + w(jr, i);
                if c < best {
                    (best, how, from) = (c, 2, jr as u32);
                }
            }
            if self.lock_end == Some(i) {
                let c = w(0, i);
                if c < best {
                    (best, how) = (c, 3);
                }
            }
            self.r[i] = best;
            self.rc[i] = how;
            self.rj[i] = from;
            // Pause state (a pause of at least min_pause ending at i).
            let mut best = self.p[i - 1];
            let mut how = 0u8;
            if b[i] - b[jp] >= cx.min_pause.max(1) {
                let c = self.r[jp] + pen;
                if c < best {
                    (best, how) = (c, 1);
                }
            }
            self.p[i] = best;
            self.pc[i] = how;
            self.pj[i] = jp as u32;
            // Final run through slot i-1.
            let step = w(i - 1, i);
            let mut best = self.f[i - 1];
            let mut how = 0u8;
            if self.p[i - 1] < best {
                (best, how) = (self.p[i - 1], 1);
            }
            if self.n_at(i - 1) < best {
                (best, how) = (self.n_at(i - 1), 2);
            }
            self.f[i] = best + step;
            self.fc[i] = how;
        }
        // Best end: a run (long or final) ending at some boundary.
        let mut end = None;
        let mut best = INF;
        for i in 1..=n {
            if self.r[i] < best {
                (best, end) = (self.r[i], Some((0u8, i)));
            }
            if self.f[i] < best {
                (best, end) = (self.f[i], Some((2u8, i)));
            }
        }
        let (mut st, mut i) = end?;
        let mut mask = vec![false; n];
        // Walk back: st 0 = R, 1 = P, 2 = F.
        for _ in 0..4 * (n + 2) {
            match st {
                0 => match self.rc[i] {
                    0 => {
                        mask[i - 1] = true;
                        i -= 1;
                    }
                    1 | 2 => {
                        let j = self.rj[i] as usize;
                        mask[j..i].iter_mut().for_each(|m| *m = true);
                        if self.rc[i] == 2 {
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
                    if self.pc[i] == 0 {
                        i -= 1;
                    } else {
                        (st, i) = (0, self.pj[i] as usize);
                    }
                }
                _ => {
                    if i == 0 {
                        break;
                    }
                    mask[i - 1] = true;
                    match self.fc[i] {
                        0 => i -= 1,
                        1 => (st, i) = (1, i - 1),
                        _ => break,
                    }
                }
            }
        }
        Some(Sol { mask })
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
fn net(cx: &Ctx, blocks: &Blocks) -> i64 {
    let work: i64 = blocks.iter().map(|&(a, b)| b - a).sum();
    work - cx.o.saturating_mul(cx.pauses(blocks))
}

/// The least `lambda` (by bisection) whose schedule holds the work, for a pause price.
/// Also returns the schedule at the highest price found short of the work, whose
/// extension often beats trimming the other across the jump (the duality gap).
fn for_mu(dp: &mut Dp<'_>, mu: f64, lo0: f64, hi0: f64) -> Option<(Blocks, Option<Blocks>)> {
    let (grid, cx) = (dp.grid, dp.cx);
    let (mut lo, mut hi) = (lo0, hi0);
    let mut best: Option<Blocks> = None;
    let mut short: Option<Blocks> = None;
    for _ in 0..8 {
        let b = blocks_of(grid, &dp.solve(hi, mu)?.mask);
        if net(cx, &b) >= cx.r {
            best = Some(b);
            break;
        }
        lo = hi;
        hi = hi * 2.0 + 1.0;
    }
    let mut best = best?;
    let mut best_surplus = net(cx, &best) - cx.r;
    let step = (0..grid.len())
        .map(|k| grid.dur(k))
        .max()
        .unwrap_or(1)
        .max(1);
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
        let b = blocks_of(grid, &dp.solve(mid, mu)?.mask);
        if net(cx, &b) >= cx.r {
            hi = mid;
            best_surplus = net(cx, &b) - cx.r;
            best = b;
        } else {
            lo = mid;
            short = Some(b);
        }
    }
    Some((best, short))
}

/// Grows a schedule short of work by the cheapest admissible edge extensions: a run may
/// grow into a gap while the gap keeps `min_pause`, or swallow the whole gap (one pause,
/// and its overhead, fewer); never before the pause lock or past the deadline.
fn extend(grid: &Grid, cx: &Ctx, mut blocks: Blocks) -> Option<Blocks> {
    let mp = cx.min_pause.max(1);
    // Each step scans every run; the jump it bridges is a few slots on real grids, so a
    // schedule still short after EDGE_STEPS steps is left to the other candidates.
    for _ in 0..EDGE_STEPS {
        let deficit = cx.r - net(cx, &blocks);
        if deficit <= 0 {
            return Some(blocks);
        }
        // (intensity per ms of net work gained, block, at end?, amount, merges?)
        let mut best: Option<(f64, usize, bool, i64, bool)> = None;
        let mut consider = |c: (f64, usize, bool, i64, bool)| {
            if c.3 > 0 && best.is_none_or(|x| c.0 < x.0) {
                best = Some(c);
            }
        };
        for (j, &(a, b)) in blocks.iter().enumerate() {
            if b < cx.h {
                let k = grid.locate(b);
                let mut amt = (grid.bounds[k + 1].min(cx.h) - b).min(deficit);
                let mut merge = false;
                if let Some(&(na, _)) = blocks.get(j + 1) {
                    if na - b - amt < mp {
                        (amt, merge) = (na - b, true);
                    }
                }
                let gain = amt + if merge { cx.o } else { 0 };
                consider((
                    grid.cost(b, b + amt) / gain.max(1) as f64,
                    j,
                    true,
                    amt,
                    merge,
                ));
            }
            let lead_running = j == 0 && cx.running;
            if a > 0 && !(j == 0 && !cx.running && a <= cx.pause_lock) {
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
                    amt = amt.min(a - cx.pause_lock);
                }
                if lead_running && merge && cx.run_lock > 0 {
                    // Joining the current run is fine; the lock only forbids pausing now.
                }
                let gain = amt + if merge { cx.o } else { 0 };
                consider((
                    grid.cost(a - amt, a) / gain.max(1) as f64,
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
/// least a millisecond; the current run is never cut at its start; runs never vanish, so
/// the pause count and hence the work needed stay put).
fn trim(grid: &Grid, cx: &Ctx, mut blocks: Blocks) -> Blocks {
    let mut surplus = net(cx, &blocks) - cx.r;
    let nb = blocks.len();
    // Each cut removes at least one slot's part; a surplus left after EDGE_STEPS cuts only
    // means the job is planned a little more runtime than it needs (still valid).
    for _ in 0..EDGE_STEPS {
        if surplus <= 0 {
            break;
        }
        let mut best: Option<(f64, usize, bool, i64)> = None;
        for (j, &(a, b)) in blocks.iter().enumerate() {
            let continuing = j == 0 && cx.running && a == 0;
            // Never leave a sliver: a run shorter than a second is a pointless transition.
            let keep = if j + 1 == nb {
                1000
            } else {
                (cx.min_run - if continuing { cx.ran } else { 0 }).max(1000)
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

/// Candidate schedules from the Lagrangian (the trimmed one that holds the work, and the
/// extended one from just short of it); the caller validates and keeps the cheapest.
pub(crate) fn solve(grid: &Grid, cx: &Ctx) -> Vec<Blocks> {
    if grid.len() == 0 {
        return Vec::new();
    }
    let vmax = grid.vals.iter().copied().fold(0.0f64, f64::max);
    let (lo, hi) = (-1.0, vmax + 1.0);
    let mut dp = Dp::new(grid, cx);
    let Some((best, short)) = for_mu(&mut dp, 0.0, lo, hi) else {
        return Vec::new();
    };
    let mut out: Vec<Blocks> = Vec::new();
    if let Some(b) = short.and_then(|s| extend(grid, cx, s)) {
        out.push(b);
    }
    let allowed = match cx.allowed {
        Some(a) if cx.pauses(&best) > i64::from(a) => i64::from(a),
        _ => {
            out.push(trim(grid, cx, best));
            return out;
        }
    };
    // Price pauses until few enough remain: the least such price.
    let scale = (vmax + 1.0) * grid.end().max(1) as f64;
    let (mut mlo, mut mhi) = (0.0, scale);
    let mut found = None;
    for _ in 0..14 {
        let mid = 0.5 * (mlo + mhi);
        match for_mu(&mut dp, mid, lo, hi) {
            Some((b, short)) if cx.pauses(&b) <= allowed => {
                found = Some(b);
                if let Some(e) = short.and_then(|s| extend(grid, cx, s)) {
                    out.push(e);
                }
                mhi = mid;
            }
            _ => mlo = mid,
        }
        if mhi - mlo <= 1e-4 * scale {
            break;
        }
    }
    if found.is_none() {
        found = for_mu(&mut dp, mhi, lo, hi)
            .map(|(b, _)| b)
            .filter(|b| cx.pauses(b) <= allowed);
    }
    out.extend(found.map(|b| trim(grid, cx, b)));
    out
}
