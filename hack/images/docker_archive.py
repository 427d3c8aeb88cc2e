#!/usr/bin/env python3
"""Write a docker-archive tarball (what `docker save` writes, `ctr images import` reads).

Each --layer is a root-filesystem directory that becomes one uncompressed layer tar; the
image config is the JSON object in --config (the "config" part of an image config: User,
Env, Entrypoint, Cmd, ExposedPorts, Labels, WorkingDir), where "${NAME}" in any string is
replaced by the value of --arg NAME=VALUE (the Dockerfile ARG idea). The script adds
architecture, os, created, history and rootfs.diff_ids.

The output is a pure function of its inputs, so the image ID (the config's sha256) only
changes when the contents do: entries are sorted, every mtime is --created (default
SOURCE_DATE_EPOCH, else 0), owners are the numeric uid/gid of the files in the directory
(names are left empty) and hard links within a layer are stored once.

    docker_archive.py --output pause.tar --tag localhost/carbonshift/pause:3.10 \
        --config pause.json --layer rootfs [--created-by "what made the layer"] ...

Prints the image ID (sha256:...) on stdout. Python 3 standard library only.
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import tempfile

CHUNK = 1 << 20


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="the .tar to write (replaced atomically)")
    p.add_argument("--tag", action="append", default=[], required=True,
                   help="a RepoTags entry, e.g. localhost/carbonshift/pause:3.10 (repeatable)")
    p.add_argument("--config", required=True, help="JSON file with the image's container config")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="replace ${NAME} in the config's strings (repeatable)")
    p.add_argument("--layer", action="append", default=[], required=True, metavar="DIR",
                   help="a root-filesystem directory, one layer each, bottom first (repeatable)")
    p.add_argument("--created-by", action="append", default=[], metavar="TEXT",
                   help="history text of the layer at the same position (repeatable)")
    p.add_argument("--created", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                   help="timestamp of the image and of every file (default SOURCE_DATE_EPOCH or 0)")
    p.add_argument("--architecture", default="amd64")
    p.add_argument("--os", default="linux")
    args = p.parse_args(argv)
    if len(args.created_by) > len(args.layer):
        p.error("more --created-by than --layer")
    return args


def substitute(value, values):
    """Replaces ${NAME} in every string of a JSON value; an unknown NAME is an error."""
    if isinstance(value, str):
        def one(m):
            if m.group(1) not in values:
                raise SystemExit(f"docker_archive.py: ${{{m.group(1)}}} in the config has no --arg")
            return values[m.group(1)]
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {substitute(k, values): substitute(v, values) for k, v in value.items()}
    return value


def walk(root):
    """Paths under root relative to it, sorted; a parent always sorts before its children."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes what goes through it."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()

    def writable(self):
        return True

    def write(self, b):
        self.sha.update(b)
        return self.f.write(b)


def write_layer(root, out, mtime):
    """Writes root's tree as a tar to the binary file out; returns the tar's sha256 hex."""
    hashing = HashingWriter(out)
    seen_inodes = {}
    with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in walk(root):
            path = os.path.join(root, rel)
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = mtime
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[key]
                    tar.addfile(info)
                    continue
                seen_inodes[key] = rel
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                raise SystemExit(f"docker_archive.py: cannot store {path} (a socket?) in a layer")
    return hashing.sha.hexdigest()


def add_bytes(tar, name, data, mtime):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name, mtime):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    tar.addfile(info)


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv):
    args = parse_args(argv)
    values = {}
    for a in args.arg:
        name, sep, value = a.partition("=")
        if not sep:
            raise SystemExit(f"docker_archive.py: --arg {a!r} is not NAME=VALUE")
        values[name] = value
    with open(args.config, encoding="utf-8") as f:
        container_config = substitute(json.load(f), values)
    for d in args.layer:
        if not os.path.isdir(d):
            raise SystemExit(f"docker_archive.py: layer directory {d} does not exist")

    out_dir = os.path.dirname(os.path.abspath(args.output))
    created = rfc3339(args.created)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".docker-archive.") as tmp:
        diff_ids, layer_files = [], []
        for i, d in enumerate(args.layer):
            path = os.path.join(tmp, f"layer{i}.tar")
            with open(path, "wb") as f:
                diff_ids.append(write_layer(d, f, args.created))
            layer_files.append(path)

        history = []
        for i in range(len(args.layer)):
            entry = {"created": created}
            if i < len(args.created_by):
                entry["created_by"] = args.created_by[i]
            history.append(entry)
        config = {
            "architecture": args.architecture,
            "os": args.os,
            "created": created,
            "config": container_config,
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{h}" for h in diff_ids]},
        }
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        image_id = hashlib.sha256(config_bytes).hexdigest()
        config_name = f"{image_id}.json"
        layer_names = [f"{h}/layer.tar" for h in diff_ids]
        manifest = [{"Config": config_name, "RepoTags": args.tag, "Layers": layer_names}]
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

        partial = os.path.join(tmp, "image.tar")
        with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entries = {config_name: ("bytes", config_bytes), "manifest.json": ("bytes", manifest_bytes)}
            for h, path in zip(diff_ids, layer_files):
                entries[f"{h}"] = ("dir", None)
                entries[f"{h}/layer.tar"] = ("file", path)
            for name in sorted(entries):
                kind, what = entries[name]
                if kind == "bytes":
                    add_bytes(tar, name, what, args.created)
                elif kind == "dir":
                    add_dir(tar, name, args.created)
                else:
                    info = tarfile.TarInfo(name)
                    info.size = os.path.getsize(what)
                    info.mode = 0o644
                    info.mtime = args.created
                    with open(what, "rb") as f:
                        tar.addfile(info, f)
        os.chmod(partial, 0o644)
        os.replace(partial, args.output)
    print(f"sha256:{image_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
