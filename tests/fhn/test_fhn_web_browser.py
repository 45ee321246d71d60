"""Headless Chromium on the recommender page: liking one style and disliking another moves
the shown outfits toward the liked style, and every image of every page load is loaded."""
import json
import os
import subprocess
import time
import urllib.request

import pytest

from fhn.web.demo_data import demo_paths, item_styles, start_server, stop_server
from tests.browser import CHROMIUM, CHROMIUM_FLAGS as FLAGS

# the demo net (D=16, 5 epochs from a random AlexNet) separates style 1 from style 2 best; its
# codes hardly tell styles 0 and 3 apart (fhn/README.md, Web recommender)
LIKE, DISLIKE = 1, 2

pytestmark = [pytest.mark.browser]

PAGE_STATE = """JSON.stringify({
  ready: document.readyState === 'complete',
  votes: Number(document.body.getAttribute('data-votes') || 0),
  outfits: Array.from(document.querySelectorAll('article')).map(a => ({
    id: Number(a.dataset.outfit),
    images: Array.from(a.querySelectorAll('img')).map(i => [i.alt, i.complete && i.naturalWidth > 0])}))
})"""


class DevTools(object):
    """The minimum of the Chrome DevTools protocol: navigate and evaluate on one page."""

    def __init__(self, profile):
        import websocket

        port_file = os.path.join(profile, "DevToolsActivePort")
        t0 = time.time()
        while not os.path.isfile(port_file) and time.time() - t0 < 30:
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        targets = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10).read())
        page = [t for t in targets if t["type"] == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps(dict(id=self.next_id, method=method, params=params)))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                return msg.get("result", {})

    def evaluate(self, expr):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def wait_for(self, predicate, timeout=20):
        t0 = time.time()
        while time.time() - t0 < timeout:
            state = json.loads(self.evaluate(PAGE_STATE) or "{}")
            if state and predicate(state):
                return state
            time.sleep(0.1)
        raise AssertionError("page did not reach the expected state: %s" % state)


def _loaded(state):
    return state["ready"] and len(state["outfits"]) == 10 and \
        all(ok for o in state["outfits"] for _, ok in o["images"])


def _share(state, styles):
    items = [styles[name] for o in state["outfits"] for name, _ in o["images"]]
    return sum(s == LIKE for s in items) / len(items)


def test_chromium_likes_move_recommendations_toward_the_liked_style(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("websocket")
    outfits, images = demo_paths(str(tmp_path / "serve"))
    server, url = start_server(["--outfits", outfits, "--images", images, "--seed", "1", "--quiet",
                                  "--pool", "20"])
    profile = str(tmp_path / "chromium")
    browser = subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % profile,
                                                     "--remote-debugging-port=0", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tools = DevTools(profile)
        styles = item_styles()
        shares = []
        for round_ in range(4):
            tools.call("Page.navigate", url=url + "/")
            state = tools.wait_for(_loaded)  # every image of this page load is loaded
            shares.append(_share(state, styles))
            if round_ == 3:
                break
            clicks = 0
            for o in state["outfits"]:
                kinds = [styles[name] for name, _ in o["images"]]
                style = max(set(kinds), key=kinds.count)
                if style not in (LIKE, DISLIKE):
                    continue
                tools.evaluate("document.querySelector('article[data-outfit=\"%d\"] .%s').click()"
                               % (o["id"], "like" if style == LIKE else "dislike"))
                clicks += 1
            tools.wait_for(lambda s, n=clicks: s["votes"] == n)  # every POST / answered
            status = tools.evaluate("document.getElementById('status').textContent")
            assert clicks == 0 or status.startswith("You "), status  # the last answer was OK
        print("liked-style share of the shown outfits per page load:", shares)
        assert shares[-1] > shares[0] and shares[-1] >= 0.6, shares
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        stop_server(server)
