# A headless Chromium (Debian's `chromium`) driven over its DevTools protocol: one page,
# commands and their answers over a websocket (websocket-client, pinned in
# scripts/server-test-env.sh). Only what the web tests need: navigate, evaluate, set a file
# input, screenshots.
import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request

import websocket


class Browser:
    def __init__(self, profile_dir, width=1400, height=1000):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe, "chromium is not installed (scripts/setup.sh installs Debian's chromium)"
        self.profile = str(profile_dir)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log = open(self.profile.rstrip("/") + ".log", "w")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "--user-data-dir=" + self.profile,
             f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: see {self.log.name}")
            if time.time() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        for _ in range(100):
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            time.sleep(0.05)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    def send(self, method, params=None):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def navigate(self, url):
        # A mark on the old document: waiting for it to be gone waits for the new one.
        self.js("window.__kvz_old_document = true")
        self.send("Page.navigate", {"url": url})
        self.wait_for("!window.__kvz_old_document && document.readyState === 'complete'", timeout=60,
                      what=f"{url} to load")

    def js(self, expr):
        """The value of a JavaScript expression (promises awaited); page exceptions raise."""
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails'].get('exception', r['exceptionDetails'])}")
        return r["result"].get("value")

    def wait_for(self, expr, timeout=300, what=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.js(f"!!({expr})"):
                return
            time.sleep(0.1)
        page_error = self.js("(document.getElementById('error') || {}).textContent")
        raise AssertionError(f"timed out after {timeout} s waiting for {what or expr}; page error: {page_error!r}")

    def set_files(self, selector, paths):
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"no element {selector}"
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]})

    def screenshot(self, path, selector=None):
        """A PNG of the element (or the whole page), also beyond the viewport."""
        if selector:
            r = self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                        f" return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }})()")
        else:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            r = [0, 0, size["width"], size["height"]]
        clip = {"x": r[0], "y": r[1], "width": max(1, r[2]), "height": max(1, r[3]), "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        data = base64.b64decode(shot["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data
