#!/usr/bin/env python3
"""Render a controller's webhook configurations for a webhook server on the host.

hack/cluster.sh runs Kueue (and JobSet) as host processes, not as pods behind a Service, so
their webhook configurations must call a URL. This reads the module's own
config/components/webhook/manifests.yaml, applies the patches its kustomization.yaml lists
(strategic-merge patches of webhooks by name, and JSON 6902 patches: what Kueue's and
JobSet's use), and replaces each webhook's clientConfig.service with

    url: <--url-base><service.path>
    caBundle: <base64 of --ca-file>

It prints the Mutating/ValidatingWebhookConfigurations as one YAML stream for
`kubectl apply --server-side -f -`.

--name-prefix is put before each configuration's name (kustomize's namePrefix in the
projects' config/default does the same: both name theirs "mutating-webhook-configuration").
--serve GROUP/RESOURCE (repeatable; RESOURCE may be "*") keeps only the webhooks with a
rule for one of them: a controller answers the webhooks of a job framework it does not
manage with a no-op, and leaving those out means that the pods, Deployments and
StatefulSets of the rest of the cluster never wait for it. Without --serve every webhook
is kept.
"""

import argparse
import base64
import copy
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("render-webhooks.py needs PyYAML: pip install pyyaml")

KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def merge(base, patch):
    """Strategic merge as kustomize does it for webhook configurations: maps merge
    recursively, the webhooks list merges by name, other lists are replaced."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        if key == "webhooks" and isinstance(value, list):
            out[key] = merge_webhooks(base.get(key, []), value)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_webhooks(base, patch):
    by_name = {w["name"]: i for i, w in enumerate(base)}
    out = list(base)
    for w in patch:
        if w["name"] not in by_name:
            sys.exit(f"patch names webhook {w['name']!r}, which the manifests do not have")
        i = by_name[w["name"]]
        out[i] = merge(out[i], w)
    return out


def pointer(doc, path):
    """The parent container and last key of a JSON pointer such as /webhooks/1."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    return node, (int(last) if isinstance(node, list) and last != "-" else last)


def json_patch(doc, ops):
    for op in ops:
        parent, key = pointer(doc, op["path"])
        kind = op["op"]
        if kind == "replace":
            parent[key] = copy.deepcopy(op["value"])
        elif kind == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if key == "-" else key, copy.deepcopy(op["value"]))
            else:
                parent[key] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[key]
        else:
            sys.exit(f"unsupported JSON patch op {kind!r} in {op}")


def targets(docs, target):
    return [
        d
        for d in docs
        if d.get("kind") == target.get("kind", d.get("kind"))
        and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
    ]


def apply_kustomization(docs, path):
    with open(path, encoding="utf-8") as f:
        kust = yaml.safe_load(f) or {}
    here = os.path.dirname(path)
    for entry in kust.get("patches", []):
        if "patch" in entry:
            content = yaml.safe_load(entry["patch"])
        else:
            with open(os.path.join(here, entry["path"]), encoding="utf-8") as f:
                content = yaml.safe_load(f)
        if isinstance(content, list):
            matched = targets(docs, entry.get("target", {}))
            if not matched:
                sys.exit(f"patch {entry} matches no configuration")
            for doc in matched:
                json_patch(doc, content)
        else:
            matched = targets(docs, {"kind": content["kind"], "name": content["metadata"]["name"]})
            if len(matched) != 1:
                sys.exit(f"patch of {content['metadata']['name']} matches {len(matched)} configurations")
            i = docs.index(matched[0])
            docs[i] = merge(docs[i], content)
    return docs


def serves(webhook, wanted):
    if not wanted:
        return True
    for rule in webhook.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                if f"{group}/*" in wanted or f"{group}/{resource}" in wanted:
                    return True
    return False


def render(docs, url_base, ca_bundle, prefix, wanted):
    out = []
    for doc in docs:
        if doc.get("kind") not in KINDS:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"] = {"name": prefix + doc["metadata"]["name"]}
        kept = []
        for w in doc.get("webhooks", []):
            if not serves(w, wanted):
                continue
            service = w.get("clientConfig", {}).get("service", {})
            if "path" not in service:
                sys.exit(f"webhook {w['name']} has no clientConfig.service.path")
            w["clientConfig"] = {"url": url_base.rstrip("/") + service["path"], "caBundle": ca_bundle}
            kept.append(w)
        if kept:
            doc["webhooks"] = kept
            out.append(doc)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifests", required=True, help="config/components/webhook/manifests.yaml")
    p.add_argument("--kustomization", help="its kustomization.yaml, whose patches are applied")
    p.add_argument("--url-base", required=True, help="e.g. https://127.0.0.1:26461")
    p.add_argument("--ca-file", required=True, help="PEM CA that signed the serving certificate")
    p.add_argument("--name-prefix", default="", help="put before each configuration's name")
    p.add_argument("--serve", action="append", default=[], help="GROUP/RESOURCE to keep (repeatable)")
    args = p.parse_args()

    docs = load_all(args.manifests)
    if args.kustomization:
        docs = apply_kustomization(docs, args.kustomization)
    with open(args.ca_file, "rb") as f:
        ca_bundle = base64.b64encode(f.read()).decode("ascii")
    out = render(docs, args.url_base, ca_bundle, args.name_prefix, set(args.serve))
    if not out:
        sys.exit("no webhook left to render")
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
