"""DDP pieces of LHSC training: gather the global batch, gather score columns, sum gradients."""
import torch
import torch.distributed as dist

from common.runtime import all_gather_cat


class GatherColumns(torch.autograd.Function):
    """All-gather column blocks of the score matrix; backward keeps this rank's block only.

    Every rank computes the same loss on the full matrix; summing (not averaging) the parameter
    gradients over ranks then gives exactly the single-process gradient (see train_emb).
    """

    @staticmethod
    def forward(ctx, block, widths):
        rank = dist.get_rank()
        widest = max(widths)
        padded = block.new_zeros(block.size(0), widest)
        padded[:, :block.size(1)] = block
        gathered = [torch.zeros_like(padded) for _ in widths]
        dist.all_gather(gathered, padded.contiguous())
        ctx.start = sum(widths[:rank])
        ctx.width = widths[rank]
        return torch.cat([g[:, :w] for g, w in zip(gathered, widths)], 1)

    @staticmethod
    def backward(ctx, grad):
        return grad[:, ctx.start:ctx.start + ctx.width], None


def gather_batch(images, captions, lengths, device):
    """All-gather a collated batch from every rank and re-sort it by caption length (stable, as
    collate_fn does), so each rank holds the same global batch as a single process would."""
    images = images.to(device)
    lens = torch.as_tensor(lengths, dtype=torch.int64, device=device)
    longest = lens.max().clone()
    dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    padded = captions.new_zeros(captions.size(0), int(longest)).to(device)
    padded[:, :captions.size(1)] = captions.to(device)
    images, padded, lens = all_gather_cat(images), all_gather_cat(padded), all_gather_cat(lens)
    order = torch.as_tensor(sorted(range(len(lens)), key=lambda k: -int(lens[k])), device=device)
    lens = lens[order]
    return images[order], padded[order][:, :int(lens[0])], [int(n) for n in lens]


def sum_gradients(params):
    """All-reduce (sum) the gradients of `params` across ranks, in one flat buffer."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
