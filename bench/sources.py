"""Source syncs: a re-sync of an unchanged source on each connector, and a first sync's documents
per second beside a local `enclave ingest` of the same files, same run.

    .venv/bin/python bench/sources.py [--files 10000] [--messages 10000] [--first-sync-files 1000]
        [--repeats 3] [--connectors folder,smb,webdav,imap] [--output FILE]

The servers are the tests' real ones on 127.0.0.1 (tests/support: Debian's smbd, WsgiDAV on
cheroot, Debian's Dovecot); smbd and Dovecot need root, and a connector whose server cannot run
here is reported as skipped with the reason. The corpus is Markdown made here from a fixed seed:
`--files` files of 300-700 bytes in folders of 100; the IMAP mailbox gets `--messages` messages
(appended over IMAP, one APPEND each) whose bodies are the same texts.

(a) Re-sync: each source is mirrored once (`sync_mirror`, timed: the comparison), then synced
`--repeats` times unchanged. Bytes read are counted three ways: MirrorResult.bytes_fetched; the
bytes this process received and sent on its sockets (socket.socket's recv/recv_into/send/sendall
counted: payload, plaintext: SMB unencrypted, WebDAV over http, IMAP without TLS); and the
server's own read counter (/proc/PID/io rchar, every process of the server, taken before the
connection closes: file reads and, for most servers, socket reads too). The folder connector has
no server; the process's own rchar (the mirror's state file included) stands in.

(b) First sync: in a fresh data folder each, `enclave sources add` + `enclave sources sync` of a
source holding `--first-sync-files` of the same files (a folder of its own on each server; an IMAP
folder of its own), beside `enclave ingest` of the same files from a local folder (for IMAP: the
same messages as .eml files), alternating, the real embedding model; documents per second is
documents indexed / wall time of the command, its start and model load included.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import email.message
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from bench.machine import checkout_state, loadavg, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONNECTORS = ("folder", "smb", "webdav", "imap")
PACKAGES = ("smbprotocol", "httpx", "IMAPClient", "wsgidav", "cheroot", "chromadb", "sentence-transformers")
BUSY_LOADAVG = 1.5
PER_FOLDER = 100
PRODUCT = ("core", "ingest", "vectorstore", "enclave", "requirements.lock")
BASE_TIME = 1_767_000_000  # file and message dates: fixed, so that runs make the same corpus
WORDS = (
    "harbour ferry rota canteen policy leave shift pilot berth tide crane permit safety audit "
    "invoice supplier contract training vessel cargo customs gate visitor badge parking overtime "
    "holiday pension payroll roster incident report drill alarm evacuation fuel bunker quay pier "
    "mooring tug dredge survey chart beacon buoy lock sluice weir pump store depot yard warehouse"
).split()


# -- the corpus -------------------------------------------------------------------------------------


def text_of(i: int) -> str:
    """File i's Markdown: a title and a paragraph of 300-700 bytes in all, the same every run."""
    rng = random.Random(i)
    size = rng.randint(300, 700)
    title = f"# Notice {i}: {rng.choice(WORDS)} {rng.choice(WORDS)}\n\n"
    words: list[str] = []
    while len(title) + len(" ".join(words)) < size - 12:
        words.append(rng.choice(WORDS))
    return title + " ".join(words).capitalize() + ".\n"


def rel_of(i: int) -> str:
    return f"d{i // PER_FOLDER:03d}/notice-{i:05d}.md"


def write_tree(folder: Path, count: int) -> list[int]:
    """`count` files under `folder`; their sizes in bytes."""
    sizes = []
    for i in range(count):
        path = folder / rel_of(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text_of(i).encode()
        path.write_bytes(data)
        os.utime(path, ns=(BASE_TIME * 10**9 + i, BASE_TIME * 10**9 + i))
        sizes.append(len(data))
    return sizes


def message_of(i: int) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "Harbour office <office@example.org>"
    msg["To"] = "Staff <staff@example.org>"
    msg["Subject"] = f"Notice {i}"
    msg["Message-ID"] = f"<notice-{i}@example.org>"
    msg.set_content(text_of(i))
    return msg


def deliver(server: Any, folder: str, count: int) -> list[int]:
    """`count` messages appended to `folder` over IMAP; their sizes in bytes."""
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60)
    sizes = []
    try:
        client.login(server.USER, server.password)
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for i in range(count):
            data = bytes(message_of(i))
            client.append(folder, data, msg_time=dt.datetime.fromtimestamp(BASE_TIME + i, tz=dt.UTC))
            sizes.append(len(data))
    finally:
        client.logout()
    return sizes


def size_stats(sizes: list[int]) -> dict[str, Any]:
    return {
        "count": len(sizes),
        "min_bytes": min(sizes, default=0),
        "mean_bytes": round(statistics.fmean(sizes), 1) if sizes else 0,
        "max_bytes": max(sizes, default=0),
        "total_bytes": sum(sizes),
    }


# -- counting bytes -----------------------------------------------------------------------------------


class WireCounter:
    """Bytes this process receives and sends on its sockets while active (payload, all threads)."""

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0
        self._lock = threading.Lock()
        self._saved: dict[str, Any] = {}

    def _add(self, which: str, n: int) -> None:
        with self._lock:
            setattr(self, which, getattr(self, which) + n)

    @contextlib.contextmanager
    def counting(self) -> Iterator[WireCounter]:
        cls = socket.socket
        saved = {name: getattr(cls, name) for name in ("recv", "recv_into", "send", "sendall")}
        counter = self

        def recv(sock: socket.socket, *args: Any) -> bytes:
            data: bytes = saved["recv"](sock, *args)
            counter._add("received", len(data))
            return data

        def recv_into(sock: socket.socket, *args: Any) -> int:
            n: int = saved["recv_into"](sock, *args)
            counter._add("received", n)
            return n

        def send(sock: socket.socket, data: Any, *args: Any) -> int:
            n: int = saved["send"](sock, data, *args)
            counter._add("sent", n)
            return n

        def sendall(sock: socket.socket, data: Any, *args: Any) -> None:
            saved["sendall"](sock, data, *args)
            counter._add("sent", memoryview(data).nbytes)

        for name, fn in (("recv", recv), ("recv_into", recv_into), ("send", send), ("sendall", sendall)):
            setattr(cls, name, fn)
        try:
            yield self
        finally:
            for name, fn in saved.items():
                setattr(cls, name, fn)


def read_chars(pids: list[int]) -> dict[int, int]:
    """rchar of each process (/proc/PID/io): bytes it passed to read() and its kin."""
    import psutil

    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found[pid] = psutil.Process(pid).io_counters().read_chars
    return found


def server_pids(process: subprocess.Popen[bytes] | None) -> list[int]:
    import psutil

    if process is None:
        return [os.getpid()]
    try:
        top = psutil.Process(process.pid)
        return [process.pid, *(p.pid for p in top.children(recursive=True))]
    except psutil.Error:
        return []


# -- (a) re-sync --------------------------------------------------------------------------------------


class Sources:
    """The servers of one run, each serving the same corpus; started as each is needed."""

    def __init__(self, work: Path, files: int, messages: int, first: int) -> None:
        self.work = work
        self.files = files
        self.messages = messages
        self.first = first
        self.servers: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.sizes: dict[str, list[int]] = {}

    def fill(self, folder: Path) -> None:
        self.sizes["files"] = write_tree(folder / "all", self.files)
        self.sizes["first"] = write_tree(folder / "first", self.first)

    def start(self, kind: str) -> Any | None:
        """The connector's server, started and filled, or None (and the reason in `skipped`)."""
        from tests.support import dovecot, samba
        from tests.support.dovecot import DovecotServer
        from tests.support.samba import SambaServer
        from tests.support.webdav import WebDavServer

        if kind == "folder":
            folder = self.work / "folder"
            self.fill(folder)
            self.servers[kind] = folder
            return folder
        why = {"smb": samba.missing, "imap": dovecot.missing}.get(kind, lambda: None)()
        if why:
            self.skipped[kind] = why
            return None
        server: Any = {"smb": SambaServer, "webdav": WebDavServer, "imap": DovecotServer}[kind]()
        self.servers[kind] = server
        if kind in ("smb", "webdav"):
            self.fill(server.share_dir)
        server.start()
        if kind == "imap":
            started = time.perf_counter()
            self.sizes["messages"] = deliver(server, "INBOX", self.messages)
            self.sizes["first_messages"] = deliver(server, "First", self.first)
            self.sizes["append_s"] = [round(time.perf_counter() - started, 1)]
        return server

    def connector(self, kind: str, sub: str) -> Any:
        """A connector to the source's `sub` folder ("all" or "first")."""
        from ingest.sources import LocalConnector
        from ingest.sources.imap import ImapConnector
        from ingest.sources.smb import SmbConnector
        from ingest.sources.webdav import WebDavConnector

        server = self.servers[kind]
        if kind == "folder":
            return LocalConnector(server / sub)
        cred = server.credentials(self.work / f"{kind}.cred")
        if kind == "smb":
            return SmbConnector("127.0.0.1", server.SHARE, sub, credentials_file=cred, port=server.port)
        if kind == "webdav":
            return WebDavConnector(f"{server.url}{sub}/", credentials_file=cred)
        folder = "INBOX" if sub == "all" else "First"
        return ImapConnector(
            "127.0.0.1", port=server.port, security="none", folders=(folder,), credentials_file=cred
        )

    def location(self, kind: str) -> tuple[list[str], list[int]]:
        """`enclave sources add` arguments for the "first" source, and its files' sizes."""
        server = self.servers[kind]
        if kind == "folder":
            return ["--location", str(server / "first")], self.sizes["first"]
        cred = str(server.credentials(self.work / f"{kind}.cred"))
        if kind == "smb":
            loc = f"smb://127.0.0.1:{server.port}/{server.SHARE}/first"
        elif kind == "webdav":
            loc = f"{server.url}first/"
        else:
            loc = f"imap://127.0.0.1:{server.port}"
            return [
                "--location", loc, "--credentials-file", cred, "--security", "none", "--folder", "First",
            ], self.sizes["first_messages"]  # fmt: skip
        return ["--location", loc, "--credentials-file", cred], self.sizes["first"]

    def close(self) -> None:
        for server in self.servers.values():
            if not isinstance(server, Path):
                server.close()


def one_sync(sources: Sources, kind: str, mirror: Path) -> dict[str, Any]:
    """One sync_mirror of the source's "all" folder into `mirror`, timed and its bytes counted."""
    from ingest.sources import sync_mirror

    server = sources.servers[kind]
    process = None if kind == "folder" else server.process
    connector = sources.connector(kind, "all")
    wire = WireCounter()
    before = read_chars(server_pids(process))
    own_before = read_chars([os.getpid()])[os.getpid()]
    started = time.perf_counter()
    try:
        with wire.counting():
            result = sync_mirror(connector, mirror, mirror.with_suffix(".state.json"), min_ratio=0.5)
        seconds = time.perf_counter() - started
        after = read_chars(server_pids(process))  # before the connection closes: its process lives
    finally:
        connector.close()
    own = read_chars([os.getpid()])[os.getpid()] - own_before
    server_read = sum(n - before.get(pid, 0) for pid, n in after.items())
    return {
        "seconds": round(seconds, 3),
        "listed": result.listed,
        "fetched": len(result.added) + len(result.changed),
        "moved": len(result.moved),
        "removed": len(result.removed),
        "unchanged": len(result.unchanged),
        "failed": len(result.failed),
        "bytes_fetched": result.bytes_fetched,
        "wire_received_bytes": wire.received,
        "wire_sent_bytes": wire.sent,
        "server_rchar_bytes": None if process is None else server_read,
        "client_rchar_bytes": own,
        "loadavg": loadavg(),
    }


def resync(sources: Sources, kind: str, repeats: int) -> dict[str, Any]:
    mirror = sources.work / "mirrors" / kind
    first = one_sync(sources, kind, mirror)
    again = [one_sync(sources, kind, mirror) for _ in range(repeats)]
    med = statistics.median(r["seconds"] for r in again)
    unchanged = all(r["fetched"] == r["moved"] == r["removed"] == r["bytes_fetched"] == 0 for r in again)
    return {
        "connector": kind,
        "first": first,
        "resyncs": again,
        "resync_median_s": med,
        "first_over_resync": round(first["seconds"] / med, 2) if med else None,
        "nothing_fetched": unchanged and all(r["unchanged"] == r["listed"] for r in again),
    }


# -- (b) first sync against a local ingest -----------------------------------------------------------


def enclave_cli(
    data: Path, *args: str, timeout: float = 3600
) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "enclave"), "--data-dir", str(data), *args]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    return time.perf_counter() - started, done


def documents(data: Path) -> int:
    _, listed = enclave_cli(data, "docs", "list", "--json")
    return len(json.loads(listed.stdout)) if listed.returncode == 0 else -1


def first_sync(sources: Sources, kind: str) -> dict[str, Any]:
    args, sizes = sources.location(kind)
    base = sources.work / "first" / kind
    local = base / "local-files"
    if kind == "imap":  # the same messages, as the .eml files a local ingest would take
        local.mkdir(parents=True)
        for i in range(sources.first):
            (local / f"{i + 1}.eml").write_bytes(bytes(message_of(i)))
    else:
        write_tree(local, sources.first)
    out: dict[str, Any] = {"connector": kind, "files": size_stats(sizes)}

    sync_data = base / "sync-data"
    added = enclave_cli(sync_data, "sources", "add", "bench", *args, "--groups", "staff")[1]
    if added.returncode != 0:
        raise SystemExit(
            f"enclave sources add ({kind}) failed: {added.stdout[-1000:]} {added.stderr[-2000:]}"
        )
    load0 = loadavg()
    seconds, done = enclave_cli(sync_data, "sources", "sync", "bench", "--json")
    if done.returncode != 0:
        raise SystemExit(f"enclave sources sync ({kind}) failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    docs = documents(sync_data)
    out["sync"] = {
        "wall_s": round(seconds, 2),
        "documents": docs,
        "documents_per_s": round(docs / seconds, 2),
        "bytes_fetched": (report.get("mirror") or {}).get("bytes_fetched"),
        "loadavg": [load0, loadavg()],
    }

    ingest_data = base / "ingest-data"
    load0 = loadavg()
    seconds, done = enclave_cli(ingest_data, "ingest", str(local), "--groups", "staff")
    if done.returncode != 0:
        raise SystemExit(f"enclave ingest ({kind}) failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    docs = documents(ingest_data)
    out["local_ingest"] = {
        "wall_s": round(seconds, 2),
        "documents": docs,
        "documents_per_s": round(docs / seconds, 2),
        "loadavg": [load0, loadavg()],
    }
    out["sync_over_local"] = round(out["sync"]["documents_per_s"] / out["local_ingest"]["documents_per_s"], 3)
    return out


def product_state() -> dict[str, Any]:
    return checkout_state(ROOT, PRODUCT)


# -- the run ------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    """The two tables, from a result (bench/report.py prints the same)."""
    return table_markdown(result)


def table_markdown(r: dict[str, Any]) -> str:
    def n(v: Any) -> str:
        return "—" if v is None else f"{v:,}"

    lines = [
        "| connector | entries | first mirror, s | re-sync, s (median) | first / re-sync | bytes fetched (first → re-sync) "
        "| socket bytes received (first → re-sync) | server rchar (first → re-sync) | nothing fetched |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in r.get("resync", []):
        f, last = a["first"], a["resyncs"]
        worst = max(last, key=lambda x: x["bytes_fetched"] + x["wire_received_bytes"])
        lines.append(
            f"| {a['connector']} | {f['listed']:,} | {f['seconds']:.2f} | {a['resync_median_s']:.2f} "
            f"| {n(a['first_over_resync'])}x | {n(f['bytes_fetched'])} → {n(worst['bytes_fetched'])} "
            f"| {n(f['wire_received_bytes'])} → {n(worst['wire_received_bytes'])} "
            + (
                f"| {n(f['server_rchar_bytes'])} → {n(worst['server_rchar_bytes'])} "
                if f["server_rchar_bytes"] is not None
                else f"| this process: {n(f['client_rchar_bytes'])} → {n(worst['client_rchar_bytes'])} "
            )
            + f"| {'yes' if a['nothing_fetched'] else 'NO'} |"
        )
    parts = ["\n".join(lines)]
    if r.get("first_sync"):
        rows = [
            "| source | documents | first sync: wall s, docs/s | local `enclave ingest`: wall s, docs/s "
            "| ratio (sync / local) |",
            "|---|---:|---:|---:|---:|",
        ]
        for b in r["first_sync"]:
            s, loc = b["sync"], b["local_ingest"]
            rows.append(
                f"| {b['connector']} | {s['documents']:,} | {s['wall_s']:.1f} s, {s['documents_per_s']:.1f} "
                f"| {loc['wall_s']:.1f} s, {loc['documents_per_s']:.1f} | {b['sync_over_local']:.2f}x |"
            )
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=10_000, help="files in each source (default 10000)")
    ap.add_argument("--messages", type=int, default=10_000, help="messages in the mailbox (default 10000)")
    ap.add_argument("--first-sync-files", type=int, default=1000, help="files of the first-sync comparison")
    ap.add_argument("--repeats", type=int, default=3, help="re-syncs per connector (the median is shown)")
    ap.add_argument(
        "--connectors", default=",".join(CONNECTORS), help="comma-separated, of " + ", ".join(CONNECTORS)
    )
    ap.add_argument("--no-first-sync", action="store_true", help="measure the re-syncs only")
    ap.add_argument(
        "--work-dir", type=Path, help="where sources and mirrors go (default: a temporary folder)"
    )
    ap.add_argument("--output", type=Path, help="result JSON (default bench/results/sources-<date>.json)")
    args = ap.parse_args(argv)
    kinds = [k for k in args.connectors.split(",") if k]
    unknown = set(kinds) - set(CONNECTORS)
    if unknown:
        ap.error(f"unknown connector(s): {', '.join(sorted(unknown))}")

    os.environ["HF_HUB_OFFLINE"] = "1"
    started = dt.datetime.now(dt.UTC)
    loads = [loadavg()]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="enclave-bench-sources-"))
    work.mkdir(parents=True, exist_ok=True)
    sources = Sources(work, args.files, args.messages, 0 if args.no_first_sync else args.first_sync_files)
    result: dict[str, Any] = {
        "benchmark": "sources",
        "started_utc": started.isoformat(timespec="seconds"),
        "command": "python bench/sources.py"
        + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "machine": machine(PACKAGES),
        "product": product_state(),
        "settings": {
            "files": args.files,
            "messages": args.messages,
            "first_sync_files": args.first_sync_files,
            "repeats": args.repeats,
            "connectors": kinds,
            "imap_delivery": "IMAP APPEND, one message each, plaintext on 127.0.0.1",
        },
        "resync": [],
        "first_sync": [],
        "skipped": {},
    }
    try:
        for kind in kinds:
            if sources.start(kind) is None:
                print(f"{kind}: skipped: {sources.skipped[kind]}", file=sys.stderr)
                continue
            loads.append(loadavg())
            measured = resync(sources, kind, args.repeats)
            result["resync"].append(measured)
            print(
                f"{kind}: first mirror {measured['first']['seconds']:.2f} s, re-sync {measured['resync_median_s']:.2f} s "
                f"(median of {args.repeats}), nothing fetched: {measured['nothing_fetched']}",
                file=sys.stderr,
            )
            loads.append(loadavg())
            if not args.no_first_sync:
                b = first_sync(sources, kind)
                result["first_sync"].append(b)
                print(
                    f"{kind}: first sync {b['sync']['documents_per_s']:.1f} docs/s, local ingest "
                    f"{b['local_ingest']['documents_per_s']:.1f} docs/s",
                    file=sys.stderr,
                )
                loads.append(loadavg())
    finally:
        sources.close()
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["skipped"] = sources.skipped
    result["corpus"] = {
        "kind": "Markdown made here from a fixed seed (a title and one paragraph), folders of 100",
        "files": size_stats(sources.sizes.get("files", [])),
        "first_sync_files": size_stats(sources.sizes.get("first", [])),
        "messages": size_stats(sources.sizes.get("messages", [])),
        "imap_append_s": (sources.sizes.get("append_s") or [None])[0],
    }
    loads.append(loadavg())
    result["loadavg"] = {"samples": loads, "max_seen": max(loads), "reliable": max(loads) <= BUSY_LOADAVG}
    result["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["markdown"] = markdown(result)
    out = args.output or RESULTS / f"sources-{started.date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(result["markdown"])
    print(f"wrote {out}", file=sys.stderr)
    ok = all(a["nothing_fetched"] for a in result["resync"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
