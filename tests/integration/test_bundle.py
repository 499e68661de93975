"""The offline bundle (`enclave bundle create|verify|install`, enclave/bundle.py).

A small bundle (one locked wheel and Enclave's own) for what verify and create refuse; and the
whole lock, made from this venv's installed distributions (tests/support/wheelhouse.py), created
here, then verified and installed into a fresh venv inside a network namespace that has nothing
but loopback (`unshare -n`), where `enclave ingest` and `enclave ask` must answer from a document.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enclave.bundle import MANIFEST, SUMS, spacy_pin
from enclave.cli import app
from tests.support.wheelhouse import repack, wheelhouse_from_installed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "vectorstore", "ingest", "audit", "assistant", "ui", "enclave"]


def run_cli(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """six (repacked from this venv) and Enclave's wheel; no spaCy model; a tiny 'LLM' folder."""
    base = tmp_path_factory.mktemp("small")
    wheels = base / "wheelhouse"
    wheels.mkdir()
    repack(importlib.metadata.distribution("six"), wheels)
    lock = base / "small.lock"
    lock.write_text(f"# one pin\nsix=={importlib.metadata.version('six')}\n")
    model = base / "tiny-llm"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    result = run_cli(
        "bundle", "create", str(base / "bundle"), "--requirements", str(lock), "--wheels-from", str(wheels),
        "--no-spacy-model", "--llm-model", str(model),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "manifest sha256:" in result.output
    return base / "bundle"


@pytest.fixture
def bundle_copy(small_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(small_bundle, copy)
    return copy


def test_small_bundle_holds_what_the_manifest_lists(small_bundle: Path) -> None:
    manifest = json.loads((small_bundle / MANIFEST).read_text())
    files = manifest["files"]
    assert any(p.startswith("wheels/six-") for p in files)
    assert manifest["project_wheel"] in files
    assert "models/llm/tiny-llm/config.json" in files
    assert manifest["spacy_model"] is None
    assert (small_bundle / SUMS).read_text().count("\n") == len(files)
    result = run_cli("bundle", "verify", str(small_bundle))
    assert result.exit_code == 0, result.output
    assert f"{len(files)} files match" in result.output


def test_project_wheel_holds_every_package(small_bundle: Path) -> None:
    """Every package folder of the source is in the wheel (a listed-packages pyproject left
    ingest.formats out, which only a non-editable install shows)."""
    manifest = json.loads((small_bundle / MANIFEST).read_text())
    names = set(zipfile.ZipFile(small_bundle / manifest["project_wheel"]).namelist())
    expected = {
        init.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
        if "demo_corpus" not in init.parts
    }
    assert "ingest/formats/__init__.py" in expected
    assert expected <= names, expected - names
    assert any(n.startswith("enclave/demo_corpus/") for n in names)


def test_verify_names_a_changed_file(bundle_copy: Path) -> None:
    wheel = next((bundle_copy / "wheels").glob("six-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    wheel.write_bytes(bytes(data))
    result = run_cli("bundle", "verify", str(bundle_copy))
    assert result.exit_code == 1
    assert f"changed: wheels/{wheel.name}" in result.output
    assert "does NOT verify: 1 problem" in result.output


def test_verify_names_missing_and_extra_files(bundle_copy: Path) -> None:
    (bundle_copy / "models" / "llm" / "tiny-llm" / "config.json").unlink()
    (bundle_copy / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    result = run_cli("bundle", "verify", str(bundle_copy))
    assert result.exit_code == 1
    assert "missing: models/llm/tiny-llm/config.json" in result.output
    assert "not in the manifest: wheels/evil-1.0-py3-none-any.whl" in result.output


def manifest_sha256(bundle: Path) -> str:
    return hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()


def test_create_prints_the_manifest_sum_and_writes_it_beside_the_bundle(small_bundle: Path) -> None:
    good = manifest_sha256(small_bundle)
    sum_file = small_bundle.with_name("bundle.manifest.sha256")
    assert sum_file.read_text() == f"{good}  {MANIFEST}\n"
    check = subprocess.run(
        ["sha256sum", "-c", str(sum_file)], cwd=small_bundle, capture_output=True, text=True
    )
    assert check.returncode == 0 and f"{MANIFEST}: OK" in check.stdout  # coreutils alone can check it
    readme = (small_bundle / "README.txt").read_text()
    assert "install . --manifest-sha256 SUM" in readme


def test_verify_checks_the_manifest_against_the_sum_written_down(small_bundle: Path) -> None:
    good = manifest_sha256(small_bundle)
    assert run_cli("bundle", "verify", str(small_bundle), "--manifest-sha256", good).exit_code == 0
    result = run_cli("bundle", "verify", str(small_bundle), "--manifest-sha256", "0" * 64)
    assert result.exit_code == 1
    assert f"{MANIFEST} has sha256 {good}" in result.output


def test_install_refuses_a_bundle_that_does_not_verify(bundle_copy: Path, tmp_path: Path) -> None:
    good = manifest_sha256(bundle_copy)
    (bundle_copy / "requirements.lock").write_text("six==0.0.1\n")
    result = run_cli(
        "bundle", "install", str(bundle_copy), "--venv", str(tmp_path / "venv"), "--manifest-sha256", good
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not verify" in result.output and "changed: requirements.lock" in result.output
    assert not (tmp_path / "venv").exists()


def test_install_requires_the_manifest_sum(bundle_copy: Path, tmp_path: Path) -> None:
    venv, models = tmp_path / "venv", tmp_path / "models"
    base = ["bundle", "install", str(bundle_copy), "--venv", str(venv), "--models-dir", str(models)]
    missing = run_cli(*base)
    assert missing.exit_code == 1
    assert "give --manifest-sha256" in missing.output and "DIR.manifest.sha256" in missing.output
    malformed = run_cli(*base, "--manifest-sha256", "3f1c...")
    assert malformed.exit_code == 1 and "'3f1c...' is not a sha256 (64 hex digits)" in malformed.output
    assert not venv.exists() and not models.exists()


def test_install_refuses_a_bundle_rewritten_with_its_manifest(bundle_copy: Path, tmp_path: Path) -> None:
    """Whoever can change the media can change a wheel and make manifest.json and SHA256SUMS agree
    with it: the files then verify, and only the sum written down at creation tells."""
    good = manifest_sha256(bundle_copy)
    wheel = next((bundle_copy / "wheels").glob("six-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")  # another wheel under the same name
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    rel = f"wheels/{wheel.name}"
    manifest["files"][rel] = {
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "size": wheel.stat().st_size,
    }
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    sums = (bundle_copy / SUMS).read_text().splitlines()
    (bundle_copy / SUMS).write_text(
        "".join(
            f"{manifest['files'][rel]['sha256']}  {rel}\n" if line.endswith(rel) else line + "\n"
            for line in sums
        )
    )
    assert run_cli("bundle", "verify", str(bundle_copy)).exit_code == 0  # consistent, so it verifies
    forged = manifest_sha256(bundle_copy)

    venv, models = tmp_path / "venv", tmp_path / "models"
    result = run_cli(
        "bundle", "install", str(bundle_copy), "--venv", str(venv), "--models-dir", str(models),
        "--manifest-sha256", good.upper(),
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"has sha256 {forged}, but the sha256 given is {good}" in result.output
    assert "nothing was installed" in result.output
    assert not venv.exists() and not models.exists()
    verify = run_cli("bundle", "verify", str(bundle_copy), "--manifest-sha256", good)
    assert verify.exit_code == 1 and f"{MANIFEST} has sha256 {forged}, not the {good} given" in verify.output


def test_spacy_pin_is_the_one_unstructured_uses() -> None:
    from unstructured.nlp import tokenize

    pin = spacy_pin()
    assert (pin.name, pin.version) == (tokenize._SPACY_MODEL_NAME, tokenize._SPACY_MODEL_VERSION)
    assert (pin.sha256, pin.url) == (tokenize._SPACY_MODEL_SHA256, tokenize._SPACY_MODEL_URL)


def test_create_refuses_a_spacy_wheel_with_another_sha256(tmp_path: Path) -> None:
    fake = tmp_path / "en_core_web_sm-3.8.0-py3-none-any.whl"
    fake.write_bytes(b"not the model unstructured pins")
    dest = tmp_path / "out" / "bundle"
    result = run_cli("bundle", "create", str(dest), "--spacy-wheel", str(fake))
    assert result.exit_code == 1
    assert "refused" in result.output and spacy_pin().sha256 in result.output
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # no half-made bundle


def test_the_spacy_wheel_is_taken_only_at_the_pinned_sha256_from_a_file_or_its_url(tmp_path: Path) -> None:
    """The accept path, which the official wheel cannot show here (GitHub is out of reach): the
    same code, with a pin whose sha256 is a local wheel's, copying it from --spacy-wheel and
    downloading it from a server on 127.0.0.1; any other bytes are refused and leave nothing."""
    import hashlib
    import http.server
    import threading

    from core.errors import BundleError
    from enclave.bundle import SpacyPin, _fetch_spacy_wheel

    served = tmp_path / "served"
    served.mkdir()
    wheel = served / "en_core_web_sm-3.8.0-py3-none-any.whl"
    wheel.write_bytes(b"PK a stand-in for the model wheel")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{wheel.name}"
        pin = SpacyPin(
            "en_core_web_sm", "3.8.0", hashlib.sha256(wheel.read_bytes()).hexdigest(), url, "test pin"
        )
        said: list[str] = []
        for name, source in (("copied", wheel), ("downloaded", None)):
            dest = tmp_path / name / pin.filename
            dest.parent.mkdir()
            _fetch_spacy_wheel(pin, source, dest, said.append)
            assert dest.read_bytes() == wheel.read_bytes()
        assert said == [f"downloading {url}"]

        wheel.write_bytes(b"PK other bytes under the same name")  # the server now serves these
        dest = tmp_path / "refused" / pin.filename
        dest.parent.mkdir()
        with pytest.raises(BundleError, match="refused"):
            _fetch_spacy_wheel(pin, None, dest, said.append)
        assert list(dest.parent.iterdir()) == []  # the partial download is gone
    finally:
        server.shutdown()


# -- the whole lock, installed with no network -----------------------------------------------------


def _netns_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"`unshare -n` is not allowed here: {probe.stderr.strip()}"


OFFLINE_SCRIPT = r"""
set -eu
ip link set lo up
echo "interfaces: $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
test -z "$(ip route show)"                         # no route at all
if "$BASE_PYTHON" -c "import socket; socket.create_connection(('192.0.2.1', 443), timeout=3)" 2>/dev/null; then
    echo "a connection left the namespace"; exit 1
fi
export PYTHONPATH="$BUNDLE/$PROJECT_WHEEL"         # Enclave's code from the bundle, not installed yet
t0=$(date +%s)
"$BASE_PYTHON" -m enclave.bundle verify "$BUNDLE" --manifest-sha256 "$MANIFEST_SHA256"
"$BASE_PYTHON" -m enclave.bundle install "$BUNDLE" --manifest-sha256 "$MANIFEST_SHA256" \
    --venv "$VENV" --models-dir "$MODELS" --no-compile
unset PYTHONPATH
t1=$(date +%s)
"$VENV/bin/enclave" --data-dir var ingest docs --groups staff
echo ann-secret-pw | "$VENV/bin/enclave" --data-dir var users add ann --groups staff --password-stdin
"$VENV/bin/enclave" --data-dir var ask "What is the pilotage fee for vessels over 200 metres?" --user ann --json > answer.json
t2=$(date +%s)
echo "timing: verify+install $((t1 - t0)) s, ingest+ask $((t2 - t1)) s"
"""


@pytest.mark.timeout(2400)
def test_bundle_installs_and_answers_without_network(tmp_path: Path) -> None:
    reason = _netns_available()
    if reason:
        if os.environ.get("REQUIRE_NETNS") == "1":
            pytest.fail(f"REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse_from_installed(ROOT / "requirements.lock", wheelhouse)
    model = tmp_path / "tiny-llm"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    bundle = tmp_path / "bundle"
    result = run_cli(
        "bundle", "create", str(bundle), "--wheels-from", str(wheelhouse), "--no-spacy-model",
        "--llm-model", str(model),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shutil.rmtree(wheelhouse)  # 2.6 GB no longer needed
    manifest = json.loads((bundle / MANIFEST).read_text())

    work = tmp_path / "airgap"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "fees.md").write_text(
        "# Harbour fees\n\nThe pilotage fee for vessels over 200 metres is 4,350 euros per call, "
        "payable before berthing.\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ENCLAVE_", "PIP_", "VIRTUAL_ENV", "PYTHON"))
    }  # PYTHONDONTWRITEBYTECODE among them: the first run may keep its bytecode for the next
    env.update(
        BASE_PYTHON=getattr(sys, "_base_executable", sys.executable),
        BUNDLE=str(bundle),
        PROJECT_WHEEL=manifest["project_wheel"],
        VENV=str(tmp_path / "fresh-venv"),
        MANIFEST_SHA256=bundle.with_name("bundle.manifest.sha256").read_text().split()[0],
        MODELS=str(tmp_path / "models"),
        # onnx-int8 whatever `auto` would pick on this CPU: its export is the one model a fresh
        # install computes itself on first use, so it is proven offline on every machine.
        ENCLAVE_EMBEDDING__BACKEND="onnx-int8",
    )
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", OFFLINE_SCRIPT], cwd=work, env=env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    print("\n".join(line for line in output.splitlines() if line.startswith(("timing:", "interfaces:"))))
    assert "interfaces: lo " in output  # nothing but loopback
    # The onnx-int8 embedder made its int8 copy here, offline, on the first ingest, and said so
    # (ENCLAVE_EMBEDDING__CACHE_DIR is not passed in: no shared export of the test run).
    assert "exporting" in output and "once per model" in output
    assert len(list((work / "var" / "models").glob("*/model-int8.onnx"))) == 1
    assert "match the manifest" in output
    assert f"VLLM_MODEL_DIR={tmp_path / 'models' / 'tiny-llm'}" in output
    assert (tmp_path / "models" / "tiny-llm" / "config.json").read_text() == '{"model_type": "qwen2"}'

    venv_python = tmp_path / "fresh-venv" / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import enclave, torch; print(enclave.__file__); print(torch.__version__)"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines()[0].startswith(str(tmp_path / "fresh-venv"))  # not this checkout
    assert where.stdout.splitlines()[1] == importlib.metadata.version("torch")

    answer = json.loads((work / "answer.json").read_text())
    assert answer["mode"] == "extractive"
    assert answer["citations"], answer
    assert Path(answer["citations"][0]["source"]).name == "fees.md"
    assert "4,350 euros" in answer["answer"]
