"""Entry-script flags: upstream names/defaults (store_false!), the --device GPU-id form, vocab.py,
predict.py, and scripts running by path from another directory."""
import json
import os
import subprocess
import sys

import numpy as np

from lhsc import opts, predict, vocab as vocab_cli

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, 'data')
UPSTREAM = os.path.join(DATA, 'upstream')


def test_upstream_flags_and_defaults():
    opt = opts.build_parser().parse_args([])
    expected = dict(data_path='/Data1/zengsheng/works/dl_works/person/flickr_datas', data_name='f30k_precomp',
                    vocab_path='./vocab/', model_name='./runs/LHSC/checkpoint', logger_name='./runs/LHSC/log',
                    batch_size=128, num_epochs=50, lr_update=30, learning_rate=0.0002, drop_out=0.0, workers=20,
                    log_step=10, val_step=1000, grad_clip=2.0, margin=0.2, max_violation=True, img_dim=2048,
                    word_dim=300, embed_size=1024, sim_dim=256, num_layers=1, bi_gru=True, no_imgnorm=False,
                    no_txtnorm=False, model='LHSC', module_name='SGR', sgr_step=3, device='auto')
    for key, value in expected.items():
        assert getattr(opt, key) == value, key
    flipped = opts.build_parser().parse_args(['--max_violation', '--bi_gru', '--no_imgnorm'])
    assert flipped.max_violation is False and flipped.bi_gru is False and flipped.no_imgnorm is True


def test_device_gpu_id_string_sets_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    spec = opts.apply_device_flag('1')
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '1'
    assert spec in ('cpu', 'cuda')
    assert opts.apply_device_flag('cpu') == 'cpu' and opts.apply_device_flag('cuda:0') == 'cuda:0'


def test_vocab_cli_builds_scan_layout(tmp_path):
    folder = tmp_path / 'f30k_precomp'
    folder.mkdir()
    (folder / 'train_caps.txt').write_text('a dog runs\na dog sits\na cat runs\na dog runs\n')
    (folder / 'dev_caps.txt').write_text('a dog\nthe cat\n')
    v = vocab_cli.main(['--data_path', str(tmp_path), '--data_name', 'f30k_precomp',
                        '--vocab_path', str(tmp_path / 'vocab'), '--threshold', '2'])
    saved = json.load(open(tmp_path / 'vocab' / 'f30k_precomp_vocab.json'))
    assert list(saved['word2idx'])[:4] == ['<pad>', '<start>', '<end>', '<unk>']
    assert set(saved['word2idx']) == {'<pad>', '<start>', '<end>', '<unk>', 'a', 'dog', 'runs', 'cat'}
    assert saved['idx'] == len(v) == 8


def test_predict_ranks_images_and_captions(tmp_path, capsys):
    out = predict.main(['--model_path', os.path.join(UPSTREAM, 'lhsc_legacy.pth.tar'), '--data_path', DATA,
                        '--vocab_path', os.path.join(DATA, 'vocab'), '--caption', 'a man on the grass',
                        '--image_index', '2', '--topk', '4', '--device', 'cpu',
                        '--export', str(tmp_path / 'e.npz')])
    (text, top, scores), = out['captions']
    assert len(top) == 4 and scores == sorted(scores, reverse=True)
    (index, top_caps, cap_scores), = out['images']
    reference = np.load(os.path.join(UPSTREAM, 'lhsc_test_sims.npy'))[2]
    assert top_caps == list(np.argsort(-reference, kind='stable')[:4])
    assert np.allclose(cap_scores, reference[top_caps], atol=1e-5)
    exported = np.load(tmp_path / 'e.npz')
    assert exported['img_embs'].shape == (30, 36, 16) and exported['cap_embs'].shape[0] == 150


def test_evaluation_runs_by_path_from_another_directory(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', 'evaluation.py'), '--model_path',
           os.path.join(UPSTREAM, 'sgraf_saf_legacy.pth.tar'), '--data_path', DATA, '--vocab_path',
           os.path.join(DATA, 'vocab'), '--device', 'cpu', '--out_json', 'r.json']
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'Image to text: 3.3 6.7 30.0 17.0 23.1' in done.stdout
    assert json.load(open(tmp_path / 'r.json'))['n_images'] == 30


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, 'lhsc', 'evaluation.py'), '--model_path', str(tmp_path / 'nope.pth.tar')]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and 'checkpoint file not found' in done.stderr and 'Traceback' not in done.stderr
