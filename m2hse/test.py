"""Evaluate a trained global or local checkpoint (upstream test_local.py; upstream's test_global.py
was dead SCAN code, this makes it work). Shared by test_global.py and test_local.py."""
import os
import sys

from common.errors import InputError
from common.logs import print_config, setup_logging
from common.results import save_scores, write_results
from common.runtime import export_gpu_id, resolve_device
from common.safeio import check_writable, cleanup_stale_tmp
from m2hse import data_provider as data
from m2hse import opts
from m2hse.checkpoints import check_level, check_vocabulary, load_model_checkpoint, load_weights
from m2hse.evaluation import evaluate, log_performance
from m2hse.model import build_model


def build_parser(level):
    return opts.build_test_parser(level)


def load_vocab(level, opt):
    """test_local.py:39 reads <data_name>_vocab_new_2.json, which upstream never shipped.
    Returns (vocabulary, the file it came from)."""
    plain = os.path.join(opt.vocab_path, '%s_vocab.json' % opt.data_name)
    if level == 'local':
        wanted = os.path.join(opt.vocab_path, '%s_vocab_new_2.json' % opt.data_name)
        if os.path.isfile(wanted):
            return data.read_vocab(wanted), wanted
        print('vocab file %s not found; falling back to %s' % (wanted, plain))
    if not os.path.isfile(plain):
        raise InputError('%s: vocabulary file not found; pass --vocab_path DIR' % plain)
    return data.read_vocab(plain), plain


def check_outputs(args):
    """--out_json / --out_scores are checked before the (long) evaluation starts."""
    for path, what in ((args.out_json, '--out_json file'), (args.out_scores, '--out_scores file')):
        if path:
            check_writable(path, what)
            cleanup_stale_tmp(path)


def load_model(level, args, device):
    """Checkpoint -> (model with its weights, the checkpoint's opt updated by the test flags, vocab)."""
    checkpoint = load_model_checkpoint(args.model_path)
    check_level(args.model_path, checkpoint, level)
    opt = checkpoint['opt']  # upstream took every setting from the pickled opt, then set these
    opt.loss_verbose = False
    opt.split = args.split
    opt.data_path = args.data_path
    opt.fold5 = args.fold5
    if args.vocab_path:
        opt.vocab_path = args.vocab_path
    vocab, vocab_file = load_vocab(level, opt)
    check_vocabulary(args.model_path, checkpoint, vocab, vocab_file)
    opt.vocab_size = len(vocab)
    model = build_model(level, opt).to(device)
    load_weights(model, checkpoint['model'], args.model_path)
    return model, opt, vocab


def main(level, argv=None, args=None):
    """Evaluate; `args` are the parsed test flags (parsed from `argv` when not given)."""
    args = build_parser(level).parse_args(argv) if args is None else args
    setup_logging()
    print("use GPU:", args.gpuid)
    argv_list = sys.argv[1:] if argv is None else argv
    if any(a == '--gpuid' or a.startswith('--gpuid=') for a in argv_list):
        export_gpu_id(args.gpuid)
    check_outputs(args)
    device = resolve_device(args.device)
    model, opt, vocab = load_model(level, args, device)

    print('Loading dataset')
    loader = data.get_test_loader(level, vocab, opt, split=args.load_split)
    print(opt)  # upstream's line
    print_config(vars(args), 'test flags')
    print('Computing results...')
    kwargs = {'attention': args.attention} if level == 'local' else {}
    result = evaluate(level, model, loader, opt, show_progress=not args.no_progress, **kwargs)
    log_performance(opt, opt.split, result)

    if args.out_json:
        write_results(args.out_json, result.metrics(), 'm2hse', argv=[sys.argv[0]] + list(argv_list),
                      checkpoint=args.model_path, data_path=data.split_dir(opt),
                      extra={'level': level, 'split_label': args.split, 'files_read': args.load_split})
    if args.out_scores:
        save_scores(args.out_scores, result.sims)
    return result
