"""Headless Chromium driven over the DevTools protocol, through a pipe: no extra packages.

The review page's browser tests, its load-time benchmark and its screenshot use this.
Chromium started with `--remote-debugging-pipe` reads protocol messages (JSON, each ended
by a NUL byte) on its file descriptor 3 and writes replies and events on 4, so no port is
opened and no websocket library is needed. Only what the tests use is wrapped: open a page,
evaluate JavaScript, type keys, collect console errors, allow downloads, take screenshots.

    with Browser.launch() as b:
        page = b.new_page(width=1280, height=800)
        page.goto(Path("report/review.html").resolve().as_uri())
        n = page.eval("document.querySelectorAll('[data-face]').length")
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
              "chrome", "headless_shell")
ENV_BINARY = "METFACES_CHROMIUM"


class BrowserError(RuntimeError):
    """The browser could not start, died, or a protocol command failed."""


def find_chromium() -> Optional[str]:
    """$METFACES_CHROMIUM, else the first Chromium/Chrome on PATH (Debian: `chromium`)."""
    env = os.environ.get(ENV_BINARY)
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    reply: Optional[dict] = None


# puts the pipe ends on fds 3 and 4 and execs the browser (a shell cannot name fds > 9)
_TRAMPOLINE = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); "
               "os.dup2(w, 4); os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")


def _above(fd: int, lowest: int) -> int:
    """The same pipe end on a descriptor >= lowest (the original is closed)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium process and its protocol connection."""

    def __init__(self, proc: subprocess.Popen, to_browser, from_browser, profile: str):
        self._proc = proc
        self._out = to_browser
        self._in = from_browser
        self._profile = profile
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict = {}
        self._events: list = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    @classmethod
    def launch(cls, binary: Optional[str] = None, timeout: float = 30.0,
               extra_args: tuple = ()) -> "Browser":
        binary = binary or find_chromium()
        if not binary:
            raise BrowserError("no Chromium found (install Debian's `chromium`, or set "
                               f"${ENV_BINARY} to the browser's path)")
        profile = tempfile.mkdtemp(prefix="metfaces-chromium-")
        args = [binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--mute-audio", "--hide-scrollbars",
                "--disable-dev-shm-usage", *extra_args, "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
        cmd_r, cmd_w = os.pipe()   # we write commands, the browser reads them on fd 3
        ev_r, ev_w = os.pipe()     # the browser writes on fd 4, we read
        # the child's ends above 4, so putting them on 3 and 4 cannot overwrite one another
        cmd_r, ev_w = _above(cmd_r, 5), _above(ev_w, 5)
        try:
            proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(cmd_r), str(ev_w), *args],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, pass_fds=(cmd_r, ev_w))
        except OSError as e:
            shutil.rmtree(profile, ignore_errors=True)
            raise BrowserError(f"cannot start {binary}: {e}") from None
        finally:
            os.close(cmd_r)
            os.close(ev_w)
        b = cls(proc, os.fdopen(cmd_w, "wb", buffering=0), os.fdopen(ev_r, "rb", buffering=0),
                profile)
        try:
            b.version = b.send("Browser.getVersion", timeout=timeout)
        except BrowserError:
            b.close()
            raise
        return b

    # ---- protocol -----------------------------------------------------------------------

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(1 << 16)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "id" in msg:
                    pending = self._pending.pop(msg["id"], None)
                    if pending is not None:
                        pending.reply = msg
                        pending.done.set()
                else:
                    with self._cond:
                        self._events.append(msg)
                        self._cond.notify_all()
        for p in list(self._pending.values()):  # the browser went away
            p.done.set()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 30.0) -> dict:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            pending = self._pending[mid] = _Pending()
            msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            try:
                self._out.write(json.dumps(msg).encode() + b"\0")
            except OSError as e:
                raise BrowserError(f"browser connection lost: {e}") from None
        if not pending.done.wait(timeout):
            self._pending.pop(mid, None)
            raise BrowserError(f"{method}: no reply within {timeout} s")
        if pending.reply is None:
            raise BrowserError(f"{method}: the browser exited")
        if "error" in pending.reply:
            raise BrowserError(f"{method}: {pending.reply['error'].get('message')}")
        return pending.reply.get("result", {})

    def wait_event(self, method: str, session: Optional[str] = None, timeout: float = 30.0,
                   since: int = 0, predicate=None) -> dict:
        """The first event `method` (at index >= since) matching `predicate`; its params."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self._events[since:]:
                    if ev.get("method") == method and (session is None or ev.get("sessionId") == session) \
                            and (predicate is None or predicate(ev.get("params", {}))):
                        return ev.get("params", {})
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise BrowserError(f"no {method} event within {timeout} s")
                self._cond.wait(left)

    def events(self, session: Optional[str] = None) -> list:
        with self._cond:
            return [e for e in self._events if session is None or e.get("sessionId") == session]

    @property
    def event_count(self) -> int:
        with self._cond:
            return len(self._events)

    # ---- pages --------------------------------------------------------------------------

    def new_page(self, width: int = 1280, height: int = 800) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                        "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        return page

    def allow_downloads(self, folder: Path) -> None:
        self.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder),
                                                  "eventsEnabled": True})

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except BrowserError:
                    pass
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
        finally:
            for f in (self._out, self._in):
                try:
                    f.close()
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab: navigate, evaluate, press keys, read console errors, screenshot."""

    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def send(self, method: str, params: Optional[dict] = None, timeout: float = 30.0) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str, timeout: float = 60.0) -> float:
        """Navigate and wait for the load event; returns the seconds it took."""
        since = self.browser.event_count
        t0 = time.perf_counter()
        reply = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, timeout, since)
        return time.perf_counter() - t0

    def eval(self, expression: str, timeout: float = 30.0, await_promise: bool = False) -> Any:
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": await_promise}, timeout=timeout)
        if "exceptionDetails" in reply:
            d = reply["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {(d.get('exception') or {}).get('description') or d.get('text')}")
        return reply.get("result", {}).get("value")

    def press(self, key: str) -> None:
        """A key press as a person makes it (keydown + keyup, with text for printables)."""
        named = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "Enter": 13,
                 "Escape": 27}
        code = named.get(key, ord(key.upper()) if len(key) == 1 else 0)
        text = "\r" if key == "Enter" else (key if key not in named else "")
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown", "key": key,
                                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        if text:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key,
                                             "windowsVirtualKeyCode": code,
                                             "nativeVirtualKeyCode": code})

    def click(self, selector: str) -> None:
        """Click the middle of the first element matching `selector` (scrolled into view)."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: 'center'}});
            const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})

    def console_errors(self) -> list:
        """Console errors, uncaught exceptions and failed loads this page reported."""
        out = []
        for ev in self.browser.events(self.session):
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                   for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str((d.get("exception") or {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
        return out

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
