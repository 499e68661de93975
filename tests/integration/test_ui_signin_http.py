"""Sign-in, sessions, SSO, the sign-in rate limit and source files, over real HTTP: ui.server on
uvicorn with the Gradio app mounted, a real users file, a real audit log, and for /files a real
ingest (MiniLM, embedded Chroma) of a few small files.

Every address in 127.0.0.0/8 is loopback on Linux: a client binds 127.0.0.x as its source to be
another peer (127.0.0.2 is the trusted SSO proxy; the rate-limit tests each use their own).
"""

from __future__ import annotations

import email.message
import email.policy
import hashlib
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest

from audit import AuditLog
from audit.log import AuditRecord
from core.settings import Settings, load_settings
from core.users import UserStore
from enclave import wiring
from tests.support.net import (
    free_port,
    nothing_left_loopback,  # noqa: F401 (an autouse fixture)
)
from ui import build_app, serve
from ui.sessions import COOKIE, Session, issue_token, password_mark, read_token

pytestmark = pytest.mark.slow  # real servers

PASSWORD = "correct horse battery"
PROXY = "127.0.0.2"
PROXY_SECRET = "the-proxy-and-the-app-share-this"
# A 1x1 PNG: the organisation's logo.
LOGO_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
HOSTILE_HTML = "<html><body><h1>Harbour notice</h1><script>fetch('/config')</script></body></html>\n"
ROTA = b"Night shift rota: berth 3 is staffed by the harbour pilots from 22:00.\n"
DEEP = b"The forwarded memo: the vault code is 4711.\n"
COSTS = b"Crane maintenance costs 310 thousand euros a year.\n"
MEMO = b"Memo: the ferry timetable changes on Monday.\n"
# A real Outlook item with an attachment, when ../shared is checked out next to the repo.
MSG_EXAMPLE = (
    Path(__file__).resolve().parents[3]
    / "shared/corpus/unstructured-example-docs/example-docs/fake-email-attachment.msg"
)


def mail(subject: str, attachments: dict[str, bytes | email.message.EmailMessage]) -> bytes:
    """An RFC 822 mail with these attachments (bytes by their name's type; a message as message/rfc822)."""
    msg = email.message.EmailMessage()
    msg["From"] = "Harbour office <office@example.org>"
    msg["To"] = "Staff <staff@example.org>"
    msg["Subject"] = subject
    msg.set_content(f"{subject}: see the attached files.\n")
    for name, data in attachments.items():
        if isinstance(data, email.message.EmailMessage):
            msg.add_attachment(data, filename=name)
        else:
            subtype = "html" if name.endswith(".html") else "plain"
            msg.add_attachment(data, maintype="text", subtype=subtype, filename=name)
    return bytes(msg)


def attachment_id(data: bytes) -> str:
    """An attachment's document id: its bytes' SHA-256, as ingest.chunking.document_id keeps it."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class Served:
    url: str
    settings: Settings
    users: UserStore
    log: AuditLog
    docs: dict[str, str]  # file name -> doc id
    app: gr.Blocks

    def http(self, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, **kwargs)

    def signed_in(self, name: str = "alice", source: str = "127.0.0.1") -> httpx.Client:
        with self.http(source) as http:
            answer = http.post("/login", data={"username": name, "password": PASSWORD})
        assert answer.status_code == 200
        return self.http(source, cookies={COOKIE: answer.cookies[COOKIE]})

    def events(self, event: str, user: str | None = None) -> list[AuditRecord]:
        """Records of `event` (by `user`), oldest first."""
        newest_first = self.log.last(1000)
        return [r for r in reversed(newest_first) if r.event == event and (user is None or r.user == user)]

    def secret(self) -> bytes:
        return self.settings.session_secret_path.read_bytes()


def originals_id(settings: Settings, path: Path) -> str:
    """The document id the manifest holds for the file at `path` (as `enclave docs show` finds it)."""
    from ingest.manifest import Manifest

    entry = Manifest(settings.manifest_path).file(str(path.resolve()))
    assert (
        entry is not None
        and entry.doc_id is not None
        and entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    return entry.doc_id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("signin")
    files = {
        "public/leave policy.md": "# Leave\n\nStaff get 25 days of annual leave.\n",
        "public/notice.html": HOSTILE_HTML,
        "finance/crane.md": "# Crane budget\n\nThe crane at berth 7 costs 4.2 million euros.\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    forwarded = email.message_from_bytes(
        mail("Forwarded memo", {"deep.txt": DEEP}), policy=email.policy.default
    )
    assert isinstance(forwarded, email.message.EmailMessage)
    mails = {
        "public/rota mail.eml": mail(
            "Rota", {"rota.txt": ROTA, "notice.html": HOSTILE_HTML.encode(), "fwd.eml": forwarded}
        ),
        "public/changing.eml": mail("Ferry", {"memo.txt": MEMO}),
        "finance/costs.eml": mail("Costs", {"costs.txt": COSTS}),
    }
    for name, data in mails.items():
        (root / name).write_bytes(data)
    if MSG_EXAMPLE.is_file():
        shutil.copy(MSG_EXAMPLE, root / "public" / MSG_EXAMPLE.name)
    settings = load_settings(None, data_dir=root / "var")
    settings.ingest.parse_timeout_s = 0
    settings.ui.port = free_port()
    settings.ui.org_name = "Harbourview <Port>"
    settings.ui.sso_header = "X-Remote-User"
    settings.ui.trusted_proxies = [PROXY]
    (root / "proxy.secret").write_text(PROXY_SECRET)
    settings.ui.sso_secret_file = root / "proxy.secret"
    settings.ui.login_max_failures = 3
    (root / "logo.png").write_bytes(LOGO_PNG)
    settings.ui.logo_path = root / "logo.png"
    pipeline = wiring.build_pipeline(settings, embedder=embedder, store=wiring.build_store(settings))
    pipeline.run([root / "public"], ["public"])
    pipeline.run([root / "finance"], ["finance"])
    users = UserStore(settings.users_path)
    users.add("alice", PASSWORD, "staff", ("public",))
    users.add("fiona", PASSWORD, "staff", ("finance", "public"))
    users.add("carol", PASSWORD, "staff", ("public",))
    users.add("dave", PASSWORD, "staff", ("public",))
    log = AuditLog(settings.audit_path)
    app = build_app(object(), users, settings, audit=log)
    originals = wiring.build_originals(settings)
    url = serve(app, settings, block=False, sources=originals.find, attachments=originals.read_attachment)
    docs = {Path(n).name: originals_id(settings, root / n) for n in (*files, *mails)}
    try:
        yield Served(url, settings, users, log, docs, app)
    finally:
        app.close()


# -- branding ---------------------------------------------------------------------------------------


def test_the_logo_is_served_by_the_app_to_everyone_and_shown_on_the_pages(served: Served) -> None:
    with served.http(headers={"accept": "text/html"}) as http:
        logo = http.get("/branding/logo")  # the login page shows it: no sign-in needed
        assert logo.status_code == 200 and logo.content == LOGO_PNG
        assert (
            logo.headers["content-type"] == "image/png"
            and logo.headers["x-content-type-options"] == "nosniff"
        )
        page = http.get("/login")
        assert (
            'src="branding/logo"' in page.text and "img-src 'self'" in page.headers["content-security-policy"]
        )
    with served.signed_in("alice") as http:
        config = http.get("/config").text  # the chat page's components, as the browser gets them
        assert 'src=\\"branding/logo\\"' in config or 'src="branding/logo"' in config


def test_a_bad_logo_setting_is_an_error_naming_it(tmp_path: Path) -> None:
    from core.errors import ConfigError
    from ui.pages import MAX_LOGO_BYTES, load_logo

    with pytest.raises(ConfigError, match=r"ui\.logo_path .*logo\.exe: use a \.gif"):
        load_settings(None, data_dir=tmp_path, ui={"logo_path": str(tmp_path / "logo.exe")})
    with pytest.raises(ConfigError, match=r"ui\.logo_path .*missing\.svg cannot be read"):
        load_logo(tmp_path / "missing.svg")
    (tmp_path / "huge.png").write_bytes(b"x" * (MAX_LOGO_BYTES + 1))
    with pytest.raises(ConfigError, match="a logo must be 1 to"):
        load_logo(tmp_path / "huge.png")
    (tmp_path / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert load_logo(tmp_path / "logo.svg") == ("image/svg+xml", (tmp_path / "logo.svg").read_bytes())


# -- password sign-in ------------------------------------------------------------------------------


def test_browser_sign_in_redirects_and_sets_a_strict_http_only_cookie(served: Served) -> None:
    with served.http(headers={"accept": "text/html"}) as http:
        page = http.get("/login?next=/audit")
        assert "Harbourview &lt;Port&gt;" in page.text and "value='/audit'" in page.text
        done = http.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/?x=1"})
        assert done.status_code == 303 and done.headers["location"] == "/?x=1"
        cookie = done.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # ui.cookie_secure is off here
        assert http.get("/").status_code == 200
        # Signed in already: the login page sends the browser on; an outside `next` is not followed.
        assert http.get("/login?next=//evil.example/").headers["location"] == "/"
    record = served.events("sign_in", "alice")[-1]
    assert record.data["method"] == "password" and PASSWORD not in str(record.data)


def test_wrong_password_is_refused_on_the_page_and_audited_without_the_password(served: Served) -> None:
    with served.http("127.0.0.9", headers={"accept": "text/html"}) as http:
        page = http.post("/login", data={"username": "carol", "password": "not the password"})
        assert page.status_code == 401 and "Wrong user name or password." in page.text
        assert COOKIE not in page.headers.get("set-cookie", "")
        assert http.get("/config", headers={"accept": "application/json"}).status_code == 401
    failed = served.events("sign_in_failed", "carol")[-1]
    assert failed.data == {"reason": "wrong user name or password", "address": "127.0.0.9"}
    assert "not the password" not in str([r.data for r in served.log.last(1000)])


def test_gradio_sees_the_signed_in_user(served: Served) -> None:
    with served.signed_in("fiona") as http:
        config = http.get("/config")
    assert config.status_code == 200 and config.json()["username"] == "fiona"


# -- sessions ----------------------------------------------------------------------------------------


def forged(served: Served, *, issued_ago: float, seen_ago: float, user: str = "alice") -> str:
    now = time.time()
    record = served.users.get(user)
    assert record is not None
    mark = password_mark(served.secret(), record.password_hash)
    return issue_token(
        served.secret(),
        Session(user, secrets.token_urlsafe(8), now - issued_ago, now - seen_ago, "password", mark),
    )


def test_sessions_expire_after_max_age_and_idle_time(served: Served) -> None:
    assert served.settings.session_secret_path.stat().st_mode & 0o777 == 0o600
    cases = {
        "fresh": (forged(served, issued_ago=60, seen_ago=10), 200, None),
        "too old": (forged(served, issued_ago=12 * 3600 + 60, seen_ago=10), 401, "has expired"),
        "idle": (forged(served, issued_ago=3600, seen_ago=31 * 60), 401, "without use"),
        "tampered": (forged(served, issued_ago=60, seen_ago=10)[:-4] + "AAAA", 401, "not valid"),
        "other key": (
            issue_token(b"k" * 32, Session("alice", "x", time.time(), time.time(), "password", "m")),
            401,
            "not valid",
        ),
    }
    for name, (token, status, message) in cases.items():
        with served.http(cookies={COOKIE: token}) as http:
            answer = http.get("/config")
        assert answer.status_code == status, name
        if message:
            assert message in answer.json()["detail"], name
            assert "Max-Age=0" in answer.headers["set-cookie"], name  # the dead cookie is dropped
    with served.http(cookies={COOKIE: cases["idle"][0]}, headers={"accept": "text/html"}) as http:
        page = http.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F&m=expired"


def test_a_used_session_gets_a_refreshed_cookie_with_the_same_session(served: Served) -> None:
    old = forged(served, issued_ago=600, seen_ago=300)
    with served.http(cookies={COOKIE: old}) as http:
        answer = http.get("/config")
    assert answer.status_code == 200
    new = read_token(served.secret(), answer.cookies[COOKIE])
    before = read_token(served.secret(), old)
    assert new is not None and before is not None
    assert (new.user, new.sid, new.issued) == (before.user, before.sid, before.issued)
    assert new.seen > before.seen


def test_logout_ends_the_session_on_the_server(served: Served) -> None:
    with served.signed_in("carol", source="127.0.0.8") as http:
        token = http.cookies[COOKIE]
        assert http.get("/config").status_code == 200
        out = http.post("/logout")
    assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
    # The same token, kept by someone who copied it, is refused: logout is recorded server-side.
    with served.http(cookies={COOKIE: token}) as stale:
        refused = stale.get("/config")
    assert refused.status_code == 401 and "signed out" in refused.json()["detail"]
    sid = read_token(served.secret(), token).sid  # type: ignore[union-attr]
    assert served.events("sign_out", "carol")[-1].data["session"] == sid
    with served.http(headers={"accept": "text/html"}) as browser:
        assert browser.get("/logout").headers["location"] == "/login?m=signed_out"
        assert "You have signed out." in browser.get("/login?m=signed_out").text


# -- SSO --------------------------------------------------------------------------------------------


def test_sso_header_is_honoured_from_the_trusted_proxy_only(served: Served) -> None:
    with served.http(
        PROXY, headers={"X-Remote-User": "fiona", "X-Enclave-Proxy-Secret": PROXY_SECRET}
    ) as proxy:
        config = proxy.get("/config")
        assert config.status_code == 200 and config.json()["username"] == "fiona"
        assert COOKIE in config.cookies  # one session, so one sign_in event, not one per request
        assert proxy.get("/config").status_code == 200
    signed = [r for r in served.events("sign_in", "fiona") if r.data["method"] == "sso"]
    assert len(signed) == 1 and signed[0].data["address"] == PROXY

    with served.http("127.0.0.1", headers={"X-Remote-User": "fiona"}) as direct:
        assert direct.get("/config").status_code == 403  # anyone could send the header: refused


def test_sso_user_without_an_account_is_refused_with_a_clear_message(served: Served) -> None:
    proven = {"X-Remote-User": "ghost", "X-Enclave-Proxy-Secret": PROXY_SECRET, "accept": "text/html"}
    with served.http(PROXY, headers=proven) as proxy:
        page = proxy.get("/")
    assert page.status_code == 403 and "&#x27;ghost&#x27; has no Enclave account" in page.text
    assert served.events("access_denied", "ghost")[-1].data["method"] == "sso"


# -- the rate limit ------------------------------------------------------------------------------------


def test_failed_sign_ins_are_slowed_per_user_name_and_address(served: Served) -> None:
    for _ in range(3):
        with served.http("127.0.0.3") as http:
            assert (
                http.post("/login", data={"username": "dave", "password": "wrong wrong"}).status_code == 401
            )
    with served.http("127.0.0.3") as http:  # the right password, from there: wait first
        refused = http.post("/login", data={"username": "dave", "password": PASSWORD})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "Try again after" in refused.json()["detail"] and "UTC" in refused.json()["detail"]
    assert COOKIE not in refused.cookies
    assert served.events("sign_in_failed", "dave")[-1].data["reason"] == "rate limited"
    with served.http("127.0.0.6") as http:  # dave from his own address is not locked out
        assert http.post("/login", data={"username": "dave", "password": PASSWORD}).status_code == 200


def test_failed_sign_ins_are_limited_per_client_address(served: Served) -> None:
    with served.http("127.0.0.7") as http:
        for name in ("nobody1", "nobody2", "nobody3"):
            assert http.post("/login", data={"username": name, "password": "guess guess"}).status_code == 401
        assert http.post("/login", data={"username": "fiona", "password": PASSWORD}).status_code == 429
    with served.http("127.0.0.1") as http:  # fiona herself, elsewhere, is not locked out
        assert http.post("/login", data={"username": "fiona", "password": PASSWORD}).status_code == 200


# -- pages by role ------------------------------------------------------------------------------------


def test_staff_cannot_open_the_audit_page(served: Served) -> None:
    with served.signed_in("alice") as http:
        page = http.get("/audit", headers={"accept": "text/html"})
    assert page.status_code == 403 and "auditor role only" in page.text
    assert served.events("access_denied", "alice")[-1].data["path"] == "/audit"


# -- source files -------------------------------------------------------------------------------------


def test_a_file_of_the_users_groups_opens_inline(served: Served) -> None:
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{served.docs['leave policy.md']}")
    assert answer.status_code == 200
    assert answer.content == b"# Leave\n\nStaff get 25 days of annual leave.\n"
    assert answer.headers["content-type"].startswith("text/markdown")
    assert answer.headers["content-disposition"].startswith('inline; filename="leave policy.md"')
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert served.events("file_opened", "alice")[-1].data["doc_id"] == served.docs["leave policy.md"]


def test_html_sources_are_served_sandboxed(served: Served) -> None:
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{served.docs['notice.html']}")
    assert answer.status_code == 200 and answer.text == HOSTILE_HTML
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp


def test_a_file_outside_the_users_groups_is_refused_and_audited(served: Served) -> None:
    crane = served.docs["crane.md"]
    with served.signed_in("alice") as http:
        refused = http.get(f"/files/{crane}")
    assert refused.status_code == 403 and "none of your groups" in refused.json()["detail"]
    assert "4.2 million" not in refused.text
    denied = served.events("access_denied", "alice")[-1]
    assert denied.data["doc_id"] == crane and denied.data["reason"] == "groups"
    with served.signed_in("fiona") as http:
        assert "4.2 million" in http.get(f"/files/{crane}").text


def test_unknown_ids_and_paths_are_not_found(served: Served) -> None:
    passwd = Path("/etc/passwd").read_text(encoding="utf-8")[:20]
    with served.signed_in("alice") as http:
        unknown = http.get("/files/" + "0" * 64)
        assert unknown.status_code == 404 and "is indexed" in unknown.json()["detail"]
        for sneaky in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "%2E%2E", "leave%20policy.md"):
            answer = http.get(f"/files/{sneaky}")
            assert answer.status_code == 404, sneaky
            assert passwd not in answer.text
        # A path the router normalises away never reaches a file either.
        assert passwd not in http.get("/files/../../etc/passwd").text
    with served.http() as anonymous:
        assert anonymous.get(f"/files/{served.docs['leave policy.md']}").status_code == 401


def test_a_file_changed_since_ingest_is_not_served(served: Served, tmp_path: Path) -> None:
    original = served.settings.data_dir.parent / "public" / "leave policy.md"
    kept = original.read_bytes()
    original.write_text("# Leave\n\nSomething else entirely.\n", encoding="utf-8")
    try:
        with served.signed_in("alice") as http:
            answer = http.get(f"/files/{served.docs['leave policy.md']}")
        assert answer.status_code == 404 and "changed since" in answer.json()["detail"]
    finally:
        original.write_bytes(kept)


# -- mail attachments, taken out of their mail again -----------------------------------------------


def test_a_mail_attachment_opens_with_its_own_bytes_and_type(served: Served) -> None:
    rota = attachment_id(ROTA)
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{rota}")
    assert answer.status_code == 200 and answer.content == ROTA
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["content-disposition"].startswith('inline; filename="rota.txt"')
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in answer.headers
    opened = served.events("file_opened", "alice")[-1]
    assert opened.data["doc_id"] == rota and "attached to mail: Rota" in opened.data["title"]


def test_an_html_attachment_is_served_sandboxed(served: Served) -> None:
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{attachment_id(HOSTILE_HTML.encode())}")
    assert answer.status_code == 200 and answer.text == HOSTILE_HTML
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-disposition"].startswith('inline; filename="notice.html"')
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp


def test_an_attachment_of_an_attached_mail_opens(served: Served) -> None:
    from ingest.manifest import Manifest

    deep = attachment_id(DEEP)
    manifest = Manifest(served.settings.manifest_path)
    try:  # the rota mail holds fwd.eml, which holds deep.txt
        assert [s.rsplit("/", 1)[-1] for s in manifest.sources(deep)] == ["rota mail.eml#fwd.eml#deep.txt"]
    finally:
        manifest.close()
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{deep}")
    assert answer.status_code == 200 and answer.content == DEEP
    assert answer.headers["content-disposition"].startswith('inline; filename="deep.txt"')


def test_an_attachment_outside_the_users_groups_is_refused_and_audited(served: Served) -> None:
    costs = attachment_id(COSTS)
    with served.signed_in("alice") as http:
        refused = http.get(f"/files/{costs}")
    assert refused.status_code == 403 and "none of your groups" in refused.json()["detail"]
    assert b"310 thousand" not in refused.content
    denied = served.events("access_denied", "alice")[-1]
    assert denied.data["doc_id"] == costs and denied.data["reason"] == "groups"
    with served.signed_in("fiona") as http:
        assert http.get(f"/files/{costs}").content == COSTS


def test_an_attachment_of_a_mail_changed_since_ingest_is_not_served(served: Served) -> None:
    changing = served.settings.data_dir.parent / "public" / "changing.eml"
    kept = changing.read_bytes()
    memo = attachment_id(MEMO)
    # Same name, new bytes: served under the old document's id and groups, they would be a leak.
    changing.write_bytes(mail("Ferry", {"memo.txt": b"Memo: the ferry now leaves from berth 9.\n"}))
    try:
        with served.signed_in("alice") as http:
            answer = http.get(f"/files/{memo}")
            assert answer.status_code == 404
            detail = answer.json()["detail"]
            assert "can no longer be taken out of its mail" in detail
            assert "changed since it was indexed" in detail
            assert "berth 9" not in answer.text
            changing.unlink()  # a mail removed since ingest: the same answer
            assert http.get(f"/files/{memo}").status_code == 404
    finally:
        changing.write_bytes(kept)
    with served.signed_in("alice") as http:  # put back as it was: served again
        assert http.get(f"/files/{memo}").content == MEMO


@pytest.mark.skipif(
    not MSG_EXAMPLE.is_file(), reason=f"{MSG_EXAMPLE} is not here (../shared is checked out next to the repo)"
)
def test_an_outlook_attachment_opens(served: Served) -> None:
    from ingest.parsing import parse_file

    attachments = parse_file(MSG_EXAMPLE).attachments
    assert attachments, "the example Outlook item carries an attachment"
    first = attachments[0]
    with served.signed_in("alice") as http:
        answer = http.get(f"/files/{attachment_id(first.data)}")
    assert answer.status_code == 200 and answer.content == first.data
    assert f'filename="{first.name}"' in answer.headers["content-disposition"]
