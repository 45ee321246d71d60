"""HSL entry point (upstream main.py): load vocab (+GloVe), build the model, optionally resume,
then evaluate (--test / --eval_only) or train (train -> validate -> lr step -> checkpoint)."""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import logging
import shutil
import time

import numpy as np
import torch

from common import logger as tb_logger
from common.checkpoint import CheckpointError, atomic_open, load_checkpoint, save_checkpoint
from common.results import write_results
from common.runtime import barrier, cleanup_distributed, init_distributed, seed_everything
from hsl import parser
from hsl.data import (VOCAB_ALIASES, EvalDataset, collate_fn_eval, get_train_loader, load_vocab,
                      vocab_file)
from hsl.evaluation import evaluate, evaluate_naive
from hsl.metric import K, NDCGScorer, official_ndcg
from hsl.model import HSL
from hsl.utils import GLOVE_DIM, AverageMeter, GloveMissingError, get_we_parameter


def fail(message):
    raise SystemExit('error: ' + message)


def load_answer(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        fail('answer file not found: %s (set --answer_path; upstream hard-coded '
             '../data/kddcup/valid/valid_answer.json)' % path)
    except json.JSONDecodeError as err:
        fail('%s: not valid JSON (line %d: %s)' % (path, err.lineno, err.msg))


def load_vocabulary(opt):
    path = vocab_file(opt.vocab_path)
    if not os.path.isfile(path):
        fail('vocabulary not found: %s (run parse_dataset.py first, or set --vocab_path)' % path)
    try:
        return load_vocab(path)
    except CheckpointError as err:
        fail(str(err))


def word_embedding_init(opt, vocab):
    """GloVe matrix (--glove) or None. Without the GloVe file, evaluating a checkpoint still works:
    its weights overwrite the embedding (upstream would crash)."""
    if not opt.glove:
        return None
    print("loading glove word2vec......")
    try:
        return get_we_parameter(vocab, opt.glove_path)
    except GloveMissingError as err:
        if opt.test and opt.resume:
            logging.warning('GloVe file %s is missing: the embedding starts random and is then '
                            'overwritten by the checkpoint %s (scores are unaffected)',
                            opt.glove_path, opt.resume)
            return np.random.uniform(-0.1, 0.1, (len(vocab), GLOVE_DIM))
        fail(str(err))


# flags that shape the model or its scores; upstream takes them from the command line only
MODEL_FLAGS = ('word_dim', 'embed_size', 'img_dim', 'no_imgnorm', 'no_txtnorm', 'glove', 'top_k',
               'd_model', 'score_agg', 'HIDDEN_SIZE', 'DROPOUT_R', 'FLAT_MLP_SIZE', 'FLAT_GLIMPSES',
               'FLAT_OUT_SIZE')


def model_flags_from_checkpoint(opt):
    """--opt_from_checkpoint: copy MODEL_FLAGS from the checkpoint's stored opt (quirk: main.py:52)."""
    if not os.path.isfile(opt.resume):
        fail('--opt_from_checkpoint needs an existing --resume checkpoint (got %r)' % opt.resume)
    try:
        stored = load_checkpoint(opt.resume, map_location='cpu', aliases=VOCAB_ALIASES).get('opt')
    except CheckpointError as err:
        fail(str(err))
    if stored is None:
        fail('%s stores no opt; give the model flags on the command line' % opt.resume)
    changed = []
    for name in MODEL_FLAGS:
        if hasattr(stored, name) and getattr(stored, name) != getattr(opt, name):
            changed.append('%s=%r' % (name, getattr(stored, name)))
            setattr(opt, name, getattr(stored, name))
    logging.info('model flags from %s: %s', opt.resume, ', '.join(changed) or 'same as the command line')


def resume(opt, model):
    """Load --resume. Upstream checkpoints: weights + Eiters only (training restarts at epoch 0,
    best 0, fresh optimizer: main.py:55-69). Port checkpoints also restore epoch, optimizer,
    schedule and best score unless --resume_weights_only. Returns (start_epoch, best_nDCG)."""
    if not os.path.isfile(opt.resume):
        print("=> no checkpoint found at '{}'".format(opt.resume))
        raise SystemExit(1)
    print("=> loading checkpoint '{}'".format(opt.resume))
    try:
        checkpoint = load_checkpoint(opt.resume, map_location='cpu', aliases=VOCAB_ALIASES)
        model.load_state_dict(checkpoint['model'])
    except CheckpointError as err:
        fail(str(err))
    except (RuntimeError, KeyError, IndexError, TypeError) as err:
        fail("%s does not fit the model built from the command line (upstream rebuilds the model "
             "from flags, not from the checkpoint): repeat the training flags, e.g. --glove "
             "--no_txtnorm --score_agg mean and the size flags.\n%s" % (opt.resume, str(err).strip()[:2000]))
    start_epoch, nDCG = checkpoint['epoch'], checkpoint['nDCG']
    model.Eiters = checkpoint['Eiters']
    print("=> loaded checkpoint '{}' (epoch {}, nDCG {})".format(opt.resume, start_epoch, nDCG))
    if opt.test or opt.resume_weights_only or 'optimizer' not in checkpoint:
        return 0, 0
    model.optimizer.load_state_dict(checkpoint['optimizer'])
    model.lr_scheduler.load_state_dict(checkpoint['lr_scheduler'])
    print("=> resuming training at epoch {} (best nDCG {})".format(start_epoch, checkpoint['best_nDCG']))
    return start_epoch, checkpoint['best_nDCG']


def load_split(build):
    """Build a dataset/loader; missing or inconsistent parsed files are a clear error."""
    try:
        return build()
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        fail('%s\n(parsed data missing or stale: run parse_dataset.py with the same --data_path '
             '--data_name)' % err)


def main(argv=None):
    opt = parser.get_parser(argv)
    logging.basicConfig(format='%(asctime)s %(message)s', level=logging.INFO)
    info = init_distributed(opt.device)
    seed_everything(opt.seed, opt.deterministic)
    if not opt.test and not opt.logger_name:
        fail('training needs --logger_name (checkpoint and TensorBoard folder)')
    if opt.submit:
        logging.warning('--submit has no effect: upstream has no submission code (its training '
                        'would crash in tb_logger); logs are written as usual')
    if not opt.test and info.is_main:
        tb_logger.configure(opt.logger_name, flush_secs=5)

    if opt.opt_from_checkpoint:
        model_flags_from_checkpoint(opt)
    vocab = load_vocabulary(opt)
    opt.vocab_size = len(vocab)
    logging.info('vocabulary size: {}'.format(opt.vocab_size))
    opt.we_parameter = word_embedding_init(opt, vocab)

    try:
        model = HSL(opt, device=info.device, dist_info=info)
    except ValueError as err:  # e.g. an unknown --score_agg
        fail(str(err))
    start_epoch, best_nDCG = 0, 0
    if opt.resume:
        start_epoch, best_nDCG = resume(opt, model)

    answer = load_answer(opt.answer_path)
    val_set = load_split(lambda: EvalDataset(opt, vocab, 'valid')) if info.is_main else None

    if opt.test:
        result = validate(opt, val_set, model, answer, argv=argv) if info.is_main else None
        barrier()
        cleanup_distributed()
        return result

    train_loader = load_split(lambda: get_train_loader(vocab, opt))
    start = time.time()
    result = None
    for epoch in range(start_epoch, opt.num_epochs):
        if hasattr(train_loader.sampler, 'set_epoch'):
            train_loader.sampler.set_epoch(epoch)
        train(opt, train_loader, model, epoch, info.is_main)
        if info.is_main:
            result = validate(opt, val_set, model, answer, epoch, argv=argv)
            nDCG = result.nDCG
        model.lr_step()
        if info.is_main:
            is_best = nDCG > best_nDCG
            best_nDCG = max(nDCG, best_nDCG)
            save_hsl_checkpoint({
                'epoch': epoch + 1,
                'model': model.state_dict(),
                'nDCG': nDCG,
                'opt': opt,
                'Eiters': model.Eiters,
                # port additions (upstream ignores them): full --resume
                'optimizer': model.optimizer.state_dict(),
                'lr_scheduler': model.lr_scheduler.state_dict(),
                'best_nDCG': best_nDCG,
            }, is_best, path=opt.logger_name)
            print("best")
            print(best_nDCG)
        barrier()

    duration = int(time.time() - start)
    logging.info('Training time {}h {}min'.format(duration // 3600, (duration // 60) % 60))
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return result


def train(opt, train_loader, model, epoch, is_main=True):
    batch_time = AverageMeter()
    data_time = AverageMeter()
    print("epoch")
    print(epoch)
    model.train_start()
    end = time.time()
    for i, train_data in enumerate(train_loader):
        data_time.update(time.time() - end)
        global_step = epoch * len(train_loader) + i
        model.train_emb(global_step, *train_data)
        batch_time.update(time.time() - end)
        end = time.time()
        if not is_main:
            continue
        if model.Eiters % opt.log_step == 0:
            logging.info(
                'Epoch: [{0}][{1}/{2}]\t'
                '{e_log}\t'
                'Time {batch_time.val:.3f} ({batch_time.avg:.3f})\t'
                'Data {data_time.val:.3f} ({data_time.avg:.3f})'
                .format(epoch + 1, i + 1, len(train_loader), batch_time=batch_time,
                        data_time=data_time, e_log=str(model.logger)))
        # upstream logs at step=Eiters, which restarts every epoch (model.py:236)
        tb_logger.log_value('batch_time', batch_time.val, step=model.Eiters)
        tb_logger.log_value('data_time', data_time.val, step=model.Eiters)
        model.logger.tb_log(tb_logger, step=model.Eiters)


def validate(opt, val_set, model, answer, epoch=-1, argv=None):
    scorer = NDCGScorer(K)
    if opt.eval_naive:
        loader = _naive_loader(val_set, opt)
        result = evaluate_naive(model, loader, answer, scorer, log_step=opt.log_step,
                                logging=logging.info, out_path=opt.score_to)
    else:
        result = evaluate(model, val_set, answer, scorer, log_step=opt.log_step,
                          logging=logging.info, out_path=opt.score_to, chunk=opt.eval_chunk,
                          batch_size=opt.eval_batch_size)
    nDCG = result.nDCG
    print("nDCG score ", nDCG)
    logging.info('nDCG score {:.5f}'.format(nDCG))
    logging.info('random-ranking nDCG@5 of these pools {:.5f} ({} queries)'
                 .format(result.random_nDCG, result.num_queries))
    metrics = {'nDCG': nDCG, 'num_queries': result.num_queries, 'nDCG_random': result.random_nDCG}
    if opt.ndcg_official:
        metrics['nDCG_official'] = official_ndcg(result.rankings, answer)
        print("nDCG official score ", metrics['nDCG_official'])
        logging.info('nDCG official score {:.5f}'.format(metrics['nDCG_official']))
    if epoch != -1:
        tb_logger.log_value('nDCG', nDCG, epoch)
    if opt.out_json:
        write_results(opt.out_json, metrics, paper='hsl', argv=argv, seed=opt.seed,
                      checkpoint=opt.resume or None,
                      data_path=os.path.join(opt.data_path, opt.data_name),
                      extra={'epoch': epoch, 'score_agg': opt.score_agg, 'top_k': opt.top_k})
    return result


def _naive_loader(val_set, opt):
    return torch.utils.data.DataLoader(val_set, batch_size=opt.eval_batch_size, shuffle=False,
                                       num_workers=opt.num_workers, collate_fn=collate_fn_eval)


def save_hsl_checkpoint(state, is_best, filename='checkpoint.pth.tar', path=''):
    """Atomic save; model_best.pth.tar is an atomic copy when is_best (main.py:180)."""
    os.makedirs(path, exist_ok=True)
    save_checkpoint(state, os.path.join(path, filename))
    if is_best:
        with open(os.path.join(path, filename), 'rb') as src, \
                atomic_open(os.path.join(path, 'model_best.pth.tar'), 'wb') as dst:
            shutil.copyfileobj(src, dst)


if __name__ == '__main__':
    main()
