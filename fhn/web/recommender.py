"""The thesis's online recommender (fork web/backend.py, Recommender): cold-start code per visitor + ranking.

A visitor's clicks are running sums of the clicked outfits' features (upstream keeps the
lists and sums them in the same order). With cp / cn the mean liked / disliked feature (a
vector of ones while there is none, as upstream):

  uu(B, s)  = (1/U) sum_j [sum_d s_d lambda_i,d B_j,d / D] * code_j       (fhn.coldstart)
  code_user = (uu(P, cp) - eps * (uu(P, cn) + uu(N, cp))) / (1 + 2 eps)
  code_item = (cp * lambda_u - cn * lambda_u) / 2
  code      = sign(beta * code_user + (1 - beta) * code_item),   beta = eps = 0.5

P / N are the training users' mean positive / negative outfit features, code_j their binary
codes. Kept from upstream web/backend.py:119-126: the second negative term pairs the
negative features with the *liked* clicks (the offline ColdStart pairs them with the
disliked ones). Upstream divides by its constants U=630 and D=128 -- the sizes of
Polyvore-630 at D=128; here the catalogue's own U and D (identical there).
Before the first click the code is uniform [0, 1) noise (upstream np.random.rand(D)).
Score = sum_d code_d * lambda_u,d * F_o,d; the page shows `k` outfits drawn from the top
`pool` (upstream: 10 of the top 100). Ranking runs on packed bits (fhn/web/packed.py).
"""
import collections
import random
import secrets
import threading
import time

import numpy as np

from common.errors import InputError
from common.safeio import load_npz
from fhn.coldstart import user_user_embedding
from fhn.web.packed import PackedCodes, top_k

KEYS = {"outfit_names": 2, "outfit_codes": 2, "codes_per_outfit": 0, "user_codes": 2,
        "lambda_u": 1, "lambda_i": 1, "posi_feat": 2, "nega_feat": 2}
BETA = 0.5
EPSILON = 0.5


class Catalogue(object):
    """The arrays scripts/extract_outfits.py writes, checked for shape and finiteness."""

    def __init__(self, outfit_names, outfit_codes, codes_per_outfit, user_codes, lambda_u,
                 lambda_i, posi_feat, nega_feat, source="catalogue"):
        self.names = np.asarray(outfit_names, dtype=str)
        self.codes = np.asarray(outfit_codes, dtype=np.float64)
        self.planes = int(codes_per_outfit)
        self.user_codes = np.asarray(user_codes, dtype=np.float32)
        self.lambda_u = np.asarray(lambda_u, dtype=np.float32).reshape(-1)
        self.lambda_i = np.asarray(lambda_i, dtype=np.float32).reshape(-1)
        self.posi_feat = np.asarray(posi_feat, dtype=np.float32)
        self.nega_feat = np.asarray(nega_feat, dtype=np.float32)
        n, d = self.codes.shape
        u = len(self.user_codes)
        for key, value, shape in (("outfit_names", self.names, (n, self.names.shape[1])),
                                  ("user_codes", self.user_codes, (u, d)),
                                  ("lambda_u", self.lambda_u, (d,)), ("lambda_i", self.lambda_i, (d,)),
                                  ("posi_feat", self.posi_feat, (u, d)),
                                  ("nega_feat", self.nega_feat, (u, d))):
            if value.shape != shape:
                raise InputError("%s: %s has shape %s, expected %s (outfit_codes is %s)"
                                 % (source, key, value.shape, shape, self.codes.shape))
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise InputError("%s: %s holds NaN or inf; re-run extract_outfits.py" % (source, key))
        if n == 0 or u == 0 or self.planes < 1:
            raise InputError("%s: needs outfits, users and codes_per_outfit >= 1" % source)

    @classmethod
    def load(cls, path):
        data = load_npz(path, what="outfits file (scripts/extract_outfits.py)")
        for key, ndim in KEYS.items():
            if key not in data:
                raise InputError("%s: missing array %r; write it with fhn/scripts/extract_outfits.py"
                                 % (path, key))
            if data[key].ndim != ndim:
                raise InputError("%s: %s must have %d dimensions, has %d"
                                 % (path, key, ndim, data[key].ndim))
        return cls(**{k: data[k] for k in KEYS}, source=path)

    def __len__(self):
        return len(self.codes)

    @property
    def dim(self):
        return self.codes.shape[1]


def cold_start_code(cat, posi_sum, posi_n, nega_sum, nega_n, beta=BETA, epsilon=EPSILON):
    """The visitor's binary code (float64 [D] in {-1, 0, 1}) from the click sums."""
    cp = posi_sum / posi_n if posi_n else np.ones(cat.dim)
    cn = nega_sum / nega_n if nega_n else np.ones(cat.dim)

    def uu(big, click):
        return user_user_embedding(big, [click], cat.user_codes, cat.lambda_i)[0].double().numpy()

    code_user = (uu(cat.posi_feat, cp) - epsilon * (uu(cat.posi_feat, cn) + uu(cat.nega_feat, cp))) \
        / (1 + 2 * epsilon)
    code_item = (cp * cat.lambda_u - cn * cat.lambda_u) / 2
    return np.sign(beta * code_user + (1 - beta) * code_item)


class Recommender(object):
    """Ranks the catalogue for a code; packed-bit scores when the codes allow, else float64."""

    def __init__(self, catalogue, k=10, pool=100, threads=2):
        self.cat = catalogue
        self.k, self.pool = int(k), int(pool)
        try:
            self.packed = PackedCodes(catalogue.codes, catalogue.planes, threads=threads)
        except ValueError:  # a code with exact zeros: not +-1 bits, score in float64
            self.packed = None

    def scores(self, code):
        """FHN score of every outfit for `code` (float64 [N])."""
        w = np.asarray(code, dtype=np.float64) * self.cat.lambda_u
        if self.packed is None:
            return self.cat.codes @ w
        return self.packed.scores(w) / self.cat.planes

    def rank(self, code, k):
        """(indices, scores) of the k best outfits, best first (ties: larger index first)."""
        w = np.asarray(code, dtype=np.float64) * self.cat.lambda_u
        exact = self.cat.codes @ w if self.packed is None else self.packed.scores(w)
        idx = top_k(exact, k)
        return idx, exact[idx] / (1 if self.packed is None else self.cat.planes)

    def page(self, code, rng):
        """Upstream's page: k outfits drawn at random from the top `pool`, in draw order."""
        pool = min(self.pool, len(self.cat))
        idx, scores = self.rank(code, pool)
        pick = rng.sample(range(pool), min(self.k, pool))
        return idx[pick], scores[pick]


class Session(object):
    """One visitor: click sums and counts, the current code, a private random generator."""

    def __init__(self, sid, dim, seed):
        self.sid = sid
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.dim = dim
        self.reset()
        self.last_seen = time.monotonic()

    def reset(self):
        self.posi_sum = np.zeros(self.dim)
        self.nega_sum = np.zeros(self.dim)
        self.posi_n = self.nega_n = 0
        self.clicks = []  # (action, outfit), most recent last (bounded)
        self.code = np.random.default_rng(self.rng.getrandbits(64)).random(self.dim)

    def click(self, cat, action, outfit):
        feat = cat.codes[outfit]
        if action == "yes":
            self.posi_sum = self.posi_sum + feat
            self.posi_n += 1
        else:
            self.nega_sum = self.nega_sum + feat
            self.nega_n += 1
        self.clicks = (self.clicks + [(action, int(outfit))])[-100:]
        self.code = cold_start_code(cat, self.posi_sum, self.posi_n, self.nega_sum, self.nega_n)


class SessionStore(object):
    """Sessions by id, least recently used first out: at most `max_sessions`, idle ones expire."""

    def __init__(self, dim, max_sessions=10000, ttl=3600.0, seed=None):
        self.dim, self.max_sessions, self.ttl = dim, int(max_sessions), float(ttl)
        self._sessions = collections.OrderedDict()
        self._lock = threading.Lock()
        self._seeds = random.Random(seed)

    def __len__(self):
        return len(self._sessions)

    def get(self, sid, create=True):
        """(session, created): the session `sid`, or a new one when unknown or expired."""
        now = time.monotonic()
        with self._lock:
            while self._sessions:  # drop expired sessions from the old end
                old = next(iter(self._sessions.values()))
                if now - old.last_seen <= self.ttl:
                    break
                self._sessions.popitem(last=False)
            session = self._sessions.get(sid) if sid else None
            if session is not None:
                self._sessions.move_to_end(sid)
                session.last_seen = now
                return session, False
            if not create:
                return None, False
            session = Session(secrets.token_urlsafe(18), self.dim, self._seeds.getrandbits(64))
            self._sessions[session.sid] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session, True
