"""Wheels made from the distributions installed in this venv, for tests of the offline bundle.

`enclave bundle create --wheels-from DIR` takes a lock's wheels from a local folder; a test has
no folder of the original wheels (they would be a ~900 MB download), so it makes one from what
`make` installed here: each distribution's files as its RECORD lists them, its .dist-info less
the install-time files, and a fresh RECORD, zipped without compression (quick to write and to
unpack). Same versions and files as the installed ones, but not the original bytes of PyPI's
wheels: never a substitute for `pip download` in a real bundle. Left out, as pip regenerates or
does not need them here: bytecode, and files installed outside site-packages (console scripts,
which pip writes again from entry_points.txt, and `.data` files).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import zipfile
from pathlib import Path

_INSTALL_TIME = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _tags(wheel_metadata: str) -> str:
    tags = [line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ValueError("WHEEL names no Tag")
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    return "-".join(".".join(p) for p in parts)


def repack(dist: importlib.metadata.Distribution, dest: Path) -> Path:
    """Write one installed distribution as a wheel into dest; returns the wheel's path."""
    name = dist.metadata["Name"]
    version = dist.version
    files = dist.files or []
    dist_info = next(f.parts[0] for f in files if f.parts and f.parts[0].endswith(".dist-info"))
    base = Path(str(dist.locate_file(""))).resolve()
    wheel_meta = (base / dist_info / "WHEEL").read_text(encoding="utf-8")
    filename = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-{_tags(wheel_meta)}.whl"
    record: list[str] = []
    with zipfile.ZipFile(dest / filename, "w", compression=zipfile.ZIP_STORED) as zf:
        for entry in files:
            rel = entry.as_posix()
            if rel.startswith("..") or "__pycache__" in entry.parts or rel.endswith(".pyc"):
                continue
            if entry.parts[0] == dist_info and entry.name in _INSTALL_TIME:
                continue
            path = base / rel
            if not path.is_file():
                continue  # listed but gone: nothing to carry
            # The installed RECORD's hash is the wheel's own; only files without one are hashed.
            if entry.hash:
                digest = f"{entry.hash.mode}={entry.hash.value}"
            else:
                digest = _record_hash(path.read_bytes())
            zf.write(path, rel)
            record.append(f"{rel},{digest},{path.stat().st_size}")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return dest / filename


def wheelhouse_from_installed(lock: Path, dest: Path) -> list[Path]:
    """One wheel per line of lock (`name==version`), made from this venv's installed distributions;
    a missing distribution or another version is an error naming it."""
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, version = (part.strip() for part in line.split("=="))
        dist = importlib.metadata.distribution(name)
        if dist.version != version:
            raise ValueError(f"{name} {dist.version} is installed, the lock pins {version}: run `make venv`")
        made.append(repack(dist, dest))
    return made
