"""Command-line options of train_global.py / train_local.py (upstream opts.py, plus port-only flags).

The parsed Namespace is pickled into every checkpoint, so attribute names and defaults are
upstream's (`lr_update`, `batch_size`, ...). The README spells two flags differently
(`--lr_updata`, `--batchsize`); both spellings are accepted and land on upstream's attribute.
"""
import argparse

from common.progress import add_progress_arg
from common.runtime_args import add_runtime_args

# Upstream test_local.py:14-23 / test_global.py:15-24 defaults of the evaluation scripts.
TEST_DEFAULTS = {
    'local': {'model_path': './checkpoint/model_best.pth.tar', 'split': 'dev'},
    'global': {'model_path': './data/', 'split': 'test'},
}


class AliasAwareParser(argparse.ArgumentParser):
    """ArgumentParser whose prefix matching treats two spellings of one flag as one option.

    Plain argparse calls `--lr_up` ambiguous once `--lr_update` and `--lr_updata` both exist;
    upstream (one spelling) accepted it, so we keep that.
    """

    def _get_option_tuples(self, option_string):
        seen, unique = set(), []
        for entry in super()._get_option_tuples(option_string):
            if id(entry[0]) not in seen:
                seen.add(id(entry[0]))
                unique.append(entry)
        return unique


def add_upstream_args(parser):
    """Upstream opts.py:7-61, same order, defaults and types (order = pickled Namespace order)."""
    add = parser.add_argument
    add('--num_epochs', default=100, type=int, help='Number of training epochs.')
    add('--lr_update', '--lr_updata', dest='lr_update', default=50, type=int,
        help='Number of epochs to update the learning rate (README spelling: --lr_updata).')
    add('--batch_size', '--batchsize', dest='batch_size', default=100, type=int,
        help='Size of a training mini-batch (README spelling: --batchsize).')
    add('--log_step', default=10, type=int, help='Number of steps to print and record the log.')
    add('--logger_name', default='./runs/runX/log', help='Path to save the logs (performance.log, loss.log, TensorBoard).')
    add('--model_name', default='./runs/runX/checkpoint', help='Path to save the model.')
    add('--gamma_1', default=1, type=float, help='gamma_1 in msb loss.')
    add('--gamma_2', default=0.5, type=float, help='gamma_2 in msb loss.')
    add('--alpha_1', default=0.4, type=float, help='alpha_1 in global-level objective function.')
    add('--alpha_2', default=0.4, type=float, help='alpha_2 in global-level objective function.')
    add('--beta_1', default=0.4, type=float, help='beta_1 in local-level objective function.')
    add('--beta_2', default=0.4, type=float, help='beta_2 in local-level objective function.')
    add('--data_path', default='./data/', help='path to datasets.')
    add('--data_name', default='pascal_precomp', help='dataset folder under data_path, e.g. corel5k_precomp')
    add('--vocab_path', default='./vocab/', help='Path to saved vocabulary json files.')
    add('--word_dim', default=300, type=int, help='Dimensionality of the word embedding.')
    add('--embed_size', default=1024, type=int, help='Dimensionality of the joint embedding.')
    add('--grad_clip', default=2., type=float, help='Gradient clipping threshold.')
    add('--num_layers', default=1, type=int, help='Number of GRU layers.')
    add('--cnn_dim', default=4096, type=int, help='Dimensionality of the CNN embedding.')
    add('--bovw_dim', default=500, type=int, help='Dimensionality of the boVW.')
    # Upstream quirk (opts.py:50): no type, so any CLI value (even "False") is a truthy string.
    add('--bi_gru', default=True, help='Use bidirectional GRU (any value given is truthy, as upstream).')
    add('--raw_feature_norm', default="clipped_l2norm", help='clipped_l2norm|l2norm|no_norm|softmax')
    add('--lambda_softmax', default=9., type=float, help='Attention softmax temperature.')
    add('--Delta', default=0.1, type=float, help='The constant in msb loss.')
    add('--gpuid', default=0, type=str,
        help='exported as CUDA_VISIBLE_DEVICES when given explicitly (not under torchrun)')
    add('--learning_rate', default=.0002, type=float, help='Initial learning rate.')


def add_port_args(parser):
    """Flags the port adds; none changes a number unless its help says so."""
    add = parser.add_argument
    add_runtime_args(parser)  # --device --seed --deterministic --amp (AMP changes numerics)
    add_progress_arg(parser)
    add('--resume', default='', help='checkpoint (model.pth.tar) to continue training from')
    add('--workers', default=0, type=int, help='DataLoader worker processes (upstream: 0)')
    add('--detect_anomaly', action='store_true',
        help='turn on torch anomaly detection as upstream always did (slow; no number changes)')
    add('--global_mean_by_length', action='store_true',
        help='FIX (changes numbers): average global word features over each caption\'s own length '
             'instead of the batch\'s padded length (upstream model.py:155)')
    add('--max_steps', default=0, type=int,
        help='stop each epoch after this many iterations (0 = full epoch; for smoke tests)')


def build_parser():
    parser = AliasAwareParser(description='M2HSE training options')
    add_upstream_args(parser)
    add_port_args(parser)
    return parser


def parse_opt(argv=None):
    return build_parser().parse_args(argv)


def build_test_parser(level):
    """Flags of test_global.py / test_local.py: upstream's five, then the port's."""
    defaults = TEST_DEFAULTS[level]
    parser = argparse.ArgumentParser(description='Evaluate an M2HSE %s-level checkpoint' % level)
    add = parser.add_argument
    add('--data_path', default='./data/', help='path to datasets')
    add('--model_path', '--checkpoint', dest='model_path', default=defaults['model_path'],
        help='path to model (checkpoint file)')
    add('--split', default=defaults['split'],
        help='label written to the logs; upstream always reads the test files (see --load_split)')
    add('--gpuid', default=0., type=str, help='gpuid (exported only when given)')
    add('--fold5', action='store_true', help='fold5 (accepted and unused, as upstream)')
    # port additions
    add('--load_split', default='test',
        help='which {split}_*.npy/_caps.txt files to read (upstream: always test)')
    add('--vocab_path', default=None, help='vocab folder (default: the one stored in the checkpoint)')
    add('--device', default='auto', help='auto|cpu|cuda|cuda:N')
    add('--out_json', default=None, help='write i2t_mAP, t2i_mAP, mAP_sum, n_images, n_texts')
    add('--out_scores', default=None, help='save the image x text score matrix (.npy, float64)')
    if level == 'local':
        add('--attention', default='fast', choices=['fast', 'exact', 'reference'],
            help='local attention implementation (equal scores; exact = upstream op order)')
    add_progress_arg(parser)
    return parser
