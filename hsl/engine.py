"""The steps of main.py (upstream main.py main/train/validate/save_checkpoint): vocabulary and
GloVe, model options from a checkpoint, resume, one training epoch, validation, checkpointing."""
import copy
import json
import logging
import os
import random
import time

import numpy as np
import torch

from common import logger as tb_logger
from common.checkpoint import atomic_open, copy_to_best, load_checkpoint
from common.errors import InputError
from common.progress import progress
from common.results import write_results
from common.runtime import barrier
from common.safeio import NonFiniteError, all_finite, check_finite, fingerprint
from hsl import evaluation, evaluation_fast
from hsl.data import VOCAB_ALIASES, eval_loader, load_vocab, vocab_file
from hsl.metric import K, NDCGScorer, official_ndcg
from hsl.utils import GLOVE_DIM, AverageMeter, GloveMissingError, get_we_parameter

# flags that shape the model or its scores; upstream takes them from the command line only
MODEL_FLAGS = ('word_dim', 'embed_size', 'img_dim', 'no_imgnorm', 'no_txtnorm', 'glove', 'top_k',
               'd_model', 'score_agg', 'HIDDEN_SIZE', 'DROPOUT_R', 'FLAT_MLP_SIZE', 'FLAT_GLIMPSES',
               'FLAT_OUT_SIZE', 'fix_topk')
SPECIAL_WORDS = ('<pad>', '<start>', '<end>', '<unk>')


def load_answer(path):
    try:
        with open(path, encoding='utf-8') as f:
            answer = json.load(f)
    except FileNotFoundError:
        raise InputError('%s: answer file not found (set --answer_path; upstream hard-coded '
                         '../data/kddcup/valid/valid_answer.json)' % path) from None
    except json.JSONDecodeError as err:
        raise InputError('%s:%d: not valid JSON (%s); re-download valid_answer.json'
                         % (path, err.lineno, err.msg)) from None
    except UnicodeDecodeError as err:
        raise InputError('%s: not UTF-8 text (%s); re-download valid_answer.json' % (path, err.reason)) from None
    if not isinstance(answer, dict) or not answer:
        raise InputError('%s: expected a non-empty JSON object {query_id: [product ids]}' % path)
    return answer


def load_vocabulary(opt):
    path = vocab_file(opt.vocab_path)
    if not os.path.isfile(path):
        raise InputError('%s: vocabulary not found (run parse_dataset.py first, or set --vocab_path)' % path)
    vocab = load_vocab(path)
    if not hasattr(vocab, 'word2idx') or any(w not in vocab.word2idx for w in SPECIAL_WORDS):
        raise InputError('%s: not a vocabulary with the words %s; re-run parse_dataset.py '
                         '--rebuild_vocab' % (path, ' '.join(SPECIAL_WORDS)))
    return vocab


def vocab_fingerprint(vocab):
    return fingerprint(vocab.idx2word[i] for i in range(len(vocab)))


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
        raise InputError(str(err)) from None


def read_checkpoint(path):
    """An HSL checkpoint (upstream or port layout) as a dict; anything else is a clear error."""
    if not os.path.isfile(path):
        print("=> no checkpoint found at '{}'".format(path))
        raise InputError('%s: checkpoint file not found; check --resume' % path)
    checkpoint = load_checkpoint(path, map_location='cpu', aliases=VOCAB_ALIASES)
    model = checkpoint.get('model') if isinstance(checkpoint, dict) else None
    if not (isinstance(model, (list, tuple)) and len(model) == 3 and all(isinstance(m, dict) for m in model)
            and 'in_fc.weight' in model[0]):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError("%s: not an HSL checkpoint (an HSL checkpoint stores 'model' as the three "
                         "state_dicts [img_enc, txt_enc, word_embed]; found %s). Is it another "
                         "paper's checkpoint?" % (path, keys))
    return checkpoint


def options_from_checkpoint(opt, checkpoint, path, explicit, override=False):
    """A copy of `opt` whose model flags come from the checkpoint's stored opt (as vsepp's
    evaluation). A flag given explicitly with another value is an error, unless `override`
    (--opt_from_checkpoint, where the checkpoint wins as before). Prints what it took."""
    stored = checkpoint.get('opt')
    if stored is None:
        logging.info('%s stores no opt: the model flags come from the command line', path)
        return opt
    resolved = copy.copy(opt)
    taken, conflicts = [], []
    for name in MODEL_FLAGS:
        if not hasattr(stored, name):
            continue
        value = getattr(stored, name)
        if name in explicit and getattr(opt, name) != value and not override:
            conflicts.append('--%s %r (checkpoint: %r)' % (name, getattr(opt, name), value))
        elif name not in explicit or override:
            setattr(resolved, name, value)
            taken.append('%s=%r' % (name, value))
    if conflicts:
        raise InputError('%s: the command line contradicts the options this checkpoint was trained '
                         'with: %s. Drop these flags (they are read from the checkpoint) or pass '
                         '--opt_from_checkpoint to let the checkpoint win' % (path, ', '.join(conflicts)))
    print('=> model options from {}: {}'.format(path, ', '.join(taken) or 'none (all given explicitly)'))
    return resolved


def check_vocabulary(checkpoint, vocab, path):
    """Port checkpoints record the vocabulary's fingerprint; upstream ones only allow a size check."""
    recorded = checkpoint.get('vocab_fingerprint')
    rows = checkpoint['model'][2].get('embed.weight')
    size = rows.shape[0] if rows is not None else None
    if recorded is not None:
        if recorded != vocab_fingerprint(vocab):
            raise InputError('%s: trained with another vocabulary (fingerprint %s..., this one %s...); '
                             'evaluate with the kddcup_vocab.pkl it was trained with (--vocab_path)'
                             % (path, recorded[:12], vocab_fingerprint(vocab)[:12]))
        return
    if size is not None and size != len(vocab):
        raise InputError('%s: its word embedding has %d rows, the vocabulary has %d words; use the '
                         'kddcup_vocab.pkl it was trained with (--vocab_path)' % (path, size, len(vocab)))
    logging.info('%s records no vocabulary fingerprint (upstream layout): only the size (%s words) '
                 'was checked, not the words themselves', path, size)


def resume(opt, model, checkpoint):
    """Load --resume. Upstream checkpoints: weights + Eiters only (training restarts at epoch 0,
    best 0, fresh optimizer: main.py:55-69). Port checkpoints also restore epoch, optimizer,
    schedule, best score and RNG state unless --resume_weights_only. Returns (start_epoch, best_nDCG)."""
    print("=> loading checkpoint '{}'".format(opt.resume))
    try:
        model.load_state_dict(checkpoint['model'])
    except (RuntimeError, KeyError, IndexError, TypeError) as err:
        raise InputError("%s does not fit the model built from the command line (upstream rebuilds "
                         "the model from flags, not from the checkpoint): repeat the training flags, "
                         "e.g. --glove --no_txtnorm --score_agg mean and the size flags, or add "
                         "--opt_from_checkpoint.\n%s" % (opt.resume, str(err).strip()[:2000])) from None
    start_epoch, nDCG = checkpoint['epoch'], checkpoint['nDCG']
    model.Eiters = checkpoint['Eiters']
    print("=> loaded checkpoint '{}' (epoch {}, nDCG {})".format(opt.resume, start_epoch, nDCG))
    if opt.test or opt.resume_weights_only or 'optimizer' not in checkpoint:
        return 0, 0
    model.optimizer.load_state_dict(checkpoint['optimizer'])
    model.lr_scheduler.load_state_dict(checkpoint['lr_scheduler'])
    print("=> resuming training at epoch {} (best nDCG {})".format(start_epoch, checkpoint['best_nDCG']))
    return start_epoch, checkpoint['best_nDCG']


def check_features(dataset, opt, split):
    width = dataset.prods.features.shape[1]
    if width != opt.img_dim:
        raise InputError('%s: box features have %d values, the model expects --img_dim %d; parse '
                         'with the matching --feature_dim or set --img_dim'
                         % (dataset.prods.features_path, width, opt.img_dim))
    if len(dataset) == 0:
        raise InputError('%s split under %s has no rows: nothing to %s'
                         % (split, os.path.join(opt.data_path, opt.data_name),
                            'train on' if split == 'train' else 'evaluate'))
    return dataset


def rng_state(generator=None):
    """Every random stream a training epoch draws from (restored on resume for an exact continuation)."""
    state = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state(), 'python': random.getstate()}
    if generator is not None:
        state['loader'] = generator.get_state()
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, generator=None):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if generator is not None and 'loader' in state:
        generator.set_state(state['loader'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def train(opt, train_loader, model, epoch, is_main=True):
    """One epoch (upstream main.py train). TensorBoard steps count over all epochs; the model's
    Eiters restarts every epoch as upstream's (it is what the checkpoint stores)."""
    batch_time = AverageMeter()
    data_time = AverageMeter()
    print("epoch")
    print(epoch)
    model.train_start()
    end = time.time()
    batches = progress(train_loader, desc='epoch %d' % epoch,
                       enabled=is_main and not opt.no_progress)
    for i, train_data in enumerate(batches):
        data_time.update(time.time() - end)
        global_step = epoch * len(train_loader) + i
        loss = model.train_emb(global_step, *train_data)
        check_finite(loss, 'epoch %d step %d/%d' % (epoch + 1, i + 1, len(train_loader)))
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
        # upstream logs at step=Eiters, which restarts every epoch (model.py:236): zig-zag curves
        tb_step = global_step + 1
        tb_logger.log_value('batch_time', batch_time.val, step=tb_step)
        tb_logger.log_value('data_time', data_time.val, step=tb_step)
        model.logger.tb_log(tb_logger, step=tb_step)


def validate(opt, val_set, model, answer, epoch=-1, argv=None):
    scorer = NDCGScorer(K)
    loader = eval_loader(val_set, opt.eval_batch_size, opt.num_workers)
    kwargs = dict(log_step=opt.log_step, logging=logging.info, out_path=opt.score_to,
                  show_progress=not opt.no_progress)
    if opt.eval_naive:
        result = evaluation.evaluate(model, loader, answer, scorer, **kwargs)
    else:
        result = evaluation_fast.evaluate(model, loader, answer, scorer, chunk=opt.eval_chunk, **kwargs)
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


def save_hsl_checkpoint(state, is_best, filename='checkpoint.pth.tar', path=''):
    """Atomic save; model_best.pth.tar is an atomic copy when is_best (main.py:180). Non-finite
    weights are never written."""
    if not all(all_finite(sd) for sd in state['model']):
        raise NonFiniteError('the weights after epoch %d hold NaN/inf; nothing was saved (the last '
                             'good checkpoint in %s is kept). Lower the learning rate or check the '
                             'inputs' % (state['epoch'], path))
    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, filename)
    with atomic_open(target, 'wb') as f:
        torch.save(state, f)
    if is_best:
        copy_to_best(target, os.path.join(path, 'model_best.pth.tar'))


def train_epochs(opt, info, model, vocab, train_loader, val_set, answer, start_epoch, best_nDCG, argv):
    """Upstream's epoch loop: train, validate (rank 0), lr step, checkpoint, print the best."""
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
                # port additions (upstream ignores them): full --resume, vocabulary check
                'optimizer': model.optimizer.state_dict(),
                'lr_scheduler': model.lr_scheduler.state_dict(),
                'best_nDCG': best_nDCG,
                'rng_state': rng_state(train_loader.generator),
                'vocab_fingerprint': vocab_fingerprint(vocab),
            }, is_best, path=opt.logger_name)
            print("best")
            print(best_nDCG)
        barrier()
    duration = int(time.time() - start)
    logging.info('Training time {}h {}min'.format(duration // 3600, (duration // 60) % 60))
    return result
