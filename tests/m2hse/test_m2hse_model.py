"""Model structure (upstream model.py names and shapes), upstream numeric quirks, and equality of the attention implementations."""
import numpy as np
import pytest
import torch

from m2hse import opts
from m2hse.model import EncoderText_global, MMHSE_global, MMHSE_local, build_model
from m2hse.checkpoints import prefixed_state_dict
from m2hse.xattn import cosine_similarity, cross_region_scores, l2norm, local_scores

GRU_KEYS = ['embed.weight', 'rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'rnn.bias_ih_l0', 'rnn.bias_hh_l0',
            'rnn.weight_ih_l0_reverse', 'rnn.weight_hh_l0_reverse', 'rnn.bias_ih_l0_reverse',
            'rnn.bias_hh_l0_reverse']
GRU_SHAPES = {'embed.weight': (264, 300), 'weight_ih': (3072, 300), 'weight_hh': (3072, 1024), 'bias': (3072,)}


def _spec_shapes(g):
    shapes = {'module.%s_cnn_enc.fc.weight' % g: (1024, 4096), 'module.%s_cnn_enc.fc.bias' % g: (1024,),
              'module.%s_bovw_enc.fc.weight' % g: (1024, 500), 'module.%s_bovw_enc.fc.bias' % g: (1024,)}
    for enc in ('cnn_gru_enc', 'bovw_gru_enc'):
        for key in GRU_KEYS:
            kind = key if key == 'embed.weight' else key.split('.')[1].rsplit('_l0', 1)[0]
            kind = 'bias' if kind.startswith('bias') else kind
            shapes['module.%s_%s.%s' % (g, enc, key)] = GRU_SHAPES[kind]
    return shapes


@pytest.mark.parametrize('level', ['global', 'local'])
def test_state_dict_keys_and_shapes_match_spec(level):
    opt = opts.parse_opt([])
    opt.vocab_size = 264
    model = build_model(level, opt)
    state = prefixed_state_dict(model)
    assert {k: tuple(v.shape) for k, v in state.items()} == _spec_shapes(level)
    assert len(state) == 22 and all(v.dtype == torch.float32 for v in state.values())
    assert sum(v.numel() for v in state.values()) == 21160640
    assert list(model.buffers()) == []
    r = np.sqrt(6.) / np.sqrt(4096 + 1024)
    fc = getattr(model, level + '_cnn_enc').fc
    assert fc.weight.abs().max() <= r and fc.bias.abs().max() == 0
    assert getattr(model, level + '_cnn_gru_enc').embed.weight.abs().max() <= 0.1


def test_l2norm_puts_eps_inside_the_square():
    x = torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    expected = x / np.sqrt((3 + 1e-8) ** 2 + (-4 + 1e-8) ** 2)
    assert torch.equal(l2norm(x, -1), expected)
    assert torch.equal(l2norm(torch.zeros(1, 4), -1), torch.zeros(1, 4))  # padded steps stay 0


def test_cosine_on_a_single_image_shard_keeps_its_shape():
    a, b = torch.rand(1, 3, 5), torch.rand(1, 3, 5)
    assert cosine_similarity(a, b, dim=2).shape == (1, 3)  # upstream .squeeze() gave (3,) and crashed


def test_global_text_embedding_depends_on_the_batch_padding():
    torch.manual_seed(0)
    enc = EncoderText_global(20, 6, 8, 1, True)
    caps = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    alone = enc(caps[1:, :3], torch.tensor([3]))
    in_batch = enc(caps, torch.tensor([5, 3]))
    words = enc.word_features(caps[1:, :3], [3])
    assert torch.allclose(alone, words.sum(1) / 3, atol=1e-7)        # mean over its own length T=3
    assert torch.allclose(in_batch[1], words[0].sum(0) / 5, atol=1e-7)  # mean over the batch's T=5
    fixed = EncoderText_global(20, 6, 8, 1, True, mean_by_length=True)
    fixed.load_state_dict(enc.state_dict())
    assert torch.allclose(fixed(caps, torch.tensor([5, 3]))[1], alone[0], atol=1e-6)


def _random_inputs(n_img=6, n_cap=7, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = l2norm(torch.randn(n_img, 9, d, generator=g), -1)
    lens = sorted([int(x) for x in torch.randint(2, 6, (n_cap,), generator=g)], reverse=True)
    caps = torch.zeros(n_cap, max(lens), d)
    for j, n in enumerate(lens):
        caps[j, :n] = l2norm(torch.randn(n, d, generator=g), -1)
    return images, caps, lens


@pytest.mark.parametrize('norm', ['clipped_l2norm', 'l2norm', 'softmax', 'no_norm'])
def test_attention_implementations_agree(norm):
    images, caps, lens = _random_inputs()
    ref = local_scores(images, caps, lens, norm, 9., impl='reference')
    exact = local_scores(images, caps, lens, norm, 9., impl='exact')
    fast = local_scores(images, caps, lens, norm, 9., impl='fast')
    assert ref.dtype == exact.dtype == fast.dtype == torch.float64 and ref.shape == (6, 7)
    assert torch.equal(ref, exact)                       # same operations, same order
    assert torch.allclose(ref, fast, rtol=0, atol=2e-6)  # algebraically equal
    b = l2norm(torch.randn(5, 9, 16), -1)
    assert torch.allclose(cross_region_scores(images, b, norm, 9., impl='reference'),
                          cross_region_scores(images, b, norm, 9., impl='fast'), rtol=0, atol=2e-6)


def test_unknown_raw_feature_norm_raises():
    images, caps, lens = _random_inputs()
    for impl in ('reference', 'fast'):
        with pytest.raises(ValueError):
            local_scores(images, caps, lens, 'bogus', 9., impl=impl)


def test_i2t_is_float32_and_t2i_float64_like_upstream():
    """The i2t half is computed in float32 (then cast): its values are exactly float32-representable."""
    from m2hse.xattn import pair_scores_reference
    images, caps, lens = _random_inputs()
    i2t = pair_scores_reference(images, [9] * 6, caps, lens, 'clipped_l2norm', 9., False, loop='context')
    t2i = pair_scores_reference(caps, lens, images, [9] * 6, 'clipped_l2norm', 9., True)
    assert torch.equal(i2t, i2t.float().double())
    assert not torch.equal(t2i, t2i.float().double())


def test_fast_scores_keep_exact_ties_for_duplicate_captions():
    images, caps, lens = _random_inputs(n_cap=7)
    caps[4], lens[4] = caps[3], lens[3]
    s = local_scores(images, caps, lens, 'clipped_l2norm', 9., impl='fast', dedupe=True)
    assert torch.equal(s[:, 3], s[:, 4])


def test_local_forward_gradients_match_reference():
    opt = opts.parse_opt(['--embed_size', '8', '--word_dim', '4', '--cnn_dim', '6', '--bovw_dim', '5'])
    opt.vocab_size = 30
    torch.manual_seed(0)
    fast = MMHSE_local(opt, attention='fast')
    ref = MMHSE_local(opt, attention='reference')
    ref.load_state_dict(fast.state_dict())
    cnns, bovws = torch.rand(4, 9, 6), torch.rand(4, 9, 5)
    caps = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0], [1, 4, 2, 0, 0], [1, 3, 2, 0, 0]])
    lens = torch.tensor([5, 4, 3, 3])
    outs = [m(cnns, caps, lens, bovws) for m in (fast, ref)]
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=2e-6)
    sum(outs[0]).sum().backward()
    sum(outs[1]).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name


def test_global_forward_shapes_and_dtypes():
    opt = opts.parse_opt(['--embed_size', '8', '--word_dim', '4', '--cnn_dim', '6', '--bovw_dim', '5'])
    opt.vocab_size = 30
    model = MMHSE_global(opt)
    caps = torch.tensor([[1, 5, 6, 2], [1, 8, 2, 0], [1, 4, 2, 0]])
    sP, sA1, sA2 = model(torch.rand(3, 6), caps, torch.tensor([4, 3, 3]), torch.rand(3, 5))
    assert sP.shape == sA1.shape == sA2.shape == (3, 3) and sP.dtype == torch.float32


def test_local_eval_with_a_one_image_last_shard():
    """129 images -> the second 128-shard holds one image; upstream's .squeeze() crashed there."""
    import argparse
    from m2hse.evaluation import shard_xattn
    images, caps, lens = _random_inputs(n_img=129, n_cap=3, d=8)
    opt = argparse.Namespace(raw_feature_norm='clipped_l2norm', lambda_softmax=9.)
    for impl in ('fast', 'exact', 'reference'):
        sims = shard_xattn(images.double().numpy(), caps.double().numpy(), lens, opt, attention=impl)
        assert sims.shape == (129, 3)
        np.testing.assert_allclose(sims, local_scores(images, caps, lens, 'clipped_l2norm', 9., impl='reference').numpy(),
                                   atol=2e-6)


@pytest.mark.parametrize('level', ['global', 'local'])
def test_mixed_precision_forward_backward_stays_finite(level):
    """--amp runs the encoders in half precision; padded word steps must not turn into 0/0 = NaN.
    (CUDA fp16 is what --amp uses; CPU float16 autocast exercises the same code here.)"""
    from m2hse.model import MultiSpringBalanceLoss
    opt = opts.parse_opt(['--embed_size', '8', '--word_dim', '4', '--cnn_dim', '6', '--bovw_dim', '5'])
    opt.vocab_size = 30
    torch.manual_seed(0)
    model = build_model(level, opt)
    regions = (9,) if level == 'local' else ()
    caps = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0], [1, 4, 2, 0, 0], [1, 3, 2, 0, 0]])
    with torch.autocast('cpu', dtype=torch.float16):
        sims = model(torch.rand(4, *regions, 6), caps, torch.tensor([5, 4, 3, 3]), torch.rand(4, *regions, 5))
    crit = MultiSpringBalanceLoss(opt)
    labels = torch.tensor([0., 1., 0., 1.])
    loss = sum(crit(s.float() if s.dtype != torch.float64 else s, labels) for s in sims)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_all_zero_context_keeps_gradients_finite():
    """A BoVW block set without keypoints embeds to zero (zero bias at init); upstream's cosine had
    finite gradients there, so must the fast path."""
    images, caps, lens = _random_inputs()
    images[2] = 0
    images.requires_grad_()
    caps.requires_grad_()
    fast = local_scores(images, caps, lens, 'clipped_l2norm', 9., impl='fast')
    ref = local_scores(images.detach(), caps.detach(), lens, 'clipped_l2norm', 9., impl='reference')
    assert torch.allclose(fast.detach(), ref, atol=2e-6)
    fast.sum().backward()
    assert torch.isfinite(images.grad).all() and torch.isfinite(caps.grad).all()


def test_local_training_step_at_readme_dims_equals_reference():
    """Default dims (embed 1024, word 300, AlexNet 4096, BoVW 500), 12 real-length captions."""
    from m2hse.model import MultiSpringBalanceLoss
    opt = opts.parse_opt([])
    opt.vocab_size = 264
    torch.manual_seed(0)
    fast = MMHSE_local(opt, attention='fast')
    ref = MMHSE_local(opt, attention='reference')
    ref.load_state_dict(fast.state_dict())
    g = torch.Generator().manual_seed(3)
    lens = torch.tensor([7, 6, 6, 6, 6, 5, 5, 5, 4, 4, 3, 3])
    caps = torch.zeros(12, 7, dtype=torch.long)
    for i, n in enumerate(lens):
        caps[i, :n] = torch.cat([torch.tensor([1]), torch.randint(4, 264, (int(n) - 2,), generator=g), torch.tensor([2])])
    cnns, bovws = torch.relu(torch.randn(12, 9, 4096, generator=g)), torch.rand(12, 9, 500, generator=g)
    labels = torch.tensor([0., 1., 2., 0., 1., 2., 0., 1., 2., 3., 3., 0.])
    crit = MultiSpringBalanceLoss(opt)
    losses = []
    for model in (fast, ref):
        sims = model(cnns, caps, lens, bovws)
        loss = crit(sims[0], labels) + opt.beta_1 * crit(sims[1], labels) + opt.beta_2 * crit(sims[2], labels)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-7)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        # float32 rounding over d=1024 sums: about 1e-5 of each gradient's norm
        assert ((p.grad - q.grad).norm() / q.grad.norm()).item() < 1e-4, name
