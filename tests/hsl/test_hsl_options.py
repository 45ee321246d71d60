"""main.py keeps every upstream flag (parser.py) with its default; port flags default to upstream's
hard-coded strings."""
import subprocess
import sys
import os

from hsl import parser

UPSTREAM_DEFAULTS = {
    'data_path': '../data', 'data_name': 'KDDCup2020', 'use_dup': False, 'vocab_path': '../data/KDDCup2020',
    'margin': 0.2, 'num_epochs': 30, 'batch_size': 256, 'learning_rate': 0.0002, 'decay_rate': 0.9,
    'step_size': 1, 'grad_clip': 2.0, 'log_step': 50, 'logger_name': None, 'resume': '', 'test': False,
    'submit': None, 'out_path': None, 'score_to': None, 'word_dim': 512, 'embed_size': 1024,
    'num_workers': 4, 'img_dim': 2048, 'no_imgnorm': False, 'no_txtnorm': False, 'glove': False,
    'base_loss': 'ContrastiveLoss', 'top_k': 20, 'model': 'HSL', 'img_num_layers': 6, 'txt_num_layers': 4,
    'd_model': 512, 'score_agg': 'max', 'HIDDEN_SIZE': 512, 'MULTI_HEAD': 8, 'DROPOUT_R': 0.1,
    'FLAT_MLP_SIZE': 512, 'FLAT_GLIMPSES': 1, 'FLAT_OUT_SIZE': 1024,
}


def test_every_upstream_flag_keeps_its_default():
    opt = vars(parser.get_parser([]))
    for name, value in UPSTREAM_DEFAULTS.items():
        assert opt[name] == value, name


def test_hard_coded_paths_become_flags_with_the_original_strings():
    opt = parser.get_parser([])
    assert opt.glove_path == '../data/glove_model.bin'
    assert opt.answer_path == '../data/kddcup/valid/valid_answer.json'
    assert os.path.join(opt.vocab_path, 'kddcup_vocab.pkl') == '../data/KDDCup2020/kddcup_vocab.pkl'


def test_eval_only_is_an_alias_of_test_and_submit_choices_kept():
    assert parser.get_parser(['--eval_only']).test and parser.get_parser(['--test']).test
    assert parser.get_parser(['--submit', 'testB']).submit == 'testB'


def test_entry_scripts_run_by_path_from_another_folder(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for script in ('main.py', 'parse_dataset.py', 'predict.py'):
        out = subprocess.run([sys.executable, os.path.join(repo, 'hsl', script), '--help'], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and 'usage:' in out.stdout, (script, out.stderr[-500:])


def test_help_of_every_entry_script_is_fast(tmp_path):
    import time
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for script in ('main.py', 'parse_dataset.py', 'predict.py', 'demo.py', 'make_demo_data.py'):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.join(repo, 'hsl', script), '--help'], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - start
        assert out.returncode == 0 and elapsed < 1.5, (script, elapsed, out.stderr[-500:])


def test_explicit_options_are_the_ones_given():
    assert parser.explicit_options(['--glove', '--score_agg', 'max', '--resume', 'x']) == {
        'glove', 'score_agg', 'resume'}
    assert parser.explicit_options([]) == set()
