#!/usr/bin/env python
"""The FHN outfit recommender web server (fork web/backend.py), served by waitress.

Upstream's routes and fields: `GET /` renders 10 outfits, `POST /` with form fields
`action=yes|no` and `outfit=<id>` records a like / dislike and answers `OK`. Images come
from the image store (LMDB or folder) at /images/291x291/<name>. JSON API for programs:
`GET /api/recommend?k=10[&sample=1]`, `POST /api/click` ({"action", "outfit"}),
`POST /api/reset`, `GET /api/stats`. State is per visitor (cookie `fhn_session`; LRU-bounded,
idle sessions expire); every request's latency is logged. Bad input answers 4xx with one line.

  python fhn/web/backend.py --outfits results/outfits.npz --images data/polyvore/images/lmdb
  python fhn/web/backend.py --demo          # what `make serve` runs: the demo catalogue
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import mimetypes  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from flask import Flask, Response, render_template, request  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

from common.errors import InputError, cli_main  # noqa: E402

LOGGER = logging.getLogger("fhn.web")
COOKIE = "fhn_session"
MAX_BODY = 4096  # bytes; a click is ~20
IMAGE_URL = "images/291x291/"  # upstream's image path under the project root
DEMO_POOL = 20  # the demo catalogue is small: upstream's top 100 would be a third of it
_INT = re.compile(r"[0-9]{1,12}")


class BadRequest(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class ImageStore(object):
    """Raw image bytes by file name: an LMDB built by build_polyvore.py (key = name) or a folder."""

    def __init__(self, path):
        self.path = path
        self.env = None
        if not os.path.isdir(path):
            raise InputError("%s: image store not found (an LMDB folder or a folder of images)" % path)
        if os.path.isfile(os.path.join(path, "data.mdb")):
            import lmdb

            self.env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                                 max_readers=512)

    def get(self, name):
        if self.env is not None:
            with self.env.begin(write=False) as txn:
                return txn.get(name.encode())
        fn = os.path.join(self.path, name)
        if not os.path.isfile(fn):
            return None
        with open(fn, "rb") as f:
            return f.read()


def _one_field(form, name):
    values = form.getlist(name)
    if not values:
        raise BadRequest("missing field %r" % name)
    if len(values) > 1:
        raise BadRequest("field %r given %d times" % (name, len(values)))
    return values[0]


def parse_click(fields, num_outfits):
    """(action, outfit) from a form / JSON mapping with exactly the fields action and outfit."""
    unknown = sorted(set(fields) - {"action", "outfit"})
    if unknown:
        raise BadRequest("unknown field %r (expected action and outfit)" % unknown[0][:40])
    action = _one_field(fields, "action")
    if action not in ("yes", "no"):
        raise BadRequest("action must be yes or no, got %r" % str(action)[:40])
    outfit = _one_field(fields, "outfit")
    if isinstance(outfit, bool) or not (isinstance(outfit, int) or _INT.fullmatch(str(outfit))):
        raise BadRequest("outfit must be a non-negative integer, got %r" % str(outfit)[:40])
    outfit = int(outfit)
    if not 0 <= outfit < num_outfits:
        raise BadRequest("outfit %d out of range: the catalogue has outfits 0..%d" % (outfit, num_outfits - 1))
    return action, outfit


class _JsonFields(dict):
    def getlist(self, name):
        return [self[name]] if name in self else []


def create_app(recommender, images, sessions):
    app = Flask(__name__, template_folder=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "templates"), static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, MAX_FORM_MEMORY_SIZE=MAX_BODY, MAX_FORM_PARTS=16)
    cat = recommender.cat
    known = {str(n) for n in np.unique(cat.names)}
    app.extensions["fhn"] = dict(recommender=recommender, images=images, sessions=sessions)

    def session():
        s, created = sessions.get(request.cookies.get(COOKIE))
        request.environ["fhn.session"] = s.sid[:6]
        return s, created

    def finish(resp, s, created):
        if created:
            resp.set_cookie(COOKIE, s.sid, httponly=True, samesite="Lax", path="/")
        return resp

    def outfit_rows(idx, scores):
        return [dict(id=int(i), score=float(sc), items=[str(n) for n in cat.names[i]],
                     images=["/" + IMAGE_URL + str(n) for n in cat.names[i]])
                for i, sc in zip(idx, scores)]

    def click(s, action, outfit):
        with s.lock:
            s.click(cat, action, outfit)
            return dict(yes=s.posi_n, no=s.nega_n)

    @app.get("/")
    def index():
        s, created = session()
        with s.lock:
            code, rng = s.code.copy(), s.rng
            idx, scores = recommender.page(code, rng)
        html = render_template("index.html", outfits=outfit_rows(idx, scores), likes=s.posi_n,
                               dislikes=s.nega_n, pool=min(recommender.pool, len(cat)), total=len(cat))
        return finish(Response(html, mimetype="text/html"), s, created)

    @app.post("/")
    def handle_vote():
        fields = request.form
        action, outfit = parse_click(fields, len(cat))
        s, created = session()
        click(s, action, outfit)
        return finish(Response("OK", mimetype="text/plain"), s, created)

    @app.get("/" + IMAGE_URL + "<name>")
    def image(name):
        data = images.get(name) if name in known else None
        if data is None:
            raise BadRequest("no image %r in the catalogue" % name[:60], 404)
        resp = Response(data, mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream")
        resp.headers["Cache-Control"] = "public, max-age=86400"
        return resp

    @app.get("/api/recommend")
    def api_recommend():
        k = request.args.get("k", str(recommender.k))
        if not _INT.fullmatch(k) or not 1 <= int(k) <= 1000:
            raise BadRequest("k must be an integer in 1..1000, got %r" % k[:40])
        sample = request.args.get("sample", "0")
        if sample not in ("0", "1"):
            raise BadRequest("sample must be 0 or 1, got %r" % sample[:40])
        unknown = sorted(set(request.args) - {"k", "sample"})
        if unknown:
            raise BadRequest("unknown parameter %r (expected k, sample)" % unknown[0][:40])
        s, created = session()
        with s.lock:
            code = s.code.copy()
            clicks = dict(yes=s.posi_n, no=s.nega_n)
            if sample == "1":
                idx, scores = recommender.page(code, s.rng)
                idx, scores = idx[:int(k)], scores[:int(k)]
        if sample == "0":
            idx, scores = recommender.rank(code, int(k))
        body = dict(outfits=outfit_rows(idx, scores), clicks=clicks, code=[float(c) for c in code])
        return finish(app.json.response(body), s, created)

    @app.post("/api/click")
    def api_click():
        if request.is_json:
            fields = request.get_json(silent=True)
            if not isinstance(fields, dict):
                raise BadRequest("body must be a JSON object {\"action\": ..., \"outfit\": ...}")
            fields = _JsonFields(fields)
        else:
            fields = request.form
        action, outfit = parse_click(fields, len(cat))
        s, created = session()
        return finish(app.json.response(dict(ok=True, clicks=click(s, action, outfit))), s, created)

    @app.post("/api/reset")
    def api_reset():
        s, created = session()
        with s.lock:
            s.reset()
        return finish(app.json.response(dict(ok=True)), s, created)

    @app.get("/api/stats")
    def api_stats():
        return app.json.response(dict(outfits=len(cat), sessions=len(sessions), dim=cat.dim,
                                      max_sessions=sessions.max_sessions,
                                      packed=recommender.packed is not None))

    def error_response(status, message):
        message = " ".join(str(message).split())[:300]  # one line
        if request.path.startswith("/api/"):
            return Response(json.dumps(dict(error=message)) + "\n", status=status,
                            mimetype="application/json")
        return Response("error: %s\n" % message, status=status, mimetype="text/plain")

    @app.errorhandler(BadRequest)
    def bad_request(err):
        return error_response(err.status, err)

    @app.errorhandler(HTTPException)
    def http_error(err):
        if err.code == 413:
            return error_response(413, "request body over %d bytes" % MAX_BODY)
        return error_response(err.code, "%s: %s %s" % (err.name, request.method, request.path[:100]))

    @app.errorhandler(Exception)
    def internal_error(err):
        LOGGER.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal error (logged on the server)")

    app.wsgi_app = LatencyLog(app.wsgi_app)
    return app


class LatencyLog(object):
    """WSGI middleware: one log line per request with status and latency (until the body is sent)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        t0 = time.perf_counter()
        status = []

        def start(s, headers, exc_info=None):
            status.append(s.split(" ", 1)[0])
            return start_response(s, headers, exc_info)

        try:
            for chunk in self.app(environ, start):
                yield chunk
        finally:
            LOGGER.info("%s %s %s %.1f ms session=%s", environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO", "")[:80], status[0] if status else "-",
                        1000 * (time.perf_counter() - t0), environ.get("fhn.session", "-"))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outfits", default="results/outfits.npz",
                        help="output of fhn/scripts/extract_outfits.py")
    parser.add_argument("--images", default="data/polyvore/images/lmdb",
                        help="image store: LMDB (build_polyvore.py) or a folder of <name> files")
    parser.add_argument("--demo", action="store_true",
                        help="serve the demo catalogue (built under --demo_dir when absent)")
    parser.add_argument("--demo_dir", default="runs/serve", help="where --demo keeps its data")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="upstream's Flask default")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--k", type=int, default=10, help="outfits per page")
    parser.add_argument("--pool", type=int, default=None,
                        help="the page draws k of the top pool (upstream 100; --demo: 20 of its 267)")
    parser.add_argument("--max_sessions", type=int, default=10000, help="LRU bound on visitor state")
    parser.add_argument("--session_ttl", type=float, default=3600.0, help="idle seconds before expiry")
    parser.add_argument("--seed", type=int, default=None, help="seed the per-session generators")
    parser.add_argument("--rank_threads", type=int, default=2, help="threads of one ranking pass")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def load_app(args):
    from fhn.web.recommender import Catalogue, Recommender, SessionStore  # torch: after --help

    if args.demo:
        from fhn.web.demo_data import demo_paths

        args.outfits, args.images = demo_paths(args.demo_dir)
        args.pool = DEMO_POOL if args.pool is None else args.pool
    args.pool = 100 if args.pool is None else args.pool
    for flag, value, low in (("--k", args.k, 1), ("--pool", args.pool, 1), ("--threads", args.threads, 1),
                             ("--max_sessions", args.max_sessions, 1), ("--port", args.port, 0)):
        if value < low:
            raise InputError("%s must be >= %d, got %d" % (flag, low, value))
    catalogue = Catalogue.load(args.outfits)
    images = ImageStore(args.images)
    missing = [n for n in catalogue.names[:1].ravel() if images.get(str(n)) is None]
    if missing:
        raise InputError("%s: image %s of the catalogue %s is not in the store; give --images"
                         % (args.images, missing[0], args.outfits))
    recommender = Recommender(catalogue, k=args.k, pool=args.pool, threads=args.rank_threads)
    sessions = SessionStore(catalogue.dim, args.max_sessions, args.session_ttl, args.seed)
    return create_app(recommender, images, sessions)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from common.logs import setup_logging
    import waitress

    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    app = load_app(args)
    cat = app.extensions["fhn"]["recommender"].cat
    LOGGER.warning("serving %d outfits (D=%d, %d users) on http://%s:%d/", len(cat), cat.dim,
                   len(cat.user_codes), args.host, args.port)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads,
                   max_request_body_size=2 ** 20, ident="fhn")  # bodies over MAX_BODY: Flask's one-line 413
    return 0


if __name__ == "__main__":
    cli_main(main)
