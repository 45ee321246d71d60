"""Matrix products of the inference-only similarity pass: torch's, or oneDNN's on CPU.

On CPU, torch.matmul / F.linear in float32 call MKL, which on non-Intel processors takes its
AVX2 kernels; oneDNN (torch's mkldnn ops, the ones torch.compile's CPU backend uses) chooses its
kernels from the CPU's instruction set, e.g. AVX-512 on AMD Zen 4/5, about twice as fast there
(bench/lhsc_eval.py times both). Both compute in IEEE float32 (no bf16/tf32 down-conversion), so
they differ only in summation order. Autograd, CUDA and other dtypes always use torch's ops.

    gemm = select('onednn', device)      # or 'torch'
    w = gemm.pack(weight)                # (out, in) once, reused for many products
    y = gemm.linear(x, w, bias)          # x @ weight.T + bias
"""
import torch
import torch.nn.functional as F

CHOICES = ('onednn', 'torch')


class TorchGemm(object):
    name = 'torch'
    per_image = False  # the pass batches all images of a tile in one bmm

    @staticmethod
    def pack(weight):
        return weight

    @staticmethod
    def linear(x, weight, bias=None):
        return F.linear(x, weight, bias)


class OneDNNGemm(object):
    name = 'onednn'
    per_image = True  # cache-sized per-image products: the (words x E) difference stays in L2

    @staticmethod
    def pack(weight):
        return weight.contiguous().to_mkldnn()

    @staticmethod
    def linear(x, weight, bias=None):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')


def onednn_available():
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')


def select(choice, device, dtype=torch.float32):
    """The GEMM implementation for `choice` ('onednn' or 'torch') on this device and dtype:
    oneDNN only for float32 on CPU when torch was built with it, torch's ops otherwise."""
    if choice not in CHOICES:
        raise ValueError('unknown GEMM %r (expected one of %s)' % (choice, ', '.join(CHOICES)))
    if (choice == 'onednn' and torch.device(device).type == 'cpu' and dtype == torch.float32
            and onednn_available()):
        return OneDNNGemm
    return TorchGemm
