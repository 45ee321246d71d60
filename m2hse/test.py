"""Evaluate a trained global or local checkpoint (upstream test_local.py; upstream's test_global.py
was dead SCAN code, this makes it work). Shared by test_global.py and test_local.py."""
import argparse
import os
import sys

from common.results import save_scores, write_results
from common.runtime import resolve_device
from common.vocab import deserialize_vocab
from m2hse import data_provider as data
from m2hse.evaluation import evaluate, log_performance
from m2hse.model import build_model
from m2hse.train import load_model_checkpoint, load_weights

DEFAULTS = {  # upstream test_local.py:14-23 / test_global.py:15-24
    'local': {'model_path': './checkpoint/model_best.pth.tar', 'split': 'dev'},
    'global': {'model_path': './data/', 'split': 'test'},
}


def build_parser(level):
    parser = argparse.ArgumentParser(description='Evaluate an M2HSE %s-level checkpoint' % level)
    parser.add_argument('--data_path', default='./data/', help='path to datasets')
    parser.add_argument('--model_path', default=DEFAULTS[level]['model_path'], help='path to model')
    parser.add_argument('--split', default=DEFAULTS[level]['split'],
                        help='label written to the logs; upstream always reads the test files '
                             '(see --load_split)')
    parser.add_argument('--gpuid', default=0., type=str, help='gpuid (exported only when given)')
    parser.add_argument('--fold5', action='store_true', help='fold5 (accepted and unused, as upstream)')
    # port additions
    parser.add_argument('--load_split', default='test',
                        help='which {split}_*.npy/_caps.txt files to read (upstream: always test)')
    parser.add_argument('--vocab_path', default=None,
                        help='vocab folder (default: the one stored in the checkpoint)')
    parser.add_argument('--device', default='auto', help='auto|cpu|cuda|cuda:N')
    parser.add_argument('--out_json', default=None, help='write i2t_mAP, t2i_mAP, mAP_sum, n_images, n_texts')
    parser.add_argument('--out_scores', default=None, help='save the image x text score matrix (.npy, float64)')
    if level == 'local':
        parser.add_argument('--attention', default='fast', choices=['fast', 'exact', 'reference'],
                            help='local attention implementation (equal scores; exact = upstream op order)')
    return parser


def load_vocab(level, opt):
    """test_local.py:39 reads <data_name>_vocab_new_2.json, which upstream never shipped."""
    plain = os.path.join(opt.vocab_path, '%s_vocab.json' % opt.data_name)
    if level == 'local':
        wanted = os.path.join(opt.vocab_path, '%s_vocab_new_2.json' % opt.data_name)
        if os.path.isfile(wanted):
            return deserialize_vocab(wanted)
        print('vocab file %s not found; falling back to %s' % (wanted, plain))
    if not os.path.isfile(plain):
        raise SystemExit('vocabulary file not found: %s (pass --vocab_path DIR)' % plain)
    return deserialize_vocab(plain)


def main(level, argv=None):
    args = build_parser(level).parse_args(argv)
    print("use GPU:", args.gpuid)
    argv_list = sys.argv[1:] if argv is None else argv
    if any(a == '--gpuid' or a.startswith('--gpuid=') for a in argv_list):
        os.environ['CUDA_VISIBLE_DEVICES'] = str(args.gpuid)
    device = resolve_device(args.device)
    if os.path.isdir(args.model_path):
        raise SystemExit('--model_path %s is a folder; pass the checkpoint file (e.g. model_best.pth.tar)'
                         % args.model_path)
    checkpoint = load_model_checkpoint(args.model_path)
    opt = checkpoint['opt']
    opt.loss_verbose = False
    opt.split = args.split
    opt.data_path = args.data_path
    opt.fold5 = args.fold5
    if args.vocab_path:
        opt.vocab_path = args.vocab_path

    vocab = load_vocab(level, opt)
    opt.vocab_size = len(vocab)
    model = build_model(level, opt).to(device)
    load_weights(model, checkpoint['model'], args.model_path)

    print('Loading dataset')
    try:
        loader = data.get_test_loader(level, vocab, opt, split=args.load_split)
    except data.DataLayoutError as err:
        raise SystemExit('data layout error: %s' % err)
    print(opt)
    print('Computing results...')
    kwargs = {'attention': args.attention} if level == 'local' else {}
    result = evaluate(level, model, loader, opt, **kwargs)
    log_performance(opt, opt.split, result)

    metrics = {k: result[k] for k in ('i2t_mAP', 't2i_mAP', 'mAP_sum', 'n_images', 'n_texts')}
    if args.out_json:
        write_results(args.out_json, metrics, 'm2hse', argv=[sys.argv[0]] + list(argv_list),
                      checkpoint=args.model_path, data_path=data.split_dir(opt),
                      extra={'level': level, 'split_label': args.split, 'files_read': args.load_split})
    if args.out_scores:
        save_scores(args.out_scores, result['sims'])
    return result
