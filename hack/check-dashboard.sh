#!/usr/bin/env bash
# Checks the Grafana dashboard (charts/carbonshift/files/dashboard.json) and the alerting
# rules (charts/carbonshift/files/alerts.yaml) against the metrics the operator exports:
#   - the dashboard is valid JSON with unique panel ids, every panel queries through the
#     ${datasource} variable;
#   - every carbonshift_* series a query names belongs to a family registered in
#     src/metrics.rs (histograms as _bucket/_sum/_count), and every label it selects on or
#     aggregates by is one of that family's labels;
#   - with --scrape FILE (a /metrics scrape of the running operator, as hack/test-chart.sh
#     takes), every carbonshift_* family in the scrape is one src/metrics.rs declares, with
#     the same type: this guards the parsing of src/metrics.rs itself.
# Needs only python3 (PyYAML optional: without it alert expressions are read line by line).
# Usage: hack/check-dashboard.sh [--scrape FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

scrape=""
if [[ "${1:-}" == "--scrape" ]]; then
  scrape="${2:?--scrape needs a file}"
fi

exec python3 - "$scrape" <<'PY'
import json, re, sys

scrape_file = sys.argv[1]
failures = []
def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")

# --- 1. families from src/metrics.rs -------------------------------------------------------
src = open("src/metrics.rs").read()
body = src.split("#[cfg(test)]")[0]
families = {}  # name -> (type, labels)
for chunk in re.split(r"\blet\s+\w+\s*=\s*", body)[1:]:
    chunk = chunk.split(")?;")[0]
    m_type = re.match(r"(IntCounterVec|IntCounter|IntGaugeVec|IntGauge|CounterVec|Counter|GaugeVec|Gauge|HistogramVec|Histogram)\b", chunk)
    m_name = re.search(r'"(carbonshift_[a-z0-9_]+)"', chunk)
    if not (m_type and m_name):
        continue
    labels = []
    m_labels = re.search(r"&\[([^\]]*)\]", chunk)
    if m_labels:
        labels = re.findall(r'"([a-z_][a-z0-9_]*)"', m_labels.group(1))
    kind = m_type.group(1)
    ptype = "histogram" if "Histogram" in kind else "counter" if "Counter" in kind else "gauge"
    families[m_name.group(1)] = (ptype, set(labels))
if len(families) < 5:
    fail(f"parsed only {len(families)} metric families from src/metrics.rs: the parser is out of date")
print(f"src/metrics.rs declares {len(families)} families")

series = {}  # queryable series name -> (family, allowed labels)
for name, (ptype, labels) in families.items():
    if ptype == "histogram":
        series[name + "_bucket"] = (name, labels | {"le"})
        series[name + "_sum"] = (name, labels)
        series[name + "_count"] = (name, labels)
    else:
        series[name] = (name, labels)

# Labels Prometheus adds to every scraped series (target labels).
TARGET_LABELS = {"job", "instance", "pod", "service", "endpoint", "container", "namespace"}

# --- 2. the scrape, if given ---------------------------------------------------------------
if scrape_file:
    seen = {}
    for line in open(scrape_file):
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m and m.group(1).startswith("carbonshift_"):
            seen[m.group(1)] = m.group(2)
    for name, ptype in sorted(seen.items()):
        if name not in families:
            fail(f"scrape exports {name}, which src/metrics.rs does not declare (parser out of date?)")
        elif families[name][0] != ptype:
            fail(f"scrape says {name} is a {ptype}, src/metrics.rs parse says {families[name][0]}")
    print(f"scrape {scrape_file}: {len(seen)} carbonshift families, all declared" if not failures else "")

# --- 3. the dashboard ----------------------------------------------------------------------
exprs = []  # (where, expr)
try:
    dash = json.load(open("charts/carbonshift/files/dashboard.json"))
except Exception as e:  # noqa: BLE001
    fail(f"dashboard.json does not parse: {e}")
    dash = None
if dash is not None:
    for key in ("uid", "title", "panels", "templating"):
        if key not in dash:
            fail(f"dashboard.json has no {key}")
    ids = []
    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            title = p.get("title", "?")
            if not p.get("targets"):
                fail(f"panel {title!r} has no queries")
            for t in p.get("targets", []):
                if not t.get("expr"):
                    fail(f"panel {title!r} has a query without expr")
                    continue
                ds = (t.get("datasource") or p.get("datasource") or {}).get("uid")
                if ds != "${datasource}":
                    fail(f"panel {title!r} queries datasource {ds!r}, not ${{datasource}}")
                exprs.append((f"panel {title!r}", t["expr"]))
    walk(dash.get("panels", []))
    dupes = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
    if dupes:
        fail(f"dashboard panel ids not unique or missing: {dupes}")
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')!r}", a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            m = re.match(r"label_values\((\w+),\s*(\w+)\)", q)
            if m:
                exprs.append((f"variable {v['name']!r}", f'{m.group(1)}{{{m.group(2)}=~".+"}}'))
            else:
                exprs.append((f"variable {v['name']!r}", q))

# --- 4. the alerting rules -----------------------------------------------------------------
rules_text = open("charts/carbonshift/files/alerts.yaml").read()
try:
    import yaml
    for g in yaml.safe_load(rules_text)["groups"]:
        for r in g["rules"]:
            exprs.append((f"alert {r.get('alert') or r.get('record')}", str(r["expr"])))
            for k in ("summary", "description", "runbook_url"):
                if k not in r.get("annotations", {}) and "alert" in r:
                    fail(f"alert {r['alert']} has no {k} annotation")
except ImportError:
    for i, m in enumerate(re.finditer(r"expr:\s*(\|[^\n]*\n((?:\s{10,}.*\n)+)|.*)", rules_text)):
        exprs.append((f"alert expr #{i + 1}", m.group(2) or m.group(1)))

# --- 5. every series and label used exists -------------------------------------------------
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset"}
checked = 0
for where, expr in exprs:
    used = set()
    for m in re.finditer(r"\b(carbonshift_[a-zA-Z0-9_]+)\s*(\{([^}]*)\})?", expr):
        name, selector = m.group(1), m.group(3)
        checked += 1
        if name not in series:
            fail(f"{where} queries {name}, which the operator does not export")
            continue
        family, labels = series[name]
        used |= labels
        for lab in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector or ""):
            if lab not in labels and lab not in TARGET_LABELS:
                fail(f"{where} selects {name} on label {lab!r}; {family} has {sorted(labels)}")
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for lab in [x.strip() for x in m.group(1).split(",") if x.strip()]:
            if lab not in used and lab not in TARGET_LABELS:
                fail(f"{where} aggregates by {lab!r}, a label none of its metrics has ({sorted(used)})")
    for ident in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", expr):
        if not ident.startswith("carbonshift_") and ident not in ("up",) and ident not in PROMQL_WORDS:
            fail(f"{where} queries {ident}, which is not a carbonshift metric")

print(f"checked {checked} metric references in {len(exprs)} expressions")
if failures:
    print(f"FAIL: {len(failures)} problem(s) in the dashboard or alerts")
    sys.exit(1)
print("PASS: dashboard and alerts query only metrics and labels the operator exports")
PY
