"""SGRAF's argument parser (Paranioar/SGRAF opts.py): its flag set and defaults, plus the port's
runtime flags. No --model: these scripts always build SGRAF (head chosen by --module_name)."""
import argparse

from lhsc.opts import build_eval_parser

# SGRAF's defaults were absolute paths on the authors' cluster ('/apdcephfs/.../SGRAF-master/runs/
# f30k_SGR/checkpoint'); the run folders keep their names relative to the working directory, so the
# README commands run as written. data_path and vocab_path stay the authors' (the vocabulary falls
# back to the shipped copy in lhsc/vocab/, as in lhsc/).
AUTHOR_ROOT = '/apdcephfs/share_1313228/home/haiwendiao'
EVAL_MODEL_PATH = './runs/SAF_module/checkpoint/model_best.pth.tar'  # SGRAF evaluation.py __main__


def build_parser():
    parser = argparse.ArgumentParser(description='Train SGRAF (SGR or SAF) on SCAN precomp data.')
    # --------------------------- data path -------------------------#
    parser.add_argument('--data_path', default=AUTHOR_ROOT, help='path to datasets')
    parser.add_argument('--data_name', default='f30k_precomp', help='{coco,f30k}_precomp')
    parser.add_argument('--vocab_path', default=AUTHOR_ROOT + '/SGRAF-master/vocab/',
                        help='Path to saved vocabulary json files.')
    parser.add_argument('--model_name', default='./runs/f30k_SGR/checkpoint', help='Path to save the model.')
    parser.add_argument('--logger_name', default='./runs/f30k_SGR/log', help='Path to save Tensorboard log.')

    # ----------------------- training setting ----------------------#
    parser.add_argument('--batch_size', default=128, type=int, help='Size of a training mini-batch.')
    parser.add_argument('--num_epochs', default=40, type=int, help='Number of training epochs.')
    parser.add_argument('--lr_update', default=30, type=int,
                        help='Number of epochs to update the learning rate.')
    parser.add_argument('--learning_rate', default=.0002, type=float, help='Initial learning rate.')
    parser.add_argument('--workers', default=10, type=int,
                        help='Number of data loader workers (accepted but unused, as upstream).')
    parser.add_argument('--log_step', default=10, type=int,
                        help='Number of steps to print and record the log.')
    parser.add_argument('--val_step', default=1000, type=int, help='Number of steps to run validation.')
    parser.add_argument('--grad_clip', default=2., type=float, help='Gradient clipping threshold.')
    parser.add_argument('--margin', default=0.2, type=float, help='Rank loss margin.')
    # store_false as upstream: default True, passing the flag DISABLES max violation
    parser.add_argument('--max_violation', action='store_false',
                        help='Passing this flag turns OFF hardest-negative mining (store_false).')

    # ------------------------- model setting -----------------------#
    parser.add_argument('--img_dim', default=2048, type=int, help='Dimensionality of the image embedding.')
    parser.add_argument('--word_dim', default=300, type=int, help='Dimensionality of the word embedding.')
    parser.add_argument('--embed_size', default=1024, type=int, help='Dimensionality of the joint embedding.')
    parser.add_argument('--sim_dim', default=256, type=int, help='Dimensionality of the sim embedding.')
    parser.add_argument('--num_layers', default=1, type=int, help='Number of GRU layers.')
    parser.add_argument('--bi_gru', action='store_false',
                        help='Passing this flag turns OFF the bidirectional GRU (store_false).')
    parser.add_argument('--no_imgnorm', action='store_true', help='Do not normalize the image embeddings.')
    parser.add_argument('--no_txtnorm', action='store_true', help='Do not normalize the text embeddings.')
    parser.add_argument('--module_name', default='SGR', type=str, choices=['SGR', 'SAF'], help='SGR, SAF')
    parser.add_argument('--sgr_step', default=3, type=int, help='Step of the SGR.')

    # ------------------------- port additions ----------------------#
    # upstream train.py hard-codes CUDA_VISIBLE_DEVICES=0; here auto = CUDA if available, else CPU
    parser.add_argument('--device', default='auto', type=str, help='auto|cpu|cuda|cuda:N or a GPU-id string')
    parser.add_argument('--seed', default=None, type=int, help='seed python, numpy and torch')
    parser.add_argument('--deterministic', action='store_true', help='deterministic algorithms')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--resume', default='', type=str,
                        help='checkpoint to resume from; "auto" = newest checkpoint_<epoch>.pth.tar in --model_name')
    parser.add_argument('--shard_size', default=100, type=int, help='images per shard of the validation pass')
    parser.add_argument('--max_mem', default=None, type=float,
                        help='MiB per chunk of the similarity pass (default: 64 on CPU, 2048 on CUDA)')
    return parser


def build_sgraf_eval_parser():
    """SGRAF evaluation.py: evalrank(<SAF model_best>, data_path, split='test', fold5=False)."""
    return build_eval_parser(model_path=EVAL_MODEL_PATH, data_path=AUTHOR_ROOT,
                             description='Evaluate SGRAF checkpoints (SGRAF evaluation.py evalrank).')


