//! The images `hack/images.sh` builds for the local cluster's containerd node are what they
//! stand for: the operator image has the user, entrypoint, cmd, exposed ports and labels of
//! the final stage of `Dockerfile` and carries the binary unchanged (mode 0755, root-owned);
//! the python image has `python` for `examples/`. Nothing is run from the images.
//!
//! Runs only with `CARBONSHIFT_E2E=1`, and not with `CARBONSHIFT_REAL_NODE=0`. It needs
//! root (the images hold files owned by uid 0, 1000 and 65532), apt, and on a cold deb
//! cache a package mirror:
//! ```text
//! CARBONSHIFT_E2E=1 cargo test --test image_build
//! ```
//! The images go to a fresh directory under `target/tmp`; downloaded `.deb`s are shared
//! with `hack/images.sh build` (`CARBONSHIFT_IMAGES_DEB_CACHE`, default `.cache/images/debs`).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const E2E_ENV: &str = "CARBONSHIFT_E2E";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BINARY_IN_IMAGE: &str = "usr/local/bin/carbonshift";
/// What overrides the Dockerfile's ARG VERSION and REVISION in `hack/images.sh`.
const ARG_ENV: [&str; 2] = ["CARBONSHIFT_IMAGE_VERSION", "CARBONSHIFT_IMAGE_REVISION"];

fn enabled() -> bool {
    if std::env::var(E2E_ENV).as_deref() != Ok("1") {
        println!("skipping: {E2E_ENV} not set");
        return false;
    }
    // The images exist for the local cluster's real node; without it (no root) skip too.
    if std::env::var("CARBONSHIFT_REAL_NODE").as_deref() == Ok("0") {
        println!("skipping: CARBONSHIFT_REAL_NODE=0");
        return false;
    }
    true
}

fn must<T, E: Display>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: {err}"),
    }
}

/// Runs a command to completion; panics with its stderr unless it succeeds.
fn run(what: &str, cmd: &mut Command) -> Vec<u8> {
    let out = must(what, cmd.stderr(Stdio::piped()).output());
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `tar -xOf ARCHIVE MEMBER`: one member's bytes.
fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    run(
        &format!("tar -xOf {} {member}", archive.display()),
        Command::new("tar").arg("-xOf").arg(archive).arg(member),
    )
}

/// One entry of `tar -tv --numeric-owner`: permissions, owner, name.
struct Entry {
    perms: String,
    owner: String,
}

/// The entries of a layer tarball by path (`tar -tvf`, so symlinks read `name -> target`).
fn list_layer(layer: &Path) -> BTreeMap<String, Entry> {
    let out = run(
        &format!("tar -tvf {}", layer.display()),
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(layer),
    );
    let mut entries = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        // -rwxr-xr-x 0/0 123 1970-01-01 00:00 usr/local/bin/carbonshift
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            let trimmed = rest.trim_start();
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            fields.push(&trimmed[..end]);
            rest = &trimmed[end..];
        }
        let name = rest.trim_start();
        let name = name.split_once(" -> ").map_or(name, |(n, _)| n);
        entries.insert(
            name.trim_end_matches('/').to_owned(),
            Entry {
                perms: fields[0].to_owned(),
                owner: fields[1].to_owned(),
            },
        );
    }
    entries
}

/// A built image: its config JSON and its layer tarballs, extracted next to it.
struct Image {
    config: Value,
    layers: Vec<PathBuf>,
}

fn read_image(archive: &Path, scratch: &Path) -> Image {
    let manifest: Value = must(
        "manifest.json",
        serde_json::from_slice(&tar_member(archive, "manifest.json")),
    );
    let entry = &manifest[0];
    let config_name = entry["Config"].as_str().unwrap_or_default();
    let config: Value = must(
        config_name,
        serde_json::from_slice(&tar_member(archive, config_name)),
    );
    let layer_names: Vec<&str> = entry["Layers"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !layer_names.is_empty(),
        "{}: manifest.json names no layers: {manifest}",
        archive.display()
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(layer_names.len()),
        "{}: one rootfs.diff_ids entry per layer",
        archive.display()
    );
    std::fs::create_dir_all(scratch).ok();
    run(
        "extract the layers",
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(scratch)
            .args(&layer_names),
    );
    Image {
        config,
        layers: layer_names.iter().map(|n| scratch.join(n)).collect(),
    }
}

/// A Dockerfile instruction of the final stage, with the line it starts on.
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// The final stage's instructions: after the last `FROM`, comments dropped, `\` continuations
/// joined.
fn final_stage(dockerfile: &str) -> Vec<Instruction> {
    let mut all: Vec<Instruction> = Vec::new();
    let mut pending: Option<Instruction> = None;
    for (i, raw) in dockerfile.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (text, continues) = match trimmed.strip_suffix('\\') {
            Some(text) => (text.trim_end(), true),
            None => (trimmed, false),
        };
        let mut current = match pending.take() {
            Some(mut p) => {
                p.args.push(' ');
                p.args.push_str(text);
                p
            }
            None => {
                let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
                Instruction {
                    line: i + 1,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                }
            }
        };
        if continues {
            pending = Some(current);
        } else {
            current.args = current.args.trim().to_owned();
            all.push(current);
        }
    }
    all.extend(pending);
    let last_from = all.iter().rposition(|i| i.keyword == "FROM").unwrap_or(0);
    all.split_off(last_from)
}

/// Replaces `${NAME}` and `$NAME` with the stage's ARG values.
fn expand(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        let (name, tail) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.split_once('}') {
                Some((name, tail)) => (name, tail),
                None => (braced, ""),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push_str(args.get(name).map_or("", String::as_str));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Splits `LABEL` arguments into key=value pairs, honouring double quotes and `\"`.
fn label_pairs(args: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The physical line (number and text) of a `LABEL` instruction starting at `start` that sets
/// `key`, so a message can point at the continuation line to fix.
fn label_line(dockerfile: &str, start: usize, key: &str) -> (usize, String) {
    let mut lines = dockerfile.lines().enumerate().skip(start - 1);
    let mut first = None;
    for (i, line) in lines.by_ref() {
        let trimmed = line.trim();
        first.get_or_insert((i + 1, trimmed.to_owned()));
        if trimmed.contains(&format!("{key}=")) {
            return (i + 1, trimmed.to_owned());
        }
        if !trimmed.ends_with('\\') {
            break;
        }
    }
    first.unwrap_or((start, String::new()))
}

/// What the final stage of the Dockerfile says about the image config, each value with the
/// line that says it.
#[derive(Default)]
struct Expected {
    user: Option<(usize, String, Value)>,
    entrypoint: Option<(usize, String, Value)>,
    cmd: Option<(usize, String, Value)>,
    ports: Vec<(usize, String, String)>,
    labels: BTreeMap<String, (usize, String, String)>,
}

fn expected_from_dockerfile(text: &str) -> Expected {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut expected = Expected::default();
    for ins in final_stage(text) {
        let line_text = format!("{} {}", ins.keyword, ins.args);
        let exec_form = |what: &str| -> Value {
            match serde_json::from_str::<Value>(&ins.args) {
                Ok(v @ Value::Array(_)) => v,
                _ => panic!(
                    "Dockerfile:{}: {what} is not in exec form (a JSON array): `{line_text}`",
                    ins.line
                ),
            }
        };
        match ins.keyword.as_str() {
            "ARG" => {
                let (name, default) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
                // The defaults: the build runs without the variables that override them.
                args.insert(name.to_owned(), default.trim_matches('"').to_owned());
            }
            "LABEL" => {
                for (k, v) in label_pairs(&ins.args) {
                    let (line, line_text) = label_line(text, ins.line, &k);
                    expected
                        .labels
                        .insert(k, (line, line_text, expand(&v, &args)));
                }
            }
            "USER" => {
                let user = Value::String(expand(&ins.args, &args));
                expected.user = Some((ins.line, line_text, user));
            }
            "ENTRYPOINT" => {
                let v = exec_form("ENTRYPOINT");
                expected.entrypoint = Some((ins.line, line_text, v));
            }
            "CMD" => {
                let v = exec_form("CMD");
                expected.cmd = Some((ins.line, line_text, v));
            }
            "EXPOSE" => {
                for port in expand(&ins.args, &args).split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_owned()
                    } else {
                        format!("{port}/tcp")
                    };
                    expected.ports.push((ins.line, line_text.clone(), port));
                }
            }
            _ => {}
        }
    }
    expected
}

/// Compares the operator image's config with the Dockerfile; one message per mismatch.
fn config_mismatches(expected: &Expected, config: &Value) -> Vec<String> {
    let c = &config["config"];
    let mut problems = Vec::new();
    let mut check = |field: &str, want: &Option<(usize, String, Value)>| {
        let got = c.get(field).cloned().unwrap_or(Value::Null);
        match want {
            Some((line, text, want)) if *want != got => problems.push(format!(
                "{field}: Dockerfile:{line} `{text}` says {want}, the image has {got} \
                 (fix that line or hack/images/operator.json)"
            )),
            None if !got.is_null() => problems.push(format!(
                "{field}: the Dockerfile's final stage sets none, the image has {got} \
                 (add it to the final stage or drop it from hack/images/operator.json)"
            )),
            _ => {}
        }
    };
    check("User", &expected.user);
    check("Entrypoint", &expected.entrypoint);
    check("Cmd", &expected.cmd);

    let got_ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for (line, text, port) in &expected.ports {
        if !got_ports.contains(port) {
            problems.push(format!(
                "ExposedPorts: Dockerfile:{line} `{text}` exposes {port}, the image exposes \
                 {got_ports:?} (fix that line or hack/images/operator.json)"
            ));
        }
    }
    for port in &got_ports {
        if !expected.ports.iter().any(|(_, _, p)| p == port) {
            problems.push(format!(
                "ExposedPorts: the image exposes {port}, no EXPOSE line of the Dockerfile's \
                 final stage does (add one or drop it from hack/images/operator.json)"
            ));
        }
    }

    let empty = serde_json::Map::new();
    let got_labels = c["Labels"].as_object().unwrap_or(&empty);
    for (key, (line, text, want)) in &expected.labels {
        match got_labels.get(key) {
            Some(Value::String(got)) if got == want => {}
            got => problems.push(format!(
                "label {key}: Dockerfile:{line} `{text}` says {want:?}, the image has {} \
                 (fix that line or hack/images/operator.json)",
                got.map_or_else(|| "no such label".to_owned(), Value::to_string)
            )),
        }
    }
    for key in got_labels.keys() {
        if !expected.labels.contains_key(key) {
            problems.push(format!(
                "label {key}: the image has it, the LABEL instruction of the Dockerfile's final \
                 stage does not (add it there or drop it from hack/images/operator.json)"
            ));
        }
    }
    problems
}

/// True when both readers yield the same bytes.
fn same_bytes(mut a: impl Read, mut b: impl Read) -> bool {
    let (mut buf_a, mut buf_b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = must("read", a.read(&mut buf_a));
        if n == 0 {
            return must("read", b.read(&mut buf_b[..1])) == 0;
        }
        if b.read_exact(&mut buf_b[..n]).is_err() || buf_a[..n] != buf_b[..n] {
            return false;
        }
    }
}

/// The file at `member` in `layer` has the bytes of the file `want`.
fn layer_file_equals(layer: &Path, member: &str, want: &Path) -> bool {
    let mut child = must(
        "spawn tar",
        Command::new("tar")
            .arg("-xOf")
            .arg(layer)
            .arg(member)
            .stdout(Stdio::piped())
            .spawn(),
    );
    let Some(stdout) = child.stdout.take() else {
        panic!("tar -xOf has no stdout");
    };
    let want = BufReader::new(must("open the binary", File::open(want)));
    let equal = same_bytes(BufReader::new(stdout), want);
    let status = must("wait for tar", child.wait());
    equal && status.success()
}

fn deb_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARBONSHIFT_IMAGES_DEB_CACHE") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("CARBONSHIFT_CACHE_DIR")
        .map_or_else(|| Path::new(ROOT).join(".cache"), PathBuf::from);
    cache.join("images/debs")
}

/// `hack/images.sh build NAME...` into `cache`; returns the tarballs it printed.
fn build_images(cache: &Path, binary: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut cmd = Command::new(Path::new(ROOT).join("hack/images.sh"));
    cmd.arg("build")
        .args(names)
        .env("CARBONSHIFT_CACHE_DIR", cache)
        .env("CARBONSHIFT_IMAGES_DEB_CACHE", deb_cache())
        .env("CARBONSHIFT_OPERATOR_BINARY", binary)
        .env_remove("SOURCE_DATE_EPOCH");
    // The labels are compared with the Dockerfile's ARG defaults.
    for var in ARG_ENV {
        cmd.env_remove(var);
    }
    let out = run("hack/images.sh build", &mut cmd);
    String::from_utf8_lossy(&out)
        .lines()
        .map(PathBuf::from)
        .collect()
}

#[test]
fn images_match_the_dockerfile_and_the_examples() {
    if !enabled() {
        return;
    }
    let tmp_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    must("create target/tmp", std::fs::create_dir_all(tmp_root));
    let tmp = must(
        "temp dir under target/tmp",
        tempfile::Builder::new()
            .prefix("image-build.")
            .tempdir_in(tmp_root),
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_carbonshift"));
    let cache = tmp.path().join("cache");
    let tarballs = build_images(&cache, binary, &["operator", "python"]);
    assert_eq!(
        tarballs,
        vec![
            cache.join("images/operator.tar"),
            cache.join("images/python.tar")
        ],
        "hack/images.sh build prints one tarball path per image"
    );

    // operator: the Dockerfile's final stage
    let operator = read_image(&tarballs[0], &tmp.path().join("operator"));
    let dockerfile = must(
        "read Dockerfile",
        std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")),
    );
    let expected = expected_from_dockerfile(&dockerfile);
    assert!(
        expected.user.is_some() && expected.entrypoint.is_some() && !expected.labels.is_empty(),
        "the Dockerfile parser found no USER, ENTRYPOINT or LABEL in the final stage"
    );
    let mut problems = config_mismatches(&expected, &operator.config);

    let top = operator.layers.iter().rev().find_map(|layer| {
        list_layer(layer)
            .remove(BINARY_IN_IMAGE)
            .map(|entry| (layer, entry))
    });
    let copy_line = final_stage(&dockerfile)
        .into_iter()
        .find(|i| i.keyword == "COPY" && i.args.contains("/usr/local/bin/carbonshift"))
        .map_or_else(
            || "the COPY of the binary".to_owned(),
            |i| format!("Dockerfile:{} `COPY {}`", i.line, i.args),
        );
    match top {
        None => problems.push(format!(
            "{BINARY_IN_IMAGE}: in no layer of the image ({copy_line} puts it there)"
        )),
        Some((layer, entry)) => {
            if entry.perms != "-rwxr-xr-x" || entry.owner != "0/0" {
                problems.push(format!(
                    "{BINARY_IN_IMAGE}: {} {} in the image, want -rwxr-xr-x 0/0 as \
                     {copy_line} of `install -D -m 0755` gives",
                    entry.perms, entry.owner
                ));
            }
            if !layer_file_equals(layer, BINARY_IN_IMAGE, binary) {
                problems.push(format!(
                    "{BINARY_IN_IMAGE}: differs from {} ({copy_line})",
                    binary.display()
                ));
            }
        }
    }

    // python: what examples/ run (`python /app/train.py ...`)
    let python = read_image(&tarballs[1], &tmp.path().join("python"));
    let mut files = BTreeMap::new();
    for layer in &python.layers {
        files.extend(list_layer(layer));
    }
    for path in ["usr/bin/python", "usr/bin/python3", "usr/bin/python3.11"] {
        if !files.contains_key(path) {
            problems.push(format!(
                "python image: no {path} in its layers (hack/images.sh PYTHON_* packages)"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "the images disagree with what they stand for:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn dockerfile_parser_reads_continuations_and_arg_defaults() {
    let text = "FROM a AS build\nLABEL x=\"build\"\n# comment\nFROM b\nARG V=dev\n\
                LABEL one=\"1\" \\\n      two=\"v${V}\"\nUSER 1:2\nEXPOSE 80 53/udp\n\
                ENTRYPOINT [\"/e\"]\nCMD [\"run\"]\n";
    let e = expected_from_dockerfile(text);
    let labels: Vec<(&str, usize, &str)> = e
        .labels
        .iter()
        .map(|(k, (line, _, v))| (k.as_str(), *line, v.as_str()))
        .collect();
    assert_eq!(labels, vec![("one", 6, "1"), ("two", 7, "vdev")]);
    assert_eq!(e.user.map(|u| (u.0, u.2)), Some((8, Value::from("1:2"))));
    let ports: Vec<String> = e.ports.into_iter().map(|p| p.2).collect();
    assert_eq!(ports, ["80/tcp", "53/udp"]);
    assert_eq!(e.entrypoint.map(|v| v.2), Some(serde_json::json!(["/e"])));
    assert_eq!(e.cmd.map(|v| v.2), Some(serde_json::json!(["run"])));
}
