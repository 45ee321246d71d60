"""The `tensorboard_logger` API the original code calls (configure / log_value), backed by
torch.utils.tensorboard, plus vsepp's AverageMeter and LogCollector."""
from collections import OrderedDict

_writer = None


def configure(logdir, flush_secs=2):
    """Start writing TensorBoard event files under `logdir` (replaces an earlier configure)."""
    global _writer
    from torch.utils.tensorboard import SummaryWriter
    close()
    _writer = SummaryWriter(log_dir=logdir, flush_secs=flush_secs)
    return _writer


def log_value(name, value, step=None):
    """Add one scalar; like tensorboard_logger, a call before configure() is an error."""
    if _writer is None:
        raise RuntimeError('common.logger.log_value called before configure(logdir)')
    _writer.add_scalar(name, float(value), global_step=step)


def flush():
    if _writer is not None:
        _writer.flush()


def close():
    global _writer
    if _writer is not None:
        _writer.close()
        _writer = None


class AverageMeter(object):
    """Current value and running average of a quantity."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / (.0001 + self.count)  # vsepp's epsilon, kept so logged values match

    def __str__(self):
        if self.count == 0:
            return str(self.val)
        return '%.4f (%.4f)' % (self.val, self.avg)


class LogCollector(object):
    """A named set of AverageMeters, printed and logged together (vsepp `model.py`)."""

    def __init__(self):
        self.meters = OrderedDict()

    def reset(self):
        self.meters = OrderedDict()

    def update(self, k, v, n=1):
        if k not in self.meters:
            self.meters[k] = AverageMeter()
        self.meters[k].update(v, n)

    def __str__(self):
        return '  '.join('%s %s' % (k, v) for k, v in self.meters.items())

    def tb_log(self, tb_logger, prefix='', step=None):
        for k, v in self.meters.items():
            tb_logger.log_value(prefix + k, v.val, step=step)
