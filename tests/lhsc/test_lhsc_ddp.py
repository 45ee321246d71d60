"""DDP on 2 CPU processes (torchrun, gloo) gives the same loss and gradients as one process on the
same global batch, and the sharded similarity pass gathers to the single-process matrix."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

WORKER = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, {repo!r})
    import numpy as np, torch
    torch.set_num_threads(1)
    from common.runtime import init_distributed
    from common.vocab import deserialize_vocab
    from lhsc import data
    from lhsc.evaluation import shard_attn_scores
    from lhsc.model import build_model
    import argparse
    out = sys.argv[1]
    info = init_distributed('cpu')
    opt = argparse.Namespace(img_dim=20, embed_size=16, no_imgnorm=False, vocab_size=35, word_dim=12,
                             num_layers=1, drop_out=0.0, bi_gru=True, no_txtnorm=False, sim_dim=8,
                             grad_clip=2.0, margin=0.2, max_violation=True, learning_rate=2e-4,
                             model=sys.argv[2], module_name=sys.argv[3], sgr_step=3)
    torch.manual_seed(0)
    model = build_model(opt, dist_info=info)
    with torch.no_grad():   # make the GCN blocks non-trivial (their BN weights start at 0)
        for m in model.img_enc.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.fill_(0.7)
    for enc in (model.img_enc, model.txt_enc, model.sim_enc):
        for m in enc.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    vocab = deserialize_vocab(os.path.join({data!r}, 'vocab', 'f30k_precomp_vocab.json'))
    dset = data.PrecompDataset(os.path.join({data!r}, 'f30k_precomp'), 'train', vocab)
    items = [dset[i] for i in range(12)]
    if info.distributed:
        items = items[6 * info.rank:6 * (info.rank + 1)]
    model.train_start()
    sims = model.batch_scores(*data.collate_fn(items)[:3])
    loss = model.criterion(sims)
    loss.backward()
    if info.distributed:
        from lhsc.model import sum_gradients
        sum_gradients(model.params)
    model.val_start()
    g = torch.Generator().manual_seed(5)
    img = torch.nn.functional.normalize(torch.rand(9, 36, 16, generator=g), dim=-1).numpy()
    lens = [3, 5, 2, 7, 4, 6, 1]
    cap = np.zeros((7, 7, 16), np.float32)
    for j, n in enumerate(lens):
        cap[j, :n] = torch.nn.functional.normalize(torch.rand(n, 16, generator=g), dim=-1).numpy()
    eval_sims = shard_attn_scores(model, img, cap, lens, shard_size=2, progress=False)
    if info.rank == 0:
        torch.save({{'loss': loss.item(), 'sims': sims.detach(), 'grads': [p.grad.clone() for p in model.params],
                    'eval_sims': eval_sims, 'world': info.world_size}}, out)
    from common.runtime import cleanup_distributed
    cleanup_distributed()  # exiting with gloo's threads alive can abort ("terminate called ...")
''')


def run_worker(tmp_path, name, nproc, model, head):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(repo=REPO, data=os.path.join(HERE, 'data')))
    out = tmp_path / ('%s.pt' % name)
    if nproc == 1:
        cmd = [sys.executable, str(script), str(out), model, head]
    else:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc),
               '--master_port', str(29500 + os.getpid() % 1000), str(script), str(out), model, head]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(key, None)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return load_checkpoint(out)


@pytest.mark.slow
@pytest.mark.parametrize('model,head', [('LHSC', 'SGR')])  # SGRAF shares every DDP code path
def test_two_gloo_processes_equal_one_process(tmp_path, model, head):
    single = run_worker(tmp_path, 'single', 1, model, head)
    double = run_worker(tmp_path, 'double', 2, model, head)
    assert single['world'] == 1 and double['world'] == 2
    assert double['loss'] == pytest.approx(single['loss'], abs=1e-5)
    assert single['loss'] > 0
    for a, b in zip(single['grads'], double['grads']):
        # atol covers grads that are exactly zero in theory (biases before BatchNorm): rounding noise
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4)
    assert max(g.abs().max().item() for g in single['grads']) > 1e-3
    assert np.abs(single['eval_sims'] - double['eval_sims']).max() <= 1e-6


@pytest.mark.slow
def test_train_py_under_torchrun_two_processes(tmp_path):
    from lhsc import make_demo_data
    make_demo_data.main(['--out_dir', str(tmp_path / 'data'), '--img_dim', '8', '--n_train', '30',
                         '--n_dev', '10', '--n_test', '10'])
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(30500 + os.getpid() % 1000), os.path.join(REPO, 'lhsc', 'train.py'),
           '--data_path', 'data', '--vocab_path', os.path.join(REPO, 'lhsc', 'vocab'), '--model_name', 'ck',
           '--logger_name', 'log', '--img_dim', '8', '--word_dim', '8', '--embed_size', '8', '--sim_dim', '8',
           '--batch_size', '30', '--num_epochs', '1', '--max_violation', '--device', 'cpu', '--seed', '0']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load_checkpoint(str(tmp_path / 'ck' / 'checkpoint_0.pth.tar'))
    assert ckpt['Eiters'] == 5          # 150 captions / global batch 30 (15 per rank)
    assert done.stderr.count('rsum: ') == 1   # only rank 0 logs
