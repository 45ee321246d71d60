import argparse
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.runtime import (add_runtime_args, autocast, init_distributed, make_generator,
                            make_grad_scaler, resolve_device, seed_everything, wrap_ddp)

HERE = os.path.dirname(os.path.abspath(__file__))


def test_add_runtime_args_keeps_existing_flags():
    parser = argparse.ArgumentParser()
    parser.add_argument('--device', default='1')  # e.g. LHSC's GPU-id string
    add_runtime_args(parser)
    args = parser.parse_args(['--seed', '3', '--amp'])
    assert args.device == '1' and args.seed == 3 and args.amp and not args.deterministic


def test_resolve_device():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='no CUDA GPU'):
            resolve_device('cuda')


def test_seed_everything_repeats_random_streams():
    seed_everything(7)
    first = (np.random.rand(3), torch.rand(3))
    seed_everything(7)
    second = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert torch.equal(torch.randperm(10, generator=make_generator(1)),
                       torch.randperm(10, generator=make_generator(1)))
    assert make_generator(None) is None


def test_amp_helpers_are_noops_on_cpu():
    device = torch.device('cpu')
    with autocast(device, enabled=True):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32
    scaler = make_grad_scaler(device, enabled=True)
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


def test_single_process_runtime_is_plain():
    info = init_distributed('cpu')
    assert not info.distributed and info.world_size == 1 and info.is_main
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model, info) is model


@pytest.mark.slow
def test_ddp_two_gloo_processes_average_gradients_like_one_full_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '0',
           '--rdzv_backend', 'c10d', '--rdzv_endpoint', '127.0.0.1:0',
           os.path.join(HERE, 'ddp_worker.py'), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.load(open(tmp_path / ('rank%d.json' % r))) for r in range(2)]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    inputs = torch.linspace(-1, 1, 32).reshape(8, 4)
    targets = torch.arange(8, dtype=torch.float32).reshape(8, 1) / 8
    torch.nn.functional.mse_loss(model(inputs), targets).backward()
    for rank in ranks:
        assert rank['world'] == 2
        for got, param in zip(rank['grads'], model.parameters()):
            np.testing.assert_allclose(np.array(got), param.grad.numpy(), rtol=1e-5, atol=1e-7)
        assert rank['rows'] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]  # 1 row from rank 0, 2 from rank 1
    assert [r['main'] for r in ranks] == [True, False]
    assert sorted(ranks[0]['indices'] + ranks[1]['indices']) == list(range(10))


EXIT_WORKER = '''
import os, sys, time
sys.path.insert(0, {repo!r})
import torch
import torch.distributed as dist
from common.runtime import all_gather_cat, cleanup_distributed, init_distributed
if sys.argv[2] == 'raw':            # a group made by other code than init_distributed
    dist.init_process_group('gloo')
info = init_distributed('cpu')
torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])  # imports torch._dynamo after init
all_gather_cat(torch.full((info.rank + 1, 2), float(info.rank)))
cleanup_distributed()


def thread_names():
    names = []
    for t in os.listdir('/proc/self/task'):
        try:
            names.append(open('/proc/self/task/%s/comm' % t).read().strip())
        except OSError:  # a thread that ended while listing
            pass
    return names


# a freed group's threads are gone at once, but gloo's tcp loop thread was once seen in CI still
# ending just after cleanup: give it a moment (a group still held keeps its threads for good)
deadline = time.time() + 5
names = thread_names()
while any('gloo' in n for n in names) and time.time() < deadline:
    time.sleep(0.05)
    names = thread_names()
with open(os.path.join(sys.argv[1], 'threads%d.txt' % info.rank), 'w') as f:
    f.write(' '.join(names))
'''


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='lists threads through /proc')
@pytest.mark.parametrize('init', ['init_distributed', 'raw'])
def test_cleanup_distributed_frees_the_gloo_group(tmp_path, init):
    """cleanup_distributed must join gloo's worker threads: when they outlive the script, a
    finished collective they release during interpreter shutdown aborts the process (SIGABRT,
    "terminate called without an active exception") - a race; the surviving threads are not."""
    script = tmp_path / 'exit_worker.py'
    script.write_text(EXIT_WORKER.format(repo=os.path.dirname(os.path.dirname(HERE))))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '0',
           '--rdzv_backend', 'c10d', '--rdzv_endpoint', '127.0.0.1:0', str(script), str(tmp_path), init]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in range(2):
        threads = (tmp_path / ('threads%d.txt' % rank)).read_text().split()
        assert not [t for t in threads if 'gloo' in t], threads


def _draws():
    return (random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1)))


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    from common.runtime import rng_state, set_rng_state
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = rng_state()
    expected = _draws()
    torch.save({'rng': state}, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)  # tensors and ints only: no numpy globals
    _draws()
    set_rng_state(loaded['rng'])
    assert _draws() == expected


def test_set_rng_state_reads_older_checkpoint_layouts():
    from common.runtime import set_rng_state
    torch.manual_seed(5)
    lhsc_old = torch.get_rng_state()  # lhsc 'rng_state': a bare ByteTensor
    expected_torch = float(torch.rand(1))
    set_rng_state(lhsc_old)
    assert float(torch.rand(1)) == expected_torch

    random.seed(7), np.random.seed(8), torch.manual_seed(9)
    m2hse_old = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    expected = _draws()
    set_rng_state(m2hse_old)
    assert _draws() == expected

    random.seed(10), np.random.seed(10), torch.manual_seed(10)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    avas_old = {'python': random.getstate(), 'torch': torch.get_rng_state(),
                'numpy': (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    expected = _draws()
    set_rng_state(avas_old)
    assert _draws() == expected

    np.random.seed(11), torch.manual_seed(12)
    st = np.random.get_state()
    fhn_old = {'torch': torch.get_rng_state(), 'numpy': torch.from_numpy(st[1].astype(np.int64)),
               'numpy_pos': int(st[2]), 'numpy_gauss': [int(st[3]), float(st[4])]}
    expected = (float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(fhn_old)
    assert (float(np.random.rand()), float(torch.rand(1))) == expected


def test_export_gpu_id_sets_cuda_visible_devices_or_refuses(monkeypatch):
    from common.errors import InputError
    from common.runtime import export_gpu_id
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    assert export_gpu_id(' 0,1') == '0,1'
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '0,1'
    assert export_gpu_id(1) == '1' and os.environ['CUDA_VISIBLE_DEVICES'] == '1'
    with pytest.raises(InputError, match='--device cuda: give GPU ids'):
        export_gpu_id('cuda', flag='--device')
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '1'
