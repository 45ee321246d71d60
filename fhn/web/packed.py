"""Fast path of the recommender's ranking: FHN scores from packed binary codes, exact top-k.

Reference (upstream web/backend.py, Recommender.recommend): one Python loop over every outfit,
score_o = sum_d code_u[d] * lambda_u[d] * F[o, d] in float64, then a full sort.

Here an outfit feature F[o] is the mean of M binary codes (M = items x branches, see
scripts/extract_outfits.py), so M * F[o] = sum_m b_m with b_m in {-1, +1}^D. The M bit planes
are packed 16 bits to a uint16 word. Per request, with w = code_u * lambda_u, one table per
word position holds, for all 65536 bit patterns, sum_t w[16j + t] * (+1 if bit t else -1);
the score is a gather + add per word and plane (numpy releases the GIL: rows are split over
threads). Tables and sums are float64 of float32 weights: exact, hence independent of the
summation order, whenever the weights' magnitudes span less than about 2^22 (always the case
for learned lambda_u), so ties and order equal the float64 reference (tests/fhn/test_fhn_web.py).
Top-k: torch.topk finds the k-th value, every outfit at or above it is sorted by (score
descending, index descending) -- the tie order of upstream's `sorted(zip(ratings, ids),
reverse=True)`.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_BITS8 = ((np.arange(256)[:, None] >> np.arange(8)) & 1) * 2.0 - 1.0  # [256, 8] of +-1


def bit_planes(codes, planes):
    """codes [N, D] with codes * planes integer, |.| <= planes, same parity -> bool [planes, N, D]."""
    scaled = np.asarray(codes, dtype=np.float64) * planes
    counts = np.rint(scaled)
    if not np.allclose(counts, scaled, rtol=0, atol=1e-6) or np.abs(counts).max(initial=0) > planes \
            or ((counts.astype(np.int64) + planes) % 2).any():
        raise ValueError("outfit codes are not means of %d binary (+-1) codes" % planes)
    ones = (counts.astype(np.int64) + planes) // 2  # how many of the M codes are +1 at (o, d)
    return np.stack([ones > m for m in range(planes)])


def _pack_rows(bits):
    """bool [M, n, D] -> uint16 words [M, n, ceil(D/16)]; bit t of word j = code bit 16j + t."""
    pad = (-bits.shape[2]) % 16
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:2] + (pad,), bool)], axis=2)
    return np.packbits(bits, axis=2, bitorder="little").view("<u2")


class PackedCodes(object):
    """M bit planes of N outfits x D bits as uint16 words [M, ceil(D/16), N]."""

    def __init__(self, codes, planes=1, threads=2, chunk=16384):
        codes = np.asarray(codes)
        num, dim = codes.shape
        words = np.empty((int(planes), (dim + 15) // 16, num), dtype="<u2")
        for start in range(0, num, chunk):  # chunked: a float copy of 1 M x 128 codes is 1 GB
            bits = bit_planes(codes[start:start + chunk], int(planes))
            words[:, :, start:start + chunk] = _pack_rows(bits).transpose(0, 2, 1)
        self._setup(words, dim, threads)

    @classmethod
    def from_packed(cls, packed, dim, threads=2):
        """One plane from np.packbits(codes > 0, axis=1, bitorder='little') rows [N, ceil(D/8)]."""
        packed = np.asarray(packed, dtype=np.uint8)
        if packed.shape[1] % 2:
            packed = np.concatenate([packed, np.zeros((len(packed), 1), np.uint8)], axis=1)
        self = cls.__new__(cls)
        self._setup(np.ascontiguousarray(packed.view("<u2").T)[None], dim, threads)
        return self

    def _setup(self, words, dim, threads):
        self.words = words  # [M, words, N]
        self.planes, self.words_per_row, self.num = words.shape
        self.dim = dim
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    @property
    def nbytes(self):
        return self.words.nbytes

    def tables(self, weights):
        """[words, 65536] float64: the weighted +-1 sum of every 16-bit pattern at each position."""
        w = np.zeros(self.words_per_row * 16)
        w[:self.dim] = np.asarray(weights, dtype=np.float64).reshape(-1)
        lut8 = w.reshape(-1, 8) @ _BITS8.T  # [2 * words, 256]
        return (lut8[1::2][:, :, None] + lut8[0::2][:, None, :]).reshape(self.words_per_row, 65536)

    def _sum_rows(self, lut, out, start, stop):
        acc = out[start:stop]
        first = True
        for plane in self.words:
            for j in range(self.words_per_row):
                part = lut[j][plane[j, start:stop]]
                if first:
                    acc[:] = part
                    first = False
                else:
                    acc += part

    def scores(self, weights):
        """sum_m sum_d w_d b_md = M * (F @ w), float64 [N]."""
        lut = self.tables(weights)
        out = np.empty(self.num)
        if self._pool is None or self.num < 65536:
            self._sum_rows(lut, out, 0, self.num)
            return out
        edges = np.linspace(0, self.num, self.threads + 1).astype(int)
        list(self._pool.map(lambda i: self._sum_rows(lut, out, edges[i], edges[i + 1]),
                            range(self.threads)))
        return out


def top_k(scores, k):
    """Indices of the k best scores: score descending, ties by the larger index first."""
    scores = np.asarray(scores)
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = torch.from_numpy(scores).topk(k, sorted=False).values.min().item()
    cand = np.flatnonzero(scores >= kth)
    order = np.lexsort((-cand, -scores[cand]))  # last key first: score desc, then index desc
    return cand[order[:k]]
