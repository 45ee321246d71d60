"""Datasets, collate functions and loaders over the parsed KDD Cup files (upstream HSL/data.py)."""
import os

import numpy as np
import torch
import torch.utils.data as data

from common.checkpoint import load_pickle
from common.errors import InputError
from common.runtime import distributed_sampler, make_generator, seed_worker
from common.text import tokenize
from common.vocab import Vocabulary, caption_to_ids, pad_captions
from hsl.records import VOCAB_FILE, Product, Query

# SCAN's vocab.Vocabulary pickled by the authors (and '__main__' when pickled from a script)
VOCAB_ALIASES = {'vocab.Vocabulary': Vocabulary, '__main__.Vocabulary': Vocabulary}


def vocab_file(vocab_path):
    """--vocab_path may name the folder (upstream default) or the .pkl itself."""
    return vocab_path if vocab_path.endswith('.pkl') else os.path.join(vocab_path, VOCAB_FILE)


def load_vocab(path):
    return load_pickle(path, aliases=VOCAB_ALIASES)


def load_records(path, kind=(Query, Product)):
    """A parsed `.pkl` (Query or Product) through the allow-list loader; nothing else is unpickled."""
    if not os.path.isfile(path):
        raise InputError('%s: file not found (parsed data missing or stale: run parse_dataset.py '
                         'with the same --data_path --data_name)' % path)
    records = load_pickle(path, allow=(Query, Product))
    if not isinstance(records, kind):
        raise InputError('%s: holds a %s, not the parsed %s; re-run parse_dataset.py'
                         % (path, type(records).__name__, ' or '.join(k.__name__ for k in kind)))
    return records


def split_file(opt, split, name):
    return os.path.join(opt.data_path, opt.data_name, split, name)


def query_to_ids(vocab, query):
    """[<start>] + word ids + [<end>] (HSL/data.py:60); nltk tokens of the lower-cased text."""
    return torch.Tensor(caption_to_ids(vocab, query, tokenize))


def load_products_files(folder, split):
    """The parsed products of a split folder, with their box features memory-mapped."""
    prods = load_records(os.path.join(folder, '{}.products.pkl'.format(split)), Product)
    prods.load_images(os.path.join(folder, '{}.ids.txt'.format(split)),
                      os.path.join(folder, '{}.features.npy'.format(split)))
    return prods


def load_products(opt, split):
    print('=> loading products...')
    prods = load_records(split_file(opt, split, '{}.products.pkl'.format(split)), Product)
    print('=> products loaded...')
    print('=> loading product features...')
    prods.load_images(split_file(opt, split, '{}.ids.txt'.format(split)),
                      split_file(opt, split, '{}.features.npy'.format(split)))
    print('=> product features loaded...')
    return prods


class TrainDataset(data.Dataset):
    """One (query, ground-truth product) row -> (boxes (m, 2048), query ids, index)."""

    def __init__(self, opt, vocab):
        self.vocab = vocab
        self.top_k = opt.top_k
        print('=> loading queries...')
        name = 'train.queries.duplicate.pkl' if opt.use_dup else 'train.queries.pkl'
        self.queries = load_records(split_file(opt, 'train', name), Query)
        print('=> queries loaded')
        self.prods = load_products(opt, 'train')
        self.length = len(self.queries)
        print('=> train loader, loaded queries {}'.format(self.length))
        print('=> train loader, loaded products: {}'.format(len(self.prods)))

    def __getitem__(self, index):
        query, gdprod = self.queries(index)
        image = torch.Tensor(self.prods(gdprod, self.top_k))
        return image, query_to_ids(self.vocab, query), index

    def __len__(self):
        return self.length


class EvalDataset(data.Dataset):
    """One query with its candidate pool -> (boxes (P, max_m, 2048), num_boxes, pids, ids, qid, index)."""

    def __init__(self, opt, vocab, split):
        self.vocab = vocab
        self.top_k = opt.top_k
        print('=> loading queries...')
        self.queries = load_records(split_file(opt, split, '{}.queries.pkl'.format(split)), Query)
        print('=> queries loaded')
        self.prods = load_products(opt, split)
        self.length = len(self.queries)
        print('=> {} loader, loaded queries {}'.format(split, self.length))
        print('=> {} loader, loaded products: {}'.format(split, len(self.prods)))

    def __getitem__(self, index):
        (query_id, query), prods = self.queries(index)
        images = [self.prods(prod, self.top_k) for prod in prods]
        num_boxes = [image.shape[0] for image in images]
        padded_images = torch.zeros(len(images), max(num_boxes), images[0].shape[1])
        for i, image in enumerate(images):
            padded_images[i, :num_boxes[i]] = torch.from_numpy(image)
        return (padded_images, torch.tensor(num_boxes, dtype=torch.long), prods,
                query_to_ids(self.vocab, query), query_id, index)

    def __len__(self):
        return self.length


def pad_queries(queries):
    targets, lengths = pad_captions(queries)
    return targets, torch.tensor(lengths, dtype=torch.long)


def collate_fn_train(data):
    """Sort by query length (desc), zero-pad boxes and ids: (images, num_boxes, ids, lengths, indices)."""
    data.sort(key=lambda x: len(x[1]), reverse=True)
    images, queries, ids = zip(*data)
    num_boxes = [image.size(0) for image in images]
    padded_images = torch.zeros(len(images), max(num_boxes), images[0].size(1))
    for i, image in enumerate(images):
        padded_images[i, :num_boxes[i]] = image
    targets, lengths = pad_queries(queries)
    return padded_images, torch.tensor(num_boxes, dtype=torch.long), targets, lengths, ids


def collate_fn_eval(data):
    """Sort by query length, pad pools and boxes (upstream HSL/data.py:187)."""
    data.sort(key=lambda x: len(x[3]), reverse=True)
    imagess, num_boxess, prodss, queries, query_ids, ids = zip(*data)
    num_boxes = [images.size(1) for images in imagess]
    pool_sizes = [images.size(0) for images in imagess]
    padded_images = torch.zeros(len(imagess), max(pool_sizes), max(num_boxes), imagess[0].size(2))
    for i, images in enumerate(imagess):
        padded_images[i, :pool_sizes[i], :num_boxes[i]] = images
    targets, lengths = pad_queries(queries)
    return padded_images, pool_sizes, num_boxess, prodss, targets, lengths, query_ids, ids


def get_train_loader(vocab, opt, shuffle=True):
    trainset = TrainDataset(opt, vocab)
    sampler = distributed_sampler(trainset, shuffle=shuffle, seed=opt.seed or 0)
    return torch.utils.data.DataLoader(
        dataset=trainset, batch_size=opt.batch_size, shuffle=shuffle and sampler is None,
        sampler=sampler, pin_memory=torch.cuda.is_available(), num_workers=opt.num_workers,
        collate_fn=collate_fn_train, worker_init_fn=seed_worker, generator=make_generator(opt.seed))


def eval_loader(evalset, batch_size=4, num_workers=0):
    """Upstream's eval loader over an EvalDataset: batches of 4 queries, in file order."""
    return torch.utils.data.DataLoader(
        dataset=evalset, batch_size=batch_size, shuffle=False,
        pin_memory=torch.cuda.is_available(), num_workers=num_workers,
        collate_fn=collate_fn_eval)


def get_test_loader(vocab, opt, split, batch_size=4):
    return eval_loader(EvalDataset(opt, vocab, split), batch_size, opt.num_workers)


def encode_query_batch(vocab, texts):
    """Padded ids and lengths of a list of query texts (no sorting needed: the mask handles it)."""
    return pad_queries([query_to_ids(vocab, t) for t in texts])


def product_batch(prods, product_ids, top_k):
    """Zero-padded boxes (P, max_m, D) and num_boxes (P) of the given products."""
    images = [prods(pid, top_k) for pid in product_ids]
    num_boxes = np.array([im.shape[0] for im in images], dtype=np.int64)
    padded = np.zeros((len(images), num_boxes.max(), images[0].shape[1]), dtype=np.float32)
    for i, im in enumerate(images):
        padded[i, :num_boxes[i]] = im
    return torch.from_numpy(padded), torch.from_numpy(num_boxes)
