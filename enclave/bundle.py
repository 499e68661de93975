"""The offline bundle: everything an air-gapped host needs to install Enclave, with sha256 sums.

`create_bundle()` runs on a connected staging machine, `verify_bundle()` and `install_bundle()`
on the air-gapped side. Create prints the manifest's sha256 and writes it beside the bundle
(DIR.manifest.sha256): carried apart from the media, it is what install checks the bundle against
(required), since whoever can change the files can change the manifest and SHA256SUMS with them.
A bundle folder holds:

    manifest.json       what is in it, and the sha256 and size of every other file
    SHA256SUMS          the same sums in `sha256sum -c` form, for checking with coreutils alone
    README.txt          the commands to verify and install it
    requirements.lock   the lock the wheels satisfy (installed with --no-deps, as `make` does)
    wheels/             one wheel per line of the lock, and Enclave's own wheel
    spacy/              the official en_core_web_sm wheel, its sha256 the one unstructured pins
    models/<kind>/<n>/  optional model folders: llm (vLLM weights), embedding, reranker

Only the standard library and `core.errors` are imported here, so that the air-gapped side can
run this module straight from Enclave's wheel inside the bundle before anything is installed:
`PYTHONPATH=DIR/wheels/enclave-<v>-py3-none-any.whl python3.11 -m enclave.bundle install DIR`.
"""

from __future__ import annotations

import argparse
import ast
import collections
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import BundleError

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
README = "README.txt"
LOCK = "requirements.lock"
WHEELS = "wheels"
SPACY_DIR = "spacy"
MODELS = "models"
MODEL_KINDS = ("llm", "embedding", "reranker")
PROJECT = "enclave"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Files of the bundle that the manifest cannot list with a sum: itself, and what is made from it.
_UNSUMMED = {MANIFEST, SUMS}
# `pip check` findings that are expected, as in the Makefile: unstructured-inference's model
# extras are left out of the lock on purpose.
_PIP_CHECK_EXPECTED = re.compile(
    r"^(No broken requirements found\.|unstructured-inference .* requires (accelerate|opencv-python|timm),)"
)
# What a source checkout holds that never belongs in Enclave's wheel (and can be gigabytes).
_SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "var", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", "tmp"
)

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- hashing -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Every regular file under root as a POSIX relative path, sorted; and anything else (links,
    devices), which a bundle never holds."""
    files: list[str] = []
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink():
                odd.append((base / name).relative_to(root).as_posix())
                dirnames.remove(name)
        for name in filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            (files if path.is_file() and not path.is_symlink() else odd).append(rel)
    return sorted(files), sorted(odd)


# -- the spaCy model unstructured pins -----------------------------------------------------------


@dataclass(frozen=True)
class SpacyPin:
    """The spaCy model wheel that the installed unstructured would download, and its sha256."""

    name: str
    version: str
    sha256: str
    url: str
    pinned_by: str  # "unstructured 0.27.35 (unstructured/nlp/tokenize.py)"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-py3-none-any.whl"


def _tokenize_source() -> tuple[Path, str]:
    spec = importlib.util.find_spec("unstructured")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise BundleError(
            "unstructured is not installed here: run `enclave bundle create` from Enclave's venv"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "nlp" / "tokenize.py"
    if not path.is_file():
        raise BundleError(f"{path} is missing: this unstructured no longer pins its spaCy model there")
    return path, importlib.metadata.version("unstructured")


def spacy_pin() -> SpacyPin:
    """Read the spaCy model's name, version, URL and sha256 from unstructured's own source.

    Read, not imported: importing unstructured.nlp.tokenize loads spaCy, and the values are plain
    constants (`_SPACY_MODEL_NAME`, `_VERSION`, `_URL`, `_SHA256`) in unstructured 0.27.
    """
    path, version = _tokenize_source()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    values: dict[str, str] = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id.startswith("_SPACY_MODEL_") and value is not None:
            text = _string_value(value, values)
            if text is not None:
                values[target.id] = text
    wanted = ("_SPACY_MODEL_NAME", "_SPACY_MODEL_VERSION", "_SPACY_MODEL_URL", "_SPACY_MODEL_SHA256")
    missing = [name for name in wanted if name not in values]
    if missing or not re.fullmatch(r"[0-9a-f]{64}", values.get("_SPACY_MODEL_SHA256", "")):
        raise BundleError(
            f"unstructured {version} no longer pins its spaCy model as enclave/bundle.py expects "
            f"({', '.join(missing) or '_SPACY_MODEL_SHA256 is not a sha256'} in {path}); update "
            "enclave/bundle.py, or create the bundle with --no-spacy-model"
        )
    return SpacyPin(
        name=values["_SPACY_MODEL_NAME"],
        version=values["_SPACY_MODEL_VERSION"],
        sha256=values["_SPACY_MODEL_SHA256"],
        url=values["_SPACY_MODEL_URL"],
        pinned_by=f"unstructured {version} (unstructured/nlp/tokenize.py)",
    )


def _string_value(node: ast.expr, names: dict[str, str]) -> str | None:
    """A string constant, or an f-string made of constants and names already read."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                parts.append(part.value)
            elif (
                isinstance(part, ast.FormattedValue)
                and isinstance(part.value, ast.Name)
                and part.value.id in names
            ):
                parts.append(names[part.value.id])
            else:
                return None
        return "".join(parts)
    return None


def _fetch_spacy_wheel(pin: SpacyPin, source: Path | None, dest: Path, say: Say) -> None:
    """Copy (source) or download (pin.url) the wheel to dest, refusing any other sha256."""
    if source is not None:
        if not source.is_file():
            raise BundleError(f"--spacy-wheel {source} is not a file")
        got = sha256_file(source)
        origin = str(source)
    else:
        say(f"downloading {pin.url}")
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(pin.url, timeout=120) as resp, tmp.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BundleError(
                f"could not download the spaCy model from {pin.url} ({exc}); fetch that file another "
                "way and pass it with --spacy-wheel FILE (its sha256 is checked all the same)"
            ) from exc
        got = sha256_file(tmp)
        origin = pin.url
        source = tmp
    if got != pin.sha256:
        if source.name.endswith(".part"):
            source.unlink()
        raise BundleError(
            f"the spaCy model {origin} has sha256 {got}, but {pin.pinned_by} pins {pin.sha256} for "
            f"{pin.filename}: refused. Use the official wheel from {pin.url}"
        )
    if source.name.endswith(".part"):
        os.replace(source, dest)
    else:
        shutil.copyfile(source, dest)


# -- the lock ------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> exact version for every line of a lock file; anything but `name==version`
    (an option line, a range, a URL) is refused, since the bundle must hold exactly one wheel each."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if match is None:
            raise BundleError(f"{path} line {number}: '{line}' is not an exact 'name==version' pin")
        pins[_canonical(match.group(1))] = match.group(3)
    if not pins:
        raise BundleError(f"{path} pins nothing")
    return pins


def _wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise BundleError(f"{filename} is not a wheel file name")
    return _canonical(parts[0]), parts[1]


def _same_version(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        from packaging.version import Version  # create runs in Enclave's venv, which has it

        return Version(a) == Version(b)
    except Exception:
        return False


# -- subprocesses --------------------------------------------------------------------------------


def _hermetic_env() -> dict[str, str]:
    """pip's environment without the operator's pip settings: no config file, no PIP_* variables,
    so that only the sources named on the command line are used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(cmd: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run cmd, logging each line of its output (shown with `enclave -v`); BundleError with the
    last lines of it on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=25)
    with subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log.info("%s", line)
    if proc.returncode != 0:
        raise BundleError(
            f"{what} failed (exit {proc.returncode}): " + " | ".join(t for t in tail if t.strip())
        )


# -- create --------------------------------------------------------------------------------------


def default_source() -> Path:
    """The checkout this Enclave runs from, when it is one (an editable install)."""
    return Path(__file__).resolve().parents[1]


def manifest_sum_file(bundle: Path) -> Path:
    """Where create writes the manifest's sha256, beside the bundle folder: DIR.manifest.sha256,
    in `sha256sum` form (`cd DIR && sha256sum -c ../DIR.manifest.sha256` checks it)."""
    return bundle.with_name(f"{bundle.name}.manifest.sha256")


@dataclass
class CreateResult:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    manifest_sum_file: Path


def create_bundle(
    dest: Path,
    *,
    source: Path | None = None,
    requirements: Path | None = None,
    wheels_from: Sequence[Path] = (),
    find_links: Sequence[str] = (),
    spacy_wheel: Path | None = None,
    spacy_model: bool = True,
    llm_models: Sequence[Path] = (),
    embedding_model: Path | None = None,
    reranker_model: Path | None = None,
    say: Say = _quiet,
) -> CreateResult:
    """Build a bundle in dest (which must not exist, or be empty).

    Wheels come from the package index as pip is configured here, plus `find_links` (torch's CPU
    build is not on PyPI), or, with `wheels_from`, from those folders only. A source
    distribution is built into a wheel here, so the air-gapped side never builds anything. The
    bundle is assembled beside dest and renamed into place at the end: a failed run leaves nothing.
    """
    source = (source or default_source()).resolve()
    if not (source / "pyproject.toml").is_file():
        raise BundleError(f"{source} is not Enclave's source folder (no pyproject.toml): pass --source")
    requirements = (requirements or source / LOCK).resolve()
    if not requirements.is_file():
        raise BundleError(f"requirements file {requirements} does not exist: pass --requirements")
    pins = read_lock(requirements)
    for folder in wheels_from:
        if not folder.is_dir():
            raise BundleError(f"--wheels-from {folder} is not a folder")
    models = _plan_models(llm_models, embedding_model, reranker_model)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError(f"{dest} already exists and is not empty: give a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)

    pin = spacy_pin() if spacy_model else None
    if pin is not None and "unstructured" in pins:
        installed = importlib.metadata.version("unstructured")
        if not _same_version(installed, pins["unstructured"]):
            raise BundleError(
                f"unstructured {installed} is installed here but {requirements.name} pins "
                f"{pins['unstructured']}: its spaCy pin may differ; create the bundle from a venv "
                "installed from the lock (`make venv`)"
            )

    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    try:
        wheels = work / WHEELS
        wheels.mkdir()
        spacy_entry: dict[str, Any] | None = None
        if pin is not None:  # first: a wrong model wheel should fail before minutes of downloads
            (work / SPACY_DIR).mkdir()
            _fetch_spacy_wheel(pin, spacy_wheel, work / SPACY_DIR / pin.filename, say)
            spacy_entry = {
                "file": f"{SPACY_DIR}/{pin.filename}",
                "name": pin.name,
                "version": pin.version,
                "sha256": pin.sha256,
                "pinned_by": pin.pinned_by,
                "url": pin.url,
            }
            say(f"spaCy model {pin.filename}: sha256 {pin.sha256} as {pin.pinned_by} pins it")
        shutil.copyfile(requirements, work / LOCK)
        _download_wheels(work / LOCK, wheels, wheels_from, find_links, say)
        _check_wheels(pins, wheels)
        project_wheel = _build_project_wheel(source, wheels, say)
        model_entries = []
        for kind, src in models:
            target = work / MODELS / kind / src.name
            say(f"copying {kind} model {src} to {target.relative_to(work)}")
            shutil.copytree(src, target, symlinks=False)  # a Hugging Face snapshot's links become files
            model_entries.append(
                {"kind": kind, "name": src.name, "path": target.relative_to(work).as_posix()}
            )
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "enclave_version": _project_version(project_wheel),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platform": sysconfig.get_platform(),
            "requirements": LOCK,
            "project_wheel": f"{WHEELS}/{project_wheel}",
            "spacy_model": spacy_entry,
            "models": model_entries,
        }
        (work / README).write_text(_readme(manifest), encoding="utf-8")
        say("computing sha256 sums")
        files, odd = _walk(work)
        if odd:
            raise BundleError(f"the bundle holds links or special files: {', '.join(odd)}")
        manifest["files"] = {
            rel: {"sha256": sha256_file(work / rel), "size": (work / rel).stat().st_size} for rel in files
        }
        (work / SUMS).write_text(_sums_text(manifest["files"]), encoding="utf-8")
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        manifest_sha256 = sha256_file(work / MANIFEST)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    sum_file = manifest_sum_file(dest)
    partial_sum = sum_file.with_name(f".{sum_file.name}.partial")
    partial_sum.write_text(f"{manifest_sha256}  {MANIFEST}\n", encoding="utf-8")
    os.replace(partial_sum, sum_file)
    return CreateResult(dest, manifest, manifest_sha256, sum_file)


def _plan_models(
    llm_models: Sequence[Path], embedding_model: Path | None, reranker_model: Path | None
) -> list[tuple[str, Path]]:
    plan = [("llm", p) for p in llm_models]
    plan += [("embedding", embedding_model)] if embedding_model else []
    plan += [("reranker", reranker_model)] if reranker_model else []
    seen: set[tuple[str, str]] = set()
    resolved = []
    for kind, path in plan:
        if not path.is_dir() or not any(path.iterdir()):
            raise BundleError(f"--{kind}-model {path} is not a folder with a model in it")
        key = (kind, path.resolve().name)
        if key in seen:
            raise BundleError(f"two {kind} models are named {key[1]}: rename one folder")
        seen.add(key)
        resolved.append((kind, path.resolve()))
    return resolved


def _download_wheels(
    lock: Path, wheels: Path, wheels_from: Sequence[Path], find_links: Sequence[str], say: Say
) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(wheels), "-r", str(lock)]
    env = None
    if wheels_from:
        cmd.append("--no-index")
        env = _hermetic_env()
        for folder in wheels_from:
            cmd += ["--find-links", str(folder.resolve())]
    for link in find_links:
        cmd += ["--find-links", link]
    say(f"downloading the wheels of {lock.name}")
    try:
        _run(cmd, "pip download", env)
    except BundleError as exc:
        raise BundleError(
            f"{exc}. (torch's CPU build is not on PyPI: pass --find-links with PyTorch's CPU wheel "
            "index, or a folder holding the wheel, if pip could not find it)"
        ) from exc
    for sdist in sorted(p for p in wheels.iterdir() if not p.name.endswith(".whl")):
        say(f"building a wheel from {sdist.name}")
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(sdist)],
            f"building a wheel from {sdist.name}",
            env,
        )
        sdist.unlink()


def _check_wheels(pins: dict[str, str], wheels: Path) -> None:
    found: dict[str, list[str]] = {}
    for wheel in wheels.glob("*.whl"):
        name, version = _wheel_name_version(wheel.name)
        found.setdefault(name, []).append(version)
    wrong = []
    for name, version in pins.items():
        versions = found.get(name, [])
        if not any(_same_version(v, version) for v in versions):
            wrong.append(f"{name}=={version} (found: {', '.join(versions) or 'none'})")
    if wrong:
        raise BundleError("no wheel for " + "; ".join(wrong))


def _build_project_wheel(source: Path, wheels: Path, say: Say) -> str:
    """Enclave's own wheel, built from a clean copy of the source (a stale build/ folder in a
    checkout would otherwise put deleted modules into the wheel)."""
    with tempfile.TemporaryDirectory(prefix="enclave-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=_SOURCE_IGNORE)
        out = Path(tmp) / "dist"
        say("building Enclave's wheel")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(out),
                str(copy),
            ],
            "building Enclave's wheel",
        )
        built = sorted(out.glob(f"{PROJECT}-*.whl"))
        if len(built) != 1:
            raise BundleError(f"building Enclave's wheel gave {[p.name for p in out.iterdir()]}")
        shutil.copyfile(built[0], wheels / built[0].name)
        return built[0].name


def _project_version(wheel: str) -> str:
    return _wheel_name_version(wheel)[1]


def _sums_text(files: dict[str, dict[str, Any]]) -> str:
    return "".join(f"{entry['sha256']}  {rel}\n" for rel, entry in files.items())


def _readme(manifest: dict[str, Any]) -> str:
    wheel = manifest["project_wheel"]
    spacy = manifest["spacy_model"]
    models = manifest["models"]
    lines = [
        f"Enclave {manifest['enclave_version']} offline bundle, made {manifest['created_at']}",
        f"for Python {manifest['python']} on {manifest['platform']}.",
        "",
        "1. Check the sums with coreutils alone (run in this folder), and compare the sha256 of",
        "   manifest.json with the one written down when the bundle was made (SUM below):",
        "     sha256sum --quiet -c SHA256SUMS && sha256sum manifest.json",
        "2. Verify and install with Enclave's own code, run from its wheel in this bundle:",
        f"     PYTHONPATH=$PWD/{wheel} python{manifest['python']} -m enclave.bundle verify . --manifest-sha256 SUM",
        f"     PYTHONPATH=$PWD/{wheel} python{manifest['python']} -m enclave.bundle install . --manifest-sha256 SUM"
        " --venv /opt/enclave/venv" + (" --models-dir /srv/models" if models else ""),
        "   (afterwards the same as `enclave bundle verify|install`).",
        "",
        "spaCy model: "
        + (
            f"{spacy['file']}, sha256 {spacy['sha256']}, as {spacy['pinned_by']} pins it."
            if spacy
            else "not in this bundle (created with --no-spacy-model); Enclave loads the one in the lock."
        ),
    ]
    lines += [f"Model folder ({m['kind']}): {m['path']}" for m in models]
    return "\n".join(lines) + "\n"


# -- verify --------------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    """What differs between a bundle folder and its manifest; empty lists when it is intact."""

    path: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # The manifest as read (once) and hashed for this check: what install then goes by.
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.errors)

    def problems(self) -> list[str]:
        return (
            self.errors
            + [f"missing: {p}" for p in self.missing]
            + [f"changed: {p}" for p in self.mismatched]
            + [f"not in the manifest: {p}" for p in self.extra]
        )


def _read_manifest(bundle: Path) -> tuple[bytes, dict[str, Any]]:
    path = bundle / MANIFEST
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{bundle} is not a bundle: {MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise BundleError(f"{path} is not a format-{FORMAT} bundle manifest")
    return raw, data


def load_manifest(bundle: Path) -> dict[str, Any]:
    return _read_manifest(bundle)[1]


def expected_manifest_sha256(value: str | None) -> str:
    """The manifest's sha256 as given to install, checked for form; None is refused: install goes
    only by a sum that came apart from the media."""
    if value is None:
        raise BundleError(
            "give --manifest-sha256 HEX: the manifest's sha256 that `enclave bundle create` printed "
            "and wrote beside the bundle (DIR.manifest.sha256), carried apart from the media; "
            "a bundle is installed only when its manifest is the one that was made"
        )
    given = value.strip().lower()
    if not _SHA256_HEX.fullmatch(given):
        raise BundleError(f"--manifest-sha256 {value!r} is not a sha256 (64 hex digits)")
    return given


def verify_bundle(bundle: Path, manifest_sha256: str | None = None) -> VerifyResult:
    """Hash every file again and compare with the manifest: missing, changed and extra files; and,
    when it is given, the manifest's own sha256."""
    result = VerifyResult(bundle)
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a folder")
    raw, manifest = _read_manifest(bundle)
    result.manifest, result.manifest_sha256 = manifest, hashlib.sha256(raw).hexdigest()
    if manifest_sha256 is not None and result.manifest_sha256 != expected_manifest_sha256(manifest_sha256):
        result.errors.append(
            f"{MANIFEST} has sha256 {result.manifest_sha256}, not the {manifest_sha256.strip().lower()} given"
        )
    expected: dict[str, dict[str, Any]] = manifest["files"]
    present, odd = _walk(bundle)
    result.errors += [f"a link or special file: {p}" for p in odd]
    on_disk = set(present) - _UNSUMMED
    for rel, entry in expected.items():
        path = bundle / rel
        if rel not in on_disk:
            result.missing.append(rel)
            continue
        result.checked += 1
        if path.stat().st_size != entry.get("size") or sha256_file(path) != entry.get("sha256"):
            result.mismatched.append(rel)
    result.extra = sorted(on_disk - set(expected))
    sums = bundle / SUMS
    if not sums.is_file():
        result.missing.append(SUMS)
    elif sums.read_text(encoding="utf-8") != _sums_text(expected):
        result.mismatched.append(f"{SUMS} (disagrees with {MANIFEST})")
    return result


# -- install -------------------------------------------------------------------------------------


@dataclass
class InstallResult:
    venv: Path
    python: str
    spacy_model: str | None
    models: list[tuple[str, Path]]  # (kind, where it now is)

    def settings_lines(self) -> list[str]:
        """The settings that point Enclave (and vLLM) at the model folders that were placed."""
        lines = []
        for kind, path in self.models:
            if kind == "embedding":
                lines.append(f"ENCLAVE_EMBEDDING__MODEL_PATH={path}")
            elif kind == "reranker":
                lines.append(f"ENCLAVE_RETRIEVAL__RERANKER_PATH={path}")
            else:
                lines.append(f"VLLM_MODEL_DIR={path}  (and ENCLAVE_LLM__TOKENIZER_PATH={path})")
        return lines


def _python_of(python: Path | str) -> tuple[str, str]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, sysconfig; print(f'{sys.version_info[0]}.{sys.version_info[1]}'); print(sysconfig.get_platform())",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BundleError(f"{python} does not run: {out.stderr.strip()}")
    version, platform = out.stdout.split()
    return version, platform


def install_bundle(
    bundle: Path,
    venv: Path,
    *,
    manifest_sha256: str | None,
    models_dir: Path | None = None,
    python: str | None = None,
    compile_bytecode: bool = True,
    say: Say = _quiet,
) -> InstallResult:
    """Verify the bundle, then install it into venv (created when missing) with pip, offline.

    The manifest must have the sha256 given (required: see the module docstring), or nothing is
    done. Every wheel of the lock, Enclave's wheel and the spaCy model are installed with --no-index
    and --no-deps, as `make` installs the lock. Model folders are copied to models_dir/<name>; one
    already there with the same files is left as it is, one with other files is an error.
    """
    bundle, venv = bundle.absolute(), venv.absolute()
    models_dir = models_dir.absolute() if models_dir else None
    expected = expected_manifest_sha256(manifest_sha256)
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a folder")
    got = sha256_file(bundle / MANIFEST) if (bundle / MANIFEST).is_file() else None
    if got != expected:
        raise BundleError(
            f"{bundle / MANIFEST} has sha256 {got or '(no such file)'}, but the sha256 given is {expected}: "
            "this is not the bundle that was made (or the sum was mistyped); nothing was installed"
        )
    result = verify_bundle(bundle, expected)
    if not result.ok:
        raise BundleError(f"bundle {bundle} does not verify: " + "; ".join(result.problems()))
    manifest = result.manifest  # the bytes that were hashed, not a second read
    if manifest["models"] and models_dir is None:
        raise BundleError("the bundle holds model folders: say where they go with --models-dir")
    venv_python = venv / "bin" / "python"
    if not venv_python.exists():
        if venv.exists() and any(venv.iterdir()):
            raise BundleError(f"{venv} exists but is not a venv (no bin/python): give another --venv")
        base = python or sys.executable
        _check_python(base, manifest)
        say(f"creating the venv {venv} with {base}")
        _run([base, "-m", "venv", str(venv)], f"creating the venv {venv}")
    version = _check_python(venv_python, manifest)

    wheels = bundle / WHEELS
    cmd = [
        str(venv_python), "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(wheels),
        "-r", str(bundle / manifest["requirements"]), str(bundle / manifest["project_wheel"]),
    ]  # fmt: skip
    spacy = manifest.get("spacy_model")
    if spacy:
        cmd.append(str(bundle / spacy["file"]))
    if not compile_bytecode:
        cmd.append("--no-compile")
    say(f"installing {len(list(wheels.glob('*.whl')))} wheels into {venv}")
    _run(cmd, "pip install", _hermetic_env())
    check = subprocess.run(
        [str(venv_python), "-m", "pip", "check"], capture_output=True, text=True, env=_hermetic_env()
    )
    broken = [
        line for line in check.stdout.splitlines() if line.strip() and not _PIP_CHECK_EXPECTED.match(line)
    ]
    if broken:
        raise BundleError(f"installed, but `pip check` in {venv} finds: " + "; ".join(broken))

    placed = []
    for entry in manifest["models"]:
        assert models_dir is not None
        target = models_dir / entry["name"]
        _place_model(bundle, entry["path"], manifest["files"], target, say)
        placed.append((str(entry["kind"]), target))
    return InstallResult(venv, version, spacy["file"] if spacy else None, placed)


def _check_python(python: Path | str, manifest: dict[str, Any]) -> str:
    version, platform = _python_of(python)
    if version != manifest["python"] or platform != manifest["platform"]:
        raise BundleError(
            f"the bundle's wheels are for Python {manifest['python']} on {manifest['platform']}, but "
            f"{python} is Python {version} on {platform}: use --python with a matching interpreter"
        )
    return version


def _place_model(bundle: Path, rel: str, files: dict[str, dict[str, Any]], target: Path, say: Say) -> None:
    prefix = rel + "/"
    ours = {k[len(prefix) :]: v for k, v in files.items() if k.startswith(prefix)}
    if target.exists():
        theirs, odd = _walk(target)
        same = (
            not odd
            and set(theirs) == set(ours)
            and all(sha256_file(target / k) == v["sha256"] for k, v in ours.items())
        )
        if not same:
            raise BundleError(
                f"{target} already exists with other files: move it away, or choose another --models-dir"
            )
        say(f"{target} already holds this model")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"copying {rel} to {target}")
    shutil.copytree(bundle / rel, partial)
    os.replace(partial, target)


# -- bootstrap: `python -m enclave.bundle`, before Enclave (and typer) are installed -------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enclave.bundle",
        description="Verify or install an Enclave offline bundle (the same as `enclave bundle ...`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="Re-hash every file against the manifest.")
    p_verify.add_argument("bundle", type=Path)
    p_verify.add_argument("--manifest-sha256", help="The manifest's sha256, as written down at creation.")
    p_install = sub.add_parser("install", help="Verify, then install into a venv with pip --no-index.")
    p_install.add_argument("bundle", type=Path)
    p_install.add_argument("--venv", type=Path, required=True)
    p_install.add_argument(
        "--manifest-sha256",
        help="Required: the manifest's sha256, as create printed it (DIR.manifest.sha256).",
    )
    p_install.add_argument("--models-dir", type=Path)
    p_install.add_argument("--python")
    p_install.add_argument("--no-compile", action="store_true")
    for sub_parser in (p_verify, p_install):
        sub_parser.add_argument("-v", "--verbose", action="store_true", help="Show pip's output.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        if args.command == "verify":
            result = verify_bundle(args.bundle, args.manifest_sha256)
            for line in verify_lines(result):
                print(line, file=sys.stdout if result.ok else sys.stderr)
            return 0 if result.ok else 1
        done = install_bundle(
            args.bundle,
            args.venv,
            manifest_sha256=args.manifest_sha256,
            models_dir=args.models_dir,
            python=args.python,
            compile_bytecode=not args.no_compile,
            say=lambda line: print(line, file=sys.stderr),
        )
        for line in install_lines(done):
            print(line)
        return 0
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def verify_lines(result: VerifyResult) -> list[str]:
    if result.ok:
        return [f"bundle {result.path} intact: {result.checked} files match the manifest"]
    problems = result.problems()
    return [*problems, f"bundle {result.path} does NOT verify: {len(problems)} problem(s)"]


def install_lines(result: InstallResult) -> list[str]:
    lines = [f"installed into {result.venv} (Python {result.python}); start with {result.venv}/bin/enclave"]
    if result.spacy_model:
        lines.append(f"spaCy model installed from {result.spacy_model}")
    settings = result.settings_lines()
    if settings:
        lines.append("settings for the model folders:")
        lines += [f"  {line}" for line in settings]
    return lines


if __name__ == "__main__":
    sys.exit(main())
