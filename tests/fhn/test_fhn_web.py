"""Web recommender: cold start = upstream's formulas, packed ranking = float reference, routes and bad input."""
import random
import re
import time

import numpy as np
import pytest

from common.errors import InputError
from fhn.web.backend import ImageStore, create_app
from fhn.web.packed import PackedCodes, top_k
from fhn.web.recommender import Catalogue, Recommender, SessionStore, cold_start_code


# ----- a faithful re-statement of upstream web/backend.py's Recommender (float64 numpy) ------
class UpstreamRecommender(object):
    """Recommender.user_user_embedding / get_user_embedding / click / recommend, with U and D
    taken from the arrays (upstream's class constants 630 and 128)."""

    epsilon = 0.5
    beta = 0.5

    def __init__(self, posi_feat, nega_feat, user_codes, outfits, lambda_u, lambda_i):
        self.outfits_posi_feat, self.outfits_nega_feat = list(posi_feat), list(nega_feat)
        self.user_codes, self.outfits = user_codes, outfits
        self.lambda_u, self.lambda_i = lambda_u, lambda_i
        self.U, self.D = len(user_codes), outfits.shape[1]
        self.clicks_posi_feat, self.clicks_nega_feat = [], []

    def user_user_embedding(self, big_outfits, small_outfit):
        user_code = np.zeros(self.D)
        for u in range(len(big_outfits)):
            sim = (small_outfit * self.lambda_i * big_outfits[u]).sum() / self.D
            user_code += sim * self.user_codes[u]
        return user_code / self.U

    def pre_sign(self):
        p = sum(self.clicks_posi_feat) / len(self.clicks_posi_feat) if self.clicks_posi_feat else np.ones(self.D)
        n = sum(self.clicks_nega_feat) / len(self.clicks_nega_feat) if self.clicks_nega_feat else np.ones(self.D)
        up = self.user_user_embedding(self.outfits_posi_feat, p)
        un1 = self.user_user_embedding(self.outfits_posi_feat, n)
        un2 = self.user_user_embedding(self.outfits_nega_feat, p)
        code_user = (up - self.epsilon * (un1 + un2)) / (1 + 2 * self.epsilon)
        code_item = (p * self.lambda_u - n * self.lambda_u) / 2
        return self.beta * code_user + (1 - self.beta) * code_item

    def click(self, action, outfit):
        (self.clicks_posi_feat if action == "yes" else self.clicks_nega_feat).append(self.outfits[outfit])
        return np.sign(self.pre_sign())

    def ranking(self, code):
        ratings = [(code * self.lambda_u * outfit).sum() for outfit in self.outfits]
        return [x for _, x in sorted(zip(ratings, range(len(ratings))), reverse=True)]


def random_catalogue(rng, n=60, d=12, u=5, planes=3):
    bits = rng.choice([-1.0, 1.0], size=(planes, n, d))
    codes = bits.sum(0) / planes
    codes[7] = codes[3]  # exact ties
    codes[11] = codes[3]
    names = np.array([["t%d.jpg" % i, "b%d.jpg" % i, "s%d.jpg" % i] for i in range(n)])
    mean = lambda: (rng.choice([-1.0, 1.0], size=(u, d, 4)).mean(2)).astype(np.float32)  # noqa: E731
    return Catalogue(names, codes, planes, rng.choice([-1.0, 1.0], size=(u, d)).astype(np.float32),
                     (0.5 + rng.random(d)).astype(np.float32), (0.5 + rng.random(d)).astype(np.float32),
                     mean(), mean())


def test_cold_start_equals_hand_computed_values():
    # U=2, D=2: every term by hand
    cat = Catalogue(np.array([["a", "b", "c"]] * 2), np.array([[1.0, -1.0], [-1.0, 1.0]]), 1,
                    np.array([[1, 1], [1, -1]], np.float32), np.array([2, 1], np.float32),
                    np.array([1, 3], np.float32), np.array([[1, 0], [0, 1]], np.float32),
                    np.array([[0, -1], [-1, 0]], np.float32))
    # one like of outfit 0: cp = (1, -1), cn = (1, 1)
    # uu(P, cp): sims [1*1*1/2, -1*3*1/2] = [0.5, -1.5] -> (0.5*(1,1) - 1.5*(1,-1)) / 2 = (-0.5, 1)
    # uu(P, cn): sims [0.5, 1.5] -> (0.5*(1,1) + 1.5*(1,-1)) / 2 = (1, -0.5)
    # uu(N, cp): sims [1*3*(-1)*(-1)/2 = 1.5, 1*1*(-1)/2 = -0.5] -> (1.5*(1,1) - 0.5*(1,-1)) / 2 = (0.5, 1)
    # code_user = ((-0.5, 1) - 0.5*((1, -0.5) + (0.5, 1))) / 2 = (-0.625, 0.125)
    # code_item = ((1, -1) - (1, 1)) * (2, 1) / 2 = (0, -1);  0.5*user + 0.5*item = (-0.3125, -0.4375)
    code = cold_start_code(cat, np.array([1.0, -1.0]), 1, np.zeros(2), 0)
    assert code.tolist() == [-1.0, -1.0]
    # one like of 0 and one dislike of 1: cn = (-1, 1): code_item = (2, -2)*(2,1)/2 = (2, -1)
    # uu(P, cn) = (-(0.5) ... ) sims [-0.5, 1.5] -> (-0.5*(1,1) + 1.5*(1,-1))/2 = (0.5, -1)
    # code_user = ((-0.5, 1) - 0.5*((0.5, -1) + (0.5, 1))) / 2 = (-0.5, 0.5); total (0.75, -0.25)
    code = cold_start_code(cat, np.array([1.0, -1.0]), 1, np.array([-1.0, 1.0]), 1)
    assert code.tolist() == [1.0, -1.0]


def test_cold_start_equals_upstream_click_by_click():
    rng = np.random.default_rng(0)
    cat = random_catalogue(rng)
    up = UpstreamRecommender(cat.posi_feat.astype(np.float64), cat.nega_feat.astype(np.float64),
                             cat.user_codes.astype(np.float64), cat.codes, cat.lambda_u, cat.lambda_i)
    store = SessionStore(cat.dim, seed=0)
    session, _ = store.get(None)
    compared = 0
    for step in range(25):
        action, outfit = ("yes", "no")[int(rng.integers(2))], int(rng.integers(len(cat)))
        expect = up.click(action, outfit)
        session.click(cat, action, outfit)
        sure = np.abs(up.pre_sign()) > 1e-5  # float32 similarities (fhn.coldstart) vs float64
        assert np.array_equal(session.code[sure], expect[sure]), step
        compared += sure.sum()
    assert compared > 200


@pytest.mark.parametrize("n,d,planes", [(500, 16, 3), (300, 20, 6), (400, 128, 1), (70000, 32, 1)])
def test_packed_scores_and_topk_equal_float_reference(n, d, planes):
    rng = np.random.default_rng(n)
    bits = rng.choice([-1.0, 1.0], size=(planes, n, d))
    codes = bits.sum(0) / planes
    codes[5::50] = codes[4]  # many exact ties
    lam = (0.5 + rng.random(d)).astype(np.float32)
    code = rng.choice([-1.0, 0.0, 1.0], d)
    packed = PackedCodes(codes, planes, threads=2)
    exact = packed.scores(code * lam)
    reference = codes @ (code * lam.astype(np.float64))
    np.testing.assert_allclose(exact / planes, reference, rtol=0, atol=1e-12)
    if planes == 1:  # sums of float32 weights in float64 are exact: bit-identical
        assert np.array_equal(exact, reference)
    ratings = [(code * lam * o).sum() for o in codes[:2000]]
    upstream = [x for _, x in sorted(zip(ratings, range(len(ratings))), reverse=True)]
    assert top_k(exact[:2000], 100).tolist() == upstream[:100]
    bytes_ = np.packbits(codes > 0, axis=1, bitorder="little")
    if planes == 1:
        assert np.array_equal(PackedCodes.from_packed(bytes_, d).scores(code * lam), exact)


def test_recommender_rank_equals_upstream_order_and_falls_back_on_zero_codes():
    rng = np.random.default_rng(1)
    cat = random_catalogue(rng)
    up = UpstreamRecommender(cat.posi_feat, cat.nega_feat, cat.user_codes, cat.codes, cat.lambda_u,
                             cat.lambda_i)
    rec = Recommender(cat, k=10, pool=20)
    assert rec.packed is not None
    for _ in range(5):
        code = rng.choice([-1.0, 1.0], cat.dim)
        idx, _ = rec.rank(code, 30)
        assert idx.tolist() == up.ranking(code)[:30]
    cat.codes[0, 0] = 0.0  # not a mean of +-1 codes: float64 scores
    rec = Recommender(cat, k=10, pool=20)
    assert rec.packed is None
    idx, scores = rec.rank(code, 30)
    assert idx.tolist() == up.ranking(code)[:30]
    page, _ = rec.page(code, random.Random(0))
    assert len(set(page.tolist())) == 10 and set(page.tolist()) <= set(up.ranking(code)[:20])


def test_catalogue_refuses_pickles_and_names_missing_arrays(tmp_path):
    bad = tmp_path / "objects.npz"
    np.savez(bad, outfit_names=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="pickle"):
        Catalogue.load(str(bad))
    partial = tmp_path / "partial.npz"
    np.savez(partial, outfit_names=np.array([["a", "b", "c"]]))
    with pytest.raises(InputError, match="missing array 'outfit_codes'"):
        Catalogue.load(str(partial))
    with pytest.raises(InputError, match="shape"):
        Catalogue(np.array([["a", "b", "c"]]), np.ones((1, 4)), 1, np.ones((2, 4)), np.ones(3),
                  np.ones(4), np.ones((2, 4)), np.ones((2, 4)))


# ----- the Flask app in-process -----------------------------------------------------------
@pytest.fixture
def app_parts(tmp_path):
    rng = np.random.default_rng(2)
    cat = random_catalogue(rng, n=40)
    folder = tmp_path / "img"
    folder.mkdir()
    for name in np.unique(cat.names):
        (folder / str(name)).write_bytes(b"\xff\xd8jpeg-of-" + str(name).encode())
    sessions = SessionStore(cat.dim, max_sessions=5, seed=0)
    app = create_app(Recommender(cat, k=10, pool=20), ImageStore(str(folder)), sessions)
    return app, cat, sessions


def test_routes_page_click_api_images(app_parts):
    app, cat, sessions = app_parts
    c = app.test_client()
    page = c.get("/")
    assert page.status_code == 200 and page.headers["Set-Cookie"].startswith("fhn_session=")
    html = page.get_data(as_text=True)
    ids = [int(x) for x in re.findall(r'data-outfit="(\d+)"', html)]
    assert len(ids) == 10 and html.count("<img ") == 30
    src = re.search(r'<img src="([^"]+)"', html).group(1)
    img = c.get(src)
    assert img.status_code == 200 and img.data.startswith(b"\xff\xd8") and img.mimetype == "image/jpeg"
    assert c.post("/", data=dict(action="yes", outfit=str(ids[0]))).get_data(as_text=True) == "OK"
    r = c.post("/api/click", json=dict(action="no", outfit=ids[1]))
    assert r.get_json() == dict(ok=True, clicks=dict(yes=1, no=1))
    rec = c.get("/api/recommend?k=7").get_json()
    expect = cold_start_code(cat, cat.codes[ids[0]], 1, cat.codes[ids[1]], 1)
    assert rec["code"] == expect.tolist() and len(rec["outfits"]) == 7
    idx, _ = Recommender(cat).rank(expect, 7)
    assert [o["id"] for o in rec["outfits"]] == idx.tolist()
    assert c.post("/api/reset").get_json() == dict(ok=True)
    assert c.get("/api/recommend").get_json()["clicks"] == dict(yes=0, no=0)
    assert len(sessions) == 1


BAD_POSTS = [
    (dict(), 400, "missing field 'action'"),
    (dict(action="yes"), 400, "missing field 'outfit'"),
    (dict(action="maybe", outfit="1"), 400, "action must be yes or no"),
    (dict(action="yes", outfit="x1"), 400, "non-negative integer"),
    (dict(action="yes", outfit="-1"), 400, "non-negative integer"),
    (dict(action="yes", outfit="1.5"), 400, "non-negative integer"),
    (dict(action="yes", outfit="40"), 400, "out of range"),
    (dict(action="yes", outfit="99999999999999"), 400, "non-negative integer"),
    (dict(action="yes", outfit="1", extra="z"), 400, "unknown field 'extra'"),
    (dict(action=["yes", "no"], outfit="1"), 400, "given 2 times"),
]


@pytest.mark.parametrize("form,status,reason", BAD_POSTS)
def test_bad_clicks_answer_4xx_one_line_and_leave_state(app_parts, form, status, reason):
    app, cat, _ = app_parts
    c = app.test_client()
    assert c.post("/", data=dict(action="yes", outfit="3")).status_code == 200
    before = c.get("/api/recommend?k=5").get_json()
    r = c.post("/", data=form)
    text = r.get_data(as_text=True)
    assert r.status_code == status and reason in text and text.count("\n") == 1, text
    j = c.post("/api/click", json={k: v for k, v in form.items() if not isinstance(v, list)})
    if not isinstance(form.get("action"), list):
        assert j.status_code == status and "error" in j.get_json()
    assert c.get("/api/recommend?k=5").get_json() == before  # the session is untouched


def test_oversized_bodies_unknown_routes_and_methods(app_parts):
    app, _, _ = app_parts
    c = app.test_client()
    r = c.post("/", data=dict(action="yes", outfit="1", pad="x" * 10000))
    assert r.status_code == 413 and r.get_data(as_text=True).count("\n") == 1
    r = c.post("/api/click", data=b"{" + b" " * 10000 + b"}", content_type="application/json")
    assert r.status_code == 413 and "error" in r.get_json()
    assert c.post("/api/click", data=b"[1, 2]", content_type="application/json").status_code == 400
    assert c.post("/api/click", data=b"{not json", content_type="application/json").status_code == 400
    assert c.get("/nope").status_code == 404
    assert c.get("/api/nope").get_json()["error"].startswith("Not Found")
    assert c.delete("/").status_code == 405
    assert c.get("/images/291x291/../../etc/passwd").status_code == 404
    assert c.get("/images/291x291/unknown.jpg").status_code == 404
    for q in ("k=0", "k=abc", "k=5000", "sample=2", "zzz=1"):
        assert c.get("/api/recommend?" + q).status_code == 400, q
    assert c.get("/api/recommend?k=3").status_code == 200  # still serving


def test_sessions_are_separate_and_bounded(app_parts):
    app, cat, sessions = app_parts
    a, b = app.test_client(), app.test_client()
    a.post("/", data=dict(action="yes", outfit="1"))
    b.post("/", data=dict(action="no", outfit="2"))
    b.post("/", data=dict(action="no", outfit="3"))
    assert a.get("/api/recommend").get_json()["clicks"] == dict(yes=1, no=0)
    assert b.get("/api/recommend").get_json()["clicks"] == dict(yes=0, no=2)
    for _ in range(20):  # more visitors than max_sessions=5: the least recently used go
        app.test_client().get("/api/recommend?k=1")
    assert len(sessions) == 5
    assert a.get("/api/recommend").get_json()["clicks"] == dict(yes=0, no=0)  # evicted: a new session
    short = SessionStore(cat.dim, ttl=0.0)
    s, _ = short.get(None)
    time.sleep(0.01)
    assert short.get(s.sid)[0].sid != s.sid and len(short) == 1


def test_image_store_reads_lmdb(tmp_path):
    import lmdb

    env = lmdb.open(str(tmp_path / "db"), map_size=2 ** 20)
    with env.begin(write=True) as txn:
        txn.put(b"x.jpg", b"bytes")
    env.close()
    store = ImageStore(str(tmp_path / "db"))
    assert store.get("x.jpg") == b"bytes" and store.get("y.jpg") is None
    with pytest.raises(InputError, match="image store not found"):
        ImageStore(str(tmp_path / "missing"))
