"""lhsc/gemm.py: which backend is chosen where, and both compute x @ W.T (+ b, - other) in float32
to rounding, at the shapes the similarity pass uses (incl. a transposed, non-contiguous weight)."""
import pytest
import torch

from lhsc import gemm as gemms

needs_onednn = pytest.mark.skipif(not gemms.onednn_available(), reason='torch built without oneDNN')


def test_select_falls_back_to_torch_off_cpu_float32_and_rejects_unknown_names():
    assert gemms.select('torch', 'cpu') is gemms.TorchGemm
    assert gemms.select('onednn', 'cuda') is gemms.TorchGemm
    assert gemms.select('onednn', 'cpu', torch.float16) is gemms.TorchGemm
    with pytest.raises(ValueError, match="unknown GEMM 'mkl'"):
        gemms.select('mkl', 'cpu')


@needs_onednn
def test_onednn_is_chosen_for_cpu_float32():
    assert gemms.select('onednn', 'cpu') is gemms.OneDNNGemm
    assert gemms.select('onednn', torch.device('cpu')).per_image


@pytest.mark.parametrize('name', gemms.CHOICES)
def test_linear_equals_float64_product(name):
    gemm = gemms.select(name, 'cpu')
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 64, generator=g)
    weight = torch.randn(24, 64, generator=g)
    bias = torch.randn(24, generator=g)
    exact = x.double() @ weight.double().t()
    y = gemm.linear(x, gemm.pack(weight), bias)
    assert y.dtype == torch.float32 and y.shape == (37, 24)
    assert torch.allclose(y.double(), exact + bias.double(), rtol=0, atol=1e-4)
    assert torch.allclose(gemm.linear(x, gemm.pack(weight)).double(), exact, rtol=0, atol=1e-4)
    # a transposed view as weight (the pass multiplies attention weights by regions^T)
    regions = torch.randn(36, 64, generator=g)
    attn = torch.softmax(torch.randn(11, 36, generator=g), -1)
    w = gemm.linear(attn, gemm.pack(regions.t()))
    assert torch.allclose(w.double(), attn.double() @ regions.double(), rtol=0, atol=1e-6)
