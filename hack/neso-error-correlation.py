#!/usr/bin/env python3
"""Fits the noisy forecast model's correlations (src/sim/noise.rs) on the real NESO GB
vintages of March 2023: how alike two consecutive vintages' errors are for one target
(W_SHARED), and how fast one vintage's error decorrelates along the target time
(TAU_SHARED_H). Also prints the day-ahead persistence error of every embedded zone, the
per-zone scale of src/plan/error.rs.

    python3 hack/neso-error-correlation.py [DATA_DIR]

DATA_DIR holds the uncompressed CSVs (default ../shared/data/grid-intensity, or data/ with
the .csv.gz files). NESO data: Carbon Intensity API, National Energy System Operator,
CC BY 4.0; Electricity Maps data: ODbL 1.0.
"""
import csv
import gzip
import math
import os
import sys
from collections import defaultdict
from datetime import datetime, timedelta


def open_csv(d, name):
    p = os.path.join(d, name)
    if os.path.exists(p):
        return open(p, newline="")
    return gzip.open(p + ".gz", "rt", newline="")


def when(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def corr(pairs):
    n = len(pairs)
    ma = sum(a for a, _ in pairs) / n
    mb = sum(b for _, b in pairs) / n
    cov = sum((a - ma) * (b - mb) for a, b in pairs) / n
    va = sum((a - ma) ** 2 for a, _ in pairs) / n
    vb = sum((b - mb) ** 2 for _, b in pairs) / n
    return cov / math.sqrt(va * vb)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/grid-intensity"
    actual = {
        r["timestamp"]: float(r["gco2_per_kwh"])
        for r in csv.DictReader(open_csv(d, "neso_gb_national_actual_2023-03.csv"))
    }
    errors = defaultdict(dict)
    for r in csv.DictReader(open_csv(d, "neso_gb_national_forecast_vintages_2023-03.csv")):
        if r["timestamp"] in actual and int(r["horizon_minutes"]) >= 0:
            errors[r["issued_at"]][when(r["timestamp"])] = (
                float(r["gco2_per_kwh_forecast"]) - actual[r["timestamp"]]
            )
    issues = sorted(errors)
    # Consecutive vintages, same target, leads 0-48 h of the later one.
    pairs = []
    for a, b in zip(issues, issues[1:]):
        for t, e in errors[b].items():
            lead = (t - when(b)).total_seconds() / 3600
            if t in errors[a] and 0 <= lead < 48:
                pairs.append((errors[a][t], e))
    print(f"consecutive vintages: {len(issues)} issues, {len(pairs)} pairs, "
          f"error correlation {corr(pairs):.3f} (W_SHARED)")
    for lag in (1, 3, 6):
        lagged = [
            (e, v[t + timedelta(hours=lag)])
            for v in errors.values()
            for t, e in v.items()
            if t + timedelta(hours=lag) in v
        ]
        c = corr(lagged)
        tau = -lag / math.log(c) if 0 < c < 1 else float("nan")
        print(f"one vintage, targets {lag} h apart: correlation {c:.3f}, tau {tau:.1f} h")
    print("zone         day-ahead persistence MAE (g)  scale vs GB")
    zones = "BE CA-QC CH DE ES FI FR GB IT-NO NL US-CAL-CISO".split()
    mae = {}
    for z in zones:
        v = [float(r["gco2_per_kwh"])
             for r in csv.DictReader(open_csv(d, f"electricitymaps_hourly_{z}.csv"))]
        mae[z] = sum(abs(a - b) for a, b in zip(v[24:], v)) / (len(v) - 24)
    for z in zones:
        print(f"{z:12} {mae[z]:8.1f} {mae[z] / mae['GB']:12.2f}")


if __name__ == "__main__":
    main()
