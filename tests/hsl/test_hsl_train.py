"""Training: the loss goes down, main.py trains/checkpoints/logs, --resume semantics, GloVe
handling, and DDP with two gloo processes under torchrun."""
import contextlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint
from common.errors import InputError
from hsl import main as hsl_main
from hsl.data import load_vocab
from hsl.model import HSL
from hsl.utils import get_we_parameter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_short_training_lowers_the_loss(hh):
    torch.manual_seed(0)
    opt = hh.tiny_opt('A', ['--learning_rate', '0.002'])  # --no_txtnorm --score_agg mean
    opt.we_parameter = None  # plain embedding: learns faster in a few steps
    model = HSL(opt)
    g = torch.Generator().manual_seed(0)
    images, num_boxes = torch.rand(8, 3, 16, generator=g), torch.tensor([3, 2, 1, 3, 2, 3, 1, 2])
    caps, lengths = torch.randint(4, 10, (8, 4), generator=g), torch.full((8,), 4)
    model.train_start()
    losses = [model.train_emb(i, images, num_boxes, caps, lengths) for i in range(40)]
    assert model.Eiters == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def train_argv(hh, root, logger, *extra):
    data = os.path.join(root, 'data')
    return ['--logger_name', logger, '--data_path', data, '--vocab_path', os.path.join(data, 'KDDCup2020'),
            '--answer_path', os.path.join(data, 'kddcup', 'valid', 'valid_answer.json'),
            '--num_workers', '0', '--device', 'cpu', '--seed', '1', '--batch_size', '4',
            '--log_step', '1'] + hh.TINY_SIZES + hh.CONFIG_FLAGS['B'] + list(extra)


@pytest.fixture(scope='module')
def one_epoch_run(hh, tiny_root, tmp_path_factory):
    """main.py trained for one epoch on the tiny data: (logger folder, stdout, checkpoint)."""
    logger = str(tmp_path_factory.mktemp('hsl_one_epoch') / 'run')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        hsl_main.main(train_argv(hh, tiny_root, logger, '--use_dup', '--num_epochs', '1'))
    return logger, out.getvalue(), load_checkpoint(os.path.join(logger, 'checkpoint.pth.tar'))


def test_training_prints_upstream_lines_and_writes_upstream_checkpoint_layout(one_epoch_run):
    logger, out, ckpt = one_epoch_run
    assert 'epoch\n0\n' in out and 'nDCG score  ' in out and 'best\n' in out
    assert ckpt['epoch'] == 1 and ckpt['Eiters'] == 3  # 12 duplicate rows / batch 4
    assert {'optimizer', 'lr_scheduler', 'best_nDCG'} <= set(ckpt)
    assert os.path.isfile(os.path.join(logger, 'model_best.pth.tar'))


def test_training_logs_upstream_tensorboard_scalars(one_epoch_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logger, _, _ = one_epoch_run
    events = EventAccumulator(logger)
    events.Reload()
    assert set(events.Tags()['scalars']) == {'batch_time', 'data_time', 'lr', 'Cnt Le', 'nDCG'}
    assert [e.step for e in events.Scalars('Cnt Le')] == [1, 2, 3]  # first epoch: steps 1..3


def test_saved_checkpoint_reevaluates_to_its_saved_score(hh, tiny_root, one_epoch_run, capsys):
    logger, _, ckpt = one_epoch_run
    evaluated = hsl_main.main(train_argv(hh, tiny_root, logger, '--test', '--resume',
                                         os.path.join(logger, 'checkpoint.pth.tar')))
    assert evaluated.nDCG == ckpt['nDCG']


def test_port_checkpoint_resume_continues_epoch_optimizer_schedule_and_best(hh, tiny_root, one_epoch_run,
                                                                            tmp_path, capsys):
    logger0, _, ckpt = one_epoch_run
    logger = str(tmp_path / 'run')
    shutil.copytree(logger0, logger)
    hsl_main.main(train_argv(hh, tiny_root, logger, '--use_dup', '--num_epochs', '2',
                             '--resume', os.path.join(logger, 'checkpoint.pth.tar')))
    out = capsys.readouterr().out
    assert '=> resuming training at epoch 1' in out and 'epoch\n1\n' in out and 'epoch\n0\n' not in out
    ckpt2 = load_checkpoint(os.path.join(logger, 'checkpoint.pth.tar'))
    assert ckpt2['epoch'] == 2 and ckpt2['best_nDCG'] == max(ckpt['best_nDCG'], ckpt2['nDCG'])
    assert ckpt2['lr_scheduler']['last_epoch'] == 2
    steps = {float(s['step']) for s in ckpt2['optimizer']['state'].values()}
    assert steps == {6.0}  # Adam steps carried over (3 + 3)


def test_upstream_checkpoint_resume_is_weights_only(hh, tiny_root, tmp_path, capsys):
    glove = str(tmp_path / 'glove.bin')
    from gensim.models import KeyedVectors
    kv = KeyedVectors(vector_size=300)
    kv.add_vectors(['red', 'bag'], np.ones((2, 300), np.float32))
    kv.save_word2vec_format(glove, binary=True)
    argv = train_argv(hh, tiny_root, str(tmp_path / 'run'), '--num_epochs', '1', '--glove',
                      '--no_txtnorm', '--score_agg', 'mean', '--glove_path', glove,
                      '--resume', os.path.join(hh.DATA, 'upstream_ckpt_glove.pth.tar'))
    hsl_main.main(argv)
    out = capsys.readouterr().out
    assert "(epoch 3, nDCG 0.5)" in out and 'epoch\n0\n' in out and 'resuming training' not in out
    assert 'total loading words from glove... 2' in out


def test_glove_missing_stops_training_with_a_clear_message(hh, tiny_root, tmp_path):
    argv = train_argv(hh, tiny_root, str(tmp_path / 'run'), '--glove', '--glove_path',
                      str(tmp_path / 'absent.bin'))
    with pytest.raises(InputError) as err:
        hsl_main.main(argv)
    assert 'GloVe file not found: %s' % (tmp_path / 'absent.bin') in str(err.value)
    assert '--glove_path' in str(err.value)


def test_glove_rows_known_and_random(tmp_path):
    from gensim.models import KeyedVectors
    kv = KeyedVectors(vector_size=300)
    kv.add_vectors(['bag'], np.full((1, 300), 0.5, np.float32))
    kv.save_word2vec_format(str(tmp_path / 'g.bin'), binary=True)
    vocab = load_vocab(os.path.join(os.path.dirname(__file__), 'data', 'upstream_vocab.pkl'))
    np.random.seed(0)
    weight = get_we_parameter(vocab, str(tmp_path / 'g.bin'))
    assert weight.shape == (10, 300) and weight.dtype == np.float64
    assert np.all(weight[vocab('bag')] == 0.5)
    assert np.abs(weight[0]).max() <= 0.1 and not np.all(weight[0] == weight[1])


@pytest.mark.slow
def test_torchrun_ddp_two_gloo_processes(hh, tiny_root, tmp_path):
    logger = str(tmp_path / 'ddp')
    code = os.path.join(tiny_root, 'code')
    argv = train_argv(hh, tiny_root, logger, '--use_dup', '--num_epochs', '1')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           os.path.join(REPO, 'hsl', 'main.py')] + argv,
                          cwd=code, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('nDCG score  ') == 1  # rank 0 validates
    ckpt = load_checkpoint(os.path.join(logger, 'checkpoint.pth.tar'))
    assert ckpt['Eiters'] == 2  # 12 rows / (2 ranks x batch 4) -> 2 steps per rank


def test_amp_flag_is_a_no_op_on_cpu(hh):
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(4, 3, 16, generator=g), torch.tensor([3, 2, 1, 3]),
             torch.randint(4, 10, (4, 4), generator=g), torch.full((4,), 4))
    losses = []
    for extra in ([], ['--amp']):
        torch.manual_seed(0)
        model = HSL(hh.tiny_opt('B', extra))
        model.val_start()
        losses.append([model.train_emb(i, *batch) for i in range(2)])
    assert losses[0] == losses[1]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@pytest.mark.cuda
@cuda
def test_cuda_amp_training_and_eval_match_cpu(hh, tiny, tiny_root):
    from hsl.data import EvalDataset, eval_loader
    from hsl.evaluation_fast import evaluate
    data = os.path.join(tiny_root, 'data')
    vocab = load_vocab(os.path.join(data, 'KDDCup2020', 'kddcup_vocab.pkl'))
    results = {}
    for device in ('cpu', 'cuda'):
        torch.manual_seed(0)
        opt = hh.tiny_opt('B', ['--data_path', data, '--num_workers', '0'])
        model = HSL(opt, device=device)
        results[device] = evaluate(model, eval_loader(EvalDataset(opt, vocab, 'valid')), tiny['answer'])
    for q in results['cpu'].scores:
        np.testing.assert_allclose(results['cuda'].scores[q], results['cpu'].scores[q], rtol=1e-3, atol=1e-4)
    torch.manual_seed(0)
    model = HSL(hh.tiny_opt('A', ['--amp']), device='cuda')
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(8, 3, 16, generator=g), torch.tensor([3, 2, 1, 3, 2, 3, 1, 2]),
             torch.randint(4, 10, (8, 4), generator=g), torch.full((8,), 4))
    model.train_start()
    losses = [model.train_emb(i, *batch) for i in range(20)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_tensorboard_steps_increase_across_epochs_and_resume(hh, tiny_root, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logger = str(tmp_path / 'run')
    hsl_main.main(train_argv(hh, tiny_root, logger, '--use_dup', '--num_epochs', '2'))
    hsl_main.main(train_argv(hh, tiny_root, logger, '--use_dup', '--num_epochs', '3', '--resume',
                             os.path.join(logger, 'checkpoint.pth.tar')))
    capsys.readouterr()
    steps = []
    for name in sorted(os.listdir(logger)):
        if name.startswith('events.'):
            events = EventAccumulator(os.path.join(logger, name))
            events.Reload()
            steps += [e.step for e in events.Scalars('Cnt Le')]
    assert steps == list(range(1, 10))  # 3 epochs x 3 steps, never restarting
    assert load_checkpoint(os.path.join(logger, 'checkpoint.pth.tar'))['Eiters'] == 3  # upstream's per-epoch count


def test_training_prints_its_resolved_config_first(hh, tiny_root, tmp_path, capsys):
    hsl_main.main(train_argv(hh, tiny_root, str(tmp_path / 'run'), '--num_epochs', '1'))
    out = capsys.readouterr().out
    assert out.index('config:\n') < out.index('epoch\n0\n')
    assert "  score_agg: 'max'\n" in out and '  batch_size: 4\n' in out


def test_training_epoch_shows_a_progress_bar_on_request(hh, tiny_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', XMODAL_PROGRESS='1')
    argv = train_argv(hh, tiny_root, str(tmp_path / 'run'), '--num_epochs', '1')
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'hsl', 'main.py')] + argv, env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'epoch 0' in proc.stderr and ('it/s' in proc.stderr or 's/it' in proc.stderr)
    assert 'epoch\n0\n' in proc.stdout  # upstream's printed lines stay
    quiet = subprocess.run([sys.executable, os.path.join(REPO, 'hsl', 'main.py')] + argv + ['--no_progress'],
                           env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=180)
    assert quiet.returncode == 0 and 'it/s' not in quiet.stderr and 's/it' not in quiet.stderr
