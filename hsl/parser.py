"""Command-line options of main.py: every upstream flag (parser.py) with its default, plus port flags."""
import argparse

from common.progress import add_progress_arg
from common.runtime_args import add_runtime_args


def build_parser():
    parser = argparse.ArgumentParser(
        description='Hierarchical-Similarity-Learning-for-Language-based-Product-Image-Retrieval')

    # Basics for training (upstream parser.py, same order, spelling and defaults)
    parser.add_argument('--data_path', default='../data', help='path to datasets')
    parser.add_argument('--data_name', default='KDDCup2020', help='denote datasets')
    parser.add_argument('--use_dup', action='store_true', help='Use duplicate training set.')
    parser.add_argument('--vocab_path', default='../data/KDDCup2020',
                        help='Folder holding kddcup_vocab.pkl (or the .pkl file itself). '
                             'Upstream ignored this flag and hard-coded the same path.')
    parser.add_argument('--margin', default=0.2, type=float,
                        help='Rank loss margin. (unused upstream: the loss has no margin)')
    parser.add_argument('--num_epochs', default=30, type=int, help='Number of training epochs.')
    parser.add_argument('--batch_size', default=256, type=int,
                        help='Size of a training mini-batch (per process under torchrun).')
    parser.add_argument('--learning_rate', default=.0002, type=float, help='Initial learning rate.')
    parser.add_argument('--decay_rate', default=0.9, type=float, help='Learning rate decay rate.')
    parser.add_argument('--step_size', default=1, type=int, help='Step size to decay learning rate.')
    parser.add_argument('--grad_clip', default=2., type=float, help='Gradient clipping threshold.')
    parser.add_argument('--log_step', default=50, type=int,
                        help='Number of steps to print and record the log.')
    parser.add_argument('--logger_name', default=None,
                        help='Path to save the model and Tensorboard log.')
    parser.add_argument('--resume', default='', type=str, metavar='PATH',
                        help='Path to latest checkpoint (default: none)')
    parser.add_argument('--test', '--eval_only', dest='test', action='store_true',
                        help='Only evaluate on valid set. (--eval_only is the README spelling)')
    parser.add_argument('--submit', default=None, choices=['testA', 'testB'],
                        help='Generate submission file. (no submission code exists upstream)')
    parser.add_argument('--out_path', default=None, type=str,
                        help='Path to save submission file (unused upstream)')
    parser.add_argument('--score_to', default=None, type=str,
                        help='Path to save scores file (CSV query_id,product_id,score)')

    # Embedding Related
    parser.add_argument('--word_dim', default=512, type=int,
                        help='Dimensionality of the word embedding.')
    parser.add_argument('--embed_size', default=1024, type=int,
                        help='Dimensionality of the joint embedding.')
    parser.add_argument('--num_workers', default=4, type=int, help='Number of data loader workers.')
    parser.add_argument('--img_dim', default=2048, type=int,
                        help='Dimensionality of the image embedding.')
    parser.add_argument('--no_imgnorm', action='store_true',
                        help='Do not normalize the image embeddings. (ignored upstream: always normalised)')
    parser.add_argument('--no_txtnorm', action='store_true',
                        help='Do not normalize the text embeddings.')
    parser.add_argument('--glove', action='store_true', help='Use GloVe embedding.')

    parser.add_argument('--base_loss', default='ContrastiveLoss', type=str,
                        help='Basic loss function. (unused upstream)')
    parser.add_argument('--top_k', default=20, type=int,
                        help='Top k bounding boxes in terms of area.')
    parser.set_defaults(model='HSL')
    parser.add_argument('--img_num_layers', default=6, type=int,
                        help='Number of image encoder layers. (ignored upstream: 3+3 hard-coded)')
    parser.add_argument('--txt_num_layers', default=4, type=int,
                        help='Number of text encoder layers. (ignored upstream: 2+2 hard-coded)')
    parser.add_argument('--d_model', default=512, type=int,
                        help='Dimensionality of transformer hidden layers.')
    parser.add_argument('--score_agg', default='max', type=str,
                        help='Style to aggregate scores of bboxes: max, mean, sum, top<k>.')

    parser.add_argument('--HIDDEN_SIZE', default=512, type=int, help='AttFlat input size (= d_model)')
    parser.add_argument('--MULTI_HEAD', default=8, type=int, help='(unused upstream)')
    parser.add_argument('--DROPOUT_R', default=0.1, type=float, help='AttFlat MLP dropout')
    parser.add_argument('--FLAT_MLP_SIZE', default=512, type=int, help='AttFlat MLP hidden size')
    parser.add_argument('--FLAT_GLIMPSES', default=1, type=int, help='AttFlat glimpses')
    parser.add_argument('--FLAT_OUT_SIZE', default=1024, type=int, help='AttFlat output (= embed_size)')

    # Port flags: upstream's hard-coded paths (defaults = the original strings, main.py:44,157)
    port = parser.add_argument_group('port additions')
    port.add_argument('--glove_path', default='../data/glove_model.bin',
                      help='word2vec-binary GloVe file used with --glove')
    port.add_argument('--answer_path', default='../data/kddcup/valid/valid_answer.json',
                      help='valid_answer.json of the KDD Cup 2020 valid split')
    port.add_argument('--ndcg_official', action='store_true',
                      help='also report the Tianchi scorer NDCG@5 (gt ids missing from a pool count)')
    port.add_argument('--out_json', default=None, help='write metrics as JSON (nDCG, num_queries, ...)')
    port.add_argument('--resume_weights_only', action='store_true',
                      help='treat --resume as upstream does even for port checkpoints '
                           '(weights only; epoch, optimizer, schedule and best score restart)')
    port.add_argument('--opt_from_checkpoint', action='store_true',
                      help="take the model flags (sizes, --glove, --no_txtnorm, --score_agg, --top_k) "
                           "from --resume's stored opt, over any given on the command line; "
                           "evaluation (--test) already takes those not given explicitly")
    port.add_argument('--fix_topk', action='store_true',
                      help='parse every digit of --score_agg top<k> (upstream reads only the last one)')
    port.add_argument('--eval_naive', action='store_true',
                      help="evaluate with upstream's per-query loop (hsl/evaluation.py, the slow "
                           "reference) instead of the fast path (hsl/evaluation_fast.py)")
    port.add_argument('--eval_batch_size', default=4, type=int,
                      help='queries per batch of the naive evaluation loop (upstream: 4)')
    port.add_argument('--eval_chunk', default=128, type=int,
                      help='queries whose candidate products are encoded together (fast evaluation; '
                           'memory ~ chunk x pool x top_k x embed_size x 8 bytes)')
    add_runtime_flags(parser)
    add_progress_arg(parser)
    return parser


def add_runtime_flags(parser):
    """--device/--seed/--deterministic/--amp in their own help group."""
    add_runtime_args(parser.add_argument_group('runtime'))


def get_parser(argv=None):
    """Parse `argv` (default sys.argv) and return the options Namespace, as upstream get_parser()."""
    return build_parser().parse_args(argv)


def explicit_options(argv=None):
    """Names (dests) of the options given on the command line, whatever their value."""
    parser = build_parser()
    parser._defaults.clear()  # set_defaults(model='HSL') is not a given option
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


if __name__ == '__main__':
    get_parser()
