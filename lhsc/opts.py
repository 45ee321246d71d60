"""Argument parser: every upstream LHSC flag with its original spelling and default, plus SGRAF's
--module_name/--sgr_step (used with --model SGRAF) and the port's runtime flags."""
import argparse
import re
import sys

from lhsc.errors import LhscInputError

UPSTREAM_MODEL_PATH = '/Data1/zengsheng/works/dl_works/person/flick1/LHSC/runs/LHSC/checkpoint/model_best.pth.tar'
UPSTREAM_DATA_PATH = '/Data1/zengsheng/works/dl_works/person/flickr_datas'
GEMMS = ('onednn', 'torch')  # lhsc.gemm.CHOICES, spelled out here so --help needs no torch
SGRAF_ONLY = ('module_name', 'sgr_step')  # flags that mean something only for --model SGRAF


def build_parser():
    parser = argparse.ArgumentParser(description='Train LHSC (or plain SGRAF) on SCAN precomp data.')
    # --------------------------- data path -------------------------#
    parser.add_argument('--data_path', default='/Data1/zengsheng/works/dl_works/person/flickr_datas',
                        help='path to datasets')
    parser.add_argument('--data_name', default='f30k_precomp',
                        help='{coco,f30k}_precomp')
    parser.add_argument('--vocab_path', default='./vocab/',
                        help='Path to saved vocabulary json files.')
    parser.add_argument('--model_name', default='./runs/LHSC/checkpoint',
                        help='Path to save the model.')
    parser.add_argument('--logger_name', default='./runs/LHSC/log',
                        help='Path to save Tensorboard log.')

    # ----------------------- training setting ----------------------#
    parser.add_argument('--batch_size', default=128, type=int,
                        help='Size of a training mini-batch.')
    parser.add_argument('--num_epochs', default=50, type=int,
                        help='Number of training epochs.')
    parser.add_argument('--lr_update', default=30, type=int,
                        help='Number of epochs to update the learning rate.')
    parser.add_argument('--learning_rate', default=0.0002, type=float,
                        help='Initial learning rate.')
    parser.add_argument('--drop_out', default=0.0, type=float,
                        help='Initial drop out rate.')
    parser.add_argument('--workers', default=20, type=int,
                        help='Number of data loader workers (accepted but unused, as upstream).')
    parser.add_argument('--log_step', default=10, type=int,
                        help='Number of steps to print and record the log.')
    parser.add_argument('--val_step', default=1000, type=int,
                        help='Number of steps to run validation.')
    parser.add_argument('--grad_clip', default=2., type=float,
                        help='Gradient clipping threshold.')
    parser.add_argument('--margin', default=0.2, type=float,
                        help='Rank loss margin.')
    # store_false (upstream opts.py:42): default True, passing the flag DISABLES max violation
    parser.add_argument('--max_violation', action='store_false',
                        help='Passing this flag turns OFF hardest-negative mining (store_false).')

    # ------------------------- model setting -----------------------#
    parser.add_argument('--img_dim', default=2048, type=int,
                        help='Dimensionality of the image embedding.')
    parser.add_argument('--word_dim', default=300, type=int,
                        help='Dimensionality of the word embedding.')
    parser.add_argument('--embed_size', default=1024, type=int,
                        help='Dimensionality of the joint embedding.')
    parser.add_argument('--sim_dim', default=256, type=int,
                        help='Dimensionality of the sim embedding.')
    parser.add_argument('--num_layers', default=1, type=int,
                        help='Number of GRU layers.')
    # store_false (upstream opts.py:56): default True, passing the flag DISABLES the bi-GRU
    parser.add_argument('--bi_gru', action='store_false',
                        help='Passing this flag turns OFF the bidirectional GRU (store_false).')
    parser.add_argument('--no_imgnorm', action='store_true',
                        help='Do not normalize the image embeddings.')
    parser.add_argument('--no_txtnorm', action='store_true',
                        help='Do not normalize the text embeddings.')
    # upstream default "1" (CUDA_VISIBLE_DEVICES=1) hides the only GPU of a one-GPU box
    parser.add_argument('--device', default='auto', type=str,
                        help='auto|cpu|cuda|cuda:N, or as upstream a GPU-id string ("1", "0,1") '
                             'written to CUDA_VISIBLE_DEVICES (port default: auto).')

    # ------------------------- SGRAF (--model SGRAF) ----------------#
    parser.add_argument('--model', default='LHSC', choices=['LHSC', 'SGRAF'],
                        help='LHSC (default) or plain SGRAF.')
    parser.add_argument('--module_name', default='SGR', type=str, choices=['SGR', 'SAF'],
                        help='SGRAF similarity head: SGR, SAF (only with --model SGRAF).')
    parser.add_argument('--sgr_step', default=3, type=int,
                        help='Step of the SGR (only with --model SGRAF --module_name SGR).')

    # ------------------------- port additions ----------------------#
    parser.add_argument('--seed', default=None, type=int, help='seed python, numpy and torch')
    parser.add_argument('--deterministic', action='store_true', help='deterministic algorithms')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--resume', default='', type=str,
                        help='checkpoint to resume from (model, optimizer, epoch, best_rsum, Eiters); '
                             '"auto" = newest checkpoint_<epoch>.pth.tar in --model_name')
    parser.add_argument('--shard_size', default=100, type=int,
                        help='images per shard of the validation similarity pass')
    parser.add_argument('--max_mem', default=None, type=float,
                        help='memory budget (MiB) of one chunk of the similarity pass '
                             '(default: 64 on CPU, 2048 on CUDA)')
    return parser


def build_eval_parser(model_path=UPSTREAM_MODEL_PATH, data_path=UPSTREAM_DATA_PATH,
                      description='Evaluate an LHSC/SGRAF checkpoint (upstream evalrank).'):
    """evaluation.py's flags; the defaults reproduce upstream's __main__ (its hard-coded paths)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--model_path', default=model_path, help='checkpoint (.pth.tar)')
    parser.add_argument('--data_path', default=data_path,
                        help='root holding <data_name>/ (overrides the checkpoint opt.data_path)')
    parser.add_argument('--split', default='test', choices=['test', 'testall', 'dev'])
    parser.add_argument('--fold5', action='store_true', help='COCO 1K: mean over 5 folds of testall')
    parser.add_argument('--vocab_path', default=None, help="folder with <data_name>_vocab.json "
                        "(default: the checkpoint's opt.vocab_path, as upstream)")
    parser.add_argument('--ensemble', nargs='+', default=None, metavar='CKPT',
                        help='average the similarities of these checkpoints (and --model_path if '
                             'given explicitly), e.g. --ensemble SAF.pth.tar SGR.pth.tar')
    parser.add_argument('--out_json', default=None, help='write metrics JSON here')
    parser.add_argument('--out_scores', default=None,
                        help='write the float64 image x caption matrix (.npy; fold5: folds x 1000 x 5000)')
    parser.add_argument('--device', default='auto', help='auto|cpu|cuda|cuda:N')
    parser.add_argument('--shard_size', default=100, type=int, help='images per shard')
    parser.add_argument('--max_mem', default=None, type=float,
                        help='MiB per similarity chunk (default: 64 on CPU, 2048 on CUDA)')
    parser.add_argument('--reference', action='store_true',
                        help="use upstream's per-caption loop (slow) instead of the vectorised pass")
    parser.add_argument('--gemm', default='onednn', choices=GEMMS,
                        help='CPU float32 matrix products of the vectorised pass: oneDNN (AVX-512 where '
                             "the CPU has it) or torch's (MKL); CUDA always uses torch's")
    return parser


def explicit_flags(parser, argv=None):
    """Names of the options given on the command line (not filled in from defaults)."""
    quiet = argparse.ArgumentParser(add_help=False, allow_abbrev=parser.allow_abbrev)
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            kwargs = {'dest': action.dest, 'default': argparse.SUPPRESS}
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                kwargs['action'] = 'store_true'
            else:
                kwargs['nargs'] = action.nargs
            quiet.add_argument(*action.option_strings, **kwargs)
    known, _ = quiet.parse_known_args(argv)
    return set(vars(known))


def check_model_flags(opt, given):
    """--module_name / --sgr_step without --model SGRAF would silently train LHSC: refuse."""
    stray = [name for name in SGRAF_ONLY if name in given]
    if stray and opt.model != 'SGRAF':
        raise LhscInputError(
            '%s only mean(s) something for SGRAF, but --model is %s: add --model SGRAF, or run '
            "SGRAF's own commands from lhsc/sgraf/ (python lhsc/sgraf/train.py ...)"
            % (', '.join('--' + n for n in stray), opt.model))


def parse_opt(argv=None, parser=None):
    parser = build_parser() if parser is None else parser
    opt = parser.parse_args(argv)
    check_model_flags(opt, explicit_flags(parser, argv))
    print(opt)
    return opt


def apply_device_flag(spec):
    """Upstream wrote --device into CUDA_VISIBLE_DEVICES. A GPU-id string keeps that meaning (then
    'cuda' is used); auto/cpu/cuda/cuda:N are passed on unchanged. Returns the device spec."""
    spec = str(spec)
    if re.fullmatch(r'\d+(,\d+)*', spec):
        from common.runtime import export_gpu_id  # here: it imports torch; this module stays light for --help
        import torch
        export_gpu_id(spec, flag='--device')
        if not torch.cuda.is_available():
            print('--device %s: no CUDA GPU visible with CUDA_VISIBLE_DEVICES=%s, running on CPU'
                  % (spec, spec), file=sys.stderr)
            return 'cpu'
        return 'cuda'
    return spec
