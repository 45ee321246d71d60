"""The fast similarity paths equal the per-caption reference loop (upstream's algorithm):
lhsc/fastsim.py in eval mode for every head, any shard / chunk split (incl. one-image and
one-caption pieces); lhsc/fasttrain.py in train mode (per-caption BatchNorm statistics, running
stats, gradients)."""
import copy

import numpy as np
import pytest
import torch

from lhsc import fastsim, fasttrain
from lhsc import gemm as gemms
from lhsc.evaluation import caption_chunks, shard_attn_scores
from lhsc.model import build_model


def random_model(make_opt, model, head):
    torch.manual_seed(3)
    wrapper = build_model(make_opt(model=model, module_name=head, embed_size=16, sim_dim=8))
    g = torch.Generator().manual_seed(4)
    for m in wrapper.sim_enc.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.weight.numel()
            m.weight.data = torch.rand(n, generator=g) + .5
            m.bias.data = torch.rand(n, generator=g) - .5
            m.running_mean.copy_(torch.rand(n, generator=g) - .5)
            m.running_var.copy_(torch.rand(n, generator=g) + .5)
    return wrapper


def random_embeddings(n_img, lens, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_img, 36, dim, generator=g), dim=-1)
    cap = torch.zeros(len(lens), max(lens), dim)
    for j, n in enumerate(lens):
        cap[j, :n] = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    return img, cap


HEADS = [('LHSC', 'SGR'), ('SGRAF', 'SAF'), ('SGRAF', 'SGR')]


@pytest.mark.parametrize('gemm', gemms.CHOICES)
@pytest.mark.parametrize('model,head', HEADS)
def test_vectorised_equals_reference_in_eval(make_opt, model, head, gemm):
    wrapper = random_model(make_opt, model, head)
    wrapper.val_start()
    lens = [5, 1, 9, 3, 9, 2, 7, 4]
    img, cap = random_embeddings(6, lens)
    with torch.no_grad():
        reference = wrapper.sim_enc.forward_loop(img, cap, lens)
        fast = fastsim.scores(wrapper.sim_enc, img, cap, lens, gemm=gemms.select(gemm, 'cpu'))
    assert fast.shape == reference.shape == (6, 8)
    assert (fast - reference).abs().max().item() <= 1e-5
    assert reference.std().item() > 1e-3  # not a degenerate constant matrix


@pytest.mark.parametrize('gemm', gemms.CHOICES)
@pytest.mark.parametrize('model,head', HEADS)
@pytest.mark.parametrize('shard_size,max_mem', [(1, 1e-9), (4, 1e-9), (7, 0.05), (100, 2048), (3, 0.02)])
def test_sharded_chunked_pass_equals_reference(make_opt, model, head, shard_size, max_mem, gemm):
    wrapper = random_model(make_opt, model, head)
    lens = [int(n) for n in np.random.RandomState(1).randint(1, 12, size=23)]
    img, cap = random_embeddings(10, lens, seed=2)
    img_np, cap_np = img.double().numpy(), cap.double().numpy()
    reference = shard_attn_scores(wrapper, img_np, cap_np, lens, reference=True, progress=False)
    fast = shard_attn_scores(wrapper, img_np, cap_np, lens, shard_size=shard_size, max_mem=max_mem,
                             progress=False, gemm=gemm)
    assert fast.dtype == np.float64 and fast.shape == (10, 23)
    assert np.abs(fast - reference).max() <= 1e-5


def test_one_image_and_one_caption(make_opt):
    wrapper = random_model(make_opt, 'LHSC', 'SGR')
    img, cap = random_embeddings(1, [4])
    for shard in (1, 100):
        fast = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), [4], shard_size=shard, progress=False)
        ref = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), [4], reference=True, progress=False)
        assert fast.shape == (1, 1) and abs(fast[0, 0] - ref[0, 0]) <= 1e-6


def test_caption_chunks_respect_budget_and_cover_everything():
    lens = [3, 12, 7, 7, 1, 12, 5]
    per_word = 1000
    chunks = caption_chunks(lens, n_images=2, max_mem_mib=50000 / 2 ** 20, per_word_bytes=per_word)
    assert sorted(i for c in chunks for i in c) == list(range(7))
    for c in chunks:
        assert len(c) == 1 or 2 * len(c) * max(lens[i] for i in c) * per_word <= 50000
        assert [lens[i] for i in c] == sorted((lens[i] for i in c), reverse=True)
    assert chunks[0] == [1, 5]  # longest first, stable among equal lengths
    assert [len(c) for c in caption_chunks(lens, 5, 1e-12, per_word)] == [1] * 7


@pytest.mark.parametrize('lens', [[6, 6, 4, 3, 2], [3, 6, 2, 6, 3]])   # a training batch (sorted); any order
@pytest.mark.parametrize('model,head', HEADS)
def test_train_mode_matches_reference_stats_and_gradients(make_opt, model, head, lens):
    """lhsc/fasttrain.py: scores, running stats (caption order) and gradients of upstream's loop."""
    wrapper = random_model(make_opt, model, head)
    for m in wrapper.sim_enc.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    wrapper.train_start()
    img, cap = random_embeddings(5, lens, seed=5)
    loop_enc, fast_enc = copy.deepcopy(wrapper.sim_enc), copy.deepcopy(wrapper.sim_enc)
    ref = loop_enc.forward_loop(img, cap, lens)
    fast = fasttrain.scores(fast_enc, img, cap, lens)
    assert (fast - ref).abs().max().item() <= 1e-5
    for (k, a), b in zip(loop_enc.state_dict().items(), fast_enc.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k   # running stats, caption by caption
    (ref * torch.arange(25.).view(5, 5)).sum().backward()
    (fast * torch.arange(25.).view(5, 5)).sum().backward()
    # float32 rounding relative to the gradients' scale (some, e.g. biases in front of a softmax,
    # are exactly zero in exact arithmetic: both sides hold only rounding noise there)
    scale = max(p.grad.abs().max().item() for p in loop_enc.parameters())
    assert scale > 1e-2
    for (name, p), q in zip(loop_enc.named_parameters(), fast_enc.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6 * scale), name


@pytest.mark.parametrize('lens', [[6, 6, 4, 3, 2], [3, 6, 2, 6, 3]])
@pytest.mark.parametrize('model,head', HEADS)
def test_train_mode_with_dropout_draws_upstreams_masks(make_opt, model, head, lens):
    """Dropout on (p 0.4 in VisualSA/TextSA): under the same seed fasttrain draws upstream's masks in
    upstream's order, so scores and gradients equal the loop's, and the stream ends in the same state."""
    wrapper = random_model(make_opt, model, head)
    wrapper.train_start()
    img, cap = random_embeddings(5, lens, seed=6)
    loop_enc, fast_enc = copy.deepcopy(wrapper.sim_enc), copy.deepcopy(wrapper.sim_enc)
    torch.manual_seed(11)
    ref = loop_enc.forward_loop(img, cap, lens)
    after_ref = torch.rand(1)
    torch.manual_seed(11)
    fast = fasttrain.scores(fast_enc, img, cap, lens)
    assert torch.rand(1) == after_ref
    torch.manual_seed(12)
    other = fasttrain.scores(copy.deepcopy(wrapper.sim_enc), img, cap, lens)
    assert (other - ref).abs().max().item() > 1e-3      # the masks matter at this size
    assert (fast - ref).abs().max().item() <= 1e-5
    (ref * torch.arange(25.).view(5, 5)).sum().backward()
    (fast * torch.arange(25.).view(5, 5)).sum().backward()
    scale = max(p.grad.abs().max().item() for p in loop_enc.parameters())
    for (name, p), q in zip(loop_enc.named_parameters(), fast_enc.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6 * scale), name


@pytest.mark.parametrize('model,head', HEADS)
def test_train_mode_under_autocast_runs_in_mixed_precision(make_opt, model, head):
    """--amp (CUDA float16) runs fasttrain under autocast with half-precision embeddings; the same
    code under CPU bfloat16 autocast: forward and the hand-written backward run (LocalAlignment in
    float32), scores and gradients follow the float32 ones to bfloat16 precision."""
    wrapper = random_model(make_opt, model, head)
    for m in wrapper.sim_enc.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    wrapper.train_start()
    img, cap = random_embeddings(5, [6, 6, 4, 3, 2], seed=7)
    grads = []
    for amp in (False, True):
        enc = copy.deepcopy(wrapper.sim_enc)
        img_in = img.clone().requires_grad_()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            out = fasttrain.scores(enc, img_in.to(torch.bfloat16) if amp else img_in, cap, [6, 6, 4, 3, 2])
        (out.float() * torch.arange(25.).view(5, 5)).sum().backward()
        assert out.dtype == (torch.bfloat16 if amp else torch.float32)
        grads.append((out.detach().float(), img_in.grad, enc.sim_tranloc_w.weight.grad))
    (ref, *ref_grads), (mixed, *mixed_grads) = grads
    assert (mixed - ref).abs().max().item() < 0.1
    for a, b in zip(ref_grads, mixed_grads):
        assert torch.isfinite(b).all()
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.float().flatten(), dim=0) > 0.98


@pytest.mark.parametrize('gemm', gemms.CHOICES)
def test_wide_embeddings_pass_equals_reference(make_opt, gemm):
    """E=512, S=128: sizes where oneDNN / MKL pick their blocked AVX kernels, not tiny-case paths."""
    torch.manual_seed(5)
    wrapper = build_model(make_opt(model='LHSC', module_name='SAF', embed_size=512, sim_dim=128))
    lens = [int(n) for n in np.random.RandomState(6).randint(3, 15, size=9)]
    img, cap = random_embeddings(7, lens, dim=512, seed=7)
    reference = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), lens, reference=True, progress=False)
    fast = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), lens, shard_size=4, max_mem=0.5,
                             progress=False, gemm=gemm)
    assert np.abs(fast - reference).max() <= 1e-5
    assert reference.std() > 1e-4


@pytest.mark.parametrize('name', gemms.CHOICES)
def test_pass_takes_a_gemm_class_and_sends_its_products_through_it(make_opt, name):
    """shard_attn_scores(gemm=<class>): bench/lhsc_eval.py records the pass's products this way."""
    wrapper = random_model(make_opt, 'SGRAF', 'SGR')
    wrapper.val_start()
    lens = [5, 1, 9, 3]
    img, cap = random_embeddings(3, lens)
    backend, calls = gemms.select(name, 'cpu'), []

    class Recording(backend):
        @staticmethod
        def linear(x, weight, bias=None):
            calls.append((tuple(x.shape), tuple(weight.shape)))
            return backend.linear(x, weight, bias)
    by_name = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), lens, progress=False, gemm=name)
    by_class = shard_attn_scores(wrapper, img.numpy(), cap.numpy(), lens, progress=False, gemm=Recording)
    assert np.array_equal(by_name, by_class)
    # the TextSA / VisualSA embeddings (E x E), the global projection and SGR's steps (S x S)
    assert ((3 * 36, 16), (16, 16)) in calls and ((4 * 9, 16), (16, 16)) in calls
    assert ((3 * 4, 16), (8, 16)) in calls and ((3 * 4, 8), (8, 8)) in calls
    if backend.per_image:  # oneDNN: the local alignments' projection too, image by image (4 x 9 padded words)
        assert calls.count(((4 * 9, 16), (8, 16))) == 3
