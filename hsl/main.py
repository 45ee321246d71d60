"""HSL entry point (upstream main.py): load vocab (+GloVe), build the model, optionally resume,
then evaluate (--test / --eval_only) or train (train -> validate -> lr step -> checkpoint)."""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logging

from common.errors import InputError, cli_main
from common.logs import print_config, setup_logging
from common.safeio import check_writable, check_writable_dir, cleanup_stale_tmp
from hsl import parser


def check_outputs(opt):
    """Remove leftovers of interrupted writes, and fail now if an output cannot be written."""
    if not opt.test:
        if not opt.logger_name:
            raise InputError('training needs --logger_name (checkpoint and TensorBoard folder)')
        if os.path.isdir(opt.logger_name):
            cleanup_stale_tmp(opt.logger_name)
        check_writable_dir(opt.logger_name, 'checkpoint folder (--logger_name)')
    for flag, path in (('--out_json', opt.out_json), ('--score_to', opt.score_to)):
        if path:
            cleanup_stale_tmp(path)
            check_writable(path, 'output of %s' % flag)


def main(argv=None):
    opt = parser.get_parser(argv)
    explicit = parser.explicit_options(argv)
    setup_logging()
    # torch, the model and the data modules load only now, so that `--help` answers at once
    from common import logger as tb_logger
    from common.runtime import barrier, cleanup_distributed, init_distributed, seed_everything
    from hsl import engine
    from hsl.data import EvalDataset, get_train_loader
    from hsl.model import HSL

    info = init_distributed(opt.device)
    seed_everything(opt.seed, opt.deterministic)
    if info.is_main:
        check_outputs(opt)
    if opt.opt_from_checkpoint and not opt.resume:
        raise InputError('--opt_from_checkpoint needs an existing --resume checkpoint')
    checkpoint = engine.read_checkpoint(opt.resume) if opt.resume else None
    if checkpoint is not None and (opt.test or opt.opt_from_checkpoint):
        opt = engine.options_from_checkpoint(opt, checkpoint, opt.resume, explicit,
                                             override=opt.opt_from_checkpoint)
    if info.is_main:
        print_config(opt)
    if opt.submit:
        logging.warning('--submit has no effect: upstream has no submission code (its training '
                        'would crash in tb_logger); logs are written as usual')
    if not opt.test and info.is_main:
        tb_logger.configure(opt.logger_name, flush_secs=5)

    vocab = engine.load_vocabulary(opt)
    if checkpoint is not None:
        engine.check_vocabulary(checkpoint, vocab, opt.resume)
    opt.vocab_size = len(vocab)
    logging.info('vocabulary size: {}'.format(opt.vocab_size))
    opt.we_parameter = engine.word_embedding_init(opt, vocab)
    try:
        model = HSL(opt, device=info.device, dist_info=info)
    except ValueError as err:  # e.g. an unknown --score_agg
        raise InputError(str(err)) from None
    start_epoch, best_nDCG = engine.resume(opt, model, checkpoint) if checkpoint is not None else (0, 0)

    answer = engine.load_answer(opt.answer_path)
    val_set = engine.check_features(EvalDataset(opt, vocab, 'valid'), opt, 'valid') if info.is_main else None
    if opt.test:
        result = engine.validate(opt, val_set, model, answer, argv=argv) if info.is_main else None
        barrier()
        cleanup_distributed()
        return result

    train_loader = get_train_loader(vocab, opt)
    engine.check_features(train_loader.dataset, opt, 'train')
    if start_epoch > 0 and 'rng_state' in checkpoint:
        engine.set_rng_state(checkpoint['rng_state'], train_loader.generator)
    result = engine.train_epochs(opt, info, model, vocab, train_loader, val_set, answer, start_epoch,
                          best_nDCG, argv)
    if info.is_main:
        tb_logger.close()
    cleanup_distributed()
    return result


if __name__ == '__main__':
    cli_main(main)
