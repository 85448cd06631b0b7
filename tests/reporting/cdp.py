"""A small Chrome DevTools protocol client over ``--remote-debugging-pipe``.

Chromium reads protocol messages from file descriptor 3 and writes its replies and
events to descriptor 4, each message a JSON object followed by a NUL byte. A pipe
needs no network port, so the tests open nothing but two local pipes.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Return the path of Debian's chromium, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ProtocolError(RuntimeError):
    """Chromium returned an error or did not reply in time."""


class Chromium:
    """One headless Chromium process driven through the DevTools pipe.

    Use as a context manager; :meth:`load` opens a page and returns what it logged.
    """

    def __init__(self, executable: str, user_data_dir: Path, log_path: Path, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict] = []
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def attach_pipes():
            # Move the pipe ends above the range 3-4 first, so that dup2 cannot clobber one
            # with the other, then put them where Chromium expects them.
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=attach_pipes, close_fds=False,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Ask the browser to close, then make sure the process has ended."""
        if self.process.poll() is None:
            try:
                self.send("Browser.close", timeout_s=5)
            except (ProtocolError, OSError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout_s: float | None = None) -> dict:
        """Send one command and return its result, keeping the events that arrive meanwhile."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        os.write(self._to_browser, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ProtocolError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for_event(self, method: str, session_id: str, timeout_s: float | None = None) -> dict:
        """Return the first event ``method`` of the session, waiting for it when needed."""
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session_id:
                return event
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)
                if message["method"] == method and message.get("sessionId") == session_id:
                    return message

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError("timed out waiting for chromium")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ProtocolError(f"chromium closed the pipe (exit status {self.process.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def load(self, url: str, width: int = 1280, height: int = 900) -> "PageResult":
        """Open ``url`` in a new tab, wait until it and its images loaded, and inspect it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(method, session_id=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session_id=session)
        self.send("Page.navigate", {"url": url}, session_id=session)
        self.wait_for_event("Page.loadEventFired", session)
        self.evaluate(session, "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
        return PageResult(self, session)

    def evaluate(self, session: str, expression: str):
        """Evaluate JavaScript in the page and return its value (promises are awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session_id=session)
        if "exceptionDetails" in result:
            raise ProtocolError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")


class PageResult:
    """What a loaded page reported: console errors, images and a full-page screenshot."""

    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def errors(self) -> list[str]:
        """Return console errors, uncaught exceptions and browser log errors of the page."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append("exception: " + params.get("exceptionDetails", {}).get("text", ""))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append("log: " + params["entry"].get("text", ""))
        return found

    def images(self) -> list[dict]:
        """Return, per <img>, whether it finished loading and its natural width."""
        return self.browser.evaluate(
            self.session,
            "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")

    def evaluate(self, expression: str):
        return self.browser.evaluate(self.session, expression)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page, not only the viewport."""
        metrics = self.browser.send("Page.getLayoutMetrics", session_id=self.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                            "clip": clip}, session_id=self.session)
        path.write_bytes(base64.b64decode(shot["data"]))
