"""The real server (waitress, demo catalogue) on loopback: bounded load test, separate sessions, bad input."""
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fhn.web.demo_data import FIXTURE, Client, demo_paths, start_server, stop_server
from fhn.web.recommender import Catalogue, cold_start_code

SESSIONS = 50
ROUNDS = 40  # requests per session: 2000 in all


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("fhn_serve")
    outfits, images = demo_paths(str(out))
    proc, url = start_server(["--outfits", outfits, "--images", images, "--seed", "0", "--quiet",
                              "--threads", "8"])
    yield url
    stop_server(proc)


def _post(url, body, content_type="application/x-www-form-urlencoded"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_load_50_sessions_mixed_requests_no_errors_states_apart(server):
    cat = Catalogue.load(FIXTURE)
    clients = [Client(server) for _ in range(SESSIONS)]
    latencies, errors, sent = [], [], [[] for _ in range(SESSIONS)]
    lock = threading.Lock()

    def visitor(i):
        rng = np.random.default_rng(i)
        for r in range(ROUNDS):
            t0 = time.perf_counter()
            try:
                kind = r % 4
                if kind == 0:
                    with clients[i].opener.open(server + "/", timeout=30) as resp:
                        assert resp.status == 200 and resp.read().count(b"<img ") == 30
                elif kind == 3:
                    assert len(clients[i].recommend(10)["outfits"]) == 10
                else:
                    action, outfit = ("yes", "no")[int(rng.integers(2))], int(rng.integers(len(cat)))
                    assert clients[i].vote(action, outfit) == "OK"
                    sent[i].append((action, outfit))
            except Exception as err:  # noqa: BLE001  counted, reported below
                with lock:
                    errors.append(repr(err))
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.time()
    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    wall = time.time() - t0
    ms = 1000 * np.array(latencies)
    print("load test: %d requests, %d sessions, %.1f s, p50 %.1f ms, p95 %.1f ms, errors %d"
          % (len(ms), SESSIONS, wall, np.percentile(ms, 50), np.percentile(ms, 95), len(errors)))
    assert not errors, errors[:3]
    assert len(ms) == SESSIONS * ROUNDS and wall < 60
    # every session's code is the cold start of exactly its own clicks, in its order
    for i in (0, 17, 49):
        got = clients[i].recommend(3)
        yes = [o for a, o in sent[i] if a == "yes"]
        no = [o for a, o in sent[i] if a == "no"]
        assert got["clicks"] == dict(yes=len(yes), no=len(no))
        posi = sum((cat.codes[o] for o in yes), np.zeros(cat.dim))
        nega = sum((cat.codes[o] for o in no), np.zeros(cat.dim))
        assert got["code"] == cold_start_code(cat, posi, len(yes), nega, len(no)).tolist()
    stats = json.loads(urllib.request.urlopen(server + "/api/stats", timeout=10).read())
    assert stats["sessions"] >= SESSIONS


def test_bad_input_over_http_keeps_serving(server):
    cases = [(b"", "missing field 'action'"), (b"action=maybe&outfit=1", "action must be yes or no"),
             (b"action=yes&outfit=abc", "non-negative integer"),
             (b"action=yes&outfit=100000", "out of range"), (b"action=yes&outfit=1&x=2", "unknown field"),
             (b"action=yes&outfit=1&pad=" + b"x" * 20000, "")]
    for body, reason in cases:
        status, text = _post(server + "/", body)
        assert 400 <= status < 500 and reason in text and text.count("\n") == 1, (body[:40], status, text)
    status, text = _post(server + "/api/click", b"{broken", "application/json")
    assert status == 400 and "error" in json.loads(text)
    try:
        urllib.request.urlopen(server + "/no/such/route", timeout=10)
        raise AssertionError("404 expected")
    except urllib.error.HTTPError as err:
        assert err.code == 404
    assert _post(server + "/", b"action=yes&outfit=1") == (200, "OK")
