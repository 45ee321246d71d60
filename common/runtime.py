"""Runtime plumbing shared by every training/evaluation script: device choice, seeding and
determinism, AMP helpers that are no-ops on CPU, and DDP set-up from torchrun's environment."""
import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from common.errors import InputError
from common.runtime_args import add_runtime_args  # noqa: F401  (re-exported for the scripts)
from common.torch_compat import drop_stale_group_defaults


def resolve_device(spec='auto'):
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a clear error."""
    spec = 'auto' if spec in (None, '') else str(spec)
    if spec == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(spec)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device %s asked for CUDA, but no CUDA GPU is visible; use --device cpu' % spec)
    return device


def seed_everything(seed, deterministic=False):
    """Seed python, numpy and torch (all devices); optionally force deterministic algorithms."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state():
    """Python, numpy, torch (and CUDA) random states, as tensors/ints only (a plain torch.save
    payload that the weights-only checkpoint loader reads back without numpy globals)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'python': random.getstate(),
             'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                       'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(value, state):
    if isinstance(value, (tuple, list)):  # get_state() itself (older m2hse), keys as a tensor (older avas)
        name, keys, pos, has_gauss, cached = value
        keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
        return (name, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached))
    if isinstance(value, dict):
        keys, pos, has_gauss, cached = value['keys'], value['pos'], value['has_gauss'], value['cached_gaussian']
    else:  # older fhn checkpoints: keys tensor beside numpy_pos / numpy_gauss
        keys, pos, (has_gauss, cached) = value, state['numpy_pos'], state['numpy_gauss']
    keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
    return ('MT19937', keys.astype(np.uint32), int(pos), int(has_gauss), float(cached))


def set_rng_state(state):
    """Restore what rng_state() saved; also reads the layouts older checkpoints used: a bare torch
    ByteTensor (lhsc 'rng_state'), numpy's get_state() tuple (m2hse), numpy keys as a tensor (fhn)."""
    if torch.is_tensor(state):
        torch.set_rng_state(state)
        return
    if 'python' in state:
        random.setstate(state['python'])
    if 'numpy' in state:
        np.random.set_state(_numpy_state(state['numpy'], state))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        cuda = list(state['cuda'])[:torch.cuda.device_count()]
        for device, cuda_state in enumerate(cuda):
            torch.cuda.set_rng_state(cuda_state, device)


def export_gpu_id(gpuid, flag='--gpuid'):
    """Upstream's GPU-id flag ("1", "0,1") written to CUDA_VISIBLE_DEVICES, before CUDA starts.
    Callers decide when (e.g. not under torchrun); a value that is not GPU ids is an InputError."""
    spec = str(gpuid).strip()
    if not re.fullmatch(r'\d+(,\d+)*', spec):
        raise InputError('%s %s: give GPU ids such as 0 or 0,1' % (flag, gpuid))
    os.environ['CUDA_VISIBLE_DEVICES'] = spec
    return spec


def seed_worker(worker_id):
    """DataLoader worker_init_fn: derive numpy/python seeds from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2 ** 32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_generator(seed):
    """A torch.Generator for DataLoader shuffling (None when seed is None)."""
    if seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def autocast(device, enabled):
    """Mixed-precision context on CUDA; a no-op context elsewhere."""
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=bool(enabled) and device.type == 'cuda')


def make_grad_scaler(device, enabled):
    """GradScaler that is active only for AMP on CUDA (disabled scalers pass values through)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=bool(enabled) and device.type == 'cuda')


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self):
        return self.rank == 0


def init_distributed(device_spec='auto'):
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK), or run alone."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistInfo(device=resolve_device(device_spec))
    rank = int(os.environ['RANK'])
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    device = resolve_device(device_spec)
    if device.type == 'cuda':
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Import before the group exists: its `group=group.WORLD` defaults are evaluated at import
        # and would otherwise pin the group (see cleanup_distributed).
        import torch.distributed.nn.functional  # noqa: F401
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo',
                                rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, True, device)


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def is_main_process():
    return not is_distributed() or dist.get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def cleanup_distributed():
    """Leave the process group together and free it while the interpreter is still alive.

    Both steps avoid gloo aborting the process at exit ("terminate called without an active
    exception", SIGABRT):
    - barrier: a rank exiting while a peer is still talking to it can abort.
    - freeing the group: ProcessGroupGloo's worker threads release a finished collective only
      after waking the caller, and a barrier keeps weak references to the collectives still in
      flight when it was issued, which postpones their destruction until the barrier itself is
      released - on a worker thread, after barrier() has returned. Destroying tensors made in
      Python needs the GIL; if the main thread has begun interpreter finalization by then,
      Python (< 3.14) ends that thread with pthread_exit, whose forced unwind through a noexcept
      destructor calls std::terminate. Dropping the last reference to the group joins those
      threads now (the destructor runs without the GIL), so that nothing is left for finalization.
      destroy_process_group() only drops torch's own references; see drop_stale_group_defaults
      for a reference torch itself leaks (common/torch_compat.py). Other holders (a DistributedDataParallel wrapper, a
      stored dist.group.WORLD) keep the threads until they are freed: keep them local to main().
    """
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
        drop_stale_group_defaults()


def distributed_sampler(dataset, shuffle=True, seed=0):
    """A DistributedSampler when running under torchrun, else None (use the usual shuffle)."""
    if not is_distributed():
        return None
    from torch.utils.data.distributed import DistributedSampler
    return DistributedSampler(dataset, shuffle=shuffle, seed=seed)


def wrap_ddp(model, info):
    """DistributedDataParallel around `model` when distributed; the model itself otherwise."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    device_ids = [info.device.index] if info.device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_gather_cat(tensor):
    """Concatenate `tensor` from every rank along dim 0 (ranks may hold different row counts)."""
    if not is_distributed():
        return tensor
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest,) + tuple(tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:int(s.item())] for g, s in zip(gathered, sizes)], dim=0)
