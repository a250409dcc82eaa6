#!/usr/bin/env python3
"""Drives the dashboard in headless Chromium over the DevTools protocol, through a pipe (no
debugging port): opens the address `host serve` printed (with `?token=`, which sets the cookie
that the page's requests then send), waits for the topology and its rates, clicks "Save" with
the mouse, waits for the new savepoint to show in the list; then types the two job files into
the shadow run's fields, clicks its button and waits for its result; and takes a screenshot.

Usage: dashboard.py URL SCREENSHOT.png OLD.toml NEW.toml
Prints JSON: {"address": ..., "edge_labels": [...], "clipped": [...], "savepoints_before": [...],
"savepoints_after": [...], "shadow_outcome": ..., "shadow_sinks": [[...], ...]}, where "address"
is the page's address once it loaded (the token gone from it), "clipped" names the operators
whose box the drawing cuts off, and the shadow fields are the text the page shows.
"""
import base64
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

WAIT_S = 60


class Browser:
    def __init__(self, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Chromium reads commands on fd 3 and writes answers on fd 4.
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "--window-size=1280,1000", f"--user-data-dir={profile}",
             "about:blank"],
            preexec_fn=fds, close_fds=False, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer, self.next_id, self.session = b"", 0, None

    def call(self, method, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url):
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, what, expression):
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def click(self, selector):
        # Scrolled into the window first: a mouse press outside the window reaches nothing.
        box = self.js(f"(() => {{ const e = document.querySelector('{selector}'); e.scrollIntoView({{block: 'center'}});"
                      f" const r = e.getBoundingClientRect();"
                      f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self):
        # Chromium's helpers (zygote, renderers) outlive a killed browser process and keep
        # writing to the profile: end the whole session it leads.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


SAVEPOINTS = "[...document.querySelectorAll('#savepoints tr td:first-child')].map(td => td.textContent)"
RATES = ("(() => { const l = [...document.querySelectorAll('#topology .edge-label')].map(e => e.textContent);"
         " return l.length >= 3 && l.every(t => /^[1-9][0-9,]*\\/s/.test(t)) ? l : null; })()")


CLIPPED = ("(() => { const s = document.getElementById('topology').getBoundingClientRect();"
           " return [...document.querySelectorAll('#topology .node')].filter(n => {"
           " const r = n.getBoundingClientRect();"
           " return r.left < s.left || r.right > s.right + 0.5 || r.top < s.top || r.bottom > s.bottom + 0.5;"
           " }).map(n => n.dataset.operator); })()")


SHADOW_ENDED = ("(() => { const o = document.querySelector('#shadow-outcome span');"
                " return o && o.textContent !== 'running' ? o.textContent : null; })()")
SHADOW_SINKS = "[...document.querySelectorAll('#shadow-sinks tr')].slice(1).map(r => [...r.cells].map(c => c.textContent))"


def shadow_run(browser, old, new):
    """Types the job files and a bound into the shadow run's fields, clicks its button, waits
    for its result: how it ended, and the sinks' rows."""
    for field, text in (("#shadow-old", old), ("#shadow-new", new), ("#shadow-records", "50")):
        browser.click(field)
        browser.call("Input.insertText", text=text)
    browser.click("#shadow-run")
    try:
        outcome = browser.wait_for("the shadow run's result", SHADOW_ENDED)
    except RuntimeError as e:
        said = browser.js("document.getElementById('message').textContent")
        raise RuntimeError(f"{e}; the page says: {said}") from None
    return outcome, browser.js(SHADOW_SINKS)


def main(url, screenshot, old, new):
    # A helper that lingers a moment after the kill must not fail the test at clean-up.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = Browser(profile)
        try:
            browser.open(url)
            labels = browser.wait_for("the topology with rates on every edge", RATES)
            address = browser.js("location.href")
            clipped = browser.js(CLIPPED)
            before = browser.js(SAVEPOINTS)
            browser.click("#save")
            after = browser.wait_for("a new savepoint in the list",
                                     f"(() => {{ const s = {SAVEPOINTS}; return s.length > {len(before)} ? s : null; }})()")
            browser.wait_for("the rates again", RATES)
            outcome, sinks = shadow_run(browser, old, new)
            shot = browser.call("Page.captureScreenshot", format="png")
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    print(json.dumps({"address": address, "edge_labels": labels, "clipped": clipped, "savepoints_before": before, "savepoints_after": after,
                      "shadow_outcome": outcome, "shadow_sinks": sinks}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
