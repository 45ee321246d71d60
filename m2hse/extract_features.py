"""Extract the image features M2HSE reads, from a folder of images (the recipe of the README/paper;
upstream ships no extractor; the computation is in features.py).

For every split it writes, next to the captions and labels, exactly the files the loaders expect:
    <global_dir>/{split}_cnns.npy   (N, 4096)     AlexNet (ImageNet) fc7 of the whole image
    <global_dir>/{split}_bovws.npy  (N, words)    BoVW histogram of the whole image's SIFT descriptors
    <local_dir>/{split}_cnns.npy    (N, 9, 4096)  fc7 of each block of a uniform 3x3 grid (row-major)
    <local_dir>/{split}_bovws.npy   (N, 9, words) BoVW histogram of the descriptors inside each block
    both dirs: {split}_caps.txt (copied), {split}_labels.npy (N, 1) int64 and {split}_images.txt
    (the image names, which predict.py shows)
Inputs per split in --list_dir: {split}_images.txt (one image path per line, relative to --image_dir),
{split}_caps.txt (one tag line per image) and {split}_labels.txt (one integer class per line).
Unreadable images are dropped with their caption and label and reported (--strict: an error).
The k-means vocabulary (scikit-learn KMeans on SIFT descriptors from OpenCV) is fit on `train` only,
saved to --codebook and reused for dev/test.

    python extract_features.py --image_dir Corel5K/images --list_dir lists --cnn_weights alexnet-owt-7be5be79.pth
"""
import os, sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np

from common.errors import InputError, cli_main
from common.progress import add_progress_arg, progress
from common.safeio import (check_writable_dir, cleanup_stale_tmp, load_npy, save_npy_atomic,
                           write_text_atomic)

ALEXNET_URL = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add('--image_dir', required=True, help='folder the image paths are relative to')
    add('--list_dir', required=True, help='folder with {split}_images/_caps/_labels.txt')
    add('--splits', default='train,dev,test', help='comma-separated; train must come first '
        'unless --codebook already exists')
    add('--global_dir', default='./data/coarse-grained-data/corel5k_precomp')
    add('--local_dir', default='./data/fine-grained-data/corel5k_precomp')
    add('--cnn_weights', default='', help='torchvision AlexNet ImageNet weights (%s)' % ALEXNET_URL)
    add('--random_cnn', action='store_true', help='allow random AlexNet weights (warns)')
    add('--image_size', type=int, default=224, help='AlexNet input side (whole image and blocks)')
    add('--bovw_dim', type=int, default=500, help='number of visual words')
    add('--bovw_norm', default='l1', choices=['l1', 'none'], help='histogram normalisation')
    add('--codebook', default='', help='k-means centres .npy (default: <global_dir>/codebook_<words>.npy)')
    add('--kmeans_max_descriptors', type=int, default=200000)
    add('--batch_size', type=int, default=8, help='images per AlexNet batch')
    add('--strict', action='store_true', help='an unreadable image is an error (default: dropped and reported)')
    add('--device', default='cpu')
    add('--seed', type=int, default=0)
    add_progress_arg(parser)
    return parser


def write_split(folder, split, names, cnns, bovws, captions, labels):
    save_npy_atomic(os.path.join(folder, '%s_cnns.npy' % split), cnns)
    save_npy_atomic(os.path.join(folder, '%s_bovws.npy' % split), bovws)
    save_npy_atomic(os.path.join(folder, '%s_labels.npy' % split), np.array(labels, dtype=np.int64).reshape(-1, 1))
    write_text_atomic(os.path.join(folder, '%s_caps.txt' % split), '\n'.join(captions))
    write_text_atomic(os.path.join(folder, '%s_images.txt' % split), '\n'.join(names) + '\n')


def main(argv=None):
    args = build_parser().parse_args(argv)
    from m2hse import features  # torch + torchvision: imported after parsing so that --help answers at once

    show = not args.no_progress
    splits = [s for s in args.splits.split(',') if s]
    codebook_path = args.codebook or os.path.join(args.global_dir, 'codebook_%d.npy' % args.bovw_dim)
    for folder in (args.global_dir, args.local_dir):
        check_writable_dir(folder, 'feature folder')
        cleanup_stale_tmp(folder)
    model = features.build_alexnet(args.cnn_weights, args.random_cnn, args.seed).to(args.device)
    codebook = load_npy(codebook_path, ndim=2, what='codebook') \
        if os.path.isfile(codebook_path) and 'train' not in splits else None
    for split in splits:
        paths, captions, labels = features.read_split_lists(args.list_dir, split, args.image_dir)
        paths, captions, labels = features.drop_bad_images(split, paths, captions, labels, args.strict)
        print('split %s: %d images' % (split, len(paths)))
        sift = [features.sift_descriptors(p) for p in progress(paths, desc='SIFT', unit='img', enabled=show)]
        if split == 'train':
            codebook = features.fit_codebook([d for _, d, _ in sift], args.bovw_dim, args.seed,
                                             args.kmeans_max_descriptors)
            save_npy_atomic(codebook_path, codebook)
        elif codebook is None:
            raise InputError('no k-means vocabulary for split %s: extract train first or pass --codebook' % split)
        cnn_whole, cnn_blocks = features.cnn_features(model, paths, args.image_size, args.batch_size, args.device, show)
        bovw_whole, bovw_blocks = features.bovw_features(sift, codebook, args.bovw_norm, show)
        names = [os.path.relpath(p, args.image_dir) for p in paths]
        write_split(args.global_dir, split, names, cnn_whole, bovw_whole, captions, labels)
        write_split(args.local_dir, split, names, cnn_blocks, bovw_blocks, captions, labels)
        print('wrote %s features: global %s / %s, local %s / %s' % (split, cnn_whole.shape, bovw_whole.shape,
                                                                     cnn_blocks.shape, bovw_blocks.shape))


if __name__ == '__main__':
    cli_main(main)
