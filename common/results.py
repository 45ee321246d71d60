"""Result files every evaluation script writes: `--out_json` (versioned schema: metrics at the
top level, plus provenance) and `--out_scores` (the score matrix as float64 .npy)."""
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata

import numpy as np

from common.atomic import atomic_open

SCHEMA_VERSION = 1
_PACKAGES = ('torch', 'torchvision', 'numpy', 'transformers', 'gensim', 'nltk', 'scikit-learn')


def _git_commit():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(['git', '-C', repo, 'rev-parse', 'HEAD'], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _package_versions():
    versions = {'python': platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _plain(value):
    """JSON-ready copy: numpy scalars/arrays become Python numbers/lists; NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, 'item') and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()  # 0-d torch tensors
        except (TypeError, ValueError, RuntimeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def provenance(paper, argv=None, seed=None, checkpoint=None, data_path=None):
    checkpoints = checkpoint if isinstance(checkpoint, (list, tuple)) else [checkpoint] if checkpoint else []
    return {
        'schema_version': SCHEMA_VERSION,
        'paper': paper,
        'command': list(sys.argv if argv is None else argv),
        'cwd': os.getcwd(),
        'git_commit': _git_commit(),
        'packages': _package_versions(),
        'seed': seed,
        'checkpoints': [{'path': os.path.abspath(p),
                         'sha256': file_sha256(p) if os.path.isfile(p) else None} for p in checkpoints],
        'data_path': os.path.abspath(data_path) if data_path else None,
    }


def write_results(path, metrics, paper, argv=None, seed=None, checkpoint=None, data_path=None,
                  extra=None):
    """Write {schema_version, <metrics...>, provenance, [extra]} to `path` atomically."""
    if 'provenance' in metrics or 'schema_version' in metrics:
        raise ValueError('metric names "provenance" and "schema_version" are reserved')
    payload = {'schema_version': SCHEMA_VERSION}
    payload.update(_plain(metrics))
    payload['provenance'] = provenance(paper, argv, seed, checkpoint, data_path)
    if extra:
        payload['extra'] = _plain(extra)
    with atomic_open(path, 'w') as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write('\n')
    return payload


def read_results(path):
    with open(path, encoding='utf-8') as f:
        payload = json.load(f)
    if not isinstance(payload, dict) or 'schema_version' not in payload:
        raise ValueError('%s: not a results file (no schema_version)' % path)
    return payload


def save_scores(path, matrix):
    """Save a score matrix as float64 .npy, atomically (the name is kept exactly as given)."""
    with atomic_open(path, 'wb') as f:
        np.save(f, np.asarray(matrix, dtype=np.float64))
