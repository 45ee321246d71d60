#!/usr/bin/env python
"""Demo catalogue of the web recommender: data, codes fixture, and the scripted session of `make demo`.

The catalogue data set is fhn/make_demo_data.py's demo data (same seed, users and items, so
the same images and the same train / val tuples the fhn demo trains on) with a larger test
split: 200 positive outfits per user, served as the catalogue (~700 distinct outfits, mostly
of one style each). `demo_outfits.npz` next to this file holds what extract_outfits.py wrote
for that catalogue with the fhn demo's trained FHN-T3 (D=16); `make serve` uses it, so it
starts in seconds. Rebuild it with `python fhn/web/demo_data.py --fixture CHECKPOINT`.
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from http.cookiejar import CookieJar  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(HERE, "demo_outfits.npz")
USERS, ITEMS, SEED = 4, 12, 0  # fhn/make_demo_data.py defaults: the fhn demo's data
CATALOGUE = dict(users=USERS, items=ITEMS, posi=(6, 2, 200), nega_ratio=(1, 1, 1), seed=SEED)


def make_catalogue(out_dir):
    """Build the catalogue data set under out_dir (skipped when its LMDB exists); its polyvore root."""
    root = os.path.join(out_dir, "data", "polyvore")
    if not os.path.isfile(os.path.join(root, "images", "lmdb", "data.mdb")):
        from fhn.make_demo_data import make_data

        make_data(out_dir, **CATALOGUE)
    return root


def demo_paths(out_dir):
    """(outfits .npz, image LMDB) for `backend.py --demo`: the fixture and the built images."""
    root = make_catalogue(out_dir)
    return FIXTURE, os.path.join(root, "images", "lmdb")


def item_styles():
    """{image name: style} of the demo items (make_demo_data: style = item index % users)."""
    from fhn.make_demo_data import CATES, item_name

    return {item_name(cate, i, i % USERS): i % USERS for cate in CATES for i in range(ITEMS)}


def extract_config(out_dir, checkpoint):
    """extract_outfits config for the catalogue with the fhn demo's visual-only FHN-T3."""
    from fhn.demo import DATA, NET

    data = dict(DATA, data_root=os.path.join(out_dir, "data", "polyvore"),
                image_root=os.path.join(out_dir, "data", "polyvore"), phase="test",
                batch_size=36, nega_mode="RandomFix", data_mode="PosiOnly", shuffle=False)
    return dict(data_param=data, net_param=dict(NET, name="FashionNetDeploy"),
                load_trained=os.path.abspath(checkpoint), gpus=[], log_level="WARNING")


def extract(out_dir, checkpoint, out, log=None):
    """Catalogue data + extract_outfits.py (a subprocess, as a user runs it) -> out .npz."""
    import yaml

    make_catalogue(out_dir)
    cfg = os.path.join(out_dir, "extract_outfits.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(extract_config(out_dir, checkpoint), f, sort_keys=False)
    cmd = [sys.executable, os.path.join(REPO, "fhn", "scripts", "extract_outfits.py"),
           "extract-features", "--cfg", cfg, "--out", out, "--seed", "0"]
    with open(log or os.devnull, "a") as f:
        proc = subprocess.run(cmd, cwd=out_dir, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit("extract_outfits.py failed (exit %d): %s" % (proc.returncode, " ".join(cmd)))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, log_path=None, timeout=60):
    """backend.py on a free loopback port; (process, base url) once it answers."""
    port = free_port()
    cmd = [sys.executable, os.path.join(HERE, "backend.py"), "--host", "127.0.0.1",
           "--port", str(port)] + list(args)
    log = open(log_path, "a") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("backend.py exited with %d: %s" % (proc.returncode, " ".join(cmd)))
        try:
            urllib.request.urlopen(url + "/api/stats", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("backend.py did not answer within %d s" % timeout)


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Client(object):
    """A visitor: one cookie jar, the page's POST / and the JSON API."""

    def __init__(self, url):
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def recommend(self, k=10):
        with self.opener.open("%s/api/recommend?k=%d" % (self.url, k), timeout=30) as r:
            return json.load(r)

    def vote(self, action, outfit):
        data = urllib.parse.urlencode(dict(action=action, outfit=outfit)).encode()
        with self.opener.open(self.url + "/", data=data, timeout=30) as r:
            return r.read().decode()


def style_share(outfits, styles, style):
    """Fraction of the items of `outfits` (API rows) that have `style`."""
    items = [n for o in outfits for n in o["items"]]
    return sum(styles.get(n) == style for n in items) / max(1, len(items))


def scripted_session(url, like=1, dislike=2, rounds=3, log=print):
    """Like the shown outfits of style `like`, dislike those of `dislike`; shares before / after."""
    styles = item_styles()
    client = Client(url)
    before = client.recommend(10)["outfits"]
    seen = set()
    for _ in range(rounds):
        shown = client.recommend(50)["outfits"]
        for o in shown:
            major = max(set(styles[n] for n in o["items"]), key=[styles[n] for n in o["items"]].count)
            if o["id"] in seen or major not in (like, dislike):
                continue
            seen.add(o["id"])
            assert client.vote("yes" if major == like else "no", o["id"]) == "OK"
    after = client.recommend(10)["outfits"]
    for name, rows in (("before", before), ("after", after)):
        log("[fhn serve] top 10 %s clicks (liked style %d share %.2f): %s" % (
            name, like, style_share(rows, styles, like),
            " ".join("%d:%s" % (o["id"], "".join(str(styles[n]) for n in o["items"])) for o in rows)))
    return style_share(before, styles, like), style_share(after, styles, like), len(seen)


def serve_step(out_dir, checkpoint, log_path):
    """`make demo`: extract the catalogue with the demo's net, serve it, click, print, stop."""
    t0 = time.time()
    serve_dir = os.path.join(out_dir, "serve")
    os.makedirs(serve_dir, exist_ok=True)
    outfits = extract(serve_dir, checkpoint, os.path.join(serve_dir, "outfits.npz"), log_path)
    images = os.path.join(serve_dir, "data", "polyvore", "images", "lmdb")
    proc, url = start_server(["--outfits", outfits, "--images", images, "--seed", "0", "--pool", "20"],
                             log_path)
    try:
        print("[fhn serve] %s serving %s" % (url, outfits), flush=True)
        before, after, clicks = scripted_session(url, log=lambda s: print(s, flush=True))
    finally:
        stop_server(proc)
    wall = time.time() - t0
    print("[fhn serve] %d clicks: liked-style share of the top 10 %.2f -> %.2f (%.1f s)"
          % (clicks, before, after, wall), flush=True)
    return dict(paper="fhn", command="python fhn/web/backend.py (scripted session)",
                metric="liked_style_share_top10", value=after, baseline=before, wall_s=wall)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", metavar="CHECKPOINT", required=True,
                        help="rebuild demo_outfits.npz from this fhn demo checkpoint (*_best.net)")
    parser.add_argument("--work_dir", default="runs/serve_fixture")
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    extract(os.path.abspath(args.work_dir), args.fixture, FIXTURE)
    print("wrote %s" % FIXTURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
