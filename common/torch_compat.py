"""Workaround for a torch.distributed reference leak that keeps a destroyed gloo group alive.

For torch 2.14 (the version requirements.txt installs; tested on 2.14.1), where
torch.distributed.nn.functional evaluates
`group=group.WORLD` at import, so its functions' defaults hold the live ProcessGroup after
destroy_process_group(). If torch stops capturing the group in defaults, this becomes a no-op;
tests/common/test_common_runtime.py::test_cleanup_distributed_frees_the_gloo_group pins it.
"""
import sys
import types

import torch.distributed as dist


def drop_stale_group_defaults():
    """Reset function defaults that captured a ProcessGroup to None (= the default group).

    torch.distributed.nn.functional evaluates `group=group.WORLD` at import. torch.optim imports
    it (through torch._dynamo) when the first optimizer is built, i.e. usually after
    init_process_group, so those defaults hold the live group and destroy_process_group() cannot
    free it: its gloo threads then survive into interpreter shutdown (see cleanup_distributed).
    init_distributed imports the module first; this catches groups made by other code.
    Only type() is used to inspect objects: isinstance/getattr would trip deprecation warnings
    of some module attributes (torch.distributed.reduce_op)."""
    def is_group(value):
        return issubclass(type(value), dist.ProcessGroup)

    def clean(values):
        return tuple(None if is_group(v) else v for v in values)

    for name, module in list(sys.modules.items()):
        if type(module) is not types.ModuleType or not (
                name == 'torch.distributed' or name.startswith('torch.distributed.')):
            continue
        for obj in list(vars(module).values()):
            candidates = [obj]
            if issubclass(type(obj), type) and vars(obj).get('__module__') == name:
                candidates = list(vars(obj).values())            # methods of the module's classes
            for fn in candidates:
                if type(fn) in (staticmethod, classmethod):
                    fn = fn.__func__
                while type(fn) is types.FunctionType:
                    if fn.__defaults__ and any(is_group(v) for v in fn.__defaults__):
                        fn.__defaults__ = clean(fn.__defaults__)
                    if fn.__kwdefaults__ and any(is_group(v) for v in fn.__kwdefaults__.values()):
                        fn.__kwdefaults__ = dict(zip(fn.__kwdefaults__, clean(fn.__kwdefaults__.values())))
                    fn = vars(fn).get('__wrapped__')                 # functools.wraps decorators
