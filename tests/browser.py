"""Open HTML reports in headless Chromium, offline, and say what went wrong (tests only).

Dependency-free: the browser is driven through the DevTools protocol over ``--remote-debugging-pipe``
(the browser reads NUL-terminated JSON commands on fd 3 and writes responses and events on fd 4), with
the stdlib and PIL. Nothing can leave the machine: every host resolves to nothing, every request goes to a
proxy on a closed local port, and the page's network is emulated offline; requests are still *seen*
(``Network.requestWillBeSent``), so a test can count the ones that tried.

    with Browser() as b:                 # one browser, a fresh tab per page
        page = b.open(Path("report.html"))
        problems = check_report(Path("report.html"), browser=b, min_images=1)

``open_page(path)`` and ``check_report(path)`` without ``browser=`` start and kill a browser of their own.
In a pytest fixture, ``require_chromium()`` finds Chromium, installs Debian's ``chromium`` with apt-get when
running as root, and otherwise fails the test (never skips it).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-error", "devtools")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_SCREENSHOT_HEIGHT = 16000  # css px; taller pages are captured scaled down
VIEWPORT = (1280, 900)

_JS_IMAGES = """[...document.images].map(i => ({src: i.currentSrc || i.src || '', complete: i.complete,
    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))"""


class BrowserError(RuntimeError):
    pass


def chromium_path() -> str | None:
    """``$MECHREPRO_CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    env = os.environ.get("MECHREPRO_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium to use in tests. If there is none and we are root with apt-get, install Debian's
    ``chromium``; if that is impossible or fails, ``pytest.fail`` (these tests must not be skipped)."""
    import pytest

    found = chromium_path()
    if found:
        return found
    apt = shutil.which("apt-get")
    why = "not root" if os.geteuid() != 0 else "no apt-get" if not apt else ""
    if not why:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = [apt, "install", "-y", "--no-install-recommends", "chromium"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:  # stale package lists: update once and retry
            subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        found = chromium_path()
        if found:
            return found
        why = f"`{' '.join(cmd)}` failed: {(r.stdout + r.stderr)[-1500:]}"
    pytest.fail("the browser tests need Chromium: install Debian's `chromium` (apt-get install chromium) or set "
                f"MECHREPRO_CHROMIUM to a Chromium/Chrome binary ({why})", pytrace=False)


@dataclass
class ImageInfo:
    src: str = field(repr=False)
    complete: bool
    naturalWidth: int  # noqa: N815 (the DOM's names)
    naturalHeight: int  # noqa: N815

    @property
    def prefix(self) -> str:
        return self.src[:60] + ("…" if len(self.src) > 60 else "")


@dataclass
class PageResult:
    url: str
    title: str = ""
    text: str = ""  # document.body.innerText
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt, dismissed
    images: list[ImageInfo] = field(default_factory=list)
    screenshot: bytes = field(default=b"", repr=False)  # PNG of the full page
    js: dict[str, Any] = field(default_factory=dict)  # results of open(..., js={name: expression})
    network_busy: bool = False  # still requesting when examined (half the timeout after the load event)
    seconds: float = 0.0

    @property
    def external(self) -> list[str]:
        return [u for u in self.requests if u.split(":", 1)[0].lower() not in LOCAL_SCHEMES]


def image_is_blank(png: bytes, tolerance: int = 2) -> bool:
    """True if every pixel is within ``tolerance`` of one colour (transparency flattened onto white), or the
    bytes are not an image at all."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(png))
        im.load()
    except Exception:
        return True
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    extrema = im.convert("RGB").getextrema()
    return all(hi - lo <= tolerance for lo, hi in extrema)


def decode_data_uri(src: str) -> tuple[str, bytes] | None:
    """(mime type, bytes) of a ``data:`` URI, None if it is not one or does not decode."""
    if not src.startswith("data:") or "," not in src:
        return None
    head, payload = src[5:].split(",", 1)
    mime = head.split(";")[0].lower()
    try:
        if head.endswith(";base64"):
            return mime, base64.b64decode(payload, validate=False)
        from urllib.parse import unquote_to_bytes

        return mime, unquote_to_bytes(payload)
    except Exception:
        return None


def _high_fd(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium over a DevTools pipe; ``open(path)`` loads a page in a fresh tab."""

    def __init__(self, executable: str | None = None, *, startup_timeout: float = 60):
        self.executable = executable or chromium_path()
        if not self.executable:
            raise BrowserError("Chromium not found (set MECHREPRO_CHROMIUM or install chromium)")
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self._next_id = 0
        self._events: queue.Queue = queue.Queue()
        self._pending: dict[int, dict] = {}
        self._write_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="mechrepro-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, the browser reads them on fd 3
        ev_r, ev_w = os.pipe()  # the browser writes on fd 4, we read
        cmd_r, ev_w = _high_fd(cmd_r), _high_fd(ev_w)  # >= 10: dup2 onto 3 and 4 clobbers neither
        w, h = VIEWPORT
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--metrics-recording-only",
                "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
                "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,DialMediaRouteProvider",
                "--no-pings", "--mute-audio", "--hide-scrollbars", f"--window-size={w},{h}",
                # nothing leaves: no name resolves, every request is sent to a closed local port
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--allow-file-access-from-files", f"--user-data-dir={self._tmp}",
                "--remote-debugging-pipe", "about:blank"]
        self._log = open(Path(self._tmp) / "chromium.log", "wb")  # noqa: SIM115

        def pipes_on_3_and_4() -> None:  # in the child, before exec; the originals (>= 10, close-on-exec) vanish
            os.dup2(cmd_r, 3)
            os.dup2(ev_w, 4)

        try:
            self.proc = subprocess.Popen([self.executable, *args], preexec_fn=pipes_on_3_and_4, close_fds=False,
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                         start_new_session=True)
        finally:
            os.close(cmd_r)
            os.close(ev_w)
        self._write_fd = cmd_w
        self._reader = threading.Thread(target=self._read_loop, args=(ev_r,), daemon=True)
        self._reader.start()
        try:
            self.send("Browser.getVersion", timeout=self.startup_timeout)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)  # its own session: the browser and its renderers, nothing else
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if self._write_fd is not None:
            try:
                os.close(self._write_fd)
            except OSError:
                pass
            self._write_fd = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (Path(self._tmp) / "chromium.log").read_bytes()[-n:].decode(errors="replace") if self._tmp else ""
        except OSError:
            return ""

    # -- protocol ----------------------------------------------------------------------------------------
    def _read_loop(self, fd: int) -> None:
        buf = b""
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                buf += chunk
                *msgs, buf = buf.split(b"\0")
                for m in msgs:
                    if m:
                        self._events.put(json.loads(m))
        self._events.put(None)  # EOF: the browser is gone

    def _post(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._write_fd, data):]
        return self._next_id

    def _next(self, deadline: float) -> dict | None:
        """The next message before ``deadline`` (None on timeout); responses are filed, events returned."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            msg = self._events.get(timeout=left)
        except queue.Empty:
            return None
        if msg is None:
            self._events.put(None)
            raise BrowserError(f"Chromium exited (rc {self.proc.poll() if self.proc else None}): {self.log_tail()}")
        if "id" in msg:
            self._pending[msg["id"]] = msg
            return {}
        return msg

    def send(self, method: str, params: dict | None = None, session: str | None = None, *, timeout: float = 30,
             on_event=None) -> dict:
        """Send a command and wait for its result; events meanwhile go to ``on_event``."""
        i = self._post(method, params, session)
        deadline = time.monotonic() + timeout
        while i not in self._pending:
            ev = self._next(deadline)
            if ev is None:
                raise TimeoutError(f"{method}: no answer from Chromium in {timeout:g} s")
            if ev and on_event:
                on_event(ev)
        msg = self._pending.pop(i)
        if "error" in msg:
            raise BrowserError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    # -- pages -------------------------------------------------------------------------------------------
    def open(self, path: str | Path, *, timeout: float = 60, settle: float = 0.5,
             js: dict[str, str] | None = None, screenshot: bool = True, emulate_offline: bool = True) -> PageResult:
        """Load ``path`` (a file, or any URL) in a fresh tab, wait for the load event and for the network to
        be quiet ``settle`` seconds, and collect requests, console errors, dialogs, text, images, a full-page
        screenshot and the values of ``js`` (name -> expression). ``emulate_offline=False`` leaves only the launch
        flags (resolver and proxy) between the page and the network; tests use it to check those flags."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        url = path if isinstance(path, str) and ":" in path.split("/", 1)[0] else Path(path).resolve().as_uri()
        res = PageResult(url=url)
        state = {"loaded": False, "last_net": time.monotonic()}
        target = self.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = None

        def on_event(ev: dict) -> None:
            if ev.get("sessionId") != session:
                return
            method, p = ev.get("method", ""), ev.get("params", {})
            if method.startswith("Network."):
                state["last_net"] = time.monotonic()
            if method == "Network.requestWillBeSent":
                res.requests.append(p["request"]["url"])
            elif method == "Page.loadEventFired":
                state["loaded"] = True
            elif method == "Page.javascriptDialogOpening":
                res.dialogs.append(f"{p.get('type')}: {p.get('message')}")
                self._post("Page.handleJavaScriptDialog", {"accept": False}, session)
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                res.console_errors.append(f"console.{p['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                desc = d.get("exception", {}).get("description") or d.get("text", "")
                res.console_errors.append(f"uncaught exception: {desc}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                res.console_errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())

        def cmd(method: str, params: dict | None = None) -> dict:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{url}: not done after {timeout:g} s")
            return self.send(method, params, session, timeout=left, on_event=on_event)

        try:
            session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                timeout=timeout)["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                cmd(f"{domain}.enable")
            if emulate_offline:
                cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                         "uploadThroughput": -1})
            nav = cmd("Page.navigate", {"url": url})
            if nav.get("errorText"):
                raise BrowserError(f"{url}: navigation failed: {nav['errorText']}")
            quiet_by = t0 + timeout / 2  # past this, a loaded page that keeps requesting is examined as it is
            while not state["loaded"] or time.monotonic() - state["last_net"] < settle:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{url}: no load event after {timeout:g} s")
                if state["loaded"] and time.monotonic() >= quiet_by:
                    res.network_busy = True
                    break
                ev = self._next(min(deadline, time.monotonic() + 0.1))
                if ev:
                    on_event(ev)

            def evaluate(expr: str):
                r = cmd("Runtime.evaluate", {"expression": expr, "returnByValue": True})
                if "exceptionDetails" in r:
                    raise BrowserError(f"{expr!r}: {r['exceptionDetails'].get('text')}")
                return r["result"].get("value")

            res.title = evaluate("document.title") or ""
            res.text = evaluate("document.body ? document.body.innerText : ''") or ""
            res.images = [ImageInfo(**i) for i in evaluate(_JS_IMAGES)]
            res.js = {name: evaluate(expr) for name, expr in (js or {}).items()}
            if screenshot:
                size = cmd("Page.getLayoutMetrics")["cssContentSize"]
                w, h = max(1, int(size["width"])), max(1, int(size["height"]))
                params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
                if h > MAX_SCREENSHOT_HEIGHT:
                    params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": MAX_SCREENSHOT_HEIGHT / h}
                res.screenshot = base64.b64decode(cmd("Page.captureScreenshot", params)["data"])
            # a last look for events that arrived with the answers
            while (ev := self._next(time.monotonic() + 0.05)) is not None:
                if ev:
                    on_event(ev)
        finally:
            try:
                self.send("Target.closeTarget", {"targetId": target}, timeout=10)
            except (TimeoutError, BrowserError):
                pass
        res.seconds = time.monotonic() - t0
        return res


def open_page(path: str | Path, *, timeout: float = 60, browser: Browser | None = None, **kw) -> PageResult:
    """:meth:`Browser.open` in ``browser``, or in a browser started and killed for this page alone."""
    if browser is not None:
        return browser.open(path, timeout=timeout, **kw)
    with Browser() as b:
        return b.open(path, timeout=timeout, **kw)


def page_problems(page: PageResult, *, min_images: int = 0) -> list[str]:
    """Human-readable problems of a loaded page (empty: it is fine)."""
    problems = [f"external request: {u}" for u in page.external]
    problems += [f"console error: {e}" for e in page.console_errors]
    problems += [f"dialog opened: {d}" for d in page.dialogs]
    if page.network_busy:
        problems.append("the page never stopped making requests")
    if not page.screenshot:
        problems.append("no screenshot")
    elif image_is_blank(page.screenshot):
        problems.append("the page renders blank (screenshot is one colour)")
    if len(page.images) < min_images:
        problems.append(f"{len(page.images)} images, expected at least {min_images}")
    for n, im in enumerate(page.images, 1):
        where = f"image {n} ({im.prefix})"
        if not im.complete or im.naturalWidth == 0 or im.naturalHeight == 0:
            problems.append(f"{where} is broken (complete={im.complete}, {im.naturalWidth}x{im.naturalHeight})")
            continue
        decoded = decode_data_uri(im.src)
        if decoded is None:
            if not im.src.startswith("data:"):
                problems.append(f"{where} is not embedded (not a data: URI)")
            else:
                problems.append(f"{where}: data URI does not decode")
        elif decoded[0] in ("image/png", "image/jpeg", "image/gif", "image/webp") and image_is_blank(decoded[1]):
            problems.append(f"{where} is blank (one colour)")
    return problems


def check_report(path: str | Path, *, browser: Browser | None = None, min_images: int = 0,
                 timeout: float = 60) -> list[str]:
    """Open a report (or the index) offline and list its problems: requests leaving the machine, console
    errors, dialogs, a blank page, too few / broken / blank / non-embedded images. Empty list: all good."""
    try:
        page = open_page(path, timeout=timeout, browser=browser)
    except (TimeoutError, BrowserError) as e:
        return [f"{path}: could not be checked: {e}"]
    return [f"{Path(path).name}: {p}" for p in page_problems(page, min_images=min_images)]
