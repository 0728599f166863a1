"""A real headless Chromium driven over the Chrome DevTools Protocol (a websocket), for testing the HTML report.

`make browser` (a step of `make test`) installs the Debian chromium package; a test never installs it, and a missing
one fails the browser tests with a line that says so. No browser is ever downloaded by a Python package.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

BINARY = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-port=0", "--window-size=1400,1000"]


def find_chromium() -> str:
    """The path of the Chromium binary; a one-line pytest failure that names `make browser` when there is none."""
    found = shutil.which("chromium") or (BINARY if Path(BINARY).exists() else None)
    if found is None:
        pytest.fail("chromium is missing: run `make browser` (make test does) to install the Debian package",
                    pytrace=False)
    return found


class Chromium:
    """One headless browser with one page; `send` runs a DevTools command, events are kept in `events`."""

    def __init__(self, binary: str, timeout: float = 30.0):
        import inspect
        from contextlib import ExitStack

        from websockets.sync.client import connect
        self.timeout = timeout
        self.stack = ExitStack()
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            direct = {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}  # never via a proxy
            self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None,
                                                       open_timeout=timeout, **direct))
        except BaseException:
            self.close()
            raise
        self.events: list[dict] = []
        self.next_id = 0
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def _receive(self) -> dict:
        message = json.loads(self.ws.recv(timeout=self.timeout))
        if "method" in message:
            self.events.append(message)
        return message

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, method: str, since: int = 0) -> dict:
        """The first event `method` at or after position `since` of `events`, waiting for it if needed."""
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events[since:]:
                if event["method"] == method:
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} event")
            self._receive()

    def open(self, url: str) -> None:
        since = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", since)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse_move(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:500])
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path, full_page: bool = True) -> None:
        import base64
        params = {"format": "png", "captureBeyondViewport": full_page}
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))

    def close(self) -> None:
        self.stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
