"""Training: the loss goes down on learnable data, train.py writes upstream-format checkpoints and
TensorBoard scalars under upstream's names, and --resume continues exactly."""
import glob
import os

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint
from common.vocab import deserialize_vocab
from lhsc import data, make_demo_data, train
from lhsc.model import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED_VOCAB = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'lhsc', 'vocab')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('lhsc_demo')
    make_demo_data.main(['--out_dir', str(root), '--img_dim', '8', '--n_train', '30', '--n_dev', '10',
                         '--n_test', '10', '--seed', '1'])
    return str(root)


def train_argv(demo_data, run_dir, epochs, *extra):
    return ['--data_path', demo_data, '--vocab_path', SHIPPED_VOCAB, '--model_name', os.path.join(run_dir, 'ck'),
            '--logger_name', os.path.join(run_dir, 'log'), '--img_dim', '8', '--word_dim', '8',
            '--embed_size', '8', '--sim_dim', '8', '--batch_size', '30', '--num_epochs', str(epochs),
            '--lr_update', '100', '--learning_rate', '2e-3', '--max_violation', '--device', 'cpu',
            '--seed', '0', '--log_step', '5'] + list(extra)


def test_short_training_lowers_the_loss(demo_data, make_opt):
    torch.manual_seed(0)
    vocab = deserialize_vocab(os.path.join(SHIPPED_VOCAB, 'f30k_precomp_vocab.json'))
    opt = make_opt(img_dim=8, word_dim=8, embed_size=8, sim_dim=8, vocab_size=len(vocab),
                   learning_rate=1e-2, max_violation=False)
    model = build_model(opt)
    dset = data.PrecompDataset(os.path.join(demo_data, 'f30k_precomp'), 'train', vocab, img_dim=8)
    batches = [data.collate_fn([dset[i] for i in range(k, k + 30)]) for k in range(0, 150, 30)]
    model.train_start()
    losses = [[model.train_emb(*b).item() for b in batches] for _ in range(6)]
    first, last = np.mean(losses[0]), np.mean(losses[-1])
    assert last < 0.9 * first, losses
    assert all(np.isfinite(losses[-1]))


def test_train_writes_upstream_checkpoints_and_scalars(demo_data, tmp_path):
    best = train.main(train_argv(demo_data, str(tmp_path), 2))
    files = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / 'ck' / '*.pth.tar')))
    assert files == ['checkpoint_0.pth.tar', 'checkpoint_1.pth.tar', 'model_best.pth.tar']
    ckpt = load_checkpoint(str(tmp_path / 'ck' / 'checkpoint_1.pth.tar'))
    assert ckpt['epoch'] == 2 and ckpt['Eiters'] == 10 and ckpt['best_rsum'] == pytest.approx(best)
    assert isinstance(ckpt['model'], list) and len(ckpt['model']) == 3
    assert ckpt['opt'].max_violation is False and ckpt['opt'].bi_gru is True and ckpt['opt'].vocab_size == 8481
    assert 'state' in ckpt['optimizer']
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / 'log'))
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'epoch', 'step', 'batch_time', 'data_time', 'Eit', 'lr', 'a/Loss', 'a/r1', 'a/r5', 'a/r10',
            'b/medr', 'b/meanr', 'a/r1i', 'a/r5i', 'a/r10i', 'b/medri', 'a/r_sum'} <= tags
    assert [e.step for e in events.Scalars('a/r_sum')] == [5, 10]


def test_resume_continues_exactly(demo_data, tmp_path):
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    train.main(train_argv(demo_data, str(straight), 3))
    train.main(train_argv(demo_data, str(resumed), 2))
    train.main(train_argv(demo_data, str(resumed), 3, '--resume', 'auto'))
    a = load_checkpoint(str(straight / 'ck' / 'checkpoint_2.pth.tar'))
    b = load_checkpoint(str(resumed / 'ck' / 'checkpoint_2.pth.tar'))
    assert a['Eiters'] == b['Eiters'] == 15 and a['epoch'] == b['epoch'] == 3
    for sa, sb in zip(a['model'], b['model']):
        for k in sa:
            assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6), k


def test_sgraf_trains_through_the_same_script(demo_data, tmp_path):
    train.main(train_argv(demo_data, str(tmp_path), 1, '--model', 'SGRAF', '--module_name', 'SAF'))
    ckpt = load_checkpoint(str(tmp_path / 'ck' / 'checkpoint_0.pth.tar'))
    assert 'SAF_module.attn_sim_w.weight' in ckpt['model'][2] and list(ckpt['model'][0]) == ['fc.weight', 'fc.bias']


def test_norms_are_safe_in_half_precision():
    from lhsc.model import l1norm, l2norm
    x = torch.zeros(2, 3, 4, dtype=torch.float16)
    x[0, 0] = torch.tensor([3., 4., 0., 0.])
    y = l2norm(x)
    assert y.dtype == torch.float16 and not torch.isnan(y).any()
    assert y[0, 0].tolist() == [0.6001, 0.7998, 0.0, 0.0] or torch.allclose(y[0, 0].float(), torch.tensor([.6, .8, 0, 0]), atol=1e-3)
    assert not torch.isnan(l1norm(x, -1)).any()


def test_amp_flag_is_a_noop_on_cpu(make_opt):
    model = build_model(make_opt(), amp=True)
    assert model.amp is False and not model.scaler.is_enabled()


@pytest.mark.cuda
def test_cuda_amp_training_step(make_opt):
    if not torch.cuda.is_available():
        pytest.skip('needs CUDA')
    vocab = deserialize_vocab(os.path.join(HERE, 'data', 'vocab', 'f30k_precomp_vocab.json'))
    model = build_model(make_opt(), device='cuda', amp=True)
    dset = data.PrecompDataset(os.path.join(HERE, 'data', 'f30k_precomp'), 'train', vocab)
    batch = data.collate_fn([dset[i] for i in range(10)])
    model.train_start()
    losses = [model.train_emb(*batch).item() for _ in range(3)]
    assert all(np.isfinite(losses)) and model.amp


def test_bad_embed_size_and_resume_vocab_mismatch_are_clear_errors(demo_data, tmp_path):
    with pytest.raises(SystemExit, match='divisible by 4'):
        train.main(train_argv(demo_data, str(tmp_path), 1, '--embed_size', '10'))
    from common.checkpoint import save_checkpoint
    ckpt_dir = tmp_path / 'ck'
    small = train.opts.build_parser().parse_args(['--img_dim', '8', '--word_dim', '8', '--embed_size', '8',
                                                  '--sim_dim', '8'])
    small.vocab_size = 35  # not the 8481 words of the shipped f30k vocabulary
    model = build_model(small)
    save_checkpoint({'epoch': 1, 'model': model.state_dict(), 'best_rsum': 0, 'Eiters': 5, 'opt': None},
                    str(ckpt_dir / 'checkpoint_0.pth.tar'))
    with pytest.raises(SystemExit, match='embeds 35 words but the vocabulary has 8481'):
        train.main(train_argv(demo_data, str(tmp_path), 2, '--resume', 'auto'))
